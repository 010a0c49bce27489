//! The databases as backup, restore and health see them: the admin login (local mode's own
//! superuser, or the external server's from the configuration), SQL through tokio-postgres,
//! and `pg_dump` / `pg_restore` through the command runner with the password in a 0600
//! password file (libpq's `passfile`), never in argv or the environment.

use super::DayTwoError;
use crate::config::PostgresMode;
use crate::error::Result;
use crate::host::{Cmd, Host};
use crate::kept::{read_role_password, role_password_path};
use crate::secret::Secret;
use crate::steps::postgres::{ADMIN_ROLE, DATABASES};
use crate::steps::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `pg_dump` waits for a table lock before giving up (a writer that holds one).
pub const LOCK_WAIT: &str = "60s";
/// Where the password files of a run live (0700, removed when the run ends).
const PASSFILE_DIR: &str = "/run/foreman-box";

/// The databases backed up and restored, each owned by its role of the same name.
pub fn databases() -> &'static [&'static str] {
    DATABASES
}

/// An admin login to the server that holds the databases.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
}

impl Server {
    pub fn shown(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The admin login of this configuration.
    pub fn admin(cx: &Context) -> Result<Server> {
        match cx.config.postgres.mode {
            PostgresMode::Local => {
                let password = read_role_password(&cx.host, ADMIN_ROLE)?.ok_or_else(|| {
                    DayTwoError::NoAdminLogin {
                        secret: role_password_path(ADMIN_ROLE),
                    }
                })?;
                Ok(Server {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    user: ADMIN_ROLE.into(),
                    password,
                })
            }
            PostgresMode::External => {
                let url = cx.config.postgres.admin_url.as_ref().ok_or_else(|| {
                    DayTwoError::NoAdminLogin {
                        secret: "postgres.admin_url".into(),
                    }
                })?;
                let password = cx.postgres_admin_password.clone().ok_or_else(|| {
                    DayTwoError::NoAdminLogin {
                        secret:
                            "postgres.admin_password_file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD"
                                .into(),
                    }
                })?;
                Ok(Server {
                    host: url.host.clone(),
                    port: url.port,
                    user: url.user.clone(),
                    password,
                })
            }
        }
    }

    /// A connection to `database`, bounded.
    pub async fn connect(&self, database: &str) -> Result<Client> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(self.password.expose())
            .dbname(database)
            .application_name("foreman-box")
            .connect_timeout(CONNECT_TIMEOUT);
        let what = format!("connecting to database {database} as {}", self.user);
        let (client, conn) = bounded(self, &what, CONNECT_TIMEOUT, cfg.connect(NoTls)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }

    /// `SELECT count(*) ...` when `table` exists in `database`, else 0 (a database a product
    /// never migrated has no tasks).
    pub async fn count_if_table(
        &self,
        client: &Client,
        table: &str,
        sql: &str,
        what: &str,
    ) -> Result<u64> {
        let exists = bounded(
            self,
            what,
            STATEMENT_TIMEOUT,
            client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]),
        )
        .await?;
        if !exists.get::<_, bool>(0) {
            return Ok(0);
        }
        let row = bounded(self, what, STATEMENT_TIMEOUT, client.query_one(sql, &[])).await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    pub async fn execute(&self, client: &Client, sql: &str, what: &str) -> Result<()> {
        bounded(self, what, STATEMENT_TIMEOUT, client.batch_execute(sql)).await
    }

    /// The server's version, `15.4` style.
    pub async fn version(&self, client: &Client) -> Result<(u32, String)> {
        let row = bounded(
            self,
            "reading the server version",
            STATEMENT_TIMEOUT,
            client.query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            ),
        )
        .await?;
        Ok((row.get::<_, i32>(0) as u32, row.get(1)))
    }

    /// A libpq connection string for `database` reading the password from `passfile`. Every
    /// value was validated where it was read (host, user) or is ours (database, path).
    pub fn conninfo(&self, database: &str, passfile: &Path) -> String {
        format!(
            "host={} port={} user={} dbname={database} passfile={} connect_timeout=10 application_name=foreman-box",
            quote(&self.host),
            self.port,
            quote(&self.user),
            quote(&passfile.display().to_string())
        )
    }
}

