//! `foreman-box backup`: one directory (or `.tar.zst`) from which `restore` rebuilds the box.
//!
//! What it holds, each file 0600 in a 0700 directory named `foreman-box-backup-<UTC time>`
//! (foremanctl's layout: src/roles/backup/tasks/main.yaml, 3.0.0, `foreman-backup-<time>`):
//! - `foreman.dump`, `candlepin.dump`, `pulp.dump`: `pg_dump -Fc` of the three databases;
//! - `pulp-content.tar`: the Pulp tree with owners and modes, without its scratch directories
//!   (tmp, imports, exports, sync_imports: foremanctl excludes media/exports, media/imports and
//!   media/sync_imports, src/roles/backup/tasks/pulp_content.yaml);
//! - `etc-foreman-box.tar`: /etc/foreman-box, the configuration and the kept secrets (database
//!   passwords and the copies of the generated Secrets) the data was made with;
//! - `foreman.yaml`: the Foreman resource;
//! - `metadata.json`: versions, stream, images and their digests, hostname, sizes, time;
//! - `SHA256SUMS`, written last (`sha256sum -c` reads it): a backup without it is incomplete.
//!
//! Order: refuse while tasks run (or wait, bounded), enter maintenance (see
//! [`crate::maintenance`]), write, leave maintenance whatever happened, then checksums and the
//! archive. A failure says what was written.

pub mod archive;
pub mod db;
pub mod restore;
pub mod verify;

pub use crate::error::DayTwoError;

use crate::cluster::{Cluster, ClusterError};
use crate::error::Result;
use crate::host::{HostError, TreeStats};
use crate::inspect::{ImageInfo, Inspector};
use crate::maintenance;
use crate::steps::{Change, Context, Outcome};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The layout version `metadata.json` carries.
pub const FORMAT: u32 = 1;
pub const SUMS: &str = "SHA256SUMS";
pub const METADATA: &str = "metadata.json";
pub const PULP_TAR: &str = "pulp-content.tar";
pub const ETC_TAR: &str = "etc-foreman-box.tar";
pub const RESOURCE_FILE: &str = "foreman.yaml";
/// Files a backup may lack: the resource, when no cluster ran.
pub const FILES_OPTIONAL: &[&str] = &[RESOURCE_FILE];
pub const ETC_DIR: &str = "/etc/foreman-box";
/// Where backups go when no directory is given.
pub const DEFAULT_PARENT: &str = "/var/backups/foreman-box";
/// The newest backup this host made (for the upgrade guard).
pub const LAST_BACKUP: &str = "/var/lib/foreman-box/last-backup.json";
pub const NAME_PREFIX: &str = "foreman-box-backup-";
/// Parts of the Pulp tree that are scratch space, left out.
pub const PULP_EXCLUDED: &[&str] = &[
    "tmp",
    "imports",
    "exports",
    "sync_imports",
    "media/imports",
    "media/exports",
    "media/sync_imports",
];

/// `metadata.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub format: u32,
    pub foreman_box_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: u64,
    pub hostname: String,
    /// The Foreman release stream the data belongs to (`spec.version`).
    pub stream: String,
    pub postgres_mode: String,
    pub postgres_server_version: String,
    pub databases: Vec<String>,
    /// Taken with every writer stopped.
    pub maintenance: bool,
    pub images: Vec<ImageInfo>,
    pub pulp_files: u64,
    pub pulp_bytes: u64,
    /// Every file but SHA256SUMS and this one, with its size.
    pub files: BTreeMap<String, u64>,
}

impl Metadata {
    /// What a complete backup of these databases holds besides SHA256SUMS.
    pub fn required_files(&self) -> Vec<String> {
        let mut out: Vec<String> = self.databases.iter().map(|d| dump_name(d)).collect();
        out.extend([
            PULP_TAR.to_string(),
            ETC_TAR.to_string(),
            METADATA.to_string(),
        ]);
        out
    }
}

/// The last backup, as the upgrade guard reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastBackup {
    pub path: String,
    pub created_unix: u64,
    pub stream: String,
}

pub fn dump_name(database: &str) -> String {
    format!("{database}.dump")
}

/// The stream a resource without `spec.version` runs: the CRD's default.
pub fn default_stream() -> String {
    serde_json::from_value::<foreman_operator::ForemanSpec>(serde_json::json!({}))
        .map(|s| s.version)
        .unwrap_or_else(|_| "3.18".into())
}

