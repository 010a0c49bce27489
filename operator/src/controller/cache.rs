//! What the controller knows of the objects it manages, kept current by one watch per kind, so
//! a reconcile reads memory instead of listing every kind from the API server.
//!
//! Only what the controller reads is kept ([`Seen`]): name, instance, desired-hash annotation,
//! and for Deployments and Jobs the few status fields readiness needs. Kinds without a readiness
//! of their own are watched metadata-only (`PartialObjectMetadata`); the others in full, stripped
//! as each event arrives.
//!
//! A watch lags behind the controller's own writes. An apply or delete is remembered
//! ([`Pending`]) until the watch brings an event for that object; a write during which an event
//! for the object arrived is not remembered (the event may already be the write's own), so the
//! cache at worst causes a redundant apply, never a missed one.

use crate::resources::{HASH_ANNOTATION, INSTANCE_LABEL, KINDS, MANAGED_BY, MANAGED_BY_LABEL};
use futures::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The annotation that counts the controller's recreations of a failed Job.
pub const RETRY_ANNOTATION: &str = "app.theforeman.org/retry-attempt";

/// What the controller reads of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub instance: Option<String>,
    pub hash: Option<String>,
    pub readiness: Readiness,
}

/// The status fields readiness is judged by.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// A kind without a readiness of its own.
    None,
    Deployment {
        want: i64,
        ready: i64,
        /// The images its pod template runs (containers and init containers): what a
        /// migration gate compares with the migration Job's image.
        images: Vec<String>,
    },
    Job {
        succeeded: i64,
        failed: i64,
        /// The `Failed` condition's reason and message: the Job gave up.
        gave_up: Option<(String, String)>,
        /// How many times the controller recreated it after it gave up.
        attempt: u32,
    },
}

/// A write of the controller the watch has not shown yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Applied(String),
    Deleted,
}

#[derive(Debug, Default)]
struct Entry {
    seen: Option<Seen>,
    pending: Option<Pending>,
    /// Watch events for this object so far.
    events: u64,
}

/// An object as a reconcile sees it: the watch's view overlaid with the controller's writes.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Absent,
    /// Applied by the controller with this hash; the watch has not caught up.
    Applied(String),
    Present(Seen),
}

impl View {
    pub fn hash(&self) -> Option<&str> {
        match self {
            View::Absent => None,
            View::Applied(h) => Some(h),
            View::Present(s) => s.hash.as_deref(),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// (index into KINDS, name) -> entry.
    entries: BTreeMap<(usize, String), Entry>,
    /// Per kind: the list made during a watch (re)start, swapped in when it is complete.
    relisting: BTreeMap<usize, BTreeMap<String, Seen>>,
}

pub struct Cache {
    inner: Mutex<Inner>,
    /// How many kinds have been listed at least once.
    listed: tokio::sync::watch::Sender<usize>,
    listed_kinds: Mutex<Vec<bool>>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            inner: Mutex::default(),
            listed: tokio::sync::watch::channel(0).0,
            listed_kinds: Mutex::new(vec![false; KINDS.len()]),
        }
    }
}

/// A watch event reduced to what the cache keeps.
enum Change {
    Init,
    Listed(String, Seen),
    InitDone,
    Applied(String, Seen),
    Deleted(String),
}

