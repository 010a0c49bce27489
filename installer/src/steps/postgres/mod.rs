//! ConfigurePostgres: PostgreSQL outside the cluster. The distribution's server (local mode) or
//! the user's (external mode); roles and databases `foreman`, `candlepin`, `pulp`, each owned by
//! its role, UTF8, with scram-sha-256 passwords generated once and kept in 0600 files; reachable
//! from the pod network and loopback only (a managed pg_hba.conf block); tuned to the host; and
//! the Service, EndpointSlice and Secrets the cluster needs to find it.
//!
//! SQL goes through tokio-postgres; the only psql use is local mode's bootstrap as the `postgres`
//! OS user, with the statement on stdin. Passwords travel only as scram verifiers in SQL, never
//! in argv, logs, plan output or errors.

mod connection;
mod firewall;
mod hba;
mod local;
mod manifests;
mod original;
mod roles;
mod settings;

use crate::kept::{role_password_path, SECRETS_DIR};
pub use crate::postgres_error::PostgresError;

use super::{Action, Context, Step};
use crate::config::PostgresMode;
use crate::error::Result;
use connection::{Session, Target};
use futures::future::BoxFuture;
use std::net::IpAddr;
use std::sync::Arc;

/// The databases Foreman needs; each has a role of the same name that owns it.
pub(crate) const DATABASES: &[&str] = &["foreman", "candlepin", "pulp"];
/// Local mode's own superuser, created once through the `postgres` OS user.
pub(crate) const ADMIN_ROLE: &str = "foreman_box_admin";
pub(crate) const MANIFEST: &str = "foreman-box-postgres.yaml";
pub(crate) const SERVICE: &str = "postgres";

#[derive(Default)]
pub(crate) struct ConfigurePostgres;

impl Step for ConfigurePostgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn plan<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Action>>> {
        Box::pin(plan(cx))
    }
}

async fn plan(cx: &Context) -> Result<Vec<Action>> {
    let mut actions = Vec::new();
    // Temp files of killed runs beside the secrets (the manifests are DesiredFiles).
    let secrets: Vec<_> = DATABASES
        .iter()
        .chain([&ADMIN_ROLE])
        .map(|name| cx.host.path(role_password_path(name)))
        .collect();
    actions.extend(super::remove_stale_temps(&cx.host, &secrets));
    // Stored passwords must stay private: a loosened mode is repaired, with a warning.
    let secret_files: Vec<String> = DATABASES
        .iter()
        .chain([&ADMIN_ROLE])
        .map(|name| role_password_path(name))
        .collect();
    for (action, warning) in crate::kept::mode_repairs(cx, SECRETS_DIR, &secret_files)? {
        cx.reporter.warning("postgres", &warning);
        actions.push(action);
    }
    let target = match cx.config.postgres.mode {
        PostgresMode::External => connection::external_target(
            cx.config.postgres.admin_url.as_ref(),
            cx.postgres_admin_password.as_ref(),
        )?,
        PostgresMode::Local => match local::plan(cx, &mut actions)? {
            local::Server::Ready(t) => t,
            local::Server::Stopped | local::Server::Later => return Ok(actions),
        },
    };
    let db = Arc::new(Session::open(target).await?);
    actions.extend(plan_server(cx, &db).await?);
    Ok(actions)
}

/// Roles, databases, access rules, settings, firewall and manifests, given an admin connection.
/// Every action shares the connection, which stays open until the last one ran.
async fn plan_server(cx: &Context, db: &Arc<Session>) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    let passwords = roles::plan(cx, db, &mut out).await?;
    if manages_server(cx, &db.target) {
        let is_super: bool = db
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
                "checking privileges",
            )
            .await?
            .get(0);
        if !is_super {
            return Err(PostgresError::NotSuperuser {
                user: db.target.url.user.clone(),
                server: db.target.server(),
            }
            .into());
        }
        out.extend(original::plan_found(cx, db, &settings::TUNED).await?);
        let (hba, hba_changed) = hba::plan(cx, db).await?;
        out.extend(hba);
        out.extend(settings::plan(cx, db, hba_changed).await?);
    } else {
        cx.reporter.note(
            "postgres",
            &format!(
                "not managing pg_hba.conf or settings of the external server {} (postgres.manage_server)",
                db.target.server()
            ),
        );
    }
    if cx.facts.firewalld_running {
        out.extend(firewall::plan(cx));
    }
    out.extend(manifests::plan(cx, &db.target, &passwords)?);
    Ok(out)
}

/// The one reload of the server's configuration a run makes, after pg_hba.conf and the
/// settings were written.
fn reload(db: &Arc<Session>, why: &str) -> Action {
    let db = db.clone();
    Action::new("reload PostgreSQL's configuration", why, move |_| {
        Box::pin(async move {
            db.execute("SELECT pg_reload_conf()", "reloading the configuration")
                .await
        })
    })
}

/// Whether we own the server's access rules and settings.
fn manages_server(cx: &Context, t: &Target) -> bool {
    cx.config.postgres.manage_server.unwrap_or_else(|| {
        cx.config.postgres.mode == PostgresMode::Local
            || t.url.host == "localhost"
            || t.url
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}
