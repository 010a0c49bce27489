//! InstallK3s: the pinned (or chosen) k3s release, verified against its published SHA-256, with
//! its config, systemd unit and env file; started, and waited for until the API answers `/readyz`
//! and the node is Ready. Restarted only when the binary, unit, env or config changed.

use crate::action::{remove_stale_temps, wrap};
use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::download::{Fetched, Listed};
use crate::error::{Error, Result};
use crate::facts::Arch;
use crate::host::{Cmd, FileStamp};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

pub(crate) const BINARY: &str = "/usr/local/bin/k3s";
pub(crate) const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub(crate) const UNIT: &str = "/etc/systemd/system/k3s.service";
pub(crate) const ENV_FILE: &str = "/etc/systemd/system/k3s.service.env";
pub(crate) const IMAGES_DIR: &str = "/var/lib/rancher/k3s/agent/images";
pub(crate) const VERSION_STAMP: &str = "/var/lib/foreman-box/k3s-version";
/// The installed binary's hash and the stat fields it had when verified.
pub(crate) const BINARY_STAMP: &str = "/var/lib/foreman-box/k3s-binary.stamp";
pub(crate) const CACHE_DIR: &str = "/var/lib/foreman-box/cache/k3s";
/// The tools k3s answers to by its program name, linked as its own installer does.
const LINKS: &[&str] = &["kubectl", "crictl", "ctr"];

/// The release assets for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assets {
    pub binary: String,
    pub sums: String,
    pub airgap: String,
}

impl Assets {
    pub(crate) fn for_arch(arch: &Arch) -> Self {
        let a = arch.name();
        Assets {
            binary: if *arch == Arch::Amd64 {
                "k3s".into()
            } else {
                format!("k3s-{a}")
            },
            sums: format!("sha256sum-{a}.txt"),
            airgap: format!("k3s-airgap-images-{a}.tar.zst"),
        }
    }
}

/// The download URL of a release asset; `+` in tags is sent as `%2B`.
pub(crate) fn asset_url(base: &str, version: &str, asset: &str) -> String {
    format!(
        "{}/{}/{}",
        base.trim_end_matches('/'),
        version.replace('+', "%2B"),
        asset
    )
}

/// What this step changes beyond the host's common operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// The binary put in the download cache (fetched and verified, or copied from the bundle),
    /// linked to /usr/local/bin/k3s, and its stat stamp recorded.
    InstallBinary {
        version: String,
        sha256: String,
        /// The cache entry, as a host path.
        cache: String,
        from: Source,
    },
    /// The stat stamp of a binary whose hash was verified by reading it.
    RecordStamp { sha256: String },
    /// A release asset or a bundle member put at `path` (a host path), verified as it is written.
    InstallFile {
        path: String,
        sha256: String,
        from: Source,
    },
    /// k3s enabled and started, then waited for.
    Start,
    /// k3s restarted, then waited for.
    Restart,
    #[serde(untagged)]
    Host(HostOp),
}

/// Where a file of the release comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The release server, with the checksum list the hash came from (fetched again when the
    /// download does not match a cached list: a poisoned cache never wins for good).
    Release {
        url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        checksums: Option<Checksums>,
    },
    /// A member of the bundle, verified with the whole bundle before any step ran.
    Bundle { member: String },
}

/// The checksum list a download's hash came from, and the asset's name in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksums {
    pub url: String,
    /// Our cached copy, as a host path.
    pub cache: String,
    pub asset: String,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::InstallBinary { version, .. } => write!(f, "install {BINARY} {version}"),
            Op::RecordStamp { .. } => {
                write!(f, "record the stat stamp of {BINARY} in {BINARY_STAMP}")
            }
            Op::InstallFile { path, .. } => write!(f, "install {path}"),
            Op::Start => f.write_str("start k3s and wait until it is ready"),
            Op::Restart => f.write_str("restart k3s and wait until it is ready"),
            Op::Host(op) => op.fmt(f),
        }
    }
}