impl Cache {
    /// The watches, one per kind, merged: each item is a change worth a reconcile. They run as
    /// long as the stream is polled, updating the cache as events arrive.
    pub fn watches(
        self: &std::sync::Arc<Self>,
        client: &Client,
        namespace: &str,
    ) -> impl Stream<Item = ()> + Send + 'static {
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let streams = KINDS
            .iter()
            .enumerate()
            .map(|(kind, (version, k, plural))| {
                let ar = super::api_resource(version, k, plural);
                let cache = self.clone();
                if matches!(*k, "Deployment" | "Job") {
                    let api: Api<Watched> = Api::namespaced_with(client.clone(), namespace, &ar);
                    let job = *k == "Job";
                    watcher(api, config.clone())
                        .default_backoff()
                        .filter_map(move |e| {
                            let e = e.map(|e| e.modify(|o| o.job = job));
                            std::future::ready(cache.observe(kind, e, full))
                        })
                        .boxed()
                } else {
                    let api: Api<PartialObjectMeta<DynamicObject>> =
                        Api::namespaced_with(client.clone(), namespace, &ar);
                    watcher(api, config.clone())
                        .default_backoff()
                        .filter_map(move |e| std::future::ready(cache.observe(kind, e, meta_only)))
                        .boxed()
                }
            });
        futures::stream::select_all(streams)
    }

    /// Waits until every kind has been listed once: before that, an absent object may exist.
    pub async fn listed(&self, timeout: Duration) -> Result<(), Vec<&'static str>> {
        let mut rx = self.listed.subscribe();
        let all = KINDS.len();
        if tokio::time::timeout(timeout, rx.wait_for(|n| *n >= all))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        let listed = self.listed_kinds.lock().unwrap();
        Err(KINDS
            .iter()
            .zip(listed.iter())
            .filter(|(_, l)| !**l)
            .map(|((_, _, plural), _)| *plural)
            .collect())
    }

    fn observe<K>(
        &self,
        kind: usize,
        event: Result<watcher::Event<K>, watcher::Error>,
        seen: impl Fn(K) -> (String, Seen),
    ) -> Option<()> {
        let change = match event {
            Err(e) => {
                tracing::warn!(kind = KINDS[kind].1, error = %e, "watch failed; retrying");
                return None;
            }
            Ok(watcher::Event::Init) => Change::Init,
            Ok(watcher::Event::InitApply(o)) => {
                let (name, s) = seen(o);
                Change::Listed(name, s)
            }
            Ok(watcher::Event::InitDone) => Change::InitDone,
            Ok(watcher::Event::Apply(o)) => {
                let (name, s) = seen(o);
                Change::Applied(name, s)
            }
            Ok(watcher::Event::Delete(o)) => Change::Deleted(seen(o).0),
        };
        self.change(kind, change)
    }

    /// Applies one change; `Some(())` when a reconcile should follow.
    fn change(&self, kind: usize, change: Change) -> Option<()> {
        let mut inner = self.inner.lock().unwrap();
        match change {
            Change::Init => {
                inner.relisting.insert(kind, BTreeMap::new());
                None
            }
            Change::Listed(name, s) => {
                inner.relisting.entry(kind).or_default().insert(name, s);
                None
            }
            Change::InitDone => {
                let mut listed = inner.relisting.remove(&kind).unwrap_or_default();
                for ((k, name), e) in inner.entries.iter_mut().filter(|((k, _), _)| *k == kind) {
                    debug_assert_eq!(*k, kind);
                    e.seen = listed.remove(name);
                    e.pending = None;
                    e.events += 1;
                }
                for (name, s) in listed {
                    inner.entries.insert(
                        (kind, name),
                        Entry {
                            seen: Some(s),
                            pending: None,
                            events: 1,
                        },
                    );
                }
                drop(inner);
                self.mark_listed(kind);
                Some(())
            }
            Change::Applied(name, s) => {
                let e = inner.entries.entry((kind, name)).or_default();
                e.seen = Some(s);
                e.pending = None;
                e.events += 1;
                Some(())
            }
            Change::Deleted(name) => {
                let e = inner.entries.entry((kind, name)).or_default();
                e.seen = None;
                e.pending = None;
                e.events += 1;
                Some(())
            }
        }
    }

    fn mark_listed(&self, kind: usize) {
        let mut listed = self.listed_kinds.lock().unwrap();
        if !listed[kind] {
            listed[kind] = true;
            let n = listed.iter().filter(|l| **l).count();
            self.listed.send_replace(n);
        }
    }

    /// The object as a reconcile should see it.
    pub fn view(&self, kind: usize, name: &str) -> View {
        let inner = self.inner.lock().unwrap();
        match inner.entries.get(&(kind, name.to_string())) {
            None => View::Absent,
            Some(e) => match (&e.pending, &e.seen) {
                (Some(Pending::Applied(h)), _) => View::Applied(h.clone()),
                (Some(Pending::Deleted), _) | (None, None) => View::Absent,
                (None, Some(s)) => View::Present(s.clone()),
            },
        }
    }

    /// Names of the objects of `instance` present per kind (pending deletes left out).
    pub fn names_of(&self, instance: &str) -> Vec<(usize, String)> {
        let inner = self.inner.lock().unwrap();
        inner
            .entries
            .iter()
            .filter(|(_, e)| e.pending != Some(Pending::Deleted))
            .filter(|(_, e)| {
                e.seen
                    .as_ref()
                    .is_some_and(|s| s.instance.as_deref() == Some(instance))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A mark taken before a write: the number of events seen for the object.
    pub fn mark(&self, kind: usize, name: &str) -> u64 {
        let inner = self.inner.lock().unwrap();
        inner
            .entries
            .get(&(kind, name.to_string()))
            .map_or(0, |e| e.events)
    }

    /// Remembers a write until the watch shows the object again; unless an event for it came
    /// in while the write was on its way (then the cache already holds that or a newer state).
    pub fn wrote(&self, kind: usize, name: &str, mark: u64, pending: Pending) {
        let mut inner = self.inner.lock().unwrap();
        let e = inner.entries.entry((kind, name.to_string())).or_default();
        if e.events == mark {
            e.pending = Some(pending);
        }
    }
}

fn meta_only(o: PartialObjectMeta<DynamicObject>) -> (String, Seen) {
    seen_meta(o.metadata, Readiness::None)
}

fn full(o: Watched) -> (String, Seen) {
    let readiness = o.readiness();
    seen_meta(o.metadata, readiness)
}

fn seen_meta(mut m: ObjectMeta, readiness: Readiness) -> (String, Seen) {
    let name = m.name.take().unwrap_or_default();
    let instance = m.labels.as_mut().and_then(|l| l.remove(INSTANCE_LABEL));
    let hash = m
        .annotations
        .as_mut()
        .and_then(|a| a.remove(HASH_ANNOTATION));
    (
        name,
        Seen {
            instance,
            hash,
            readiness,
        },
    )
}

/// A Deployment or Job as its watch reads it: the metadata and only the fields readiness needs.
/// Everything else of the object (its pod template, managed fields' details aside) is skipped
/// while parsing, never built.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Watched {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: WatchedSpec,
    #[serde(default)]
    status: WatchedStatus,
    /// Which kind this is (not in the JSON: set from the watch it came from).
    #[serde(skip)]
    job: bool,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct WatchedSpec {
    replicas: Option<i64>,
    template: Option<WatchedTemplate>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct WatchedTemplate {
    spec: Option<WatchedPod>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedPod {
    #[serde(default)]
    containers: Vec<WatchedContainer>,
    #[serde(default)]
    init_containers: Vec<WatchedContainer>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct WatchedContainer {
    image: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchedStatus {
    ready_replicas: Option<i64>,
    succeeded: Option<i64>,
    failed: Option<i64>,
    #[serde(default)]
    conditions: Vec<WatchedCondition>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct WatchedCondition {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    status: String,
    reason: Option<String>,
    message: Option<String>,
}

impl kube::Resource for Watched {
    type DynamicType = kube::core::ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Watched {
    /// The images of its pod template's containers and init containers, sorted, each once.
    fn images(&self) -> Vec<String> {
        let pod = self.spec.template.as_ref().and_then(|t| t.spec.as_ref());
        let mut images: Vec<String> = pod
            .into_iter()
            .flat_map(|p| p.init_containers.iter().chain(&p.containers))
            .filter_map(|c| c.image.clone())
            .collect();
        images.sort();
        images.dedup();
        images
    }

    fn readiness(&self) -> Readiness {
        let status = &self.status;
        if !self.job {
            return Readiness::Deployment {
                want: self.spec.replicas.unwrap_or(1),
                ready: status.ready_replicas.unwrap_or(0),
                images: self.images(),
            };
        }
        let gave_up = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .map(|c| {
                let text = |t: &Option<String>| t.clone().unwrap_or_default();
                (text(&c.reason), text(&c.message))
            });
        let attempt = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RETRY_ANNOTATION))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Readiness::Job {
            succeeded: status.succeeded.unwrap_or(0),
            failed: status.failed.unwrap_or(0),
            gave_up,
            attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(hash: &str) -> Seen {
        Seen {
            instance: Some("foreman".into()),
            hash: Some(hash.into()),
            readiness: Readiness::None,
        }
    }

    #[test]
    fn a_write_is_remembered_until_the_watch_shows_the_object() {
        let c = Cache::default();
        let mark = c.mark(0, "a");
        c.wrote(0, "a", mark, Pending::Applied("h1".into()));
        assert_eq!(c.view(0, "a"), View::Applied("h1".into()));
        c.change(0, Change::Applied("a".into(), seen("h1")));
        assert_eq!(c.view(0, "a"), View::Present(seen("h1")));
        // Someone else's change after ours is what the watch says.
        c.change(0, Change::Applied("a".into(), seen("h2")));
        assert_eq!(c.view(0, "a").hash(), Some("h2"));
    }

    #[test]
    fn an_event_during_the_write_wins_over_the_write() {
        let c = Cache::default();
        let mark = c.mark(0, "a");
        // The write's own event came back before its response.
        c.change(0, Change::Applied("a".into(), seen("h1")));
        c.wrote(0, "a", mark, Pending::Applied("h1".into()));
        assert_eq!(c.view(0, "a"), View::Present(seen("h1")));
        let mark = c.mark(0, "a");
        c.change(0, Change::Deleted("a".into()));
        c.wrote(0, "a", mark, Pending::Deleted);
        assert_eq!(c.view(0, "a"), View::Absent);
        assert!(c.names_of("foreman").is_empty());
    }

    #[test]
    fn a_relist_replaces_what_the_kind_held() {
        let c = Cache::default();
        c.change(1, Change::Applied("gone".into(), seen("h")));
        c.change(1, Change::Init);
        c.change(1, Change::Listed("kept".into(), seen("k")));
        assert_eq!(
            c.view(1, "gone").hash(),
            Some("h"),
            "until the list is complete"
        );
        c.change(1, Change::InitDone);
        assert_eq!(c.view(1, "gone"), View::Absent);
        assert_eq!(c.names_of("foreman"), vec![(1, "kept".to_string())]);
    }

    /// What a watch keeps of a Deployment and a Job as the API server sends them (managed
    /// fields, a whole pod template): the readiness fields, the images, the hash, the instance.
    #[test]
    fn a_watched_object_keeps_what_readiness_reads() {
        let deployment = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "foreman", "labels": {INSTANCE_LABEL: "foreman"},
                         "annotations": {HASH_ANNOTATION: "abc"},
                         "managedFields": [{"manager": "foreman-operator", "operation": "Apply",
                                            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                         "initContainers": [{"name": "wait", "image": "f:1", "command": ["x"]}],
                         "containers": [{"name": "web", "image": "f:1", "env": [{"name": "A", "value": "1"}]},
                                        {"name": "side", "image": "n:2"}]}}},
            "status": {"readyReplicas": 1, "conditions": [{"type": "Available", "status": "False"}]},
        });
        let mut d: Watched = serde_json::from_value(deployment).unwrap();
        d.job = false;
        let (name, seen) = full(d);
        assert_eq!(name, "foreman");
        assert_eq!(seen.instance.as_deref(), Some("foreman"));
        assert_eq!(seen.hash.as_deref(), Some("abc"));
        assert_eq!(
            seen.readiness,
            Readiness::Deployment {
                want: 2,
                ready: 1,
                images: vec!["f:1".into(), "n:2".into()],
            }
        );
        let job = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "annotations": {RETRY_ANNOTATION: "2"}},
            "spec": {"backoffLimit": 6, "template": {"spec": {"containers": [{"name": "m", "image": "f:1"}]}}},
            "status": {"failed": 7, "conditions": [
                {"type": "Complete", "status": "False"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "gave up"}]},
        });
        let mut j: Watched = serde_json::from_value(job).unwrap();
        j.job = true;
        assert_eq!(
            full(j).1.readiness,
            Readiness::Job {
                succeeded: 0,
                failed: 7,
                gave_up: Some(("BackoffLimitExceeded".into(), "gave up".into())),
                attempt: 2,
            }
        );
    }
}
