use foreman_operator::controller::{reconcile, Context};
use foreman_operator::resources::{desired, read_foreman};
use foreman_operator::Foreman;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One request the operator made: method, path with query, and body.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    body: Value,
}

impl Req {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path.split('?').next().unwrap())
    }
}

/// A tiny API server: Secrets and managed objects by path, answering get, list, patch, create,
/// delete the way the real one would for these requests.
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<String, Value>,
    /// Paths whose apply the server refuses, with the message it gives.
    reject: BTreeMap<String, String>,
}

const NS: &str = "/api/v1/namespaces/foreman";

fn collection_of(path: &str) -> Option<(String, String)> {
    let (base, name) = path.rsplit_once('/')?;
    Some((base.to_string(), name.to_string()))
}

impl Cluster {
    fn with_db_secrets(names: &[&str]) -> Self {
        let mut c = Cluster::default();
        for n in names {
            let data: BTreeMap<&str, &str> = ["host", "port", "name", "user", "password"]
                .iter()
                .map(|k| (*k, "eA=="))
                .collect();
            c.objects.insert(format!("{NS}/secrets/{n}"), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n, "namespace": "foreman"}, "data": data}));
        }
        c
    }

    fn answer(&mut self, r: &Req) -> (u16, Value) {
        let path = r.path.split('?').next().unwrap().to_string();
        match r.method.as_str() {
            "GET" if r.path.contains("labelSelector") => {
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| collection_of(k).is_some_and(|(base, _)| base == path))
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            "GET" => match self.objects.get(&path) {
                Some(o) => (200, o.clone()),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            },
            "POST" => {
                let name = r.body["metadata"]["name"].as_str().unwrap().to_string();
                let mut stored = r.body.clone();
                // As the API server does: stringData is stored as data.
                if let Some(sd) = stored.as_object_mut().unwrap().remove("stringData") {
                    let data: BTreeMap<String, String> = sd
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), b64(v.as_str().unwrap())))
                        .collect();
                    stored["data"] = json!(data);
                }
                self.objects
                    .insert(format!("{path}/{name}"), stored.clone());
                (201, stored)
            }
            "PATCH" if self.reject.contains_key(&path) => (
                422,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": self.reject[&path]}),
            ),
            "PATCH" if path.ends_with("/status") => {
                (200, foreman_json(Some(r.body["status"].clone())))
            }
            "PATCH" => {
                self.objects.insert(path, r.body.clone());
                (200, r.body.clone())
            }
            "DELETE" => {
                self.objects.remove(&path);
                (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                )
            }
            m => panic!("unexpected {m} {path}"),
        }
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn foreman_json(status: Option<Value>) -> Value {
    json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "metadata": {"name": "foreman", "namespace": "foreman", "uid": "u-1", "generation": 1}, "spec": {}, "status": status})
}

fn foreman(katello: bool, rex: bool) -> Foreman {
    read_foreman("test", &format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman, uid: u-1, generation: 1}}\nspec:\n  hostname: foreman.example.com\n  dynflow_workers: 2\n  plugins: {{katello: {katello}, remote_execution: {rex}}}\n")).unwrap()
}

/// Runs one reconcile against the cluster; returns the requests made and the result.
async fn reconcile_once(
    cluster: Arc<Mutex<Cluster>>,
    fm: Foreman,
) -> (
    Vec<Req>,
    Result<kube::runtime::controller::Action, foreman_operator::Error>,
) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let log = log.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().path_and_query().unwrap().to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let r = Req { method, path, body };
                let (code, reply) = cluster.lock().unwrap().answer(&r);
                log.lock().unwrap().push(r);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
        })
    };
    let ctx = Context::new(Client::new(service, "foreman"));
    let result = reconcile(Arc::new(fm), ctx).await;
    server.abort();
    let reqs = log.lock().unwrap().clone();
    (reqs, result)
}

fn lines(reqs: &[Req]) -> Vec<String> {
    reqs.iter().map(Req::line).collect()
}

const LISTS: [&str; 8] = [
    "GET /api/v1/namespaces/foreman/configmaps",
    "GET /api/v1/namespaces/foreman/persistentvolumeclaims",
    "GET /api/v1/namespaces/foreman/services",
    "GET /apis/networking.k8s.io/v1/namespaces/foreman/networkpolicies",
    "GET /apis/apps/v1/namespaces/foreman/deployments",
    "GET /apis/batch/v1/namespaces/foreman/jobs",
    "GET /apis/batch/v1/namespaces/foreman/cronjobs",
    "GET /apis/networking.k8s.io/v1/namespaces/foreman/ingresses",
];

