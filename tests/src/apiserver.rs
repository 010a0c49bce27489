//! A stand-in Kubernetes API server on loopback (plain HTTP/1.1) that keeps what clients write,
//! for the installer's and the operator's tests and benchmarks.
//!
//! It stores objects by their API path with a resourceVersion from one counter, and answers:
//! GET of objects (404 until created) and of lists (equality label selectors, the
//! `metadata.name` field selector), metadata-only reads (`as=PartialObjectMetadata[List]`, what
//! kube's `metadata_watcher` asks for), watches (`watch=true`: ADDED/MODIFIED/DELETED events
//! from the requested resourceVersion, held open until `timeoutSeconds`), pod logs; POST (409
//! AlreadyExists for a name that is taken); server-side apply the way the real API server does
//! it (creates or merges; managed fields per field manager; a change to a field another manager
//! owns is refused with 409 and a Status whose `details.causes` name the field and the manager,
//! unless the request forces it); the `status` subresource (apply or merge patch change only
//! `status`, the main resource ignores `status`); JSON merge patch; DELETE. Secrets keep their
//! data: `stringData` is stored as base64 `data`, as the real server does.
//!
//! Asked to, it plays the kubelet: a Deployment whose spec changed becomes available, a new Job
//! completes (or fails, for Jobs scripted to fail), each as a status change of its own with its
//! own watch event. Every request is recorded; tests script status transitions by changing
//! objects while a client runs.

use crate::loopback::Loopback;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The decoded query, e.g. `fieldManager=foreman-box`.
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: String,
    /// What the server answered.
    pub status: u16,
}

impl Request {
    /// A watch: held open, it streams events instead of answering once.
    pub fn is_watch(&self) -> bool {
        is_watch(&self.query)
    }

    /// Anything that may change something: not a GET.
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// `METHOD path`, the way tests compare requests.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What a watch event was.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change, kept for watches that start from an older resourceVersion.
struct Event {
    version: u64,
    path: String,
    change: Change,
    object: Value,
}

/// Jobs whose names start with `prefix` fail (the next `times` of them) when the kubelet runs
/// them.
struct JobFailure {
    prefix: String,
    times: u32,
}

/// The key suffix of a previous run's log.
const PREVIOUS: &str = "\u{0}previous";

struct State {
    objects: BTreeMap<String, Value>,
    /// (pod path, container) -> log text.
    logs: HashMap<(String, String), String>,
    requests: Vec<Request>,
    version: u64,
    events: Vec<Event>,
    /// Woken with the newest version on every change, for open watches.
    changed: tokio::sync::watch::Sender<u64>,
    kubelet: bool,
    job_failures: Vec<JobFailure>,
    /// Name prefixes of Jobs whose pods keep running: no status until a test sets one.
    job_holds: Vec<String>,
    /// Paths whose writes are refused with 422 Invalid and this message.
    invalid: BTreeMap<String, String>,
}

impl State {
    fn new() -> State {
        State {
            objects: BTreeMap::new(),
            logs: HashMap::new(),
            requests: Vec::new(),
            version: 0,
            events: Vec::new(),
            changed: tokio::sync::watch::channel(0).0,
            kubelet: false,
            job_failures: Vec::new(),
            job_holds: Vec::new(),
            invalid: BTreeMap::new(),
        }
    }

    /// Stores `obj` at `path` with a new resourceVersion and tells the watches.
    fn commit(&mut self, path: &str, mut obj: Value) -> Value {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let change = if self.objects.contains_key(path) {
            Change::Modified
        } else {
            Change::Added
        };
        self.objects.insert(path.to_string(), obj.clone());
        self.events.push(Event {
            version: self.version,
            path: path.to_string(),
            change,
            object: obj.clone(),
        });
        self.changed.send_replace(self.version);
        obj
    }

    /// Removes the object at `path`, if any, and tells the watches.
    fn remove(&mut self, path: &str) -> Option<Value> {
        let obj = self.objects.remove(path)?;
        self.version += 1;
        self.events.push(Event {
            version: self.version,
            path: path.to_string(),
            change: Change::Deleted,
            object: obj.clone(),
        });
        self.changed.send_replace(self.version);
        Some(obj)
    }

    /// A write by a client: stored, then, when the kubelet is played and the object's spec is
    /// new, its rollout (a second change, as the kubelet's status update is).
    fn write(&mut self, path: &str, obj: Value) -> Value {
        let spec_changed = self
            .objects
            .get(path)
            .is_none_or(|before| before["spec"] != obj["spec"]);
        let stored = self.commit(path, obj);
        if self.kubelet && spec_changed {
            if let Some(status) = self.rollout(&stored) {
                let mut done = stored.clone();
                done["status"] = status;
                self.commit(path, done);
            }
        }
        stored
    }

