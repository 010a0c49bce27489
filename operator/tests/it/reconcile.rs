//! Reconcile against the stand-in API server (`foreman_box_tests::apiserver`): it keeps what the
//! operator writes, serves the watches the controller's cache runs on and, when asked, plays the
//! kubelet. The tests call `reconcile` directly, as the controller does, and assert on the
//! requests it made and on what the server holds.

use foreman_box_tests::apiserver::{database_secret, path_of, ApiServer, Request};
use foreman_operator::controller::{reconcile, Context, RetryPolicy, RETRY_ANNOTATION};
use foreman_operator::resources::desired;
use foreman_operator::{Error, Foreman};
use futures::StreamExt;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "/api/v1/namespaces/foreman";
const FOREMAN: &str = "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman";
const ALL_DB: &[&str] = &["foreman-db", "candlepin-db", "pulp-db"];

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn foreman_json(katello: bool, rex: bool) -> Value {
    json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
           "metadata": {"name": "foreman", "namespace": "foreman", "uid": "u-1", "generation": 1},
           "spec": {"hostname": "foreman.example.com", "dynflow_workers": 2,
                    "plugins": {"katello": katello, "remote_execution": rex}}})
}

/// The stand-in, a client of it, and a controller context whose watches run in the
/// background, as `controller::run` sets them up.
struct Cluster {
    api: ApiServer,
    client: Client,
    ctx: Arc<Context>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(db: &[&str], katello: bool, rex: bool) -> Cluster {
        Cluster::with(db, katello, rex, RetryPolicy::default(), |_| {})
    }

    /// `prepare` runs before the operator's first request.
    fn with(
        db: &[&str],
        katello: bool,
        rex: bool,
        retries: RetryPolicy,
        prepare: impl FnOnce(&ApiServer),
    ) -> Cluster {
        let api = ApiServer::start();
        for name in db {
            api.put(database_secret("foreman", name));
        }
        api.put(foreman_json(katello, rex));
        prepare(&api);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = Kubeconfig::read_from(api.kubeconfig(dir.path())).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .unwrap();
            Client::try_from(config).unwrap()
        });
        let ctx = Context::with_retries(client.clone(), "foreman", retries);
        rt.spawn(ctx.watches().for_each(|()| async {}));
        Cluster {
            api,
            client,
            ctx,
            rt,
            _dir: dir,
        }
    }

    /// The resource as the API server has it now.
    fn foreman(&self) -> Arc<Foreman> {
        let api: Api<Foreman> = Api::namespaced(self.client.clone(), "foreman");
        Arc::new(self.rt.block_on(api.get("foreman")).unwrap())
    }

    /// One reconcile of the resource as it is now: the requests it made (the watches' own left
    /// out) and its result.
    fn reconcile(&self) -> (Vec<Request>, Result<Action, Error>) {
        let fm = self.foreman();
        let mark = self.api.request_count();
        let result = self.rt.block_on(reconcile(fm, self.ctx.clone()));
        let reqs = self
            .api
            .requests_since(mark)
            .into_iter()
            .filter(|r| !r.is_watch() && !r.query.contains_key("labelSelector"))
            .collect();
        (reqs, result)
    }

    /// Reconciles until one reconcile writes nothing (bounded): every request made on the way.
    fn settle(&self) -> Vec<Request> {
        let started = Instant::now();
        let mut all = Vec::new();
        loop {
            let (reqs, result) = self.reconcile();
            result.unwrap();
            let wrote = reqs.iter().any(Request::is_write);
            all.extend(reqs);
            if !wrote {
                return all;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the reconciles did not settle within 20 s; status: {}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self) -> Value {
        self.api.get(FOREMAN).unwrap()["status"].clone()
    }

    /// The status condition of this type.
    fn condition(&self, type_: &str) -> Value {
        condition(&self.status(), type_)
    }
}

fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

fn lines(reqs: &[Request]) -> Vec<String> {
    reqs.iter().map(Request::line).collect()
}

fn writes(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r.is_write())
        .map(Request::line)
        .collect()
}