fn path_of(o: &Value) -> String {
    let plural = match o["kind"].as_str().unwrap() {
        "ConfigMap" => "api/v1/namespaces/foreman/configmaps",
        "PersistentVolumeClaim" => "api/v1/namespaces/foreman/persistentvolumeclaims",
        "Service" => "api/v1/namespaces/foreman/services",
        "NetworkPolicy" => "apis/networking.k8s.io/v1/namespaces/foreman/networkpolicies",
        "Deployment" => "apis/apps/v1/namespaces/foreman/deployments",
        "Job" => "apis/batch/v1/namespaces/foreman/jobs",
        "CronJob" => "apis/batch/v1/namespaces/foreman/cronjobs",
        "Ingress" => "apis/networking.k8s.io/v1/namespaces/foreman/ingresses",
        k => panic!("{k}"),
    };
    format!("/{plural}/{}", o["metadata"]["name"].as_str().unwrap())
}

/// The requests a first reconcile makes: secrets checked, generated Secret made, then per kind a
/// list followed by one apply per object, then the status.
fn expected_fresh(fm: &Foreman, db_secrets: &[&str]) -> Vec<String> {
    let mut want: Vec<String> = db_secrets
        .iter()
        .map(|s| format!("GET {NS}/secrets/{s}"))
        .collect();
    for generated in ["foreman-generated", "foreman-tls"] {
        want.push(format!("GET {NS}/secrets/{generated}"));
        want.push(format!("POST {NS}/secrets"));
    }
    if fm.spec.plugins.katello {
        want.push(format!("GET {NS}/secrets/pulp-symmetric-key"));
        want.push(format!("POST {NS}/secrets"));
    }
    if fm.spec.plugins.remote_execution {
        want.push(format!("GET {NS}/secrets/foreman-proxy-ssh"));
        want.push(format!("POST {NS}/secrets"));
    }
    let objs = desired(fm);
    for (list, kind) in LISTS.iter().zip([
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
        "NetworkPolicy",
        "Deployment",
        "Job",
        "CronJob",
        "Ingress",
    ]) {
        want.push(list.to_string());
        want.extend(
            objs.iter()
                .filter(|o| o["kind"] == kind)
                .map(|o| format!("PATCH {}", path_of(o))),
        );
    }
    want.push(
        "PATCH /apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman/status".into(),
    );
    want
}

