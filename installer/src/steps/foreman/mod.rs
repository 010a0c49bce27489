//! ApplyForeman: the generated Secrets from the copies kept in /etc/foreman-box/secrets
//! ([`secrets`]), then the `Foreman` resource from the configuration, applied through the API
//! with server-side apply under our own field manager and without force, then a bounded wait for
//! `Ready` with one line per component.
//!
//! The step talks to the cluster only when k3s is meant to run (no `--skip-start`, which
//! `--root` implies) or when a kubeconfig is given explicitly (`--kubeconfig`): an explicit
//! kubeconfig names a cluster that exists, so there is something to talk to even when this run
//! starts nothing. That is also the seam the tests use: `--root` for the host tree, and a
//! kubeconfig for a stand-in API server on loopback.

mod secrets;

use crate::action::{HostOp, Planned};
use crate::cluster::{self, Cluster, ClusterError, FIELD_MANAGER, RESOURCE};
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::error::Result;
use crate::kept::{copy_path, SECRETS_DIR};
use foreman_box_bundle::NAMESPACE;
use foreman_operator::generated;
use foreman_operator::Foreman;
use futures::future::BoxFuture;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

const STEP: &str = "foreman";
/// How often the wait looks again: often enough for a live view, cheap for the API server.
const POLL: Duration = Duration::from_secs(1);
/// The admin user the operator seeds (SEED_ADMIN_USER, operator/src/resources/core.rs).
pub const ADMIN_USER: &str = "admin";

/// What this step changes beyond the host's common operations.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// Waits, bounded, for the CRD to be Established and the operator to be Available.
    WaitPrerequisites { missing: String },
    /// The generated Secrets made or restored, decided once the cluster can be read (the plan
    /// was made before it could be).
    CreateSecretsLater { names: Vec<String> },
    /// A generated Secret created in the cluster (its copy written first when the values are
    /// new).
    CreateSecret {
        name: String,
        values: Values,
        #[serde(skip)]
        secret: secrets::Sealed,
        #[serde(skip)]
        copy: Option<DesiredFile>,
    },
    /// The kept copy follows the cluster's Secret; the old copy is kept beside it.
    ReplaceCopy { copy: DesiredFile, old: DesiredFile },
    /// The resource applied: server-side apply of the fields foreman-box owns.
    Apply {
        #[serde(flatten)]
        how: How,
        body: Value,
    },
    /// Waits, bounded, for the resource to be Ready, with one line per component.
    WaitReady,
    #[serde(untagged)]
    Host(HostOp),
}

/// Where a created Secret's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Values {
    /// Generated now, and kept in the copy.
    New,
    /// The kept copy's.
    Copy,
}

/// What an apply does to the resource, as far as the plan could read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "apply", rename_all = "snake_case")]
pub enum How {
    /// The live resource could not be read (no CRD yet).
    Unread {
        summary: String,
    },
    Create {
        summary: String,
    },
    Update {
        fields: Vec<String>,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::WaitPrerequisites { missing } => write!(f, "wait for {missing}"),
            Op::CreateSecretsLater { names } => write!(
                f,
                "create Secrets {} in {NAMESPACE} from the copies in {SECRETS_DIR}, or with new values kept there",
                names.join(", ")
            ),
            Op::CreateSecret { name, values, .. } => {
                let path = copy_path(name);
                match values {
                    Values::New => write!(
                        f,
                        "create Secret {NAMESPACE}/{name} with new values, kept in {path}"
                    ),
                    Values::Copy => write!(f, "create Secret {NAMESPACE}/{name} from {path}"),
                }
            }
            Op::ReplaceCopy { copy, .. } => write!(f, "write {}", copy.path),
            Op::Apply { how, .. } => match how {
                How::Unread { summary } => {
                    write!(f, "apply Foreman {NAMESPACE}/{RESOURCE} ({summary})")
                }
                How::Create { summary } => {
                    write!(f, "create Foreman {NAMESPACE}/{RESOURCE} ({summary})")
                }
                How::Update { fields } => write!(f, "update {}", fields.join(", ")),
            },
            Op::WaitReady => write!(f, "wait until Foreman {NAMESPACE}/{RESOURCE} is Ready"),
            Op::Host(op) => op.fmt(f),
        }
    }
}

/// Runs this step's operations with one cluster client, made when one first needs it (the
/// plan may have been made before k3s had written its kubeconfig).
#[derive(Default)]
pub struct Runner {
    cluster: Option<Cluster>,
}