    /// The status the kubelet and the controllers report once `obj` ran: Deployments
    /// available, Jobs complete (or failed, when scripted).
    fn rollout(&mut self, obj: &Value) -> Option<Value> {
        let generation = obj["metadata"]["generation"].clone();
        match obj["kind"].as_str()? {
            "Deployment" => {
                let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
                Some(json!({
                    "observedGeneration": generation,
                    "replicas": replicas, "readyReplicas": replicas,
                    "updatedReplicas": replicas, "availableReplicas": replicas,
                    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}],
                }))
            }
            "Job" => {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                if self.job_holds.iter().any(|p| name.starts_with(p)) {
                    return None;
                }
                let fail = self
                    .job_failures
                    .iter_mut()
                    .find(|f| f.times > 0 && name.starts_with(&f.prefix));
                Some(match fail {
                    Some(f) => {
                        f.times -= 1;
                        let attempts = obj["spec"]["backoffLimit"].as_i64().unwrap_or(6) + 1;
                        json!({
                            "failed": attempts,
                            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}],
                        })
                    }
                    None => json!({
                        "succeeded": 1,
                        "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}],
                    }),
                })
            }
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct ApiServer {
    server: Loopback,
    state: Arc<Mutex<State>>,
}

/// The API path of an object: `/apis/apps/v1/namespaces/foreman/deployments/foreman`.
pub fn path_of(obj: &Value) -> String {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let kind = obj["kind"].as_str().expect("kind");
    let name = obj["metadata"]["name"].as_str().expect("metadata.name");
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let plural = plural(kind);
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{base}/namespaces/{ns}/{plural}/{name}"),
        None => format!("{base}/{plural}/{name}"),
    }
}

fn plural(kind: &str) -> String {
    match kind {
        "Foreman" => "foremans".into(),
        "Ingress" => "ingresses".into(),
        "NetworkPolicy" => "networkpolicies".into(),
        k => format!("{}s", k.to_ascii_lowercase()),
    }
}

