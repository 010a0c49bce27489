//! `foreman-box status`: what is installed here, read from the host without changing it.

use crate::cluster::{self, Cluster, ConditionView};
use crate::steps::{k3s, postgres, storage, ComponentLine, Context};
use serde::Serialize;
use std::time::Duration;

/// How long `status` gives the cluster to answer before it says it is unreachable.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize)]
pub struct Status {
    pub k3s: K3sStatus,
    pub postgres: PostgresStatus,
    pub storage: StorageStatus,
    pub foreman: ForemanStatus,
}

/// The Foreman resource as the cluster reports it, or why the cluster could not be asked.
#[derive(Debug, Serialize)]
pub struct ForemanStatus {
    pub kubeconfig: String,
    pub reachable: bool,
    /// Why the cluster could not be read (k3s not running, no kubeconfig, ...).
    pub problem: Option<String>,
    /// None when the resource does not exist (yet).
    pub resource: Option<ResourceStatus>,
}

#[derive(Debug, Serialize)]
pub struct ResourceStatus {
    pub name: String,
    pub ready: bool,
    pub url: Option<String>,
    pub conditions: Vec<ConditionView>,
    pub components: Vec<ComponentLine>,
}

#[derive(Debug, Serialize)]
pub struct K3sStatus {
    pub installed: bool,
    pub version: Option<String>,
    pub binary: String,
    pub service: String,
    pub kubeconfig: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PostgresStatus {
    pub mode: String,
    pub service: Option<String>,
    /// Roles whose generated password is stored (the passwords themselves are never shown).
    pub roles_with_stored_password: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StorageStatus {
    pub pulp_dir: String,
    pub present: bool,
}

pub async fn gather(cx: &Context) -> Status {
    let host = &cx.host;
    let fs = host.fs();
    let managed = host.is_real_root();
    let service = |unit: &str| {
        if managed {
            host.services().state(unit)
        } else {
            "unknown (--root)".to_string()
        }
    };
    let version = fs
        .read_string(&host.path(k3s::VERSION_STAMP))
        .ok()
        .flatten()
        .map(|s| s.trim().to_string());
    let local = cx.config.postgres.mode == crate::config::PostgresMode::Local;
    Status {
        k3s: K3sStatus {
            installed: fs.exists(&host.path(k3s::BINARY)),
            version,
            binary: k3s::BINARY.into(),
            service: service("k3s"),
            kubeconfig: fs
                .exists(&host.path(crate::cluster::KUBECONFIG))
                .then(|| crate::cluster::KUBECONFIG.to_string()),
        },
        postgres: PostgresStatus {
            mode: if local {
                "local".into()
            } else {
                "external".into()
            },
            service: local.then(|| service("postgresql")),
            roles_with_stored_password: postgres::DATABASES
                .iter()
                .filter(|d| {
                    crate::kept::read_role_password(host, d)
                        .ok()
                        .flatten()
                        .is_some()
                })
                .map(|d| d.to_string())
                .collect(),
        },
        storage: StorageStatus {
            pulp_dir: cx.config.storage.pulp_dir.display().to_string(),
            present: storage::directories(&cx.config.storage.pulp_dir)
                .iter()
                .all(|d| host.path(d).is_dir()),
        },
        foreman: foreman(cx).await,
    }
}

/// Reads the resource and its components, bounded; an unreachable cluster is a finding, not an
/// error: the rest of the status is still worth showing.
async fn foreman(cx: &Context) -> ForemanStatus {
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let shown = cluster::kubeconfig_path(&cx.host, explicit).1;
    let read = async {
        let c = Cluster::connect(&cx.host, explicit).await?;
        let fm = c.foreman().await?;
        let components = c.components(fm.as_ref()).await?;
        Ok::<_, cluster::ClusterError>(fm.map(|fm| ResourceStatus {
            name: format!("{}/{}", foreman_box_bundle::NAMESPACE, cluster::RESOURCE),
            ready: cluster::is_ready(&fm),
            url: fm.data["status"]["url"].as_str().map(str::to_string),
            conditions: cluster::conditions(&fm),
            components,
        }))
    };
    let (reachable, problem, resource) = match tokio::time::timeout(CLUSTER_TIMEOUT, read).await {
        Ok(Ok(resource)) => (true, None, resource),
        Ok(Err(e)) => (false, Some(problem(&e)), None),
        Err(_) => (
            false,
            Some(format!(
                "the Kubernetes API did not answer within {}s",
                CLUSTER_TIMEOUT.as_secs()
            )),
            None,
        ),
    };
    ForemanStatus {
        kubeconfig: shown.display().to_string(),
        reachable,
        problem,
        resource,
    }
}

/// The error's first line and its innermost cause: enough to see why, on one line.
fn problem(e: &cluster::ClusterError) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    match innermost {
        Some(cause) if !first.contains(&cause) => format!("{first}: {cause}"),
        _ => first,
    }
}

fn render_foreman(f: &ForemanStatus) -> String {
    if !f.reachable {
        return format!(
            "foreman:  k3s not reachable through {} ({})\n",
            f.kubeconfig,
            f.problem.as_deref().unwrap_or("unknown")
        );
    }
    let Some(r) = &f.resource else {
        return "foreman:  no Foreman resource yet (`foreman-box install` creates it)\n".into();
    };
    let mut out = format!(
        "foreman:  {} {}{}\n",
        r.name,
        if r.ready { "Ready" } else { "not Ready" },
        r.url
            .as_ref()
            .map(|u| format!(" at {u}"))
            .unwrap_or_default()
    );
    for c in &r.conditions {
        out.push_str(&format!("  {}={} ({})", c.type_, c.status, c.reason));
        if !c.message.is_empty() {
            out.push_str(&format!(": {}", c.message));
        }
        out.push('\n');
    }
    for l in &r.components {
        out.push_str(&format!(
            "  {} {:<24} {:<12} {}\n",
            if l.ready { "✓" } else { "…" },
            l.name,
            l.progress,
            l.reason.as_deref().unwrap_or("")
        ));
    }
    out
}

pub fn render(s: &Status) -> String {
    let k3s = match (&s.k3s.installed, &s.k3s.version) {
        (true, Some(v)) => format!(
            "k3s:      {v} at {}, service {}",
            s.k3s.binary, s.k3s.service
        ),
        (true, None) => format!(
            "k3s:      installed at {}, service {}",
            s.k3s.binary, s.k3s.service
        ),
        (false, _) => "k3s:      not installed".to_string(),
    };
    let roles = if s.postgres.roles_with_stored_password.is_empty() {
        "no roles yet".to_string()
    } else {
        format!("roles {}", s.postgres.roles_with_stored_password.join(", "))
    };
    let pg_service = s
        .postgres
        .service
        .as_ref()
        .map(|v| format!(", service {v}"))
        .unwrap_or_default();
    format!(
        "{k3s}\npostgres: {} mode{pg_service}, {roles}\nstorage:  {} {}\n{}",
        s.postgres.mode,
        s.storage.pulp_dir,
        if s.storage.present {
            "ready"
        } else {
            "not prepared"
        },
        render_foreman(&s.foreman)
    )
}
