//! The bundle's images for one platform as one OCI image layout in a tar archive, the form
//! k3s imports from `/var/lib/rancher/k3s/agent/images/` (and `ctr images import` reads).
//!
//! Each image is named twice in `index.json`: by tag (`quay.io/foreman/foreman:3.18`) and by
//! digest (`quay.io/foreman/foreman@sha256:...`). The operator renders `name:tag@digest`, and
//! containerd's CRI drops the tag of a reference that has a digest, so the digest name is the
//! one a pod's image resolves to; the tag name serves references without a digest (a
//! `spec.images` override by tag, an entry whose digest is not known yet). Both entries point
//! at the same descriptor: the pinned one, an image index when the image was built for several
//! platforms. The index is kept as published (its digest is the pin) beside the one platform's
//! manifest, config and layers; the other platforms' manifests are absent, which k3s's importer
//! allows (`client.Import(..., WithAllPlatforms(true), WithSkipMissing())` in k3s
//! pkg/agent/containerd/containerd.go) as does `ctr images import` for the host's platform.
//!
//! k3s keeps what it imports from that directory out of the kubelet's image garbage collection:
//! it labels each imported image `io.cri-containerd.pinned=pinned` (which containerd's CRI
//! reports as pinned, and the kubelet never removes) and `io.cattle.k3s.pinned=pinned` (k3s
//! issue #8781, fixed in the January 2024 releases). At every start k3s first removes both
//! labels from the images it pinned, then re-imports and re-pins what the directory holds
//! (k3s issue #11363: "leave the tarballs in the images dir"), so the archive must stay there for
//! as long as its images are used. Until k3s PR #14266 (backported to release-1.33 as #14273,
//! validated 2026-07-22), an archive skipped on restart because its `.cache.json` entry was
//! unchanged lost its pin (k3s issue #14265): the pinned v1.33.5+k3s1 predates that fix, so an
//! installer that places this archive must either use a k3s with the fix or remove the
//! archive's `.cache.json` entry before restarting k3s.
//!
//! k3s also adds the digest name itself to every tag-named image it imports (`retagImages`),
//! and logs "failed to parse tag" for a name that has only a digest, after the import and the
//! pin (only the content labels of its embedded registry mirror, spegel, are then skipped). The
//! digest names stay in the archive all the same: any other containerd importer needs them.

use crate::oci::{self, file_header, padded, to_json, BLOCK, OCI_LAYOUT};
use crate::progress::Progress;
use crate::registry::Descriptor;
use crate::Error;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// One image of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveImage {
    /// Every name it gets (tag name, digest name).
    pub names: Vec<String>,
    /// What the names point at (the pinned index or manifest).
    pub top: Descriptor,
    /// Every blob this platform needs, the top one included.
    pub blobs: Vec<Descriptor>,
}

/// The archive's plan: its index and its blobs, each once, in digest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    index: Vec<u8>,
    blobs: Vec<(String, u64)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<IndexEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    annotations: Annotations<'a>,
}

#[derive(Serialize)]
struct Annotations<'a> {
    #[serde(rename = "io.containerd.image.name")]
    containerd_name: &'a str,
    /// The full name: the archive holds many images, and readers that select by this
    /// annotation (`skopeo inspect oci-archive:FILE:NAME`) must find one.
    #[serde(rename = "org.opencontainers.image.ref.name")]
    ref_name: &'a str,
}

impl ImageArchive {
    pub fn new(images: &[ArchiveImage]) -> ImageArchive {
        let mut named: Vec<(&str, &Descriptor)> = images
            .iter()
            .flat_map(|i| i.names.iter().map(move |n| (n.as_str(), &i.top)))
            .collect();
        named.sort();
        named.dedup();
        let index = to_json(&Index {
            schema_version: 2,
            media_type: oci::MEDIA_INDEX,
            manifests: named
                .iter()
                .map(|(name, d)| IndexEntry {
                    media_type: &d.media_type,
                    digest: &d.digest,
                    size: d.size,
                    annotations: Annotations {
                        containerd_name: name,
                        ref_name: name,
                    },
                })
                .collect(),
        });
        let blobs: BTreeMap<String, u64> = images
            .iter()
            .flat_map(|i| i.blobs.iter())
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        ImageArchive {
            index,
            blobs: blobs.into_iter().collect(),
        }
    }

