//! Downloads that hash while they write: one pass over the bytes, into `NAME.part`, resumed with
//! HTTP Range after a cut, retried with backoff on connection errors and 5xx, verified against
//! the published SHA-256 before an atomic rename. A file already in place with the right hash is
//! not downloaded again.

use crate::error::{Error, Result};
use crate::host::HostFs;
use crate::steps::{LogReporter, Reporter};
use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Downloader {
    client: reqwest::Client,
    no_redirect: reqwest::Client,
    retries: u32,
    delay: Duration,
    /// Told each download's progress (the terminal draws a bar).
    reporter: Arc<dyn Reporter>,
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
    pub fn new(retries: u32, delay: Duration) -> Self {
        let build = |redirects| {
            reqwest::Client::builder()
                .user_agent(concat!("foreman-box/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(20))
                .read_timeout(Duration::from_secs(60))
                .redirect(redirects)
                .build()
                .expect("TLS backend initialises")
        };
        Downloader {
            client: build(reqwest::redirect::Policy::limited(10)),
            no_redirect: build(reqwest::redirect::Policy::none()),
            retries,
            delay,
            reporter: Arc::new(LogReporter),
        }
    }

    /// The same downloader, telling `reporter` its progress.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.reporter = reporter;
        self
    }

    /// A small text document (checksum lists), with retries.
    pub async fn text(&self, url: &str) -> Result<String> {
        self.with_retries(url, || async {
            let resp = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| download_err(url, e))?;
            let resp = check_status(url, resp)?;
            resp.text().await.map_err(|e| download_err(url, e))
        })
        .await
    }

    /// The target of a redirect (the k3s channel service answers with one).
    pub async fn redirect_target(&self, url: &str) -> Result<String> {
        self.with_retries(url, || async {
            let resp = self
                .no_redirect
                .get(url)
                .send()
                .await
                .map_err(|e| download_err(url, e))?;
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
        let mut request = self.client.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let resp = request.send().await.map_err(|e| download_err(url, e))?;
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
        // Bytes are hashed as they arrive and written on a thread of their own, so hashing,
        // writing and the network read overlap: one pass, at about the speed of the slowest.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let part_owned = part.to_path_buf();
        let sink = tokio::task::spawn_blocking(move || -> Result<()> {
            // Chunks arrive at about 100 KiB or more: written as they are, without another copy.
            let mut out = file;
            while let Some(chunk) = rx.blocking_recv() {
                out.write_all(&chunk)
                    .map_err(|e| write_err(&part_owned, e))?;
            }
            // No fsync: every use of a downloaded file checks its hash first (`fetch` on entry,
            // the k3s step's plan), so a file torn by a power cut is fetched again, never used.
            // Flushing 500 MB here would cost more than the download itself on loopback.
            out.flush().map_err(|e| write_err(&part_owned, e))
        });
        let mut stream = resp.bytes_stream();
        let mut received = Ok(());
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    received = Err(download_err(url, e));
                    break;
                }
            };
            let len = chunk.len() as u64;
            have += len;
            hasher.update(&chunk);
            if tx.send(chunk).await.is_err() {
                break; // the sink failed; its error is reported below
            }
            bar.advance(len);
        }
        drop(tx);
        // What arrived is on disk before we report a cut, so the next attempt resumes after it.
        sink.await.expect("download sink does not panic")?;
        received?;
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
                    tracing::warn!(url, attempt = tries, wait_ms = wait.as_millis() as u64, error = %e, "download failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Parses a `sha256sum` listing into (file name, hash) pairs.
pub fn parse_sha256sums(text: &str) -> Vec<(String, String)> {
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

fn retryable(e: &Error) -> bool {
    match e {
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

fn download_err(url: &str, source: reqwest::Error) -> Error {
    Error::Download {
        url: url.to_string(),
        source: source.without_url(),
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
