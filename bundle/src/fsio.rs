//! The few file operations the bundle writer makes that decide what survives a kill: renames,
//! fsyncs, removals. Each goes through a crash point, so a test can stop the process right
//! before or after it, as a SIGKILL at that moment would.
//!
//! The seam: a debug build with `TEST_FOREMAN_BOX_BUNDLE_CRASH_AT=N` aborts at its Nth crash
//! point (counted from 1 in this process). Release builds have no seam.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error with the operation and the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct IoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IoError + 'a {
    move |source| IoError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Renames `from` to `to`, with a crash point on each side.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), IoError> {
    crash_point();
    std::fs::rename(from, to).map_err(io_err("rename into place", to))?;
    crash_point();
    Ok(())
}

/// Flushes a file's data and size to the disk, with a crash point on each side.
pub(crate) fn sync(file: &File, path: &Path) -> Result<(), IoError> {
    crash_point();
    file.sync_all().map_err(io_err("flush to disk", path))?;
    crash_point();
    Ok(())
}

/// Flushes a directory, so a rename in it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IoError> {
    crash_point();
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("flush to disk", dir))?;
    crash_point();
    Ok(())
}

/// Removes a directory tree; a missing one is fine.
pub(crate) fn remove_dir_all(dir: &Path) -> Result<(), IoError> {
    crash_point();
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", dir)(e)),
    }?;
    crash_point();
    Ok(())
}

/// Removes a file; a missing one is fine.
pub(crate) fn remove_file(path: &Path) -> Result<(), IoError> {
    crash_point();
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<(), IoError> {
    std::fs::create_dir_all(dir).map_err(io_err("create the directory", dir))
}

/// The env variable of the crash seam.
pub const CRASH_ENV: &str = "TEST_FOREMAN_BOX_BUNDLE_CRASH_AT";

#[cfg(debug_assertions)]
pub(crate) fn crash_point() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u32>> = OnceLock::new();
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let at = *AT.get_or_init(|| std::env::var(CRASH_ENV).ok().and_then(|v| v.parse().ok()));
    if let Some(at) = at {
        if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
            std::process::abort();
        }
    }
}

#[cfg(not(debug_assertions))]
pub(crate) fn crash_point() {}
