//! `foreman-box restore DIR`: check everything first (checksums, metadata against this host,
//! every dump through `pg_restore --list`, both tars read to their end) and change nothing
//! when anything is off; then /etc/foreman-box, the databases, the Pulp tree, the install
//! steps, and out of maintenance. The main case is a fresh host after `uninstall --purge`:
//! there is no cluster yet, so the host side is restored and the install converges on it,
//! creating the cluster's Secrets from the restored copies.
//!
//! Replacing what a host already has needs `--force`, and even then nothing is deleted: the
//! current /etc/foreman-box and Pulp tree are renamed `*.before-restore-<time>` (foremanctl
//! refuses an existing deployment without --force too: src/roles/restore/tasks/validate.yaml,
//! 3.0.0).

use super::{
    archive, db, default_stream, dump_name, phase, verify, DayTwoError, Metadata, ETC_DIR, ETC_TAR,
    PULP_TAR,
};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::host::Host;
use crate::maintenance;
use crate::steps::{self, Change, Context};
use foreman_operator::streams;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where an archive is unpacked while it is checked and restored (removed afterwards).
const WORK_DIR: &str = "/var/tmp";

/// A backup that passed every check, ready to restore.
pub struct Checked {
    pub dir: PathBuf,
    pub metadata: Metadata,
    /// What was checked, one line each, for `--validate`.
    pub report: Vec<String>,
    work: Option<(Host, PathBuf)>,
}

impl Drop for Checked {
    fn drop(&mut self) {
        if let Some((host, dir)) = self.work.take() {
            let _ = host.fs().remove_tree(&dir);
        }
    }
}

/// Every check a restore makes before it changes anything. `stream` is the stream this host
/// runs or will run (the live resource's, else this foreman-box's default).
pub fn validate(cx: &Context, source: &Path, stream: &str) -> Result<Checked> {
    let host = &cx.host;
    let mut report = Vec::new();
    let mut work = None;
    let dir = if archive::is_archive(source) {
        let w = host
            .path(WORK_DIR)
            .join(format!("foreman-box-restore-{}", std::process::id()));
        host.fs().remove_tree(&w)?;
        work = Some((host.clone(), w.clone()));
        let dir = archive::unpack(host, source, &w)?;
        report.push(format!("{}: unpacked", source.display()));
        dir
    } else {
        source.to_path_buf()
    };
    let metadata = verify::check(host, &dir)?;
    report.push(format!(
        "{}: every file matches SHA256SUMS ({} files)",
        super::SUMS,
        metadata.files.len() + 1
    ));
    report.extend(check_host_and_stream(cx, &metadata, stream)?);
    report.extend(check_dumps(cx, &dir, &metadata)?);
    for tar in [PULP_TAR, ETC_TAR] {
        let path = dir.join(tar);
        let stats = host.fs().scan_tree(host.fs().open_read(&path)?, &path)?;
        report.push(format!(
            "{tar}: {} files, {} bytes, every path inside the tree",
            stats.files, stats.bytes
        ));
    }
    Ok(Checked {
        dir,
        metadata,
        report,
        work,
    })
}

/// The backup is of this host, and of this host's release stream or the one before it.
fn check_host_and_stream(cx: &Context, m: &Metadata, stream: &str) -> Result<[String; 2]> {
    if m.hostname != cx.facts.fqdn {
        return Err(DayTwoError::WrongHost {
            backup_host: m.hostname.clone(),
            this_host: cx.facts.fqdn.clone(),
        }
        .into());
    }
    let host_line = format!("hostname: {} (this host)", m.hostname);
    match streams::plan(&m.stream, stream, None) {
        Ok(changes) if changes.is_empty() => Ok([
            host_line,
            format!("stream: {} (the one this host runs)", m.stream),
        ]),
        Ok(_) => Ok([
            host_line,
            format!(
                "stream: {} → {stream}: the install migrates the data one stream forward",
                m.stream
            ),
        ]),
        Err(refusal) => Err(DayTwoError::Refused {
            message: format!(
                "the backup holds Foreman {} data and this host runs {stream}: {refusal}; nothing was changed",
                m.stream
            ),
            help: format!(
                "restore it with the foreman-box release of the {} stream, then upgrade one stream at a time",
                m.stream
            ),
        }
        .into()),
    }
}

