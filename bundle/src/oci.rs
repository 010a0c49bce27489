//! The operator's image, made from the foreman-box executable itself: an OCI image layout in a
//! tar archive (what `ctr images import` and k3s's `agent/images` folder accept) with one
//! uncompressed layer holding only `/foreman-box`.
//!
//! Everything is a pure function of the binary's bytes: fixed mtimes, uid/gid 0, no creation
//! date, JSON from typed structs (fixed field order). The same binary gives a byte-identical
//! archive, and the tag is derived from the image's config digest, so a new binary gives a new
//! reference and the Deployment that names it rolls.
//!
//! The layer digest can be computed while reading the binary ([`LayerHasher`]) and everything
//! else follows from it ([`Image::new`]), so a caller that remembers the layer digest of an
//! unchanged binary knows the reference and the archive's size without reading the binary.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the binary sits in the image.
pub const BINARY_PATH: &str = "/foreman-box";
/// The numeric user the image (and the operator Deployment) runs as: "nonroot" of distroless.
pub const USER_ID: u32 = 65532;
/// Repository part of the reference; `.local` so that it can never be pulled from anywhere.
pub const REPOSITORY: &str = "foreman-box.local/operator";
/// Every file in the layer and the archive carries this mtime (2024-01-01T00:00:00Z): a fixed
/// instant, so that the bytes depend on nothing but the binary.
pub const MTIME: u64 = 1_704_067_200;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// containerd's importer names the image after this annotation of the index entry.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(crate) const BLOCK: u64 = 512;

/// The layer: its digest (`sha256:<hex>`) and size in bytes. Uncompressed, so it is also the
/// config's diff_id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
}

/// Hashes the layer while the binary is read in pieces.
pub struct LayerHasher {
    hasher: Sha256,
    len: u64,
    expected: u64,
}

impl LayerHasher {
    /// For a binary of `len` bytes.
    pub fn new(len: u64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(layer_header(len));
        LayerHasher {
            hasher,
            len: 0,
            expected: len,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// The layer, or None when the bytes seen were not `len` long (the file changed while read).
    pub fn finish(mut self) -> Option<Layer> {
        if self.len != self.expected {
            return None;
        }
        self.hasher.update(layer_trailer(self.len));
        Some(Layer {
            digest: format!("sha256:{}", hex::encode(self.hasher.finalize())),
            size: layer_size(self.len),
        })
    }
}

/// The layer of a binary held in memory.
pub fn layer_of(binary: &[u8]) -> Layer {
    let mut h = LayerHasher::new(binary.len() as u64);
    h.update(binary);
    h.finish().expect("all bytes were hashed")
}

/// The image around a layer: config, manifest, index and the reference, all small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub layer: Layer,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub index: Vec<u8>,
    /// `foreman-box.local/operator:<first 12 hex digits of the config digest>`.
    pub reference: String,
}

impl Image {
    /// `arch` is the OCI name (`amd64`, `arm64`): see [`oci_arch`].
    pub fn new(layer: Layer, arch: &str) -> Image {
        let config = to_json(&Config {
            architecture: arch,
            os: "linux",
            config: RunConfig {
                user: format!("{USER_ID}:{USER_ID}"),
                entrypoint: [BINARY_PATH, "operator"],
                working_dir: "/",
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: [&layer.digest],
            },
            history: [History {
                created_by: "foreman-box install: the running foreman-box executable",
            }],
        });
        let config_digest = sha256_digest(&config);
        let manifest = to_json(&Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST,
            config: Descriptor {
                media_type: MEDIA_CONFIG,
                digest: &config_digest,
                size: config.len() as u64,
            },
            layers: [Descriptor {
                media_type: MEDIA_LAYER,
                digest: &layer.digest,
                size: layer.size,
            }],
        });
        let manifest_digest = sha256_digest(&manifest);
        let tag = &config_digest["sha256:".len()..];
        let tag = &tag[..12];
        let reference = format!("{REPOSITORY}:{tag}");
        let index = to_json(&Index {
            schema_version: 2,
            media_type: MEDIA_INDEX,
            manifests: [IndexEntry {
                media_type: MEDIA_MANIFEST,
                digest: &manifest_digest,
                size: manifest.len() as u64,
                annotations: Annotations {
                    containerd_name: &reference,
                    ref_name: tag,
                },
                platform: Platform {
                    architecture: arch,
                    os: "linux",
                },
            }],
        });
        Image {
            layer,
            config,
            config_digest,
            manifest,
            manifest_digest,
            index,
            reference,
        }
    }

