//! The Kubernetes API as the installer sees it: a client from the kubeconfig k3s wrote (or the
//! one given with `--kubeconfig`), and the readings that the `foreman` step and `status` share:
//! the CRD, the operator Deployment, the `Foreman` resource and one line per component.
//!
//! Every request is bounded (connect and read timeouts), so a cluster that stops answering
//! becomes an error that names what was asked, never a hang.

pub use crate::diagnosis::{
    component_lines, condition, conditions, container_troubles, describe_conflict,
    foreman_resource, is_ready, recent_warnings, value_at, ConditionView, ContainerTrouble,
};
use crate::diagnosis::{name_of, reported_components};
use crate::host::Host;
use crate::report::ComponentLine;
use foreman_box_bundle::{NAMESPACE, OPERATOR};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::ByteString;
use kube::api::{Api, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kubeconfig k3s writes when it starts (`write-kubeconfig-mode 0600`).
pub const KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The CRD's name as generated from the Rust type (bundle/manifests/foreman-crd.yaml).
pub const CRD_NAME: &str = "foremans.app.theforeman.org";
/// Our field manager for server-side apply; the operator has its own (`foreman-operator`).
pub const FIELD_MANAGER: &str = "foreman-box";
/// The one resource foreman-box manages (bundle::default_foreman).
pub const RESOURCE: &str = "foreman";
/// Pods, Deployments and Jobs of the resource carry this label (operator/src/resources/mod.rs).
const INSTANCE_SELECTOR: &str = "app.kubernetes.io/instance=foreman";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no kubeconfig at {path}: k3s writes it when it starts\nhelp: k3s has not started: `systemctl status k3s` and `journalctl -u k3s` say why (a run with --skip-start or --root starts nothing); or point --kubeconfig at your cluster's kubeconfig")]
    NoKubeconfig { path: PathBuf },
    #[error("cannot use the kubeconfig {path}\nhelp: check the file, or point --kubeconfig at a working one")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot make a Kubernetes client from {path}\nhelp: check the kubeconfig's server and credentials")]
    Client {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
    #[error("Kubernetes API request failed: {what}\nhelp: is k3s running? `systemctl status k3s`; `foreman-box status` shows what it can reach")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("gave up after {timeout_secs}s waiting for {what}\n{detail}\nhelp: check `kubectl -n foreman get deploy,pods` and `journalctl -u k3s`; re-run `foreman-box install` to wait again, or raise --wait-timeout")]
    NotEstablished {
        timeout_secs: u64,
        what: String,
        detail: String,
    },
    #[error("Foreman {NAMESPACE}/{RESOURCE} was changed by another field manager; foreman-box left it alone:\n{conflicts}\nhelp: to keep their value, put it in foreman-box's configuration (flag, FOREMAN_BOX_* variable or /etc/foreman-box/config.toml) so both agree; to return to foreman-box's value, set the field back with `kubectl -n {NAMESPACE} edit foreman {RESOURCE}`; then re-run `foreman-box install`. foreman-box never forces its value over another manager's")]
    Conflict { conflicts: String },
    #[error("Foreman did not become Ready within {timeout_secs}s\n{diagnosis}\nhelp: fix what is shown above (`kubectl -n foreman get pods`, `kubectl -n foreman describe pod NAME`), then re-run `foreman-box install`: it picks up where it stopped; --wait-timeout SECS waits longer")]
    NotReady {
        timeout_secs: u64,
        diagnosis: String,
    },
    #[error("Secret {NAMESPACE}/{name} appeared while foreman-box was creating it, so it was left as it is\nhelp: re-run `foreman-box install`: it keeps a copy of the cluster's values in /etc/foreman-box/secrets/")]
    SecretExists { name: String },
}

type Result<T, E = ClusterError> = std::result::Result<T, E>;

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Api { what, source }
}

/// A connected client and where its kubeconfig came from.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// The kubeconfig as a person would name it (host path, not rooted).
    pub kubeconfig: PathBuf,
}

