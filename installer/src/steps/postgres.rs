//! ConfigurePostgres: PostgreSQL outside the cluster. The distribution's server (local mode) or
//! the user's (external mode); roles and databases `foreman`, `candlepin`, `pulp`, each owned by
//! its role, UTF8, with scram-sha-256 passwords generated once and kept in 0600 files; reachable
//! from the pod network and loopback only (a managed pg_hba.conf block); tuned to the host; and
//! the Service, EndpointSlice and Secrets the cluster needs to find it.
//!
//! SQL goes through tokio-postgres; the only psql use is local mode's bootstrap as the `postgres`
//! OS user, with the statement on stdin. Passwords travel only as scram verifiers in SQL, never
//! in argv, logs, plan output or errors.

use super::{Change, Context, DesiredFile, Step};
use crate::config::{AdminUrl, PostgresMode};
use crate::error::{Error, Result};
use crate::facts::OsFamily;
use crate::host::{Cmd, Host, PackageManager};
use crate::manifests::{self, labels, NAMESPACE};
use crate::secret::Secret;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// The databases Foreman needs; each has a role of the same name that owns it.
pub const DATABASES: &[&str] = &["foreman", "candlepin", "pulp"];
/// Local mode's own superuser, created once through the `postgres` OS user.
pub const ADMIN_ROLE: &str = "foreman_box_admin";
pub const SECRETS_DIR: &str = "/etc/foreman-box/secrets";
pub const MANIFEST: &str = "foreman-box-postgres.yaml";
pub const SERVICE: &str = "postgres";
const HBA_BEGIN: &str =
    "# BEGIN foreman-box: managed block, replaced on every `foreman-box install`";