#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The directory the backup's directory (or archive) goes into.
    pub parent: Option<PathBuf>,
    pub archive: bool,
    pub wait_for_tasks: bool,
    pub tasks_timeout: Duration,
    /// False: `--no-maintenance`, said aloud.
    pub maintenance: bool,
    pub maintenance_timeout: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub files: BTreeMap<String, u64>,
    pub maintenance: bool,
}

/// How often running tasks are counted again while waiting (foreman-maintain's
/// RETRY_INTERVAL_FOR_TASKS_STATE, definitions/features/foreman_tasks.rb).
const TASKS_POLL: Duration = Duration::from_secs(10);

pub async fn backup(cx: &Context, opts: &BackupOptions) -> Result<BackupReport> {
    let server = db::Server::admin(cx)?;
    let cluster = open_cluster(cx, opts).await?;
    phase(cx, "tasks", async {
        wait_for_tasks(cx, &server, opts).await
    })
    .await?;
    let stamp = k8s_openapi::jiff::Timestamp::now();
    let (dir, archive) = new_backup_dir(cx, opts, &stamp)?;
    let entered = match &cluster {
        Some(c) => enter_maintenance(cx, c, opts, &dir).await?,
        None => false,
    };
    let mut written: Vec<String> = Vec::new();
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let captured = capture(cx, &server, cluster.as_ref(), explicit, &dir, &mut written).await;
    let left = match (&cluster, entered) {
        (Some(c), true) => leave_maintenance(cx, c).await,
        _ => Ok(()),
    };
    let captured = match (captured, left) {
        (Ok(c), Ok(())) => c,
        (captured, left) => {
            if let (Err(_), Err(l)) = (&captured, &left) {
                cx.reporter.warning(
                    "maintenance",
                    &format!("could not take Foreman out of maintenance: {l}; the next backup, restore or upgrade does (`foreman-box backup` again)"),
                );
            }
            return Err(DayTwoError::BackupFailed {
                dir,
                written,
                left_maintenance: entered && left.is_ok(),
                source: Box::new(captured.err().or(left.err()).expect("one of them failed")),
            }
            .into());
        }
    };
    let metadata = write_metadata(cx, &dir, &stamp, captured, entered, &mut written)?;
    verify::write_sums(&cx.host, &dir, &written)?;
    let path = if opts.archive {
        pack_archive(cx, &dir, &archive).await?;
        archive
    } else {
        dir
    };
    record_last_backup(cx, &path, &metadata)?;
    Ok(BackupReport {
        path,
        files: metadata.files,
        maintenance: entered,
    })
}

/// The cluster to put into maintenance (after recovering from a killed run's), or none with
/// `--no-maintenance`, said aloud.
async fn open_cluster(cx: &Context, opts: &BackupOptions) -> Result<Option<Cluster>> {
    if !opts.maintenance {
        cx.reporter.warning(
            "maintenance",
            "--no-maintenance: Foreman keeps running during the backup; writes made meanwhile may be missing or inconsistent",
        );
        return Ok(None);
    }
    let c = connect(cx).await?;
    if let Some(note) = maintenance::recover(&cx.host, Some(&c)).await? {
        cx.reporter.warning("maintenance", &note);
    }
    Ok(Some(c))
}

/// A new 0700 directory `<parent>/foreman-box-backup-<time>` and the archive path beside it. A
/// backup of the same second (one killed at once, say) keeps its name: this one takes the next
/// free `-N`; no backup is ever written over another.
fn new_backup_dir(
    cx: &Context,
    opts: &BackupOptions,
    stamp: &k8s_openapi::jiff::Timestamp,
) -> Result<(PathBuf, PathBuf)> {
    let base = format!("{NAME_PREFIX}{}", stamp.strftime("%Y%m%dT%H%M%SZ"));
    let parent = opts
        .parent
        .clone()
        .unwrap_or_else(|| cx.host.path(DEFAULT_PARENT));
    let taken = |name: &str| {
        cx.host.fs().exists(&parent.join(name))
            || cx.host.fs().exists(&parent.join(format!("{name}.tar.zst")))
    };
    let name = std::iter::once(base.clone())
        .chain((2..100).map(|n| format!("{base}-{n}")))
        .find(|n| !taken(n))
        .ok_or_else(|| DayTwoError::Exists {
            path: parent.join(&base),
        })?;
    if !cx.host.fs().is_dir(&parent) {
        cx.host.fs().ensure_dir(&parent, 0o700)?;
    }
    let dir = parent.join(&name);
    cx.host.fs().ensure_dir(&dir, 0o700)?;
    Ok((dir, parent.join(format!("{name}.tar.zst"))))
}