#[tokio::test]
async fn fresh_resource_applies_every_object_once_with_ssa() {
    let cluster = Arc::new(Mutex::new(Cluster::with_db_secrets(&[
        "foreman-db",
        "candlepin-db",
        "pulp-db",
    ])));
    let fm = foreman(true, true);
    let (reqs, result) = reconcile_once(cluster.clone(), fm.clone()).await;
    result.unwrap();
    assert_eq!(
        lines(&reqs),
        expected_fresh(&fm, &["foreman-db", "candlepin-db", "pulp-db"])
    );
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert!(
            r.path.contains("fieldManager=foreman-operator"),
            "{}",
            r.path
        );
        assert!(r.path.contains("force=true"), "{}", r.path);
    }
    // Owned by the resource, with its uid.
    let dep = reqs
        .iter()
        .find(|r| {
            r.path
                .starts_with("/apis/apps/v1/namespaces/foreman/deployments/foreman?")
        })
        .unwrap();
    assert_eq!(dep.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
    // The generated Secret holds every generated key, never reused from the request log.
    let posted: Vec<&Value> = reqs
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| &r.body)
        .collect();
    assert_eq!(
        posted
            .iter()
            .map(|b| b["metadata"]["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "foreman-generated",
            "foreman-tls",
            "pulp-symmetric-key",
            "foreman-proxy-ssh"
        ]
    );
    assert_eq!(posted[1]["type"], "kubernetes.io/tls");
    assert!(posted[1]["stringData"]["tls.crt"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    for k in foreman_operator::resources::certificates::KEYS {
        assert!(
            posted[1]["stringData"][k]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN"),
            "{k}"
        );
    }
    let fernet = posted[2]["stringData"]["database_fields.symmetric.key"]
        .as_str()
        .unwrap();
    assert_eq!(fernet.trim_end().len(), 44, "32 bytes, base64");
    assert!(posted[3]["stringData"]["id_rsa_foreman_proxy"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let gen = reqs.iter().find(|r| r.method == "POST").unwrap();
    for k in foreman_operator::resources::GENERATED_KEYS {
        assert_eq!(gen.body["stringData"][k].as_str().unwrap().len(), 48, "{k}");
    }
    // Status: progressing, with the URL and each component listed.
    let status = &reqs.last().unwrap().body["status"];
    assert_eq!(status["url"], "https://foreman.example.com");
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][1]["status"], "True");
    assert_eq!(status["components"]["pulp-api"], "rolling out");
}

#[tokio::test]
async fn unchanged_resource_writes_nothing_but_status() {
    let cluster = Arc::new(Mutex::new(Cluster::with_db_secrets(&[
        "foreman-db",
        "candlepin-db",
        "pulp-db",
    ])));
    let fm = foreman(true, true);
    reconcile_once(cluster.clone(), fm.clone()).await.1.unwrap();
    let (reqs, result) = reconcile_once(cluster.clone(), fm.clone()).await;
    result.unwrap();
    let writes: Vec<String> = reqs
        .iter()
        .filter(|r| r.method != "GET")
        .map(Req::line)
        .collect();
    assert_eq!(
        writes,
        vec![
            "PATCH /apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman/status"
                .to_string()
        ]
    );
}

#[tokio::test]
async fn katello_off_deletes_its_objects_and_keeps_the_rest() {
    let cluster = Arc::new(Mutex::new(Cluster::with_db_secrets(&[
        "foreman-db",
        "candlepin-db",
        "pulp-db",
    ])));
    reconcile_once(cluster.clone(), foreman(true, true))
        .await
        .1
        .unwrap();
    let (reqs, result) = reconcile_once(cluster.clone(), foreman(false, true)).await;
    result.unwrap();
    let mut deletes: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Req::line)
        .collect();
    deletes.sort();
    let mut katello: Vec<String> = desired(&foreman(true, true))
        .iter()
        .filter(|o| {
            let n = o["metadata"]["name"].as_str().unwrap();
            // Jobs of the Foreman image run again with the new plugin list: old runs go too.
            n.starts_with("pulp")
                || n.starts_with("candlepin")
                || n.starts_with("foreman-migrate-")
                || n.starts_with("foreman-proxy-registration-")
        })
        .map(|o| format!("DELETE {}", path_of(o)))
        .collect();
    katello.sort();
    assert_eq!(deletes, katello);
    // Foreman's own objects that changed (plugin list, ingress paths) are re-applied; redis is untouched.
    let patched: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(Req::line)
        .collect();
    assert!(
        patched.contains(&"PATCH /apis/apps/v1/namespaces/foreman/deployments/foreman".to_string()),
        "{patched:?}"
    );
    assert!(
        !patched.iter().any(|p| p.ends_with("/deployments/redis")),
        "{patched:?}"
    );
    let new_migration = desired(&foreman(false, true))
        .into_iter()
        .find(|o| o["kind"] == "Job")
        .unwrap();
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("/secrets/")),
        "generated Secrets are kept"
    );
    assert!(
        patched.contains(&format!("PATCH {}", path_of(&new_migration))),
        "{patched:?}"
    );
    assert!(
        !reqs.iter().any(|r| r.path.contains("candlepin-db")),
        "candlepin's Secret is not needed any more"
    );
}

#[tokio::test]
async fn missing_database_secret_is_degraded_status_not_an_error() {
    let cluster = Arc::new(Mutex::new(Cluster::with_db_secrets(&[
        "foreman-db",
        "candlepin-db",
    ])));
    let (reqs, result) = reconcile_once(cluster.clone(), foreman(true, false)).await;
    let action = result.expect("a missing Secret is reported in status, not as an error");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET {NS}/secrets/foreman-db"),
            format!("GET {NS}/secrets/candlepin-db"),
            format!("GET {NS}/secrets/pulp-db"),
            "PATCH /apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman/status"
                .to_string(),
        ]
    );
    let status = &reqs.last().unwrap().body["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "DatabaseSecretMissing");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("Secret foreman/pulp-db does not exist"),
        "{degraded}"
    );
}

#[tokio::test]
async fn database_secret_without_password_key_names_the_key() {
    let mut c = Cluster::with_db_secrets(&["foreman-db"]);
    c.objects
        .get_mut(&format!("{NS}/secrets/foreman-db"))
        .unwrap()["data"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    let (reqs, result) = reconcile_once(Arc::new(Mutex::new(c)), foreman(false, false)).await;
    result.unwrap();
    let msg = reqs.last().unwrap().body["status"]["conditions"][2]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("Secret foreman/foreman-db lacks key(s) password"),
        "{msg}"
    );
}

