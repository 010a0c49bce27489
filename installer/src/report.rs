//! What happens, as told to a person: the planned [`Change`]s, how each step ended, the wait's
//! live view, and the [`Reporter`] the CLI picks (terminal display, plain lines, a log file).
//! The vocabulary every layer above shares; it imports nothing of them.

use std::fmt;
use std::time::Duration;

/// Where each run's log is kept (a host path): written by the CLI, read by the support bundle.
pub const LOG_DIR: &str = "/var/log/foreman-box";

/// One planned change, as shown to a person: what, and why; and in `plan --output json` the
/// planned operation itself (`action`, with its `kind`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub what: String,
    pub why: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub action: serde_json::Value,
}

impl Change {
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Self {
        Change {
            what: what.into(),
            why: why.into(),
            action: serde_json::Value::Null,
        }
    }

    /// The same change, carrying the operation it describes.
    pub fn with_action(mut self, action: serde_json::Value) -> Self {
        self.action = action;
        self
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.what, self.why)
    }
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

impl Outcome {
    /// Up to date when nothing changes, else changed.
    pub fn of(changes: &[Change]) -> Self {
        if changes.is_empty() {
            Outcome::UpToDate
        } else {
            Outcome::Changed
        }
    }
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
    /// A change an action made that its plan could only name as a whole (the roles and
    /// databases of a server that was not running yet): shown as the planned ones are.
    fn changed(&self, step: &'static str, change: &Change);
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
    fn changed(&self, step: &'static str, c: &Change) {
        tracing::info!(step, change = %c.what, why = %c.why, "made");
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