/// Puts Foreman into maintenance; false when there is no resource (nothing writes). On failure
/// it is taken out again and the empty backup directory removed.
async fn enter_maintenance(
    cx: &Context,
    c: &Cluster,
    opts: &BackupOptions,
    dir: &Path,
) -> Result<bool> {
    let entering = phase(cx, "maintenance", async {
        cx.reporter.step_planned(
            "maintenance",
            &[Change::new(
                "set spec.maintenance on Foreman foreman/foreman",
                "writers must stop so that the dumps and files agree",
            )],
        );
        maintenance::enter(&cx.host, c, "backup", opts.maintenance_timeout, &|d| {
            cx.reporter
                .note("maintenance", &format!("waiting for maintenance: {d}"))
        })
        .await
    })
    .await;
    match entering {
        Ok(false) => {
            cx.reporter.note(
                "maintenance",
                "no Foreman resource in the cluster: nothing runs that writes",
            );
            Ok(false)
        }
        Ok(true) => Ok(true),
        Err(e) => {
            let _ = maintenance::leave(&cx.host, c).await;
            let _ = cx.host.fs().remove_tree(dir);
            Err(e)
        }
    }
}

async fn leave_maintenance(cx: &Context, c: &Cluster) -> Result<()> {
    maintenance::leave(&cx.host, c).await?;
    cx.reporter
        .note("maintenance", "Foreman is out of maintenance again");
    Ok(())
}

/// The record of what was written (`metadata.json`), added to `written`.
fn write_metadata(
    cx: &Context,
    dir: &Path,
    stamp: &k8s_openapi::jiff::Timestamp,
    captured: Captured,
    entered: bool,
    written: &mut Vec<String>,
) -> Result<Metadata> {
    let mut files = BTreeMap::new();
    for n in written.iter() {
        files.insert(n.clone(), cx.host.fs().size(&dir.join(n))?.unwrap_or(0));
    }
    let metadata = Metadata {
        format: FORMAT,
        foreman_box_version: env!("CARGO_PKG_VERSION").into(),
        created: stamp.to_string(),
        created_unix: stamp.as_second().max(0) as u64,
        hostname: cx.facts.fqdn.clone(),
        stream: captured.stream,
        postgres_mode: match cx.config.postgres.mode {
            crate::config::PostgresMode::Local => "local".into(),
            crate::config::PostgresMode::External => "external".into(),
        },
        postgres_server_version: captured.server_version,
        databases: db::databases().iter().map(|d| d.to_string()).collect(),
        maintenance: entered,
        images: captured.images,
        pulp_files: captured.pulp.files,
        pulp_bytes: captured.pulp.bytes,
        files,
    };
    let text = serde_json::to_string_pretty(&metadata).map_err(|source| DayTwoError::Encode {
        what: METADATA.into(),
        source,
    })?;
    write_new(cx, &dir.join(METADATA), text.as_bytes())?;
    written.push(METADATA.into());
    Ok(metadata)
}

/// `--archive`: one zstd-compressed tar of the backup, replacing the directory.
async fn pack_archive(cx: &Context, dir: &Path, archive: &Path) -> Result<()> {
    phase(cx, "archive", async {
        cx.reporter.step_planned(
            "archive",
            &[Change::new(
                format!("write {}", archive.display()),
                "--archive: one zstd-compressed tar of the backup",
            )],
        );
        archive::pack(&cx.host, dir, archive, cx.reporter.as_ref())?;
        cx.host.fs().remove_tree(dir)?;
        Ok(())
    })
    .await
}

