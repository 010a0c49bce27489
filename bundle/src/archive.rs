//! The offline bundle: one tar file that installs the whole box with no network.
//!
//! Members, in this order, every header made by [`oci::file_header`] (root-owned, a fixed
//! mtime, no user names), so the same inputs give the same bytes:
//!
//! | member | what |
//! |---|---|
//! | `foreman-box` | the static binary (0755) |
//! | `install.sh`, `foreman-box-uninstall.sh` | the scripts (0755) |
//! | `k3s/<asset>` | the k3s binary of the release (`k3s`, `k3s-arm64`; 0755) |
//! | `k3s/sha256sum-<arch>.txt` | the release's checksum list, as published |
//! | `k3s/k3s-airgap-images-<arch>.tar.zst` | k3s's own images |
//! | `images/foreman-box-images-<arch>.tar` | every pinned image, one OCI layout ([`crate::images`]) |
//! | `manifest.json` | versions, images (tag, digest, sizes), every member's size and SHA-256 |
//! | `SHA256SUMS` | `sha256sum -c` over every member but itself |
//!
//! Plain tar, not compressed: nearly all the bytes are compressed already (image layers are
//! gzip, k3s's airgap images zstd); zstd over the whole would save only the two binaries' share
//! (a few percent) and would take away what plain tar gives: a member is read at its offset
//! without decompressing what comes before, and `tar -xf bundle.tar foreman-box` works with any
//! tar.
//!
//! [`Bundle::open`] checks every byte before it returns: each header against the one the writer
//! makes for that member, each member's SHA-256, the padding, the end blocks and the length;
//! anything else is refused, naming the member.

use crate::fsio::io_err;
use crate::oci::{file_header, padded, BLOCK};
use crate::progress::Progress;
use crate::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: u32 = 1;
pub const BINARY: &str = "foreman-box";
pub const INSTALL_SCRIPT: &str = "install.sh";
pub const UNINSTALL_SCRIPT: &str = "foreman-box-uninstall.sh";
pub const MANIFEST: &str = "manifest.json";
pub const SUMS: &str = "SHA256SUMS";
/// manifest.json and SHA256SUMS are small; anything larger is not ours.
const MAX_SMALL_MEMBER: u64 = 16 << 20;

/// The k3s members of a bundle for `arch`, named as the release names them.
pub fn k3s_member(asset: &str) -> String {
    format!("k3s/{asset}")
}

/// The images member for `arch`; also the file name it gets in k3s's images directory.
pub fn image_archive_member(arch: &str) -> String {
    format!("images/{}", image_archive_file(arch))
}

pub fn image_archive_file(arch: &str) -> String {
    format!("foreman-box-images-{arch}.tar")
}

/// What the bundle holds, written last but one into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The foreman-box that made the bundle.
    pub foreman_box_version: String,
    pub arch: String,
    /// The Foreman release stream whose images it carries.
    pub stream: String,
    pub k3s: K3sMembers,
    /// The images member.
    pub image_archive: String,
    pub images: Vec<ImageEntry>,
    /// Every member but manifest.json and SHA256SUMS, in archive order.
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sMembers {
    pub version: String,
    pub binary: String,
    pub sha256sums: String,
    pub airgap_images: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The operator's component (`foreman`, `pulp_control`, ...).
    pub component: String,
    /// `repository:tag@digest`.
    pub reference: String,
    pub tag_name: String,
    pub digest_name: String,
    /// The digest came from the image table (false: resolved from the tag when the bundle was
    /// made, because the table had none).
    pub pinned: bool,
    pub media_type: String,
    /// The platform's manifest when the reference names an index.
    pub platform_manifest: Option<String>,
    /// Bytes of manifests, config and layers for this platform.
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub path: String,
    pub mode: u32,
    pub size: u64,
    /// Hex, as `sha256sum` writes it.
    pub sha256: String,
}

/// `SHA256SUMS`: one `HASH  PATH` line per member, manifest.json last.
fn render_sums(members: &[Member], manifest_sha256: &str) -> String {
    let mut out = String::new();
    for m in members {
        out.push_str(&format!("{}  {}\n", m.sha256, m.path));
    }
    out.push_str(&format!("{manifest_sha256}  {MANIFEST}\n"));
    out
}