pub(super) async fn run(cx: &Context, op: Op) -> Result<()> {
    match op {
        Op::InstallBinary {
            version,
            sha256,
            cache,
            from,
        } => install_binary(cx, &version, sha256, &cx.host.path(cache), from).await,
        Op::RecordStamp { sha256 } => write_binary_stamp(cx, &sha256),
        Op::InstallFile { path, sha256, from } => {
            let dest = cx.host.path(path);
            match from {
                Source::Bundle { member } => copy_member(cx, bundle(cx)?, &member, &dest, &sha256),
                Source::Release { url, .. } => {
                    cx.downloader
                        .fetch(cx.host.fs(), &url, &dest, &sha256)
                        .await?;
                    Ok(())
                }
            }
        }
        Op::Start | Op::Restart => {
            let services = cx.host.services();
            let since = std::time::SystemTime::now();
            if op == Op::Start {
                services.enable_now("k3s")?;
            } else {
                services.restart("k3s")?;
            }
            wait_ready(cx, since).await
        }
        Op::Host(op) => op.run(&cx.host),
    }
}

/// The bundle this run installs from: a source that names it was planned only with one.
fn bundle(cx: &Context) -> Result<&foreman_box_bundle::archive::Bundle> {
    cx.bundle.as_deref().ok_or(Error::NoBundle)
}

/// The cache entry filled (from the bundle, or fetched and verified), linked into place (one
/// copy of the data), and the hash it was verified against recorded with its stat.
async fn install_binary(
    cx: &Context,
    version: &str,
    sha: String,
    cached: &std::path::Path,
    from: Source,
) -> Result<()> {
    let fs = cx.host.fs();
    let sha = match from {
        Source::Bundle { member } => {
            copy_member(cx, bundle(cx)?, &member, cached, &sha)?;
            sha
        }
        Source::Release { url, checksums } => {
            let listed = checksums.map(|c| Listed {
                url: c.url,
                cache: cx.host.path(c.cache),
                asset: c.asset,
            });
            let fetched = match &listed {
                Some(listed) => {
                    cx.downloader
                        .fetch_listed(fs, &url, cached, &sha, listed)
                        .await?
                }
                None => cx.downloader.fetch(fs, &url, cached, &sha).await?,
            };
            if fetched == Fetched::Cached {
                tracing::info!("k3s {version} taken from the download cache");
            }
            // A poisoned cached list was fetched again: the stamp records the hash the fresh
            // list gives, which the download was verified against.
            match &listed {
                Some(listed) => fs
                    .read_string(&listed.cache)?
                    .and_then(|text| {
                        crate::download::parse_sha256sums(&text)
                            .into_iter()
                            .find(|(n, _)| *n == listed.asset)
                            .map(|(_, h)| h)
                    })
                    .unwrap_or(sha),
                None => sha,
            }
        }
    };
    fs.link_atomic(cached, &cx.host.path(BINARY), 0o755)?;
    write_binary_stamp(cx, &sha)
}

async fn resolve_version(cx: &Context) -> Result<String> {
    let k3s = &cx.config.k3s;
    let Some(channel) = k3s.channel.as_deref().filter(|_| !k3s.version_from_user) else {
        return Ok(k3s.version.clone());
    };
    let url = format!("{}/{}", k3s.channel_url.trim_end_matches('/'), channel);
    let target = cx
        .downloader
        .redirect_target(&url)
        .await
        .map_err(|e| Error::Channel {
            channel: channel.to_string(),
            url: url.clone(),
            problem: e.to_string(),
        })?;
    let tag = target
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("")
        .replace("%2B", "+")
        .replace("%2b", "+");
    if !tag.starts_with('v') {
        return Err(Error::Channel {
            channel: channel.to_string(),
            url,
            problem: format!("it redirected to {target}, which names no release tag"),
        });
    }
    tracing::info!(channel, version = %tag, "resolved k3s channel");
    Ok(tag)
}

/// What the stamp next to the binary records: its hash and the stat fields it had when hashed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BinaryStamp {
    sha256: String,
    stat: FileStamp,
}

/// The binary's hash: taken from the stamp while the stat fields are those recorded with it
/// (as git's index does), read and hashed otherwise. Returns the hash and whether it was
/// trusted from the stamp.
fn installed_binary_sha(cx: &Context) -> Result<Option<(String, bool)>> {
    let fs = cx.host.fs();
    let path = cx.host.path(BINARY);
    let Some(stat) = fs.stamp(&path)? else {
        return Ok(None);
    };
    let stamp: Option<BinaryStamp> = fs
        .read(&cx.host.path(BINARY_STAMP))?
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(stamp) = stamp.filter(|s| s.stat == stat) {
        return Ok(Some((stamp.sha256, true)));
    }
    Ok(fs.sha256(&path)?.map(|sha| (sha, false)))
}

