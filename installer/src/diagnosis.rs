//! Reading the `Foreman` resource and its pods without asking the cluster anything: its
//! conditions and readiness, one line per component, what keeps a container from running,
//! recent warnings, and what a field-manager conflict was about. Pure functions of what the
//! client ([`crate::cluster`]) fetched, so each is tested on objects written in the test.

use crate::report::ComponentLine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::collections::BTreeMap;

/// The API resource of `Foreman`, without discovery.
pub fn foreman_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("app.theforeman.org", "v1alpha1", "Foreman"),
        "foremans",
    )
}

/// A condition of the resource's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

pub fn conditions(fm: &DynamicObject) -> Vec<ConditionView> {
    fm.data["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| ConditionView {
                    type_: c["type"].as_str().unwrap_or_default().to_string(),
                    status: c["status"].as_str().unwrap_or_default().to_string(),
                    reason: c["reason"].as_str().unwrap_or_default().to_string(),
                    message: c["message"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn condition(fm: &DynamicObject, type_: &str) -> Option<ConditionView> {
    conditions(fm).into_iter().find(|c| c.type_ == type_)
}

/// Ready, and the operator has seen the current spec (a status from before our last change
/// does not count).
pub fn is_ready(fm: &DynamicObject) -> bool {
    let current = match (
        fm.metadata.generation,
        fm.data["status"]["observed_generation"].as_i64(),
    ) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    };
    current && condition(fm, "Ready").is_some_and(|c| c.status == "True")
}

/// `status.components` as the operator reports it: name -> `ready` or what it waits for.
pub(crate) fn reported_components(fm: &DynamicObject) -> BTreeMap<String, String> {
    fm.data["status"]["components"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn selects(selector: Option<&BTreeMap<String, String>>, pod: &Pod) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Lines for the live view: Deployments, then Jobs, then what the operator reports that has no
/// object yet; each not-ready one with the most telling reason of its pods.
pub fn component_lines(
    deployments: &[Deployment],
    jobs: &[Job],
    pods: &[Pod],
    reported: &BTreeMap<String, String>,
) -> Vec<ComponentLine> {
    let mut lines = Vec::new();
    let reason_of = |selector: Option<&BTreeMap<String, String>>| {
        pods.iter()
            .filter(|p| selects(selector, p))
            .filter_map(pod_reason)
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r)
    };
    for d in deployments {
        let name = name_of(&d.metadata);
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.as_ref();
        let ready_n = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
        let ready = ready_n >= want && updated >= want;
        let selector = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref());
        lines.push(ComponentLine {
            reason: (!ready).then(|| reason_of(selector)).flatten().or_else(|| {
                (!ready)
                    .then(|| reported.get(&name).filter(|r| *r != "ready").cloned())
                    .flatten()
            }),
            name,
            ready,
            progress: format!("{ready_n}/{want} ready"),
        });
    }
    for j in jobs {
        let name = name_of(&j.metadata);
        let want = j.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
        let status = j.status.as_ref();
        let done = status.and_then(|s| s.succeeded).unwrap_or(0);
        let failed = status.and_then(|s| s.failed).unwrap_or(0);
        let ready = done >= want;
        let selector = j
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_labels.as_ref());
        let reason = if ready {
            None
        } else {
            reason_of(selector)
                .or_else(|| (failed > 0).then(|| format!("{failed} failed attempt(s)")))
        };
        lines.push(ComponentLine {
            name,
            ready,
            progress: format!("job {done}/{want}"),
            reason,
        });
    }
    for (name, state) in reported {
        if lines.iter().any(|l| &l.name == name) {
            continue;
        }
        let ready = state == "ready";
        lines.push(ComponentLine {
            name: name.clone(),
            ready,
            progress: if ready {
                "ready".into()
            } else {
                "pending".into()
            },
            reason: (!ready).then(|| state.clone()),
        });
    }
    lines
}

/// What keeps one container from running, for the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTrouble {
    pub container: String,
    /// `ImagePullBackOff: Back-off pulling image "..."`, `CrashLoopBackOff (exit 1)`, ...
    pub detail: String,
    /// It ran and failed: its logs say why.
    pub crashed: bool,
    /// It has restarted: the previous run's logs are the telling ones.
    pub restarted: bool,
}

