//! Whole directory trees: packing one into a tar stream and unpacking it with its owners and
//! modes (the Pulp content, /etc/foreman-box), removing one, and files created once with an
//! exact mode for data streamed into them (database dumps, archives). Backups and the support
//! bundle use these; the tar format is read back by GNU tar and by this module.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use super::{HostError, HostFs};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a pack or an unpack moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// One entry of a tree, as [`HostFs::walk`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the tree's root.
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(PathBuf),
    /// Sockets, FIFOs, devices: never packed.
    Other,
}

impl HostFs {
    /// Whether `path` is a directory (symlinks followed).
    pub fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    /// Creates a new file with exactly `mode` (it must not exist: a backup never overwrites).
    pub fn create_new(&self, path: &Path, mode: u32) -> Result<File, HostError> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(io_err("create", path))?;
        // umask may have narrowed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", path))?;
        Ok(f)
    }

    /// Every entry under `root` (not following symlinks), sorted by path; `root` itself is not
    /// listed. Empty when `root` does not exist.
    pub fn walk(&self, root: &Path) -> Result<Vec<TreeEntry>, HostError> {
        let mut out = Vec::new();
        if root.symlink_metadata().is_err() {
            return Ok(out);
        }
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let e = e.map_err(io_err("list", &dir))?;
                let path = e.path();
                let meta = path.symlink_metadata().map_err(io_err("inspect", &path))?;
                let ft = meta.file_type();
                let kind = if ft.is_symlink() {
                    EntryKind::Symlink(fs::read_link(&path).map_err(io_err("read", &path))?)
                } else if ft.is_dir() {
                    stack.push(path.clone());
                    EntryKind::Dir
                } else if ft.is_file() {
                    EntryKind::File
                } else {
                    EntryKind::Other
                };
                out.push(TreeEntry {
                    path: path.strip_prefix(root).unwrap_or(&path).to_path_buf(),
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes `path` and everything under it; nothing when it does not exist. Symlinks are
    /// removed, never followed.
    pub fn remove_tree(&self, path: &Path) -> Result<(), HostError> {
        match path.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("inspect", path)(e)),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err("remove", path)),
            Ok(_) => fs::remove_file(path).map_err(io_err("remove", path)),
        }
    }

    /// Writes the tree under `root` into `out` as a tar stream: paths relative to `root` (under
    /// `prefix` when given, which is then the first entry),
    /// owners, modes and modification times kept, symlinks as symlinks. `include` decides
    /// each entry by its relative path (a refused directory is skipped whole); sockets and
    /// FIFOs are skipped. `progress` is told the bytes of each file packed.
    pub fn pack_tree<W: Write>(
        &self,
        root: &Path,
        prefix: Option<&Path>,
        include: &dyn Fn(&Path) -> bool,
        out: W,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(W, TreeStats), HostError> {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Complete);
        let mut stats = TreeStats::default();
        if let Some(prefix) = prefix {
            builder
                .append_dir(prefix, root)
                .map_err(io_err("pack", root))?;
        }
        let mut skipped: Vec<PathBuf> = Vec::new();
        for e in self.walk(root)? {
            if skipped.iter().any(|s| e.path.starts_with(s)) {
                continue;
            }
            if !include(&e.path) {
                skipped.push(e.path.clone());
                continue;
            }
            let full = root.join(&e.path);
            match e.kind {
                EntryKind::Other => continue,
                EntryKind::File => {
                    stats.files += 1;
                    stats.bytes += e.size;
                }
                EntryKind::Dir => stats.dirs += 1,
                EntryKind::Symlink(_) => stats.symlinks += 1,
            }
            let name = match prefix {
                Some(p) => p.join(&e.path),
                None => e.path.clone(),
            };
            builder
                .append_path_with_name(&full, &name)
                .map_err(io_err("pack", &full))?;
            if e.kind == EntryKind::File {
                progress(e.size);
            }
        }
        let out = builder.into_inner().map_err(io_err("pack", root))?;
        Ok((out, stats))
    }

    /// Unpacks a tar stream made by [`HostFs::pack_tree`] into `dest` (created 0700 if
    /// missing), keeping owners and modes. Every entry is checked first: only relative paths
    /// without `..`, only files, directories and symlinks; a symlink may not point outside the
    /// tree. Existing files are not replaced: `dest` should be empty.
    pub fn unpack_tree<R: Read>(
        &self,
        input: R,
        dest: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TreeStats, HostError> {
        self.read_tree(input, dest, true, progress)
    }

    /// Reads a tar stream to its end with the checks of [`HostFs::unpack_tree`], writing
    /// nothing: whether it would unpack, and what it holds. `shown` names it in errors.
    pub fn scan_tree<R: Read>(&self, input: R, shown: &Path) -> Result<TreeStats, HostError> {
        self.read_tree(input, shown, false, &mut |_| {})
    }

    fn read_tree<R: Read>(
        &self,
        input: R,
        dest: &Path,
        write: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<TreeStats, HostError> {
        let bad = |what: String| HostError::Io {
            action: "unpack into",
            path: dest.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, what),
        };
        if write && !dest.is_dir() {
            fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
            fs::set_permissions(dest, fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", dest))?;
        }
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(false);
        let mut stats = TreeStats::default();
        // Directories get their modes after their content is in (a 0500 directory could not
        // be filled otherwise).
        let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
        for entry in archive.entries().map_err(io_err("read", dest))? {
            let mut entry = entry.map_err(io_err("read", dest))?;
            let path = entry.path().map_err(io_err("read", dest))?.into_owned();
            check_relative(&path).map_err(|p| bad(format!("{}: {p}", path.display())))?;
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().map_err(io_err("read", dest))? & 0o7777;
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    stats.files += 1;
                    stats.bytes += entry.size();
                    progress(entry.size());
                }
                tar::EntryType::Directory => {
                    stats.dirs += 1;
                    dirs.push((path.clone(), mode));
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(io_err("read", dest))?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let resolved = path.parent().unwrap_or(Path::new("")).join(&target);
                    if target.is_absolute() || check_relative(&resolved).is_err() {
                        return Err(bad(format!(
                            "{} is a symlink to {}, outside the tree",
                            path.display(),
                            target.display()
                        )));
                    }
                    stats.symlinks += 1;
                }
                other => return Err(bad(format!(
                    "{} is a {other:?} entry; only files, directories and symlinks are restored",
                    path.display()
                ))),
            }
            let at = dest.join(&path);
            if !write {
                io::copy(&mut entry, &mut io::sink()).map_err(io_err("read", dest))?;
                continue;
            }
            if kind == tar::EntryType::Directory {
                fs::create_dir_all(&at).map_err(io_err("create directory", &at))?;
                let (uid, gid) = (
                    entry.header().uid().unwrap_or(0) as u32,
                    entry.header().gid().unwrap_or(0) as u32,
                );
                std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
                    .map_err(io_err("chown", &at))?;
                continue;
            }
            entry.unpack_in(dest).map_err(io_err("unpack", &at))?;
        }
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode) in dirs.into_iter().filter(|_| write) {
            let at = dest.join(&path);
            fs::set_permissions(&at, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &at))?;
        }
        Ok(stats)
    }

    /// Flushes a directory's entries (new files in it) to disk.
    pub fn sync_dir(&self, path: &Path) -> Result<(), HostError> {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("flush", path))
    }
}

