//! What can stop backup, restore and upgrade. Each message says what was expected, what was
//! found, what was changed (usually nothing) and ends with the next command to run.

use std::path::PathBuf;

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
