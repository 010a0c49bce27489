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
pub mod settings;
pub mod storage;

pub use crate::context::{Action, Context, RunOptions};
pub use crate::desired::DesiredFile;
pub use crate::report::{
    Change, ComponentLine, LogReporter, Outcome, ProgressHandle, Reporter, StepReport,
};

use crate::error::{Error, Result};
use crate::host::Host;
use futures::future::BoxFuture;
use std::time::Instant;

/// The install order: one list, in one place.
pub fn install_order() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(preflight::RunPreflight),
        Box::new(settings::RememberSettings),
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

pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;

    /// Compares desired and actual state and returns the actions that close the gap. Changes
    /// nothing. An empty list means up to date.
    fn plan<'a>(&'a self, cx: &'a Context) -> BoxFuture<'a, Result<Vec<Action>>>;
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
        cx.reporter
            .step_finished(name, Outcome::of(&changes), started.elapsed());
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
                cx.reporter
                    .step_finished(name, Outcome::of(&changes), started.elapsed());
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