/// A path inside a tree: relative, no `..`, no root or prefix.
fn check_relative(path: &Path) -> Result<(), &'static str> {
    if path.as_os_str().is_empty() {
        return Err("empty path");
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("leads out of the tree (`..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_tree_unpacks_with_modes_symlinks_and_without_the_excluded() {
        let src = tempfile::tempdir().unwrap();
        let fs_ = HostFs;
        std::fs::create_dir_all(src.path().join("media/artifact/ab")).unwrap();
        std::fs::create_dir_all(src.path().join("tmp/junk")).unwrap();
        std::fs::write(src.path().join("media/artifact/ab/cdef"), b"content").unwrap();
        std::fs::write(src.path().join("tmp/junk/x"), b"skip me").unwrap();
        std::fs::set_permissions(
            src.path().join("media/artifact/ab/cdef"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("artifact/ab/cdef", src.path().join("media/link")).unwrap();
        let include = |p: &Path| !p.starts_with("tmp");
        let mut seen = 0;
        let (bytes, stats) = fs_
            .pack_tree(src.path(), None, &include, Vec::new(), &mut |n| seen += n)
            .unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(stats.symlinks, 1);
        assert_eq!(seen, 7);
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("restored");
        let got = fs_
            .unpack_tree(bytes.as_slice(), &out, &mut |_| {})
            .unwrap();
        assert_eq!(got.files, 1);
        assert_eq!(
            std::fs::read(out.join("media/artifact/ab/cdef")).unwrap(),
            b"content"
        );
        assert_eq!(
            fs_.mode(&out.join("media/artifact/ab/cdef")).unwrap(),
            Some(0o640)
        );
        assert_eq!(
            fs_.symlink_target(&out.join("media/link")).unwrap(),
            PathBuf::from("artifact/ab/cdef")
        );
        assert!(!out.join("tmp").exists());
    }

    #[test]
    fn an_entry_leading_out_of_the_tree_is_refused_before_it_is_written() {
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        let mut raw = header.as_bytes().to_vec();
        raw[..9].copy_from_slice(b"../escape");
        let mut h = tar::Header::from_byte_slice(&raw).clone();
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'x']);
        data.resize(512 * 2, 0);
        data.extend_from_slice(&[0u8; 1024]);
        let dest = tempfile::tempdir().unwrap();
        let err = HostFs
            .unpack_tree(data.as_slice(), &dest.path().join("in"), &mut |_| {})
            .unwrap_err();
        assert!(
            format!("{:?}", err).contains("leads out of the tree"),
            "{err:?}"
        );
        assert!(!dest.path().join("escape").exists());
    }
}
