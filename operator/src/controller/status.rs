//! What the resource's status says: each component's state and the conditions a person acts
//! on. The states are values here; the status carries their text (`ready`, or what the
//! component waits for), which the installer's wait shows as it is.

use crate::crd::{Condition, Foreman, ForemanStatus};
use std::fmt;
use std::time::Duration;

/// One Deployment's or Job's state.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentState {
    Ready,
    /// Applied now, or not yet seen since: the cluster has not reported on it.
    RollingOut,
    Replicas {
        ready: i64,
        want: i64,
    },
    /// A Job whose pods have not finished.
    Running,
    /// A Job whose pods failed and that still retries them.
    Retrying {
        failed: i64,
        job: String,
    },
    /// A Deployment kept at its running version until the migration Job for its new image has
    /// succeeded (an upgrade: migrations finish before anything rolls).
    WaitingForMigration {
        job: String,
    },
    /// A Job that gave up (its backoffLimit is exhausted).
    Failed {
        job: String,
        reason: String,
        retry: Retry,
    },
}

/// What the controller does about a Job that gave up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// Recreated as attempt `attempt` of `of`, `after` the failure was seen.
    After {
        attempt: u32,
        of: u32,
        after: Duration,
    },
    /// Recreated `of` times already: left as it is.
    Exhausted { of: u32 },
}

impl ComponentState {
    pub fn is_ready(&self) -> bool {
        *self == ComponentState::Ready
    }
}

impl fmt::Display for ComponentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentState::Ready => f.write_str("ready"),
            ComponentState::RollingOut => f.write_str("rolling out"),
            ComponentState::WaitingForMigration { job } => {
                write!(f, "waiting for migration Job {job}")
            }
            ComponentState::Replicas { ready, want } => {
                write!(f, "{ready}/{want} replicas ready")
            }
            ComponentState::Running => f.write_str("running"),
            ComponentState::Retrying { failed, job } => {
                write!(
                    f,
                    "{failed} failed attempt(s); see `kubectl logs job/{job}`"
                )
            }
            ComponentState::Failed { reason, retry, .. } => {
                write!(f, "failed ({reason}); ")?;
                match retry {
                    Retry::After { attempt, of, after } => write!(
                        f,
                        "run again (attempt {attempt} of {of}) {} after the failure",
                        human(*after)
                    ),
                    Retry::Exhausted { of } => {
                        write!(f, "run again {of} times already; not retried any more")
                    }
                }
            }
        }
    }
}

/// `90s`, `2m`, `1m30s`.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, 0) => format!("{}ms", d.as_millis()),
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Why the resource is Degraded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Problem {
    DatabaseSecretMissing,
    ObjectsRejected,
    JobFailed,
}

impl Problem {
    fn reason(self) -> &'static str {
        match self {
            Problem::DatabaseSecretMissing => "DatabaseSecretMissing",
            Problem::ObjectsRejected => "ObjectsRejected",
            Problem::JobFailed => "JobFailed",
        }
    }
}

/// The resource as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Ready,
    /// Something is still rolling out; the components say what.
    Progressing,
    /// Something needs a person: the first problem names the reason, every message is shown.
    Degraded(Vec<(Problem, String)>),
}

impl Health {
    /// Degraded when there is any problem, else Ready or Progressing.
    pub fn judge(problems: Vec<(Problem, String)>, ready: bool) -> Health {
        if !problems.is_empty() {
            Health::Degraded(problems)
        } else if ready {
            Health::Ready
        } else {
            Health::Progressing
        }
    }
}

fn condition(type_: &str, on: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
    }
}

/// Where maintenance stands, when the resource asks for it: the writer pods still there
/// (terminating ones included). None left: reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    pub writers_left: Vec<String>,
}

/// The `Maintenance` condition: True (`Reached`) once no writer pod is left, else False
/// (`Entering`) naming them. The installer's backup waits for True at the current generation.
fn maintenance_condition(m: &Maintenance) -> Condition {
    if m.writers_left.is_empty() {
        return condition(
            "Maintenance",
            true,
            "Reached",
            "every writer is stopped; the edge answers 503",
        );
    }
    let shown: Vec<&str> = m.writers_left.iter().take(5).map(String::as_str).collect();
    let more = m.writers_left.len() - shown.len();
    condition(
        "Maintenance",
        false,
        "Entering",
        format!(
            "waiting for {} writer pod(s) to stop: {}{}",
            m.writers_left.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )
}

/// The status a person can act on.
pub fn status_for(
    fm: &Foreman,
    components: &[(String, ComponentState)],
    health: &Health,
    maintenance: Option<&Maintenance>,
) -> ForemanStatus {
    let waiting = components
        .iter()
        .filter(|(_, s)| !s.is_ready())
        .map(|(n, s)| format!("{n}: {s}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut conditions = match health {
        Health::Degraded(problems) => {
            let reason = problems[0].0.reason();
            let message = problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                condition("Ready", false, reason, message.clone()),
                condition(
                    "Progressing",
                    false,
                    reason,
                    "waiting for the problem to be fixed",
                ),
                condition("Degraded", true, reason, message),
            ]
        }
        Health::Ready => vec![
            condition("Ready", true, "AllComponentsReady", "Foreman answers"),
            condition("Progressing", false, "Complete", "nothing left to roll out"),
            condition("Degraded", false, "AsExpected", ""),
        ],
        Health::Progressing => vec![
            condition("Ready", false, "ComponentsNotReady", waiting.clone()),
            condition("Progressing", true, "RollingOut", waiting),
            condition("Degraded", false, "AsExpected", ""),
        ],
    };
    conditions.extend(maintenance.map(maintenance_condition));
    ForemanStatus {
        observed_generation: fm.metadata.generation,
        conditions,
        url: fm.spec.hostname.as_ref().map(|h| format!("https://{h}")),
        components: components
            .iter()
            .map(|(n, s)| (n.clone(), s.to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_states_read_as_before() {
        let s = |c: ComponentState| c.to_string();
        assert_eq!(s(ComponentState::Ready), "ready");
        assert_eq!(s(ComponentState::RollingOut), "rolling out");
        assert_eq!(
            s(ComponentState::Replicas { ready: 0, want: 2 }),
            "0/2 replicas ready"
        );
        assert_eq!(
            s(ComponentState::Retrying {
                failed: 2,
                job: "j".into()
            }),
            "2 failed attempt(s); see `kubectl logs job/j`"
        );
        let failed = |retry| ComponentState::Failed {
            job: "j".into(),
            reason: "BackoffLimitExceeded".into(),
            retry,
        };
        assert_eq!(
            s(failed(Retry::After {
                attempt: 2,
                of: 5,
                after: Duration::from_secs(120)
            })),
            "failed (BackoffLimitExceeded); run again (attempt 2 of 5) 2m after the failure"
        );
        assert_eq!(
            s(failed(Retry::Exhausted { of: 5 })),
            "failed (BackoffLimitExceeded); run again 5 times already; not retried any more"
        );
    }
}
