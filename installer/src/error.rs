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
    #[error("cannot reach the download server for {url} ({reason}); not retried\nhelp: a host without internet can install from a mirror on its network (--k3s-release-url URL, laid out like GitHub's releases/download) or from airgap assets placed in /var/lib/foreman-box/cache/k3s/VERSION/")]
    Unreachable {
        url: String,
        reason: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("download of {url} stalled: {what}\nhelp: check the network and the server; for a slow link raise downloads.timeout_secs (now {secs}s), or use a mirror nearer to this host with --k3s-release-url")]
    Stalled {
        url: String,
        what: String,
        secs: u64,
    },
    #[error("checksum list {url} is not usable: {problem}\nhelp: the server's sha256sum file must have one `HASH  NAME` line per asset; check the mirror")]
    BadChecksumList { url: String, problem: String },
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
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    DayTwo(#[from] crate::backup::DayTwoError),
    #[error("unknown step `{name}`\nhelp: steps are {known}")]
    UnknownStep { name: String, known: String },
    #[error("{path} is dynamically linked (it needs {interpreter}), so it cannot be the operator's image, which holds nothing but this binary; nothing was written\nhelp: build the static binary with `{build}` and run `target/static/foreman-box install`")]
    DynamicallyLinked {
        path: String,
        interpreter: String,
        build: &'static str,
    },
    #[error("{path} is not a usable copy of Secret foreman/{name}: {problem}; nothing was changed\nhelp: restore the file from a backup: it holds the values the kept databases were made with (remove it only if those databases are gone too; foreman-box then makes new values)")]
    KeptSecret {
        path: String,
        name: String,
        problem: String,
    },
    #[error("cannot generate {what}\nhelp: this is a bug in foreman-box; please report it with the output of `foreman-box plan`")]
    Generate {
        what: String,
        #[source]
        source: foreman_operator::Error,
    },
    #[error("cannot make the operator image from {path}")]
    NotAnImage {
        path: String,
        #[source]
        source: foreman_box_bundle::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
