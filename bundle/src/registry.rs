//! A client of the OCI distribution API (https://github.com/opencontainers/distribution-spec)
//! over our own reqwest + rustls stack: manifests fetched by digest and checked against it, an
//! image index resolved to one platform, blobs streamed into `<digest>.part` while their SHA-256
//! is computed, resumed with HTTP Range after a cut or a kill, renamed into place only when the
//! digest and size match. Credentials come from a containers-auth.json file or the environment
//! (never argv) and answer the registry's challenge: the token flow of the distribution spec
//! (`WWW-Authenticate: Bearer realm=...`, a token fetched with the credentials, or anonymously)
//! or basic authentication.
//!
//! Why not the `oci-client` crate: it would bring a second TLS and HTTP configuration beside the
//! installer's (its own reqwest features and certificate handling), and what the bundle needs
//! beyond it — resuming a blob from a partial file after a kill, hashing as bytes stream, one
//! platform of an index kept beside the index itself — is the larger part of this module anyway.

use crate::fsio::{self, io_err};
use crate::progress::Progress;
use crate::Error;
use foreman_operator::images::{check_digest, ImageRef};
use futures::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, RANGE, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// What we ask for: both index types and both image manifest types (no schema 1).
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
/// The distribution spec lets registries refuse manifests above 4 MiB; we refuse them too.
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A registry password or token: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// User and password per registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_host: BTreeMap<String, (String, Password)>,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Reads the containers-auth.json format (podman's `auth.json`, docker's `config.json`,
    /// foremanctl's `registry_auth_file`): `{"auths": {"quay.io": {"auth": base64(user:pass)}}}`
    /// or `{"username", "password"}` per host. `what` names the source in errors, which never
    /// quote a value.
    pub fn parse(what: &str, text: &str) -> Result<Credentials, Error> {
        let bad = |problem: String| Error::Credentials {
            what: what.to_string(),
            problem,
        };
        let file: AuthFile = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not JSON of the containers-auth.json form (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in file.auths {
            let host = normalize_auth_key(&key);
            let (user, pass) = match (entry.auth, entry.username, entry.password) {
                (Some(b64), _, _) => {
                    use base64::Engine as _;
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|_| bad(format!("the `auth` of {key} is not base64")))?;
                    let text = String::from_utf8(raw)
                        .map_err(|_| bad(format!("the `auth` of {key} is not UTF-8")))?;
                    let (u, p) = text.split_once(':').ok_or_else(|| {
                        bad(format!(
                            "the `auth` of {key} is not base64 of user:password"
                        ))
                    })?;
                    (u.to_string(), p.to_string())
                }
                (None, Some(u), Some(p)) => (u, p),
                _ => {
                    return Err(bad(format!(
                        "{key} has neither `auth` nor `username` and `password`"
                    )))
                }
            };
            by_host.insert(host, (user, Password(pass)));
        }
        Ok(Credentials { by_host })
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The hosts that have credentials (for messages; never the values).
    pub fn hosts(&self) -> Vec<&str> {
        self.by_host.keys().map(String::as_str).collect()
    }

    fn for_host(&self, host: &str) -> Option<&(String, Password)> {
        self.by_host.get(host)
    }
}