impl ApiServer {
    /// Starts serving on 127.0.0.1 on a free port, on its own runtime thread.
    pub fn start() -> ApiServer {
        let state = Arc::new(Mutex::new(State::new()));
        ApiServer {
            server: Loopback::start(1, state.clone(), serve),
            state,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Writes a kubeconfig for this server into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url()}}],
            "users": [{"name": "test", "user": {"token": "stand-in-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "stand-in", "user": "test", "namespace": "foreman"}}],
            "current-context": "test",
        });
        // JSON is YAML: written through a serializer, as every generated file is.
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// Stores an object as it is (status included) and returns its path.
    pub fn put(&self, obj: Value) -> String {
        let path = path_of(&obj);
        self.state.lock().unwrap().commit(&path, obj);
        path
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// The objects directly under a collection path, e.g. `/apis/batch/v1/namespaces/foreman/jobs`.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let prefix = format!("{collection}/");
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(p, _)| p.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Deletes an object as `kubectl delete` would; false when there was none.
    pub fn delete(&self, path: &str) -> bool {
        self.state.lock().unwrap().remove(path).is_some()
    }

    /// Replaces an object's status, as a controller would.
    pub fn set_status(&self, path: &str, status: Value) {
        let mut st = self.state.lock().unwrap();
        let mut obj = st.objects.get(path).expect("object exists").clone();
        obj["status"] = status;
        st.commit(path, obj);
    }

    /// What `kubectl edit` does to one field: an Update by `manager`, who then owns the field.
    pub fn edit(&self, path: &str, field: &str, value: Value, manager: &str) {
        let mut st = self.state.lock().unwrap();
        let mut obj = st.objects.get(path).expect("object exists").clone();
        let field_path: Vec<String> = field.split('.').map(str::to_string).collect();
        set_at(&mut obj, &field_path, value);
        let api_version = obj["apiVersion"].clone();
        let mut entries = managed_entries(&obj);
        for e in &mut entries {
            e.fields.retain(|f| f != &field_path);
        }
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update")
        {
            Some(e) => e.fields.push(field_path),
            None => entries.push(Managed {
                manager: manager.into(),
                operation: "Update".into(),
                api_version: api_version.as_str().unwrap_or_default().into(),
                subresource: None,
                fields: vec![field_path],
            }),
        }
        entries.retain(|e| !e.fields.is_empty());
        set_managed(&mut obj, &entries);
        if field.starts_with("spec.") {
            bump_generation(&mut obj);
        }
        st.commit(path, obj);
    }

    /// Plays the kubelet from now on: every Deployment whose spec changes becomes available,
    /// every new Job completes (unless scripted to fail by [`ApiServer::fail_jobs`]).
    pub fn run_kubelet(&self, on: bool) {
        self.state.lock().unwrap().kubelet = on;
    }

    /// The next `times` Jobs whose names start with `prefix` fail as a Job that exhausted its
    /// backoffLimit does (`Failed`, reason `BackoffLimitExceeded`).
    pub fn fail_jobs(&self, prefix: &str, times: u32) {
        self.state.lock().unwrap().job_failures.push(JobFailure {
            prefix: prefix.into(),
            times,
        });
    }

    /// Jobs whose names start with `prefix` keep running from now on: the kubelet reports
    /// nothing for them until a test sets their status ([`ApiServer::set_status`]).
    pub fn hold_jobs(&self, prefix: &str) {
        self.state.lock().unwrap().job_holds.push(prefix.into());
    }

    /// Writes to `path` are refused with 422 Invalid and `message`, as the API server refuses
    /// an object that does not validate.
    pub fn refuse(&self, path: &str, message: &str) {
        self.state
            .lock()
            .unwrap()
            .invalid
            .insert(path.into(), message.into());
    }

    /// Serves `text` as the logs of `container` in pod `namespace/pod`.
    pub fn put_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.state.lock().unwrap().logs.insert(
            (
                format!("/api/v1/namespaces/{namespace}/pods/{pod}"),
                container.into(),
            ),
            text.into(),
        );
    }

    /// Serves `text` as the log of the previous run of `container` (`?previous=true`).
    pub fn put_previous_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.put_log(namespace, pod, &format!("{container}{PREVIOUS}"), text);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests were answered so far: a mark for [`ApiServer::requests_since`].
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    pub fn requests_since(&self, mark: usize) -> Vec<Request> {
        self.state.lock().unwrap().requests[mark..].to_vec()
    }

    /// Requests that may change something (anything but GET).
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_write)
            .collect()
    }

    /// The newest resourceVersion.
    pub fn version(&self) -> u64 {
        self.state.lock().unwrap().version
    }

    /// Waits, bounded, until an object exists at `path`.
    pub fn wait_for(&self, path: &str, timeout: Duration) -> Option<Value> {
        self.wait_until(path, timeout, |_| true)
    }

    /// Waits, bounded, until the object at `path` exists and satisfies `ready`; the object.
    pub fn wait_until(
        &self,
        path: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let started = Instant::now();
        loop {
            if let Some(v) = self.get(path).filter(|v| ready(v)) {
                return Some(v);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One `metadata.managedFields` entry, with its fields as leaf paths.
#[derive(Debug, Clone)]
struct Managed {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    fields: Vec<Vec<String>>,
}

fn managed_entries(obj: &Value) -> Vec<Managed> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let mut fields = Vec::new();
                    decode_fields(&e["fieldsV1"], &mut Vec::new(), &mut fields);
                    Managed {
                        manager: e["manager"].as_str().unwrap_or_default().into(),
                        operation: e["operation"].as_str().unwrap_or_default().into(),
                        api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                        subresource: e["subresource"].as_str().map(str::to_string),
                        fields,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_managed(obj: &mut Value, entries: &[Managed]) {
    obj["metadata"]["managedFields"] = entries
        .iter()
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(&e.fields),
            });
            if let Some(s) = &e.subresource {
                m["subresource"] = json!(s);
            }
            m
        })
        .collect();
}