fn body(r: &Request) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

/// The requests a first reconcile makes: the database Secrets read, each generated Secret read
/// and created, then one apply per object in apply order (kinds in `KINDS` order), then the
/// status. No list: what exists comes from the watches.
fn expected_fresh(fm: &Foreman, db_secrets: &[&str]) -> Vec<String> {
    let mut want: Vec<String> = db_secrets
        .iter()
        .map(|s| format!("GET {NS}/secrets/{s}"))
        .collect();
    // A Secret made from others reads those not made yet first (the CA Secret reads the
    // certificate Secret: an older operator kept its CA there).
    let mut made: Vec<&str> = Vec::new();
    for g in foreman_operator::generated::needed(fm) {
        want.push(format!("GET {NS}/secrets/{}", g.name));
        for input in foreman_operator::generated::inputs(g.name) {
            if !made.contains(input) {
                want.push(format!("GET {NS}/secrets/{input}"));
            }
        }
        want.push(format!("POST {NS}/secrets"));
        made.push(g.name);
    }
    let objs = desired(fm);
    for (_, kind, _) in foreman_operator::resources::KINDS {
        want.extend(
            objs.iter()
                .filter(|o| o["kind"] == *kind)
                .map(|o| format!("PATCH {}", path_of_in_ns(o))),
        );
    }
    want.push(format!("PATCH {FOREMAN}/status"));
    want
}

/// `path_of` for a rendered object, which carries no namespace: the operator's namespace.
fn path_of_in_ns(o: &Value) -> String {
    let mut o = o.clone();
    o["metadata"]["namespace"] = json!("foreman");
    path_of(&o)
}

