//! Downloads that hash while they write: one pass over the bytes, into `NAME.part`, resumed with
//! HTTP Range after a cut, retried with backoff on connection errors and 5xx, verified against
//! the published SHA-256 before an atomic rename. A file already in place with the right hash is
//! not downloaded again.

use crate::error::{Error, Result};
use crate::host::{Finished, HostFs, Sink};
use crate::report::{LogReporter, ProgressHandle, Reporter};
use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The least a download must sustain: fewer bytes than this per second, averaged over a window
/// of `downloads.timeout_secs` (30 s by default), and the attempt fails as stalled. 1 KiB/s is
/// far below any usable link (a 70 MB k3s binary would take 19 hours), so only a dead or
/// trickling server trips it.
pub(crate) const MIN_BYTES_PER_SEC: u64 = 1024;

#[derive(Clone)]
pub struct Downloader {
    /// Built on first use: building one loads and parses every CA certificate of the host
    /// (a few ms each time), which a converged run, needing no network, never pays.
    clients: Arc<Clients>,
    retries: u32,
    delay: Duration,
    /// Time to the first byte of an answer (and the whole of a small document); the window of
    /// the minimum throughput.
    timeout: Duration,
    /// Told each download's progress (the terminal draws a bar).
    reporter: Arc<dyn Reporter>,
}

/// The HTTP clients of a downloader, made when first needed.
struct Clients {
    connect_timeout: Duration,
    read_timeout: Duration,
    follow: OnceLock<reqwest::Client>,
    no_redirect: OnceLock<reqwest::Client>,
}

impl Clients {
    fn build(&self, redirects: reqwest::redirect::Policy) -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(concat!("foreman-box/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .redirect(redirects)
            .build()
            .expect("TLS backend initialises")
    }
}

/// One attempt's receiving side: it takes the response's chunks until the stream ends, fails or
/// stalls.
struct Receiving {
    url: String,
    /// The bytes in the file so far, or soon (the sink has them).
    have: u64,
    bar: Box<dyn ProgressHandle>,
    sink: Sink,
    /// The throughput guard's window: every one must bring MIN_BYTES_PER_SEC.
    window: Duration,
}

/// What `Receiving::run` ends with; `ended` tells whether the stream ended whole.
struct Received {
    have: u64,
    bar: Box<dyn ProgressHandle>,
    sink: Sink,
    ended: Result<()>,
}

impl Receiving {
    async fn run(
        mut self,
        mut stream: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    ) -> Received {
        let window = self.window;
        let window_min = MIN_BYTES_PER_SEC.saturating_mul(window.as_secs().max(1));
        let mut window_end = tokio::time::Instant::now() + window;
        let mut window_bytes = 0u64;
        let mut ended = Ok(());
        loop {
            let next = tokio::time::timeout_at(window_end, stream.next()).await;
            let now = tokio::time::Instant::now();
            let chunk = match next {
                Err(_) => None,
                Ok(None) => break,
                Ok(Some(Ok(c))) => Some(c),
                Ok(Some(Err(e))) => {
                    ended = Err(download_err(&self.url, e));
                    break;
                }
            };
            if let Some(c) = &chunk {
                window_bytes += c.len() as u64;
            }
            if now >= window_end {
                if window_bytes < window_min {
                    ended = Err(stalled(
                        &self.url,
                        format!(
                            "{window_bytes} bytes in the last {}s, below the minimum of {MIN_BYTES_PER_SEC} bytes/s",
                            window.as_secs()
                        ),
                        window,
                    ));
                    break;
                }
                window_end = now + window;
                window_bytes = 0;
            }
            let Some(chunk) = chunk else { continue };
            let len = chunk.len() as u64;
            self.have += len;
            if !self.sink.push(&chunk).await {
                break; // the writer failed; `finish` reports why
            }
            self.bar.advance(len);
        }
        Received {
            have: self.have,
            bar: self.bar,
            sink: self.sink,
            ended,
        }
    }
}

/// A spawned task that is aborted when its handle is dropped (the attempt was given up).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> T {
        (&mut self.0)
            .await
            .expect("a download's receiving task does not panic")
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the expected hash of a download came from: a checksum list, maybe cached.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// The list on the server.
    pub url: String,
    /// Our cached copy of it.
    pub cache: PathBuf,
    /// The asset's name in the list.
    pub asset: String,
}

