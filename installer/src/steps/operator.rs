//! DeployOperator: the operator's image, made from this very executable, in k3s's image import
//! folder, and the operator's objects (namespace, CRD, ServiceAccount, Role, RoleBinding,
//! Deployment of that image) in its auto-deploy folder.
//!
//! The image is an OCI archive of one layer holding only the binary ([`foreman_box_bundle::oci`]),
//! so the binary must be statically linked: a dynamically linked build is refused before
//! anything is written. Its tag comes from its digest: a new binary gives a new reference, the
//! Deployment changes and rolls; the same binary gives the same bytes, and nothing is written.
//!
//! Reading and hashing a 15 MB executable on every converged run would cost more than the rest
//! of the install, so, like git's index, a stamp in `/var/lib/foreman-box/` remembers the stat
//! (device, inode, size, mode, mtime, ctime) of the executable with its layer digest and the stat
//! of the archive as written. When both match, the archive is current without reading either.

use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::error::{Error, Result};
use crate::host::{Cmd, FileStamp, Host};
use crate::manifests;
use foreman_box_bundle::elf::{self, Linking};
use foreman_box_bundle::oci::{self, Image, Layer};
use serde::Serialize;
use std::fmt;
use std::path::Path;

/// Where k3s imports image archives from (at start, and while running since the versions below).
pub const IMAGES_DIR: &str = super::k3s::IMAGES_DIR;
pub const ARCHIVE_NAME: &str = "foreman-box-operator.tar";
pub const ARCHIVE: &str = "/var/lib/rancher/k3s/agent/images/foreman-box-operator.tar";
/// The stat stamp of the executable and the archive (a cache: losing it costs one re-hash).
pub const STAMP: &str = "/var/lib/foreman-box/operator-image.json";
/// The README's build command, which makes the static binary.
pub const BUILD_COMMAND: &str = "scripts/build.sh";
/// The executable that is running: the one the image is made of.
const EXECUTABLE: &str = "/proc/self/exe";
const ARCHIVE_MODE: u32 = 0o644;
/// Program headers sit at the start of the file; this is far more than any linker uses.
const ELF_HEAD: u64 = 64 * 1024;

/// k3s imports archives dropped into `agent/images` while it runs since v1.32.0, and on the 1.31
/// line since v1.31.5 (k3s release notes: "import images from the agent/images directory while
/// running"). Older releases import them only at start; for those, install imports a new archive
/// itself with `k3s ctr images import` (unless --skip-start, where nothing runs and the next start
/// imports it).
pub fn imports_while_running(k3s_version: &str) -> bool {
    match parse_version(k3s_version) {
        Some((1, minor, patch)) => minor >= 32 || (minor == 31 && patch >= 5),
        Some((major, _, _)) => major > 1,
        // A tag we cannot read: importing ourselves is harmless, waiting for nothing is not.
        None => false,
    }
}

/// What this step changes beyond the host's common operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// The image archive written, then the stamp of the executable it was made of.
    WriteImage {
        file: DesiredFile,
        binary: FileStamp,
        layer: Layer,
    },
    /// `k3s ctr images import` of the archive, for a k3s that imports only when it starts.
    Import { k3s_version: String },
    /// The stamp recorded for an archive already current.
    RecordStamp { binary: FileStamp, layer: Layer },
    #[serde(untagged)]
    Host(HostOp),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::WriteImage { file, .. } => write!(f, "write {}", file.path),
            Op::Import { .. } => write!(f, "{} ctr images import {ARCHIVE}", super::k3s::BINARY),
            Op::RecordStamp { .. } => write!(f, "record {STAMP}"),
            Op::Host(op) => op.fmt(f),
        }
    }
}