/// Writes a bundle front to back in one pass, hashing each member and the whole file as it
/// goes.
pub struct Writer {
    out: BufWriter<Whole>,
    path: PathBuf,
    members: Vec<Member>,
}

/// The file, with the hash and length of everything written to it.
struct Whole {
    file: File,
    hasher: Sha256,
    len: u64,
}

impl Write for Whole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Counts and hashes what passes through.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Writer {
    /// Starts `path` afresh (a partial file of a killed run is overwritten: the bytes are a
    /// function of the inputs, so the next run writes the same ones).
    pub fn create(path: &Path) -> Result<Writer, Error> {
        let file = File::create(path).map_err(io_err("create", path))?;
        Ok(Writer {
            out: BufWriter::with_capacity(
                1 << 20,
                Whole {
                    file,
                    hasher: Sha256::new(),
                    len: 0,
                },
            ),
            path: path.to_path_buf(),
            members: Vec::new(),
        })
    }

    /// A member of `size` bytes that `fill` writes.
    pub fn add(
        &mut self,
        name: &str,
        mode: u32,
        size: u64,
        fill: impl FnOnce(&mut dyn Write) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let write_err = |source| Error::Write { source };
        self.out
            .write_all(&file_header(name, size, mode))
            .map_err(write_err)?;
        let mut h = Hashing {
            inner: &mut self.out,
            hasher: Sha256::new(),
            count: 0,
        };
        fill(&mut h)?;
        let (count, sha) = (h.count, hex::encode(h.hasher.finalize()));
        if count != size {
            return Err(Error::MemberSize {
                member: name.to_string(),
                expected: size,
                actual: count,
            });
        }
        self.out
            .write_all(&vec![0u8; (padded(size) - size) as usize])
            .map_err(write_err)?;
        self.members.push(Member {
            path: name.to_string(),
            mode,
            size,
            sha256: sha,
        });
        Ok(())
    }

    /// A member copied from a file, which must be `expected_sha256` (hex) when given.
    pub fn add_file(
        &mut self,
        name: &str,
        mode: u32,
        src: &Path,
        expected_sha256: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        let mut f = File::open(src).map_err(io_err("read", src))?;
        let size = f.metadata().map_err(io_err("inspect", src))?.len();
        let mut bar = progress.start(name, Some(size));
        self.add(name, mode, size, |out| {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(io_err("read", src))?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])
                    .map_err(|source| Error::Write { source })?;
                bar.advance(n as u64);
            }
        })?;
        bar.finish();
        let got = &self.members.last().expect("just added").sha256;
        if let Some(want) = expected_sha256 {
            if got != want {
                return Err(Error::DigestMismatch {
                    what: format!("{} (for member {name})", src.display()),
                    expected: want.to_string(),
                    actual: got.clone(),
                });
            }
        }
        Ok(())
    }

    /// The members written so far.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Writes manifest.json (with the members) and SHA256SUMS, the end blocks, and flushes the
    /// file to disk. Returns the manifest, the whole file's SHA-256 (hex) and its size.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<(Manifest, String, u64), Error> {
        manifest.members = self.members.clone();
        let mut json = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
        json.push(b'\n');
        let manifest_sha = hex::encode(Sha256::digest(&json));
        self.add(MANIFEST, 0o644, json.len() as u64, |out| {
            out.write_all(&json)
                .map_err(|source| Error::Write { source })
        })?;
        let sums = render_sums(&manifest.members, &manifest_sha);
        self.add(SUMS, 0o644, sums.len() as u64, |out| {
            out.write_all(sums.as_bytes())
                .map_err(|source| Error::Write { source })
        })?;
        self.out
            .write_all(&[0u8; 2 * BLOCK as usize])
            .map_err(|source| Error::Write { source })?;
        let whole = self.out.into_inner().map_err(|e| Error::Write {
            source: e.into_error(),
        })?;
        crate::fsio::sync(&whole.file, &self.path)?;
        Ok((manifest, hex::encode(whole.hasher.finalize()), whole.len))
    }
}

/// Where a member sits in the bundle file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    name: String,
    header: u64,
    size: u64,
}

impl Loc {
    fn data(&self) -> u64 {
        self.header + BLOCK
    }
}

/// A bundle whose every byte has been checked.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    manifest: Manifest,
    locs: Vec<Loc>,
}