#[test]
fn fresh_resource_applies_every_object_once_with_ssa() {
    let c = Cluster::start(ALL_DB, true, true);
    let fm = c.foreman();
    let (reqs, result) = c.reconcile();
    result.unwrap();
    assert_eq!(lines(&reqs), expected_fresh(&fm, ALL_DB));
    for r in reqs.iter().filter(|r| r.method == "PATCH") {
        assert_eq!(r.query["fieldManager"], "foreman-operator", "{}", r.path);
        assert_eq!(r.query["force"], "true", "{}", r.path);
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
    // Owned by the resource, with its uid; stored by the server as applied.
    let dep = c
        .api
        .get("/apis/apps/v1/namespaces/foreman/deployments/foreman")
        .unwrap();
    assert_eq!(dep["metadata"]["ownerReferences"][0]["uid"], "u-1");
    let posted: Vec<Value> = reqs
        .iter()
        .filter(|r| r.method == "POST")
        .map(body)
        .collect();
    assert_eq!(
        posted
            .iter()
            .map(|b| b["metadata"]["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "foreman-generated",
            "foreman-ca",
            "foreman-tls",
            "pulp-symmetric-key",
            "foreman-proxy-ssh"
        ]
    );
    assert_eq!(posted[1]["type"], "Opaque");
    for k in foreman_operator::resources::certificates::CA_KEYS {
        assert!(
            posted[1]["stringData"][k]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN"),
            "{k}"
        );
    }
    assert_eq!(posted[2]["type"], "kubernetes.io/tls");
    assert!(
        posted[2]["stringData"].get("ca.key").is_none(),
        "the CA key is not in the Secret the edge serves from"
    );
    for k in foreman_operator::resources::certificates::KEYS {
        assert!(
            posted[2]["stringData"][k]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN"),
            "{k}"
        );
    }
    let fernet = posted[3]["stringData"]["database_fields.symmetric.key"]
        .as_str()
        .unwrap();
    assert_eq!(fernet.trim_end().len(), 44, "32 bytes, base64");
    assert!(posted[4]["stringData"]["id_rsa_foreman_proxy"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    for k in foreman_operator::resources::GENERATED_KEYS {
        assert_eq!(
            posted[0]["stringData"][k].as_str().unwrap().len(),
            48,
            "{k}"
        );
    }
    // The server keeps the generated data, as the real one does (stringData becomes data).
    let kept = c
        .api
        .get(&format!("{NS}/secrets/foreman-generated"))
        .unwrap();
    assert_eq!(
        kept["data"]["admin-password"],
        b64(posted[0]["stringData"]["admin-password"].as_str().unwrap())
    );
    // Status: progressing, with the URL and each component listed.
    let status = c.status();
    assert_eq!(status["url"], "https://foreman.example.com");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Progressing")["status"], "True");
    assert_eq!(status["components"]["pulp-api"], "rolling out");
}

#[test]
fn resource_becomes_ready_when_the_cluster_runs_what_was_applied() {
    let c = Cluster::start(ALL_DB, true, true);
    c.api.run_kubelet(true);
    c.settle();
    let ready = c.condition("Ready");
    assert_eq!(ready["status"], "True", "{}", c.status());
    assert_eq!(ready["reason"], "AllComponentsReady");
    let status = c.status();
    let components = status["components"].as_object().unwrap();
    assert!(components.values().all(|s| s == "ready"), "{status}");
    assert!(components.contains_key("foreman") && components.contains_key("pulp-api"));
    assert_eq!(status["observed_generation"], 1);
}

#[test]
fn unchanged_resource_reads_its_secrets_and_writes_nothing() {
    let c = Cluster::start(ALL_DB, true, true);
    c.api.run_kubelet(true);
    c.settle();
    assert_eq!(c.condition("Ready")["status"], "True");
    let version = c.api.version();
    let (reqs, result) = c.reconcile();
    result.unwrap();
    let fm = c.foreman();
    let mut want: Vec<String> = ALL_DB
        .iter()
        .map(|s| format!("GET {NS}/secrets/{s}"))
        .collect();
    want.extend(
        foreman_operator::generated::needed(&fm)
            .iter()
            .map(|g| format!("GET {NS}/secrets/{}", g.name)),
    );
    assert_eq!(lines(&reqs), want, "no write, no list");
    assert_eq!(c.api.version(), version, "nothing changed on the server");
}

#[test]
fn a_changed_database_secret_writes_nothing_when_no_object_changes() {
    let c = Cluster::start(ALL_DB, false, false);
    c.api.run_kubelet(true);
    c.settle();
    // The user rotates the database password: the Secret's resourceVersion changes, the
    // objects (which reference it, not copy it) do not.
    c.api.put(database_secret("foreman", "foreman-db"));
    let (reqs, result) = c.reconcile();
    result.unwrap();
    assert_eq!(writes(&reqs), Vec::<String>::new());
}

#[test]
fn katello_off_deletes_its_objects_and_keeps_the_rest() {
    let c = Cluster::start(ALL_DB, true, true);
    c.api.run_kubelet(true);
    c.settle();
    c.api
        .edit(FOREMAN, "spec.plugins.katello", json!(false), "kubectl");
    let reqs = c.settle();
    let mut deletes: Vec<String> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Request::line)
        .collect();
    deletes.sort();
    let mut katello: Vec<String> = desired(&c.foreman_with(true))
        .iter()
        .filter(|o| {
            let n = o["metadata"]["name"].as_str().unwrap();
            // Jobs of the Foreman image run again with the new plugin list: old runs go too.
            n.starts_with("pulp")
                || n.starts_with("candlepin")
                || n.starts_with("foreman-migrate-")
                || n.starts_with("foreman-proxy-registration-")
        })
        .map(|o| format!("DELETE {}", path_of_in_ns(o)))
        .collect();
    katello.sort();
    assert_eq!(deletes, katello);
    for d in &katello {
        let path = d.strip_prefix("DELETE ").unwrap();
        assert!(c.api.get(path).is_none(), "{path} is gone");
    }
    // Foreman's own objects that changed (plugin list) are re-applied; redis is untouched.
    let patched = writes(&reqs);
    assert!(
        patched.contains(&"PATCH /apis/apps/v1/namespaces/foreman/deployments/foreman".to_string()),
        "{patched:?}"
    );
    assert!(
        !patched.iter().any(|p| p.ends_with("/deployments/redis")),
        "{patched:?}"
    );
    let new_migration = desired(&c.foreman())
        .into_iter()
        .find(|o| o["kind"] == "Job")
        .unwrap();
    assert!(c.api.get(&path_of_in_ns(&new_migration)).is_some());
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("/secrets/")),
        "generated Secrets are kept"
    );
    assert!(
        !reqs.iter().any(|r| r.path.contains("candlepin-db")),
        "candlepin's Secret is not needed any more"
    );
    assert_eq!(c.condition("Ready")["status"], "True", "{}", c.status());
}

impl Cluster {
    /// The resource as it is now with katello set to `katello`.
    fn foreman_with(&self, katello: bool) -> Foreman {
        let mut fm = (*self.foreman()).clone();
        fm.spec.plugins.katello = katello;
        fm
    }
}

#[test]
fn missing_database_secret_is_degraded_status_not_an_error() {
    let c = Cluster::start(&["foreman-db", "candlepin-db"], true, false);
    let (reqs, result) = c.reconcile();
    let action = result.expect("a missing Secret is reported in status, not as an error");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert_eq!(
        lines(&reqs),
        vec![
            format!("GET {NS}/secrets/foreman-db"),
            format!("GET {NS}/secrets/candlepin-db"),
            format!("GET {NS}/secrets/pulp-db"),
            format!("PATCH {FOREMAN}/status"),
        ]
    );
    let degraded = c.condition("Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "DatabaseSecretMissing");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("Secret foreman/pulp-db does not exist"),
        "{degraded}"
    );
    // The same problem again: the status already says it.
    let (reqs, _) = c.reconcile();
    assert_eq!(writes(&reqs), Vec::<String>::new());
}

#[test]
fn database_secret_without_password_key_names_the_key() {
    let c = Cluster::with(&[], false, false, RetryPolicy::default(), |api| {
        let mut s = database_secret("foreman", "foreman-db");
        s["data"].as_object_mut().unwrap().remove("password");
        api.put(s);
    });
    c.reconcile().1.unwrap();
    let msg = c.condition("Degraded")["message"].to_string();
    assert!(
        msg.contains("Secret foreman/foreman-db lacks key(s) password"),
        "{msg}"
    );
}

#[test]
fn rejected_object_is_reported_degraded_and_the_rest_is_applied() {
    let proxy = "/apis/apps/v1/namespaces/foreman/deployments/foreman-proxy";
    let c = Cluster::with(ALL_DB, true, true, RetryPolicy::default(), |api| {
        api.refuse(proxy, "Deployment.apps \"foreman-proxy\" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"tls\"");
    });
    let fm = c.foreman();
    let (reqs, result) = c.reconcile();
    result.expect("a rejected object is reported in status, not as an error");
    // Every object after the rejected one is still applied.
    let patched = writes(&reqs);
    for o in desired(&fm) {
        let path = path_of_in_ns(&o);
        assert!(patched.contains(&format!("PATCH {path}")), "{path}");
        assert_eq!(c.api.get(&path).is_some(), path != proxy, "{path}");
    }
    let degraded = c.condition("Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ObjectsRejected");
    let msg = degraded["message"].as_str().unwrap();
    assert!(msg.contains("Deployment foreman-proxy:"), "{msg}");
    assert!(
        msg.contains("Not found: \\\"tls\\\"") || msg.contains("Not found: \"tls\""),
        "{msg}"
    );
    assert_eq!(c.condition("Ready")["status"], "False");
}

#[test]
fn generated_secret_from_an_older_operator_gets_only_its_missing_keys() {
    let c = Cluster::with(
        &["foreman-db"],
        false,
        false,
        RetryPolicy::default(),
        |api| {
            api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-generated", "namespace": "foreman"},
               "data": {"encryption-key": b64("old-key"), "admin-password": b64("old-password")}}));
        },
    );
    c.reconcile().1.unwrap();
    let patch = c
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/secrets/foreman-generated"))
        .expect("the missing keys are added");
    let added = body(&patch)["stringData"].as_object().unwrap().clone();
    assert!(!added.contains_key("encryption-key") && !added.contains_key("admin-password"));
    for k in [
        "secret-key-base",
        "pulp-secret-key",
        "keystore-password",
        "candlepin-oauth-secret",
    ] {
        assert_eq!(added[k].as_str().unwrap().len(), 48, "{k}");
    }
    let kept = c
        .api
        .get(&format!("{NS}/secrets/foreman-generated"))
        .unwrap();
    assert_eq!(kept["data"]["admin-password"], b64("old-password"));
}