/// The kubeconfig to use: the explicit one as given, else k3s's under the host root.
pub fn kubeconfig_path(host: &Host, explicit: Option<&Path>) -> (PathBuf, PathBuf) {
    match explicit {
        Some(p) => (p.to_path_buf(), p.to_path_buf()),
        None => (host.path(KUBECONFIG), PathBuf::from(KUBECONFIG)),
    }
}

impl Cluster {
    /// The client, for a reader that asks the cluster more than this one does.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Waits, up to `timeout`, until the resource is Ready (re-reading it every 2 s); on timeout
    /// the error carries the diagnosis of what is stuck.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            let fm = self.foreman().await?;
            if fm.as_ref().is_some_and(is_ready) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(ClusterError::NotReady {
                    timeout_secs: timeout.as_secs(),
                    diagnosis: self.diagnose(fm.as_ref()).await,
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Reads the kubeconfig and makes a client. Connects lazily: the first request tells whether
    /// the API answers.
    pub async fn connect(host: &Host, explicit: Option<&Path>) -> Result<Cluster> {
        let (real, shown) = kubeconfig_path(host, explicit);
        let text = match host.fs().read_string(&real) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(ClusterError::NoKubeconfig { path: shown }),
            Err(e) => {
                return Err(ClusterError::Kubeconfig {
                    path: shown,
                    source: kube::config::KubeconfigError::ReadConfig(
                        std::io::Error::other(e.to_string()),
                        real,
                    ),
                })
            }
        };
        let kc = kube::config::Kubeconfig::from_yaml(&text).map_err(|source| {
            ClusterError::Kubeconfig {
                path: shown.clone(),
                source,
            }
        })?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|source| ClusterError::Kubeconfig {
                path: shown.clone(),
                source,
            })?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let client = Client::try_from(config).map_err(|source| ClusterError::Client {
            path: shown.clone(),
            source,
        })?;
        Ok(Cluster {
            client,
            kubeconfig: shown,
        })
    }

