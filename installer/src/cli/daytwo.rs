//! The day-two commands' glue: arguments to options, the one-run lock, and what is printed.
//! The work is in `backup`, `health`, `support` and `upgrade`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use super::display::Display;
use super::{lock, prepare, Output, RunArgs};
use crate::backup::{self, restore, BackupOptions};
use crate::health::{self, HealthOptions};
use crate::steps::{self, Reporter};
use crate::upgrade::{self, UpgradeOptions};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub(super) struct BackupArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Directory the backup goes into, as `foreman-box-backup-<time>/` [default:
    /// /var/backups/foreman-box under the root].
    pub dir: Option<PathBuf>,
    /// Write one `foreman-box-backup-<time>.tar.zst` instead of a directory.
    #[arg(long)]
    pub archive: bool,
    /// Wait for running Foreman and Pulp tasks to finish instead of refusing.
    #[arg(long)]
    pub wait_for_tasks: bool,
    /// Seconds to wait for tasks with --wait-for-tasks.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub tasks_timeout: u64,
    /// Do not put Foreman into maintenance: only when nothing writes (k3s and its pods stopped).
    #[arg(long)]
    pub no_maintenance: bool,
    /// Seconds to wait for the operator to report maintenance reached.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub maintenance_timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub(super) struct RestoreArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The backup: the directory `foreman-box backup` wrote, or its .tar.zst.
    pub backup: PathBuf,
    /// Check everything (checksums, metadata against this host, dumps readable) and change nothing.
    #[arg(long)]
    pub validate: bool,
    /// Replace what this host has (kept beside as *.before-restore-<time>; databases dropped).
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the operator to report maintenance reached.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub maintenance_timeout: u64,
}

#[derive(Args, Debug, Clone)]
pub(super) struct HealthArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// `json`: one document on stdout, {"healthy", "checks": [{"name","status","summary","details","help"}]}.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Foreman's URL for /api/v2/ping [default: https://<hostname>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub(super) struct SupportArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Where to write the bundle [default: /var/tmp/foreman-box-support-<time>.tar.zst under
    /// the root].
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Foreman's URL for the health check's ping [default: https://<hostname>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub(super) struct UpgradeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The release stream to move to [default: the next one]; one stream at a time.
    #[arg(long, value_name = "X.Y")]
    pub to: Option<String>,
    /// Upgrade without a backup younger than a day.
    #[arg(long)]
    pub skip_backup: bool,
    /// Foreman's URL for the health check's ping [default: https://<hostname>].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

pub(super) async fn backup(
    args: BackupArgs,
    display: Display,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    let (cx, _) = prepare(&args.run, reporter)?;
    let _one_run = lock(&cx)?;
    let opts = BackupOptions {
        parent: args.dir.clone(),
        archive: args.archive,
        wait_for_tasks: args.wait_for_tasks,
        tasks_timeout: Duration::from_secs(args.tasks_timeout),
        maintenance: !args.no_maintenance,
        maintenance_timeout: Duration::from_secs(args.maintenance_timeout),
    };
    let r = backup::backup(&cx, &opts).await?;
    let bytes: u64 = r.files.values().sum();
    display.line(&format!(
        "Backup written: {} ({} files, {}){}",
        r.path.display(),
        r.files.len() + 1,
        human_bytes(bytes),
        if r.maintenance {
            ", taken in maintenance"
        } else {
            ""
        }
    ));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn restore(
    args: RestoreArgs,
    display: Display,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    let (cx, _) = prepare(&args.run, reporter.clone())?;
    let stream = restore::host_stream(&cx).await;
    let checked = restore::validate(&cx, &args.backup, &stream)?;
    if args.validate {
        for line in &checked.report {
            display.line(&format!("ok: {line}"));
        }
        display.line(&format!(
            "{} is a valid backup of {} (Foreman {}, made {}); nothing was changed",
            args.backup.display(),
            checked.metadata.hostname,
            checked.metadata.stream,
            checked.metadata.created
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let opts = restore::RestoreOptions {
        force: args.force,
        maintenance_timeout: Duration::from_secs(args.maintenance_timeout),
    };
    let _one_run = lock(&cx)?;
    restore::restore_config(&cx, &checked, &opts).await?;
    // The restored configuration decides the rest (PostgreSQL mode, directories).
    let (cx, install) = prepare(&args.run, reporter)?;
    if install.iter().any(|s| s.name() == "operator") {
        steps::operator::require_static(&cx.host)?;
    }
    restore::restore_data(&cx, &checked, &opts, &install).await?;
    display.line(&format!(
        "Restored {} from {} (Foreman {}, made {}).",
        checked.metadata.hostname,
        args.backup.display(),
        checked.metadata.stream,
        checked.metadata.created
    ));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn health(
    args: HealthArgs,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    let (cx, _) = prepare(&args.run, reporter)?;
    let report = health::check(&cx, &HealthOptions { url: args.url }).await;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", health::render(&report));
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn support_bundle(
    args: SupportArgs,
    display: Display,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    let (cx, _) = prepare(&args.run, reporter)?;
    let report = health::check(&cx, &HealthOptions { url: args.url }).await;
    let health = serde_json::to_string_pretty(&report)?;
    let out = match args.file {
        Some(f) => f,
        None => {
            let dir = cx.host.path("/var/tmp");
            cx.host.fs().ensure_dir(&dir, 0o1777)?;
            let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
            dir.join(format!("foreman-box-support-{stamp}.tar.zst"))
        }
    };
    let r = crate::support::collect(&cx, &out, Some(health)).await?;
    display.line(&format!(
        "Support bundle written: {} ({} items collected, {} failed{}; {} secret values redacted). Read collection.tsv and redaction.txt inside before sending it.",
        r.path.display(),
        r.collected,
        r.failed,
        if r.cluster_reachable {
            ""
        } else {
            ", the cluster could not be read: host part only"
        },
        r.redacted
    ));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn upgrade(
    args: UpgradeArgs,
    display: Display,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<ExitCode> {
    let (cx, _) = prepare(&args.run, reporter)?;
    let _one_run = lock(&cx)?;
    let opts = UpgradeOptions {
        to: args.to,
        skip_backup: args.skip_backup,
        health: HealthOptions { url: args.url },
    };
    match upgrade::upgrade(&cx, &opts).await? {
        None => {
            display.line("Foreman is on the newest stream foreman-box knows: nothing to upgrade.")
        }
        Some(d) => {
            display.line(&format!("Upgraded Foreman {} → {}:", d.from, d.to));
            for c in &d.changes {
                display.line(&format!("  {c}"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