/// An older operator kept its CA (with its key) in `foreman-tls`: the CA Secret is created from
/// it, and `foreman-tls` gets the certificate it lacks signed by that CA and loses `ca.key`.
#[test]
fn certificate_secret_from_an_older_operator_gives_its_ca_to_the_ca_secret_and_gets_what_it_lacks()
{
    use foreman_operator::resources::certificates;
    let fm: Foreman = serde_json::from_value(foreman_json(true, false)).unwrap();
    let mut old = certificates::generate(&fm).unwrap();
    assert!(old.contains_key(certificates::CA_KEY));
    old.remove(certificates::PULP_CONTROL_CRT);
    old.remove(certificates::PULP_CONTROL_KEY);
    let data: BTreeMap<&String, String> = old.iter().map(|(k, v)| (k, b64(v))).collect();
    let c = Cluster::with(ALL_DB, true, false, RetryPolicy::default(), |api| {
        api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-tls", "namespace": "foreman"}, "type": "kubernetes.io/tls", "data": data}));
    });
    c.reconcile().1.unwrap();
    let reqs = c.api.requests();
    let created = reqs
        .iter()
        .position(|r| r.method == "POST" && body(r)["metadata"]["name"] == "foreman-ca")
        .expect("the CA Secret is created");
    let ca = body(&reqs[created])["stringData"].clone();
    assert_eq!(ca[certificates::CA_CRT], old[certificates::CA_CRT].as_str());
    assert_eq!(ca[certificates::CA_KEY], old[certificates::CA_KEY].as_str());
    let patched = reqs
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/secrets/foreman-tls"))
        .expect("the certificate Secret is patched");
    assert!(created < patched, "the key is copied before it is removed");
    let patch = body(&reqs[patched]);
    assert_eq!(
        patch["data"],
        json!({"ca.key": null}),
        "ca.key removed, nothing else"
    );
    let added = patch["stringData"].as_object().unwrap().clone();
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
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), &old[certificates::CA_CRT]).unwrap();
    std::fs::write(
        dir.path().join("leaf.crt"),
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
        .arg(dir.path().join("ca.crt"))
        .arg(dir.path().join("leaf.crt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A retry policy fast enough for a test: attempt n waits 150 ms * 2^(n-1), at most 300 ms.
const FAST: RetryPolicy = RetryPolicy {
    attempts: 2,
    first: Duration::from_millis(150),
    longest: Duration::from_millis(300),
};

/// The first Job of the resource and its path.
fn first_job(c: &Cluster) -> (String, String) {
    let job = desired(&c.foreman())
        .into_iter()
        .find(|o| o["kind"] == "Job")
        .unwrap();
    (
        job["metadata"]["name"].as_str().unwrap().to_string(),
        path_of_in_ns(&job),
    )
}

/// Reconciles (every 20 ms, bounded) until the status satisfies `done`; every request made.
fn reconcile_until(c: &Cluster, what: &str, done: impl Fn(&Value) -> bool) -> Vec<Request> {
    let started = Instant::now();
    let mut all = Vec::new();
    loop {
        let (reqs, result) = c.reconcile();
        result.unwrap();
        all.extend(reqs);
        if done(&c.status()) {
            return all;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no {what} within 20 s; status: {}",
            c.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failed_job_is_recreated_after_its_backoff_and_reported_degraded_meanwhile() {
    let c = Cluster::with(ALL_DB, true, true, FAST, |api| api.run_kubelet(true));
    let (job, path) = first_job(&c);
    c.api.fail_jobs(&job, 1);
    let started = Instant::now();
    let before = reconcile_until(&c, "JobFailed", |s| {
        condition(s, "Degraded")["reason"] == "JobFailed"
    });
    let degraded = c.condition("Degraded");
    let msg = degraded["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("Job {job} failed (BackoffLimitExceeded")),
        "{msg}"
    );
    assert!(msg.contains("attempt 1 of 2"), "{msg}");
    assert!(
        c.status()["components"][&job]
            .as_str()
            .unwrap()
            .starts_with("failed (BackoffLimitExceeded)"),
        "{}",
        c.status()
    );
    assert!(
        !before.iter().any(|r| r.method == "DELETE"),
        "not retried before its wait"
    );
    let after = reconcile_until(&c, "Ready", |s| condition(s, "Ready")["status"] == "True");
    assert!(started.elapsed() >= FAST.first, "the retry waited");
    let deletes: Vec<String> = after
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(Request::line)
        .collect();
    assert_eq!(deletes, [format!("DELETE {path}")]);
    let rerun = c.api.get(&path).unwrap();
    assert_eq!(rerun["metadata"]["annotations"][RETRY_ANNOTATION], "1");
    assert_eq!(rerun["status"]["succeeded"], 1);
    assert_eq!(c.condition("Degraded")["status"], "False");
}

#[test]
fn job_that_keeps_failing_is_run_again_a_bounded_number_of_times() {
    let c = Cluster::with(ALL_DB, false, false, FAST, |api| api.run_kubelet(true));
    let (job, path) = first_job(&c);
    c.api.fail_jobs(&job, 100);
    let reqs = reconcile_until(&c, "exhausted retries", |s| {
        condition(s, "Degraded")["message"]
            .as_str()
            .is_some_and(|m| m.contains("it is not retried any more"))
    });
    let deletes = |reqs: &[Request]| {
        reqs.iter()
            .filter(|r| r.method == "DELETE" && r.path == path)
            .count()
    };
    assert_eq!(deletes(&reqs), FAST.attempts as usize);
    let msg = c.condition("Degraded")["message"].to_string();
    assert!(
        msg.contains(&format!("kubectl -n foreman logs job/{job}")),
        "{msg}"
    );
    // Left alone from now on.
    std::thread::sleep(FAST.longest * 2);
    let (reqs, _) = c.reconcile();
    assert_eq!(writes(&reqs), Vec::<String>::new());
    assert_eq!(c.condition("Ready")["status"], "False");
}

/// Maintenance (the contract with the installer's backup, installer/src/maintenance.rs): every
/// writer's Deployment at 0 replicas and the CronJobs suspended, Redis and the edge left
/// running; the `Maintenance` condition is False naming the writer pods still there
/// (terminating ones included) and True (`Reached`) once none is left; leaving it brings the
/// replicas back and drops the condition.
#[test]
fn maintenance_stops_every_writer_and_is_reached_only_when_no_writer_pod_is_left() {
    const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/foreman/deployments";
    const CRONJOBS: &str = "/apis/batch/v1/namespaces/foreman/cronjobs";
    let c = Cluster::start(ALL_DB, true, true);
    c.settle();
    let pod = |name: &str, component: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "foreman",
                            "deletionTimestamp": "2026-12-03T00:00:00Z",
                            "labels": {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": "foreman"}}})
    };
    c.api.put(pod("foreman-6d9f-abcde", "foreman"));
    c.api.put(pod("redis-5c7b-fghij", "redis"));
    let set_maintenance = |on: bool, generation: i64| {
        let mut fm = c.api.get(FOREMAN).unwrap();
        fm["spec"]["maintenance"] = json!(on);
        fm["metadata"]["generation"] = json!(generation);
        c.api.put(fm);
    };
    set_maintenance(true, 2);
    c.reconcile().1.unwrap();
    let replicas = |name: &str| {
        c.api.get(&format!("{DEPLOYMENTS}/{name}")).unwrap()["spec"]["replicas"].clone()
    };
    for writer in foreman_operator::resources::WRITERS {
        assert_eq!(replicas(writer), json!(0), "{writer}");
    }
    assert_eq!(replicas("redis"), json!(1));
    assert_eq!(replicas("foreman-edge"), json!(1));
    assert_eq!(
        c.api
            .get(&format!("{CRONJOBS}/foreman-cron-daily"))
            .unwrap()["spec"]["suspend"],
        json!(true)
    );
    let m = c.condition("Maintenance");
    assert_eq!(
        (m["status"].as_str(), m["reason"].as_str()),
        (Some("False"), Some("Entering")),
        "{m}"
    );
    let message = m["message"].as_str().unwrap();
    assert!(message.contains("foreman-6d9f-abcde"), "{message}");
    assert!(!message.contains("redis"), "{message}");

    // The terminating writer is gone: reached, for the generation that asked.
    assert!(c
        .api
        .delete("/api/v1/namespaces/foreman/pods/foreman-6d9f-abcde"));
    c.reconcile().1.unwrap();
    let m = c.condition("Maintenance");
    assert_eq!(
        (m["status"].as_str(), m["reason"].as_str()),
        (Some("True"), Some("Reached")),
        "{m}"
    );
    assert_eq!(c.status()["observed_generation"], json!(2));

    // Leaving it: the writers come back and the condition goes.
    set_maintenance(false, 3);
    c.settle();
    assert_eq!(replicas("foreman"), json!(1));
    assert_eq!(replicas("dynflow-worker"), json!(2));
    assert_ne!(
        c.api
            .get(&format!("{CRONJOBS}/foreman-cron-daily"))
            .unwrap()["spec"]["suspend"],
        json!(true)
    );
    assert!(c.condition("Maintenance").is_null(), "{}", c.status());
}

/// The images a rendered or stored Deployment runs (containers and init containers).
fn deployment_images(d: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| {
            d["spec"]["template"]["spec"][*k]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

/// Moves the resource to another release stream, as `foreman-box upgrade` does.
fn set_version(c: &Cluster, version: &str) {
    let mut fm = c.api.get(FOREMAN).unwrap();
    fm["spec"]["version"] = json!(version);
    let generation = fm["metadata"]["generation"].as_i64().unwrap_or(1);
    fm["metadata"]["generation"] = json!(generation + 1);
    c.api.put(fm);
}

/// An upgrade (the contract of issue 20 with `foreman-box upgrade`): the new stream's migration
/// Jobs run first and every Deployment on a Job's image keeps running its old version until that
/// Job has succeeded; what the Job itself needs (Candlepin, on another image) rolls at once, so
/// nothing waits on itself. A migration that fails leaves them where they are (roll forward
/// only: nothing is reverted) and the resource Degraded, naming the Job.
#[test]
fn an_upgrade_rolls_deployments_only_after_their_migration_job_succeeded() {
    let c = Cluster::with(ALL_DB, true, true, FAST, |api| api.run_kubelet(true));
    reconcile_until(&c, "Ready", |s| condition(s, "Ready")["status"] == "True");
    let old = desired(&c.foreman());
    c.api.hold_jobs("foreman-migrate-");
    c.api.fail_jobs("pulp-migrate-", 100);
    set_version(&c, "3.19");
    let new = desired(&c.foreman());
    let job = |base: &str| {
        new.iter()
            .find(|o| {
                o["kind"] == "Job" && o["metadata"]["name"].as_str().unwrap().starts_with(base)
            })
            .unwrap()
            .clone()
    };
    let foreman_job = job("foreman-migrate-");
    let foreman_job_name = foreman_job["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let image_of_job = |j: &Value| {
        j["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let foreman_image = image_of_job(&foreman_job);
    let pulp_job = job("pulp-migrate-");
    let pulp_image = image_of_job(&pulp_job);
    // The failing migration's pod and its log, which the Degraded message quotes.
    let pulp_job_name = pulp_job["metadata"]["name"].as_str().unwrap();
    let container = pulp_job["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap();
    c.api.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{pulp_job_name}-x7k2p"), "namespace": "foreman", "labels": {"job-name": pulp_job_name}},
        "spec": {"containers": [{"name": container, "image": pulp_image}]},
    }));
    c.api.put_log(
        "foreman",
        &format!("{pulp_job_name}-x7k2p"),
        container,
        "Operations to perform:\ndjango.db.utils.OperationalError: relation core_task already exists\n",
    );
    assert!(foreman_image.ends_with(":3.19"), "{foreman_image}");
    let on = |image: &str| -> Vec<String> {
        new.iter()
            .filter(|o| {
                // what the Deployment's own containers run (its init containers only wait)
                o["kind"] == "Deployment"
                    && o["spec"]["template"]["spec"]["containers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["image"] == image)
            })
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (foreman_deployments, pulp_deployments) = (on(&foreman_image), on(&pulp_image));
    assert!(
        foreman_deployments.len() >= 2 && !pulp_deployments.is_empty(),
        "{foreman_deployments:?} {pulp_deployments:?}"
    );
    let live_images = |name: &str| {
        deployment_images(
            &c.api
                .get(&format!(
                    "/apis/apps/v1/namespaces/foreman/deployments/{name}"
                ))
                .unwrap(),
        )
    };
    let was = |name: &str| {
        old.iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == name)
            .map(deployment_images)
            .unwrap()
    };

    // The migrations are running (Foreman's) or failing (Pulp's): nothing on their images rolls.
    reconcile_until(&c, "the Pulp migration failed", |s| {
        condition(s, "Degraded")["message"]
            .as_str()
            .is_some_and(|m| m.contains("pulp-migrate-"))
    });
    for d in foreman_deployments.iter().chain(&pulp_deployments) {
        assert_eq!(
            live_images(d),
            was(d),
            "{d} rolled before its migration succeeded"
        );
    }
    for d in &foreman_deployments {
        assert_eq!(
            c.status()["components"][d],
            format!("waiting for migration Job {foreman_job_name}"),
            "{}",
            c.status()
        );
    }
    assert_eq!(c.condition("Ready")["status"], "False");
    // Candlepin migrates in its own pod: it rolls now, or the Foreman migration (which waits for
    // it with Katello) could never finish.
    let candlepin = new
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "candlepin")
        .unwrap();
    assert_eq!(live_images("candlepin"), deployment_images(candlepin));

    // Foreman's migration succeeds: its Deployments roll; Pulp's stay on the old version.
    let job_path = path_of_in_ns(&foreman_job);
    c.api.set_status(
        &job_path,
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
    );
    reconcile_until(&c, "the Foreman Deployments rolled", |s| {
        foreman_deployments
            .iter()
            .all(|d| s["components"][d] == "ready")
    });
    for d in &foreman_deployments {
        assert!(
            live_images(d).contains(&foreman_image),
            "{d}: {:?}",
            live_images(d)
        );
    }
    // Pulp's migration keeps failing (retried, then given up): still Degraded naming it, and
    // its Deployments still on the old version.
    reconcile_until(&c, "the Pulp migration given up", |s| {
        condition(s, "Degraded")["message"]
            .as_str()
            .is_some_and(|m| m.contains("pulp-migrate-") && m.contains("not retried any more"))
    });
    let degraded = c.condition("Degraded")["message"].to_string();
    assert!(
        degraded.contains("relation core_task already exists"),
        "the Job's log is not quoted: {degraded}"
    );
    for d in &pulp_deployments {
        assert_eq!(
            live_images(d),
            was(d),
            "{d} rolled although its migration failed"
        );
        assert!(
            c.status()["components"][d]
                .as_str()
                .is_some_and(|s| s.starts_with("waiting for migration Job pulp-migrate-")),
            "{}",
            c.status()
        );
    }
}