/// Every dump read by `pg_restore --list`: one line each, with its count of entries.
fn check_dumps(cx: &Context, dir: &Path, m: &Metadata) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for d in &m.databases {
        let file = dir.join(dump_name(d));
        let out = cx.host.runner().output(&db::list_cmd(&file))?;
        if !out.success() {
            return Err(DayTwoError::DumpUnreadable {
                file: dump_name(d),
                detail: out.stderr.trim().chars().take(500).collect(),
            }
            .into());
        }
        let entries = out
            .stdout
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count();
        lines.push(format!(
            "{}: pg_restore --list reads {entries} entries",
            dump_name(d)
        ));
    }
    Ok(lines)
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub force: bool,
    pub maintenance_timeout: Duration,
}

/// What this host already has that a restore would replace.
pub async fn existing(cx: &Context) -> Vec<String> {
    let host = &cx.host;
    let mut found = Vec::new();
    let secrets = host.path(crate::kept::SECRETS_DIR);
    if !host.fs().list_dir(&secrets).unwrap_or_default().is_empty() {
        found.push(format!("kept secrets in {}", crate::kept::SECRETS_DIR));
    }
    let media = host.path(cx.config.storage.pulp_dir.join("media"));
    if host.fs().walk(&media).is_ok_and(|e| !e.is_empty()) {
        found.push(format!(
            "Pulp content in {}",
            cx.config.storage.pulp_dir.join("media").display()
        ));
    }
    if let Ok(server) = db::Server::admin(cx) {
        if let Ok(dbs) = db::populated(&server).await {
            if !dbs.is_empty() {
                found.push(format!("databases with data: {}", dbs.join(", ")));
            }
        }
    }
    found
}

/// The first part: /etc/foreman-box from the backup (the configuration and secrets the rest
/// needs). The caller reads the configuration again afterwards.
pub async fn restore_config(cx: &Context, checked: &Checked, opts: &RestoreOptions) -> Result<()> {
    let found = existing(cx).await;
    if !found.is_empty() && !opts.force {
        return Err(DayTwoError::ExistingDeployment {
            what: found.join("; "),
        }
        .into());
    }
    let host = &cx.host;
    phase(cx, "config", async {
        let etc = host.path(ETC_DIR);
        let mut changes = vec![Change::new(
            format!("restore {ETC_DIR}"),
            format!("from {ETC_TAR}: the configuration and the secrets the data was made with"),
        )];
        let aside = if host.fs().exists(&etc) {
            let to = aside_path(&etc);
            changes.insert(
                0,
                Change::new(
                    format!("move {ETC_DIR} to {}", to.display()),
                    "--force: kept, never deleted",
                ),
            );
            Some(to)
        } else {
            None
        };
        cx.reporter.step_planned("config", &changes);
        if let Some(to) = aside {
            host.fs().rename(&etc, &to)?;
        }
        let tar = checked.dir.join(ETC_TAR);
        host.fs()
            .unpack_tree(host.fs().open_read(&tar)?, &etc, &mut |_| {})?;
        // /etc/foreman-box itself: readable (config.toml), its secrets folder stays 0700.
        host.fs().set_mode(&etc, 0o755)?;
        Ok(())
    })
    .await
}

