//! `--archive`: the backup's directory as one zstd-compressed tar (`tar --zstd -xf` unpacks it
//! into the same directory), and back.

use super::DayTwoError;
use crate::error::Result;
use crate::host::{Host, HostError};
use crate::steps::Reporter;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

/// zstd's default level: fast, and Pulp content (RPMs, already compressed) gains little more.
const LEVEL: i32 = 3;
pub const SUFFIX: &str = ".tar.zst";

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HostError + 'a {
    move |source| HostError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Packs `dir` into the new file `out` (0600), entries under `dir`'s own name.
pub fn pack(host: &Host, dir: &Path, out: &Path, reporter: &dyn Reporter) -> Result<()> {
    let name = dir.file_name().map(PathBuf::from).unwrap_or_default();
    let f = host.fs().create_new(out, 0o600)?;
    let result = (|| -> Result<()> {
        let enc = zstd::stream::write::Encoder::new(BufWriter::new(f), LEVEL)
            .map_err(io("compress into", out))?;
        let mut bar = reporter.download(&format!("{}", out.display()), None);
        let (enc, _) = host
            .fs()
            .pack_tree(dir, Some(&name), &|_| true, enc, &mut |n| bar.advance(n))?;
        bar.finish();
        let w = enc.finish().map_err(io("compress into", out))?;
        let f = w
            .into_inner()
            .map_err(|e| io("write", out)(e.into_error()))?;
        f.sync_all().map_err(io("flush", out))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = host.fs().remove_file(out);
    }
    result?;
    if let Some(parent) = out.parent() {
        host.fs().sync_dir(parent)?;
    }
    Ok(())
}

/// Unpacks an archive made by [`pack`] into `work` (a new 0700 directory) and returns the
/// backup's directory inside it.
pub fn unpack(host: &Host, archive: &Path, work: &Path) -> Result<PathBuf> {
    let f = host.fs().open_read(archive)?;
    let dec =
        zstd::stream::read::Decoder::new(BufReader::new(f)).map_err(io("decompress", archive))?;
    host.fs().unpack_tree(dec, work, &mut |_| {})?;
    let entries = host.fs().list_dir(work)?;
    match entries.as_slice() {
        [one] if host.fs().is_dir(&work.join(one)) => Ok(work.join(one)),
        _ => Err(DayTwoError::BadBackup {
            path: archive.to_path_buf(),
            problem: "it does not hold exactly one backup directory".into(),
            help: "give an archive written by `foreman-box backup --archive`".into(),
        }
        .into()),
    }
}

/// Whether `path` names an archive rather than a directory.
pub fn is_archive(path: &Path) -> bool {
    path.to_string_lossy().ends_with(SUFFIX)
}