impl Runner {
    async fn cluster(&mut self, cx: &Context) -> Result<Cluster> {
        if let Some(c) = &self.cluster {
            return Ok(c.clone());
        }
        let c = Cluster::connect(&cx.host, cx.config.foreman.kubeconfig.as_deref()).await?;
        self.cluster = Some(c.clone());
        Ok(c)
    }

    pub fn run<'a>(&'a mut self, cx: &'a Context, op: Op) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match op {
                Op::WaitPrerequisites { .. } => {
                    wait_prerequisites(cx, &self.cluster(cx).await?).await
                }
                Op::CreateSecretsLater { .. } => {
                    let cluster = self.cluster(cx).await?;
                    for planned in secrets::plan(cx, &cluster, &desired(cx)).await? {
                        self.run(cx, planned.op).await?;
                    }
                    Ok(())
                }
                Op::CreateSecret { secret, copy, .. } => {
                    let cluster = self.cluster(cx).await?;
                    secrets::create(cx, &cluster, secret, copy).await
                }
                Op::ReplaceCopy { copy, old } => {
                    old.write(&cx.host)?;
                    copy.write(&cx.host)?;
                    Ok(())
                }
                Op::Apply { body, .. } => Ok(self.cluster(cx).await?.apply_foreman(&body).await?),
                Op::WaitReady => wait_ready(cx, &self.cluster(cx).await?).await,
                Op::Host(op) => op.run(&cx.host),
            }
        })
    }
}

/// Whether this run talks to the cluster (see the module comment).
pub fn connects(cx: &Context) -> bool {
    cx.config.foreman.kubeconfig.is_some() || !cx.options.skip_start
}

/// The resource we want: the bundle's default with this host's name and the configuration.
pub fn desired(cx: &Context) -> Foreman {
    resource(&cx.config, Some(&cx.facts.fqdn))
}

/// The resource a configuration asks for (preflight sizes the host against it; `render` prints
/// what [`applied`] makes of it).
pub fn resource(cfg: &crate::config::Config, hostname: Option<&str>) -> Foreman {
    let f = &cfg.foreman;
    let mut fm = foreman_box_bundle::default_foreman(
        hostname,
        f.dynflow_workers,
        f.katello,
        f.remote_execution,
    );
    fm.spec.tuning = f.tuning;
    fm
}

/// The fields of `fm` that foreman-box sets, as it applies them (server-side apply, field manager
/// `foreman-box`): its name and namespace, and `spec.hostname` (when set),
/// `spec.dynflow_workers`, `spec.plugins` and `spec.tuning`. The rest of the spec stays the
/// user's (`kubectl edit`) or the schema's defaults: foreman-box never owns it.
pub fn applied(fm: &Foreman) -> Value {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Applied<'a> {
        api_version: String,
        kind: String,
        metadata: Metadata<'a>,
        spec: Spec<'a>,
    }
    #[derive(serde::Serialize)]
    struct Metadata<'a> {
        name: Option<&'a str>,
        namespace: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct Spec<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        hostname: Option<&'a str>,
        dynflow_workers: u32,
        plugins: &'a foreman_operator::crd::Plugins,
        tuning: foreman_operator::Tuning,
    }
    use kube::Resource;
    serde_json::to_value(Applied {
        api_version: Foreman::api_version(&()).into_owned(),
        kind: Foreman::kind(&()).into_owned(),
        metadata: Metadata {
            name: fm.metadata.name.as_deref(),
            namespace: fm.metadata.namespace.as_deref(),
        },
        spec: Spec {
            hostname: fm.spec.hostname.as_deref(),
            dynflow_workers: fm.spec.dynflow_workers,
            plugins: &fm.spec.plugins,
            tuning: fm.spec.tuning,
        },
    })
    .expect("strings, numbers and booleans serialize")
}

/// Where to log in, and the command that reads the admin password (never the password).
pub fn access_text(hostname: &str) -> String {
    format!(
        "Foreman: https://{hostname}\nuser:    {ADMIN_USER}\npassword: kubectl -n {NAMESPACE} get secret {} -o jsonpath='{{.data.admin-password}}' | base64 -d\nkept:    {} (the generated values; keep it with the databases)",
        foreman_operator::resources::GENERATED_SECRET,
        copy_path(foreman_operator::resources::GENERATED_SECRET)
    )
}