    /// The archive's entries in order: (path, size). The layer is the last one.
    fn entries(&self) -> [(String, u64); 5] {
        let blob = |digest: &str| format!("blobs/sha256/{}", &digest["sha256:".len()..]);
        [
            ("oci-layout".to_string(), OCI_LAYOUT.len() as u64),
            ("index.json".to_string(), self.index.len() as u64),
            (blob(&self.manifest_digest), self.manifest.len() as u64),
            (blob(&self.config_digest), self.config.len() as u64),
            (blob(&self.layer.digest), self.layer.size),
        ]
    }

    /// The archive's size in bytes, known without the binary.
    pub fn archive_size(&self) -> u64 {
        self.entries()
            .iter()
            .map(|(_, size)| BLOCK + padded(*size))
            .sum::<u64>()
            + 2 * BLOCK
    }

    /// The archive, given the binary whose layer this image was made from.
    ///
    /// Panics when `binary` is not that binary: a caller bug, not an input error.
    pub fn archive(&self, binary: &[u8]) -> Vec<u8> {
        assert_eq!(
            layer_size(binary.len() as u64),
            self.layer.size,
            "the binary is not the one this image was made from"
        );
        let mut out = Vec::with_capacity(self.archive_size() as usize);
        let small: [&[u8]; 4] = [
            OCI_LAYOUT.as_bytes(),
            &self.index,
            &self.manifest,
            &self.config,
        ];
        let entries = self.entries();
        for ((path, size), data) in entries.iter().zip(small) {
            out.extend_from_slice(&file_header(path, *size, 0o644));
            out.extend_from_slice(data);
            pad(&mut out);
        }
        let (path, size) = &entries[4];
        out.extend_from_slice(&file_header(path, *size, 0o644));
        out.extend_from_slice(&layer_header(binary.len() as u64));
        out.extend_from_slice(binary);
        out.extend_from_slice(&layer_trailer(binary.len() as u64));
        pad(&mut out);
        out.resize(out.len() + 2 * BLOCK as usize, 0);
        debug_assert_eq!(out.len() as u64, self.archive_size());
        out
    }
}

/// The OCI platform name of this build's architecture.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("image JSON serializes")
}

pub(crate) fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

fn pad(out: &mut Vec<u8>) {
    let len = out.len() as u64;
    out.resize(padded(len) as usize, 0);
}

fn layer_size(binary_len: u64) -> u64 {
    BLOCK + padded(binary_len) + 2 * BLOCK
}

/// The tar header of the layer's one file: `foreman-box`, 0755, root-owned.
fn layer_header(binary_len: u64) -> [u8; 512] {
    file_header(&BINARY_PATH[1..], binary_len, 0o755)
}

/// What follows the binary in the layer: padding to a block, then the end-of-archive blocks.
fn layer_trailer(binary_len: u64) -> Vec<u8> {
    vec![0u8; (padded(binary_len) - binary_len + 2 * BLOCK) as usize]
}

/// A regular file's tar header: root-owned, [`MTIME`], no user or group names: the same bytes
/// for the same path, size and mode.
pub(crate) fn file_header(path: &str, size: u64, mode: u32) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("short relative path");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_username("").expect("empty name");
    h.set_groupname("").expect("empty name");
    h.set_cksum();
    *h.as_bytes()
}

#[derive(Serialize)]
struct Config<'a> {
    architecture: &'a str,
    os: &'a str,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
    history: [History<'a>; 1],
}

#[derive(Serialize)]
struct RunConfig<'a> {
    #[serde(rename = "User")]
    user: String,
    #[serde(rename = "Entrypoint")]
    entrypoint: [&'a str; 2],
    #[serde(rename = "WorkingDir")]
    working_dir: &'a str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: [&'a str; 1],
}

#[derive(Serialize)]
struct History<'a> {
    created_by: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: [Descriptor<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: [IndexEntry<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    annotations: Annotations<'a>,
    platform: Platform<'a>,
}

#[derive(Serialize)]
struct Annotations<'a> {
    #[serde(rename = "io.containerd.image.name")]
    containerd_name: &'a str,
    #[serde(rename = "org.opencontainers.image.ref.name")]
    ref_name: &'a str,
}

