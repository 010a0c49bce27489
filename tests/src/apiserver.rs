//! A stand-in Kubernetes API server on loopback (plain HTTP/1.1): it stores objects by their API
//! path, answers GET for objects and lists (with equality label selectors), pod logs, and
//! create (POST, 409 AlreadyExists for a name that is taken), server-side apply the way the real
//! API server does it: managed fields per field manager, and
//! a change to a field another manager owns is refused with 409 and a Status whose
//! `details.causes` name the field and the manager, unless the request forces it. Every request
//! is recorded; tests script status transitions by changing objects while a client runs.

use crate::loopback::Loopback;
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
    pub body: String,
    /// What the server answered.
    pub status: u16,
}

/// The key suffix of a previous run's log.
const PREVIOUS: &str = "\u{0}previous";

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    /// (pod path, container) -> log text.
    logs: HashMap<(String, String), String>,
    requests: Vec<Request>,
    version: u64,
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
        k => format!("{}s", k.to_ascii_lowercase()),
    }
}

impl ApiServer {
    /// Starts serving on 127.0.0.1 on a free port, on its own runtime thread.
    pub fn start() -> ApiServer {
        let state = Arc::new(Mutex::new(State::default()));
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
    pub fn put(&self, mut obj: Value) -> String {
        let path = path_of(&obj);
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        obj["metadata"]["resourceVersion"] = json!(st.version.to_string());
        st.objects.insert(path.clone(), obj);
        path
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Replaces an object's status, as a controller would.
    pub fn set_status(&self, path: &str, status: Value) {
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        let v = st.version;
        let obj = st.objects.get_mut(path).expect("object exists");
        obj["status"] = status;
        obj["metadata"]["resourceVersion"] = json!(v.to_string());
    }

    /// What `kubectl edit` does to one field: an Update by `manager`, who then owns the field.
    pub fn edit(&self, path: &str, field: &str, value: Value, manager: &str) {
        let mut st = self.state.lock().unwrap();
        st.version += 1;
        let v = st.version;
        let obj = st.objects.get_mut(path).expect("object exists");
        let field_path: Vec<String> = field.split('.').map(str::to_string).collect();
        set_at(obj, &field_path, value);
        let api_version = obj["apiVersion"].clone();
        let mut entries = managed_entries(obj);
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
                fields: vec![field_path],
            }),
        }
        entries.retain(|e| !e.fields.is_empty());
        set_managed(obj, &entries);
        if field.starts_with("spec.") {
            bump_generation(obj);
        }
        obj["metadata"]["resourceVersion"] = json!(v.to_string());
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

    /// Requests that may change something (anything but GET).
    pub fn writes(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }

    /// Waits, bounded, until an object exists at `path`.
    pub fn wait_for(&self, path: &str, timeout: Duration) -> Option<Value> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(v) = self.get(path) {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// One `metadata.managedFields` entry, with its fields as leaf paths.
#[derive(Debug, Clone)]
struct Managed {
    manager: String,
    operation: String,
    api_version: String,
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
            json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(&e.fields),
            })
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

/// Server-side apply of `body` at `path` by `manager`.
fn apply(st: &mut State, path: &str, body: Value, manager: &str, force: bool) -> (u16, Value) {
    let fields = applied_fields(&body);
    let paths: Vec<Vec<String>> = fields.iter().map(|(p, _)| p.clone()).collect();
    let api_version = body["apiVersion"].as_str().unwrap_or_default().to_string();
    st.version += 1;
    let version = st.version.to_string();
    let Some(live) = st.objects.get_mut(path) else {
        let mut obj = body.clone();
        let name = path.rsplit('/').next().unwrap().to_string();
        obj["metadata"]["name"] = json!(name);
        if let Some(ns) = path.split("/namespaces/").nth(1) {
            obj["metadata"]["namespace"] = json!(ns.split('/').next().unwrap());
        }
        obj["metadata"]["uid"] = json!(format!("uid-{version}"));
        obj["metadata"]["generation"] = json!(1);
        obj["metadata"]["resourceVersion"] = json!(version);
        set_managed(
            &mut obj,
            &[Managed {
                manager: manager.into(),
                operation: "Apply".into(),
                api_version,
                fields: paths,
            }],
        );
        st.objects.insert(path.to_string(), obj.clone());
        return (201, obj);
    };
    let mut entries = managed_entries(live);
    // Conflicts: a value we change in a field another manager owns.
    let mut conflicts = Vec::new();
    for (p, v) in &fields {
        if value_at(live, p) == Some(v) {
            continue;
        }
        for e in entries.iter().filter(|e| e.manager != manager) {
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
        return (
            409,
            status_body(409, "Conflict", &message, json!({"causes": causes})),
        );
    }
    let before = live.clone();
    // Fields this manager set before and no longer sets go, unless someone else owns them.
    let previously: Vec<Vec<String>> = entries
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply")
        .flat_map(|e| e.fields.clone())
        .collect();
    for p in previously.iter().filter(|p| !paths.contains(p)) {
        let shared = entries
            .iter()
            .any(|e| e.manager != manager && e.fields.contains(p));
        if !shared {
            remove_at(live, p);
        }
    }
    for (p, v) in &fields {
        set_at(live, p, v.clone());
    }
    if force {
        for e in entries.iter_mut().filter(|e| e.manager != manager) {
            e.fields.retain(|f| !paths.contains(f));
        }
    }
    entries.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    entries.push(Managed {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version,
        fields: paths,
    });
    entries.retain(|e| !e.fields.is_empty());
    set_managed(live, &entries);
    if before["spec"] != live["spec"] {
        bump_generation(live);
    }
    if before != *live {
        live["metadata"]["resourceVersion"] = json!(version);
    }
    (200, live.clone())
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

fn matches_selector(obj: &Value, selector: Option<&String>) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    sel.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k.trim()].as_str() == Some(v.trim()),
        None => false,
    })
}