/// The release and its checksums, as this run sees them.
struct Release {
    version: String,
    assets: Assets,
    base: String,
    /// The cache directory of this version (a host path).
    cache: String,
    sums: Vec<(String, String)>,
}

impl Release {
    fn url(&self, asset: &str) -> String {
        asset_url(&self.base, &self.version, asset)
    }

    fn sha256(&self, asset: &str) -> Result<String> {
        self.sums
            .iter()
            .find(|(n, _)| n == asset)
            .map(|(_, h)| h.clone())
            .ok_or_else(|| Error::NoChecksum {
                url: self.url(&self.assets.sums),
                asset: asset.to_string(),
                version: self.version.clone(),
            })
    }

    fn checksums(&self) -> Checksums {
        Checksums {
            url: self.url(&self.assets.sums),
            cache: format!("{}/{}", self.cache, self.assets.sums),
            asset: self.assets.binary.clone(),
        }
    }
}

/// Compares the host with the release and configuration; each difference is one operation that
/// carries exactly what was decided here.
pub(super) async fn plan(cx: &Context) -> Result<Vec<Planned<Op>>> {
    let host = &cx.host;
    let mut actions: Vec<Planned<Op>> = Vec::new();
    // Temp files of killed runs beside what this step writes other than as a DesiredFile.
    let written: Vec<_> = std::iter::once(BINARY.to_string())
        .chain(LINKS.iter().map(|l| format!("/usr/local/bin/{l}")))
        .chain([BINARY_STAMP.to_string()])
        .map(|p| host.path(p))
        .collect();
    actions.extend(wrap(remove_stale_temps(host, &written), Op::Host));

    let release = plan_checksums(cx, &mut actions).await?;
    let install_binary = plan_binary(cx, &release, &mut actions)?;
    plan_images(cx, &release, &mut actions)?;
    for link in LINKS.iter().map(|l| format!("/usr/local/bin/{l}")) {
        if !host.fs().exists(&host.path(&link)) {
            let (link, target) = (link.into(), "k3s".into());
            actions.push(Planned::new(
                Op::Host(HostOp::Symlink { link, target }),
                "missing",
            ));
        }
    }
    let files = [
        DesiredFile::new(CONFIG, config_yaml(cx), 0o600),
        DesiredFile::new(UNIT, unit_file(), 0o644),
        DesiredFile::new(ENV_FILE, env_file(cx), 0o600),
        DesiredFile::new(VERSION_STAMP, format!("{}\n", release.version), 0o644),
    ];
    let mut restart_needed = install_binary;
    let mut unit_changed = false;
    for f in files {
        if let Some(c) = f.plan(host)? {
            restart_needed |= f.path != VERSION_STAMP;
            unit_changed |= f.path == UNIT;
            actions.push(Planned::new(Op::Host(HostOp::Write(f)), c.why));
        }
    }
    plan_service(cx, restart_needed, unit_changed, &mut actions);
    Ok(actions)
}

/// The release's checksum list (from the bundle, the cache or the server), cached so that a
/// re-run needs no network. A malformed cached list is fetched again.
async fn plan_checksums(cx: &Context, actions: &mut Vec<Planned<Op>>) -> Result<Release> {
    let (host, fs) = (&cx.host, cx.host.fs());
    let version = resolve_version(cx).await?;
    let assets = Assets::for_arch(&cx.facts.arch);
    let base = cx.config.k3s.release_url.clone();
    let cache = format!("{CACHE_DIR}/{version}");
    let sums_cached = format!("{cache}/{}", assets.sums);
    let (text, sums) = match &cx.bundle {
        // The bundle's list, verified with the whole bundle before any step ran.
        Some(b) => {
            let text = member_text(b, &assets.sums)?;
            let sums = crate::download::parse_sha256sums_strict(&text).map_err(|problem| {
                Error::BadChecksumList {
                    url: format!("{} member {}", b.path().display(), assets.sums),
                    problem,
                }
            })?;
            (text, sums)
        }
        None => {
            let url = asset_url(&base, &version, &assets.sums);
            cx.downloader
                .checksums(fs, &host.path(&sums_cached), &url)
                .await?
        }
    };
    if fs.read_string(&host.path(&sums_cached))?.as_deref() != Some(text.as_str()) {
        actions.push(Planned::new(
            Op::Host(HostOp::Write(DesiredFile::new(&sums_cached, text, 0o644))),
            "release checksums are cached so a re-run needs no network",
        ));
    }
    Ok(Release {
        version,
        assets,
        base,
        cache,
        sums,
    })
}

