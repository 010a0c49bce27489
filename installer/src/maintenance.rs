//! Maintenance mode, the installer's half. The contract with the operator:
//!
//! - foreman-box asks for it by setting `spec.maintenance: true` on Foreman `foreman/foreman`
//!   with server-side apply under its field manager `foreman-box` (the same apply that owns the
//!   rest of the spec: the body is what foreman-box applied before, read back from
//!   `managedFields`, plus `maintenance`, so no field of ours is dropped);
//! - the operator scales every writer to 0 (web, dynflow, Pulp workers, Candlepin, proxy),
//!   suspends the CronJobs, waits until no writer pod is left (terminating ones included) and
//!   then reports `status.conditions[type=Maintenance]` with `status: "True"` and
//!   `reason: Reached`, for the generation that asked (`status.observed_generation`);
//! - foreman-box waits for that (bounded), does its work, and leaves maintenance by applying the
//!   same body without `maintenance` (server-side apply then removes the field).
//!
//! A run that is killed in between leaves a marker file ([`MARKER`], written before the apply
//! that enters maintenance, removed after the one that leaves it). The next backup, restore or
//! upgrade, holding the one-run lock (so the marker's run is gone), takes the box out of
//! maintenance first.

use crate::cluster::{self, Cluster, FIELD_MANAGER, RESOURCE};
use crate::error::DayTwoError;
use crate::error::Result;
use crate::host::Host;
use foreman_box_bundle::NAMESPACE;
use kube::api::DynamicObject;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// The marker of a run that asked for maintenance (a host path).
pub const MARKER: &str = "/var/lib/foreman-box/maintenance.json";
/// The status condition the operator reports.
pub const CONDITION: &str = "Maintenance";
/// Its reason once no writer runs.
pub const REACHED: &str = "Reached";
const POLL: Duration = Duration::from_secs(1);

/// Who asked for maintenance, as the marker keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    pub command: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub since: u64,
}

/// What the resource says about maintenance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct State {
    /// `spec.maintenance` is true.
    pub requested: bool,
    /// The operator reports it reached for the current generation.
    pub reached: bool,
    /// The condition's reason and message, when there is one.
    pub detail: Option<String>,
}

