//! `foreman-box upgrade [--to X.Y]`: moves Foreman one release stream forward, guarded. Every
//! check comes before the one write, so a refused upgrade changes nothing:
//! - the move is one stream forward ([`foreman_operator::streams`]: skipping names the path,
//!   going back is refused: migrations cannot be undone);
//! - nothing in the stream table's way needs a manual step (a PostgreSQL server older than the
//!   target stream's), else the step is named;
//! - Foreman is healthy ([`crate::health`]);
//! - a backup younger than a day exists ([`crate::backup::LAST_BACKUP`]), or `--skip-backup`
//!   was given (and is said aloud).
//!
//! The write sets `spec.version` by server-side apply under its own field manager,
//! `foreman-box-upgrade`: `install` (manager `foreman-box`) does not set the version, so it
//! neither drops the upgraded one nor silently takes it back; if it ever sets another value,
//! the API server reports the conflict instead of downgrading. The operator then runs the
//! migrations before any Deployment rolls (its half), and this waits for Ready.

use crate::backup::{self, db, DayTwoError, LastBackup, LAST_BACKUP};
use crate::cluster::{Cluster, RESOURCE};
use crate::error::Result;
use crate::health;
use crate::steps::Context;
use foreman_box_bundle::NAMESPACE;
use foreman_operator::streams::{self, By};
use std::time::{Duration, Instant};

pub const FIELD_MANAGER: &str = "foreman-box-upgrade";
/// A backup older than this does not count.
pub const MAX_BACKUP_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct UpgradeOptions {
    pub to: Option<String>,
    pub skip_backup: bool,
    pub health: health::HealthOptions,
}

/// What the guard decided, before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    pub from: String,
    pub to: String,
    /// What the operator does on the way.
    pub changes: Vec<String>,
}

