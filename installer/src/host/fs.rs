//! File operations with explicit modes and atomic replacement. The only place that touches
//! `std::fs`.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use super::HostError;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::io(action, path, source)
}

/// What a file on disk is compared with what we want there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Missing,
    Differs,
    ModeDiffers { found: u32 },
    Same,
}

/// Why a file was not read as text by [`HostFs::read_text`].
#[derive(Debug)]
pub enum TextError {
    Host(HostError),
    /// What is there instead of a regular file: `a directory`, `a FIFO`, ...
    NotAFile(&'static str),
    TooLarge,
    /// The offset of the first byte that is not UTF-8.
    NotText(usize),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HostFs;

impl HostFs {
    pub fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, HostError> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    pub fn read_string(&self, path: &Path) -> Result<Option<String>, HostError> {
        Ok(self
            .read(path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    pub fn mode(&self, path: &Path) -> Result<Option<u32>, HostError> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m.permissions().mode() & 0o7777)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path)(e)),
        }
    }

    pub fn size(&self, path: &Path) -> Result<Option<u64>, HostError> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path)(e)),
        }
    }

    /// Compares a file with the content and mode we want, without writing anything.
    pub fn compare(&self, path: &Path, content: &[u8], mode: u32) -> Result<FileState, HostError> {
        let Some(current) = self.read(path)? else {
            return Ok(FileState::Missing);
        };
        if current != content {
            return Ok(FileState::Differs);
        }
        match self.mode(path)? {
            Some(found) if found != mode => Ok(FileState::ModeDiffers { found }),
            _ => Ok(FileState::Same),
        }
    }

    /// Writes `content` with `mode` unless the file already holds exactly that; returns whether
    /// anything changed. The new content goes to a temp file in the same directory, is fsynced
    /// and renamed over the old one, so a reader (or a killed run) never sees half a file.
    pub fn write_atomic(&self, path: &Path, content: &[u8], mode: u32) -> Result<bool, HostError> {
        match self.compare(path, content, mode)? {
            FileState::Same => Ok(false),
            FileState::ModeDiffers { .. } => {
                self.set_mode(path, mode)?;
                Ok(true)
            }
            FileState::Missing | FileState::Differs => {
                self.replace_with(path, mode, |f| f.write_all(content))?;
                Ok(true)
            }
        }
    }

    /// Atomically installs a copy of `source` at `path` with `mode`.
    pub fn copy_atomic(&self, source: &Path, path: &Path, mode: u32) -> Result<(), HostError> {
        let mut input = File::open(source).map_err(io_err("open", source))?;
        self.replace_with(path, mode, |f| io::copy(&mut input, f).map(|_| ()))
    }

    fn replace_with(
        &self,
        path: &Path,
        mode: u32,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), HostError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        self.create_dir_all(dir)?;
        crash_point();
        let tmp = temp_sibling(path);
        // A replaced file keeps its owner: a service reading it (pg_hba.conf) must still can.
        let owner = self.owner(path)?;
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
            // umask may have narrowed the mode given at creation.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err("write", path))
    }

    pub fn set_mode(&self, path: &Path, mode: u32) -> Result<(), HostError> {
        crash_point();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
    }

    pub fn create_dir_all(&self, path: &Path) -> Result<(), HostError> {
        if path.is_dir() {
            return Ok(());
        }
        crash_point();
        fs::create_dir_all(path).map_err(io_err("create directory", path))
    }

    /// Makes sure `path` is a directory with `mode`; returns whether anything changed.
    pub fn ensure_dir(&self, path: &Path, mode: u32) -> Result<bool, HostError> {
        let mut changed = false;
        if !path.is_dir() {
            self.create_dir_all(path)?;
            changed = true;
        }
        if self.mode(path)? != Some(mode) {
            self.set_mode(path, mode)?;
            changed = true;
        }
        Ok(changed)
    }

    pub fn owner(&self, path: &Path) -> Result<Option<(u32, u32)>, HostError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(m) => Ok(Some((m.uid(), m.gid()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path)(e)),
        }
    }

    pub fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), HostError> {
        crash_point();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))
    }

    /// Points `link` at `target` unless it already does.
    pub fn ensure_symlink(&self, target: &Path, link: &Path) -> Result<bool, HostError> {
        if fs::read_link(link).ok().as_deref() == Some(target) {
            return Ok(false);
        }
        if let Some(dir) = link.parent() {
            self.create_dir_all(dir)?;
        }
        crash_point();
        let tmp = temp_sibling(link);
        std::os::unix::fs::symlink(target, &tmp).map_err(io_err("create symlink", &tmp))?;
        fs::rename(&tmp, link).map_err(io_err("replace", link))?;
        Ok(true)
    }

    /// The path with every symlink resolved, or None when it does not exist.
    pub fn canonical(&self, path: &Path) -> Option<PathBuf> {
        fs::canonicalize(path).ok()
    }

    pub fn symlink_target(&self, link: &Path) -> Option<PathBuf> {
        fs::read_link(link).ok()
    }

    pub fn remove_file(&self, path: &Path) -> Result<(), HostError> {
        crash_point();
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
            _ => Ok(()),
        }
    }

    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), HostError> {
        crash_point();
        fs::rename(from, to).map_err(io_err("rename into place", to))
    }

    /// SHA-256 of a file, hex, or None when it does not exist.
    pub fn sha256(&self, path: &Path) -> Result<Option<String>, HostError> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io_err("read", path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Some(hex::encode(hasher.finalize())))
    }

    /// Opens a file for appending (download parts), creating it with `mode`.
    pub fn open_append(&self, path: &Path, mode: u32) -> Result<File, HostError> {
        if let Some(dir) = path.parent() {
            self.create_dir_all(dir)?;
        }
        crash_point();
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(path)
            .map_err(io_err("open", path))
    }

    pub fn open_truncate(&self, path: &Path, mode: u32) -> Result<File, HostError> {
        if let Some(dir) = path.parent() {
            self.create_dir_all(dir)?;
        }
        crash_point();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(true)
            .mode(mode)
            .open(path)
            .map_err(io_err("open", path))
    }

    /// The names of the entries of a directory, sorted; empty when it does not exist.
    pub fn list_dir(&self, path: &Path) -> Result<Vec<String>, HostError> {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", path)(e)),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(io_err("list", path))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// What is at `path` (following symlinks), or `None` when nothing is.
    pub fn metadata(&self, path: &Path) -> Result<Option<fs::Metadata>, HostError> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path)(e)),
        }
    }

    /// The text of a file a person gives us, or `None` when there is none: a regular file (a
    /// device, FIFO or directory is refused before it is opened, so nothing hangs or reads
    /// without end), at most `max` bytes even if it grows while it is read, and UTF-8.
    pub fn read_text(&self, path: &Path, max: u64) -> Result<Option<String>, TextError> {
        use std::os::unix::fs::FileTypeExt;
        let Some(meta) = self.metadata(path).map_err(TextError::Host)? else {
            return Ok(None);
        };
        let t = meta.file_type();
        let other = [
            (t.is_dir(), "a directory"),
            (t.is_fifo(), "a FIFO"),
            (t.is_char_device(), "a character device"),
            (t.is_block_device(), "a block device"),
            (t.is_socket(), "a socket"),
        ];
        if let Some((_, what)) = other.iter().find(|(is, _)| *is) {
            return Err(TextError::NotAFile(what));
        }
        if meta.len() > max {
            return Err(TextError::TooLarge);
        }
        let mut bytes = Vec::new();
        self.open_read(path)
            .map_err(TextError::Host)?
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| TextError::Host(io_err("read", path)(e)))?;
        if bytes.len() as u64 > max {
            return Err(TextError::TooLarge);
        }
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| TextError::NotText(e.utf8_error().valid_up_to()))
    }

    pub fn open_read(&self, path: &Path) -> Result<File, HostError> {
        File::open(path).map_err(io_err("open", path))
    }

    /// Free bytes on the filesystem holding `path` (or its nearest existing ancestor).
    pub fn free_bytes(&self, path: &Path) -> Result<u64, HostError> {
        let mut probe = path;
        while !probe.exists() {
            probe = probe.parent().unwrap_or(Path::new("/"));
        }
        let st = nix::sys::statvfs::statvfs(probe).map_err(|e| HostError::Io {
            action: "measure free space on",
            path: probe.to_path_buf(),
            source: io::Error::from(e),
        })?;
        #[allow(clippy::unnecessary_cast)]
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Installs `source` at `path` as a hard link (one copy of the data on disk), atomically,
    /// after giving it `mode` and flushing it; copies instead when the two are on different
    /// filesystems.
    pub fn link_atomic(&self, source: &Path, path: &Path, mode: u32) -> Result<(), HostError> {
        self.set_mode(source, mode)?;
        self.sync_file(source)?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        self.create_dir_all(dir)?;
        crash_point();
        let tmp = temp_sibling(path);
        let _ = fs::remove_file(&tmp);
        match fs::hard_link(source, &tmp) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                return self.copy_atomic(source, path, mode)
            }
            Err(e) => return Err(io_err("link", path)(e)),
        }
        let result = fs::rename(&tmp, path).and_then(|()| File::open(dir)?.sync_all());
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err("install", path))
    }

    /// Flushes a file's data to disk.
    pub fn sync_file(&self, path: &Path) -> Result<(), HostError> {
        File::open(path)
            .and_then(|f| f.sync_data())
            .map_err(io_err("flush", path))
    }

    /// Temp files of `path` (`.NAME.foreman-box-PID.tmp` beside it) left by runs that no longer
    /// live.
    pub fn stale_temps_of(&self, path: &Path) -> Vec<PathBuf> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let prefix = format!(".{}.foreman-box-", name.to_string_lossy());
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let entry = e.file_name();
                let entry = entry.to_string_lossy();
                let Some(pid) = entry
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".tmp"))
                    .and_then(|pid| pid.parse::<u32>().ok())
                else {
                    return false;
                };
                pid != std::process::id() && !process_alive(pid)
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }
}