/// `https://index.docker.io/v1/` (docker's key for Docker Hub) → `docker.io`; `quay.io/foo` →
/// `quay.io`.
fn normalize_auth_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registry host (as images name it) → base URL to use instead (`quay.io` →
    /// `http://127.0.0.1:5000`): a mirror on the local network, a pull-through cache.
    pub mirrors: BTreeMap<String, String>,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// Time to the first byte of an answer, and the longest a body may pause.
    pub timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mirrors: BTreeMap::new(),
            credentials: Credentials::default(),
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            retries: 4,
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Parses `HOST=URL` (a `--registry-mirror` value).
pub fn parse_mirror(text: &str) -> Result<(String, String), String> {
    let (host, url) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` is not HOST=URL (e.g. quay.io=https://mirror.example.com:5000)")
    })?;
    let url = url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    if parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(format!(
            "`{url}` has a path; a registry is addressed at its root"
        ));
    }
    if host.is_empty() || host.contains('/') {
        return Err(format!("`{host}` is not a registry host"));
    }
    Ok((host.to_string(), url.to_string()))
}

/// A descriptor as manifests and indexes write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// A manifest or index as fetched: its bytes are what its digest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Fetched {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// An image resolved for one platform: what to fetch and how it is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The reference with its digest: the pinned one, or what the tag named when resolved.
    pub image: ImageRef,
    /// What the reference names: an index or an image manifest.
    pub top: Fetched,
    /// The platform's image manifest when `top` is an index.
    pub platform_manifest: Option<Fetched>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Resolved {
    /// The blobs fetched separately: config and layers.
    pub fn blobs(&self) -> Vec<Descriptor> {
        std::iter::once(self.config.clone())
            .chain(self.layers.iter().cloned())
            .collect()
    }

    /// The manifests held in memory (written into the work dir like blobs).
    pub fn manifests(&self) -> Vec<&Fetched> {
        std::iter::once(&self.top)
            .chain(self.platform_manifest.iter())
            .collect()
    }

    /// Bytes of everything this platform needs: manifests, config, layers.
    pub fn total_size(&self) -> u64 {
        self.manifests()
            .iter()
            .map(|m| m.bytes.len() as u64)
            .chain(self.blobs().iter().map(|b| b.size))
            .sum()
    }
}

/// What fetching a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFetch {
    /// Already in the work dir.
    Present,
    /// Fetched (resumed from this many bytes of a partial file).
    Fetched { resumed_from: u64 },
}

/// A client for any number of registries.
pub struct Client {
    http: reqwest::Client,
    opts: Options,
    /// Bearer tokens per (registry, scope).
    tokens: Mutex<HashMap<(String, String), Password>>,
}

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Basic(String, Password),
    Bearer(Password),
}

impl Client {
    pub fn new(opts: Options) -> Client {
        let http = reqwest::Client::builder()
            .user_agent(concat!("foreman-box/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.timeout.saturating_mul(2))
            // Blobs sit behind redirects to storage; reqwest drops Authorization when a
            // redirect leaves the host, so credentials never travel to the storage service.
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .expect("TLS backend initialises");
        Client {
            http,
            opts,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The API base for a registry host: the mirror given for it, else `https://HOST`
    /// (`docker.io` is served by `registry-1.docker.io`).
    fn base(&self, registry: &str) -> String {
        if let Some(m) = self.opts.mirrors.get(registry) {
            return m.clone();
        }
        match registry {
            "docker.io" => "https://registry-1.docker.io".to_string(),
            r => format!("https://{r}"),
        }
    }

    /// The image's manifest (and, for an index, the platform's), checked against the pinned
    /// digest; with no digest, what the tag names now.
    pub async fn resolve(&self, image: &ImageRef, arch: &str) -> Result<Resolved, Error> {
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .expect("a reference has a tag or a digest");
        let top = self.manifest(image, &reference).await?;
        let mut pinned = image.clone();
        pinned.digest = Some(top.digest.clone());
        let raw = parse_manifest(&pinned, &top)?;
        let (platform_manifest, raw) = match raw.manifests {
            Some(entries) => {
                let entry = choose_platform(&pinned, &entries, arch)?;
                let m = self.manifest(image, &entry.digest).await?;
                if m.bytes.len() as u64 != entry.size || m.media_type != entry.media_type {
                    return Err(Error::BadManifest {
                        reference: pinned.to_string(),
                        problem: format!(
                            "the index names {} ({}, {} bytes); the registry served {} bytes of {}",
                            entry.digest,
                            entry.media_type,
                            entry.size,
                            m.bytes.len(),
                            m.media_type
                        ),
                    });
                }
                let raw = parse_manifest(&pinned, &m)?;
                if raw.manifests.is_some() {
                    return Err(Error::BadManifest {
                        reference: pinned.to_string(),
                        problem: "an index inside an index".into(),
                    });
                }
                (Some(m), raw)
            }
            None => (None, raw),
        };
        let (Some(config), Some(layers)) = (raw.config, raw.layers) else {
            return Err(Error::BadManifest {
                reference: pinned.to_string(),
                problem: "an image manifest without config or layers".into(),
            });
        };
        for d in std::iter::once(&config).chain(layers.iter()) {
            check_digest(&d.digest).map_err(|problem| Error::BadManifest {
                reference: pinned.to_string(),
                problem,
            })?;
        }
        Ok(Resolved {
            image: pinned,
            top,
            platform_manifest,
            config,
            layers,
        })
    }

    /// A manifest by digest (checked) or by tag (its digest computed from the bytes).
    pub async fn manifest(&self, image: &ImageRef, reference: &str) -> Result<Fetched, Error> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(&image.registry),
            image.path
        );
        let shown = format!("{}@{reference}", image.name());
        let resp = self
            .with_retries(&url, || async {
                let resp = self
                    .send(image, &url, |r| r.header(ACCEPT, ACCEPT_MANIFESTS))
                    .await?;
                match resp.status() {
                    s if s.is_success() => Ok(resp),
                    StatusCode::NOT_FOUND => Err(Error::NotFound {
                        reference: if reference.starts_with("sha256:") {
                            format!("{}@{reference}", image.name())
                        } else {
                            format!("{}:{reference}", image.name())
                        },
                        registry: self.base(&image.registry),
                    }),
                    s => Err(Error::RegistryStatus {
                        url: url.clone(),
                        status: s.as_u16(),
                    }),
                }
            })
            .await?;
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let bytes = self.small_body(&url, resp).await?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Error::DigestMismatch {
                what: format!("manifest {shown}"),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        // Registries answer with the manifest's own mediaType; the body says it too.
        let declared = serde_json::from_slice::<RawManifest>(&bytes)
            .ok()
            .and_then(|m| m.media_type);
        let media_type = declared.unwrap_or(media_type);
        if ![
            MEDIA_OCI_INDEX,
            MEDIA_OCI_MANIFEST,
            MEDIA_DOCKER_LIST,
            MEDIA_DOCKER_MANIFEST,
        ]
        .contains(&media_type.as_str())
        {
            return Err(Error::BadManifest {
                reference: shown,
                problem: format!(
                    "media type `{media_type}` is not an OCI or Docker v2 manifest or index"
                ),
            });
        }
        Ok(Fetched {
            media_type,
            digest,
            bytes,
        })
    }

    async fn small_body(&self, url: &str, resp: reqwest::Response) -> Result<Vec<u8>, Error> {
        if resp.content_length().unwrap_or(0) > MAX_MANIFEST_BYTES as u64 {
            return Err(Error::RegistryStatus {
                url: url.to_string(),
                status: 413,
            });
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.opts.timeout, stream.next())
                .await
                .map_err(|_| self.stalled(url))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|source| Error::Registry {
                url: url.to_string(),
                source: source.without_url(),
            })?;
            out.extend_from_slice(&chunk);
            if out.len() > MAX_MANIFEST_BYTES {
                return Err(Error::RegistryStatus {
                    url: url.to_string(),
                    status: 413,
                });
            }
        }
        Ok(out)
    }

    /// Makes `dir/<hex>` hold the blob, verified: a file already there is taken as it is (the
    /// bundle writer checks every blob's digest again as it copies it); a `<hex>.part` left by
    /// a cut or a kill is continued with a Range request.
    pub async fn fetch_blob(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<BlobFetch, Error> {
        let hex = desc
            .digest
            .strip_prefix("sha256:")
            .expect("digests are checked when manifests are read");
        let dest = dir.join(hex);
        if dest.exists() {
            return Ok(BlobFetch::Present);
        }
        let part = dir.join(format!("{hex}.part"));
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base(&image.registry),
            image.path,
            desc.digest
        );
        let what = format!("{} {}", image.name(), short(&desc.digest));
        // Where the first attempt started: more than 0 when a run before this one was cut.
        let first_start = AtomicU64::new(u64::MAX);
        let actual = self
            .with_retries(&url, || async {
                let (from, hash) = self
                    .fetch_blob_once(image, desc, &url, &part, &what, progress)
                    .await?;
                let _ = first_start.compare_exchange(
                    u64::MAX,
                    from,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                Ok(hash)
            })
            .await?;
        let resumed_from = match first_start.load(Ordering::SeqCst) {
            u64::MAX => 0,
            n => n,
        };
        if actual != desc.digest {
            fsio::remove_file(&part)?;
            return Err(Error::DigestMismatch {
                what: format!("blob {} of {}", desc.digest, image),
                expected: desc.digest.clone(),
                actual,
            });
        }
        fsio::rename(&part, &dest)?;
        Ok(BlobFetch::Fetched { resumed_from })
    }

    /// One attempt: continue `part` from where it stops. Returns where it started and the hash
    /// of the whole part when the declared size has arrived.
    async fn fetch_blob_once(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        url: &str,
        part: &Path,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(u64, String), Error> {
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > desc.size {
            have = 0; // longer than the blob: not ours to continue
        }
        let mut hasher = Sha256::new();
        if have == desc.size && have > 0 {
            hash_file_into(part, &mut hasher)?;
            return Ok((have, format!("sha256:{}", hex::encode(hasher.finalize()))));
        }
        let resp = self
            .send(image, url, |r| {
                if have > 0 {
                    r.header(RANGE, format!("bytes={have}-"))
                } else {
                    r
                }
            })
            .await?;
        let status = resp.status();
        let resuming = have > 0
            && status == StatusCode::PARTIAL_CONTENT
            && content_range_start(resp.headers()) == Some(have);
        if !status.is_success() {
            return Err(if status == StatusCode::NOT_FOUND {
                Error::NotFound {
                    reference: format!("{}@{}", image.name(), desc.digest),
                    registry: self.base(&image.registry),
                }
            } else {
                Error::RegistryStatus {
                    url: url.to_string(),
                    status: status.as_u16(),
                }
            });
        }
        let mut file = if resuming {
            tracing::info!(blob = %desc.digest, from = have, "resuming blob");
            hash_file_into(part, &mut hasher)?;
            std::fs::OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(io_err("open", part))?
        } else {
            have = 0;
            std::fs::File::create(part).map_err(io_err("create", part))?
        };
        let start = have;
        let mut bar = progress.start(what, Some(desc.size));
        bar.advance(have);
        let mut stream = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.opts.timeout, stream.next())
                .await
                .map_err(|_| self.stalled(url))?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|source| Error::Registry {
                url: url.to_string(),
                source: source.without_url(),
            })?;
            have += chunk.len() as u64;
            if have > desc.size {
                drop(file);
                fsio::remove_file(part)?;
                return Err(Error::SizeMismatch {
                    what: format!("blob {} of {image}", desc.digest),
                    expected: desc.size,
                    actual: have,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(io_err("write", part))?;
            bar.advance(chunk.len() as u64);
        }
        file.flush().map_err(io_err("write", part))?;
        bar.finish();
        if have < desc.size {
            // Cut short: what arrived stays for the next attempt.
            return Err(Error::Cut {
                url: url.to_string(),
                have,
                size: desc.size,
            });
        }
        Ok((start, format!("sha256:{}", hex::encode(hasher.finalize()))))
    }

    /// Sends a GET with the auth this registry and repository need, answering one challenge.
    async fn send(
        &self,
        image: &ImageRef,
        url: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let scope = format!("repository:{}:pull", image.path);
        let key = (image.registry.clone(), scope.clone());
        let cached = self.tokens.lock().expect("token cache").get(&key).cloned();
        let auth = match cached {
            Some(t) => Auth::Bearer(t),
            None => Auth::None,
        };
        let resp = self.send_with(url, &build, &auth).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        let creds = self.opts.credentials.for_host(&image.registry).cloned();
        let auth = match parse_challenge(&challenge) {
            Some(Challenge::Bearer(params)) => {
                let token = self.token(image, &params, &scope, creds.as_ref()).await?;
                self.tokens
                    .lock()
                    .expect("token cache")
                    .insert(key, token.clone());
                Auth::Bearer(token)
            }
            Some(Challenge::Basic) => match creds {
                Some((u, p)) => Auth::Basic(u, p),
                None => {
                    return Err(Error::Unauthorized {
                        registry: image.registry.clone(),
                        repository: image.path.clone(),
                        had_credentials: false,
                    })
                }
            },
            None => {
                return Err(Error::Unauthorized {
                    registry: image.registry.clone(),
                    repository: image.path.clone(),
                    had_credentials: creds.is_some(),
                })
            }
        };
        let had_credentials = !matches!(auth, Auth::None)
            && self.opts.credentials.for_host(&image.registry).is_some();
        let resp = self.send_with(url, &build, &auth).await?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(Error::Unauthorized {
                registry: image.registry.clone(),
                repository: image.path.clone(),
                had_credentials,
            });
        }
        Ok(resp)
    }

    async fn send_with(
        &self,
        url: &str,
        build: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        auth: &Auth,
    ) -> Result<reqwest::Response, Error> {
        let mut req = build(self.http.get(url));
        req = match auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
            Auth::Bearer(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        Error::BadToken {
                            realm: url.to_string(),
                            problem: "the token has characters a header cannot carry".into(),
                        }
                    })?;
                v.set_sensitive(true);
                req.header(AUTHORIZATION, v)
            }
        };
        match tokio::time::timeout(self.opts.timeout, req.send()).await {
            Ok(r) => r.map_err(|source| Error::Registry {
                url: url.to_string(),
                source: source.without_url(),
            }),
            Err(_) => Err(self.stalled(url)),
        }
    }

    /// The distribution spec's token flow: GET realm?service=..&scope=.., with basic
    /// credentials when there are some (anonymous otherwise, as for public images).
    async fn token(
        &self,
        image: &ImageRef,
        params: &BTreeMap<String, String>,
        scope: &str,
        creds: Option<&(String, Password)>,
    ) -> Result<Password, Error> {
        let realm = params.get("realm").ok_or_else(|| Error::BadToken {
            realm: image.registry.clone(),
            problem: "the Bearer challenge names no realm".into(),
        })?;
        let mut url = reqwest::Url::parse(realm).map_err(|e| Error::BadToken {
            realm: realm.clone(),
            problem: format!("the realm is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            q.append_pair(
                "scope",
                params.get("scope").map(String::as_str).unwrap_or(scope),
            );
        }
        let mut req = self.http.get(url.clone());
        if let Some((u, p)) = creds {
            req = req.basic_auth(u, Some(p.expose()));
        }
        let resp = match tokio::time::timeout(self.opts.timeout, req.send()).await {
            Ok(r) => r.map_err(|source| Error::Registry {
                url: realm.clone(),
                source: source.without_url(),
            })?,
            Err(_) => return Err(self.stalled(realm)),
        };
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(Error::Unauthorized {
                registry: image.registry.clone(),
                repository: image.path.clone(),
                had_credentials: creds.is_some(),
            });
        }
        if !resp.status().is_success() {
            return Err(Error::RegistryStatus {
                url: realm.clone(),
                status: resp.status().as_u16(),
            });
        }
        let body = self.small_body(realm, resp).await?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| Error::BadToken {
            realm: realm.clone(),
            problem: "the answer is not the token JSON of the distribution spec".into(),
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .map(Password)
            .ok_or_else(|| Error::BadToken {
                realm: realm.clone(),
                problem: "the answer holds no token".into(),
            })
    }

    fn stalled(&self, url: &str) -> Error {
        Error::Stalled {
            url: url.to_string(),
            secs: self.opts.timeout.as_secs(),
        }
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if tries < self.opts.retries && e.is_transient() => {
                    let wait = self
                        .opts
                        .retry_delay
                        .saturating_mul(1 << tries.min(6))
                        .min(Duration::from_secs(30));
                    tries += 1;
                    tracing::warn!(url, attempt = tries, wait_ms = wait.as_millis() as u64, error = %e, "registry request failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn parse_manifest(image: &ImageRef, m: &Fetched) -> Result<RawManifest, Error> {
    serde_json::from_slice(&m.bytes).map_err(|e| Error::BadManifest {
        reference: image.to_string(),
        problem: format!("{} is not a manifest: {e}", m.digest),
    })
}

/// The index entry for linux/`arch` (arm64: variant v8 or none).
fn choose_platform<'a>(
    image: &ImageRef,
    entries: &'a [IndexEntry],
    arch: &str,
) -> Result<&'a IndexEntry, Error> {
    let fits = |p: &Platform| {
        p.os == "linux"
            && p.architecture == arch
            && (arch != "arm64" || matches!(p.variant.as_deref(), None | Some("v8")))
    };
    let found = entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(fits))
        .ok_or_else(|| Error::NoPlatform {
            reference: image.to_string(),
            arch: arch.to_string(),
            found: entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect(),
        })?;
    check_digest(&found.digest).map_err(|problem| Error::BadManifest {
        reference: image.to_string(),
        problem,
    })?;
    if ![MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST].contains(&found.media_type.as_str()) {
        return Err(Error::BadManifest {
            reference: image.to_string(),
            problem: format!(
                "the linux/{arch} entry is a `{}`, not an image manifest",
                found.media_type
            ),
        });
    }
    Ok(found)
}