/// Where the last backup is and when it was made, for `upgrade`'s guard.
fn record_last_backup(cx: &Context, path: &Path, metadata: &Metadata) -> Result<()> {
    let record = LastBackup {
        path: path.display().to_string(),
        created_unix: metadata.created_unix,
        stream: metadata.stream.clone(),
    };
    let text = serde_json::to_vec(&record).map_err(|source| DayTwoError::Encode {
        what: LAST_BACKUP.into(),
        source,
    })?;
    let record_path = cx.host.path(LAST_BACKUP);
    if let Some(d) = record_path.parent() {
        cx.host.fs().ensure_dir(d, 0o700)?;
    }
    cx.host.fs().write_atomic(&record_path, &text, 0o600)?;
    Ok(())
}

/// The cluster for maintenance, read once: unreachable is an error (its pods may still write).
async fn connect(cx: &Context) -> Result<Cluster> {
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let c = Cluster::connect(&cx.host, explicit)
        .await
        .map_err(|source| DayTwoError::NoCluster { source })?;
    c.foreman()
        .await
        .map_err(|source| DayTwoError::NoCluster { source })?;
    Ok(c)
}

/// Refuses (or waits, bounded) while Foreman or Pulp tasks run.
async fn wait_for_tasks(cx: &Context, server: &db::Server, opts: &BackupOptions) -> Result<()> {
    let started = Instant::now();
    loop {
        let (foreman, pulp) = db::running_tasks(server).await?;
        if foreman + pulp == 0 {
            return Ok(());
        }
        if !opts.wait_for_tasks {
            return Err(DayTwoError::TasksRunning { foreman, pulp }.into());
        }
        if started.elapsed() >= opts.tasks_timeout {
            return Err(DayTwoError::TasksStillRunning {
                foreman,
                pulp,
                waited_secs: opts.tasks_timeout.as_secs(),
            }
            .into());
        }
        cx.reporter.note(
            "tasks",
            &format!(
                "waiting for {foreman} Foreman and {pulp} Pulp task(s) to finish (checking every {}s, up to {}s)",
                TASKS_POLL.as_secs(),
                opts.tasks_timeout.as_secs()
            ),
        );
        tokio::time::sleep(TASKS_POLL.min(opts.tasks_timeout)).await;
    }
}

struct Captured {
    stream: String,
    server_version: String,
    images: Vec<ImageInfo>,
    pulp: TreeStats,
}