/// One member of a verified bundle.
#[derive(Debug, Clone, Copy)]
pub struct MemberRef<'a> {
    bundle: &'a Bundle,
    member: &'a Member,
    loc: &'a Loc,
}

impl MemberRef<'_> {
    pub fn name(&self) -> &str {
        &self.member.path
    }
    pub fn size(&self) -> u64 {
        self.member.size
    }
    /// Hex SHA-256 of its bytes.
    pub fn sha256(&self) -> &str {
        &self.member.sha256
    }
    pub fn mode(&self) -> u32 {
        self.member.mode
    }
    /// Where its bytes start in the bundle file.
    pub fn offset(&self) -> u64 {
        self.loc.data()
    }

    /// Its bytes, read from the bundle file.
    pub fn reader(&self) -> Result<std::io::Take<File>, Error> {
        let path = &self.bundle.path;
        let mut f = File::open(path).map_err(io_err("read", path))?;
        f.seek(SeekFrom::Start(self.loc.data()))
            .map_err(io_err("read", path))?;
        Ok(f.take(self.member.size))
    }

    /// Copies its bytes to `out`, hashing them again: the file may have changed since it was
    /// verified, and nothing it holds then is used.
    pub fn copy_verified(&self, out: &mut dyn Write) -> Result<(), Error> {
        let mut r = self.reader()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0u64;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(io_err("read", &self.bundle.path))?;
            if n == 0 {
                break;
            }
            n_total += n as u64;
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|source| Error::Write { source })?;
        }
        let actual = hex::encode(hasher.finalize());
        if n_total != self.member.size || actual != self.member.sha256 {
            return Err(Error::Damaged {
                path: self.bundle.path.clone(),
                member: self.member.path.clone(),
                problem: "it changed since the bundle was verified".into(),
            });
        }
        Ok(())
    }
}