    fn foremans(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), NAMESPACE, &foreman_resource())
    }

    /// What stands between us and applying the resource: the CRD not yet Established, the
    /// operator not yet Available. Empty when both are there.
    pub async fn prerequisites(&self) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = crds.get_opt(CRD_NAME).await.map_err(api_err(format!(
            "reading CustomResourceDefinition {CRD_NAME}"
        )))?;
        let established = crd
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            missing.push(format!(
                "CustomResourceDefinition {CRD_NAME} to be Established"
            ));
        }
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let operator = deployments
            .get_opt(OPERATOR)
            .await
            .map_err(api_err(format!(
                "reading Deployment {NAMESPACE}/{OPERATOR}"
            )))?;
        let available = operator
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
            });
        if !available {
            missing.push(format!("Deployment {NAMESPACE}/{OPERATOR} to be Available"));
        }
        Ok(missing)
    }

    /// The live resource, if it exists.
    pub async fn foreman(&self) -> Result<Option<DynamicObject>> {
        self.foremans()
            .get_opt(RESOURCE)
            .await
            .map_err(api_err(format!("reading Foreman {NAMESPACE}/{RESOURCE}")))
    }

    /// Server-side apply with our field manager and no force. A conflict with another manager
    /// is answered 409 by the API server and becomes [`ClusterError::Conflict`].
    pub async fn apply_foreman(&self, desired: &Value) -> Result<()> {
        match self
            .foremans()
            .patch(
                RESOURCE,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(desired),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(ClusterError::Conflict {
                conflicts: describe_conflict(&status, desired),
            }),
            Err(source) => Err(ClusterError::Api {
                what: format!("applying Foreman {NAMESPACE}/{RESOURCE}"),
                source,
            }),
        }
    }

    /// The data of Secret `name` in the namespace, if it exists (values are never logged).
    pub async fn secret_data(&self, name: &str) -> Result<Option<BTreeMap<String, ByteString>>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        Ok(secrets
            .get_opt(name)
            .await
            .map_err(api_err(format!("reading Secret {NAMESPACE}/{name}")))?
            .map(|s| s.data.unwrap_or_default()))
    }

    /// Creates the Secret; never replaces one that exists (409 becomes
    /// [`ClusterError::SecretExists`]).
    pub async fn create_secret(&self, secret: &Secret) -> Result<()> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        match secrets.create(&PostParams::default(), secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Err(ClusterError::SecretExists { name })
            }
            Err(source) => Err(ClusterError::Api {
                what: format!("creating Secret {NAMESPACE}/{name}"),
                source,
            }),
        }
    }

    /// One line per component, from the Deployments, Jobs and Pods of the resource and what the
    /// operator reports in `status.components`.
    pub async fn components(&self, fm: Option<&DynamicObject>) -> Result<Vec<ComponentLine>> {
        let lp = ListParams::default().labels(INSTANCE_SELECTOR);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), NAMESPACE);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let deployments = deployments
            .list(&lp)
            .await
            .map_err(api_err("listing Deployments in namespace foreman"))?
            .items;
        let jobs = jobs
            .list(&lp)
            .await
            .map_err(api_err("listing Jobs in namespace foreman"))?
            .items;
        let pods = pods
            .list(&lp)
            .await
            .map_err(api_err("listing Pods in namespace foreman"))?
            .items;
        let reported = fm.map(reported_components).unwrap_or_default();
        Ok(component_lines(&deployments, &jobs, &pods, &reported))
    }

    /// What a person needs when the wait gives up: each component not ready with its pods'
    /// reasons, recent Warning events, and the last log lines of a failing container.
    pub async fn diagnose(&self, fm: Option<&DynamicObject>) -> String {
        let mut out = String::new();
        if let Some(ready) = fm.and_then(|f| condition(f, "Ready")) {
            out.push_str(&format!(
                "Foreman {NAMESPACE}/{RESOURCE}: Ready={} ({}) {}\n",
                ready.status, ready.reason, ready.message
            ));
        }
        match self.components(fm).await {
            Ok(lines) => {
                let waiting: Vec<&ComponentLine> = lines.iter().filter(|l| !l.ready).collect();
                if !waiting.is_empty() {
                    out.push_str("not ready:\n");
                    for l in waiting {
                        out.push_str(&format!(
                            "  {:<24} {:<12} {}\n",
                            l.name,
                            l.progress,
                            l.reason.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
            Err(e) => out.push_str(&format!("cannot read the components: {e}\n")),
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let lp = ListParams::default().labels(INSTANCE_SELECTOR);
        let pod_list = pods.list(&lp).await.map(|l| l.items).unwrap_or_default();
        let troubled: Vec<(String, Vec<ContainerTrouble>)> = pod_list
            .iter()
            .map(|p| (name_of(&p.metadata), container_troubles(p)))
            .filter(|(_, t)| !t.is_empty())
            .collect();
        if !troubled.is_empty() {
            out.push_str("pods:\n");
            for (pod, troubles) in &troubled {
                for t in troubles {
                    out.push_str(&format!(
                        "  {pod} container {}: {}\n",
                        t.container, t.detail
                    ));
                }
            }
        }
        let events: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
        if let Ok(list) = events.list(&ListParams::default()).await {
            let warnings = recent_warnings(list.items, 10);
            if !warnings.is_empty() {
                out.push_str("recent warning events:\n");
                for w in warnings {
                    out.push_str(&format!("  {w}\n"));
                }
            }
        }
        // The last lines of the first container that failed, from its previous run when it is
        // crash-looping (the current one has not written anything yet).
        let mut crashed = None;
        for (pod, troubles) in &troubled {
            if let Some(t) = troubles.iter().find(|t| t.crashed) {
                crashed = Some((pod.clone(), t.clone()));
                break;
            }
        }
        if let Some((pod, t)) = crashed {
            let params = LogParams {
                container: Some(t.container.clone()),
                tail_lines: Some(20),
                previous: t.restarted,
                ..Default::default()
            };
            match pods.logs(&pod, &params).await {
                Ok(text) if !text.trim().is_empty() => {
                    out.push_str(&format!(
                        "last log lines of {pod} container {}{}:\n",
                        t.container,
                        if t.restarted { " (previous run)" } else { "" }
                    ));
                    for line in text
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        out.push_str(&format!("  | {line}\n"));
                    }
                }
                Ok(_) => {}
                Err(e) => out.push_str(&format!("cannot read the logs of {pod}: {e}\n")),
            }
        }
        out.trim_end().to_string()
    }
}