#[derive(Serialize)]
struct Platform<'a> {
    architecture: &'a str,
    os: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    /// Path → (bytes, mode, uid, gid, mtime) of every entry of a tar stream.
    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (Vec<u8>, u32, u64, u64, u64)> {
        let mut out = BTreeMap::new();
        let mut archive = tar::Archive::new(tar_bytes);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            out.insert(
                path,
                (
                    data,
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                ),
            );
        }
        out
    }

    fn blob<'a>(
        files: &'a BTreeMap<String, (Vec<u8>, u32, u64, u64, u64)>,
        digest: &str,
    ) -> &'a [u8] {
        let name = format!("blobs/sha256/{}", digest.strip_prefix("sha256:").unwrap());
        let data = &files
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .0;
        assert_eq!(
            sha256_digest(data),
            digest,
            "{name} holds what its name says"
        );
        data
    }

    fn fake_binary(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn same_binary_gives_a_byte_identical_archive_and_reference() {
        let bin = fake_binary(100_000, 1);
        let a = Image::new(layer_of(&bin), "amd64");
        let b = Image::new(layer_of(&bin.clone()), "amd64");
        assert_eq!(a.archive(&bin), b.archive(&bin));
        assert_eq!(a.reference, b.reference);
    }

    #[test]
    fn a_changed_binary_gives_a_new_reference() {
        let bin = fake_binary(4096, 1);
        let mut other = bin.clone();
        other[2000] ^= 1;
        let a = Image::new(layer_of(&bin), "amd64");
        let b = Image::new(layer_of(&other), "amd64");
        assert_ne!(a.reference, b.reference);
        assert_ne!(a.layer.digest, b.layer.digest);
    }

    #[test]
    fn archive_is_an_oci_layout_whose_digests_and_sizes_hold() {
        let bin = fake_binary(70_001, 7);
        let image = Image::new(layer_of(&bin), "amd64");
        let archive = image.archive(&bin);
        assert_eq!(archive.len() as u64, image.archive_size());
        let files = entries(&archive);
        assert_eq!(files.len(), 5, "{:?}", files.keys().collect::<Vec<_>>());
        for (path, (_, mode, uid, gid, mtime)) in &files {
            assert_eq!((*mode, *uid, *gid, *mtime), (0o644, 0, 0, MTIME), "{path}");
        }
        let layout: serde_json::Value = serde_json::from_slice(&files["oci-layout"].0).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index: serde_json::Value = serde_json::from_slice(&files["index.json"].0).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let entry = &index["manifests"][0];
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(entry["mediaType"], MEDIA_MANIFEST);
        assert_eq!(
            entry["annotations"][ANNOTATION_CONTAINERD_NAME],
            image.reference
        );
        let tag = image.reference.rsplit_once(':').unwrap().1;
        assert_eq!(entry["annotations"][ANNOTATION_REF_NAME], tag);
        assert_eq!(tag.len(), 12);
        assert!(image.config_digest.starts_with(&format!("sha256:{tag}")));

        let manifest_bytes = blob(&files, entry["digest"].as_str().unwrap());
        assert_eq!(entry["size"], manifest_bytes.len() as u64);
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["mediaType"], MEDIA_MANIFEST);
        let config_bytes = blob(&files, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(manifest["config"]["size"], config_bytes.len() as u64);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "one layer");
        assert_eq!(layers[0]["mediaType"], MEDIA_LAYER);
        let layer_bytes = blob(&files, layers[0]["digest"].as_str().unwrap());
        assert_eq!(layers[0]["size"], layer_bytes.len() as u64);

        let config: serde_json::Value = serde_json::from_slice(config_bytes).unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/foreman-box", "operator"])
        );
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(
            config["rootfs"]["diff_ids"][0], layers[0]["digest"],
            "uncompressed: diff_id is the layer digest"
        );

        let layer = entries(layer_bytes);
        assert_eq!(
            layer.keys().collect::<Vec<_>>(),
            ["foreman-box"],
            "only the binary"
        );
        let (data, mode, uid, gid, mtime) = &layer["foreman-box"];
        assert_eq!(data, &bin);
        assert_eq!((*mode, *uid, *gid, *mtime), (0o755, 0, 0, MTIME));
    }

    #[test]
    fn layer_hashed_in_pieces_equals_layer_of_the_whole() {
        let bin = fake_binary(10_000, 3);
        let mut h = LayerHasher::new(bin.len() as u64);
        for chunk in bin.chunks(999) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), Some(layer_of(&bin)));
        let mut short = LayerHasher::new(bin.len() as u64);
        short.update(&bin[..10]);
        assert_eq!(
            short.finish(),
            None,
            "a file that changed length while read"
        );
    }
}
