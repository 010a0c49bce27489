//! A real OCI registry on loopback: Debian's `docker-registry` (distribution 2.8) started with
//! its own config on a free port, storage in a temp dir (the packaged unit on :5000 is not
//! used), and a pusher that uploads small images built here through the distribution API.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the registry may take to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// What a push made.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `path:tag` in this registry.
    pub path: String,
    pub tag: String,
    /// What the tag names (the index for a multi-platform image).
    pub digest: String,
    /// Every blob and manifest pushed, digest → bytes.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The digests among them that only another platform than amd64 needs.
    pub other_platforms: Vec<String>,
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Registry {
    pub fn start() -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot start docker-registry ({e}); scripts/test.sh installs Debian's docker-registry")
            })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut me = Registry {
            child,
            dir,
            port,
            http: reqwest::Client::new(),
            rt,
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!(
                    "docker-registry exited with {status}:\n{}",
                    me.log()
                ));
            }
            let url = format!("{}/v2/", me.url());
            let ok = me
                .rt
                .block_on(me.http.get(&url).send())
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(me);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "docker-registry did not answer GET {url} within {}s:\n{}",
                    START_TIMEOUT.as_secs(),
                    me.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Uploads a blob (POST for a session, PUT with its digest) and returns its digest.
    pub fn push_blob(&self, path: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        self.rt.block_on(async {
            let start = self
                .http
                .post(format!("{}/v2/{path}/blobs/uploads/", self.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(start.status().as_u16(), 202, "upload session for {path}");
            let location = start.headers()["location"].to_str().unwrap().to_string();
            let location = if location.starts_with('/') {
                format!("{}{location}", self.url())
            } else {
                location
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = self
                .http
                .put(format!("{location}{sep}digest={digest}"))
                .header("content-type", "application/octet-stream")
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status().as_u16(), 201, "blob {digest} of {path}");
        });
        digest
    }

    /// Puts a manifest or index under `reference` (a tag or its digest); returns the digest
    /// the registry reports, checked against the bytes.
    pub fn push_manifest(
        &self,
        path: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = sha256(bytes);
        self.rt.block_on(async {
            let r = self
                .http
                .put(format!("{}/v2/{path}/manifests/{reference}", self.url()))
                .header("content-type", media_type)
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let reported = r
                .headers()
                .get("docker-content-digest")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.text().await.unwrap_or_default();
            assert_eq!(status, 201, "manifest {path}:{reference}: {body}");
            assert_eq!(reported.as_deref(), Some(digest.as_str()));
        });
        digest
    }

    /// A blob, or a manifest by digest, as the registry serves it.
    pub fn get_blob(&self, path: &str, digest: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let r = self
                .http
                .get(format!("{}/v2/{path}/blobs/{digest}", self.url()))
                .send()
                .await
                .unwrap();
            let r = if r.status().as_u16() == 404 {
                self.http
                    .get(format!("{}/v2/{path}/manifests/{digest}", self.url()))
                    .header("accept", format!("{MEDIA_INDEX}, {MEDIA_MANIFEST}"))
                    .send()
                    .await
                    .unwrap()
            } else {
                r
            };
            assert!(r.status().is_success(), "GET {digest}: {}", r.status());
            r.bytes().await.unwrap().to_vec()
        })
    }

    /// Builds and pushes a small runnable image: a layer with a static busybox (shared by
    /// every image), a layer with `/name` holding `name`, entrypoint `busybox cat /name`. With
    /// `index`, an image index over amd64 and arm64 (the arm64 entry differs only in its
    /// config) is what the tag names.
    pub fn push_test_image(&self, path: &str, tag: &str, name: &str, index: bool) -> Pushed {
        let busybox = std::fs::read("/bin/busybox").expect("busybox (static) is installed");
        let base = gzip_tar(&[("bin/busybox", &busybox, 0o755)]);
        let own = gzip_tar(&[("name", name.as_bytes(), 0o644)]);
        let mut blobs = Vec::new();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (gz, raw) in [&base, &own] {
            let d = self.push_blob(path, gz);
            layers.push(
                serde_json::json!({"mediaType": MEDIA_LAYER_GZIP, "digest": d, "size": gz.len()}),
            );
            diff_ids.push(sha256(raw));
            blobs.push((d, gz.clone()));
        }
        let mut platform_manifests = Vec::new();
        let mut other_platforms = Vec::new();
        for arch in if index {
            vec!["amd64", "arm64"]
        } else {
            vec!["amd64"]
        } {
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": arch,
                "os": "linux",
                "config": {"Entrypoint": ["/bin/busybox", "cat", "/name"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .unwrap();
            let config_digest = self.push_blob(path, &config);
            blobs.push((config_digest.clone(), config.clone()));
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": layers,
            }))
            .unwrap();
            let reference = if index {
                sha256(&manifest)
            } else {
                tag.to_string()
            };
            let d = self.push_manifest(path, &reference, MEDIA_MANIFEST, &manifest);
            blobs.push((d.clone(), manifest.clone()));
            if arch != "amd64" {
                other_platforms.extend([config_digest, d.clone()]);
            }
            platform_manifests.push((arch, d, manifest.len()));
        }
        let digest = if index {
            let idx = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_INDEX,
                "manifests": platform_manifests.iter().map(|(arch, d, size)| serde_json::json!({
                    "mediaType": MEDIA_MANIFEST, "digest": d, "size": size,
                    "platform": {"architecture": arch, "os": "linux"},
                })).collect::<Vec<_>>(),
            }))
            .unwrap();
            let d = self.push_manifest(path, tag, MEDIA_INDEX, &idx);
            blobs.push((d.clone(), idx));
            d
        } else {
            platform_manifests[0].1.clone()
        };
        Pushed {
            path: path.to_string(),
            tag: tag.to_string(),
            digest,
            blobs,
            other_platforms,
        }
    }

    /// An amd64 image of one gzip layer holding `size` bytes of incompressible data (for
    /// throughput figures).
    pub fn push_sized_image(&self, path: &str, tag: &str, size: usize, seed: u64) -> Pushed {
        let data = crate::artifact(size, seed);
        let (gz, raw) = gzip_tar(&[("data", &data, 0o644)]);
        let layer = self.push_blob(path, &gz);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(&raw)]},
        }))
        .unwrap();
        let config_digest = self.push_blob(path, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer, "size": gz.len()}],
        }))
        .unwrap();
        let digest = self.push_manifest(path, tag, MEDIA_MANIFEST, &manifest);
        Pushed {
            path: path.to_string(),
            tag: tag.to_string(),
            digest: digest.clone(),
            blobs: vec![(layer, gz), (config_digest, config), (digest, manifest)],
            other_platforms: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A gzip-compressed tar of regular files, root-owned, mtime 0.
pub fn gzip_tar(files: &[(&str, &[u8], u32)]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let gz = gz.finish().unwrap();
    // The digest the registry gets is the gzip's; the config's diff_id is the tar's.
    let mut check = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut check)
        .unwrap();
    assert_eq!(check, raw);
    (gz, raw)
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
