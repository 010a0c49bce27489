//! One run at a time: an exclusive record lock (`fcntl` F_SETLK) on `/run/foreman-box.lock`
//! under the host root, held until the process exits (the kernel drops it even when the run is
//! killed, so a lock is never stale). A record lock rather than `flock`: the kernel tells a
//! second run the holder's PID (F_GETLK), so the file is never written, only created once, and
//! a converged re-run leaves the tree untouched.
//!
//! A second run waits a bounded time and then fails naming the holder. Waiting a little lets a
//! short run racing another one go through; waiting long would hide that an install (minutes)
//! is running: failing then says which PID to look at.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use super::HostError;
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub const LOCK_PATH: &str = "/run/foreman-box.lock";
/// How long a second run waits for the first.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock at `path`, waiting up to `wait` for another run to release it. `waiting` is
    /// called once, with the holder, when this run has to wait.
    pub fn acquire(
        path: &Path,
        wait: Duration,
        waiting: impl FnOnce(&str),
    ) -> Result<RunLock, HostError> {
        let io = |action: &'static str| move |source| HostError::io(action, path, source);
        if let Some(dir) = path.parent() {
            #[allow(clippy::disallowed_methods)] // the lock is not an install write
            std::fs::create_dir_all(dir).map_err(io("create the folder of"))?;
        }
        let started = Instant::now();
        let mut waiting = Some(waiting);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // A link put here (even a dangling one) is refused, not followed out of the root.
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match (e.raw_os_error(), std::fs::read_link(path)) {
                (Some(libc::ELOOP), Ok(target)) => HostError::Symlink {
                    path: path.to_path_buf(),
                    target,
                },
                _ => io("open")(e),
            })?;
        loop {
            match fcntl(&file, FcntlArg::F_SETLK(&whole_file(libc::F_WRLCK))) {
                Ok(_) => return Ok(RunLock { _file: file }),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
                    let holder = holder(&file);
                    if started.elapsed() >= wait {
                        return Err(HostError::Locked {
                            path: path.to_path_buf(),
                            holder,
                            waited: wait,
                        });
                    }
                    if let Some(tell) = waiting.take() {
                        tell(&holder);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(errno) => return Err(io("lock")(std::io::Error::from(errno))),
            }
        }
    }
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (whole file from offset 0).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Who holds the lock, as the kernel and /proc tell: ``PID 1234, running `install` ``.
fn holder(file: &File) -> String {
    let mut probe = whole_file(libc::F_WRLCK);
    if fcntl(file, FcntlArg::F_GETLK(&mut probe)).is_err()
        || probe.l_type == libc::F_UNLCK as libc::c_short
    {
        return "a run that has just ended".to_string();
    }
    let pid = probe.l_pid;
    #[allow(clippy::disallowed_methods)] // reading /proc of the real machine, not the host root
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|argv| {
            argv.split(|b| *b == 0)
                .nth(1)
                .map(|a| String::from_utf8_lossy(a).into_owned())
        });
    match command {
        Some(c) => format!("PID {pid}, running `{c}`"),
        None => format!("PID {pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_where_the_lock_goes_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let path = dir.path().join("foreman-box.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = RunLock::acquire(&path, Duration::ZERO, |_| {}).unwrap_err();
        assert!(
            matches!(&err, HostError::Symlink { target: t, .. } if *t == target),
            "{err:?}"
        );
        assert!(!target.exists(), "the dangling link's target was created");

        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = RunLock::acquire(&path, Duration::ZERO, |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("it is a directory, where foreman-box keeps a file"),
            "{err}"
        );
    }
}
