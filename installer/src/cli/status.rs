//! `foreman-box status`: what is installed here, read from the host without changing it.

use crate::steps::{k3s, postgres, storage, Context};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    pub k3s: K3sStatus,
    pub postgres: PostgresStatus,
    pub storage: StorageStatus,
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

pub fn gather(cx: &Context) -> Status {
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
                .exists(&host.path(k3s::KUBECONFIG))
                .then(|| k3s::KUBECONFIG.to_string()),
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
                .filter(|d| postgres::read_secret(host, d).ok().flatten().is_some())
                .map(|d| d.to_string())
                .collect(),
        },
        storage: StorageStatus {
            pulp_dir: cx.config.storage.pulp_dir.display().to_string(),
            present: storage::directories(&cx.config.storage.pulp_dir)
                .iter()
                .all(|d| host.path(d).is_dir()),
        },
    }
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
        "{k3s}\npostgres: {} mode{pg_service}, {roles}\nstorage:  {} {}\n",
        s.postgres.mode,
        s.storage.pulp_dir,
        if s.storage.present {
            "ready"
        } else {
            "not prepared"
        }
    )
}