/// What `fetch` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The file was already there with the expected hash.
    Cached,
    Downloaded {
        bytes: u64,
    },
}

impl Downloader {
    pub fn new(cfg: &crate::config::DownloadConfig) -> Self {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        Downloader {
            clients: Arc::new(Clients {
                connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
                // A backstop: no single read waits longer than the window; the throughput
                // guard in `fetch_once` catches a server that trickles.
                // (twice the window, so the clearer errors of the guards come first).
                read_timeout: timeout.saturating_mul(2),
                follow: OnceLock::new(),
                no_redirect: OnceLock::new(),
            }),
            retries: cfg.retries,
            delay: Duration::from_millis(cfg.retry_delay_ms),
            timeout,
            reporter: Arc::new(LogReporter),
        }
    }

    /// The client that follows redirects (release assets sit behind them).
    fn client(&self) -> &reqwest::Client {
        let c = &self.clients;
        c.follow
            .get_or_init(|| c.build(reqwest::redirect::Policy::limited(10)))
    }

    /// The client that reports a redirect instead of following it (channel resolution).
    fn no_redirect(&self) -> &reqwest::Client {
        let c = &self.clients;
        c.no_redirect
            .get_or_init(|| c.build(reqwest::redirect::Policy::none()))
    }

    /// The same downloader, telling `reporter` its progress.
    pub(crate) fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.reporter = reporter;
        self
    }

    /// Sends a request; its answer's headers must arrive within the timeout.
    async fn send(&self, url: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(r) => r.map_err(|e| download_err(url, e)),
            Err(_) => {
                Err(self.stalled(url, format!("no answer within {}s", self.timeout.as_secs())))
            }
        }
    }

    fn stalled(&self, url: &str, what: String) -> Error {
        stalled(url, what, self.timeout)
    }

    /// A small text document (checksum lists), with retries; the whole of it within the timeout.
    pub(crate) async fn text(&self, url: &str) -> Result<String> {
        self.with_retries(url, || async {
            let resp = self.send(url, self.client().get(url)).await?;
            let resp = check_status(url, resp)?;
            match tokio::time::timeout(self.timeout, resp.text()).await {
                Ok(t) => t.map_err(|e| download_err(url, e)),
                Err(_) => Err(self.stalled(
                    url,
                    format!(
                        "the document did not arrive within {}s",
                        self.timeout.as_secs()
                    ),
                )),
            }
        })
        .await
    }

    /// A checksum list: our cached copy when it is well-formed, else (missing, unreadable,
    /// a malformed line, two lines for one asset) fetched again from `url`. A list fetched that
    /// fails the same checks is an error. Returns the text and its (name, hash) pairs.
    pub(crate) async fn checksums(
        &self,
        fs: &HostFs,
        cache: &Path,
        url: &str,
    ) -> Result<(String, Vec<(String, String)>)> {
        if let Some(text) = fs.read_string(cache)? {
            match parse_sha256sums_strict(&text) {
                Ok(sums) => return Ok((text, sums)),
                Err(problem) => tracing::warn!(
                    cache = %cache.display(),
                    problem = %problem,
                    "cached checksum list is not usable; fetching it again"
                ),
            }
        }
        let text = self.text(url).await?;
        let sums = parse_sha256sums_strict(&text).map_err(|problem| Error::BadChecksumList {
            url: url.to_string(),
            problem,
        })?;
        Ok((text, sums))
    }

    /// Like `fetch`, for a file whose hash comes from a (maybe cached) checksum list: when the
    /// download does not match and the list came from our cache, the cached list is removed and
    /// fetched again, and the download is tried against the fresh hash. A poisoned cache can so
    /// never win for good.
    pub(crate) async fn fetch_listed(
        &self,
        fs: &HostFs,
        url: &str,
        dest: &Path,
        expected: &str,
        list: &Listed,
    ) -> Result<Fetched> {
        let first = self.fetch(fs, url, dest, expected).await;
        let Err(Error::ChecksumMismatch { .. }) = &first else {
            return first;
        };
        if !fs.exists(&list.cache) {
            return first;
        }
        fs.remove_file(&list.cache)?;
        let text = self.text(&list.url).await?;
        let sums = parse_sha256sums_strict(&text).map_err(|problem| Error::BadChecksumList {
            url: list.url.clone(),
            problem,
        })?;
        let Some((_, fresh)) = sums.iter().find(|(n, _)| *n == list.asset) else {
            return first;
        };
        if fresh == expected {
            return first; // the list is right; the server's file is not
        }
        tracing::warn!(
            cache = %list.cache.display(),
            asset = %list.asset,
            "the cached checksum list disagreed with the server's; fetched it again"
        );
        fs.write_atomic(&list.cache, text.as_bytes(), 0o644)?;
        self.fetch(fs, url, dest, fresh).await
    }

    /// The target of a redirect (the k3s channel service answers with one).
    pub(crate) async fn redirect_target(&self, url: &str) -> Result<String> {
        self.with_retries(url, || async {
            let resp = self.send(url, self.no_redirect().get(url)).await?;
            if !resp.status().is_redirection() {
                return Err(Error::HttpStatus {
                    url: url.to_string(),
                    status: resp.status().as_u16(),
                });
            }
            resp.headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| Error::HttpStatus {
                    url: url.to_string(),
                    status: resp.status().as_u16(),
                })
        })
        .await
    }

    /// Makes `dest` hold the file at `url` whose SHA-256 is `expected`.
    pub async fn fetch(
        &self,
        fs: &HostFs,
        url: &str,
        dest: &Path,
        expected: &str,
    ) -> Result<Fetched> {
        if fs.sha256(dest)?.as_deref() == Some(expected) {
            tracing::info!(file = %dest.display(), "already downloaded, checksum matches");
            return Ok(Fetched::Cached);
        }
        let part = part_path(dest);
        let started = Instant::now();
        let bytes = self
            .with_retries(url, || self.fetch_once(fs, url, &part))
            .await?;
        let actual = bytes.1;
        if actual != expected {
            fs.remove_file(&part)?;
            return Err(Error::ChecksumMismatch {
                file: dest.to_path_buf(),
                expected: expected.to_string(),
                actual,
                url: url.to_string(),
            });
        }
        fs.rename(&part, dest)?;
        let secs = started.elapsed().as_secs_f64().max(1e-6);
        tracing::info!(
            file = %dest.display(),
            mib = bytes.0 / (1 << 20),
            mib_per_s = format!("{:.0}", bytes.0 as f64 / secs / (1u64 << 20) as f64),
            "downloaded and verified"
        );
        Ok(Fetched::Downloaded { bytes: bytes.0 })
    }

    /// One attempt: continue `part` from where it stops; returns its final size and hash.
    async fn fetch_once(&self, fs: &HostFs, url: &str, part: &Path) -> Result<(u64, String)> {
        let mut have = fs.size(part)?.unwrap_or(0);
        let mut request = self.client().get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let resp = self.send(url, request).await?;
        let status = resp.status();
        let resuming = have > 0
            && status == StatusCode::PARTIAL_CONTENT
            && content_range_start(&resp) == Some(have);
        if have > 0 && status == StatusCode::RANGE_NOT_SATISFIABLE {
            // The part may already be whole; the hash decides.
            return Ok((have, hash_file(fs, part)?));
        }
        let resp = check_status(url, resp)?;
        let mut hasher = Sha256::new();
        let file = if resuming {
            tracing::info!(url, from = have, "resuming download");
            hash_into(fs, part, &mut hasher)?;
            fs.open_append(part, 0o600)?
        } else {
            have = 0;
            fs.open_truncate(part, 0o600)?
        };
        let total = resp.content_length().map(|n| n + have);
        let mut bar = self
            .reporter
            .download(url.rsplit('/').next().unwrap_or(url), total);
        bar.advance(have);
        // The bytes are taken by a task of their own, on the runtime's one worker thread, where
        // hyper's connection task reads the socket: a chunk passes from one to the other on the
        // same thread (taken on the caller's thread, each 400 KiB chunk cost about four thread
        // wake-ups, and recv and hash took turns). The task copies each chunk into the sink's
        // block; the sink's threads hash and write whole blocks meanwhile.
        let receiving = Receiving {
            url: url.to_string(),
            have,
            bar,
            sink: Sink::start(file, have, hasher),
            window: self.timeout,
        };
        let task = AbortOnDrop(tokio::spawn(receiving.run(resp.bytes_stream())));
        let Received {
            have,
            mut bar,
            sink,
            ended,
        } = task.join().await;
        // What arrived is on disk before we report a cut, so the next attempt resumes after it.
        // No fsync: every use of a downloaded file checks its hash first (`fetch` on entry, the
        // k3s step's plan), so a file torn by a power cut is fetched again, never used.
        let Finished { hasher, written } = sink.finish().await.map_err(|e| write_err(part, e))?;
        tracing::debug!(
            file = %part.display(),
            direct = written.direct,
            through_page_cache = written.cached,
            "bytes written"
        );
        ended?;
        bar.finish();
        if let Some(total) = total {
            if have < total {
                return Err(Error::Host(crate::host::HostError::Io {
                    action: "finish download of",
                    path: part.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed early",
                    ),
                }));
            }
        }
        Ok((have, hex::encode(hasher.finalize())))
    }

    async fn with_retries<T, F, Fut>(&self, url: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if tries < self.retries && retryable(&e) => {
                    let wait = self
                        .delay
                        .saturating_mul(1 << tries.min(6))
                        .min(Duration::from_secs(30));
                    tries += 1;
                    tracing::warn!(url, attempt = tries, wait_ms = wait.as_millis() as u64, error = %error_chain(&e), "download failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Parses a `sha256sum` listing into (file name, hash) pairs.
pub(crate) fn parse_sha256sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let hash = it.next()?;
            let name = it.next()?.trim_start_matches('*');
            (hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (name.to_string(), hash.to_ascii_lowercase()))
        })
        .collect()
}