pub(super) fn run(cx: &Context, op: Op) -> Result<()> {
    let host = &cx.host;
    match op {
        Op::WriteImage {
            file,
            binary,
            layer,
        } => {
            file.write(host)?;
            record_stamp(host, binary, layer)
        }
        Op::Import { .. } => {
            let archive = host.path(ARCHIVE).display().to_string();
            let k3s = host.path(super::k3s::BINARY).display().to_string();
            host.runner()
                .run(&Cmd::new(k3s).args(["ctr", "-n", "k8s.io", "images", "import", &archive]))?;
            Ok(())
        }
        Op::RecordStamp { binary, layer } => record_stamp(host, binary, layer),
        Op::Host(op) => op.run(host),
    }
}

/// Refuses a dynamically linked executable: it cannot run in an image that holds nothing else.
/// `install` calls this before any step, so that such a build changes nothing at all.
pub fn require_static(host: &Host) -> Result<()> {
    let exe = Path::new(EXECUTABLE);
    let head = host.fs().read_head(exe, ELF_HEAD)?;
    let path = host
        .fs()
        .symlink_target(exe)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| EXECUTABLE.to_string());
    match elf::linking(&head).map_err(|source| Error::NotAnImage {
        path: path.clone(),
        source,
    })? {
        Linking::Static => Ok(()),
        Linking::Dynamic { interpreter } => Err(Error::DynamicallyLinked {
            path,
            interpreter,
            build: BUILD_COMMAND,
        }),
    }
}

/// What the stamp file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    binary: FileStamp,
    layer: Layer,
    archive: FileStamp,
}

pub(super) fn plan(cx: &Context) -> Result<Vec<Planned<Op>>> {
    require_static(&cx.host)?;
    plan_image_of(cx, Path::new(EXECUTABLE))
}

/// The plan for an image made of `exe` (the running executable, or a stand-in in unit tests,
/// which are not statically linked).
fn plan_image_of(cx: &Context, exe: &Path) -> Result<Vec<Planned<Op>>> {
    let host = &cx.host;
    let fs = host.fs();
    let binary_stamp = fs.stamp(exe)?.ok_or_else(|| Error::NotAnImage {
        path: exe.display().to_string(),
        source: foreman_box_bundle::Error::NotElf {
            why: "the running executable cannot be found".into(),
        },
    })?;
    host.owned(IMAGES_DIR)?;
    let archive_path = host.owned(ARCHIVE)?;
    let archive_stamp = fs.stamp(&archive_path)?;
    let recorded: Option<Stamp> = fs
        .read(&host.path(STAMP))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());

    let mut actions = Vec::new();
    let current = recorded.filter(|r| {
        r.binary == binary_stamp
            && Some(r.archive) == archive_stamp
            && r.archive.mode == ARCHIVE_MODE
            && r.archive.size == Image::new(r.layer.clone(), oci::oci_arch()).archive_size()
    });
    let image = match current {
        Some(r) => Image::new(r.layer, oci::oci_arch()),
        None => {
            let binary = fs.read(exe)?.unwrap_or_default();
            let image = Image::new(oci::layer_of(&binary), oci::oci_arch());
            let file = DesiredFile::new(ARCHIVE, image.archive(&binary), ARCHIVE_MODE);
            let layer = image.layer.clone();
            match file.plan(host)? {
                Some(change) => {
                    let why = format!("{}: image {}", change.why, image.reference);
                    let binary = binary_stamp;
                    actions.push(Planned::new(
                        Op::WriteImage {
                            file,
                            binary,
                            layer,
                        },
                        why,
                    ));
                    if let Some(k3s_version) = needs_own_import(cx) {
                        let why = format!("k3s {k3s_version} imports archives only when it starts");
                        actions.push(Planned::new(Op::Import { k3s_version }, why));
                    }
                }
                None => actions.push(Planned::new(
                    Op::RecordStamp {
                        binary: binary_stamp,
                        layer,
                    },
                    "the archive is current; its stat spares the next run reading the binary",
                )),
            }
            image
        }
    };

    for name in fs.list_dir(&host.path(IMAGES_DIR))? {
        if name != ARCHIVE_NAME
            && name.starts_with("foreman-box-operator")
            && name.ends_with(".tar")
        {
            let path = host.path(format!("{IMAGES_DIR}/{name}"));
            actions.push(Planned::new(
                Op::Host(HostOp::Remove { path }),
                "only the current operator image is kept",
            ));
        }
    }

    for file in manifests::operator_files(&image.reference)? {
        if let Some(change) = file.plan(host)? {
            actions.push(Planned::new(Op::Host(HostOp::Write(file)), change.why));
        }
    }
    Ok(actions)
}