const HBA_END: &str = "# END foreman-box";

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot log in to PostgreSQL at {server}: the server refused the password for `{user}`\nhelp: check postgres.admin_password_file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD; nothing was changed")]
    AuthFailed { server: String, user: String },
    #[error("cannot reach PostgreSQL at {server}: {reason}\nhelp: is the server running and listening there? check postgres.admin_url; nothing was changed")]
    Unreachable { server: String, reason: String },
    #[error("PostgreSQL at {server} does not let `{user}` in from here: {reason}\nhelp: allow this host in the server's pg_hba.conf; nothing was changed")]
    Rejected {
        server: String,
        user: String,
        reason: String,
    },
    #[error("external PostgreSQL needs the admin password\nhelp: write it to a 0600 file named by postgres.admin_password_file, or set FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD")]
    NoAdminPassword,
    #[error("role `{role}` already exists on {server}, but foreman-box has no password for it in {secret}\nhelp: if you know its password, write it to {secret} (mode 0600) and re-run; if the role is left over and holds nothing you need, drop it (DROP ROLE {role}) and re-run. Nothing was changed.")]
    UnknownRolePassword {
        role: String,
        server: String,
        secret: String,
    },
    #[error("role `{role}` on {server} has a password other than the one stored in {secret}\nhelp: foreman-box does not rotate passwords on its own: put the role's current password in {secret}, or set the role's password to the stored one (ALTER ROLE {role} PASSWORD ...), then re-run. Nothing was changed.")]
    RolePasswordMismatch {
        role: String,
        server: String,
        secret: String,
    },
    #[error("database `{database}` on {server} has encoding {encoding}, Foreman needs UTF8\nhelp: move its data elsewhere and drop it; foreman-box never drops a database")]
    NotUtf8 {
        database: String,
        server: String,
        encoding: String,
    },
    #[error("`{user}` on {server} is not a superuser, which managing pg_hba.conf and server settings needs\nhelp: use a superuser in postgres.admin_url, or set postgres.manage_server = false and configure pg_hba.conf yourself")]
    NotSuperuser { user: String, server: String },
    #[error("postgres.mode = \"local\" installs and runs this machine's PostgreSQL server, which a --root run must not touch\nhelp: use --postgres-mode external with --postgres-admin-url, or skip the step (--only)")]
    LocalUnderRoot,
    #[error("local PostgreSQL is not supported on this distribution\nhelp: use postgres.mode = \"external\" with your own server")]
    NoPackageManager,
    #[error("PostgreSQL at {server}: {what} failed")]
    Query {
        server: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Where the admin connection goes.
#[derive(Clone)]
struct Target {
    url: AdminUrl,
    password: Secret,
}

impl Target {
    fn server(&self) -> String {
        format!("{}:{}", self.url.host, self.url.port)
    }
}

#[derive(Debug, Clone)]
enum Action {
    InstallPackages(PackageManager, Vec<&'static str>),
    InitDb,
    StartService,
    BootstrapAdmin,
    /// Everything that needs a connection, planned once the server is up.
    ConvergeServer,
    CreateRole(&'static str),
    UpgradeVerifier(&'static str),
    CreateDatabase(&'static str),
    SetOwner(&'static str),
    WriteHba {
        path: PathBuf,
        content: String,
    },
    AlterSystem {
        name: &'static str,
        value: String,
    },
    ReloadConf,
    RestartService,
    TrustSource(String),
    ReloadFirewall,
    WriteManifests,
}

#[derive(Default)]
pub struct ConfigurePostgres;

impl Step for ConfigurePostgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    // Bridge to the action engine, as in the k3s step (converted in issue 10).
    fn plan<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<super::Action>>> {
        Box::pin(async move {
            let (actions, changes): (Vec<_>, Vec<_>) = plan(cx).await?.into_iter().unzip();
            Ok(super::bridge_actions(changes, move |cx| {
                Box::pin(async move { apply(cx, actions).await })
            }))
        })
    }
}

type Planned = Vec<(Action, Change)>;

async fn plan(cx: &Context) -> Result<Planned> {
    let mut out = Planned::new();
    let target = match cx.config.postgres.mode {
        PostgresMode::External => external_target(cx)?,
        PostgresMode::Local => match plan_local(cx, &mut out)? {
            Some(t) => t,
            None => {
                out.push((Action::ConvergeServer, Change::new("create roles and databases foreman, candlepin, pulp; restrict access to the pod network; tune", "the server is not set up yet")));
                out.push((
                    Action::WriteManifests,
                    Change::new(
                        format!("write {}/{MANIFEST}", manifests::MANIFESTS_DIR),
                        "database passwords are generated first",
                    ),
                ));
                return Ok(out);
            }
        },
    };
    let client = connect(&target).await?;
    out.extend(plan_server(cx, &target, &client).await?);
    out.extend(plan_manifests(cx, &target)?);
    Ok(out)
}

fn external_target(cx: &Context) -> Result<Target> {
    let url = cx
        .config
        .postgres
        .admin_url
        .clone()
        .expect("config requires admin_url in external mode");
    let password = cx
        .postgres_admin_password
        .clone()
        .ok_or(PostgresError::NoAdminPassword)?;
    Ok(Target { url, password })
}

fn server_packages(family: OsFamily) -> Vec<&'static str> {
    match family {
        OsFamily::Debian => vec!["postgresql"],
        OsFamily::RedHat | OsFamily::Suse => vec!["postgresql-server"],
    }
}

/// Local mode up to a usable admin connection; None while the server is not there yet.
fn plan_local(cx: &Context, out: &mut Planned) -> Result<Option<Target>> {
    let host = &cx.host;
    if !host.is_real_root() {
        return Err(PostgresError::LocalUnderRoot.into());
    }
    let family = cx
        .facts
        .os
        .as_ref()
        .and_then(|o| o.family())
        .ok_or(PostgresError::NoPackageManager)?;
    let pm = cx
        .facts
        .os
        .as_ref()
        .and_then(|o| o.package_manager())
        .ok_or(PostgresError::NoPackageManager)?;
    let packages = server_packages(family);
    let mut ready = true;
    if !packages.iter().all(|p| pm.is_installed(host.runner(), p)) {
        out.push((
            Action::InstallPackages(pm, packages.clone()),
            Change::new(
                format!("install package {}", packages.join(" ")),
                "local PostgreSQL is not installed",
            ),
        ));
        ready = false;
    }
    if family == OsFamily::RedHat
        && !host
            .fs()
            .exists(&host.path("/var/lib/pgsql/data/PG_VERSION"))
    {
        out.push((
            Action::InitDb,
            Change::new("initialise /var/lib/pgsql/data", "no database cluster yet"),
        ));
        ready = false;
    }
    if cx.options.skip_start {
        tracing::info!("not starting PostgreSQL: --skip-start");
        return Ok(None);
    }
    let state = host.services().state("postgresql");
    if !ready || state != "active" {
        out.push((
            Action::StartService,
            Change::new("enable and start postgresql", format!("service is {state}")),
        ));
        ready = false;
    }
    match read_secret(host, ADMIN_ROLE)? {
        Some(_) if ready => Ok(Some(local_target(host)?)),
        Some(_) => Ok(None),
        None => {
            out.push((
                Action::BootstrapAdmin,
                Change::new(
                    format!("create admin role {ADMIN_ROLE}"),
                    "foreman-box has no admin login yet",
                ),
            ));
            Ok(None)
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
        .connect_timeout(Duration::from_secs(10));
    match cfg.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            Ok(client)
        }
        Err(e) => Err(classify(t, e).into()),
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

fn query_err(t: &Target, what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let server = t.server();
    let what = what.into();
    move |source| {
        Error::Postgres(PostgresError::Query {
            server,
            what,
            source,
        })
    }
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

/// Roles, databases, access rules and settings, given an admin connection.
async fn plan_server(cx: &Context, t: &Target, client: &Client) -> Result<Planned> {
    let mut out = Planned::new();
    let server = t.server();
    for &name in DATABASES {
        let secret_path = secret_path(name);
        let stored = read_secret(&cx.host, name)?;
        let row = client
            .query_opt("SELECT rolname FROM pg_roles WHERE rolname = $1", &[&name])
            .await
            .map_err(query_err(t, format!("looking up role {name}")))?;
        match (row.is_some(), stored) {
            (false, _) => out.push((
                Action::CreateRole(name),
                Change::new(
                    format!("create role {name} with a generated scram-sha-256 password"),
                    "missing",
                ),
            )),
            (true, None) => {
                return Err(PostgresError::UnknownRolePassword {
                    role: name.into(),
                    server,
                    secret: secret_path,
                }
                .into())
            }
            (true, Some(password)) => match password_state(client, t, name, &password).await? {
                PasswordState::Matches => {}
                PasswordState::Md5Matches => out.push((
                    Action::UpgradeVerifier(name),
                    Change::new(
                        format!("store role {name}'s password as scram-sha-256"),
                        "stored as md5",
                    ),
                )),
                PasswordState::Differs => {
                    return Err(PostgresError::RolePasswordMismatch {
                        role: name.into(),
                        server,
                        secret: secret_path,
                    }
                    .into())
                }
            },
        }
        let db = client
            .query_opt(
                "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(query_err(t, format!("looking up database {name}")))?;
        match db {
            None => out.push((
                Action::CreateDatabase(name),
                Change::new(
                    format!("create database {name} (UTF8, owner {name})"),
                    "missing",
                ),
            )),
            Some(row) => {
                let (owner, encoding): (String, String) = (row.get(0), row.get(1));
                if encoding != "UTF8" {
                    return Err(PostgresError::NotUtf8 {
                        database: name.into(),
                        server,
                        encoding,
                    }
                    .into());
                }
                if owner != name {
                    out.push((
                        Action::SetOwner(name),
                        Change::new(
                            format!("make {name} the owner of database {name}"),
                            format!("owned by {owner}"),
                        ),
                    ));
                }
            }
        }
    }
    if manages_server(cx, t) {
        let is_super: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(query_err(t, "checking privileges"))?
            .get(0);
        if !is_super {
            return Err(PostgresError::NotSuperuser {
                user: t.url.user.clone(),
                server,
            }
            .into());
        }
        out.extend(plan_hba(cx, t, client).await?);
        out.extend(plan_settings(cx, t, client).await?);
    } else {
        tracing::info!(server = %server, "not managing pg_hba.conf or settings of an external server (postgres.manage_server)");
    }
    if cx.facts.firewalld_running {
        out.extend(plan_firewall(cx));
    }
    Ok(out)
}

enum PasswordState {
    Matches,
    Md5Matches,
    Differs,
}

/// Compares the role's stored verifier with our password, without sending the password.
async fn password_state(
    client: &Client,
    t: &Target,
    role: &str,
    password: &Secret,
) -> Result<PasswordState> {
    let row = client
        .query_one(
            "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(query_err(
            t,
            format!("reading role {role}'s verifier (needs a superuser)"),
        ))?;
    let verifier: String = row.get(0);
    Ok(if scram_matches(&verifier, password.expose()) {
        PasswordState::Matches
    } else if verifier == postgres_protocol::password::md5(password.expose().as_bytes(), role) {
        PasswordState::Md5Matches
    } else {
        PasswordState::Differs
    })
}

/// Checks a `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier against a password
/// (RFC 5802: StoredKey = H(HMAC(Hi(password, salt, i), "Client Key"))).
pub fn scram_matches(verifier: &str, password: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    type H = Hmac<Sha256>;
    let b64 = base64::engine::general_purpose::STANDARD;
    let parse = || -> Option<(u32, Vec<u8>, Vec<u8>)> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, _server) = keys.split_once(':')?;
        Some((
            iter.parse().ok()?,
            b64.decode(salt).ok()?,
            b64.decode(stored).ok()?,
        ))
    };
    let Some((iterations, salt, stored)) = parse() else {
        return false;
    };
    let mac = |key: &[u8], data: &[u8]| {
        let mut m = H::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes()
    };
    // Hi(): PBKDF2 with HMAC-SHA-256, one output block. Postgres normalises with SASLprep; our
    // passwords are ASCII alphanumerics, for which it is the identity.
    let mut block = salt.clone();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = mac(password.as_bytes(), &block);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(u.iter()) {
            *s ^= x;
        }
    }
    let client_key = mac(&salted, b"Client Key");
    Sha256::digest(client_key).as_slice() == stored.as_slice()
}

/// The managed pg_hba.conf block: loopback and the pod network for our databases, nothing else.
pub fn hba_block(cx: &Context) -> String {
    let pods = &cx.config.k3s.cluster_cidr;
    let mut lines = vec![HBA_BEGIN.to_string()];
    if cx.config.postgres.mode == PostgresMode::Local {
        lines.push(format!(
            "host    postgres    {ADMIN_ROLE:<17} 127.0.0.1/32    scram-sha-256"
        ));
    }
    for db in DATABASES {
        for net in ["127.0.0.1/32", "::1/128", pods.as_str()] {
            lines.push(format!("host    {db:<11} {db:<17} {net:<15} scram-sha-256"));
        }
    }
    let all = DATABASES.join(",");
    lines.push(format!("host    {all} all 0.0.0.0/0 reject"));
    lines.push(format!("host    {all} all ::/0 reject"));
    lines.push(HBA_END.to_string());
    lines.join("\n") + "\n"
}

/// Puts the block first (first match wins), replacing an earlier copy in place.
pub fn with_hba_block(current: &str, block: &str) -> String {
    if let (Some(start), Some(end)) = (current.find(HBA_BEGIN), current.find(HBA_END)) {
        if start < end {
            let after = &current[end + HBA_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            return format!("{}{}{}", &current[..start], block, after);
        }
    }
    format!("{block}{current}")
}

async fn plan_hba(cx: &Context, t: &Target, client: &Client) -> Result<Planned> {
    let path: String = client
        .query_one(
            "SELECT setting FROM pg_settings WHERE name = 'hba_file'",
            &[],
        )
        .await
        .map_err(query_err(t, "finding pg_hba.conf"))?
        .get(0);
    // The server reports its own path: on this host, and not under --root.
    let path = PathBuf::from(path);
    let current = cx.host.fs().read_string(&path)?.unwrap_or_default();
    let desired = with_hba_block(&current, &hba_block(cx));
    if desired == current {
        return Ok(Vec::new());
    }
    let why = if current.contains(HBA_BEGIN) {
        "block differs"
    } else {
        "block missing"
    };
    Ok(vec![
        (
            Action::WriteHba {
                path: path.clone(),
                content: desired,
            },
            Change::new(
                format!("update the foreman-box block in {}", path.display()),
                why,
            ),
        ),
        (
            Action::ReloadConf,
            Change::new("reload PostgreSQL's configuration", "pg_hba.conf changed"),
        ),
    ])
}

/// Settings wanted for this host: (name, value, at least this many kB or connections).
fn desired_settings(cx: &Context) -> Vec<(&'static str, String)> {
    let workers = u64::from(cx.config.foreman.dynflow_workers);
    // Foreman's puma and dynflow pools, plus Candlepin's and Pulp's when Katello is on.
    let katello = if cx.config.foreman.katello { 150 } else { 0 };
    let max_connections = (100 + 30 * workers + katello).max(100);
    // A quarter of memory, at most 8 GiB, at least the 128 MB default.
    let shared_mb = (cx.facts.memory_bytes / 4 / (1 << 20)).clamp(128, 8192);
    let mut listen = vec!["localhost".to_string()];
    if let Some(ip) = cx.facts.node_ip.filter(|ip| !ip.is_loopback()) {
        listen.push(ip.to_string());
    }
    vec![
        ("listen_addresses", listen.join(",")),
        ("max_connections", max_connections.to_string()),
        ("shared_buffers", format!("{shared_mb}MB")),
    ]
}

/// A memory setting in kB ("128MB", "1GB", or plain 8 kB blocks for shared_buffers).
fn memory_kb(value: &str, unit_kb: u64) -> Option<u64> {
    let v = value.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    Some(match unit.trim() {
        "" => n * unit_kb,
        "kB" => n,
        "MB" => n * 1024,
        "GB" => n * 1024 * 1024,
        "TB" => n * 1024 * 1024 * 1024,
        _ => return None,
    })
}

async fn plan_settings(cx: &Context, t: &Target, client: &Client) -> Result<Planned> {
    let mut out = Planned::new();
    let wanted = desired_settings(cx);
    let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
    // What will be in force after a restart: the last file setting (its error says "could not
    // be applied" while a restart is pending), else the running value.
    let rows = client
        .query(
            "SELECT s.name, coalesce((SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name ORDER BY f.seqno DESC LIMIT 1), s.setting), s.pending_restart \
             FROM pg_settings s WHERE s.name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(query_err(t, "reading server settings"))?;
    let mut pending = false;
    let mut restart_for = Vec::new();
    for row in rows {
        let (name, current, pending_restart): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        pending |= pending_restart;
        let Some((name, want)) = wanted.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let enough = match *name {
            "listen_addresses" => {
                let have: Vec<&str> = current.split(',').map(str::trim).collect();
                have.contains(&"*") || want.split(',').all(|w| have.contains(&w))
            }
            "max_connections" => {
                current.parse::<u64>().unwrap_or(0) >= want.parse::<u64>().unwrap_or(0)
            }
            _ => memory_kb(&current, 8).unwrap_or(0) >= memory_kb(want, 8).unwrap_or(0),
        };
        if !enough {
            restart_for.push(*name);
            out.push((
                Action::AlterSystem {
                    name,
                    value: want.clone(),
                },
                Change::new(format!("set {name} = '{want}'"), format!("now '{current}'")),
            ));
        }
    }
    if !out.is_empty() {
        out.push((
            Action::ReloadConf,
            Change::new("reload PostgreSQL's configuration", "settings changed"),
        ));
    }
    if !restart_for.is_empty() || pending {
        if cx.config.postgres.mode == PostgresMode::Local && !cx.options.skip_start {
            out.push((
                Action::RestartService,
                Change::new(
                    "restart postgresql",
                    "settings that take effect on restart changed",
                ),
            ));
        } else {
            tracing::warn!(server = %t.server(), "PostgreSQL settings changed that take effect only after the server restarts: restart it when convenient");
        }
    }
    Ok(out)
}

fn plan_firewall(cx: &Context) -> Planned {
    let runner = cx.host.runner();
    let mut out = Planned::new();
    for cidr in [&cx.config.k3s.cluster_cidr, &cx.config.k3s.service_cidr] {
        let trusted = runner
            .output(&Cmd::new("firewall-cmd").args([
                "--permanent",
                "--zone=trusted",
                &format!("--query-source={cidr}"),
            ]))
            .is_ok_and(|o| o.success());
        if !trusted {
            out.push((
                Action::TrustSource(cidr.clone()),
                Change::new(
                    format!("trust {cidr} in firewalld"),
                    "pods must reach PostgreSQL",
                ),
            ));
        }
    }
    if !out.is_empty() {
        out.push((
            Action::ReloadFirewall,
            Change::new("reload firewalld", "its zones changed"),
        ));
    }
    out
}

/// Where pods reach the server: an address for the EndpointSlice, or a name for ExternalName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Address(IpAddr, u16),
    Name(String, u16),
}

fn endpoint(cx: &Context, t: &Target) -> Option<Endpoint> {
    let port = t.url.port;
    let node = cx.facts.node_ip;
    match t.url.host.parse::<IpAddr>() {
        _ if t.url.host == "localhost" => node.map(|ip| Endpoint::Address(ip, port)),
        Ok(ip) if ip.is_loopback() => node.map(|ip| Endpoint::Address(ip, port)),
        Ok(ip) => Some(Endpoint::Address(ip, port)),
        Err(_) => Some(Endpoint::Name(t.url.host.clone(), port)),
    }
}

fn plan_manifests(cx: &Context, t: &Target) -> Result<Planned> {
    let mut passwords = Vec::new();
    for db in DATABASES {
        match read_secret(&cx.host, db)? {
            Some(p) => passwords.push(p),
            None => {
                return Ok(vec![(
                    Action::WriteManifests,
                    Change::new(
                        format!("write {}/{MANIFEST}", manifests::MANIFESTS_DIR),
                        "database passwords are generated first",
                    ),
                )])
            }
        }
    }
    let mut out = Planned::new();
    for f in manifest_files(cx, t, &passwords)? {
        if let Some(c) = f.plan(&cx.host)? {
            out.push((Action::WriteManifests, c));
        }
    }
    out.dedup_by(|a, b| {
        matches!(
            (&a.0, &b.0),
            (Action::WriteManifests, Action::WriteManifests)
        ) && {
            b.1.what = format!("{}; {}", b.1.what, a.1.what);
            true
        }
    });
    Ok(out)
}

fn manifest_files(cx: &Context, t: &Target, passwords: &[Secret]) -> Result<Vec<DesiredFile>> {
    let Some(ep) = endpoint(cx, t) else {
        return Err(Error::Preflight {
            report: "  ✗ route: the node has no IPv4 address for pods to reach PostgreSQL on\n    fix: pass --node-ip".into(),
        });
    };
    Ok(vec![
        manifests::namespace_file()?,
        manifests::manifest_file(MANIFEST, &objects(&ep, passwords))?,
    ])
}

/// The Service, EndpointSlice and one Secret per database.
pub fn objects(ep: &Endpoint, passwords: &[Secret]) -> Vec<Value> {
    let mut objs = Vec::new();
    let port = match ep {
        Endpoint::Address(_, p) | Endpoint::Name(_, p) => *p,
    };
    match ep {
        Endpoint::Address(ip, port) => {
            objs.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels("postgres")},
                "spec": {"ports": [{"name": "postgres", "port": port, "targetPort": port, "protocol": "TCP"}]},
            }));
            objs.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": SERVICE,
                    "namespace": NAMESPACE,
                    "labels": {
                        "kubernetes.io/service-name": SERVICE,
                        "endpointslice.kubernetes.io/managed-by": "foreman-box",
                        "app.kubernetes.io/part-of": "foreman",
                        "app.kubernetes.io/managed-by": "foreman-box",
                    },
                },
                "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "postgres", "port": port, "protocol": "TCP"}],
            }));
        }
        Endpoint::Name(name, _) => objs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels("postgres")},
            "spec": {"type": "ExternalName", "externalName": name},
        })),
    }
    for (db, password) in DATABASES.iter().zip(passwords) {
        objs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("{db}-db"), "namespace": NAMESPACE, "labels": labels(db)},
            "type": "Opaque",
            "stringData": {
                "host": format!("{SERVICE}.{NAMESPACE}.svc"),
                "port": port.to_string(),
                "name": db,
                "user": db,
                "password": password.expose(),
                "sslmode": "prefer",
            },
        }));
    }
    objs
}