/// The rest, with the configuration the first part restored: maintenance, the databases, the
/// Pulp tree, the install steps, out of maintenance, Ready.
pub async fn restore_data(
    cx: &Context,
    checked: &Checked,
    opts: &RestoreOptions,
    install: &[steps::Step],
) -> Result<()> {
    let host = &cx.host;
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    // A cluster, when there is one: its writers stop while the data is replaced.
    let cluster = match Cluster::connect(host, explicit).await {
        Ok(c) => match c.foreman().await {
            Ok(_) => Some(c),
            Err(e) => {
                cx.reporter.note(
                    "maintenance",
                    &format!(
                        "no cluster to quiesce ({}): restoring the host side",
                        super::cluster_problem(&e)
                    ),
                );
                None
            }
        },
        Err(e) => {
            cx.reporter.note(
                "maintenance",
                &format!(
                    "no cluster yet ({}): restoring the host side; the install creates it",
                    super::cluster_problem(&e)
                ),
            );
            None
        }
    };
    if let Some(note) = maintenance::recover(host, cluster.as_ref()).await? {
        cx.reporter.warning("maintenance", &note);
    }
    let entered = match &cluster {
        Some(c) => {
            phase(cx, "maintenance", async {
                maintenance::enter(host, c, "restore", opts.maintenance_timeout, &|d| {
                    cx.reporter
                        .note("maintenance", &format!("waiting for maintenance: {d}"))
                })
                .await
            })
            .await?
        }
        None => false,
    };
    let result = restore_inner(cx, checked, install).await;
    if let (Some(c), true) = (&cluster, entered) {
        let left = maintenance::leave(host, c).await;
        if let Err(e) = &left {
            cx.reporter.warning(
                "maintenance",
                &format!("could not take Foreman out of maintenance: {e}; the next backup, restore or upgrade does"),
            );
        }
        result?;
        left?;
    } else {
        result?;
    }
    if install.iter().all(|s| s.name() != "foreman") {
        if let Some(c) = &cluster {
            c.wait_ready(Duration::from_secs(cx.config.foreman.wait_timeout_secs))
                .await?;
        }
    }
    Ok(())
}

async fn restore_inner(cx: &Context, checked: &Checked, install: &[steps::Step]) -> Result<()> {
    let host = &cx.host;
    // Roles (with the restored passwords) and the server's access rules first.
    steps::apply(cx, &steps::select(&["postgres".to_string()])?).await?;
    let server = db::Server::admin(cx)?;
    phase(cx, "databases", async {
        let changes: Vec<Change> = checked
            .metadata
            .databases
            .iter()
            .map(|d| {
                Change::new(
                    format!("replace database {d} with {}", dump_name(d)),
                    "drop, create owned by its role, pg_restore in one transaction",
                )
            })
            .collect();
        cx.reporter.step_planned("databases", &changes);
        let passfile = db::PassFile::new(host, &server)?;
        for d in &checked.metadata.databases {
            db::recreate(&server, d).await?;
            host.runner().run(&db::restore_cmd(
                &server,
                d,
                &passfile.path,
                &checked.dir.join(dump_name(d)),
            ))?;
        }
        Ok(())
    })
    .await?;
    phase(cx, "pulp", async {
        let pulp = host.path(&cx.config.storage.pulp_dir);
        let mut changes = vec![Change::new(
            format!("restore {}", cx.config.storage.pulp_dir.display()),
            format!("from {PULP_TAR}, owners and modes as backed up"),
        )];
        let aside = if host.fs().exists(&pulp) {
            let to = aside_path(&pulp);
            changes.insert(
                0,
                Change::new(
                    format!("move {} to {}", pulp.display(), to.display()),
                    "kept, never deleted",
                ),
            );
            Some(to)
        } else {
            None
        };
        cx.reporter.step_planned("pulp", &changes);
        if let Some(to) = aside {
            host.fs().rename(&pulp, &to)?;
        }
        let tar = checked.dir.join(PULP_TAR);
        let mut bar = cx.reporter.download("Pulp content", None);
        host.fs()
            .unpack_tree(host.fs().open_read(&tar)?, &pulp, &mut |n| bar.advance(n))?;
        bar.finish();
        Ok(())
    })
    .await?;
    // The install converges on the restored data: storage fixes the tree's root, the foreman
    // step creates the cluster's Secrets from the restored copies.
    let mut names: Vec<String> = install.iter().map(|s| s.name().to_string()).collect();
    if !names.iter().any(|n| n == "storage") {
        names.push("storage".into());
    }
    steps::apply(cx, &steps::select(&names)?).await?;
    Ok(())
}

/// `PATH.before-restore-<UTC time>`.
fn aside_path(path: &Path) -> PathBuf {
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.before-restore-{stamp}"))
}

/// The stream this host runs: the live resource's, else the default.
pub async fn host_stream(cx: &Context) -> String {
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    if let Ok(c) = Cluster::connect(&cx.host, explicit).await {
        if let Ok(Some(fm)) = c.foreman().await {
            if let Some(v) = fm.data["spec"]["version"].as_str() {
                return v.to_string();
            }
        }
    }
    default_stream()
}