/// The binary installed when its hash differs, else its mode and stamp kept right. Returns
/// whether it is installed (k3s then restarts).
fn plan_binary(cx: &Context, r: &Release, actions: &mut Vec<Planned<Op>>) -> Result<bool> {
    let (host, fs) = (&cx.host, cx.host.fs());
    let sha256 = r.sha256(&r.assets.binary)?;
    let installed = installed_binary_sha(cx)?;
    if installed.as_ref().map(|(s, _)| s.as_str()) != Some(sha256.as_str()) {
        let why = match installed {
            None => "missing",
            Some(_) => "installed binary has another hash",
        };
        let from = match &cx.bundle {
            Some(_) => Source::Bundle {
                member: r.assets.binary.clone(),
            },
            None => Source::Release {
                url: r.url(&r.assets.binary),
                checksums: Some(r.checksums()),
            },
        };
        let op = Op::InstallBinary {
            version: r.version.clone(),
            sha256,
            cache: format!("{}/{}", r.cache, r.assets.binary),
            from,
        };
        actions.push(Planned::new(op, why));
        return Ok(true);
    }
    let trusted = installed.as_ref().is_some_and(|(_, t)| *t);
    let chmod = fs.mode(&host.path(BINARY))? != Some(0o755);
    if chmod {
        let op = HostOp::SetMode {
            path: BINARY.into(),
            mode: 0o755,
        };
        actions.push(Planned::new(Op::Host(op), "not executable"));
    }
    // A chmod changes the ctime the stamp records, so it is recorded after it.
    if chmod || !trusted {
        actions.push(Planned::new(
            Op::RecordStamp { sha256 },
            "its hash was verified by reading it; later runs trust the stamp instead",
        ));
    }
    Ok(false)
}

/// k3s's own airgap images (asked for, or always from a bundle: with no network they must come
/// from the archive) and the bundle's pinned images, for k3s to import; each compared first, so
/// the same bundle again changes nothing.
fn plan_images(cx: &Context, r: &Release, actions: &mut Vec<Planned<Op>>) -> Result<()> {
    let (host, fs) = (&cx.host, cx.host.fs());
    if cx.config.k3s.airgap_images || cx.bundle.is_some() {
        let sha256 = r.sha256(&r.assets.airgap)?;
        let path = format!("{IMAGES_DIR}/{}", r.assets.airgap);
        host.owned(IMAGES_DIR)?;
        if fs.sha256(&host.owned(&path)?)?.as_deref() != Some(sha256.as_str()) {
            let (why, from) = match &cx.bundle {
                Some(_) => (
                    "installing from the bundle",
                    Source::Bundle {
                        member: r.assets.airgap.clone(),
                    },
                ),
                None => (
                    "airgap images requested",
                    Source::Release {
                        url: r.url(&r.assets.airgap),
                        checksums: None,
                    },
                ),
            };
            let op = Op::InstallFile { path, sha256, from };
            actions.push(Planned::new(op, why));
        }
    }
    if let Some(b) = &cx.bundle {
        let member = b.image_archive();
        let name = foreman_box_bundle::archive::image_archive_file(&b.manifest().arch);
        let path = format!("{IMAGES_DIR}/{name}");
        host.owned(IMAGES_DIR)?;
        let sha256 = member.sha256().to_string();
        if fs.sha256(&host.owned(&path)?)?.as_deref() != Some(sha256.as_str()) {
            let why = format!(
                "the bundle's {} images of Foreman {}",
                b.manifest().images.len(),
                b.manifest().stream
            );
            let from = Source::Bundle {
                member: member.name().to_string(),
            };
            actions.push(Planned::new(Op::InstallFile { path, sha256, from }, why));
        }
    }
    Ok(())
}

/// Started when it is not running, restarted when its binary, unit or config changed (after
/// systemd reloaded a changed unit); nothing with --skip-start.
fn plan_service(
    cx: &Context,
    restart_needed: bool,
    unit_changed: bool,
    actions: &mut Vec<Planned<Op>>,
) {
    if cx.options.skip_start {
        cx.reporter.note("k3s", "not starting k3s: --skip-start");
        return;
    }
    let state = cx.host.services().state("k3s");
    let (op, why) = if state != "active" {
        (Op::Start, format!("service is {state}"))
    } else if restart_needed {
        (
            Op::Restart,
            "its binary, unit or config changed".to_string(),
        )
    } else {
        return;
    };
    if unit_changed {
        actions.push(Planned::new(
            Op::Host(HostOp::ReloadUnits),
            "k3s.service changed",
        ));
    }
    actions.push(Planned::new(op, why));
}

