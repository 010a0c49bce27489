//! What a plan is made of: [`Planned`] operations, each a value naming what changes (with its
//! fields) and why. `plan` returns them, `apply` executes exactly them, tests compare them as
//! values and `plan --output json` prints them. [`HostOp`] is the part every step shares: files,
//! modes, owners, links, units and packages. Each step adds its own operations beside it.
//!
//! An operation holds what was decided while planning and nothing secret in what it shows: a
//! password or a file's content is carried to `apply`, never serialized.

use crate::desired::DesiredFile;
use crate::error::Result;
use crate::host::{Host, PackageManager};
use crate::report::Change;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// One planned change: the operation and why it is needed. What it changes is the operation's
/// own description, so the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<Op> {
    pub op: Op,
    pub why: String,
}

impl<Op> Planned<Op> {
    pub fn new(op: Op, why: impl Into<String>) -> Self {
        Planned {
            op,
            why: why.into(),
        }
    }

    /// The same change, its operation wrapped (a step's own operations in the engine's).
    pub fn map<T>(self, f: impl FnOnce(Op) -> T) -> Planned<T> {
        Planned {
            op: f(self.op),
            why: self.why,
        }
    }
}

/// Each planned operation wrapped in a larger enum: the host's in a step's `Op::Host`, a step's
/// in the engine's `Action`.
pub fn wrap<A, B>(planned: Vec<Planned<A>>, f: fn(A) -> B) -> impl Iterator<Item = Planned<B>> {
    planned.into_iter().map(move |p| p.map(f))
}

impl<Op: fmt::Display + Serialize> Planned<Op> {
    /// As shown to a person and in `plan --output json`: what, why, and the operation itself.
    pub fn change(&self) -> Change {
        Change::new(self.op.to_string(), self.why.clone()).with_action(
            serde_json::to_value(&self.op).expect("an operation of strings and numbers serializes"),
        )
    }
}

/// The changes to the host itself that every step may plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostOp {
    /// A file put in place atomically with its mode (its content is not shown).
    Write(DesiredFile),
    /// A file's or directory's mode set.
    SetMode {
        path: PathBuf,
        #[serde(serialize_with = "crate::desired::octal")]
        mode: u32,
    },
    /// A directory made (with its parents).
    CreateDir {
        path: PathBuf,
        #[serde(serialize_with = "crate::desired::octal")]
        mode: u32,
    },
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    /// A symbolic link at `link` pointing to `target` (relative to the link's directory).
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    /// A file removed (a killed run's temp file, a stale archive). Unlike the others, a path
    /// as found on disk (under `--root` when there is one): temp files are found by listing.
    Remove {
        path: PathBuf,
    },
    /// `systemctl daemon-reload`.
    ReloadUnits,
    /// `systemctl enable --now UNIT`.
    EnableNow {
        unit: String,
    },
    /// `systemctl restart UNIT`.
    Restart {
        unit: String,
    },
    /// The distribution's packages installed with its package manager.
    InstallPackages {
        manager: PackageManager,
        packages: Vec<String>,
    },
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOp::Write(file) => write!(f, "write {}", file.path),
            HostOp::SetMode { path, mode } => write!(f, "chmod {mode:04o} {}", path.display()),
            HostOp::CreateDir { path, .. } => write!(f, "create {}", path.display()),
            HostOp::Chown { path, uid, gid } => write!(f, "chown {uid}:{gid} {}", path.display()),
            HostOp::Symlink { link, target } => {
                write!(f, "link {} -> {}", link.display(), target.display())
            }
            HostOp::Remove { path } => write!(f, "remove {}", path.display()),
            HostOp::ReloadUnits => f.write_str("reload systemd's units"),
            HostOp::EnableNow { unit } => write!(f, "enable and start {unit}"),
            HostOp::Restart { unit } => write!(f, "restart {unit}"),
            HostOp::InstallPackages { packages, .. } => {
                write!(f, "install package {}", packages.join(" "))
            }
        }
    }
}

impl HostOp {
    /// Paths are host paths (as shown); the host's root is applied here.
    pub fn run(self, host: &Host) -> Result<()> {
        let fs = host.fs();
        match self {
            HostOp::Write(file) => {
                file.write(host)?;
            }
            HostOp::SetMode { path, mode } => fs.set_mode(&host.path(path), mode)?,
            HostOp::CreateDir { path, mode } => {
                fs.ensure_dir(&host.path(path), mode)?;
            }
            HostOp::Chown { path, uid, gid } => fs.chown(&host.path(path), uid, gid)?,
            HostOp::Symlink { link, target } => {
                fs.ensure_symlink(&target, &host.path(link))?;
            }
            HostOp::Remove { path } => fs.remove_file(&path)?,
            HostOp::ReloadUnits => host.services().daemon_reload()?,
            HostOp::EnableNow { unit } => host.services().enable_now(&unit)?,
            HostOp::Restart { unit } => host.services().restart(&unit)?,
            HostOp::InstallPackages { manager, packages } => {
                let list: Vec<&str> = packages.iter().map(String::as_str).collect();
                manager.install(host.runner(), &list)?
            }
        }
        Ok(())
    }
}

/// One removal per temp file (`.NAME.foreman-box-PID.tmp`) that a killed run left beside one of
/// `paths` (real paths): this run's writes never collide with them, but nothing else would
/// remove them. Files written as [`DesiredFile`]s see to their own.
pub fn remove_stale_temps(host: &Host, paths: &[PathBuf]) -> Vec<Planned<HostOp>> {
    paths
        .iter()
        .flat_map(|p| host.fs().stale_temps_of(p))
        .map(|path| Planned::new(HostOp::Remove { path }, "left by a killed run"))
        .collect()
}
