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

use crate::action::{remove_stale_temps, wrap};
use crate::action::{HostOp, Planned};
use crate::config::PostgresMode;
use crate::context::Context;
use crate::error::Result;
use crate::secret::Secret;
use connection::{Session, Target};
use futures::future::BoxFuture;
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The databases Foreman needs; each has a role of the same name that owns it.
pub(crate) const DATABASES: &[&str] = &["foreman", "candlepin", "pulp"];
/// Local mode's own superuser, created once through the `postgres` OS user.
pub(crate) const ADMIN_ROLE: &str = "foreman_box_admin";
pub(crate) const MANIFEST: &str = "foreman-box-postgres.yaml";
pub(crate) const SERVICE: &str = "postgres";

/// What this step changes beyond the host's common operations. Passwords are carried to
/// `apply`, never shown or serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// The server's state before foreman-box changed it, recorded once (never rewritten).
    RecordOriginal {
        #[serde(skip)]
        record: String,
    },
    /// `postgresql-setup --initdb` (Red Hat's packages leave the cluster to be made).
    InitCluster,
    /// Our superuser made through the `postgres` OS user, and the pg_hba.conf block that lets
    /// it in over loopback; the password is stored first when it was generated.
    BootstrapAdmin {
        #[serde(skip)]
        password: Secret,
        generated: bool,
        #[serde(skip)]
        block: String,
    },
    /// Everything that needs the running server, planned and run once it runs.
    ConfigureOnceRunning,
    /// A login role with a scram-sha-256 password (stored first when it was generated).
    CreateRole {
        name: String,
        #[serde(skip)]
        password: Secret,
        generated: bool,
    },
    /// A role's md5 password stored again as a scram-sha-256 verifier.
    StoreScram {
        name: String,
        #[serde(skip)]
        password: Secret,
    },
    /// A UTF8 database owned by the role of its name.
    CreateDatabase {
        name: String,
    },
    SetOwner {
        name: String,
    },
    /// `ALTER SYSTEM SET`.
    Set {
        name: String,
        value: String,
    },
    /// The managed block of pg_hba.conf (the server's own path, not under --root).
    WriteHba {
        path: PathBuf,
        #[serde(skip)]
        content: String,
        #[serde(serialize_with = "crate::desired::octal")]
        mode: u32,
    },
    /// `pg_reload_conf()`: the one reload of the server's configuration a run makes.
    Reload,
    /// The local server restarted for settings that take effect only then.
    Restart,
    /// A network trusted in firewalld's permanent configuration.
    TrustSource {
        cidr: String,
    },
    ReloadFirewall,
    #[serde(untagged)]
    Host(HostOp),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::RecordOriginal { .. } => write!(
                f,
                "record the PostgreSQL server's state before foreman-box changes it in {}",
                original::RECORD
            ),
            Op::InitCluster => f.write_str("initialise /var/lib/pgsql/data"),
            Op::BootstrapAdmin { .. } => write!(
                f,
                "create or update admin role {ADMIN_ROLE} and the foreman-box block in pg_hba.conf"
            ),
            Op::ConfigureOnceRunning => write!(
                f,
                "once the server runs: create roles and databases {}, restrict access to loopback and the pod network, tune its settings, write the cluster's manifests",
                DATABASES.join(", ")
            ),
            Op::CreateRole {
                name,
                generated: true,
                ..
            } => write!(f, "create role {name} with a generated scram-sha-256 password"),
            Op::CreateRole { name, .. } => write!(
                f,
                "create role {name} with the password stored in {}",
                role_password_path(name)
            ),
            Op::StoreScram { name, .. } => {
                write!(f, "store role {name}'s password as scram-sha-256")
            }
            Op::CreateDatabase { name } => write!(f, "create database {name} (UTF8, owner {name})"),
            Op::SetOwner { name } => write!(f, "make {name} the owner of database {name}"),
            Op::Set { name, value } => write!(f, "set {name} = '{value}'"),
            Op::WriteHba { path, .. } => {
                write!(f, "update the foreman-box block in {}", path.display())
            }
            Op::Reload => f.write_str("reload PostgreSQL's configuration"),
            Op::Restart => f.write_str("restart postgresql"),
            Op::TrustSource { cidr } => write!(f, "trust {cidr} in firewalld"),
            Op::ReloadFirewall => f.write_str("reload firewalld"),
            Op::Host(op) => op.fmt(f),
        }
    }
}

/// Runs this step's operations over one admin session, opened when one first needs it.
#[derive(Default)]
pub struct Runner {
    session: Option<Arc<Session>>,
}

impl Runner {
    async fn session(&mut self, cx: &Context) -> Result<Arc<Session>> {
        if let Some(db) = &self.session {
            return Ok(db.clone());
        }
        let db = Arc::new(Session::open(target(cx)?).await?);
        self.session = Some(db.clone());
        Ok(db)
    }

