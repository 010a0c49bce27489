//! The step engine and the install order.
//!
//! Every change to the host is a step. `plan` reads the current state and returns the
//! [`Action`]s that would bring it to the desired state, each with what it changes and why;
//! `apply` runs exactly those actions, in order, and nothing else; the engine then plans again
//! and insists on an empty plan. `foreman-box plan` shows the same actions without running
//! them, so a dry run and a real run cannot drift apart.
//!
//! What happens is told to a [`Reporter`] (the terminal display, plain lines, a log file), never
//! printed from here.

pub mod foreman;
pub mod k3s;
pub mod operator;
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
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The install order: one list, in one place.
pub fn install_order() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(preflight::RunPreflight),
        Box::new(k3s::InstallK3s),
        Box::new(postgres::ConfigurePostgres),
        Box::new(storage::PrepareStorage),
        Box::new(operator::DeployOperator),
        Box::new(foreman::ApplyForeman),
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
    /// Where steps tell what they are doing (warnings, skips, progress, the wait's live view).
    pub reporter: Arc<dyn Reporter>,
}

impl Context {
    pub fn new(
        host: Host,
        facts: Facts,
        config: Config,
        options: RunOptions,
        postgres_admin_password: Option<Secret>,
    ) -> Self {
        let downloader = Downloader::new(&config.downloads);
        Context {
            host,
            facts,
            config,
            options,
            downloader,
            postgres_admin_password,
            reporter: Arc::new(LogReporter),
        }
    }

    /// The same context, telling a different reporter.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> Self {
        self.downloader = self.downloader.with_reporter(reporter.clone());
        self.reporter = reporter;
        self
    }
}

/// One planned change, as shown to a person: what, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The work of one action: runs once, against the context it was planned with.
pub type Work = Box<dyn for<'a> FnOnce(&'a Context) -> BoxFuture<'a, Result<()>> + Send>;

/// One planned change and the work that makes it. `plan` returns these; `apply` runs exactly
/// these. Everything the work needs was decided while planning and is captured in it.
pub struct Action {
    pub change: Change,
    work: Work,
}

impl Action {
    /// An action whose work is async.
    pub fn new<F>(what: impl Into<String>, why: impl Into<String>, work: F) -> Self
    where
        F: for<'a> FnOnce(&'a Context) -> BoxFuture<'a, Result<()>> + Send + 'static,
    {
        Action {
            change: Change::new(what, why),
            work: Box::new(work),
        }
    }

    /// An action whose work is a plain function of the context.
    pub fn sync<F>(what: impl Into<String>, why: impl Into<String>, work: F) -> Self
    where
        F: FnOnce(&Context) -> Result<()> + Send + 'static,
    {
        Action::new(what, why, move |cx| Box::pin(async move { work(cx) }))
    }

    /// Writes a file the way every step does (atomic, explicit mode, compared first).
    pub fn write_file(file: DesiredFile, why: impl Into<String>) -> Self {
        let what = format!("write {}", file.path);
        Action::sync(what, why, move |cx| file.write(&cx.host).map(|_| ()))
    }

    pub async fn run(self, cx: &Context) -> Result<()> {
        (self.work)(cx).await
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Action")
            .field("change", &self.change)
            .finish()
    }
}

pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;

    /// Compares desired and actual state and returns the actions that close the gap. Changes
    /// nothing. An empty list means up to date.
    fn plan<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Action>>>;
}

/// How a step ended, for the display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do.
    UpToDate,
    /// Changes were planned (plan) or made (install).
    Changed,
    Failed,
}

/// One line of the wait's live view: a component of the Foreman deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentLine {
    /// `foreman`, `dynflow-worker`, `candlepin`, `pulp-migrate`, ...
    pub name: String,
    pub ready: bool,
    /// `2/2 ready`, `job 0/1`, ...
    pub progress: String,
    /// Why it is not ready: `ImagePullBackOff`, `CrashLoopBackOff: exit 1`, ...
    pub reason: Option<String>,
}