async fn bounded<T>(
    server: &Server,
    what: &str,
    limit: Duration,
    work: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(DayTwoError::Database {
            server: server.shown(),
            what: what.to_string(),
            source,
        }
        .into()),
        Err(_) => Err(DayTwoError::DatabaseTimeout {
            server: server.shown(),
            what: what.to_string(),
            secs: limit.as_secs(),
        }
        .into()),
    }
}

/// A libpq connection-string value: quoted, with `\` and `'` escaped.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A `.pgpass` line field: `:` and `\` escaped (libpq's rule).
fn pgpass_field(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

/// A 0600 password file for one server in a 0700 directory of this run, removed on drop.
pub struct PassFile {
    host: Host,
    dir: PathBuf,
    pub path: PathBuf,
}

impl PassFile {
    pub fn new(host: &Host, server: &Server) -> Result<PassFile> {
        let run = host.path(PASSFILE_DIR);
        host.fs().ensure_dir(&run, 0o700)?;
        let dir = run.join(format!("pg-{}", std::process::id()));
        host.fs().ensure_dir(&dir, 0o700)?;
        let path = dir.join("pgpass");
        let line = format!(
            "{}:{}:*:{}:{}\n",
            pgpass_field(&server.host),
            server.port,
            pgpass_field(&server.user),
            pgpass_field(server.password.expose())
        );
        host.fs().write_atomic(&path, line.as_bytes(), 0o600)?;
        Ok(PassFile {
            host: host.clone(),
            dir,
            path,
        })
    }
}

impl Drop for PassFile {
    fn drop(&mut self) {
        let _ = self.host.fs().remove_tree(&self.dir);
    }
}

/// `pg_dump -Fc` of `database` into `file` (which it creates; the caller's directory is
/// 0700). foremanctl dumps the same way (src/roles/backup/tasks/database_dumps.yaml, 3.0.0:
/// `pg_dump --format=custom --file=... DB`).
pub fn dump_cmd(server: &Server, database: &str, passfile: &Path, file: &Path) -> Cmd {
    Cmd::new("pg_dump").args([
        "--format=custom".to_string(),
        format!("--file={}", file.display()),
        format!("--lock-wait-timeout={LOCK_WAIT}"),
        "--no-password".to_string(),
        format!("--dbname={}", server.conninfo(database, passfile)),
    ])
}

/// `pg_restore` of a dump into the (empty) `database` owned by role `database`: every object
/// is created as that role (`--role`, `--no-owner`), in one transaction that stops at the first
/// error.
pub fn restore_cmd(server: &Server, database: &str, passfile: &Path, file: &Path) -> Cmd {
    Cmd::new("pg_restore").args([
        format!("--dbname={}", server.conninfo(database, passfile)),
        format!("--role={database}"),
        "--no-owner".to_string(),
        "--exit-on-error".to_string(),
        "--single-transaction".to_string(),
        "--no-password".to_string(),
        file.display().to_string(),
    ])
}

/// `pg_restore --list`: reads the whole table of contents of a dump without a server.
pub fn list_cmd(file: &Path) -> Cmd {
    Cmd::new("pg_restore").args(["--list".to_string(), file.display().to_string()])
}

/// Running Foreman tasks, foreman-maintain's rule: state `running`, less the actions that always
/// run (theforeman/foreman_maintain definitions/features/foreman_tasks.rb,
/// EXCLUDE_ACTIONS_FOR_RUNNING_TASKS and running_tasks_count; the check that uses it is
/// definitions/checks/foreman_tasks/not_running.rb).
pub const RUNNING_FOREMAN_TASKS: &str = "SELECT count(*) FROM foreman_tasks_tasks WHERE state IN ('running') AND label NOT IN ('Actions::Candlepin::ListenOnCandlepinEvents', 'Actions::Katello::EventQueue::Monitor', 'Actions::Insights::EmailPoller')";
/// Running Pulp tasks, foremanctl's rule (src/roles/backup/tasks/preflight.yaml, 3.0.0:
/// `/pulp/api/v3/tasks/?state__in=running,waiting`), read from pulpcore's table.
pub const RUNNING_PULP_TASKS: &str =
    "SELECT count(*) FROM core_task WHERE state IN ('running', 'waiting')";
/// Paused Foreman tasks: they wait for a person (foreman-maintain's paused_tasks_count counts
/// those whose result is `error`; every paused task is counted here, and the errored ones named).
pub const PAUSED_TASKS: &str = "SELECT count(*) FROM foreman_tasks_tasks WHERE state = 'paused'";
pub const PAUSED_ERROR_TASKS: &str =
    "SELECT count(*) FROM foreman_tasks_tasks WHERE state = 'paused' AND result = 'error'";

/// (running Foreman tasks, running or waiting Pulp tasks).
pub async fn running_tasks(server: &Server) -> Result<(u64, u64)> {
    let foreman = server.connect("foreman").await?;
    let f = server
        .count_if_table(
            &foreman,
            "foreman_tasks_tasks",
            RUNNING_FOREMAN_TASKS,
            "counting running Foreman tasks",
        )
        .await?;
    let pulp = server.connect("pulp").await?;
    let p = server
        .count_if_table(
            &pulp,
            "core_task",
            RUNNING_PULP_TASKS,
            "counting running Pulp tasks",
        )
        .await?;
    Ok((f, p))
}

/// Drops `database` (after closing its sessions) and creates it empty, owned by its role.
pub async fn recreate(server: &Server, database: &str) -> Result<()> {
    debug_assert!(DATABASES.contains(&database));
    let admin = server.connect("postgres").await?;
    server
        .execute(
            &admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            ),
            &format!("closing the sessions of database {database}"),
        )
        .await?;
    server
        .execute(
            &admin,
            &format!("DROP DATABASE IF EXISTS \"{database}\""),
            &format!("dropping database {database}"),
        )
        .await?;
    server
        .execute(
            &admin,
            &format!(
                "CREATE DATABASE \"{database}\" OWNER \"{database}\" ENCODING 'UTF8' TEMPLATE template0"
            ),
            &format!("creating database {database}"),
        )
        .await
}