/// The databases, the Pulp tree, /etc/foreman-box and the resource, into `dir`.
async fn capture(
    cx: &Context,
    server: &db::Server,
    cluster: Option<&Cluster>,
    explicit: Option<&Path>,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<Captured> {
    let admin = server.connect("postgres").await?;
    let (_, server_version) = server.version(&admin).await?;
    drop(admin);
    dump_databases(cx, server, dir, written).await?;
    let pulp = pack_pulp(cx, dir, written).await?;
    pack_config(cx, dir, written).await?;
    let (stream, images) = match cluster {
        Some(c) => save_resource(cx, c, explicit, dir, written).await?,
        None => (default_stream(), Vec::new()),
    };
    Ok(Captured {
        stream,
        server_version,
        images,
        pulp,
    })
}

/// `pg_dump -Fc` of each database, 0600 and synced.
async fn dump_databases(
    cx: &Context,
    server: &db::Server,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<()> {
    let host = &cx.host;
    phase(cx, "databases", async {
        let changes: Vec<Change> = db::databases()
            .iter()
            .map(|d| {
                Change::new(
                    format!("write {}", dump_name(d)),
                    format!("pg_dump -Fc of database {d} at {}", server.shown()),
                )
            })
            .collect();
        cx.reporter.step_planned("databases", &changes);
        let passfile = db::PassFile::new(host, server)?;
        for d in db::databases() {
            let name = dump_name(d);
            let file = dir.join(&name);
            host.runner()
                .run(&db::dump_cmd(server, d, &passfile.path, &file))?;
            host.fs().set_mode(&file, 0o600)?;
            host.fs().sync_file(&file)?;
            written.push(name);
        }
        Ok(())
    })
    .await
}

/// The Pulp tree without what Pulp rebuilds or only passes through.
async fn pack_pulp(cx: &Context, dir: &Path, written: &mut Vec<String>) -> Result<TreeStats> {
    let pulp_dir = cx.host.path(&cx.config.storage.pulp_dir);
    phase(cx, "pulp", async {
        cx.reporter.step_planned(
            "pulp",
            &[Change::new(
                format!("write {PULP_TAR}"),
                format!(
                    "{} without {}",
                    cx.config.storage.pulp_dir.display(),
                    PULP_EXCLUDED.join(", ")
                ),
            )],
        );
        let include = |p: &Path| !PULP_EXCLUDED.iter().any(|x| p == Path::new(x));
        let stats = pack_into(cx, &pulp_dir, &include, &dir.join(PULP_TAR), "Pulp content")?;
        written.push(PULP_TAR.into());
        Ok(stats)
    })
    .await
}

/// /etc/foreman-box: the configuration and the kept secrets.
async fn pack_config(cx: &Context, dir: &Path, written: &mut Vec<String>) -> Result<()> {
    phase(cx, "config", async {
        cx.reporter.step_planned(
            "config",
            &[Change::new(
                format!("write {ETC_TAR}"),
                format!("{ETC_DIR}: the configuration and the kept secrets"),
            )],
        );
        let etc = cx.host.path(ETC_DIR);
        pack_into(cx, &etc, &|_| true, &dir.join(ETC_TAR), ETC_DIR)?;
        written.push(ETC_TAR.into());
        Ok(())
    })
    .await
}

/// The `Foreman` resource (its release stream) and the images its pods run, when there is one.
async fn save_resource(
    cx: &Context,
    c: &Cluster,
    explicit: Option<&Path>,
    dir: &Path,
    written: &mut Vec<String>,
) -> Result<(String, Vec<ImageInfo>)> {
    let mut stream = default_stream();
    if let Some(fm) = c.foreman().await? {
        if let Some(v) = fm.data["spec"]["version"].as_str() {
            stream = v.to_string();
        }
        let yaml = serde_yaml::to_string(&resource_for_backup(&fm)).map_err(|source| {
            crate::Error::Render {
                what: RESOURCE_FILE.into(),
                source,
            }
        })?;
        write_new(cx, &dir.join(RESOURCE_FILE), yaml.as_bytes())?;
        written.push(RESOURCE_FILE.into());
    }
    let pods = match Inspector::connect(&cx.host, explicit).await {
        Ok(i) => i.pods().await,
        Err(e) => Err(e),
    };
    let images = match pods {
        Ok(pods) => crate::inspect::images(&pods),
        Err(e) => {
            let warning = format!("the images are not recorded: {e}");
            cx.reporter.warning("resource", &warning);
            Vec::new()
        }
    };
    Ok((stream, images))
}

/// The resource as it is worth keeping: its spec and identity, without server bookkeeping.
pub fn resource_for_backup(fm: &kube::api::DynamicObject) -> serde_json::Value {
    let v = serde_json::to_value(fm).unwrap_or_default();
    serde_json::json!({
        "apiVersion": v["apiVersion"],
        "kind": v["kind"],
        "metadata": {
            "name": v["metadata"]["name"],
            "namespace": v["metadata"]["namespace"],
            "labels": v["metadata"]["labels"],
        },
        "spec": v["spec"],
    })
}

/// A tar of `src` into the new file `file` (0600), with progress.
fn pack_into(
    cx: &Context,
    src: &Path,
    include: &dyn Fn(&Path) -> bool,
    file: &Path,
    what: &str,
) -> Result<TreeStats> {
    let f = cx.host.fs().create_new(file, 0o600)?;
    let mut bar = cx.reporter.download(what, None);
    let (w, stats) =
        cx.host
            .fs()
            .pack_tree(src, None, include, std::io::BufWriter::new(f), &mut |n| {
                bar.advance(n)
            })?;
    bar.finish();
    let f = w.into_inner().map_err(|e| HostError::Io {
        action: "write",
        path: file.to_path_buf(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(|source| HostError::Io {
        action: "flush",
        path: file.to_path_buf(),
        source,
    })?;
    Ok(stats)
}

fn write_new(cx: &Context, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = cx.host.fs().create_new(path, 0o600)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| HostError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Runs `work` as one step of the display: started, finished with its outcome and time.
pub(crate) async fn phase<T>(
    cx: &Context,
    name: &'static str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    cx.reporter.step_started(name);
    let r = work.await;
    cx.reporter.step_finished(
        name,
        if r.is_ok() {
            Outcome::Changed
        } else {
            Outcome::Failed
        },
        started.elapsed(),
    );
    r
}

/// Why the cluster could not be read, for messages.
pub fn cluster_problem(e: &ClusterError) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find("\nhelp:") {
        s.truncate(i);
    }
    s
}
