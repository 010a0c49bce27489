//! Making a bundle: the image table's entries for a stream resolved on their registries, every
//! blob of one platform fetched into a work directory beside the output (`<FILE>.work/`), then
//! the bundle written front to back into the work directory and renamed into place.
//!
//! A run killed at any point leaves the work directory; the next run with the same inputs
//! continues from it (finished blobs are kept, a partial one is continued with HTTP Range) and
//! writes the same bytes. Finished blobs are trusted by name until the bundle is written, where
//! each is hashed again as it is copied: a blob damaged in between is removed and named.

use crate::archive::{
    image_archive_member, k3s_member, ImageEntry, K3sMembers, Manifest, Writer, BINARY, FORMAT,
    INSTALL_SCRIPT, UNINSTALL_SCRIPT,
};
use crate::fsio::{self, io_err};
use crate::images::{ArchiveImage, ImageArchive};
use crate::progress::Progress;
use crate::registry::{blob_path, Client, Descriptor, Resolved};
use crate::Error;
use foreman_operator::images::{ImageRef, Pin, Table};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many blobs are fetched at once.
const PARALLEL_BLOBS: usize = 4;

/// The k3s release files, already downloaded and verified against the release's checksum list.
#[derive(Debug, Clone)]
pub struct K3sFiles {
    pub version: String,
    /// (asset name as released, local file, hex SHA-256 from the release's list)
    pub binary: (String, PathBuf, String),
    pub sums: (String, PathBuf),
    pub airgap_images: (String, PathBuf, String),
}

/// What a bundle is made of.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub output: PathBuf,
    pub arch: String,
    pub stream: String,
    pub table: Table,
    /// Take what the tag names now for an entry without a digest (recorded as unpinned).
    pub resolve_unpinned: bool,
    /// The static foreman-box for `arch`.
    pub binary: PathBuf,
    pub foreman_box_version: String,
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Made {
    pub path: PathBuf,
    pub size: u64,
    /// Hex SHA-256 of the whole file, to carry beside it.
    pub sha256: String,
    pub manifest: Manifest,
}

/// `<FILE>.work`: blobs and partial files of a run, kept until the bundle is in place.
pub fn work_dir(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".work");
    output.with_file_name(name)
}

/// Checks the output and makes the work directory. An existing output is refused unless a run
/// killed after writing it left its work directory (it is then written again, the same).
pub fn prepare(inputs: &Inputs) -> Result<PathBuf, Error> {
    let work = work_dir(&inputs.output);
    if inputs.output.exists() && !work.exists() {
        return Err(Error::Exists {
            path: inputs.output.clone(),
        });
    }
    if work.exists() {
        tracing::info!(work = %work.display(), "continuing from the work directory of an earlier run");
    }
    fsio::create_dir_all(&work.join("blobs"))?;
    fsio::create_dir_all(&work.join("k3s"))?;
    check_binary(&inputs.binary, &inputs.arch)?;
    Ok(work)
}

/// The image table's entries for the stream, each an image to bundle. Entries without a digest
/// are refused together unless `resolve_unpinned`.
pub fn images_of(inputs: &Inputs) -> Result<Vec<Pin>, Error> {
    let pins = inputs
        .table
        .streams
        .get(&inputs.stream)
        .ok_or_else(|| Error::Unpinned {
            images: vec![format!(
                "stream {} (it is not in the image table)",
                inputs.stream
            )],
        })?
        .clone();
    let unpinned: Vec<String> = pins
        .iter()
        .filter(|p| !p.is_pinned())
        .map(Pin::reference)
        .collect();
    if !unpinned.is_empty() && !inputs.resolve_unpinned {
        return Err(Error::Unpinned { images: unpinned });
    }
    Ok(pins)
}