/// fieldsV1: `{"f:spec": {"f:dynflow_workers": {}}}` for the leaf `spec.dynflow_workers`.
fn encode_fields(fields: &[Vec<String>]) -> Value {
    let mut root = Value::Object(Map::new());
    for f in fields {
        let mut node = &mut root;
        for k in f {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn decode_fields(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() && !prefix.is_empty() {
        out.push(prefix.clone());
    }
    for (k, v) in children {
        prefix.push(k[2..].to_string());
        decode_fields(v, prefix, out);
        prefix.pop();
    }
}

/// Leaf paths of what an apply sets: everything but the identity fields.
fn applied_fields(body: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, v) in m {
                    prefix.push(k.clone());
                    walk(v, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push((prefix.clone(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk(body, &mut Vec::new(), &mut out);
    out.retain(|(p, _)| {
        !matches!(
            p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
        )
    });
    out
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set_at(v: &mut Value, path: &[String], value: Value) {
    let mut node = v;
    for k in &path[..path.len() - 1] {
        if !node[k.as_str()].is_object() {
            node[k.as_str()] = json!({});
        }
        node = &mut node[k.as_str()];
    }
    node[path[path.len() - 1].as_str()] = value;
}

fn remove_at(v: &mut Value, path: &[String]) {
    let mut node = v;
    for k in &path[..path.len() - 1] {
        match node.get_mut(k) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(m) = node.as_object_mut() {
        m.remove(&path[path.len() - 1]);
    }
}

fn bump_generation(obj: &mut Value) {
    let g = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    obj["metadata"]["generation"] = json!(g + 1);
}

fn status_body(code: u16, reason: &str, message: &str, details: Value) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        s["details"] = details;
    }
    s
}

fn not_found(path: &str) -> (u16, Value) {
    let name = path.rsplit('/').next().unwrap_or_default();
    (
        404,
        status_body(
            404,
            "NotFound",
            &format!("\"{name}\" not found"),
            Value::Null,
        ),
    )
}

/// The name and namespace an object at `path` has.
fn identify(obj: &mut Value, path: &str) {
    let name = path.rsplit('/').next().unwrap_or_default();
    obj["metadata"]["name"] = json!(name);
    if let Some(ns) = path.split("/namespaces/").nth(1) {
        obj["metadata"]["namespace"] = json!(ns.split('/').next().unwrap_or_default());
    }
}

/// A new object's server-set metadata.
fn created(mut obj: Value, path: &str, version: u64) -> Value {
    identify(&mut obj, path);
    obj["metadata"]["uid"] = json!(format!("uid-{}", version + 1));
    obj["metadata"]["generation"] = json!(1);
    store_string_data(&mut obj);
    obj
}

/// As the API server does for Secrets: `stringData` is written into `data`, base64.
fn store_string_data(obj: &mut Value) {
    if obj["kind"] != "Secret" {
        return;
    }
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    if !obj["data"].is_object() {
        obj["data"] = json!({});
    }
    for (k, v) in sd.as_object().into_iter().flatten() {
        obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or_default()));
    }
}

/// Server-side apply of `body` by `manager` to the live object (None: it is created), on the
/// main resource (`status` ignored) or on the `status` subresource (only `status` changes).
/// The object to store, or the refusal.
fn apply(
    live: Option<&Value>,
    path: &str,
    mut body: Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    version: u64,
) -> Result<Value, (u16, Value)> {
    match subresource {
        Some(_) => {
            let status = body["status"].take();
            body = json!({"status": status});
        }
        None => {
            if let Some(o) = body.as_object_mut() {
                o.remove("status");
            }
        }
    }
    let fields = applied_fields(&body);
    let paths: Vec<Vec<String>> = fields.iter().map(|(p, _)| p.clone()).collect();
    let api_version = body["apiVersion"]
        .as_str()
        .or(live.and_then(|l| l["apiVersion"].as_str()))
        .unwrap_or_default()
        .to_string();
    let entry = Managed {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: api_version.clone(),
        subresource: subresource.map(str::to_string),
        fields: paths.clone(),
    };
    let Some(live) = live else {
        if subresource.is_some() {
            return Err(not_found(path));
        }
        let mut obj = created(body, path, version);
        set_managed(&mut obj, &[entry]);
        return Ok(obj);
    };
    let mut live = live.clone();
    let mut entries = managed_entries(&live);
    let same_scope = |e: &Managed| e.subresource.as_deref() == subresource;
    // Conflicts: a value we change in a field another manager owns.
    let mut conflicts = Vec::new();
    for (p, v) in &fields {
        if value_at(&live, p) == Some(v) {
            continue;
        }
        for e in entries
            .iter()
            .filter(|e| e.manager != manager && same_scope(e))
        {
            if e.fields.contains(p) {
                conflicts.push((p.join("."), e.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(f, e)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {}", e.manager, e.api_version), "field": format!(".{f}")}))
            .collect();
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts
                .iter()
                .map(|(f, e)| format!(
                    "conflict with \"{}\" using {}: .{f}",
                    e.manager, e.api_version
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return Err((
            409,
            status_body(409, "Conflict", &message, json!({"causes": causes})),
        ));
    }
    // Fields this manager set before and no longer sets go, unless someone else owns them.
    let previously: Vec<Vec<String>> = entries
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply" && same_scope(e))
        .flat_map(|e| e.fields.clone())
        .collect();
    for p in previously.iter().filter(|p| !paths.contains(p)) {
        let shared = entries
            .iter()
            .any(|e| e.manager != manager && e.fields.contains(p));
        if !shared {
            remove_at(&mut live, p);
        }
    }
    let spec_before = live["spec"].clone();
    for (p, v) in &fields {
        set_at(&mut live, p, v.clone());
    }
    if force {
        for e in entries
            .iter_mut()
            .filter(|e| e.manager != manager && same_scope(e))
        {
            e.fields.retain(|f| !paths.contains(f));
        }
    }
    entries.retain(|e| !(e.manager == manager && e.operation == "Apply" && same_scope(e)));
    entries.push(entry);
    entries.retain(|e| !e.fields.is_empty());
    set_managed(&mut live, &entries);
    if spec_before != live["spec"] {
        bump_generation(&mut live);
    }
    Ok(live)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(c) => {
                        out.push(c);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn is_watch(query: &BTreeMap<String, String>) -> bool {
    query.get("watch").is_some_and(|w| w == "true" || w == "1")
}

/// `/api/v1/namespaces/NS/pods`, `/apis/G/V/customresourcedefinitions`: a list, not an object.
fn is_collection(path: &str) -> bool {
    match path.split_once("/namespaces/") {
        Some((_, rest)) => rest.split('/').count() == 2,
        None => {
            let segments = path.trim_start_matches('/').split('/').count();
            segments == if path.starts_with("/apis/") { 4 } else { 3 }
        }
    }
}

/// Objects directly under the collection `path`.
fn in_collection(object_path: &str, collection: &str) -> bool {
    object_path
        .strip_prefix(collection)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|rest| !rest.contains('/'))
}

/// Equality label selectors and the `metadata.name` field selector.
fn selected(obj: &Value, query: &BTreeMap<String, String>) -> bool {
    let terms = |key: &str| {
        query
            .get(key)
            .filter(|s| !s.is_empty())
            .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let labels = terms("labelSelector")
        .into_iter()
        .all(|term| match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k.trim()].as_str() == Some(v.trim()),
            None => false,
        });
    let fields = terms("fieldSelector")
        .into_iter()
        .all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => obj["metadata"]["name"].as_str() == Some(v),
            _ => false,
        });
    labels && fields
}

/// What a metadata-only read returns for `obj`.
fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
}

fn metadata_only(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// One request, parsed.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    content_type: Option<&'a str>,
    accept: Option<&'a str>,
    body: &'a str,
}

/// Answers one request: (status, content type, body).
fn answer(st: &mut State, c: &Call) -> (u16, &'static str, String) {
    let json_answer = |(code, v): (u16, Value)| (code, "application/json", v.to_string());
    let (object_path, subresource) = match c.path.strip_suffix("/status") {
        Some(p) if !is_collection(c.path) => (p, Some("status")),
        _ => (c.path, None),
    };
    if c.method != "GET" {
        if let Some(message) = st.invalid.get(object_path) {
            return json_answer((422, status_body(422, "Invalid", message, Value::Null)));
        }
    }
    match c.method {
        "GET" => {
            if let Some(pod) = c.path.strip_suffix("/log") {
                let mut container = c.query.get("container").cloned().unwrap_or_default();
                if c.query.get("previous").is_some_and(|p| p == "true") {
                    container.push_str(PREVIOUS);
                }
                return match st.logs.get(&(pod.to_string(), container)) {
                    Some(text) => (200, "text/plain", text.clone()),
                    None => {
                        json_answer((404, status_body(404, "NotFound", "no logs", Value::Null)))
                    }
                };
            }
            json_answer(read(st, c.path, object_path, c.query, c.accept))
        }
        "PATCH" => json_answer(patch(st, c, object_path, subresource)),
        "POST" if is_collection(c.path) => json_answer(create(st, c.path, c.body)),
        "DELETE" => json_answer(match st.remove(c.path) {
            Some(obj) => (200, obj),
            None => not_found(c.path),
        }),
        _ => json_answer((
            405,
            status_body(
                405,
                "MethodNotAllowed",
                "the stand-in does not serve this",
                Value::Null,
            ),
        )),
    }
}

fn read(
    st: &State,
    path: &str,
    object_path: &str,
    query: &BTreeMap<String, String>,
    accept: Option<&str>,
) -> (u16, Value) {
    let as_partial = metadata_only(accept);
    if let Some(obj) = st.objects.get(object_path) {
        return (
            200,
            if as_partial {
                partial(obj)
            } else {
                obj.clone()
            },
        );
    }
    if !is_collection(path) {
        return not_found(path);
    }
    let items: Vec<Value> = st
        .objects
        .iter()
        .filter(|(p, o)| in_collection(p, path) && selected(o, query))
        .map(|(_, o)| if as_partial { partial(o) } else { o.clone() })
        .collect();
    let kind = if as_partial {
        "PartialObjectMetadataList"
    } else {
        "List"
    };
    (
        200,
        json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": st.version.to_string()}, "items": items}),
    )
}

fn patch(st: &mut State, c: &Call, object_path: &str, subresource: Option<&str>) -> (u16, Value) {
    let Ok(body) = serde_json::from_str::<Value>(c.body) else {
        return (
            400,
            status_body(
                400,
                "BadRequest",
                "the stand-in reads JSON patch bodies only",
                Value::Null,
            ),
        );
    };
    let live = st.objects.get(object_path);
    let result = match c.content_type {
        Some("application/apply-patch+yaml") => {
            let Some(manager) = c.query.get("fieldManager") else {
                return (
                    400,
                    status_body(
                        400,
                        "BadRequest",
                        "fieldManager is required for apply requests",
                        Value::Null,
                    ),
                );
            };
            let force = c.query.get("force").is_some_and(|f| f == "true");
            apply(
                live,
                object_path,
                body,
                manager,
                force,
                subresource,
                st.version,
            )
        }
        Some("application/merge-patch+json") => match live {
            None => Err(not_found(object_path)),
            Some(live) => {
                let mut obj = live.clone();
                match subresource {
                    Some(_) => merge_patch(&mut obj["status"], &body["status"]),
                    None => {
                        let spec_before = obj["spec"].clone();
                        let mut body = body;
                        if let Some(o) = body.as_object_mut() {
                            o.remove("status");
                        }
                        merge_patch(&mut obj, &body);
                        store_string_data(&mut obj);
                        if spec_before != obj["spec"] {
                            bump_generation(&mut obj);
                        }
                    }
                }
                Ok(obj)
            }
        },
        other => Err((
            415,
            status_body(
                415,
                "UnsupportedMediaType",
                &format!("the stand-in does not serve patches of type {other:?}"),
                Value::Null,
            ),
        )),
    };
    let existed = live.is_some();
    match result {
        Err(refusal) => refusal,
        // An apply that changes nothing is no write: same resourceVersion, no event.
        Ok(obj) if st.objects.get(object_path) == Some(&obj) => (200, obj),
        Ok(obj) => {
            let stored = st.write(object_path, obj);
            (if existed { 200 } else { 201 }, stored)
        }
    }
}

fn create(st: &mut State, path: &str, body: &str) -> (u16, Value) {
    let Ok(obj) = serde_json::from_str::<Value>(body) else {
        return (
            400,
            status_body(
                400,
                "BadRequest",
                "the stand-in reads JSON bodies only",
                Value::Null,
            ),
        );
    };
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return (
            422,
            status_body(422, "Invalid", "metadata.name: Required value", Value::Null),
        );
    };
    let at = format!("{path}/{name}");
    if st.objects.contains_key(&at) {
        return (
            409,
            status_body(
                409,
                "AlreadyExists",
                &format!("\"{name}\" already exists"),
                json!({"name": name}),
            ),
        );
    }
    let obj = created(obj, &at, st.version);
    (201, st.write(&at, obj))
}

/// A watch on the collection `path`: the events after the requested resourceVersion (all
/// objects as ADDED when it is 0 or absent), then every change as it happens, until
/// `timeoutSeconds` or the client goes away.
async fn watch(
    sock: &mut TcpStream,
    state: &Mutex<State>,
    path: &str,
    query: &BTreeMap<String, String>,
    as_partial: bool,
) -> std::io::Result<()> {
    let timeout = Duration::from_secs(
        query
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (mut changed, mut lines, mut seen) = {
        let st = state.lock().unwrap();
        let rx = st.changed.subscribe();
        if since == 0 {
            let lines: Vec<String> = st
                .objects
                .iter()
                .filter(|(p, o)| in_collection(p, path) && selected(o, query))
                .map(|(_, o)| event_line("ADDED", o, as_partial))
                .collect();
            (rx, lines, st.version)
        } else {
            (rx, Vec::new(), since)
        }
    };
    sock.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await?;
    loop {
        {
            let st = state.lock().unwrap();
            let start = st.events.partition_point(|e| e.version <= seen);
            for e in &st.events[start..] {
                if in_collection(&e.path, path) && selected(&e.object, query) {
                    let kind = match e.change {
                        Change::Added => "ADDED",
                        Change::Modified => "MODIFIED",
                        Change::Deleted => "DELETED",
                    };
                    lines.push(event_line(kind, &e.object, as_partial));
                }
            }
            seen = st.version;
        }
        for line in lines.drain(..) {
            sock.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                .await?;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    sock.write_all(b"0\r\n\r\n").await
}

fn event_line(kind: &str, obj: &Value, as_partial: bool) -> String {
    let object = if as_partial {
        partial(obj)
    } else {
        obj.clone()
    };
    format!("{}\n", json!({"type": kind, "object": object}))
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + len {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[header_end..header_end + len]).into_owned();
        buf.drain(..header_end + len);
        let mut first = head.lines().next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let query = parse_query(query);
        let content_type = header("content-type");
        let accept = header("accept");
        let record = |status: u16, query: BTreeMap<String, String>, body: String| Request {
            method: method.clone(),
            path: path.to_string(),
            query,
            content_type: content_type.clone(),
            accept: accept.clone(),
            body,
            status,
        };
        if method == "GET" && is_watch(&query) && is_collection(path) {
            state
                .lock()
                .unwrap()
                .requests
                .push(record(200, query.clone(), body));
            watch(
                &mut sock,
                &state,
                path,
                &query,
                metadata_only(accept.as_deref()),
            )
            .await?;
            continue;
        }
        let (code, ctype, reply) = {
            let mut st = state.lock().unwrap();
            let call = Call {
                method: &method,
                path,
                query: &query,
                content_type: content_type.as_deref(),
                accept: accept.as_deref(),
                body: &body,
            };
            let (code, ctype, reply) = answer(&mut st, &call);
            let request = record(code, query.clone(), body.clone());
            st.requests.push(request);
            (code, ctype, reply)
        };
        let msg = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        sock.write_all(msg.as_bytes()).await?;
    }
}

/// The CRD of `Foreman`, Established, as the API server reports it once it serves the kind.
pub fn established_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "foremans.app.theforeman.org"},
        "spec": {"group": "app.theforeman.org", "scope": "Namespaced",
                 "names": {"kind": "Foreman", "plural": "foremans", "singular": "foreman"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true}]},
        "status": {"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]},
    })
}

/// The operator Deployment, Available.
pub fn available_operator() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "foreman-operator", "namespace": "foreman", "labels": {"app.kubernetes.io/name": "foreman-operator"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "foreman-operator"}}, "template": {}},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."}]},
    })
}