impl Bundle {
    /// Opens a bundle and checks every byte of it (see the module doc); the error names the
    /// member that is wrong.
    pub fn open(path: &Path, progress: &dyn Progress) -> Result<Bundle, Error> {
        let mut f = File::open(path).map_err(io_err("read", path))?;
        let len = f.metadata().map_err(io_err("inspect", path))?.len();
        let (locs, headers) = walk(path, &mut f, len)?;
        let damaged = |member: &str, problem: String| Error::Damaged {
            path: path.to_path_buf(),
            member: member.to_string(),
            problem,
        };
        let n = locs.len();
        if n < 2 || locs[n - 2].name != MANIFEST || locs[n - 1].name != SUMS {
            return Err(Error::NotABundle {
                path: path.to_path_buf(),
                problem: format!("its last members are not {MANIFEST} and {SUMS}"),
            });
        }
        let small = |f: &mut File, loc: &Loc| -> Result<Vec<u8>, Error> {
            if loc.size > MAX_SMALL_MEMBER {
                return Err(damaged(
                    &loc.name,
                    format!("{} bytes is more than it can be", loc.size),
                ));
            }
            let mut buf = vec![0u8; loc.size as usize];
            f.seek(SeekFrom::Start(loc.data()))
                .map_err(io_err("read", path))?;
            f.read_exact(&mut buf).map_err(io_err("read", path))?;
            Ok(buf)
        };
        let manifest_bytes = small(&mut f, &locs[n - 2])?;
        let sums_bytes = small(&mut f, &locs[n - 1])?;
        let manifest_sha = hex::encode(Sha256::digest(&manifest_bytes));
        let sums_text = String::from_utf8(sums_bytes.clone())
            .map_err(|_| damaged(SUMS, "it is not text".into()))?;
        let listed_manifest_sha = sums_text
            .lines()
            .last()
            .and_then(|l| l.strip_suffix(&format!("  {MANIFEST}")))
            .ok_or_else(|| damaged(SUMS, format!("its last line is not the one of {MANIFEST}")))?;
        if listed_manifest_sha != manifest_sha {
            return Err(damaged(
                MANIFEST,
                format!("it does not hash to its line in {SUMS} (one of the two was changed)"),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| damaged(MANIFEST, format!("it does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(Error::NotABundle {
                path: path.to_path_buf(),
                problem: format!(
                    "it is of format {}; this foreman-box reads format {FORMAT}",
                    manifest.format
                ),
            });
        }
        if render_sums(&manifest.members, &manifest_sha) != sums_text {
            return Err(damaged(
                SUMS,
                format!("it is not the list {MANIFEST} gives"),
            ));
        }
        // The members the manifest lists are the ones in the file, in its order and sizes.
        let listed: Vec<(&str, u64)> = manifest
            .members
            .iter()
            .map(|m| (m.path.as_str(), m.size))
            .collect();
        let found: Vec<(&str, u64)> = locs[..n - 2]
            .iter()
            .map(|l| (l.name.as_str(), l.size))
            .collect();
        if listed != found {
            let first = listed
                .iter()
                .zip(&found)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a.0)
                .or_else(|| listed.get(found.len()).map(|a| a.0))
                .or_else(|| found.get(listed.len()).map(|a| a.0))
                .unwrap_or(MANIFEST);
            return Err(damaged(
                first,
                format!("it is not where or as large as {MANIFEST} says"),
            ));
        }
        // Every header is the one the writer makes for that member.
        let modes = manifest
            .members
            .iter()
            .map(|m| m.mode)
            .chain([0o644, 0o644]);
        for ((loc, header), mode) in locs.iter().zip(&headers).zip(modes) {
            if file_header(&loc.name, loc.size, mode) != *header {
                return Err(damaged(&loc.name, "its tar header was changed".into()));
            }
        }
        // Every byte of every member, and the padding between them.
        let total: u64 = locs.iter().map(|l| l.size).sum();
        let mut bar = progress.start("verifying the bundle", Some(total));
        let mut buf = vec![0u8; 1 << 20];
        let wants = manifest
            .members
            .iter()
            .map(|m| m.sha256.as_str())
            .chain([manifest_sha.as_str(), ""]);
        for (loc, want) in locs.iter().zip(wants) {
            f.seek(SeekFrom::Start(loc.data()))
                .map_err(io_err("read", path))?;
            let mut left = loc.size;
            let mut hasher = Sha256::new();
            while left > 0 {
                let n = buf.len().min(left as usize);
                f.read_exact(&mut buf[..n]).map_err(io_err("read", path))?;
                hasher.update(&buf[..n]);
                left -= n as u64;
                bar.advance(n as u64);
            }
            if !want.is_empty() && hex::encode(hasher.finalize()) != want {
                return Err(damaged(
                    &loc.name,
                    format!("its bytes do not hash to the SHA-256 in {SUMS}"),
                ));
            }
            let pad = (padded(loc.size) - loc.size) as usize;
            f.read_exact(&mut buf[..pad])
                .map_err(io_err("read", path))?;
            if buf[..pad].iter().any(|b| *b != 0) {
                return Err(damaged(
                    &loc.name,
                    "the padding after it was changed".into(),
                ));
            }
        }
        bar.finish();
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            locs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A member by name (manifest.json and SHA256SUMS are not members of the manifest).
    pub fn member(&self, name: &str) -> Option<MemberRef<'_>> {
        let i = self.manifest.members.iter().position(|m| m.path == name)?;
        Some(MemberRef {
            bundle: self,
            member: &self.manifest.members[i],
            loc: &self.locs[i],
        })
    }

    fn required(&self, name: &str) -> MemberRef<'_> {
        self.member(name)
            .unwrap_or_else(|| panic!("a verified bundle has {name}: the manifest names it"))
    }

    pub fn foreman_box_binary(&self) -> MemberRef<'_> {
        self.required(BINARY)
    }
    pub fn install_script(&self) -> MemberRef<'_> {
        self.required(INSTALL_SCRIPT)
    }
    pub fn uninstall_script(&self) -> MemberRef<'_> {
        self.required(UNINSTALL_SCRIPT)
    }
    pub fn k3s_binary(&self) -> MemberRef<'_> {
        self.required(&self.manifest.k3s.binary)
    }
    pub fn sha256sums_for_k3s(&self) -> MemberRef<'_> {
        self.required(&self.manifest.k3s.sha256sums)
    }
    pub fn airgap_images(&self) -> MemberRef<'_> {
        self.required(&self.manifest.k3s.airgap_images)
    }
    /// The OCI archive for k3s's `agent/images` (file name: [`image_archive_file`]).
    pub fn image_archive(&self) -> MemberRef<'_> {
        self.required(&self.manifest.image_archive)
    }
}

