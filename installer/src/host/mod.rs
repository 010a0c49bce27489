//! Every touch of the machine: files under the host root, commands, services, packages.
//!
//! Steps never call `std::fs` or `std::process` directly; they go through [`Host`], so a test can
//! point the whole installer at a temp dir (`--root`) and record the commands it would run.

mod fs;
mod lock;
mod net;
mod runner;
mod service;
mod sink;
mod tree;

pub use fs::{FileStamp, FileState, HostFs, TextError};
pub use lock::{RunLock, LOCK_PATH, LOCK_WAIT};
pub(crate) use net::listening_tcp_ports;
#[cfg(test)]
pub use runner::RecordingRunner;
pub use runner::{Cmd, CommandRunner, Output, SystemRunner};
pub use service::{PackageManager, ServiceManager};
pub(crate) use sink::{Finished, Sink};
pub use tree::{EntryKind, TreeEntry, TreeStats};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from touching the host. Each names the path or the command it was about.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run `{program}`: is it installed and on PATH?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another foreman-box run holds {}: {holder}; waited {waited:?} for it\nhelp: let that run finish (one run at a time keeps the host and the stored passwords consistent), then run this again", path.display())]
    Locked {
        path: PathBuf,
        holder: String,
        waited: std::time::Duration,
    },
    #[error("cannot {action} {}: it is a directory, where foreman-box keeps a file\nhelp: move the directory away (foreman-box does not make one there) and run this again", path.display())]
    Directory { action: &'static str, path: PathBuf },
    #[error("{} is a symbolic link (to {}): foreman-box keeps its own files there and does not follow links\nhelp: remove the link and run this again; to keep these files on another disk, mount that disk here instead", path.display(), target.display())]
    Symlink { path: PathBuf, target: PathBuf },
    #[error("{} leads out of the host root {} (it resolves to {})\nhelp: everything a run under --root writes stays inside the root: replace the symbolic link on the way with a directory", path.display(), root.display(), resolved.display())]
    OutsideRoot {
        path: PathBuf,
        root: PathBuf,
        resolved: PathBuf,
    },
    #[error("`{command}` exited with status {status}: {stderr}")]
    Failed {
        command: String,
        status: i32,
        stderr: String,
    },
}

impl HostError {
    /// An I/O error about `path`; a directory where a file belongs is named as such.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> HostError {
        let path = path.to_path_buf();
        if source.raw_os_error() == Some(nix::libc::EISDIR) {
            return HostError::Directory { action, path };
        }
        HostError::Io {
            action,
            path,
            source,
        }
    }
}

/// A file of the running kernel (`/proc`, `/sys`): the real machine's whatever the host root,
/// since the kernel is not a file tree a `--root` run could stand in for. None when unreadable.
pub fn read_kernel_file(path: &str) -> Option<String> {
    debug_assert!(path.starts_with("/proc/") || path.starts_with("/sys/"));
    #[allow(clippy::disallowed_methods)] // host/ is where the machine is touched
    std::fs::read_to_string(path).ok()
}

/// The machine we install onto, seen through its root directory and its command runner.
#[derive(Clone)]
pub struct Host {
    root: PathBuf,
    runner: Arc<dyn CommandRunner>,
    fs: HostFs,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>, runner: Arc<dyn CommandRunner>) -> Self {
        Host {
            root: root.into(),
            runner,
            fs: HostFs,
        }
    }

    /// Resolves an absolute host path (`/etc/rancher/k3s/config.yaml`) under the host root.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        let relative = p.strip_prefix("/").unwrap_or(p);
        self.root.join(relative)
    }

    /// A path foreman-box owns (its directories, its kept files, its lock), resolved under the
    /// host root only when following it stays where it looks: the path itself must not be a
    /// symbolic link, and under `--root` the directories on the way must not lead out of the
    /// root. A link there would send secrets, logs or archives elsewhere, and a chmod with them.
    pub fn owned(&self, host_path: impl AsRef<Path>) -> Result<PathBuf, HostError> {
        let path = self.path(host_path);
        if let Some(target) = self.fs.symlink_target(&path) {
            return Err(HostError::Symlink { path, target });
        }
        if !self.is_real_root() {
            let mut probe = path.parent();
            while let Some(dir) = probe.filter(|d| !self.fs.exists(d)) {
                probe = dir.parent();
            }
            let resolved = probe.and_then(|d| self.fs.canonical(d));
            let root = self.fs.canonical(&self.root);
            if let (Some(resolved), Some(root)) = (resolved, root) {
                if !resolved.starts_with(&root) {
                    return Err(HostError::OutsideRoot {
                        path,
                        root,
                        resolved,
                    });
                }
            }
        }
        Ok(path)
    }

    /// Checks each of `host_paths` as [`Host::owned`] does, naming the first that fails.
    pub fn refuse_links(&self, host_paths: &[&str]) -> Result<(), HostError> {
        for p in host_paths {
            self.owned(p)?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when this run manages the real machine, not a directory standing in for it.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    pub fn fs(&self) -> &HostFs {
        &self.fs
    }

    pub fn runner(&self) -> &dyn CommandRunner {
        self.runner.as_ref()
    }

    /// Takes the one-run-at-a-time lock (see [`RunLock`]).
    pub fn lock(&self, waiting: impl FnOnce(&str)) -> Result<RunLock, HostError> {
        RunLock::acquire(&self.owned(LOCK_PATH)?, LOCK_WAIT, waiting)
    }

    pub fn services(&self) -> ServiceManager<'_> {
        ServiceManager::new(self.runner.as_ref())
    }
}
