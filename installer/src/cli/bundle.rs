//! `foreman-box images` and `foreman-box bundle create|verify`: the image table as the operator
//! renders it, and the offline bundle (format and checks in `foreman_box_bundle::archive`).

use super::{ConfigFlags, Output};
use crate::config::Layers;
use crate::download::Downloader;
use crate::facts::Arch;
use crate::host::HostFs;
use crate::steps::k3s::{asset_url, Assets};
use crate::steps::{ProgressHandle, Reporter};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use foreman_box_bundle::archive::Bundle;
use foreman_box_bundle::create::{self, Inputs, K3sFiles};
use foreman_box_bundle::progress::{Bar, Progress};
use foreman_box_bundle::registry::{self, Credentials};
use foreman_operator::images::{Component, Table, TABLE_PATH};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// A registry credentials file in the containers-auth.json form, whole, in the environment.
pub const REGISTRY_AUTH_ENV: &str = "FOREMAN_BOX_REGISTRY_AUTH";

#[derive(Args, Debug, Clone)]
pub(super) struct ImagesArgs {
    /// Only this release stream (e.g. 3.18) [default: every stream of the table].
    #[arg(long, value_name = "X.Y")]
    stream: Option<String>,
    /// `json`: {"table", "streams": {"X.Y": [{"component", "reference", "repository", "tag",
    /// "digest", "pinned", "needed_by", "source"}]}, "unpinned": [...]}.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

#[derive(Subcommand, Debug, Clone)]
pub(super) enum BundleCommand {
    /// Make one file that installs Foreman with no network: foreman-box, its scripts, k3s and
    /// its airgap images, every pinned image of one platform, a manifest and SHA256SUMS.
    /// Continues where a cut run stopped (its work directory sits beside FILE).
    Create(CreateArgs),
    /// Check every byte of a bundle; exit 1 naming the member that is wrong.
    Verify {
        file: PathBuf,
        /// `json`: the bundle's manifest.json.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
}

#[derive(Args, Debug, Clone)]
pub(super) struct CreateArgs {
    /// The bundle to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The platform of the target host: amd64 or arm64.
    #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
    arch: String,
    /// The Foreman release stream whose images to carry [default: the Foreman resource's
    /// default].
    #[arg(long, value_name = "X.Y")]
    stream: Option<String>,
    /// An image table to use instead of the built-in one (the form of operator/images.json).
    #[arg(long, value_name = "FILE")]
    images: Option<PathBuf>,
    /// Take what the tag names now for an image whose digest the table lacks (the manifest
    /// records each as unpinned, with the digest it got).
    #[arg(long)]
    resolve_unpinned: bool,
    /// Fetch a registry's images from a mirror: HOST=URL, e.g.
    /// quay.io=https://mirror.example.com:5000 (repeatable).
    #[arg(long, value_name = "HOST=URL", value_parser = registry::parse_mirror)]
    registry_mirror: Vec<(String, String)>,
    /// Registry credentials, containers-auth.json form (podman's auth.json, docker's
    /// config.json). The whole file may instead be given in FOREMAN_BOX_REGISTRY_AUTH.
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    registry_auth_file: Option<PathBuf>,
    /// The foreman-box to put in the bundle [default: this one]; must be static and built for
    /// --arch.
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    settings: ConfigFlags,
}

impl BundleCommand {
    pub(super) fn verbose(&self) -> u8 {
        match self {
            BundleCommand::Create(a) => a.verbose,
            BundleCommand::Verify { .. } => 0,
        }
    }
    pub(super) fn output(&self) -> Output {
        match self {
            BundleCommand::Create(_) => Output::Human,
            BundleCommand::Verify { output, .. } => *output,
        }
    }
}

/// `foreman-box images`.
pub(super) fn images(args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let table = Table::builtin();
    let streams: Vec<&String> = match &args.stream {
        Some(s) => vec![table
            .streams
            .get_key_value(s)
            .map(|(k, _)| k)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the image table has no stream {s}\nhelp: it has {}",
                    table.streams.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?],
        None => table.streams.keys().collect(),
    };
    let mut unpinned = Vec::new();
    let mut doc = BTreeMap::new();
    for s in &streams {
        let rows: Vec<serde_json::Value> = Component::ALL
            .iter()
            .map(|c| {
                let pin = table
                    .pin(s, *c)
                    .expect("a checked table has every component");
                if !pin.is_pinned() {
                    unpinned.push(pin.reference());
                }
                serde_json::json!({
                    "component": c.name(),
                    "reference": pin.reference(),
                    "repository": pin.repository,
                    "tag": pin.tag,
                    "digest": pin.digest,
                    "pinned": pin.is_pinned(),
                    "needed_by": c.needed_by(),
                    "source": pin.source,
                })
            })
            .collect();
        doc.insert(s.to_string(), rows);
    }
    unpinned.sort();
    unpinned.dedup();
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "table": TABLE_PATH,
                "streams": doc,
                "unpinned": unpinned,
            }))?
        ),
        Output::Human => {
            for (s, rows) in &doc {
                println!("{s}");
                for r in rows {
                    let mark = if r["pinned"] == true {
                        ""
                    } else {
                        "  (no digest yet: renders by tag)"
                    };
                    println!(
                        "  {:<14} {}{mark}",
                        r["component"].as_str().unwrap_or_default(),
                        r["reference"].as_str().unwrap_or_default()
                    );
                }
            }
            if !unpinned.is_empty() {
                println!(
                    "{} have no digest yet; run scripts/pin-images.sh on a machine that reaches the registries to record them in {TABLE_PATH}",
                    super::display::count(unpinned.len(), "image")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `foreman-box bundle ...`.
pub(super) async fn run(
    command: BundleCommand,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    match command {
        BundleCommand::Verify { file, output } => {
            let bundle = Bundle::open(&file, &ReporterProgress(reporter))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(bundle.manifest())?),
                Output::Human => {
                    let m = bundle.manifest();
                    println!(
                        "{}: every member is intact: foreman-box {}, k3s {}, {} images of Foreman {} for linux/{}",
                        file.display(),
                        m.foreman_box_version,
                        m.k3s.version,
                        m.images.len(),
                        m.stream,
                        m.arch
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Create(args) => create_bundle(args, reporter).await,
    }
}

async fn create_bundle(args: CreateArgs, reporter: Arc<dyn Reporter>) -> anyhow::Result<ExitCode> {
    let config = Layers::new()
        .with_process_env()?
        .with_flags(args.settings.values.clone())?
        .resolve()?;
    let fs = HostFs;
    let table = match &args.images {
        None => Table::builtin().clone(),
        Some(path) => {
            let text = fs
                .read_string(path)?
                .ok_or_else(|| anyhow::anyhow!("{} does not exist", path.display()))?;
            Table::parse(&path.display().to_string(), &text)?
        }
    };
    let credentials = credentials(&fs, args.registry_auth_file.as_deref())?;
    let inputs = Inputs {
        output: args.output.clone(),
        arch: args.arch.clone(),
        stream: args
            .stream
            .clone()
            .unwrap_or_else(foreman_operator::crd::default_version),
        table,
        resolve_unpinned: args.resolve_unpinned,
        binary: args
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe")),
        foreman_box_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    // Everything that can be refused without the network is refused first.
    let pins = create::images_of(&inputs)?;
    let work = create::prepare(&inputs)?;
    let progress = ReporterProgress(reporter.clone());

    // k3s: the installer's downloader, the release URL of the configuration.
    let downloader = Downloader::new(&config.downloads).with_reporter(reporter.clone());
    let version = config.k3s.version.clone();
    let assets = Assets::for_arch(&Arch::from_uname(&args.arch));
    let base = config.k3s.release_url.clone();
    let k3s_dir = work.join("k3s");
    let sums_url = asset_url(&base, &version, &assets.sums);
    let sums_path = k3s_dir.join(&assets.sums);
    let (sums_text, sums) = downloader.checksums(&fs, &sums_path, &sums_url).await?;
    fs.write_atomic(&sums_path, sums_text.as_bytes(), 0o644)?;
    let mut k3s_files = Vec::new();
    for asset in [&assets.binary, &assets.airgap] {
        let sha = sums
            .iter()
            .find(|(n, _)| n == asset)
            .map(|(_, h)| h.clone())
            .ok_or_else(|| crate::error::Error::NoChecksum {
                url: sums_url.clone(),
                asset: asset.clone(),
                version: version.clone(),
            })?;
        let dest = k3s_dir.join(asset);
        downloader
            .fetch(&fs, &asset_url(&base, &version, asset), &dest, &sha)
            .await?;
        k3s_files.push((asset.clone(), dest, sha));
    }
    let airgap = k3s_files.pop().expect("two assets");
    let binary = k3s_files.pop().expect("two assets");
    let k3s = K3sFiles {
        version,
        binary,
        sums: (assets.sums.clone(), sums_path),
        airgap_images: airgap,
    };

    let client = registry::Client::new(registry::Options {
        mirrors: args.registry_mirror.iter().cloned().collect(),
        credentials,
        connect_timeout: std::time::Duration::from_secs(config.downloads.connect_timeout_secs),
        timeout: std::time::Duration::from_secs(config.downloads.timeout_secs),
        retries: config.downloads.retries,
        retry_delay: std::time::Duration::from_millis(config.downloads.retry_delay_ms),
    });
    let images = create::fetch_images(&client, &pins, &inputs.arch, &work, &progress).await?;
    let made = create::assemble(&inputs, &k3s, &images, &work, &progress)?;
    let unpinned = made.manifest.images.iter().filter(|i| !i.pinned).count();
    println!(
        "{}: {} bytes, SHA-256 {}\n  foreman-box {}, k3s {}, {} images of Foreman {} for linux/{}{}",
        made.path.display(),
        made.size,
        made.sha256,
        made.manifest.foreman_box_version,
        made.manifest.k3s.version,
        made.manifest.images.len(),
        made.manifest.stream,
        made.manifest.arch,
        if unpinned > 0 {
            format!(" ({unpinned} taken by tag: the table had no digest)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Credentials from `--registry-auth-file`/REGISTRY_AUTH_FILE, else the whole file in
/// FOREMAN_BOX_REGISTRY_AUTH, else none (anonymous pulls, as quay.io/foreman allows).
fn credentials(fs: &HostFs, file: Option<&Path>) -> anyhow::Result<Credentials> {
    if let Some(path) = file {
        let text = fs.read_string(path)?.ok_or_else(|| {
            anyhow::anyhow!(
                "the registry credentials file {} does not exist\nhelp: give an existing file with --registry-auth-file (or REGISTRY_AUTH_FILE), or neither for anonymous pulls",
                path.display()
            )
        })?;
        return Credentials::parse(&path.display().to_string(), &text)
            .context("reading registry credentials");
    }
    match std::env::var(REGISTRY_AUTH_ENV) {
        Ok(text) if !text.trim().is_empty() => Ok(Credentials::parse(REGISTRY_AUTH_ENV, &text)?),
        _ => Ok(Credentials::default()),
    }
}

/// The bundle's progress drawn by the installer's reporter (bars on a terminal, log lines
/// otherwise).
pub(super) struct ReporterProgress(pub(super) Arc<dyn Reporter>);

struct HandleBar(Box<dyn ProgressHandle>);

impl Progress for ReporterProgress {
    fn start(&self, what: &str, total: Option<u64>) -> Box<dyn Bar> {
        Box::new(HandleBar(self.0.download(what, total)))
    }
}

impl Bar for HandleBar {
    fn advance(&mut self, n: u64) {
        self.0.advance(n);
    }
    fn finish(&mut self) {
        self.0.finish();
    }
}
