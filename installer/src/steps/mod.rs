//! The step engine and the install order.
//!
//! Every change to the host is a step. `plan` reads the current state and returns the
//! [`Action`]s that would bring it to the desired state: values naming what changes, with its
//! fields, each with why ([`Planned`]); `apply` executes exactly those, in order, and nothing
//! else; the engine then plans again and insists on an empty plan. `foreman-box plan` shows the
//! same actions without running them, so a dry run and a real run cannot drift apart.
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

use crate::action::wrap;
pub use crate::action::{HostOp, Planned};
pub use crate::context::{Context, RunOptions};
pub use crate::desired::DesiredFile;
pub use crate::report::{
    Change, ComponentLine, LogReporter, Outcome, ProgressHandle, Reporter, StepReport,
};

use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// The steps, in install order: one list, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Preflight,
    Settings,
    K3s,
    Postgres,
    Storage,
    Operator,
    Foreman,
}

pub const INSTALL_ORDER: [Step; 7] = [
    Step::Preflight,
    Step::Settings,
    Step::K3s,
    Step::Postgres,
    Step::Storage,
    Step::Operator,
    Step::Foreman,
];

pub fn step_names() -> Vec<&'static str> {
    INSTALL_ORDER.iter().map(|s| s.name()).collect()
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Settings => "settings",
            Step::K3s => "k3s",
            Step::Postgres => "postgres",
            Step::Storage => "storage",
            Step::Operator => "operator",
            Step::Foreman => "foreman",
        }
    }

    /// Compares desired and actual state and returns the actions that close the gap. Changes
    /// nothing. An empty list means up to date.
    pub async fn plan(self, cx: &Context) -> Result<Vec<Planned<Action>>> {
        Ok(match self {
            Step::Preflight => {
                preflight::check(cx)?;
                Vec::new()
            }
            Step::Settings => wrap(settings::plan(cx)?, Action::Host).collect(),
            Step::K3s => wrap(k3s::plan(cx).await?, Action::K3s).collect(),
            Step::Postgres => wrap(postgres::plan(cx).await?, Action::Postgres).collect(),
            Step::Storage => wrap(storage::plan(cx)?, Action::Storage).collect(),
            Step::Operator => wrap(operator::plan(cx)?, Action::Operator).collect(),
            Step::Foreman => wrap(foreman::plan(cx).await?, Action::Foreman).collect(),
        })
    }
}

/// What a plan is made of: each step's own operations (which include the host's).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Action {
    Host(HostOp),
    K3s(k3s::Op),
    Postgres(postgres::Op),
    Storage(storage::Op),
    Operator(operator::Op),
    Foreman(foreman::Op),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Host(op) => op.fmt(f),
            Action::K3s(op) => op.fmt(f),
            Action::Postgres(op) => op.fmt(f),
            Action::Storage(op) => op.fmt(f),
            Action::Operator(op) => op.fmt(f),
            Action::Foreman(op) => op.fmt(f),
        }
    }
}

/// Executes actions, keeping what consecutive ones share: one PostgreSQL session and one
/// cluster client, each opened when an action first needs it.
#[derive(Default)]
pub struct Runner {
    postgres: postgres::Runner,
    foreman: foreman::Runner,
}

impl Runner {
    pub async fn run(&mut self, cx: &Context, action: Action) -> Result<()> {
        match action {
            Action::Host(op) => op.run(&cx.host),
            Action::K3s(op) => k3s::run(cx, op).await,
            Action::Postgres(op) => self.postgres.run(cx, op).await,
            Action::Storage(op) => storage::run(cx, op),
            Action::Operator(op) => operator::run(cx, op),
            Action::Foreman(op) => self.foreman.run(cx, op).await,
        }
    }
}

/// Picks the steps `--only` names, in install order.
pub fn select(only: &[String]) -> Result<Vec<Step>> {
    if only.is_empty() {
        return Ok(INSTALL_ORDER.to_vec());
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
    Ok(INSTALL_ORDER
        .into_iter()
        .filter(|s| only.iter().any(|o| o == s.name()))
        .collect())
}

/// Plans every step without changing anything.
pub async fn plan(cx: &Context, steps: &[Step]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps {
        let name = step.name();
        let started = Instant::now();
        cx.reporter.step_started(name);
        let changes: Vec<Change> = match step.plan(cx).await {
            Ok(actions) => actions.iter().map(Planned::change).collect(),
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
pub async fn apply(cx: &Context, steps: &[Step]) -> Result<Vec<StepReport>> {
    let mut reports = Vec::new();
    for step in steps {
        let name = step.name();
        let started = Instant::now();
        cx.reporter.step_started(name);
        match apply_one(cx, *step).await {
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

async fn apply_one(cx: &Context, step: Step) -> Result<Vec<Change>> {
    let name = step.name();
    let actions = step.plan(cx).await?;
    let changes: Vec<Change> = actions.iter().map(Planned::change).collect();
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
                .map(|a| a.op.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(changes)
}

/// Runs actions in order, stopping at the first failure.
pub async fn run_all(cx: &Context, actions: Vec<Planned<Action>>) -> Result<()> {
    let mut runner = Runner::default();
    for action in actions {
        runner.run(cx, action.op).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use serde_json::json;

    /// A plan is values: what each operation shows is its own description, `plan --output
    /// json` prints its fields, and a password or a file's content is in neither (nor in Debug).
    #[test]
    fn a_planned_operation_shows_its_fields_and_never_a_secret() {
        let secret = "swordfish-7f3a";
        let password = Secret::new(secret);
        let copy = DesiredFile::new(
            "/etc/foreman-box/secrets/foreman-generated.yaml",
            format!("data:\n  password: {secret}\n"),
            0o600,
        );
        let plan = [
            Planned::new(
                Action::Postgres(postgres::Op::CreateRole {
                    name: "foreman".into(),
                    password: password.clone(),
                    generated: true,
                }),
                "missing",
            ),
            Planned::new(
                Action::Postgres(postgres::Op::BootstrapAdmin {
                    password,
                    generated: false,
                    block: "host all foreman_box_admin 127.0.0.1/32 scram-sha-256\n".into(),
                }),
                "no admin login yet",
            ),
            Planned::new(
                Action::Foreman(foreman::Op::Host(HostOp::Write(copy))),
                "missing",
            ),
        ];
        for p in &plan {
            let change = p.change();
            let shown = format!("{change} {p:?} {}", serde_json::to_string(&change).unwrap());
            assert!(!shown.contains(secret), "{shown}");
            assert_eq!(change.what, p.op.to_string());
        }
        assert_eq!(
            plan[0].change().action,
            json!({"kind": "create_role", "name": "foreman", "generated": true})
        );
        assert_eq!(
            plan[0].change().what,
            "create role foreman with a generated scram-sha-256 password"
        );
        assert_eq!(
            plan[2].change().action,
            json!({
                "kind": "write",
                "path": "/etc/foreman-box/secrets/foreman-generated.yaml",
                "mode": "0600",
                "bytes": 33,
            })
        );
    }

    #[test]
    fn steps_are_selected_in_install_order_and_an_unknown_one_is_named() {
        let picked = select(&["foreman".into(), "k3s".into()]).unwrap();
        assert_eq!(picked, [Step::K3s, Step::Foreman]);
        assert_eq!(select(&[]).unwrap(), INSTALL_ORDER);
        let err = select(&["kube".into()]).unwrap_err().to_string();
        assert!(
            err.contains("kube") && err.contains("preflight, settings, k3s"),
            "{err}"
        );
    }
}
