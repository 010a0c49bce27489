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
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), namespace, &ar);
                    watcher(api, config.clone())
                        .default_backoff()
                        .filter_map(move |e| {
                            std::future::ready(cache.observe(kind, e, |o| full(k, o)))
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

fn full(kind: &str, o: DynamicObject) -> (String, Seen) {
    let readiness = readiness(kind, &o.data, &o.metadata);
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

/// The images of a pod spec's containers and init containers, sorted, each once.
pub fn pod_images(pod: &serde_json::Value) -> Vec<String> {
    let mut images: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect();
    images.sort();
    images.dedup();
    images
}

fn readiness(kind: &str, data: &serde_json::Value, meta: &ObjectMeta) -> Readiness {
    let status = &data["status"];
    let int = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    match kind {
        "Deployment" => Readiness::Deployment {
            want: data["spec"]["replicas"].as_i64().unwrap_or(1),
            ready: int(&status["readyReplicas"]),
            images: pod_images(&data["spec"]["template"]["spec"]),
        },
        "Job" => {
            let gave_up = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Failed" && c["status"] == "True")
                .map(|c| {
                    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                    (text("reason"), text("message"))
                });
            let attempt = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(RETRY_ANNOTATION))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Readiness::Job {
                succeeded: int(&status["succeeded"]),
                failed: int(&status["failed"]),
                gave_up,
                attempt,
            }
        }
        _ => Readiness::None,
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
}