/// A bundle member by its name, or by a k3s asset's name (members sit under `k3s/`).
fn member<'a>(
    b: &'a foreman_box_bundle::archive::Bundle,
    name: &str,
) -> Result<foreman_box_bundle::archive::MemberRef<'a>> {
    b.member(name)
        .or_else(|| b.member(&foreman_box_bundle::archive::k3s_member(name)))
        .ok_or_else(|| {
            Error::Bundle(foreman_box_bundle::Error::NotABundle {
                path: b.path().to_path_buf(),
                problem: format!("it has no member {name}"),
            })
        })
}

/// A small text member (the checksum list).
fn member_text(b: &foreman_box_bundle::archive::Bundle, name: &str) -> Result<String> {
    let mut bytes = Vec::new();
    member(b, name)?.copy_verified(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| {
        Error::Bundle(foreman_box_bundle::Error::NotABundle {
            path: b.path().to_path_buf(),
            problem: format!("{name} is not text"),
        })
    })
}

/// Makes `dest` hold a bundle member whose SHA-256 is `expected` (from the release's checksum
/// list or the bundle's manifest): written to `dest.part`, hashed again as it is copied, then
/// renamed into place (no network, and no unpacked copy of the bundle: members are read in
/// place at their offset). A file already there with that hash is kept.
fn copy_member(
    cx: &Context,
    b: &foreman_box_bundle::archive::Bundle,
    name: &str,
    dest: &std::path::Path,
    expected: &str,
) -> Result<()> {
    let fs = cx.host.fs();
    if fs.sha256(dest)?.as_deref() == Some(expected) {
        return Ok(());
    }
    let m = member(b, name)?;
    if m.sha256() != expected {
        return Err(Error::Bundle(foreman_box_bundle::Error::Damaged {
            path: b.path().to_path_buf(),
            member: m.name().to_string(),
            problem: format!(
                "its SHA-256 is {}, the checksum list says {expected}",
                m.sha256()
            ),
        }));
    }
    // As a download writes it: the same name, the same mode, the same tree.
    let part = crate::download::part_path(dest);
    let mut out = fs.open_truncate(&part, 0o600)?;
    let copied = m.copy_verified(&mut out);
    drop(out);
    if let Err(e) = copied {
        fs.remove_file(&part)?;
        return Err(e.into());
    }
    fs.rename(&part, dest)?;
    Ok(())
}

/// Records the binary's hash with its current stat fields.
fn write_binary_stamp(cx: &Context, sha: &str) -> Result<()> {
    let fs = cx.host.fs();
    let Some(stat) = fs.stamp(&cx.host.path(BINARY))? else {
        return Ok(());
    };
    let stamp = BinaryStamp {
        sha256: sha.to_string(),
        stat,
    };
    let json = serde_json::to_vec(&stamp).expect("a stamp serializes");
    fs.write_atomic(&cx.host.path(BINARY_STAMP), &json, 0o644)?;
    Ok(())
}