pub fn container_troubles(pod: &Pod) -> Vec<ContainerTrouble> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        out.push(ContainerTrouble {
            container: "-".into(),
            detail: format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                c.message.as_deref().unwrap_or("")
            ),
            crashed: false,
            restarted: false,
        });
    }
    for cs in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let state = cs.state.as_ref();
        let last_exit = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
            if reason == "ContainerCreating" || reason == "PodInitializing" {
                continue;
            }
            let mut detail = reason.clone();
            if let Some(code) = last_exit {
                detail.push_str(&format!(" (exit {code})"));
            }
            if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
                detail.push_str(&format!(": {m}"));
            }
            out.push(ContainerTrouble {
                container: cs.name.clone(),
                detail,
                crashed: reason == "CrashLoopBackOff" || last_exit.is_some_and(|c| c != 0),
                restarted: cs.restart_count > 0,
            });
        } else if let Some(t) = state
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
        {
            out.push(ContainerTrouble {
                container: cs.name.clone(),
                detail: format!(
                    "{} (exit {})",
                    t.reason.as_deref().unwrap_or("Terminated"),
                    t.exit_code
                ),
                crashed: true,
                restarted: false,
            });
        }
    }
    out
}

/// The most telling reason a pod is not ready, ranked: image and crash problems first, then
/// configuration, scheduling, any other wait, and last a running container failing its
/// readiness probe.
fn pod_reason(pod: &Pod) -> Option<(u8, String)> {
    let status = pod.status.as_ref()?;
    let mut best: Option<(u8, String)> = None;
    fn consider(best: &mut Option<(u8, String)>, rank: u8, reason: String) {
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            *best = Some((rank, reason));
        }
    }
    for cs in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let state = cs.state.as_ref();
        if let Some(reason) = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
        {
            let rank = match reason.as_str() {
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => 0,
                "CrashLoopBackOff" => 1,
                "CreateContainerConfigError" | "CreateContainerError" => 2,
                "ContainerCreating" | "PodInitializing" => 5,
                _ => 4,
            };
            let last_exit = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            let shown = match (reason.as_str(), last_exit) {
                ("CrashLoopBackOff", Some(code)) => format!("CrashLoopBackOff: exit {code}"),
                _ => reason,
            };
            consider(&mut best, rank, shown);
        } else if let Some(t) = state
            .and_then(|s| s.terminated.as_ref())
            .filter(|t| t.exit_code != 0)
        {
            consider(
                &mut best,
                1,
                format!(
                    "{}: exit {}",
                    t.reason.as_deref().unwrap_or("Error"),
                    t.exit_code
                ),
            );
        } else if state.and_then(|s| s.running.as_ref()).is_some() && !cs.ready {
            consider(&mut best, 6, "running, not ready yet".into());
        }
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        consider(
            &mut best,
            3,
            c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
        );
    }
    if best.is_none() && status.phase.as_deref() == Some("Pending") {
        consider(&mut best, 5, "Pending".into());
    }
    best
}

/// The newest `n` Warning events, oldest first, as `Kind/name Reason: message (xN)`.
pub fn recent_warnings(mut events: Vec<Event>, n: usize) -> Vec<String> {
    events.retain(|e| e.type_.as_deref() == Some("Warning"));
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
            .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.as_second()))
            .unwrap_or(0)
    };
    events.sort_by_key(when);
    let skip = events.len().saturating_sub(n);
    events
        .iter()
        .skip(skip)
        .map(|e| {
            let count = e
                .count
                .filter(|c| *c > 1)
                .map(|c| format!(" (x{c})"))
                .unwrap_or_default();
            format!(
                "{}/{} {}: {}{count}",
                e.involved_object.kind.as_deref().unwrap_or("?"),
                e.involved_object.name.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or(""),
                e.message.as_deref().unwrap_or("").trim()
            )
        })
        .collect()
}

