//! Local mode: the distribution's server, installed, initialised and started here, and our own
//! superuser made through the `postgres` OS user (peer authentication, the statement on stdin).
//!
//! On a fresh host the roles, databases, settings and manifests cannot be planned in detail:
//! there is no server to ask yet. The plan says so honestly ("configure ... once the server
//! runs"), and that one action plans them against the running server and runs them, telling
//! the reporter each change as it makes it. The next run plans them in detail like any other.

use super::{hba, original, roles, Op, PostgresError, ADMIN_ROLE};
use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::error::Result;
use crate::facts::OsFamily;
use crate::host::Cmd;
use crate::kept;
use crate::secret::Secret;
use std::path::PathBuf;

/// How far the local server is.
pub(super) enum Server {
    /// Running, with our admin login: plan against it.
    Ready,
    /// Not running, and --skip-start keeps it so: nothing more to plan.
    Stopped,
    /// It will run (and have our admin) once the planned actions ran.
    Later,
}

fn server_packages(family: OsFamily) -> Vec<&'static str> {
    match family {
        OsFamily::Debian => vec!["postgresql"],
        OsFamily::RedHat | OsFamily::Suse => vec!["postgresql-server"],
    }
}

/// Where a server of the family keeps its clusters or its configuration, once installed.
fn family_server_dirs(family: OsFamily) -> &'static [&'static str] {
    match family {
        OsFamily::Debian => &["/etc/postgresql", "/var/lib/postgresql"],
        OsFamily::RedHat | OsFamily::Suse => &["/var/lib/pgsql"],
    }
}

/// Local mode up to a usable admin connection.
pub(super) fn plan(cx: &Context, out: &mut Vec<Planned<Op>>) -> Result<Server> {
    let host = &cx.host;
    if !host.is_real_root() {
        return Err(PostgresError::LocalUnderRoot.into());
    }
    let os = cx.facts.os.as_ref();
    let family = os
        .and_then(|o| o.family())
        .ok_or(PostgresError::NoPackageManager)?;
    let pm = os
        .and_then(|o| o.package_manager())
        .ok_or(PostgresError::NoPackageManager)?;
    let packages = server_packages(family);
    let mut ready = true;
    if !packages.iter().all(|p| pm.is_installed(host.runner(), p)) {
        // Ours only on a host that had no server at all: a data directory or a server's home
        // without the package is someone's, and purge must never remove it.
        if !original::exists(host)
            && !family_server_dirs(family)
                .iter()
                .any(|d| host.fs().exists(&host.path(d)))
        {
            out.push(original::record_installed(pm));
        }
        let op = HostOp::InstallPackages {
            manager: pm,
            packages: packages.iter().map(|p| p.to_string()).collect(),
        };
        out.push(Planned::new(
            Op::Host(op),
            "local PostgreSQL is not installed",
        ));
        ready = false;
    }
    if family == OsFamily::RedHat
        && !host
            .fs()
            .exists(&host.path("/var/lib/pgsql/data/PG_VERSION"))
    {
        out.push(Planned::new(Op::InitCluster, "no database cluster yet"));
        ready = false;
    }
    let state = host.services().state("postgresql");
    if !ready || state != "active" {
        if cx.options.skip_start {
            cx.reporter.note(
                "postgres",
                "not configuring PostgreSQL's roles and databases: --skip-start leaves its server stopped",
            );
            return Ok(Server::Stopped);
        }
        let unit = "postgresql".to_string();
        out.push(Planned::new(
            Op::Host(HostOp::EnableNow { unit }),
            format!("service is {state}"),
        ));
        ready = false;
    }
    let admin = kept::read_role_password(host, ADMIN_ROLE)?;
    match (&admin, ready) {
        (Some(_), true) => return Ok(Server::Ready),
        (None, _) => out.push(bootstrap(cx, None, "foreman-box has no admin login yet")),
        // Not running yet: its admin role and pg_hba entry cannot be checked, so they are
        // made sure of (the work is idempotent).
        (Some(_), false) => out.push(bootstrap(
            cx,
            admin.clone(),
            "the server was not running, so its admin login could not be checked",
        )),
    }
    out.push(Planned::new(
        Op::Reload,
        "a new pg_hba.conf block counts only once the server reloads it",
    ));
    out.push(Planned::new(
        Op::ConfigureOnceRunning,
        "the server is not set up yet; each change is reported as it is made",
    ));
    Ok(Server::Later)
}

/// The admin's password (stored, or generated here) and the block are decided now; pg_hba.conf's
/// path is the running server's answer.
fn bootstrap(cx: &Context, stored: Option<Secret>, why: &str) -> Planned<Op> {
    let op = Op::BootstrapAdmin {
        generated: stored.is_none(),
        password: stored.unwrap_or_else(Secret::generate),
        block: hba::hba_block(cx),
    };
    Planned::new(op, why)
}

pub(super) fn init_cluster(cx: &Context) -> Result<()> {
    cx.host
        .runner()
        .run(&Cmd::new("postgresql-setup").arg("--initdb"))?;
    Ok(())
}

/// One statement (or a few) as the `postgres` OS user, on psql's stdin.
pub(super) fn psql_run(cx: &Context, statements: &str) -> Result<()> {
    cx.host
        .runner()
        .run(&psql().stdin(Secret::new(statements)))?;
    Ok(())
}

/// Our superuser, made through the `postgres` OS user, and the pg_hba block that lets it in over
/// loopback with its password (the reload that makes the block count follows in the plan).
pub(super) fn bootstrap_admin(
    cx: &Context,
    password: &Secret,
    generated: bool,
    block: &str,
) -> Result<()> {
    let host = &cx.host;
    // Stored first: a run killed after the role was made still knows its password.
    if generated {
        kept::write_role_password(host, ADMIN_ROLE, password)?;
    }
    // The role is ours alone (its name says so): giving it our password when the stored one
    // was lost touches nothing of the user's.
    let stmt = format!(
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN_ROLE}') THEN ALTER ROLE {ADMIN_ROLE} LOGIN SUPERUSER PASSWORD {v}; ELSE CREATE ROLE {ADMIN_ROLE} LOGIN SUPERUSER PASSWORD {v}; END IF; END $$;\n",
        v = roles::verifier_literal(password)
    );
    psql_run(cx, &stmt)?;
    let answer = host
        .runner()
        .run(&psql().stdin(Secret::new("SHOW hba_file;\n")))?;
    let path = PathBuf::from(answer.stdout.trim());
    if let Some(desired) = hba::desired_content(cx, &path, block)? {
        let mode = host.fs().mode(&path)?.unwrap_or(0o640);
        host.fs().write_atomic(&path, desired.as_bytes(), mode)?;
    }
    Ok(())
}

fn psql() -> Cmd {
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
}