enum Challenge {
    Bearer(BTreeMap<String, String>),
    Basic,
}

/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge::Bearer(params))
}

fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

fn hash_file_into(path: &Path, hasher: &mut Sha256) -> Result<(), Error> {
    let mut f = std::fs::File::open(path).map_err(io_err("read", path))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// `dir/<hex>` for a digest.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(digest.strip_prefix("sha256:").unwrap_or(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_reads_both_forms_and_never_prints_a_password() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("robot:s3cret:with:colons");
        let text = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{b64}"}}, "https://index.docker.io/v1/": {{"username": "u", "password": "hunter2"}}}}}}"#
        );
        let c = Credentials::parse("auth.json", &text).unwrap();
        assert_eq!(c.hosts(), ["docker.io", "quay.io"]);
        let (u, p) = c.for_host("quay.io").unwrap();
        assert_eq!((u.as_str(), p.expose()), ("robot", "s3cret:with:colons"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn bad_auth_files_name_the_entry_not_the_value() {
        for (text, why) in [
            (
                "{\"auths\": {\"quay.io\": {\"auth\": \"!!!\"}}}",
                "the `auth` of quay.io is not base64",
            ),
            ("{\"auths\": {\"quay.io\": {}}}", "quay.io has neither"),
            ("[1]", "not JSON of the containers-auth.json form"),
        ] {
            let e = Credentials::parse("f.json", text).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
            assert!(e.contains("f.json"), "{e}");
        }
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("nocolonpassword");
        let e = Credentials::parse(
            "f",
            &format!("{{\"auths\": {{\"q.io\": {{\"auth\": \"{b64}\"}}}}}}"),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("nocolonpassword"), "{e}");
    }

    #[test]
    fn bearer_challenges_parse_with_quotes_and_commas() {
        let Some(Challenge::Bearer(p)) = parse_challenge(
            r#"Bearer realm="https://auth.example/token?x=1",service="registry.example",scope="repository:a/b:pull,push""#,
        ) else {
            panic!("not bearer")
        };
        assert_eq!(p["realm"], "https://auth.example/token?x=1");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn mirrors_are_host_equals_root_url() {
        assert_eq!(
            parse_mirror("quay.io=http://127.0.0.1:5000/").unwrap(),
            ("quay.io".to_string(), "http://127.0.0.1:5000".to_string())
        );
        for bad in [
            "quay.io",
            "quay.io=ftp://x",
            "quay.io=https://m/v2",
            "=https://m",
        ] {
            assert!(parse_mirror(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arm64_takes_v8_or_no_variant_and_names_what_exists() {
        let e = |arch: &str, variant: Option<&str>| IndexEntry {
            media_type: MEDIA_OCI_MANIFEST.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_string),
            }),
        };
        let img = ImageRef::parse("quay.io/a/b:1").unwrap();
        let entries = [e("arm", Some("v7")), e("arm64", Some("v8"))];
        assert!(choose_platform(&img, &entries, "arm64").is_ok());
        let err = choose_platform(&img, &entries, "amd64")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux/arm/v7") && err.contains("linux/arm64/v8"),
            "{err}"
        );
    }
}