pub fn secret_path(name: &str) -> String {
    format!("{SECRETS_DIR}/postgres-{name}")
}

pub fn read_secret(host: &Host, name: &str) -> Result<Option<Secret>> {
    Ok(host
        .fs()
        .read_string(&host.path(secret_path(name)))?
        .map(|s| Secret::new(s.lines().next().unwrap_or("").to_string()))
        .filter(|s| !s.expose().is_empty()))
}

/// Returns the stored secret, generating and storing (0600) one first when there is none.
fn ensure_secret(host: &Host, name: &str) -> Result<Secret> {
    if let Some(s) = read_secret(host, name)? {
        return Ok(s);
    }
    let s = Secret::generate();
    host.fs().ensure_dir(&host.path(SECRETS_DIR), 0o700)?;
    host.fs().write_atomic(
        &host.path(secret_path(name)),
        format!("{}\n", s.expose()).as_bytes(),
        0o600,
    )?;
    Ok(s)
}

/// A scram-sha-256 verifier, as an SQL literal: only the verifier ever crosses the wire.
fn verifier_literal(password: &Secret) -> String {
    let v = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    debug_assert!(!v.contains('\''));
    format!("'{v}'")
}

async fn apply(cx: &Context, actions: Vec<Action>) -> Result<()> {
    let host = &cx.host;
    let runner = host.runner();
    let mut target: Option<Target> = None;
    let mut client: Option<Client> = None;
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        if needs_client(&action) && client.is_none() {
            let t = match (&target, cx.config.postgres.mode) {
                (Some(t), _) => t.clone(),
                (None, PostgresMode::External) => external_target(cx)?,
                (None, PostgresMode::Local) => local_target(host)?,
            };
            client = Some(connect(&t).await?);
            target = Some(t);
        }
        let t = target.as_ref();
        let sql = |stmt: String, what: String| {
            let c = client.as_ref().expect("connected above");
            let t = t.expect("connected above").clone();
            async move { c.batch_execute(&stmt).await.map_err(query_err(&t, what)) }
        };
        match action {
            Action::InstallPackages(pm, pkgs) => pm.install(runner, &pkgs)?,
            Action::InitDb => {
                runner.run(&Cmd::new("postgresql-setup").arg("--initdb"))?;
            }
            Action::StartService => host.services().enable_now("postgresql")?,
            Action::BootstrapAdmin => bootstrap_admin(cx)?,
            Action::ConvergeServer => {
                let t = local_target(host)?;
                let c = connect(&t).await?;
                let mut more: Vec<Action> = plan_server(cx, &t, &c)
                    .await?
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect();
                more.extend(queue.drain(..));
                queue = more.into();
                target = Some(t);
                client = Some(c);
            }
            Action::CreateRole(name) => {
                let pw = ensure_secret(host, name)?;
                sql(
                    format!(
                        "CREATE ROLE \"{name}\" LOGIN PASSWORD {}",
                        verifier_literal(&pw)
                    ),
                    format!("creating role {name}"),
                )
                .await?;
            }
            Action::UpgradeVerifier(name) => {
                let pw = read_secret(host, name)?.expect("planned only with a stored password");
                sql(
                    format!("ALTER ROLE \"{name}\" PASSWORD {}", verifier_literal(&pw)),
                    format!("storing role {name}'s password as scram"),
                )
                .await?;
            }
            Action::CreateDatabase(name) => {
                sql(format!("CREATE DATABASE \"{name}\" OWNER \"{name}\" ENCODING 'UTF8' TEMPLATE template0"), format!("creating database {name}")).await?;
            }
            Action::SetOwner(name) => {
                sql(
                    format!("ALTER DATABASE \"{name}\" OWNER TO \"{name}\""),
                    format!("changing the owner of database {name}"),
                )
                .await?;
            }
            Action::WriteHba { path, content } => {
                host.fs().write_atomic(
                    &path,
                    content.as_bytes(),
                    host.fs().mode(&path)?.unwrap_or(0o640),
                )?;
            }
            Action::AlterSystem { name, value } => {
                sql(
                    format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', "")),
                    format!("setting {name}"),
                )
                .await?;
            }
            Action::ReloadConf => {
                sql(
                    "SELECT pg_reload_conf()".into(),
                    "reloading the configuration".into(),
                )
                .await?;
            }
            Action::RestartService => {
                client = None;
                host.services().restart("postgresql")?;
            }
            Action::TrustSource(cidr) => {
                runner.run(&Cmd::new("firewall-cmd").args([
                    "--permanent",
                    "--zone=trusted",
                    &format!("--add-source={cidr}"),
                ]))?;
            }
            Action::ReloadFirewall => {
                runner.run(&Cmd::new("firewall-cmd").arg("--reload"))?;
            }
            Action::WriteManifests => {
                let t = match &target {
                    Some(t) => t.clone(),
                    None if cx.config.postgres.mode == PostgresMode::External => {
                        external_target(cx)?
                    }
                    None => local_target(host)?,
                };
                let passwords = DATABASES
                    .iter()
                    .map(|db| ensure_secret(host, db))
                    .collect::<Result<Vec<_>>>()?;
                for f in manifest_files(cx, &t, &passwords)? {
                    f.write(host)?;
                }
                // Several changes may share this one action.
                queue.retain(|a| !matches!(a, Action::WriteManifests));
            }
        }
    }
    Ok(())
}