pub fn state(fm: &DynamicObject) -> State {
    let requested = fm.data["spec"]["maintenance"].as_bool() == Some(true);
    let current = match (
        fm.metadata.generation,
        fm.data["status"]["observed_generation"].as_i64(),
    ) {
        (Some(g), Some(o)) => o >= g,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let cond = cluster::condition(fm, CONDITION);
    let reached = requested
        && current
        && cond
            .as_ref()
            .is_some_and(|c| c.status == "True" && c.reason == REACHED);
    State {
        requested,
        reached,
        detail: cond.map(|c| {
            if c.message.is_empty() {
                format!("{}={} ({})", c.type_, c.status, c.reason)
            } else {
                format!("{}={} ({}): {}", c.type_, c.status, c.reason, c.message)
            }
        }),
    }
}

/// What `manager` applied to the resource, read back from `managedFields` with the live
/// values: the body to re-apply so that none of its fields is dropped (client-go's
/// `Extract...` functions do the same).
pub fn applied_body(fm: &DynamicObject, manager: &str) -> Value {
    let live = serde_json::to_value(fm).unwrap_or(Value::Null);
    let mut body = json!({
        "apiVersion": live["apiVersion"],
        "kind": live["kind"],
        "metadata": {"name": live["metadata"]["name"], "namespace": live["metadata"]["namespace"]},
    });
    for entry in fm.metadata.managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(manager) || entry.operation.as_deref() != Some("Apply")
        {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref() else {
            continue;
        };
        copy_owned(&fields.0, &live, &mut body);
    }
    body
}

/// Copies into `out` the live values of the fields a fieldsV1 tree names.
fn copy_owned(fields: &Value, live: &Value, out: &mut Value) {
    let Some(m) = fields.as_object() else { return };
    for (k, sub) in m {
        let Some(name) = k.strip_prefix("f:") else {
            continue; // `.`, list keys (`k:`/`v:`): the whole value is copied at its parent
        };
        if matches!(name, "apiVersion" | "kind") {
            continue;
        }
        let Some(value) = live.get(name) else {
            continue;
        };
        let children = sub
            .as_object()
            .is_some_and(|c| c.keys().any(|k| k.starts_with("f:")));
        if children && value.is_object() {
            if !out.get(name).is_some_and(Value::is_object) {
                out[name] = Value::Object(Map::new());
            }
            copy_owned(sub, value, &mut out[name]);
        } else {
            out[name] = value.clone();
        }
    }
}

fn marker_path(host: &Host) -> std::path::PathBuf {
    host.path(MARKER)
}

pub fn read_marker(host: &Host) -> Result<Option<Marker>> {
    let Some(text) = host.fs().read_string(&marker_path(host))? else {
        return Ok(None);
    };
    // A marker that does not parse still says a run asked for maintenance.
    Ok(Some(serde_json::from_str(&text).unwrap_or(Marker {
        command: "unknown".into(),
        pid: 0,
        since: 0,
    })))
}

fn write_marker(host: &Host, command: &str) -> Result<()> {
    let marker = Marker {
        command: command.to_string(),
        pid: std::process::id(),
        since: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let text = serde_json::to_string(&marker).map_err(|source| DayTwoError::Encode {
        what: MARKER.into(),
        source,
    })?;
    let path = marker_path(host);
    if let Some(dir) = path.parent() {
        host.fs().ensure_dir(dir, 0o700)?;
    }
    host.fs().write_atomic(&path, text.as_bytes(), 0o600)?;
    Ok(())
}

/// Asks for maintenance and waits until the operator reports it reached. `Ok(false)` when there
/// is no Foreman resource (nothing runs that writes). On timeout the box is taken out of
/// maintenance again before the error returns.
pub async fn enter(
    host: &Host,
    cluster: &Cluster,
    command: &str,
    timeout: Duration,
    waiting: &dyn Fn(&str),
) -> Result<bool> {
    let Some(live) = cluster.foreman().await? else {
        return Ok(false);
    };
    write_marker(host, command)?;
    let mut body = applied_body(&live, FIELD_MANAGER);
    body["spec"]["maintenance"] = json!(true);
    cluster.apply_foreman(&body).await?;
    let started = Instant::now();
    let mut last = String::from("the operator has not reported on it yet");
    loop {
        if let Some(fm) = cluster.foreman().await? {
            let s = state(&fm);
            if s.reached {
                return Ok(true);
            }
            if let Some(d) = s.detail {
                if d != last {
                    waiting(&d);
                }
                last = d;
            }
        }
        if started.elapsed() >= timeout {
            let _ = leave(host, cluster).await;
            return Err(DayTwoError::MaintenanceNotReached {
                timeout_secs: timeout.as_secs(),
                detail: last,
            }
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Takes the box out of maintenance (when the resource asks for it) and removes the marker.
pub async fn leave(host: &Host, cluster: &Cluster) -> Result<()> {
    if let Some(live) = cluster.foreman().await? {
        if live.data["spec"]["maintenance"].as_bool() == Some(true) {
            let mut body = applied_body(&live, FIELD_MANAGER);
            if let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("maintenance");
            }
            cluster.apply_foreman(&body).await?;
        }
    }
    host.fs().remove_file(&marker_path(host))?;
    Ok(())
}

/// A marker left by a killed run: the box is taken out of maintenance. Returns what was done,
/// for the user. The caller holds the one-run lock, so the marker's run is gone.
pub async fn recover(host: &Host, cluster: Option<&Cluster>) -> Result<Option<String>> {
    let Some(marker) = read_marker(host)? else {
        return Ok(None);
    };
    let Some(cluster) = cluster else {
        return Ok(Some(format!(
            "{MARKER} says `{}` (PID {}) put Foreman into maintenance and did not end it, but the cluster cannot be reached to end it now",
            marker.command, marker.pid
        )));
    };
    leave(host, cluster).await?;
    Ok(Some(format!(
        "`{}` (PID {}) put Foreman {NAMESPACE}/{RESOURCE} into maintenance and was stopped before it ended it; it is out of maintenance again",
        marker.command, marker.pid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
            "metadata": {"name": "foreman", "namespace": "foreman", "generation": 3,
                "managedFields": [
                    {"manager": "foreman-box", "operation": "Apply", "apiVersion": "app.theforeman.org/v1alpha1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:hostname": {}, "f:dynflow_workers": {}, "f:plugins": {"f:katello": {}, "f:remote_execution": {}}}}},
                    {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "app.theforeman.org/v1alpha1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:version": {}}}},
                    {"manager": "foreman-operator", "operation": "Apply", "apiVersion": "app.theforeman.org/v1alpha1", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:status": {"f:conditions": {}}}}
                ]},
            "spec": {"hostname": "f.example.com", "dynflow_workers": 3, "version": "3.19",
                     "plugins": {"katello": true, "remote_execution": false}},
            "status": {"observed_generation": 3, "conditions": [{"type": "Maintenance", "status": "True", "reason": "Reached", "message": "no writer runs"}]}
        }))
        .unwrap()
    }

    #[test]
    fn applied_body_holds_exactly_our_fields_with_their_live_values() {
        assert_eq!(
            applied_body(&live(), "foreman-box"),
            json!({
                "apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
                "metadata": {"name": "foreman", "namespace": "foreman"},
                "spec": {"hostname": "f.example.com", "dynflow_workers": 3,
                         "plugins": {"katello": true, "remote_execution": false}}
            })
        );
    }

    #[test]
    fn maintenance_counts_as_reached_only_when_asked_for_and_reported_for_this_generation() {
        let mut fm = live();
        assert!(!state(&fm).reached, "not asked for: spec.maintenance unset");
        fm.data["spec"]["maintenance"] = json!(true);
        assert!(state(&fm).reached);
        fm.metadata.generation = Some(4);
        assert!(!state(&fm).reached, "a report from before the request");
        fm.data["status"]["observed_generation"] = json!(4);
        fm.data["status"]["conditions"][0]["reason"] = json!("WritersRunning");
        let s = state(&fm);
        assert!(!s.reached);
        assert_eq!(
            s.detail.as_deref(),
            Some("Maintenance=True (WritersRunning): no writer runs")
        );
    }
}