/// Databases among ours that hold tables of their own.
pub async fn populated(server: &Server) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let admin = server.connect("postgres").await?;
    for &db in DATABASES {
        let row = bounded(
            server,
            "listing databases",
            STATEMENT_TIMEOUT,
            admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db]),
        )
        .await?;
        if row.is_none() {
            continue;
        }
        let c = server.connect(db).await?;
        let n = bounded(
            server,
            "counting tables",
            STATEMENT_TIMEOUT,
            c.query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            ),
        )
        .await?;
        if n.get::<_, i64>(0) > 0 {
            out.push(db.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_and_pgpass_quote_what_would_split_them() {
        let s = Server {
            host: "db.example.com".into(),
            port: 5433,
            user: "admin".into(),
            password: Secret::new("p:w\\d"),
        };
        let info = s.conninfo("foreman", Path::new("/run/foreman-box/pg-1/pgpass"));
        assert_eq!(
            info,
            "host='db.example.com' port=5433 user='admin' dbname=foreman passfile='/run/foreman-box/pg-1/pgpass' connect_timeout=10 application_name=foreman-box"
        );
        assert!(!info.contains("p:w"));
        assert_eq!(pgpass_field("p:w\\d"), "p\\:w\\\\d");
        let cmd = dump_cmd(&s, "foreman", Path::new("/p"), Path::new("/b/foreman.dump"));
        assert!(!cmd.display().contains("p:w"), "{}", cmd.display());
    }
}