pub(super) async fn plan(cx: &Context) -> Result<Vec<Planned<Op>>> {
    if !connects(cx) {
        // A warning, not a note: `plan` must say it even without -v.
        cx.reporter.warning(
            STEP,
            &format!("Foreman {NAMESPACE}/{RESOURCE} will be applied once k3s runs: this run starts nothing (--skip-start or --root), so it does not connect to the cluster"),
        );
        return Ok(Vec::new());
    }
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let fm = desired(cx);
    let body = applied(&fm);
    let summary = summary(&fm);
    let (kubeconfig, shown) = cluster::kubeconfig_path(&cx.host, explicit);
    if explicit.is_none() && !cx.host.fs().exists(&kubeconfig) {
        // k3s has not started yet (`plan` on a fresh host): everything is still to do, and
        // the actions connect when they run, after the k3s step has started it.
        let missing = format!(
            "CustomResourceDefinition {} to be Established and Deployment {NAMESPACE}/{} to be Available",
            cluster::CRD_NAME,
            foreman_box_bundle::OPERATOR
        );
        let why = format!("k3s has not written {} yet", shown.display());
        return Ok(everything(
            &fm,
            missing,
            Apply(How::Unread { summary }, body, why),
        ));
    }
    let cluster = Cluster::connect(&cx.host, explicit).await?;

    let missing = prerequisites_once_the_api_answers(cx, &cluster).await?;
    if !missing.is_empty() {
        // The resource cannot be read before its CRD is established: apply what we want and
        // let server-side apply merge it with whatever is there.
        let why = "the CRD is not established yet, so the current resource cannot be read";
        let apply = Apply(How::Unread { summary }, body, why.into());
        return Ok(everything(&fm, missing.join(" and "), apply));
    }

    // The generated Secrets before the resource, so the operator finds them and makes none.
    let mut actions = secrets::plan(cx, &cluster, &fm).await?;
    let live = cluster.foreman().await?;
    let apply = match diff(&body, live.as_ref()) {
        Diff::Create => Some(Apply(
            How::Create { summary },
            body,
            "it does not exist yet".into(),
        )),
        Diff::Update(fields) => Some(Apply(
            How::Update { fields },
            body,
            format!("Foreman {NAMESPACE}/{RESOURCE} differs from the configuration"),
        )),
        Diff::Same => None,
    };
    let why = match (apply, live.as_ref()) {
        (Some(apply), _) => {
            actions.push(apply.planned());
            "it is being applied".to_string()
        }
        (None, Some(fm)) if !cluster::is_ready(fm) => match cluster::condition(fm, "Ready") {
            Some(c) if !c.message.is_empty() => {
                format!("Ready is {} ({}): {}", c.status, c.reason, c.message)
            }
            Some(c) => format!("Ready is {} ({})", c.status, c.reason),
            None => "the operator has not reported on it yet".into(),
        },
        (None, _) => return Ok(actions),
    };
    actions.push(Planned::new(Op::WaitReady, why));
    Ok(actions)
}

/// An apply as planned: how, the body, why.
struct Apply(How, Value, String);

impl Apply {
    fn planned(self) -> Planned<Op> {
        let Apply(how, body, why) = self;
        Planned::new(Op::Apply { how, body }, why)
    }
}

/// The whole step, for a cluster whose resource cannot be read yet.
fn everything(fm: &Foreman, missing: String, apply: Apply) -> Vec<Planned<Op>> {
    let names = generated::needed(fm)
        .iter()
        .map(|g| g.name.to_string())
        .collect();
    vec![
        Planned::new(
            Op::WaitPrerequisites { missing },
            "the Foreman resource needs its CRD and the operator",
        ),
        Planned::new(
            Op::CreateSecretsLater { names },
            "the operator would otherwise make values that no copy outside the cluster keeps",
        ),
        apply.planned(),
        Planned::new(Op::WaitReady, "Foreman was not applied yet"),
    ]
}

