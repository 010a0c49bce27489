//! The step engine and the install order.
//!
//! Every change to the host is a step. `plan` reads the current state and records what it would
//! change and why; `apply` makes exactly those recorded changes; the engine then plans again and
//! insists on an empty plan. `foreman-box plan` runs only `plan`, so a dry run and a real run
//! cannot drift apart.

pub mod k3s;
pub mod postgres;
pub mod preflight;
pub mod storage;

use crate::config::Config;
use crate::download::Downloader;
use crate::error::{Error, Result};
use crate::facts::Facts;
use crate::host::Host;
use crate::secret::Secret;
use futures::future::BoxFuture;
use std::fmt;
use std::time::Duration;

/// The install order: one list, in one place.
pub fn install_order() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(preflight::RunPreflight),
        Box::new(k3s::InstallK3s::default()),
        Box::new(postgres::ConfigurePostgres::default()),
        Box::new(storage::PrepareStorage::default()),
    ]
}

pub fn step_names() -> Vec<&'static str> {
    install_order().iter().map(|s| s.name()).collect()
}

/// What a run may do beyond what the configuration says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write everything, start nothing (like k3s's INSTALL_K3S_SKIP_START).
    pub skip_start: bool,
    /// Preflight checks whose failure is only a warning; `all` for every one.
    pub ignore_preflight: Vec<String>,
}

/// Everything a step may look at: passed explicitly, never global.
pub struct Context {
    pub host: Host,
    pub facts: Facts,
    pub config: Config,
    pub options: RunOptions,
    pub downloader: Downloader,
    /// The external PostgreSQL admin password (from a file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD).
    pub postgres_admin_password: Option<Secret>,
}

impl Context {
    pub fn new(
        host: Host,
        facts: Facts,
        config: Config,
        options: RunOptions,
        postgres_admin_password: Option<Secret>,
    ) -> Self {
        let downloader = Downloader::new(
            config.downloads.retries,
            Duration::from_millis(config.downloads.retry_delay_ms),
        );
        Context {
            host,
            facts,
            config,
            options,
            downloader,
            postgres_admin_password,
        }
    }
}

/// One planned change, as shown to a person: what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub why: String,
}

impl Change {
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Self {
        Change {
            what: what.into(),
            why: why.into(),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.why)
    }
}

pub trait Step: Send {
    fn name(&self) -> &'static str;

    /// Compares desired and actual state; remembers and returns the changes to make.
    fn plan<'a>(&'a mut self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Change>>>;

    /// Makes the changes the last `plan` recorded.
    fn apply<'a>(&'a mut self, cx: &'a Context) -> BoxFuture<'a, Result<()>>;
}

/// What one step did or would do.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub step: &'static str,
    pub changes: Vec<Change>,
}

/// Picks the steps `--only` names, in install order.
pub fn select(only: &[String]) -> Result<Vec<Box<dyn Step>>> {
    let all = install_order();
    if only.is_empty() {
        return Ok(all);
    }
    let known = step_names();
    for name in only {
        if !known.contains(&name.as_str()) {
            return Err(Error::UnknownStep {
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|s| only.iter().any(|o| o == s.name()))
        .collect())
}

/// Plans every step without changing anything.
pub async fn plan(cx: &Context, steps: &mut [Box<dyn Step>]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps.iter_mut() {
        let changes = step.plan(cx).await?;
        reports.push(StepReport {
            step: step.name(),
            changes,
        });
    }
    Ok(reports)
}

/// Plans and applies each step in order, then checks that it converged.
pub async fn apply(cx: &Context, steps: &mut [Box<dyn Step>]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps.iter_mut() {
        let name = step.name();
        let changes = step.plan(cx).await?;
        if changes.is_empty() {
            tracing::info!(step = name, "up to date");
        } else {
            for c in &changes {
                tracing::info!(step = name, change = %c.what, why = %c.why, "applying");
            }
            step.apply(cx).await?;
            let left = step.plan(cx).await?;
            if !left.is_empty() {
                return Err(Error::NotConverged {
                    step: name,
                    changes: left
                        .iter()
                        .map(|c| c.what.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            tracing::info!(step = name, changes = changes.len(), "done");
        }
        reports.push(StepReport {
            step: name,
            changes,
        });
    }
    Ok(reports)
}

/// Desired files, compared and written the same way by every step.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    /// Absolute host path (before the host root is applied).
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

impl DesiredFile {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        DesiredFile {
            path: path.into(),
            content: content.into(),
            mode,
        }
    }

    /// The change needed to put this file in place, if any.
    pub fn plan(&self, host: &Host) -> Result<Option<Change>> {
        use crate::host::FileState;
        let why = match host
            .fs()
            .compare(&host.path(&self.path), &self.content, self.mode)?
        {
            FileState::Same => return Ok(None),
            FileState::Missing => "missing".to_string(),
            FileState::Differs => "content differs".to_string(),
            FileState::ModeDiffers { found } => format!("mode {found:04o}, want {:04o}", self.mode),
        };
        Ok(Some(Change::new(format!("write {}", self.path), why)))
    }

    pub fn write(&self, host: &Host) -> Result<bool> {
        Ok(host
            .fs()
            .write_atomic(&host.path(&self.path), &self.content, self.mode)?)
    }
}