/// What identifies a file's content cheaply, as git's index does: while none of these change,
/// the content is taken to be the same (ctime cannot be set back by a user). Recorded next to
/// a file whose content was verified (the k3s binary's hash, the operator image's layer) so a
/// later run trusts it unread while its stamp is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl HostFs {
    /// The stamp of a file (symlinks followed: `/proc/self/exe` gives the executable's), or
    /// None when it does not exist.
    pub fn stamp(&self, path: &Path) -> Result<Option<FileStamp>, HostError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileStamp {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mode: m.mode() & 0o7777,
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", path)(e)),
        }
    }

    /// Up to `max` bytes from the start of a file.
    pub fn read_head(&self, path: &Path, max: u64) -> Result<Vec<u8>, HostError> {
        let mut head = Vec::new();
        self.open_read(path)?
            .take(max)
            .read_to_end(&mut head)
            .map_err(io_err("read", path))?;
        Ok(head)
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence; EPERM means it exists under another user.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// The crash seam for tests: with `TEST_FOREMAN_BOX_CRASH_AT_WRITE=N` a debug build aborts the
/// process just before its Nth write to the host, as a kill at that point would. Release builds
/// compile it to nothing.
#[cfg(debug_assertions)]
fn crash_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let Some(at) = *AT.get_or_init(|| {
        std::env::var("TEST_FOREMAN_BOX_CRASH_AT_WRITE")
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return;
    };
    if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == at {
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
fn crash_point() {}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.foreman-box-{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_reports_change_only_when_content_or_mode_differs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.conf");
        let fs = HostFs;
        assert!(fs.write_atomic(&p, b"x", 0o600).unwrap());
        assert!(!fs.write_atomic(&p, b"x", 0o600).unwrap());
        assert_eq!(fs.mode(&p).unwrap(), Some(0o600));
        assert!(fs.write_atomic(&p, b"x", 0o644).unwrap());
        assert_eq!(fs.mode(&p).unwrap(), Some(0o644));
        assert!(fs.write_atomic(&p, b"y", 0o644).unwrap());
        assert_eq!(fs.read(&p).unwrap().unwrap(), b"y");
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
    }

    #[test]
    fn stamp_is_unchanged_while_untouched_and_changes_with_content_mode_or_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        let fs = HostFs;
        assert_eq!(fs.stamp(&p).unwrap(), None);
        fs.write_atomic(&p, b"first", 0o755).unwrap();
        let first = fs.stamp(&p).unwrap().unwrap();
        // Reading, hashing and linking to it leave it trusted.
        fs.sha256(&p).unwrap();
        assert_eq!(fs.stamp(&p).unwrap(), Some(first));
        assert_eq!(first.mode, 0o755);
        assert_eq!(first.size, 5);

        // Same size, other bytes, written in place: ctime (which no one can set back) moves.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .write_all(b"other")
            .unwrap();
        let rewritten = fs.stamp(&p).unwrap().unwrap();
        assert_ne!(rewritten, first);
        assert_eq!(rewritten.size, first.size);

        std::thread::sleep(std::time::Duration::from_millis(10));
        fs.set_mode(&p, 0o700).unwrap();
        let chmodded = fs.stamp(&p).unwrap().unwrap();
        assert_ne!(chmodded, rewritten);
        assert_eq!(chmodded.mode, 0o700);

        // Replaced by another file (a new inode) with the same content and mode.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let keep = dir.path().join("old");
        std::fs::hard_link(&p, &keep).unwrap(); // the old inode stays taken
        std::fs::remove_file(&p).unwrap();
        fs.write_atomic(&p, b"other", 0o700).unwrap();
        let replaced = fs.stamp(&p).unwrap().unwrap();
        assert_ne!(replaced.ino, chmodded.ino);
        assert_ne!(replaced, chmodded);

        // A symlink gives its target's stamp.
        let link = dir.path().join("link");
        fs.ensure_symlink(Path::new("bin"), &link).unwrap();
        assert_eq!(fs.stamp(&link).unwrap(), fs.stamp(&p).unwrap());
    }
}