/// Every header of the file with its place; refuses a header that is not a regular file's, a
/// file that ends inside a member, and bytes after the end blocks.
fn walk(path: &Path, f: &mut File, len: u64) -> Result<(Vec<Loc>, Vec<[u8; 512]>), Error> {
    let mut locs: Vec<Loc> = Vec::new();
    let mut headers = Vec::new();
    let mut at = 0u64;
    let after = |locs: &[Loc]| match locs.last() {
        Some(l) => format!("after member {}", l.name),
        None => "at its start".to_string(),
    };
    loop {
        if at + BLOCK > len {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                member: after(&locs),
                problem: "the file ends before the end-of-archive blocks".into(),
            });
        }
        let mut block = [0u8; 512];
        f.seek(SeekFrom::Start(at)).map_err(io_err("read", path))?;
        f.read_exact(&mut block).map_err(io_err("read", path))?;
        if block.iter().all(|b| *b == 0) {
            let end = at + 2 * BLOCK;
            if len < end {
                return Err(Error::Truncated {
                    path: path.to_path_buf(),
                    member: after(&locs),
                    problem: "the file ends inside the end-of-archive blocks".into(),
                });
            }
            let mut second = [0u8; 512];
            f.read_exact(&mut second).map_err(io_err("read", path))?;
            if second.iter().any(|b| *b != 0) || len != end {
                return Err(Error::Damaged {
                    path: path.to_path_buf(),
                    member: "the end-of-archive blocks".into(),
                    problem: if len != end {
                        format!("{} bytes follow them", len.saturating_sub(end))
                    } else {
                        "they were changed".into()
                    },
                });
            }
            return Ok((locs, headers));
        }
        // SHA256SUMS is always the last member: what follows it can only be the end blocks.
        if locs.last().is_some_and(|l| l.name == SUMS) {
            return Err(Error::Damaged {
                path: path.to_path_buf(),
                member: "the end-of-archive blocks".into(),
                problem: "they were changed".into(),
            });
        }
        let h = tar::Header::from_byte_slice(&block);
        let name = h
            .path()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A damaged header cannot be trusted to name its member: it is named by its place.
        let shown = match locs.last() {
            Some(l) => format!("the member after {}", l.name),
            None => "the first member".to_string(),
        };
        let bad_header = |problem: &str| Error::Damaged {
            path: path.to_path_buf(),
            member: shown.clone(),
            problem: problem.to_string(),
        };
        let sum_ok = h.cksum().ok() == Some(header_sum(&block));
        if !sum_ok {
            return Err(bad_header(
                "its tar header was changed (its checksum does not hold)",
            ));
        }
        if h.entry_type() != tar::EntryType::Regular {
            return Err(bad_header("its tar header is not a regular file's"));
        }
        let size = h
            .entry_size()
            .map_err(|_| bad_header("its tar header has no size"))?;
        let end = at + BLOCK + padded(size);
        if end > len {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                member: name,
                problem: format!(
                    "the file ends {} bytes into its {size}",
                    (len - at - BLOCK).min(size)
                ),
            });
        }
        locs.push(Loc {
            name,
            header: at,
            size,
        });
        headers.push(block);
        at = end;
    }
}