#[tokio::test]
async fn rejected_object_is_reported_degraded_and_the_rest_is_applied() {
    let mut c = Cluster::with_db_secrets(&["foreman-db", "candlepin-db", "pulp-db"]);
    c.reject.insert(
        "/apis/apps/v1/namespaces/foreman/deployments/foreman-proxy".into(),
        "Deployment.apps \"foreman-proxy\" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"tls\"".into(),
    );
    let cluster = Arc::new(Mutex::new(c));
    let fm = foreman(true, true);
    let (reqs, result) = reconcile_once(cluster.clone(), fm.clone()).await;
    result.expect("a rejected object is reported in status, not as an error");
    // Every object after the rejected one is still applied: Jobs, CronJobs, the edge.
    let patched: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(Req::line)
        .collect();
    for o in desired(&fm) {
        assert!(
            patched.contains(&format!("PATCH {}", path_of(&o))),
            "{}",
            path_of(&o)
        );
    }
    let stored = cluster.lock().unwrap();
    assert!(!stored
        .objects
        .contains_key("/apis/apps/v1/namespaces/foreman/deployments/foreman-proxy"));
    assert!(stored
        .objects
        .contains_key("/apis/apps/v1/namespaces/foreman/deployments/foreman-edge"));
    drop(stored);
    let status = &reqs.last().unwrap().body["status"];
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ObjectsRejected");
    let msg = degraded["message"].as_str().unwrap();
    assert!(msg.contains("Deployment foreman-proxy:"), "{msg}");
    assert!(msg.contains("Not found: \"tls\""), "{msg}");
    assert_eq!(status["conditions"][0]["status"], "False", "not Ready");
}

#[tokio::test]
async fn generated_secret_from_an_older_operator_gets_only_its_missing_keys() {
    let mut c = Cluster::with_db_secrets(&["foreman-db"]);
    c.objects.insert(
        format!("{NS}/secrets/foreman-generated"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-generated", "namespace": "foreman"},
               "data": {"encryption-key": b64("old-key"), "admin-password": b64("old-password")}}),
    );
    let (reqs, result) = reconcile_once(Arc::new(Mutex::new(c)), foreman(false, false)).await;
    result.unwrap();
    let patch = reqs
        .iter()
        .find(|r| r.method == "PATCH" && r.path.contains("/secrets/foreman-generated"))
        .expect("the missing keys are added");
    let added = patch.body["stringData"].as_object().unwrap();
    assert!(!added.contains_key("encryption-key") && !added.contains_key("admin-password"));
    for k in [
        "secret-key-base",
        "pulp-secret-key",
        "keystore-password",
        "candlepin-oauth-secret",
    ] {
        assert_eq!(added[k].as_str().unwrap().len(), 48, "{k}");
    }
}

#[tokio::test]
async fn certificate_secret_from_an_older_operator_gets_a_pulp_control_certificate_from_its_ca() {
    use foreman_operator::resources::certificates;
    let fm = foreman(true, false);
    let mut old = certificates::generate(&fm).unwrap();
    old.remove(certificates::PULP_CONTROL_CRT);
    old.remove(certificates::PULP_CONTROL_KEY);
    let data: BTreeMap<&String, String> = old.iter().map(|(k, v)| (k, b64(v))).collect();
    let mut c = Cluster::with_db_secrets(&["foreman-db", "candlepin-db", "pulp-db"]);
    c.objects.insert(
        format!("{NS}/secrets/foreman-tls"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-tls", "namespace": "foreman"}, "type": "kubernetes.io/tls", "data": data}),
    );
    let (reqs, result) = reconcile_once(Arc::new(Mutex::new(c)), fm).await;
    result.unwrap();
    let patch = reqs
        .iter()
        .find(|r| r.method == "PATCH" && r.path.contains("/secrets/foreman-tls"))
        .expect("the pulp-control certificate is added");
    let added = patch.body["stringData"].as_object().unwrap();
    let keys: Vec<&String> = added.keys().collect();
    assert_eq!(
        keys,
        [
            certificates::PULP_CONTROL_CRT,
            certificates::PULP_CONTROL_KEY
        ]
    );
    // openssl (scripts/test.sh installs it): the new certificate chains to the old CA and
    // covers the front end's Service name.
    let dir = std::env::temp_dir().join(format!("fb-tls-complete-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &old[certificates::CA_CRT]).unwrap();
    std::fs::write(
        dir.join("leaf.crt"),
        added[certificates::PULP_CONTROL_CRT].as_str().unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "pulp-control.foreman.svc",
            "-CAfile",
        ])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("leaf.crt"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