/// Answers one request: (status, content type, body).
fn answer(
    st: &mut State,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, &'static str, String) {
    let json_answer = |code: u16, v: Value| (code, "application/json", v.to_string());
    match method {
        "GET" => {
            if let Some(pod) = path.strip_suffix("/log") {
                let mut container = query.get("container").cloned().unwrap_or_default();
                if query.get("previous").is_some_and(|p| p == "true") {
                    container.push_str(PREVIOUS);
                }
                return match st.logs.get(&(pod.to_string(), container)) {
                    Some(text) => (200, "text/plain", text.clone()),
                    None => json_answer(404, status_body(404, "NotFound", "no logs", Value::Null)),
                };
            }
            if let Some(obj) = st.objects.get(path) {
                return json_answer(200, obj.clone());
            }
            let prefix = format!("{path}/");
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.contains('/'))
                })
                .map(|(_, o)| o.clone())
                .filter(|o| matches_selector(o, query.get("labelSelector")))
                .collect();
            if !is_collection(path) {
                let name = path.rsplit('/').next().unwrap_or_default();
                return json_answer(
                    404,
                    status_body(
                        404,
                        "NotFound",
                        &format!("\"{name}\" not found"),
                        Value::Null,
                    ),
                );
            }
            json_answer(
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": st.version.to_string()}, "items": items}),
            )
        }
        "PATCH" if content_type == Some("application/apply-patch+yaml") => {
            let Some(manager) = query.get("fieldManager") else {
                return json_answer(
                    400,
                    status_body(
                        400,
                        "BadRequest",
                        "fieldManager is required for apply requests",
                        Value::Null,
                    ),
                );
            };
            let Ok(body) = serde_json::from_str::<Value>(body) else {
                return json_answer(
                    400,
                    status_body(
                        400,
                        "BadRequest",
                        "the stand-in reads JSON apply bodies only",
                        Value::Null,
                    ),
                );
            };
            let force = query.get("force").is_some_and(|f| f == "true");
            let manager = manager.clone();
            let (code, v) = apply(st, path, body, &manager, force);
            json_answer(code, v)
        }
        "POST" if is_collection(path) => {
            let Ok(mut obj) = serde_json::from_str::<Value>(body) else {
                return json_answer(
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
                return json_answer(
                    422,
                    status_body(422, "Invalid", "metadata.name: Required value", Value::Null),
                );
            };
            let at = format!("{path}/{name}");
            if st.objects.contains_key(&at) {
                return json_answer(
                    409,
                    status_body(
                        409,
                        "AlreadyExists",
                        &format!("\"{name}\" already exists"),
                        json!({"name": name}),
                    ),
                );
            }
            st.version += 1;
            obj["metadata"]["resourceVersion"] = json!(st.version.to_string());
            obj["metadata"]["uid"] = json!(format!("uid-{}", st.version));
            st.objects.insert(at, obj.clone());
            json_answer(201, obj)
        }
        _ => json_answer(
            405,
            status_body(
                405,
                "MethodNotAllowed",
                "the stand-in does not serve this",
                Value::Null,
            ),
        ),
    }
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
        let (code, ctype, reply) = {
            let mut st = state.lock().unwrap();
            let (code, ctype, reply) = answer(
                &mut st,
                &method,
                path,
                &query,
                content_type.as_deref(),
                &body,
            );
            st.requests.push(Request {
                method,
                path: path.to_string(),
                query,
                content_type,
                body,
                status: code,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn foreman(workers: u32) -> Value {
        json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "metadata": {"name": "foreman", "namespace": "foreman"}, "spec": {"dynflow_workers": workers}})
    }

    #[test]
    fn apply_creates_then_refuses_a_field_another_manager_changed() {
        let mut st = State::default();
        let path = path_of(&foreman(2));
        assert_eq!(apply(&mut st, &path, foreman(2), "a", false).0, 201);
        assert_eq!(apply(&mut st, &path, foreman(2), "a", false).0, 200);
        assert_eq!(st.objects[&path]["metadata"]["generation"], 1);
        // Another applier agreeing on the value shares the field: no conflict.
        assert_eq!(apply(&mut st, &path, foreman(2), "b", false).0, 200);
        let (code, status) = apply(&mut st, &path, foreman(3), "a", false);
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
        assert_eq!(apply(&mut st, &path, foreman(3), "a", true).0, 200);
        assert_eq!(st.objects[&path]["metadata"]["generation"], 2);
    }

    #[test]
    fn queries_are_decoded() {
        let q = parse_query("labelSelector=app.kubernetes.io%2Finstance%3Dforeman&fieldManager=x");
        assert_eq!(q["labelSelector"], "app.kubernetes.io/instance=foreman");
        assert_eq!(q["fieldManager"], "x");
    }
}
