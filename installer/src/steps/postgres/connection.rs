//! The admin connection: one per run, opened while planning and shared by the actions, with
//! every wait bounded (a server that accepts and never answers fails after a while, naming
//! host:port).

use super::{PostgresError, ADMIN_ROLE};
use crate::config::AdminUrl;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::secret::Secret;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

/// Connecting and logging in, all of it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One statement. CREATE DATABASE copies template0, which takes well under this.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the admin connection goes.
#[derive(Clone)]
pub(super) struct Target {
    pub url: AdminUrl,
    pub password: Secret,
    /// For connecting and logging in, all of it.
    pub connect_timeout: Duration,
}

impl Target {
    pub(crate) fn server(&self) -> String {
        format!("{}:{}", self.url.host, self.url.port)
    }
}

/// The admin connection, reconnected on demand after a restart.
pub(super) struct Session {
    pub target: Target,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Session {
    pub(crate) async fn open(target: Target) -> Result<Self> {
        let client = connect(&target).await?;
        Ok(Session {
            target,
            client: tokio::sync::Mutex::new(Some(client)),
        })
    }

    /// Forgets the connection (the server is about to restart); the next statement reconnects.
    pub(crate) async fn disconnect(&self) {
        *self.client.lock().await = None;
    }

    pub(crate) async fn execute(&self, statement: &str, what: &str) -> Result<()> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        self.bounded(what, client.batch_execute(statement)).await
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> Result<Vec<Row>> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        self.bounded(what, client.query(sql, params)).await
    }

    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> Result<Option<Row>> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        self.bounded(what, client.query_opt(sql, params)).await
    }

    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> Result<Row> {
        let mut guard = self.client.lock().await;
        let client = self.connected(&mut guard).await?;
        self.bounded(what, client.query_one(sql, params)).await
    }

    async fn connected<'g>(&self, slot: &'g mut Option<Client>) -> Result<&'g Client> {
        if slot.is_none() {
            *slot = Some(connect(&self.target).await?);
        }
        Ok(slot.as_ref().expect("connected just above"))
    }

    async fn bounded<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, work).await {
            Ok(result) => result.map_err(|source| {
                Error::Postgres(PostgresError::Query {
                    server: self.target.server(),
                    what: what.to_string(),
                    source,
                })
            }),
            Err(_) => Err(PostgresError::Timeout {
                server: self.target.server(),
                what: what.to_string(),
                after: STATEMENT_TIMEOUT,
            }
            .into()),
        }
    }
}

async fn connect(t: &Target) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&t.url.host)
        .port(t.url.port)
        .user(&t.url.user)
        .password(t.password.expose())
        .dbname(&t.url.database)
        .application_name("foreman-box")
        .connect_timeout(t.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    // connect_timeout covers the TCP connect only; the startup and login are bounded here.
    match tokio::time::timeout(t.connect_timeout, cfg.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            Ok(client)
        }
        Ok(Err(e)) => Err(classify(t, e).into()),
        Err(_) => Err(PostgresError::Timeout {
            server: t.server(),
            what: format!("connecting and logging in as `{}`", t.url.user),
            after: t.connect_timeout,
        }
        .into()),
    }
}

fn classify(t: &Target, e: tokio_postgres::Error) -> PostgresError {
    let server = t.server();
    let user = t.url.user.clone();
    match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => PostgresError::AuthFailed { server, user },
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => PostgresError::Rejected {
            server,
            user,
            reason: e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        },
        _ => PostgresError::Unreachable {
            server,
            reason: std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string()),
        },
    }
}

/// The external server named by the configuration.
pub(super) fn external_target(url: Option<&AdminUrl>, password: Option<&Secret>) -> Result<Target> {
    let url = url.cloned().ok_or(PostgresError::NoAdminPassword)?;
    let password = password.cloned().ok_or(PostgresError::NoAdminPassword)?;
    Ok(Target {
        url,
        password,
        connect_timeout: CONNECT_TIMEOUT,
    })
}

/// Local mode's server, through our own admin role.
pub(super) fn local_target(host: &Host) -> Result<Target> {
    let password = crate::kept::read_role_password(host, ADMIN_ROLE)?.ok_or_else(|| {
        PostgresError::NoLocalAdmin {
            secret: crate::kept::role_password_path(ADMIN_ROLE),
        }
    })?;
    Ok(Target {
        url: AdminUrl {
            user: ADMIN_ROLE.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            database: "postgres".into(),
        },
        password,
        connect_timeout: CONNECT_TIMEOUT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that accepts the connection and never says a word.
    #[tokio::test]
    async fn silent_server_fails_after_the_connect_timeout_naming_host_and_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let target = Target {
            url: AdminUrl {
                user: "admin".into(),
                host: "127.0.0.1".into(),
                port,
                database: "postgres".into(),
            },
            password: Secret::new("pw"),
            connect_timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = match Session::open(target).await {
            Ok(_) => panic!("a silent server cannot be logged in to"),
            Err(e) => e.to_string(),
        };
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert!(
            err.contains(&format!(
                "PostgreSQL at 127.0.0.1:{port} did not answer within 300ms"
            )),
            "{err}"
        );
        assert!(
            err.contains("connecting and logging in as `admin`"),
            "{err}"
        );
        assert!(err.contains("help:"), "{err}");
        held.abort();
    }
}