/// An error with all its causes, for a log line: `download of URL failed: error sending
/// request: connection refused`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string().lines().next().unwrap_or("").to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Lines of a `sha256sum` listing, refusing what a well-formed one never has: a malformed line
/// or two lines for the same asset.
pub(crate) fn parse_sha256sums_strict(
    text: &str,
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(hash), Some(name), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!("line {} is not `HASH  NAME`", n + 1));
        };
        let name = name.trim_start_matches('*');
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("line {} has no SHA-256 hash", n + 1));
        }
        if out.iter().any(|(seen, _)| seen == name) {
            return Err(format!("`{name}` is listed twice (line {})", n + 1));
        }
        out.push((name.to_string(), hash.to_ascii_lowercase()));
    }
    if out.is_empty() {
        return Err("it lists no files".into());
    }
    Ok(out)
}

fn retryable(e: &Error) -> bool {
    match e {
        Error::Stalled { .. } => true,
        Error::Download { source, .. } => !source.is_builder() && !source.is_redirect(),
        Error::HttpStatus { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        Error::Host(crate::host::HostError::Io { source, .. }) => {
            source.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

fn check_status(url: &str, resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(Error::HttpStatus {
            url: url.to_string(),
            status: resp.status().as_u16(),
        })
    }
}

fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

/// A request error; a name that does not resolve or a network that cannot be reached is
/// `Unreachable`: retrying it only delays the hint that matters on a host without internet.
fn download_err(url: &str, source: reqwest::Error) -> Error {
    let source = source.without_url();
    if let Some(reason) = unreachable_reason(&source) {
        return Error::Unreachable {
            url: url.to_string(),
            reason,
            source,
        };
    }
    Error::Download {
        url: url.to_string(),
        source,
    }
}

fn unreachable_reason(e: &reqwest::Error) -> Option<&'static str> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            match io.raw_os_error() {
                Some(nix::libc::ENETUNREACH) => return Some("network unreachable"),
                Some(nix::libc::EHOSTUNREACH) => return Some("no route to host"),
                _ => {}
            }
        }
        let text = c.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some("its name does not resolve");
        }
        cause = c.source();
    }
    None
}

/// A download that stalled: `what` it got within the `window` it was allowed.
fn stalled(url: &str, what: String, window: Duration) -> Error {
    Error::Stalled {
        url: url.to_string(),
        what,
        secs: window.as_secs(),
    }
}

fn write_err(path: &Path, source: std::io::Error) -> Error {
    Error::Host(crate::host::HostError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn hash_into(fs: &HostFs, path: &Path, hasher: &mut Sha256) -> Result<()> {
    let mut f = fs.open_read(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| write_err(path, e))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

fn hash_file(fs: &HostFs, path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    hash_into(fs, path, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sums_listing_parses_both_modes() {
        let h = "a".repeat(64);
        let text = format!("{h}  k3s\n{h} *k3s-arm64\nnot a line\n");
        let sums = parse_sha256sums(&text);
        assert_eq!(
            sums,
            vec![("k3s".into(), h.clone()), ("k3s-arm64".into(), h)]
        );
    }
}