/// A database Secret with every key the operator checks (values are placeholders).
pub fn database_secret(namespace: &str, name: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"host": b64.encode("postgres"), "port": b64.encode("5432"), "name": b64.encode(name),
                 "user": b64.encode(name), "password": b64.encode("stand-in")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreman(workers: u32) -> Value {
        json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "metadata": {"name": "foreman", "namespace": "foreman"}, "spec": {"dynflow_workers": workers}})
    }

    fn apply_at(st: &mut State, path: &str, body: Value, manager: &str, force: bool) -> u16 {
        let call = Call {
            method: "PATCH",
            path,
            query: &parse_query(&format!("fieldManager={manager}&force={force}")),
            content_type: Some("application/apply-patch+yaml"),
            accept: None,
            body: &body.to_string(),
        };
        answer(st, &call).0
    }

    #[test]
    fn apply_creates_then_refuses_a_field_another_manager_changed() {
        let mut st = State::new();
        let path = path_of(&foreman(2));
        assert_eq!(apply_at(&mut st, &path, foreman(2), "a", false), 201);
        assert_eq!(apply_at(&mut st, &path, foreman(2), "a", false), 200);
        assert_eq!(st.objects[&path]["metadata"]["generation"], 1);
        // Another applier agreeing on the value shares the field: no conflict.
        assert_eq!(apply_at(&mut st, &path, foreman(2), "b", false), 200);
        let live = st.objects.get(&path).cloned();
        let (code, status) = apply(
            live.as_ref(),
            &path,
            foreman(3),
            "a",
            false,
            None,
            st.version,
        )
        .unwrap_err();
        assert_eq!(code, 409);
        assert_eq!(
            status["details"]["causes"][0]["field"],
            ".spec.dynflow_workers"
        );
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "conflict with \"b\" using app.theforeman.org/v1alpha1"
        );
        assert_eq!(st.objects[&path]["spec"]["dynflow_workers"], 2);
        assert_eq!(apply_at(&mut st, &path, foreman(3), "a", true), 200);
        assert_eq!(st.objects[&path]["metadata"]["generation"], 2);
    }

    #[test]
    fn an_apply_that_changes_nothing_keeps_the_resource_version() {
        let mut st = State::new();
        let path = path_of(&foreman(2));
        apply_at(&mut st, &path, foreman(2), "a", false);
        let (version, events) = (st.version, st.events.len());
        apply_at(&mut st, &path, foreman(2), "a", false);
        assert_eq!((st.version, st.events.len()), (version, events));
        assert_eq!(
            st.objects[&path]["metadata"]["resourceVersion"],
            version.to_string()
        );
    }

    #[test]
    fn status_subresource_changes_only_the_status() {
        let mut st = State::new();
        let path = path_of(&foreman(2));
        apply_at(&mut st, &path, foreman(2), "installer", false);
        let mut body = foreman(9);
        body["status"] = json!({"url": "https://x"});
        assert_eq!(
            apply_at(&mut st, &format!("{path}/status"), body.clone(), "op", true),
            200
        );
        assert_eq!(st.objects[&path]["spec"]["dynflow_workers"], 2);
        assert_eq!(st.objects[&path]["status"]["url"], "https://x");
        assert_eq!(st.objects[&path]["metadata"]["generation"], 1);
        // The main resource ignores status.
        body["status"] = json!({"url": "https://y"});
        apply_at(&mut st, &path, body, "installer", true);
        assert_eq!(st.objects[&path]["status"]["url"], "https://x");
        assert_eq!(st.objects[&path]["spec"]["dynflow_workers"], 9);
    }

    #[test]
    fn secrets_keep_string_data_as_base64_data() {
        let mut st = State::new();
        let call = Call {
            method: "POST",
            path: "/api/v1/namespaces/foreman/secrets",
            query: &BTreeMap::new(),
            content_type: Some("application/json"),
            accept: None,
            body: r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"stringData":{"a":"x"}}"#,
        };
        assert_eq!(answer(&mut st, &call).0, 201);
        let merge = Call {
            method: "PATCH",
            path: "/api/v1/namespaces/foreman/secrets/s",
            content_type: Some("application/merge-patch+json"),
            body: r#"{"stringData":{"b":"y"}}"#,
            ..call
        };
        assert_eq!(answer(&mut st, &merge).0, 200);
        let s = &st.objects["/api/v1/namespaces/foreman/secrets/s"];
        assert_eq!(s["data"], json!({"a": "eA==", "b": "eQ=="}));
        assert!(s.get("stringData").is_none());
        assert_eq!(s["metadata"]["namespace"], "foreman");
    }

    #[test]
    fn the_kubelet_rolls_out_deployments_and_fails_scripted_jobs() {
        let mut st = State::new();
        st.kubelet = true;
        st.job_failures.push(JobFailure {
            prefix: "migrate-".into(),
            times: 1,
        });
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}, "spec": {"replicas": 2}});
        let job = |name: &str| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "n"}, "spec": {"backoffLimit": 2}});
        for o in [dep.clone(), job("migrate-a"), job("migrate-b")] {
            apply_at(&mut st, &path_of(&o), o, "op", true);
        }
        assert_eq!(
            st.objects[&path_of(&dep)]["status"]["readyReplicas"],
            2,
            "available"
        );
        let a = &st.objects["/apis/batch/v1/namespaces/n/jobs/migrate-a"]["status"];
        assert_eq!(a["failed"], 3);
        assert_eq!(a["conditions"][0]["reason"], "BackoffLimitExceeded");
        let b = &st.objects["/apis/batch/v1/namespaces/n/jobs/migrate-b"]["status"];
        assert_eq!(b["succeeded"], 1, "only one failure was scripted");
        // Each status came as a change of its own: created, then rolled out.
        let changes: Vec<Change> = st
            .events
            .iter()
            .filter(|e| e.path.ends_with("/d"))
            .map(|e| e.change)
            .collect();
        assert_eq!(changes, [Change::Added, Change::Modified]);
    }

    #[test]
    fn metadata_reads_leave_out_everything_but_metadata() {
        let mut st = State::new();
        let path = path_of(&foreman(2));
        apply_at(&mut st, &path, foreman(2), "a", false);
        let q = BTreeMap::new();
        let accept = Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1");
        let (code, list) = read(
            &st,
            "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans",
            "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans",
            &q,
            accept,
        );
        assert_eq!(code, 200);
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(list["items"][0]["metadata"]["name"], "foreman");
        assert!(list["items"][0].get("spec").is_none());
    }

    #[test]
    fn watch_streams_what_changed_after_the_version_asked_for() {
        let api = ApiServer::start();
        let first = api.put(foreman(1));
        let from = api.version();
        api.edit(&first, "spec.dynflow_workers", json!(4), "kubectl");
        let url = format!(
            "{}/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans?watch=true&timeoutSeconds=1&resourceVersion={from}",
            api.url()
        );
        let text = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
        });
        std::thread::sleep(Duration::from_millis(200));
        api.delete(&first);
        let text = text.join().unwrap();
        let types: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(types, ["\"MODIFIED\"", "\"DELETED\""], "{text}");
    }

    #[test]
    fn queries_are_decoded() {
        let q = parse_query("labelSelector=app.kubernetes.io%2Finstance%3Dforeman&fieldManager=x");
        assert_eq!(q["labelSelector"], "app.kubernetes.io/instance=foreman");
        assert_eq!(q["fieldManager"], "x");
    }
}