/// Resolves every image for the platform and fetches what it needs into `work/blobs`.
pub async fn fetch_images(
    client: &Client,
    pins: &[Pin],
    arch: &str,
    work: &Path,
    progress: &dyn Progress,
) -> Result<Vec<(Pin, Resolved)>, Error> {
    let blobs_dir = work.join("blobs");
    let mut resolved = Vec::new();
    for pin in pins {
        let image = pin.image_ref();
        let r = client.resolve(&image, arch).await?;
        if !pin.is_pinned() {
            tracing::warn!(image = %pin.reference(), digest = %r.image.digest.as_deref().unwrap_or(""), "no digest in the image table: took what the tag names now");
        }
        for m in r.manifests() {
            write_small_blob(&blobs_dir, &m.digest, &m.bytes)?;
        }
        resolved.push((pin.clone(), r));
    }
    // Each blob once, from the first image that names it.
    let mut wanted: BTreeMap<String, (ImageRef, Descriptor)> = BTreeMap::new();
    for (_, r) in &resolved {
        for d in r.blobs() {
            wanted
                .entry(d.digest.clone())
                .or_insert_with(|| (r.image.clone(), d));
        }
    }
    let results: Vec<Result<(), Error>> = futures::stream::iter(wanted.values())
        .map(|(image, d)| {
            let dir = &blobs_dir;
            async move {
                match client.fetch_blob(image, d, dir, progress).await? {
                    crate::registry::BlobFetch::Fetched { resumed_from } if resumed_from > 0 => {
                        tracing::info!(blob = %d.digest, from = resumed_from, "continued a blob a cut run had started")
                    }
                    _ => {}
                }
                Ok(())
            }
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    Ok(resolved)
}

/// Writes the bundle into the work directory, renames it into place, removes the work
/// directory.
pub fn assemble(
    inputs: &Inputs,
    k3s: &K3sFiles,
    images: &[(Pin, Resolved)],
    work: &Path,
    progress: &dyn Progress,
) -> Result<Made, Error> {
    let blobs_dir = work.join("blobs");
    let archive_images: Vec<ArchiveImage> = images
        .iter()
        .map(|(_, r)| ArchiveImage {
            names: names_of(&r.image),
            top: r.top.descriptor(),
            blobs: r
                .manifests()
                .iter()
                .map(|m| m.descriptor())
                .chain(r.blobs())
                .collect(),
        })
        .collect();
    let plan = ImageArchive::new(&archive_images);
    let part = work.join("bundle.part");
    let mut w = Writer::create(&part)?;
    w.add_file(BINARY, 0o755, &inputs.binary, None, progress)?;
    for (name, text) in [
        (INSTALL_SCRIPT, crate::INSTALL_SH),
        (UNINSTALL_SCRIPT, crate::UNINSTALL_SH),
    ] {
        w.add(name, 0o755, text.len() as u64, |out| {
            out.write_all(text.as_bytes())
                .map_err(|source| Error::Write { source })
        })?;
    }
    let k3s_members = K3sMembers {
        version: k3s.version.clone(),
        binary: k3s_member(&k3s.binary.0),
        sha256sums: k3s_member(&k3s.sums.0),
        airgap_images: k3s_member(&k3s.airgap_images.0),
    };
    w.add_file(
        &k3s_members.binary,
        0o755,
        &k3s.binary.1,
        Some(&k3s.binary.2),
        progress,
    )?;
    w.add_file(&k3s_members.sha256sums, 0o644, &k3s.sums.1, None, progress)?;
    w.add_file(
        &k3s_members.airgap_images,
        0o644,
        &k3s.airgap_images.1,
        Some(&k3s.airgap_images.2),
        progress,
    )?;
    let image_member = image_archive_member(&inputs.arch);
    let written = w.add(&image_member, 0o644, plan.size(), |out| {
        plan.write(&blobs_dir, out, progress)
    });
    if let Err(Error::BlobDamaged { path, .. }) = &written {
        // The next run fetches it anew.
        let _ = fsio::remove_file(path);
    }
    written?;
    let manifest = Manifest {
        format: FORMAT,
        foreman_box_version: inputs.foreman_box_version.clone(),
        arch: inputs.arch.clone(),
        stream: inputs.stream.clone(),
        k3s: k3s_members,
        image_archive: image_member,
        images: images
            .iter()
            .map(|(pin, r)| ImageEntry {
                component: pin.component.name().to_string(),
                reference: r.image.to_string(),
                tag_name: r.image.tag_name().expect("table entries have a tag"),
                digest_name: r
                    .image
                    .digest_name()
                    .expect("resolved images have a digest"),
                pinned: pin.is_pinned(),
                media_type: r.top.media_type.clone(),
                platform_manifest: r.platform_manifest.as_ref().map(|m| m.digest.clone()),
                bytes: r.total_size(),
            })
            .collect(),
        members: Vec::new(),
    };
    let (manifest, sha256, size) = w.finish(manifest)?;
    fsio::rename(&part, &inputs.output)?;
    let parent = match inputs.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fsio::sync_dir(&parent)?;
    fsio::remove_dir_all(work)?;
    Ok(Made {
        path: inputs.output.clone(),
        size,
        sha256,
        manifest,
    })
}

/// The tag name and the digest name.
pub fn names_of(image: &ImageRef) -> Vec<String> {
    image
        .tag_name()
        .into_iter()
        .chain(image.digest_name())
        .collect()
}

/// A manifest kept as a blob: written beside, renamed into place.
fn write_small_blob(dir: &Path, digest: &str, bytes: &[u8]) -> Result<(), Error> {
    let dest = blob_path(dir, digest);
    if dest.exists() {
        return Ok(());
    }
    let part = dir.join(format!("{}.part", &digest["sha256:".len()..]));
    std::fs::write(&part, bytes).map_err(io_err("write", &part))?;
    fsio::rename(&part, &dest)?;
    Ok(())
}

/// The bundle's foreman-box must run on the target: static (the operator image holds nothing
/// else) and built for its architecture.
pub fn check_binary(path: &Path, arch: &str) -> Result<(), Error> {
    let mut head = vec![0u8; 64 * 1024];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(io_err("read", path))?;
        let mut n = 0;
        while n < head.len() {
            let m = f.read(&mut head[n..]).map_err(io_err("read", path))?;
            if m == 0 {
                break;
            }
            n += m;
        }
        n
    };
    let head = &head[..n];
    let wrong = |found: String| Error::WrongBinary {
        path: path.to_path_buf(),
        arch: arch.to_string(),
        found,
    };
    let machine = crate::elf::machine(head).map_err(|e| wrong(e.to_string()))?;
    if machine != arch {
        return Err(wrong(format!("built for {machine}")));
    }
    match crate::elf::linking(head).map_err(|e| wrong(e.to_string()))? {
        crate::elf::Linking::Static => Ok(()),
        crate::elf::Linking::Dynamic { interpreter } => Err(wrong(format!(
            "dynamically linked (it needs {interpreter})"
        ))),
    }
}
