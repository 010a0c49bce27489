//! PrepareStorage: Pulp's content directory on the host, fit for the Pulp containers, and a
//! hostPath PersistentVolume pinned to this node with the claim `pulp-storage` pre-bound to it.

use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::facts::SelinuxMode;
use crate::host::Cmd;
use crate::manifests::{self, labels, NAMESPACE};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The uid and gid the Pulp images run as.
pub(crate) const PULP_UID: u32 = 700;
pub(crate) const PULP_GID: u32 = 700;
pub(crate) const SUBDIRS: &[&str] = &[
    "media",
    "tmp",
    "assets",
    "imports",
    "exports",
    "sync_imports",
];
pub(crate) const CLAIM: &str = "pulp-storage";
pub(crate) const VOLUME: &str = "foreman-pulp-storage";
/// hostPath volumes are not size-limited; this is what the claim asks for and the volume offers.
pub(crate) const CAPACITY: &str = "100Gi";
const DIR_MODE: u32 = 0o750;
const SELINUX_TYPE: &str = "container_file_t";
pub(crate) const MANIFEST: &str = "foreman-box-storage.yaml";

/// What this step changes beyond the host's common operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// The tree labelled `container_file_t`, persistently where semanage exists.
    Label { path: PathBuf },
    #[serde(untagged)]
    Host(HostOp),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Label { path } => write!(f, "label {} {SELINUX_TYPE}", path.display()),
            Op::Host(op) => op.fmt(f),
        }
    }
}

pub(super) fn run(cx: &Context, op: Op) -> Result<()> {
    match op {
        Op::Label { path } => label_dir(cx, &path),
        Op::Host(op) => op.run(&cx.host),
    }
}

/// The directories we manage: the Pulp root first, then its subdirectories.
pub(crate) fn directories(pulp_dir: &Path) -> Vec<PathBuf> {
    std::iter::once(pulp_dir.to_path_buf())
        .chain(SUBDIRS.iter().map(|s| pulp_dir.join(s)))
        .collect()
}

pub(super) fn plan(cx: &Context) -> Result<Vec<Planned<Op>>> {
    let host = &cx.host;
    let fs = host.fs();
    let mut ops = Vec::new();
    for dir in directories(&cx.config.storage.pulp_dir) {
        let real = host.path(&dir);
        let path = dir.clone();
        match fs.mode(&real)? {
            None => ops.push((
                HostOp::CreateDir {
                    path,
                    mode: DIR_MODE,
                },
                "missing".into(),
            )),
            Some(_) if !real.is_dir() => return Err(Error::NotADirectory { path }),
            Some(m) if m != DIR_MODE => ops.push((
                HostOp::SetMode {
                    path,
                    mode: DIR_MODE,
                },
                format!("mode {m:04o}"),
            )),
            Some(_) => {}
        }
        if fs.owner(&real)? != Some((PULP_UID, PULP_GID)) {
            let (uid, gid) = (PULP_UID, PULP_GID);
            let why = "the Pulp containers run as uid 700".to_string();
            ops.push((
                HostOp::Chown {
                    path: dir,
                    uid,
                    gid,
                },
                why,
            ));
        }
    }
    let mut actions: Vec<_> = ops
        .into_iter()
        .map(|(op, why)| Planned::new(Op::Host(op), why))
        .collect();
    if cx.facts.selinux != SelinuxMode::Disabled {
        let dir = cx.config.storage.pulp_dir.clone();
        let label = cx
            .host
            .runner()
            .output(&Cmd::new("stat").args(["-c", "%C", &host.path(&dir).to_string_lossy()]))
            .map(|o| o.stdout)
            .unwrap_or_default();
        if !label.contains(SELINUX_TYPE) {
            actions.push(Planned::new(
                Op::Label { path: dir },
                "SELinux is enabled and containers must write there",
            ));
        }
    }
    for f in [
        manifests::namespace_file()?,
        manifests::manifest_file(MANIFEST, &objects(cx))?,
    ] {
        if let Some(c) = f.plan(host)? {
            actions.push(Planned::new(Op::Host(HostOp::Write(f)), c.why));
        }
    }
    Ok(actions)
}

/// Labels the tree for containers, persistently (semanage) where the tools exist.
fn label_dir(cx: &Context, dir: &Path) -> Result<()> {
    let runner = cx.host.runner();
    let real = cx.host.path(dir).to_string_lossy().into_owned();
    if runner.has_program("semanage") {
        let spec = format!("{real}(/.*)?");
        let added = runner.output(&Cmd::new("semanage").args([
            "fcontext",
            "-a",
            "-t",
            SELINUX_TYPE,
            &spec,
        ]))?;
        if !added.success() {
            runner.run(&Cmd::new("semanage").args([
                "fcontext",
                "-m",
                "-t",
                SELINUX_TYPE,
                &spec,
            ]))?;
        }
        runner.run(&Cmd::new("restorecon").args(["-R", &real]))?;
    } else {
        runner.run(&Cmd::new("chcon").args(["-R", "-t", SELINUX_TYPE, &real]))?;
    }
    Ok(())
}

/// The PersistentVolume and its pre-bound claim.
pub(crate) fn objects(cx: &Context) -> Vec<Value> {
    let dir = cx.config.storage.pulp_dir.to_string_lossy().into_owned();
    let node = cx.facts.node_name.clone();
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": VOLUME, "labels": labels("pulp-storage")},
            "spec": {
                "capacity": {"storage": CAPACITY},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "volumeMode": "Filesystem",
                "hostPath": {"path": dir, "type": "Directory"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": NAMESPACE, "name": CLAIM},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                ]}]}},
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": NAMESPACE, "labels": labels("pulp-storage")},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeMode": "Filesystem",
                "volumeName": VOLUME,
                "resources": {"requests": {"storage": CAPACITY}},
            },
        }),
    ]
}