    pub fn run<'a>(&'a mut self, cx: &'a Context, op: Op) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match op {
                Op::RecordOriginal { record } => original::write(&cx.host, &record),
                Op::InitCluster => local::init_cluster(cx),
                Op::BootstrapAdmin {
                    password,
                    generated,
                    block,
                } => local::bootstrap_admin(cx, &password, generated, &block),
                Op::ConfigureOnceRunning => {
                    let db = self.session(cx).await?;
                    for planned in plan_server(cx, &db).await? {
                        cx.reporter.changed("postgres", &planned.change());
                        self.run(cx, planned.op).await?;
                    }
                    Ok(())
                }
                Op::CreateRole {
                    name,
                    password,
                    generated,
                } => {
                    let db = self.session(cx).await?;
                    roles::create_role(cx, &db, &name, &password, generated).await
                }
                Op::StoreScram { name, password } => {
                    let db = self.session(cx).await?;
                    roles::store_scram(&db, &name, &password).await
                }
                Op::CreateDatabase { name } => {
                    let db = self.session(cx).await?;
                    roles::create_database(&db, &name).await
                }
                Op::SetOwner { name } => {
                    let db = self.session(cx).await?;
                    roles::set_owner(&db, &name).await
                }
                Op::Set { name, value } => {
                    let stmt = format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', ""));
                    let db = self.session(cx).await?;
                    db.execute(&stmt, &format!("setting {name}")).await
                }
                Op::WriteHba {
                    path,
                    content,
                    mode,
                } => Ok(cx
                    .host
                    .fs()
                    .write_atomic(&path, content.as_bytes(), mode)
                    .map(|_| ())?),
                Op::Reload => self.reload(cx).await,
                Op::Restart => {
                    if let Some(db) = &self.session {
                        db.disconnect().await;
                    }
                    Ok(cx.host.services().restart("postgresql")?)
                }
                Op::TrustSource { cidr } => firewall::trust(cx, &cidr),
                Op::ReloadFirewall => firewall::reload(cx),
                Op::Host(op) => op.run(&cx.host),
            }
        })
    }

    /// The local server is told as the `postgres` OS user (which needs no pg_hba entry, so
    /// this also makes a new admin block count); an external one over the admin session.
    async fn reload(&mut self, cx: &Context) -> Result<()> {
        const RELOAD: &str = "SELECT pg_reload_conf()";
        match cx.config.postgres.mode {
            PostgresMode::Local => local::psql_run(cx, &format!("{RELOAD};\n")),
            PostgresMode::External => {
                let db = self.session(cx).await?;
                db.execute(RELOAD, "reloading the configuration").await
            }
        }
    }
}

/// The admin connection this run uses, as the configuration and the host say.
fn target(cx: &Context) -> Result<Target> {
    match cx.config.postgres.mode {
        PostgresMode::External => connection::external_target(
            cx.config.postgres.admin_url.as_ref(),
            cx.postgres_admin_password.as_ref(),
        ),
        PostgresMode::Local => connection::local_target(&cx.host),
    }
}

pub(super) async fn plan(cx: &Context) -> Result<Vec<Planned<Op>>> {
    let mut actions = Vec::new();
    // Temp files of killed runs beside the secrets (the manifests are DesiredFiles).
    let secrets: Vec<_> = DATABASES
        .iter()
        .chain([&ADMIN_ROLE])
        .map(|name| cx.host.path(role_password_path(name)))
        .collect();
    actions.extend(wrap(remove_stale_temps(&cx.host, &secrets), Op::Host));
    // Stored passwords must stay private: a loosened mode is repaired, with a warning.
    let secret_files: Vec<String> = DATABASES
        .iter()
        .chain([&ADMIN_ROLE])
        .map(|name| role_password_path(name))
        .collect();
    for (action, warning) in crate::kept::mode_repairs(cx, SECRETS_DIR, &secret_files)? {
        cx.reporter.warning("postgres", &warning);
        actions.push(action.map(Op::Host));
    }
    if cx.config.postgres.mode == PostgresMode::Local {
        match local::plan(cx, &mut actions)? {
            local::Server::Ready => {}
            local::Server::Stopped | local::Server::Later => return Ok(actions),
        }
    }
    let target = target(cx)?;
    let db = Arc::new(Session::open(target).await?);
    actions.extend(plan_server(cx, &db).await?);
    Ok(actions)
}

/// Roles, databases, access rules, settings, firewall and manifests, given an admin connection.
/// Every action shares the connection, which stays open until the last one ran.
async fn plan_server(cx: &Context, db: &Arc<Session>) -> Result<Vec<Planned<Op>>> {
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