/// What the resource still needs, once the API server answers at all: a refused or cut
/// connection (k3s still starting, or restarting) is waited out within `--wait-timeout`, every
/// 2 s, said once; an answer from the API server, even an error, ends the wait.
async fn prerequisites_once_the_api_answers(cx: &Context, c: &Cluster) -> Result<Vec<String>> {
    let timeout = Duration::from_secs(cx.config.foreman.wait_timeout_secs);
    let started = Instant::now();
    let mut told = false;
    loop {
        match c.prerequisites().await {
            Err(ClusterError::Api { what, source })
                if !matches!(source, kube::Error::Api(_)) && started.elapsed() < timeout =>
            {
                if !told {
                    let note = format!(
                        "waiting up to {}s for the Kubernetes API to answer ({what}: {source})",
                        timeout.as_secs()
                    );
                    cx.reporter.note("foreman", &note);
                    told = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(ClusterError::Api { what, source }) if !matches!(source, kube::Error::Api(_)) => {
                let what = format!(
                    "{what}: no answer within --wait-timeout {}s",
                    timeout.as_secs()
                );
                return Err(ClusterError::Api { what, source }.into());
            }
            other => return Ok(other?),
        }
    }
}

fn summary(fm: &Foreman) -> String {
    let s = &fm.spec;
    format!(
        "hostname {}, dynflow_workers {}, katello {}, remote_execution {}",
        s.hostname.as_deref().unwrap_or("any"),
        s.dynflow_workers,
        s.plugins.katello,
        s.plugins.remote_execution
    )
}

/// What applying `desired` would change.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    Create,
    /// `spec.dynflow_workers 2 → 3`, `remove spec.hostname`, ...
    Update(Vec<String>),
    Same,
}

/// Compares what we apply with the live object: every field we set, and every field our field
/// manager set before and no longer sets (server-side apply removes those).
pub fn diff(desired: &Value, live: Option<&DynamicObject>) -> Diff {
    let Some(live) = live else {
        return Diff::Create;
    };
    let mut wanted = Vec::new();
    leaves("", &desired["spec"], &mut wanted);
    let mut out = Vec::new();
    for (path, want) in &wanted {
        let have = cluster::value_at(&live.data["spec"], path);
        if have != Some(want) {
            let have = have.map_or("unset".to_string(), |v| v.to_string());
            out.push(format!("spec.{path} {have} → {want}"));
        }
    }
    for path in owned_spec_fields(live) {
        let still_wanted = wanted.iter().any(|(p, _)| *p == path);
        if !still_wanted && cluster::value_at(&live.data["spec"], &path).is_some() {
            out.push(format!("remove spec.{path}"));
        }
    }
    if out.is_empty() {
        Diff::Same
    } else {
        Diff::Update(out)
    }
}

/// Leaf fields of a JSON object as dotted paths.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v.as_object() {
        Some(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        None => out.push((prefix.to_string(), v.clone())),
    }
}

/// The spec fields our field manager owns, from `metadata.managedFields` (fieldsV1: `f:name`
/// per field, `{}` for a leaf).
fn owned_spec_fields(live: &DynamicObject) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> =
            m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if children.is_empty() && !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        for (k, v) in children {
            let name = &k[2..];
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            walk(&path, v, out);
        }
    }
    let mut out = Vec::new();
    for entry in live.metadata.managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(FIELD_MANAGER)
            || entry.operation.as_deref() != Some("Apply")
        {
            continue;
        }
        if let Some(spec) = entry.fields_v1.as_ref().map(|f| &f.0["f:spec"]) {
            walk("", spec, &mut out);
        }
    }
    out
}