/// Where the engine and the steps tell what happens. The CLI picks one (terminal display,
/// plain lines, JSON); tests record. Implementations must never receive a secret: callers pass
/// only what may be shown.
pub trait Reporter: Send + Sync {
    /// A step starts planning (and, on install, applying).
    fn step_started(&self, step: &'static str);
    /// What a step will change (install) or would change (plan); called once per step.
    fn step_planned(&self, step: &'static str, changes: &[Change]);
    fn step_finished(&self, step: &'static str, outcome: Outcome, elapsed: Duration);
    /// Something a person should read, shown under the step (preflight findings ignored as
    /// asked, an external server that needs a restart by hand).
    fn warning(&self, step: &'static str, message: &str);
    /// Detail: skips and their reasons, what a wait is waiting for. Shown with -v, always logged.
    fn note(&self, step: &'static str, message: &str);
    /// A download starts; the returned handle is told its progress.
    fn download(&self, what: &str, total: Option<u64>) -> Box<dyn ProgressHandle>;
    /// The wait's live view: the current line of every component, replacing the last call's.
    fn components(&self, step: &'static str, lines: &[ComponentLine]);
}

/// Progress of one download.
pub trait ProgressHandle: Send {
    /// `bytes` more arrived (a resumed download first tells what it already has).
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// Tells everything as tracing events: the default, and what non-terminal runs log.
pub struct LogReporter;

impl Reporter for LogReporter {
    fn step_started(&self, step: &'static str) {
        tracing::debug!(step, "started");
    }
    fn step_planned(&self, step: &'static str, changes: &[Change]) {
        for c in changes {
            tracing::info!(step, change = %c.what, why = %c.why, "planned");
        }
    }
    fn step_finished(&self, step: &'static str, outcome: Outcome, elapsed: Duration) {
        tracing::info!(
            step,
            ?outcome,
            elapsed_ms = elapsed.as_millis() as u64,
            "finished"
        );
    }
    fn warning(&self, step: &'static str, message: &str) {
        tracing::warn!(step, "{message}");
    }
    fn note(&self, step: &'static str, message: &str) {
        tracing::info!(step, "{message}");
    }
    fn download(&self, what: &str, total: Option<u64>) -> Box<dyn ProgressHandle> {
        tracing::info!(what, total, "downloading");
        Box::new(NoProgress)
    }
    fn components(&self, step: &'static str, lines: &[ComponentLine]) {
        for l in lines {
            tracing::info!(step, component = %l.name, ready = l.ready, progress = %l.progress, reason = l.reason.as_deref().unwrap_or(""), "component");
        }
    }
}

struct NoProgress;
impl ProgressHandle for NoProgress {
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// What one step did or would do.
#[derive(Debug, Clone, serde::Serialize)]
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
pub async fn plan(cx: &Context, steps: &[Box<dyn Step>]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps {
        let name = step.name();
        let started = Instant::now();
        cx.reporter.step_started(name);
        let changes: Vec<Change> = match step.plan(cx).await {
            Ok(actions) => actions.into_iter().map(|a| a.change).collect(),
            Err(e) => {
                cx.reporter
                    .step_finished(name, Outcome::Failed, started.elapsed());
                return Err(e);
            }
        };
        cx.reporter.step_planned(name, &changes);
        let outcome = if changes.is_empty() {
            Outcome::UpToDate
        } else {
            Outcome::Changed
        };
        cx.reporter.step_finished(name, outcome, started.elapsed());
        reports.push(StepReport {
            step: name,
            changes,
        });
    }
    Ok(reports)
}

/// Plans each step, runs exactly the planned actions, then checks that it converged.
pub async fn apply(cx: &Context, steps: &[Box<dyn Step>]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps {
        let name = step.name();
        let started = Instant::now();
        cx.reporter.step_started(name);
        match apply_one(cx, step.as_ref()).await {
            Ok(changes) => {
                let outcome = if changes.is_empty() {
                    Outcome::UpToDate
                } else {
                    Outcome::Changed
                };
                cx.reporter.step_finished(name, outcome, started.elapsed());
                reports.push(StepReport {
                    step: name,
                    changes,
                });
            }
            Err(e) => {
                cx.reporter
                    .step_finished(name, Outcome::Failed, started.elapsed());
                return Err(e);
            }
        }
    }
    Ok(reports)
}

async fn apply_one(cx: &Context, step: &dyn Step) -> Result<Vec<Change>> {
    let name = step.name();
    let actions = step.plan(cx).await?;
    let changes: Vec<Change> = actions.iter().map(|a| a.change.clone()).collect();
    cx.reporter.step_planned(name, &changes);
    if actions.is_empty() {
        return Ok(changes);
    }
    run_all(cx, actions).await?;
    let left = step.plan(cx).await?;
    if !left.is_empty() {
        return Err(Error::NotConverged {
            step: name,
            changes: left
                .iter()
                .map(|a| a.change.what.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(changes)
}

/// Runs actions in order, stopping at the first failure.
pub async fn run_all(cx: &Context, actions: Vec<Action>) -> Result<()> {
    for action in actions {
        action.run(cx).await?;
    }
    Ok(())
}

/// One action per temp file (`.NAME.foreman-box-PID.tmp`) that a killed run left beside one of
/// `paths` (real paths, shown as given): this run's writes never collide with them, but nothing
/// else would remove them. Files written as [`DesiredFile`]s see to their own.
pub(crate) fn remove_stale_temps(host: &Host, paths: &[std::path::PathBuf]) -> Vec<Action> {
    paths
        .iter()
        .flat_map(|p| host.fs().stale_temps_of(p))
        .map(|path| {
            let shown = path.display().to_string();
            Action::sync(
                format!("remove {shown}"),
                "left by a killed run",
                move |cx| Ok(cx.host.fs().remove_file(&path)?),
            )
        })
        .collect()
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

    /// The change needed to put this file in place, if any: also when a killed run left a
    /// temp file of it behind.
    pub fn plan(&self, host: &Host) -> Result<Option<Change>> {
        use crate::host::FileState;
        let path = host.path(&self.path);
        let why = match host.fs().compare(&path, &self.content, self.mode)? {
            FileState::Same if host.fs().stale_temps_of(&path).is_empty() => return Ok(None),
            FileState::Same => "a killed run left a temp file of it".to_string(),
            FileState::Missing => "missing".to_string(),
            FileState::Differs => "content differs".to_string(),
            FileState::ModeDiffers { found } => format!("mode {found:04o}, want {:04o}", self.mode),
        };
        Ok(Some(Change::new(format!("write {}", self.path), why)))
    }

    /// Writes the file unless it is in place, then removes temp files of killed runs.
    pub fn write(&self, host: &Host) -> Result<bool> {
        let path = host.path(&self.path);
        let changed = host.fs().write_atomic(&path, &self.content, self.mode)?;
        for stale in host.fs().stale_temps_of(&path) {
            host.fs().remove_file(&stale)?;
        }
        Ok(changed)
    }
}
