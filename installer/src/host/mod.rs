//! Every touch of the machine: files under the host root, commands, services, packages.
//!
//! Steps never call `std::fs` or `std::process` directly; they go through [`Host`], so a test can
//! point the whole installer at a temp dir (`--root`) and record the commands it would run.

mod fs;
mod lock;
mod net;
mod runner;
mod service;
mod tree;

pub(crate) use fs::start_writeback;
pub use fs::{FileStamp, FileState, HostFs};
pub use lock::{RunLock, LOCK_PATH, LOCK_WAIT};
pub(crate) use net::listening_tcp_ports;
#[cfg(test)]
pub use runner::RecordingRunner;
pub use runner::{Cmd, CommandRunner, Output, SystemRunner};
pub use service::{PackageManager, ServiceManager};
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
    #[error("`{command}` exited with status {status}: {stderr}")]
    Failed {
        command: String,
        status: i32,
        stderr: String,
    },
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
        RunLock::acquire(&self.path(LOCK_PATH), LOCK_WAIT, waiting)
    }

    pub fn services(&self) -> ServiceManager<'_> {
        ServiceManager::new(self.runner.as_ref())
    }
}
