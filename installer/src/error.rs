//! The installer's one error type. Variants name the object and its path or URL; causes live in
//! `#[source]` only, so the CLI prints each once.

use crate::config::ConfigError;
use crate::host::HostError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("download of {url} failed")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot reach the download server for {url} ({reason}); not retried\nhelp: a host without internet can install from a mirror on its network (--k3s-release-url URL, laid out like GitHub's releases/download) or from airgap assets placed in /var/lib/foreman-box/cache/k3s/VERSION/")]
    Unreachable {
        url: String,
        reason: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("download of {url} stalled: {what}\nhelp: check the network and the server; for a slow link raise downloads.timeout_secs (now {secs}s), or use a mirror nearer to this host with --k3s-release-url")]
    Stalled {
        url: String,
        what: String,
        secs: u64,
    },
    #[error("checksum list {url} is not usable: {problem}\nhelp: the server's sha256sum file must have one `HASH  NAME` line per asset; check the mirror")]
    BadChecksumList { url: String, problem: String },
    #[error("{url} answered HTTP {status}\nhelp: check --k3s-release-url and --k3s-version; the release may not exist on that server")]
    HttpStatus { url: String, status: u16 },
    #[error("checksum mismatch for {file}: expected sha256 {expected}, downloaded data has {actual} (from {url}); nothing was installed\nhelp: re-run to download again; if it repeats, the mirror serves a different file than its sha256sum list")]
    ChecksumMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
        url: String,
    },
    #[error("{url} has no entry for `{asset}`\nhelp: is {version} a release that ships {asset}?")]
    NoChecksum {
        url: String,
        asset: String,
        version: String,
    },
    #[error("could not resolve k3s channel `{channel}` through {url}: {problem}\nhelp: pass --k3s-version to pin a release instead")]
    Channel {
        channel: String,
        url: String,
        problem: String,
    },
    #[error("preflight failed:\n{report}")]
    Preflight { report: String },
    #[error("k3s did not become ready within {timeout_secs}s\n{diagnosis}\nhelp: fix what the journal shows, then re-run `foreman-box install`")]
    K3sNotReady {
        timeout_secs: u64,
        diagnosis: String,
    },
    #[error("step `{step}` did not converge: after applying it still wants to {changes}\nhelp: this is a bug in foreman-box; please report it with the output of `foreman-box plan`")]
    NotConverged { step: &'static str, changes: String },
    #[error(transparent)]
    Postgres(#[from] crate::postgres_error::PostgresError),
    #[error("cannot render {what}")]
    Render {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{} exists and is not a directory; nothing was changed\nhelp: move it out of the way, or choose another directory with --pulp-dir", path.display())]
    NotADirectory { path: PathBuf },
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    DayTwo(#[from] DayTwoError),
    #[error("the k3s step planned to install from a bundle, but this run was given none; nothing more was installed\nhelp: run `foreman-box install --bundle FILE` again with the bundle, or without --bundle to download from the release server")]
    NoBundle,
    #[error("unknown step `{name}`\nhelp: steps are {known}")]
    UnknownStep { name: String, known: String },
    #[error("{path} is dynamically linked (it needs {interpreter}), so it cannot be the operator's image, which holds nothing but this binary; nothing was written\nhelp: build the static binary with `{build}` and run `target/static/foreman-box install`")]
    DynamicallyLinked {
        path: String,
        interpreter: String,
        build: &'static str,
    },
    #[error("{path} is not a usable copy of Secret foreman/{name}: {problem}; nothing was changed\nhelp: restore the file from a backup: it holds the values the kept databases were made with (remove it only if those databases are gone too; foreman-box then makes new values)")]
    KeptSecret {
        path: String,
        name: String,
        problem: String,
    },
    #[error("cannot generate {what}\nhelp: this is a bug in foreman-box; please report it with the output of `foreman-box plan`")]
    Generate {
        what: String,
        #[source]
        source: foreman_operator::Error,
    },
    #[error(transparent)]
    Bundle(#[from] foreman_box_bundle::Error),
    #[error("{} is for {found}, this host is {wanted}; nothing was changed\nhelp: {help}", path.display())]
    WrongBundle {
        path: PathBuf,
        found: String,
        wanted: String,
        help: String,
    },
    #[error("cannot make the operator image from {path}")]
    NotAnImage {
        path: String,
        #[source]
        source: foreman_box_bundle::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// What can stop backup, restore and upgrade. Each message says what was expected, what was
// found, what was changed (usually nothing) and ends with the next command to run. It lives here,
// beside [`Error`], because each holds the other.
#[derive(Debug, thiserror::Error)]
pub enum DayTwoError {
    #[error("{} running: a backup taken now could miss their writes; nothing was changed\nhelp: wait for them (Foreman: Monitor > Recurring Logics and Tasks; Pulp: `pulp task list --state running`), or run `foreman-box backup --wait-for-tasks` to wait up to --tasks-timeout", tasks_text(*foreman, *pulp))]
    TasksRunning { foreman: u64, pulp: u64 },
    #[error("{} still running after waiting {waited_secs}s; nothing was changed\nhelp: let them finish, then run `foreman-box backup` again (--tasks-timeout SECS waits longer)", tasks_text(*foreman, *pulp))]
    TasksStillRunning {
        foreman: u64,
        pulp: u64,
        waited_secs: u64,
    },
    #[error("cannot reach the cluster to put Foreman into maintenance; nothing was changed\nhelp: start k3s (`systemctl start k3s`) and run this again; if you know nothing writes (k3s and its pods stopped with k3s-killall.sh), --no-maintenance skips maintenance")]
    NoCluster {
        #[source]
        source: crate::cluster::ClusterError,
    },
    #[error("Foreman did not report maintenance reached within {timeout_secs}s ({detail}); it was taken out of maintenance again and nothing was written\nhelp: check the operator (`kubectl -n foreman logs deploy/foreman-operator`) and the writers still running (`kubectl -n foreman get pods`); --maintenance-timeout SECS waits longer")]
    MaintenanceNotReached { timeout_secs: u64, detail: String },
    #[error("{} already exists; a backup is never written over another\nhelp: choose another directory, or move the old one away", path.display())]
    Exists { path: PathBuf },
    #[error("backup failed{}: {source}\nwritten so far in {}: {}; it is incomplete (it has no SHA256SUMS), so restore refuses it\nhelp: fix the cause above, remove {} and run `foreman-box backup` again", if *left_maintenance { "; Foreman was taken out of maintenance again" } else { "" }, dir.display(), if written.is_empty() { "nothing".to_string() } else { written.join(", ") }, dir.display())]
    BackupFailed {
        dir: PathBuf,
        written: Vec<String>,
        left_maintenance: bool,
        #[source]
        source: Box<crate::Error>,
    },
    #[error("no PostgreSQL admin login is stored in {secret}, so the databases cannot be read\nhelp: run `foreman-box install` first (it creates the local admin login), or set postgres.mode = \"external\" with postgres.admin_url and its password")]
    NoAdminLogin { secret: String },
    #[error("{} is not a usable foreman-box backup: {problem}; nothing was changed\nhelp: {help}", path.display())]
    BadBackup {
        path: PathBuf,
        problem: String,
        help: String,
    },
    #[error("{} in {} does not match SHA256SUMS (expected {expected}, found {actual}): the file changed after the backup was made; nothing was changed\nhelp: use another backup; `sha256sum -c SHA256SUMS` in the backup's directory shows every file that differs", file, dir.display())]
    Tampered {
        dir: PathBuf,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("the backup was made on {backup_host}, this host is {this_host}; Foreman's certificates, URLs and registered hosts name {backup_host}, so nothing was changed\nhelp: restore on a host named {backup_host} (or pass --hostname {backup_host} when this host answers to that name)")]
    WrongHost {
        backup_host: String,
        this_host: String,
    },
    #[error("{message}\nhelp: {help}")]
    Refused { message: String, help: String },
    #[error("{what} already exist on this host, and restore replaces them; nothing was changed\nhelp: restore onto a fresh host (after `foreman-box uninstall --purge`), or pass --force: the current ones are kept beside as *.before-restore-TIME, the databases are dropped")]
    ExistingDeployment { what: String },
    #[error("`pg_restore --list` cannot read {file}: {detail}; nothing was changed\nhelp: the dump is damaged or was made by a newer pg_dump than this host's; use another backup")]
    DumpUnreadable { file: String, detail: String },
    #[error("PostgreSQL at {server}: {what} failed")]
    Database {
        server: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL at {server} did not answer within {secs}s while {what}\nhelp: check the server (`systemctl status postgresql`, or your external server) and run this again")]
    DatabaseTimeout {
        server: String,
        what: String,
        secs: u64,
    },
    #[error("Foreman is not healthy, so it is not upgraded; nothing was changed:\n{failures}\nhelp: fix what `foreman-box health` shows, then run `foreman-box upgrade` again")]
    NotHealthy { failures: String },
    #[error("{found}; an upgrade runs migrations that cannot be undone, so it needs a backup younger than a day; nothing was changed\nhelp: run `foreman-box backup` first, or pass --skip-backup to upgrade without one")]
    NoRecentBackup { found: String },
    #[error("cannot write {what}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

fn tasks_text(foreman: u64, pulp: u64) -> String {
    let mut parts = Vec::new();
    if foreman > 0 {
        parts.push(format!("{foreman} Foreman task(s)"));
    }
    if pulp > 0 {
        parts.push(format!("{pulp} Pulp task(s)"));
    }
    let list = parts.join(" and ");
    if foreman + pulp == 1 {
        format!("{list} is")
    } else {
        format!("{list} are")
    }
}