/// The guard's pure part: the move and its changes, or why not.
pub fn decide(
    from: &str,
    to: Option<&str>,
    postgres_major: Option<u32>,
) -> Result<Option<Decision>> {
    let to = match to {
        Some(t) => t.to_string(),
        None => match streams::next(from) {
            Some(s) => s.version.to_string(),
            None if streams::find(from).is_some() => return Ok(None),
            None => {
                return Err(DayTwoError::Refused {
                    message: format!(
                        "Foreman runs stream {from}, which foreman-box does not know; nothing was changed"
                    ),
                    help: "pass --to X.Y with a stream foreman-box knows".into(),
                }
                .into())
            }
        },
    };
    let changes = streams::plan(from, &to, postgres_major).map_err(|refusal| {
        let help = match &refusal {
            streams::Refusal::Skips { path, .. } => format!(
                "upgrade to {} first (`foreman-box upgrade --to {}`), then go on",
                path[1], path[1]
            ),
            streams::Refusal::Backward { .. } => {
                "restore a backup of the older stream instead (`foreman-box restore DIR`)".into()
            }
            streams::Refusal::Unknown { .. } => "pass --to X.Y with a known stream".into(),
        };
        DayTwoError::Refused {
            message: format!("{refusal}; nothing was changed"),
            help,
        }
    })?;
    if from == to {
        return Ok(None);
    }
    let manual: Vec<&streams::Change> = changes.iter().filter(|c| c.by == By::Manual).collect();
    if !manual.is_empty() {
        return Err(DayTwoError::Refused {
            message: format!(
                "{from} → {to} needs a manual step first: {}; nothing was changed",
                manual
                    .iter()
                    .map(|c| c.what.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            help: manual
                .iter()
                .filter_map(|c| c.how.clone())
                .collect::<Vec<_>>()
                .join("; "),
        }
        .into());
    }
    Ok(Some(Decision {
        from: from.into(),
        to,
        changes: changes.into_iter().map(|c| c.what).collect(),
    }))
}

/// The newest backup, if it is younger than [`MAX_BACKUP_AGE`]; else what was found.
pub fn recent_backup(cx: &Context, now: u64) -> std::result::Result<LastBackup, String> {
    let path = cx.host.path(LAST_BACKUP);
    let text = match cx.host.fs().read_string(&path) {
        Ok(Some(t)) => t,
        _ => return Err("no backup was made on this host".into()),
    };
    let last: LastBackup =
        serde_json::from_str(&text).map_err(|_| format!("{LAST_BACKUP} does not read"))?;
    let age = now.saturating_sub(last.created_unix);
    if age > MAX_BACKUP_AGE.as_secs() {
        return Err(format!(
            "the newest backup, {}, is {} hours old",
            last.path,
            age / 3600
        ));
    }
    if !cx.host.fs().exists(std::path::Path::new(&last.path)) {
        return Err(format!("the newest backup, {}, is gone", last.path));
    }
    Ok(last)
}

/// Checks everything, then sets the stream and waits for Ready.
pub async fn upgrade(cx: &Context, opts: &UpgradeOptions) -> Result<Option<Decision>> {
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let c = Cluster::connect(&cx.host, explicit).await?;
    let Some(live) = c.foreman().await? else {
        return Err(DayTwoError::Refused {
            message: format!(
                "there is no Foreman {NAMESPACE}/{RESOURCE} to upgrade; nothing was changed"
            ),
            help: "run `foreman-box install`".into(),
        }
        .into());
    };
    let from = live.data["spec"]["version"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(backup::default_stream);
    let postgres_major = match db::Server::admin(cx) {
        Ok(server) => match server.connect("postgres").await {
            Ok(client) => server.version(&client).await.ok().map(|(n, _)| n / 10_000),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let Some(decision) = decide(&from, opts.to.as_deref(), postgres_major)? else {
        return Ok(None);
    };
    let report = health::check(cx, &opts.health).await;
    let failures = report.failures();
    if !failures.is_empty() {
        return Err(DayTwoError::NotHealthy {
            failures: failures
                .iter()
                .map(|c| format!("  {}: {}", c.name, c.summary))
                .collect::<Vec<_>>()
                .join("\n"),
        }
        .into());
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second().max(0) as u64;
    match recent_backup(cx, now) {
        Ok(b) => cx.reporter.note(
            "upgrade",
            &format!("backup {} is {} minutes old", b.path, now.saturating_sub(b.created_unix) / 60),
        ),
        Err(found) if opts.skip_backup => cx.reporter.warning(
            "upgrade",
            &format!("--skip-backup: upgrading without a backup younger than a day ({found}); migrations cannot be undone"),
        ),
        Err(found) => return Err(DayTwoError::NoRecentBackup { found }.into()),
    }
    let started = Instant::now();
    cx.reporter.step_started("upgrade");
    let applied = apply_stream(cx, &decision.to).await;
    let waited = match applied {
        Ok(()) => c
            .wait_ready(Duration::from_secs(cx.config.foreman.wait_timeout_secs))
            .await
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    cx.reporter.step_finished(
        "upgrade",
        if waited.is_ok() {
            crate::steps::Outcome::Changed
        } else {
            crate::steps::Outcome::Failed
        },
        started.elapsed(),
    );
    waited?;
    Ok(Some(decision))
}

async fn apply_stream(cx: &Context, to: &str) -> Result<()> {
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let i = crate::inspect::Inspector::connect(&cx.host, explicit).await?;
    i.apply_foreman_as(
        FIELD_MANAGER,
        &serde_json::json!({
            "apiVersion": "app.theforeman.org/v1alpha1",
            "kind": "Foreman",
            "metadata": {"name": RESOURCE, "namespace": NAMESPACE},
            "spec": {"version": to},
        }),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_moves_one_stream_and_names_the_path_of_a_skip() {
        let d = decide("3.18", None, Some(15)).unwrap().unwrap();
        assert_eq!((d.from.as_str(), d.to.as_str()), ("3.18", "3.19"));
        let err = decide("3.18", Some("5.0"), Some(16))
            .unwrap_err()
            .to_string();
        assert!(err.contains("3.18 → 3.19 → 5.0"), "{err}");
        assert!(err.contains("foreman-box upgrade --to 3.19"), "{err}");
        assert!(decide("5.0", None, None).unwrap().is_none());
        let manual = decide("3.19", Some("5.0"), Some(15))
            .unwrap_err()
            .to_string();
        assert!(
            manual.contains("needs a manual step first: PostgreSQL 16"),
            "{manual}"
        );
        assert!(manual.contains("pg_upgradecluster"), "{manual}");
    }
}