/// The conflict as a person reads it: each field, the manager that holds it, and our value.
/// The API server names them in `details.causes` (type FieldManagerConflict); older servers
/// only in the message.
pub fn describe_conflict(status: &kube::core::Status, desired: &Value) -> String {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.reason.is_empty() || c.reason == "FieldManagerConflict")
        .filter(|c| !c.field.is_empty())
        .map(|c| {
            let manager = c
                .message
                .split('"')
                .nth(1)
                .map(|m| format!("field manager \"{m}\""))
                .unwrap_or_else(|| c.message.clone());
            let ours = value_at(desired, &c.field)
                .map(|v| format!(" (foreman-box wants {v})"))
                .unwrap_or_default();
            format!("  {} is managed by {manager}{ours}", c.field)
        })
        .collect();
    if causes.is_empty() {
        format!("  {}", status.message)
    } else {
        causes.join("\n")
    }
}

/// The value at a field path as the API server writes it (`.spec.plugins.katello`).
pub fn value_at<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .trim_start_matches('.')
        .split('.')
        .try_fold(v, |v, k| v.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn image_pull_backoff_outranks_a_container_still_starting() {
        let p = pod(json!({
            "metadata": {"name": "foreman-1", "labels": {"app.kubernetes.io/name": "foreman"}},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "b", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}},
            ]}
        }));
        assert_eq!(pod_reason(&p).unwrap().1, "ImagePullBackOff");
        let t = container_troubles(&p);
        assert_eq!(t.len(), 1, "ContainerCreating is no trouble: {t:?}");
        assert_eq!(t[0].detail, "ImagePullBackOff: Back-off pulling image");
    }

    #[test]
    fn crash_loop_names_the_exit_code_and_asks_for_the_previous_logs() {
        let p = pod(json!({
            "metadata": {"name": "w"},
            "status": {"containerStatuses": [
                {"name": "worker", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}},
            ]}
        }));
        assert_eq!(pod_reason(&p).unwrap().1, "CrashLoopBackOff: exit 1");
        let t = &container_troubles(&p)[0];
        assert!(t.crashed && t.restarted, "{t:?}");
    }

    #[test]
    fn lines_count_replicas_and_job_progress_and_take_the_pods_reason() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "foreman"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "foreman"}}, "template": {}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2}
        }))
        .unwrap();
        let j: Job = serde_json::from_value(json!({
            "metadata": {"name": "foreman-migrate-abc"},
            "spec": {"completions": 1, "selector": {"matchLabels": {"job-name": "foreman-migrate-abc"}}, "template": {}},
            "status": {"succeeded": 1}
        }))
        .unwrap();
        let p = pod(json!({
            "metadata": {"name": "foreman-x", "labels": {"app.kubernetes.io/name": "foreman", "pod-template-hash": "1"}},
            "status": {"containerStatuses": [{"name": "foreman", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "ErrImagePull"}}}]}
        }));
        let reported = BTreeMap::from([
            ("foreman".to_string(), "1/2 replicas ready".to_string()),
            ("redis".to_string(), "rolling out".to_string()),
        ]);
        let lines = component_lines(&[d], &[j], &[p], &reported);
        assert_eq!(
            lines,
            vec![
                ComponentLine {
                    name: "foreman".into(),
                    ready: false,
                    progress: "1/2 ready".into(),
                    reason: Some("ErrImagePull".into())
                },
                ComponentLine {
                    name: "foreman-migrate-abc".into(),
                    ready: true,
                    progress: "job 1/1".into(),
                    reason: None
                },
                ComponentLine {
                    name: "redis".into(),
                    ready: false,
                    progress: "pending".into(),
                    reason: Some("rolling out".into())
                },
            ]
        );
    }

    #[test]
    fn a_status_from_before_the_last_change_is_not_ready() {
        let mut fm: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
            "metadata": {"name": "foreman", "generation": 2},
            "status": {"observed_generation": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": ""}]}
        }))
        .unwrap();
        assert!(!is_ready(&fm));
        fm.data["status"]["observed_generation"] = json!(2);
        assert!(is_ready(&fm));
    }

    #[test]
    fn conflict_names_field_manager_and_our_value() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using app.theforeman.org/v1alpha1: .spec.dynflow_workers",
            "details": {"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using app.theforeman.org/v1alpha1", "field": ".spec.dynflow_workers"}]}
        }))
        .unwrap();
        let desired = json!({"spec": {"dynflow_workers": 3}});
        assert_eq!(
            describe_conflict(&status, &desired),
            "  .spec.dynflow_workers is managed by field manager \"kubectl-edit\" (foreman-box wants 3)"
        );
    }
}