/// Remembers the stat of the executable (with its layer) and of the archive as now on disk.
fn record_stamp(host: &Host, binary: FileStamp, layer: Layer) -> Result<()> {
    let fs = host.fs();
    let archive = fs
        .stamp(&host.path(ARCHIVE))?
        .expect("the archive was just written");
    let stamp = Stamp {
        binary,
        layer,
        archive,
    };
    let json = serde_json::to_vec_pretty(&stamp).expect("stamp serializes");
    DesiredFile::new(STAMP, json, 0o644).write(host)?;
    Ok(())
}

/// The k3s version when it will not pick a new archive up by itself and a running k3s must be
/// told; None with --skip-start (the next start imports it) or a k3s that watches the folder.
fn needs_own_import(cx: &Context) -> Option<String> {
    if cx.options.skip_start {
        return None;
    }
    let installed = cx
        .host
        .fs()
        .read_string(&cx.host.path(super::k3s::VERSION_STAMP))
        .ok()
        .flatten()
        .map(|v| v.trim().to_string());
    let version = installed.unwrap_or_else(|| cx.config.k3s.version.clone());
    (!imports_while_running(&version)).then_some(version)
}

/// `v1.33.5+k3s1` → (1, 33, 5).
fn parse_version(tag: &str) -> Option<(u32, u32, u32)> {
    let core = tag.strip_prefix('v')?.split(['+', '-']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_k3s_imports_archives_while_running_and_older_ones_do_not() {
        assert!(imports_while_running(crate::config::PINNED_K3S_VERSION));
        assert!(imports_while_running("v1.32.0+k3s1"));
        assert!(imports_while_running("v1.31.5+k3s1"));
        assert!(!imports_while_running("v1.31.4+k3s1"));
        assert!(!imports_while_running("v1.30.9+k3s1"));
        assert!(!imports_while_running("latest"));
    }

    use crate::config::Layers;
    use crate::context::RunOptions;
    use crate::host::RecordingRunner;
    use std::sync::Arc;

    fn run_all(cx: &Context, actions: Vec<Planned<Op>>) -> Result<()> {
        actions.into_iter().try_for_each(|a| run(cx, a.op))
    }

    /// A root with a stand-in executable and, when given, the installed k3s's version stamp.
    fn context(
        runner: Arc<RecordingRunner>,
        k3s_version: Option<&str>,
        skip_start: bool,
    ) -> (tempfile::TempDir, std::path::PathBuf, Context) {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path(), runner);
        let exe = root.path().join("stand-in-foreman-box");
        host.fs()
            .write_atomic(&exe, &vec![7u8; 100_000], 0o755)
            .unwrap();
        if let Some(v) = k3s_version {
            host.fs()
                .write_atomic(
                    &host.path(super::super::k3s::VERSION_STAMP),
                    format!("{v}\n").as_bytes(),
                    0o644,
                )
                .unwrap();
        }
        let config = Layers::new().resolve().unwrap();
        let facts = crate::steps::preflight::tests::good_facts();
        let options = RunOptions {
            skip_start,
            ..RunOptions::default()
        };
        (root, exe, Context::new(host, facts, config, options, None))
    }

    #[tokio::test]
    async fn older_k3s_that_runs_gets_a_new_archive_imported_with_k3s_ctr() {
        let runner = Arc::new(RecordingRunner::new());
        let (root, exe, cx) = context(runner.clone(), Some("v1.30.9+k3s1"), false);
        let actions = plan_image_of(&cx, &exe).unwrap();
        let import = Op::Import {
            k3s_version: "v1.30.9+k3s1".into(),
        };
        assert!(actions.iter().any(|a| a.op == import), "{actions:?}");
        assert_eq!(
            import.to_string(),
            format!("/usr/local/bin/k3s ctr images import {ARCHIVE}")
        );
        run_all(&cx, actions).unwrap();
        let calls: Vec<String> = runner.calls().iter().map(|c| c.display()).collect();
        let root = root.path().display();
        assert_eq!(
            calls,
            [format!(
                "{root}/usr/local/bin/k3s ctr -n k8s.io images import {root}{ARCHIVE}"
            )]
        );
        assert!(plan_image_of(&cx, &exe).unwrap().is_empty(), "converged");
    }

    #[tokio::test]
    async fn pinned_k3s_or_skip_start_imports_nothing_itself() {
        for (version, skip_start) in [
            (crate::config::PINNED_K3S_VERSION, false),
            ("v1.30.9+k3s1", true),
        ] {
            let runner = Arc::new(RecordingRunner::new());
            let (_root, exe, cx) = context(runner.clone(), Some(version), skip_start);
            let actions = plan_image_of(&cx, &exe).unwrap();
            assert!(
                !actions.iter().any(|a| matches!(a.op, Op::Import { .. })),
                "{actions:?}"
            );
            run_all(&cx, actions).unwrap();
            assert!(runner.calls().is_empty(), "{version} {skip_start}");
        }
    }

    #[test]
    fn a_directory_or_a_link_where_the_archive_goes_is_refused_naming_it() {
        let (_root, exe, cx) = context(Arc::new(RecordingRunner::new()), None, true);
        let archive = cx.host.path(ARCHIVE);
        cx.host.fs().create_dir_all(&archive).unwrap();
        let err = plan_image_of(&cx, &exe).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{}: it is a directory, where foreman-box keeps a file",
                archive.display()
            )),
            "{err}"
        );
        let (_root, exe, cx) = context(Arc::new(RecordingRunner::new()), None, true);
        let elsewhere = tempfile::tempdir().unwrap();
        cx.host
            .fs()
            .ensure_symlink(elsewhere.path(), &cx.host.path(IMAGES_DIR))
            .unwrap();
        let err = plan_image_of(&cx, &exe).unwrap_err().to_string();
        assert!(
            err.contains("agent/images is a symbolic link (to "),
            "{err}"
        );
        assert!(
            cx.host.fs().list_dir(elsewhere.path()).unwrap().is_empty(),
            "nothing written through the link"
        );
    }

    #[tokio::test]
    async fn an_edited_archive_is_rewritten_to_the_bytes_of_the_binary() {
        let runner = Arc::new(RecordingRunner::new());
        let (_root, exe, cx) = context(runner, None, true);
        run_all(&cx, plan_image_of(&cx, &exe).unwrap()).unwrap();
        assert!(plan_image_of(&cx, &exe).unwrap().is_empty());
        let archive = cx.host.path(ARCHIVE);
        let good = cx.host.fs().read(&archive).unwrap().unwrap();
        let mut bad = good.clone();
        bad[600] ^= 1;
        cx.host
            .fs()
            .write_atomic(&archive, &bad, ARCHIVE_MODE)
            .unwrap();
        let actions = plan_image_of(&cx, &exe).unwrap();
        assert!(
            matches!(
                &actions[..],
                [Planned { op: Op::WriteImage { file, .. }, why }]
                    if file.path == ARCHIVE && file.content == good && why.starts_with("content differs")
            ),
            "{actions:?}"
        );
        run_all(&cx, actions).unwrap();
        assert_eq!(cx.host.fs().read(&archive).unwrap().unwrap(), good);
    }

    #[test]
    fn a_dynamically_linked_test_binary_is_refused_naming_the_build_command() {
        let host = Host::new(
            "/",
            std::sync::Arc::new(crate::host::RecordingRunner::default()),
        );
        let err = require_static(&host).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        assert!(err.contains(BUILD_COMMAND), "{err}");
        assert!(err.contains("help:"), "{err}");
    }
}