/// Waits for `/readyz` and a Ready node; on timeout, says why from the journal since `since`.
async fn wait_ready(cx: &Context, since: std::time::SystemTime) -> Result<()> {
    let timeout = Duration::from_secs(cx.config.k3s.ready_timeout_secs);
    let started = Instant::now();
    let runner = cx.host.runner();
    let kubectl = |args: &[&str]| Cmd::new(BINARY).arg("kubectl").args(args.iter().copied());
    let mut api_ready = false;
    while started.elapsed() < timeout {
        if !api_ready {
            api_ready = runner
                .output(&kubectl(&["get", "--raw=/readyz"]))
                .is_ok_and(|o| o.success() && o.stdout.trim() == "ok");
            if api_ready {
                tracing::info!(
                    secs = started.elapsed().as_secs(),
                    "k3s API answers /readyz"
                );
            }
        }
        if api_ready {
            let nodes = runner.output(&kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ]));
            if nodes.is_ok_and(|o| o.success() && o.stdout.split_whitespace().any(|s| s == "True"))
            {
                tracing::info!(secs = started.elapsed().as_secs(), "k3s node is Ready");
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Err(Error::K3sNotReady {
        timeout_secs: timeout.as_secs(),
        diagnosis: format!(
            "{}\n{}",
            if api_ready {
                "the API answers /readyz but the node is not Ready"
            } else {
                "the API never answered /readyz"
            },
            cx.host.services().diagnose("k3s", 30, since)
        ),
    })
}

fn config_yaml(cx: &Context) -> String {
    let k = &cx.config.k3s;
    crate::manifests::k3s_config_yaml(
        &cx.facts.fqdn,
        k.cluster_cidr,
        k.service_cidr,
        cx.config.node_ip,
    )
}

/// The unit k3s's own installer writes for a server, pointing at our env file.
fn unit_file() -> String {
    format!(
        "# Written by foreman-box.\n\
[Unit]\n\
Description=Lightweight Kubernetes (k3s), installed by foreman-box\n\
Documentation=https://k3s.io\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=notify\n\
EnvironmentFile=-/etc/default/%N\n\
EnvironmentFile=-/etc/sysconfig/%N\n\
EnvironmentFile=-{ENV_FILE}\n\
KillMode=process\n\
Delegate=yes\n\
User=root\n\
LimitNOFILE=1048576\n\
LimitNPROC=infinity\n\
LimitCORE=infinity\n\
TasksMax=infinity\n\
TimeoutStartSec=0\n\
Restart=always\n\
RestartSec=5s\n\
ExecStartPre=-/sbin/modprobe br_netfilter\n\
ExecStartPre=-/sbin/modprobe overlay\n\
ExecStart={BINARY} server\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    )
}

/// Proxy settings the unit passes on to k3s (and so to containerd), as k3s's installer does. A
/// value with a newline or another control character cannot be one value in the file: it is
/// left out with a warning that names the variable (never its value, which may hold a password).
fn env_file(cx: &Context) -> String {
    let vars: Vec<(&str, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "CONTAINERD_HTTP_PROXY",
        "CONTAINERD_HTTPS_PROXY",
        "CONTAINERD_NO_PROXY",
    ]
    .into_iter()
    .filter_map(|v| Some((v, std::env::var(v).ok()?)))
    .collect();
    let (text, skipped) = crate::manifests::env_file(&vars);
    for name in skipped {
        cx.reporter.warning(
            "k3s",
            &format!("{name} holds a newline or another control character, so it is not passed on to k3s: set {name} to the proxy URL alone and re-run"),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layers;
    use crate::context::{Context, RunOptions};
    use crate::host::{Host, Output, RecordingRunner};
    use std::sync::Arc;

    async fn run_all(cx: &Context, actions: Vec<Planned<Op>>) -> Result<()> {
        for a in actions {
            run(cx, a.op).await?;
        }
        Ok(())
    }

    /// A root where the k3s binary of the pinned release is installed and its checksums cached,
    /// so the step needs no network; services go to a recording runner.
    fn context(runner: Arc<RecordingRunner>) -> (tempfile::TempDir, Context) {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path(), runner);
        let binary = b"stand-in k3s";
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(binary))
        };
        let version = crate::config::PINNED_K3S_VERSION;
        host.fs()
            .write_atomic(&host.path(BINARY), binary, 0o755)
            .unwrap();
        host.fs()
            .write_atomic(
                &host.path(format!("{CACHE_DIR}/{version}/sha256sum-amd64.txt")),
                format!("{sha}  k3s\n").as_bytes(),
                0o644,
            )
            .unwrap();
        let config = Layers::new()
            .with_flags([("k3s.ready_timeout", "1".to_string())])
            .unwrap()
            .resolve()
            .unwrap();
        let facts = crate::steps::preflight::tests::good_facts();
        (
            root,
            Context::new(host, facts, config, RunOptions::default(), None),
        )
    }

    /// Scripts the next answer to a command: its exit status and stdout.
    fn answer(runner: &RecordingRunner, command: &str, status: i32, stdout: &str) {
        runner.answer(
            command,
            Output {
                status,
                stdout: stdout.into(),
                ..Output::default()
            },
        );
    }

    /// The API answers /readyz and the node is Ready.
    fn answer_ready(runner: &RecordingRunner) {
        answer(
            runner,
            "/usr/local/bin/k3s kubectl get --raw=/readyz",
            0,
            "ok",
        );
        answer(runner, "/usr/local/bin/k3s kubectl get nodes", 0, "True");
    }

    fn commands(runner: &RecordingRunner) -> Vec<String> {
        runner.calls().iter().map(|c| c.display()).collect()
    }

    #[tokio::test]
    async fn first_start_reloads_units_enables_and_waits_for_readyz_and_node() {
        let runner = Arc::new(RecordingRunner::new());
        answer(&runner, "systemctl is-active k3s", 3, "inactive\n");
        answer_ready(&runner);
        let (_root, cx) = context(runner.clone());
        let actions = plan(&cx).await.unwrap();
        assert!(
            actions.contains(&Planned::new(Op::Start, "service is inactive")),
            "{actions:?}"
        );
        assert_eq!(
            Op::Start.to_string(),
            "start k3s and wait until it is ready"
        );
        run_all(&cx, actions).await.unwrap();
        assert_eq!(
            commands(&runner),
            [
                "systemctl is-active k3s",
                "systemctl daemon-reload",
                "systemctl enable --now k3s",
                "/usr/local/bin/k3s kubectl get --raw=/readyz",
                "/usr/local/bin/k3s kubectl get nodes -o jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ]
        );
    }

    #[tokio::test]
    async fn running_k3s_is_restarted_only_when_its_config_changed() {
        let runner = Arc::new(RecordingRunner::new());
        let (_root, cx) = context(runner.clone());
        // k3s runs, but its config and unit are not ours yet: converge with a restart.
        answer(&runner, "systemctl is-active k3s", 0, "active\n");
        let actions = plan(&cx).await.unwrap();
        answer_ready(&runner);
        run_all(&cx, actions).await.unwrap();
        assert!(
            commands(&runner).contains(&"systemctl restart k3s".to_string()),
            "{:?}",
            commands(&runner)
        );

        // Nothing changed: no restart planned.
        let before = runner.calls().len();
        answer(&runner, "systemctl is-active k3s", 0, "active\n");
        assert!(plan(&cx).await.unwrap().is_empty());
        assert_eq!(commands(&runner)[before..], ["systemctl is-active k3s"]);

        // The config changed behind our back: a restart is planned, with the reason.
        cx.host
            .fs()
            .write_atomic(&cx.host.path(CONFIG), b"edited", 0o600)
            .unwrap();
        answer(&runner, "systemctl is-active k3s", 0, "active\n");
        let actions = plan(&cx).await.unwrap();
        let restart = Planned::new(Op::Restart, "its binary, unit or config changed");
        assert_eq!(actions.last(), Some(&restart), "{actions:?}");
    }

    #[tokio::test]
    async fn binary_hash_is_trusted_from_its_stamp_until_its_stat_changes() {
        let runner = Arc::new(RecordingRunner::new());
        let (_root, cx) = context(runner.clone());
        let binary_actions = |actions: &[Planned<Op>]| -> Vec<Op> {
            actions
                .iter()
                .map(|a| a.op.clone())
                .filter(|op| op.to_string().contains(BINARY))
                .collect()
        };
        // Hashed by reading it: the stamp is recorded.
        answer(&runner, "systemctl is-active k3s", 0, "active\n");
        let actions = plan(&cx).await.unwrap();
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b"stand-in k3s"))
        };
        assert_eq!(binary_actions(&actions), [Op::RecordStamp { sha256 }]);
        answer_ready(&runner);
        run_all(&cx, actions).await.unwrap();
        answer(&runner, "systemctl is-active k3s", 0, "active\n");
        assert_eq!(binary_actions(&plan(&cx).await.unwrap()), Vec::<Op>::new());

        // The stamp is believed, not the bytes: a stamp naming another hash for the same stat
        // makes the binary count as another one (proof that it was not read).
        let stamp_path = cx.host.path(BINARY_STAMP);
        let mut stamp: BinaryStamp =
            serde_json::from_slice(&cx.host.fs().read(&stamp_path).unwrap().unwrap()).unwrap();
        let recorded = stamp.sha256.clone();
        stamp.sha256 = "0".repeat(64);
        cx.host
            .fs()
            .write_atomic(&stamp_path, &serde_json::to_vec(&stamp).unwrap(), 0o644)
            .unwrap();
        assert_reinstall_planned(&cx, &runner).await;

        // Same size, other bytes, written in place: the stat changed, so it is read again.
        stamp.sha256 = recorded;
        cx.host
            .fs()
            .write_atomic(&stamp_path, &serde_json::to_vec(&stamp).unwrap(), 0o644)
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        std::io::Write::write_all(
            &mut cx
                .host
                .fs()
                .open_truncate(&cx.host.path(BINARY), 0o755)
                .unwrap(),
            b"STAND-IN K3S",
        )
        .unwrap();
        assert_reinstall_planned(&cx, &runner).await;
    }

    /// The plan installs the binary again because its hash differs.
    async fn assert_reinstall_planned(cx: &Context, runner: &RecordingRunner) {
        answer(runner, "systemctl is-active k3s", 0, "active\n");
        let actions = plan(cx).await.unwrap();
        assert!(
            actions.iter().any(|a| matches!(
                &a.op,
                Op::InstallBinary { version, from: Source::Release { .. }, .. }
                    if version == crate::config::PINNED_K3S_VERSION
            ) && a.why == "installed binary has another hash"),
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn timeout_says_why_with_service_state_and_journal() {
        let runner = Arc::new(RecordingRunner::new());
        answer(&runner, "systemctl is-active k3s", 3, "inactive\n");
        runner.answer(
            "/usr/local/bin/k3s kubectl get --raw=/readyz",
            Output {
                status: 1,
                stderr: "connection refused".into(),
                ..Output::default()
            },
        );
        answer(&runner, "systemctl is-active k3s", 3, "activating\n");
        runner.answer(
            "journalctl",
            Output {
                stdout:
                    "level=fatal msg=\"starting kubernetes: preparing server: port 6443 in use\""
                        .into(),
                ..Output::default()
            },
        );
        let (_root, cx) = context(runner.clone());
        let actions = plan(&cx).await.unwrap();
        let asked_at = std::time::SystemTime::now();
        let err = run_all(&cx, actions).await.unwrap_err().to_string();
        assert!(err.contains("k3s did not become ready within 1s"), "{err}");
        assert!(err.contains("the API never answered /readyz"), "{err}");
        assert!(err.contains("service state: activating"), "{err}");
        assert!(err.contains("port 6443 in use"), "{err}");
        // Only this start's lines: the journal is read from when the start was asked for.
        let journal = commands(&runner)
            .into_iter()
            .find(|c| c.starts_with("journalctl"))
            .unwrap();
        let since: f64 = journal
            .split_once("--since @")
            .and_then(|(_, s)| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{journal}"));
        let asked = asked_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(since >= asked && since <= asked + 60.0, "{journal}");
        assert!(err.contains("last journal lines since this start"), "{err}");
        assert!(err.contains("help: fix what the journal shows"), "{err}");
    }

    /// A bundle source run without a bundle is refused, saying what to do, and writes nothing.
    #[tokio::test]
    async fn a_bundle_member_without_a_bundle_is_refused_and_writes_nothing() {
        let (_root, cx) = context(Arc::new(RecordingRunner::new()));
        let path = format!("{IMAGES_DIR}/k3s-airgap-images-amd64.tar.zst");
        let op = Op::InstallFile {
            path: path.clone(),
            sha256: "0".repeat(64),
            from: Source::Bundle {
                member: "k3s-airgap-images-amd64.tar.zst".into(),
            },
        };
        let err = run(&cx, op).await.unwrap_err().to_string();
        assert!(err.contains("this run was given none"), "{err}");
        assert!(
            err.contains("help: run `foreman-box install --bundle FILE`"),
            "{err}"
        );
        assert!(!cx.host.fs().exists(&cx.host.path(&path)));
    }

    #[test]
    fn plus_in_tag_is_escaped_in_urls() {
        assert_eq!(
            asset_url(
                "https://github.com/k3s-io/k3s/releases/download/",
                "v1.33.5+k3s1",
                "k3s"
            ),
            "https://github.com/k3s-io/k3s/releases/download/v1.33.5%2Bk3s1/k3s"
        );
    }

    #[test]
    fn assets_follow_the_architecture() {
        assert_eq!(Assets::for_arch(&Arch::Amd64).binary, "k3s");
        let arm = Assets::for_arch(&Arch::Arm64);
        assert_eq!(arm.binary, "k3s-arm64");
        assert_eq!(arm.sums, "sha256sum-arm64.txt");
        assert_eq!(arm.airgap, "k3s-airgap-images-arm64.tar.zst");
    }
}
