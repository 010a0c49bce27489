//! The installer's one error type. Variants name the object and its path or URL; causes live in
//! `#[source]` only, so the CLI prints each once.

use crate::config::ConfigError;
use crate::host::HostError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("download of {url} failed")]
    Download {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}\nhelp: check --k3s-release-url and --k3s-version; the release may not exist on that server")]
    HttpStatus { url: String, status: u16 },
    #[error("checksum mismatch for {file}: expected sha256 {expected}, downloaded data has {actual} (from {url}); nothing was installed\nhelp: re-run to download again; if it repeats, the mirror serves a different file than its sha256sum list")]
    ChecksumMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
        url: String,
    },
    #[error("{url} has no entry for `{asset}`\nhelp: is {version} a release that ships {asset}?")]
    NoChecksum {
        url: String,
        asset: String,
        version: String,
    },
    #[error("could not resolve k3s channel `{channel}` through {url}: {problem}\nhelp: pass --k3s-version to pin a release instead")]
    Channel {
        channel: String,
        url: String,
        problem: String,
    },
    #[error("preflight failed:\n{report}")]
    Preflight { report: String },
    #[error("k3s did not become ready within {timeout_secs}s\n{diagnosis}\nhelp: fix what the journal shows, then re-run `foreman-box install`")]
    K3sNotReady {
        timeout_secs: u64,
        diagnosis: String,
    },
    #[error("step `{step}` did not converge: after applying it still wants to {changes}\nhelp: this is a bug in foreman-box; please report it with the output of `foreman-box plan`")]
    NotConverged { step: &'static str, changes: String },
    #[error(transparent)]
    Postgres(#[from] crate::postgres_error::PostgresError),
    #[error("cannot render {what}")]
    Render {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{} exists and is not a directory; nothing was changed\nhelp: move it out of the way, or choose another directory with --pulp-dir", path.display())]
    NotADirectory { path: PathBuf },
    #[error("unknown step `{name}`\nhelp: steps are {known}")]
    UnknownStep { name: String, known: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