/// Waits, bounded, for the CRD and the operator, saying what it waits for.
async fn wait_prerequisites(cx: &Context, cluster: &Cluster) -> Result<()> {
    let timeout = Duration::from_secs(cx.config.foreman.wait_timeout_secs);
    let started = Instant::now();
    let mut last = Vec::new();
    loop {
        let missing = cluster.prerequisites().await?;
        if missing.is_empty() {
            return Ok(());
        }
        if missing != last {
            cx.reporter.note(
                STEP,
                &format!(
                    "waiting up to {}s for {}",
                    timeout.as_secs(),
                    missing.join(" and ")
                ),
            );
            last = missing.clone();
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(ClusterError::NotEstablished {
                timeout_secs: timeout.as_secs(),
                what: missing.join(" and "),
                detail: format!(
                    "k3s applies the operator's manifests from {} once its API is up",
                    crate::manifests::MANIFESTS_DIR
                ),
            }
            .into());
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

/// Watches the resource's status and its components until Ready, telling the live view each
/// change; on timeout explains what is stuck. A failed reading during the wait is told and
/// retried: a busy API server is no reason to give up early.
async fn wait_ready(cx: &Context, cluster: &Cluster) -> Result<()> {
    let timeout = Duration::from_secs(cx.config.foreman.wait_timeout_secs);
    let started = Instant::now();
    cx.reporter.note(
        STEP,
        &format!(
            "waiting up to {}s for Foreman {NAMESPACE}/{RESOURCE} to be Ready",
            timeout.as_secs()
        ),
    );
    let mut shown = None;
    let mut last_fm: Option<DynamicObject> = None;
    loop {
        match read_once(cluster).await {
            Ok((fm, lines)) => {
                if shown.as_ref() != Some(&lines) {
                    cx.reporter.components(STEP, &lines);
                    shown = Some(lines);
                }
                if fm.as_ref().is_some_and(cluster::is_ready) {
                    let hostname = fm
                        .as_ref()
                        .and_then(|f| f.data["spec"]["hostname"].as_str().map(str::to_string))
                        .unwrap_or_else(|| cx.facts.fqdn.clone());
                    cx.reporter.note(
                        STEP,
                        &format!("Foreman is Ready\n{}", access_text(&hostname)),
                    );
                    return Ok(());
                }
                last_fm = fm;
            }
            Err(e) => cx.reporter.warning(
                STEP,
                &format!("reading the Foreman status failed, retrying: {e}"),
            ),
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(ClusterError::NotReady {
                timeout_secs: timeout.as_secs(),
                diagnosis: cluster.diagnose(last_fm.as_ref()).await,
            }
            .into());
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

async fn read_once(
    cluster: &Cluster,
) -> std::result::Result<(Option<DynamicObject>, Vec<crate::report::ComponentLine>), ClusterError> {
    let fm = cluster.foreman().await?;
    let lines = cluster.components(fm.as_ref()).await?;
    Ok((fm, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(spec: Value, managed: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
            "metadata": {"name": "foreman", "namespace": "foreman", "managedFields": managed},
            "spec": spec,
        }))
        .unwrap()
    }

    fn ours(fields: Value) -> Value {
        json!([{"manager": "foreman-box", "operation": "Apply", "apiVersion": "app.theforeman.org/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": fields}])
    }

    #[test]
    fn absent_resource_is_created() {
        let want = applied(&foreman_box_bundle::default_foreman(
            Some("f.example.com"),
            2,
            true,
            true,
        ));
        assert_eq!(diff(&want, None), Diff::Create);
    }

    #[test]
    fn unchanged_resource_needs_nothing_even_with_defaults_filled_in() {
        let want = applied(&foreman_box_bundle::default_foreman(
            Some("f.example.com"),
            2,
            true,
            true,
        ));
        let mut spec = want["spec"].clone();
        // The API server fills in the schema's defaults; they are not ours to compare.
        spec["version"] = json!("3.18");
        let fm = live(
            spec,
            ours(
                json!({"f:spec": {"f:hostname": {}, "f:dynflow_workers": {}, "f:plugins": {"f:katello": {}, "f:remote_execution": {}}}}),
            ),
        );
        assert_eq!(diff(&want, Some(&fm)), Diff::Same);
    }

    #[test]
    fn changed_workers_and_plugin_are_named_with_old_and_new_values() {
        let before = applied(&foreman_box_bundle::default_foreman(
            Some("f.example.com"),
            2,
            true,
            true,
        ));
        let want = applied(&foreman_box_bundle::default_foreman(
            Some("f.example.com"),
            3,
            false,
            true,
        ));
        let fm = live(before["spec"].clone(), json!([]));
        assert_eq!(
            diff(&want, Some(&fm)),
            Diff::Update(vec![
                "spec.dynflow_workers 2 → 3".into(),
                "spec.plugins.katello true → false".into()
            ])
        );
    }

    #[test]
    fn a_field_we_set_before_and_no_longer_want_is_removed() {
        let want = json!({"spec": {"dynflow_workers": 2}});
        let fm = live(
            json!({"hostname": "old.example.com", "dynflow_workers": 2}),
            ours(json!({"f:spec": {"f:hostname": {}, "f:dynflow_workers": {}}})),
        );
        assert_eq!(
            diff(&want, Some(&fm)),
            Diff::Update(vec!["remove spec.hostname".into()])
        );
    }

    #[test]
    fn access_text_gives_the_command_never_a_password() {
        let t = access_text("foreman.example.com");
        assert!(t.contains("https://foreman.example.com"));
        assert!(t.contains("user:    admin"));
        assert!(t.contains(
            "kubectl -n foreman get secret foreman-generated -o jsonpath='{.data.admin-password}' | base64 -d"
        ));
        assert!(t.contains(
            "kept:    /etc/foreman-box/secrets/foreman-generated.yaml (the generated values; keep it with the databases)"
        ));
    }
}