fn needs_client(a: &Action) -> bool {
    matches!(
        a,
        Action::CreateRole(_)
            | Action::UpgradeVerifier(_)
            | Action::CreateDatabase(_)
            | Action::SetOwner(_)
            | Action::AlterSystem { .. }
            | Action::ReloadConf
    )
}

fn local_target(host: &Host) -> Result<Target> {
    let password =
        read_secret(host, ADMIN_ROLE)?.expect("the admin role is bootstrapped before it is used");
    Ok(Target {
        url: AdminUrl {
            user: ADMIN_ROLE.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            database: "postgres".into(),
        },
        password,
    })
}

/// Local mode: our superuser, made through the `postgres` OS user (peer authentication), and the
/// pg_hba block that lets it in over loopback with its password.
fn bootstrap_admin(cx: &Context) -> Result<()> {
    let host = &cx.host;
    let runner = host.runner();
    let psql = || {
        Cmd::new("runuser").args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
        ])
    };
    let existing = read_secret(host, ADMIN_ROLE)?;
    let password = existing.clone().unwrap_or_else(Secret::generate);
    // The role is ours alone (its name says so): giving it a fresh password when ours was lost
    // touches nothing of the user's.
    let stmt = format!(
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN_ROLE}') THEN ALTER ROLE {ADMIN_ROLE} LOGIN SUPERUSER PASSWORD {v}; ELSE CREATE ROLE {ADMIN_ROLE} LOGIN SUPERUSER PASSWORD {v}; END IF; END $$;\n",
        v = verifier_literal(&password)
    );
    runner.run(&psql().stdin(Secret::new(stmt)))?;
    if existing.is_none() {
        host.fs().ensure_dir(&host.path(SECRETS_DIR), 0o700)?;
        host.fs().write_atomic(
            &host.path(secret_path(ADMIN_ROLE)),
            format!("{}\n", password.expose()).as_bytes(),
            0o600,
        )?;
    }
    let hba = runner
        .run(&psql().stdin(Secret::new("SHOW hba_file;\n")))?
        .stdout
        .trim()
        .to_string();
    let path = PathBuf::from(hba);
    let current = host.fs().read_string(&path)?.unwrap_or_default();
    let desired = with_hba_block(&current, &hba_block(cx));
    if desired != current {
        host.fs().write_atomic(
            &path,
            desired.as_bytes(),
            host.fs().mode(&path)?.unwrap_or(0o640),
        )?;
        runner.run(&psql().stdin(Secret::new("SELECT pg_reload_conf();\n")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_check_accepts_own_password_only() {
        let v = postgres_protocol::password::scram_sha_256(b"correct horse");
        assert!(scram_matches(&v, "correct horse"));
        assert!(!scram_matches(&v, "wrong horse"));
        assert!(!scram_matches("md5abcdef", "correct horse"));
    }

    #[test]
    fn hba_block_is_replaced_in_place_never_duplicated() {
        let block = "# BEGIN foreman-box: managed block, replaced on every `foreman-box install`\nhost a\n# END foreman-box\n";
        let original = "local all all peer\n";
        let once = with_hba_block(original, block);
        assert!(once.starts_with(block));
        assert!(once.ends_with(original));
        let newer = block.replace("host a", "host b");
        let twice = with_hba_block(&once, &newer);
        assert_eq!(twice.matches("# BEGIN foreman-box").count(), 1);
        assert!(twice.contains("host b") && !twice.contains("host a"));
        assert_eq!(with_hba_block(&twice, &newer), twice);
    }

    #[test]
    fn memory_settings_compare_in_kb() {
        assert_eq!(memory_kb("128MB", 8), Some(128 * 1024));
        assert_eq!(memory_kb("16384", 8), Some(16384 * 8));
        assert_eq!(memory_kb("'1GB'", 8), Some(1024 * 1024));
        assert_eq!(memory_kb("lots", 8), None);
    }
}