/// The tar header checksum: the sum of the bytes with the checksum field as spaces.
fn header_sum(block: &[u8; 512]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            foreman_box_version: "0.1.0".into(),
            arch: "amd64".into(),
            stream: "3.18".into(),
            k3s: K3sMembers {
                version: "v1.33.5+k3s1".into(),
                binary: "k3s/k3s".into(),
                sha256sums: "k3s/sha256sum-amd64.txt".into(),
                airgap_images: "k3s/k3s-airgap-images-amd64.tar.zst".into(),
            },
            image_archive: image_archive_member("amd64"),
            images: vec![],
            members: vec![],
        }
    }

    /// A small bundle with members of awkward sizes (0, 1, 511, 512, 513 bytes).
    fn write_bundle(dir: &Path) -> PathBuf {
        let path = dir.join("b.tar");
        let mut w = Writer::create(&path).unwrap();
        let m = manifest();
        let contents: Vec<(String, u32, Vec<u8>)> = vec![
            (BINARY.into(), 0o755, vec![7u8; 513]),
            (INSTALL_SCRIPT.into(), 0o755, b"#!/bin/sh\n".to_vec()),
            (UNINSTALL_SCRIPT.into(), 0o755, vec![]),
            (m.k3s.binary.clone(), 0o755, vec![1u8; 512]),
            (m.k3s.sha256sums.clone(), 0o644, b"x".to_vec()),
            (m.k3s.airgap_images.clone(), 0o644, vec![2u8; 511]),
            (m.image_archive.clone(), 0o644, vec![3u8; 2000]),
        ];
        for (name, mode, bytes) in &contents {
            w.add(name, *mode, bytes.len() as u64, |out| {
                out.write_all(bytes)
                    .map_err(|source| Error::Write { source })
            })
            .unwrap();
        }
        let (_, sha, len) = w.finish(m).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (sha, len),
            (hex::encode(Sha256::digest(&bytes)), bytes.len() as u64)
        );
        path
    }

    #[test]
    fn a_written_bundle_opens_and_hands_out_its_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_bundle(dir.path());
        let b = Bundle::open(&path, &NoProgress).unwrap();
        let mut out = Vec::new();
        b.airgap_images().copy_verified(&mut out).unwrap();
        assert_eq!(out, vec![2u8; 511]);
        assert_eq!(b.k3s_binary().mode(), 0o755);
        assert_eq!(b.uninstall_script().size(), 0);
        assert_eq!(
            b.image_archive().name(),
            "images/foreman-box-images-amd64.tar"
        );
        // GNU-compatible: the standard tar reader sees the same members.
        let mut names = Vec::new();
        for e in tar::Archive::new(File::open(&path).unwrap())
            .entries()
            .unwrap()
        {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(names.len(), 9);
        assert_eq!(&names[7..], [MANIFEST, SUMS]);
    }

    #[test]
    fn same_members_give_the_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(
            std::fs::read(write_bundle(a.path())).unwrap(),
            std::fs::read(write_bundle(b.path())).unwrap()
        );
    }

    /// How an error must name the place of offset `at`: its member's name, or, for a byte of a
    /// header (which cannot be trusted to name itself), its place after the member before it.
    fn names_for(path: &Path, at: u64) -> Vec<String> {
        let mut f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        let (locs, _) = walk(path, &mut f, len).unwrap();
        let Some(i) = locs
            .iter()
            .position(|l| at >= l.header && at < l.data() + padded(l.size))
        else {
            return vec!["the end-of-archive blocks".into()];
        };
        let mut names = vec![locs[i].name.clone()];
        if at < locs[i].data() {
            names.push(match i {
                0 => "the first member".into(),
                _ => format!("the member after {}", locs[i - 1].name),
            });
        }
        // manifest.json and SHA256SUMS vouch for each other: a change to either may name both.
        if names[0] == SUMS || names[0] == MANIFEST {
            names.push(MANIFEST.into());
        }
        names
    }

    #[test]
    fn every_flipped_byte_is_refused_naming_its_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_bundle(dir.path());
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            let e = Bundle::open(&path, &NoProgress).unwrap_err().to_string();
            std::fs::write(&path, &good).unwrap();
            let names = names_for(&path, at as u64);
            assert!(
                names.iter().any(|n| e.contains(&format!("{n} of"))),
                "byte {at} ({names:?}): {e}"
            );
            assert!(e.contains("help:"), "{e}");
        }
    }

    #[test]
    fn a_cut_file_is_refused_as_truncated_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_bundle(dir.path());
        let good = std::fs::read(&path).unwrap();
        for len in (0..good.len())
            .step_by(97)
            .chain([good.len() - 1, good.len() - 512])
        {
            std::fs::write(&path, &good[..len]).unwrap();
            let e = Bundle::open(&path, &NoProgress).unwrap_err();
            assert!(matches!(e, Error::Truncated { .. }), "cut at {len}: {e}");
        }
        let mut longer = good.clone();
        longer.extend_from_slice(&[0u8; 512]);
        std::fs::write(&path, &longer).unwrap();
        let e = Bundle::open(&path, &NoProgress).unwrap_err().to_string();
        assert!(e.contains("512 bytes follow"), "{e}");
    }

    #[test]
    fn a_member_changed_after_verification_is_not_copied_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_bundle(dir.path());
        let b = Bundle::open(&path, &NoProgress).unwrap();
        let at = b.k3s_binary().offset() as usize + 10;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = b
            .k3s_binary()
            .copy_verified(&mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("k3s/k3s") && e.contains("changed since"), "{e}");
    }
}