    /// The archive's entries in order: (path, size).
    fn entries(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("oci-layout".to_string(), OCI_LAYOUT.len() as u64),
            ("index.json".to_string(), self.index.len() as u64),
        ];
        out.extend(
            self.blobs
                .iter()
                .map(|(d, s)| (format!("blobs/sha256/{}", &d["sha256:".len()..]), *s)),
        );
        out
    }

    /// Its size in bytes, known before a byte is written.
    pub fn size(&self) -> u64 {
        self.entries()
            .iter()
            .map(|(_, s)| BLOCK + padded(*s))
            .sum::<u64>()
            + 2 * BLOCK
    }

    pub fn index_json(&self) -> &[u8] {
        &self.index
    }

    /// Writes the archive, each blob read from `dir/<hex>` and checked against its digest and
    /// size as it is copied: a blob damaged in the work dir is named, never written into a
    /// bundle.
    pub fn write(
        &self,
        dir: &Path,
        out: &mut dyn Write,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        let write_err = |e: std::io::Error| Error::Write { source: e };
        let small: [&[u8]; 2] = [OCI_LAYOUT.as_bytes(), &self.index];
        let entries = self.entries();
        for ((path, size), data) in entries.iter().zip(small) {
            out.write_all(&file_header(path, *size, 0o644))
                .map_err(write_err)?;
            out.write_all(data).map_err(write_err)?;
            pad(out, *size)?;
        }
        let total: u64 = self.blobs.iter().map(|(_, s)| *s).sum();
        let mut bar = progress.start("images archive", Some(total));
        let mut buf = vec![0u8; 1 << 20];
        for ((path, size), (digest, _)) in entries[2..].iter().zip(&self.blobs) {
            let src = crate::registry::blob_path(dir, digest);
            let damaged = |problem: String| Error::BlobDamaged {
                path: src.clone(),
                digest: digest.clone(),
                problem,
            };
            let mut f =
                std::fs::File::open(&src).map_err(|e| damaged(format!("cannot be opened: {e}")))?;
            out.write_all(&file_header(path, *size, 0o644))
                .map_err(write_err)?;
            let mut hasher = Sha256::new();
            let mut copied = 0u64;
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| damaged(format!("cannot be read: {e}")))?;
                if n == 0 {
                    break;
                }
                copied += n as u64;
                if copied > *size {
                    return Err(damaged(format!(
                        "it is longer than the {size} bytes its manifest gives"
                    )));
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(write_err)?;
                bar.advance(n as u64);
            }
            if copied != *size {
                return Err(damaged(format!("it has {copied} of its {size} bytes")));
            }
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if &actual != digest {
                return Err(damaged(format!("its content hashes to {actual}")));
            }
            pad(out, *size)?;
        }
        out.write_all(&[0u8; 2 * BLOCK as usize])
            .map_err(write_err)?;
        bar.finish();
        Ok(())
    }
}

fn pad(out: &mut dyn Write, size: u64) -> Result<(), Error> {
    let n = (padded(size) - size) as usize;
    out.write_all(&vec![0u8; n])
        .map_err(|e| Error::Write { source: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn blob(dir: &Path, bytes: &[u8], media_type: &str) -> Descriptor {
        let digest = oci::sha256_digest(bytes);
        std::fs::write(crate::registry::blob_path(dir, &digest), bytes).unwrap();
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
        }
    }

    fn two_images(dir: &Path) -> Vec<ArchiveImage> {
        let shared = blob(
            dir,
            b"a layer both images share",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        (0..2)
            .map(|i| {
                let config = blob(dir, format!("config {i}").as_bytes(), oci::MEDIA_CONFIG);
                let top = blob(dir, format!("manifest {i}").as_bytes(), oci::MEDIA_MANIFEST);
                ArchiveImage {
                    names: vec![
                        format!("quay.io/x/img{i}:1"),
                        format!("quay.io/x/img{i}@{}", top.digest),
                    ],
                    blobs: vec![top.clone(), config, shared.clone()],
                    top,
                }
            })
            .collect()
    }

    #[test]
    fn archive_names_each_image_twice_holds_shared_blobs_once_and_has_its_planned_size() {
        let dir = tempfile::tempdir().unwrap();
        let images = two_images(dir.path());
        let plan = ImageArchive::new(&images);
        let mut out = Vec::new();
        plan.write(dir.path(), &mut out, &NoProgress).unwrap();
        assert_eq!(out.len() as u64, plan.size());
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(&out[..]);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(oci::sha256_digest(&data), format!("sha256:{hex}"));
            }
            names.push(path);
        }
        assert_eq!(
            names.len(),
            2 + 5,
            "{names:?}: 2 manifests, 2 configs, 1 shared layer"
        );
        let index: serde_json::Value = serde_json::from_slice(plan.index_json()).unwrap();
        let refs: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(refs.len(), 4);
        assert!(refs.windows(2).all(|w| w[0] < w[1]), "sorted: {refs:?}");
        assert_eq!(ImageArchive::new(&images), plan, "same inputs, same plan");
    }

    #[test]
    fn a_damaged_blob_in_the_work_dir_is_named_and_never_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let images = two_images(dir.path());
        let victim = &images[1].blobs[1];
        let path = crate::registry::blob_path(dir.path(), &victim.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = ImageArchive::new(&images)
            .write(dir.path(), &mut Vec::new(), &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&victim.digest) && e.contains("hashes to"), "{e}");
    }
}
