//! The foreman step through the real binary against a stand-in API server on loopback: the
//! resource is created with server-side apply (field manager foreman-box, no force), left alone
//! when unchanged or when another manager changed a field, and the wait ends on Ready or
//! explains what is stuck when it times out.
//!
//! `--root` holds the host tree; `--kubeconfig` names the stand-in, which is the one thing that
//! lets the step talk to a cluster in a run that starts nothing.

use foreman_box_tests::apiserver::{available_operator, established_crd, ApiServer};
use foreman_box_tests::{debian_root, foreman_box, run, Run};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const FOREMAN: &str = "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman";
const HOSTNAME: &str = "foreman.example.test";

struct Cluster {
    api: ApiServer,
    root: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// A stand-in cluster where the CRD is established and the operator is available.
fn cluster() -> Cluster {
    // Built before any scripted operator thread starts counting.
    foreman_box_tests::binary();
    let api = ApiServer::start();
    api.put(established_crd());
    api.put(available_operator());
    let root = debian_root();
    let kubeconfig = api.kubeconfig(root.path());
    Cluster {
        api,
        root,
        kubeconfig,
    }
}

fn foreman_cmd(verb: &str, c: &Cluster, extra: &[&str]) -> std::process::Command {
    let timeout = if extra.contains(&"--wait-timeout") {
        None
    } else {
        Some("20")
    };
    let mut args = vec![
        verb,
        "--root",
        c.root.path().to_str().unwrap(),
        "--only",
        "foreman",
        "--kubeconfig",
        c.kubeconfig.to_str().unwrap(),
        "--hostname",
        HOSTNAME,
    ];
    if let Some(t) = timeout {
        args.extend(["--wait-timeout", t]);
    }
    args.extend_from_slice(extra);
    foreman_box(&args)
}

fn install(c: &Cluster, extra: &[&str]) -> Run {
    run(&mut foreman_cmd("install", c, extra))
}

fn labels(component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, "app.kubernetes.io/instance": "foreman", "app.kubernetes.io/part-of": "foreman", "app.kubernetes.io/managed-by": "foreman-operator"})
}

fn deployment(name: &str, ready: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "foreman", "labels": labels(name)},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "foreman"}}, "template": {}},
        "status": {"replicas": 1, "readyReplicas": ready, "updatedReplicas": 1},
    })
}

fn pod(name: &str, component: &str, container_state: Value, restarts: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "foreman", "labels": labels(component)},
        "spec": {"containers": [{"name": component, "image": format!("quay.io/foreman/{component}:3.18")}]},
        "status": {"phase": "Pending", "containerStatuses": [container_state_with(component, container_state, restarts)]},
    })
}

fn container_state_with(name: &str, state: Value, restarts: u32) -> Value {
    let mut cs = json!({"name": name, "ready": false, "restartCount": restarts, "image": "x", "imageID": "", "state": state});
    if restarts > 0 {
        cs["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
    }
    cs
}

fn status(generation: i64, ready: bool, components: Value) -> Value {
    let (r, reason) = if ready {
        ("True", "AllComponentsReady")
    } else {
        ("False", "ComponentsNotReady")
    };
    json!({
        "observed_generation": generation,
        "conditions": [
            {"type": "Ready", "status": r, "reason": reason, "message": if ready { "Foreman answers" } else { "foreman: 0/1 replicas ready" }},
            {"type": "Progressing", "status": if ready { "False" } else { "True" }, "reason": if ready { "Complete" } else { "RollingOut" }, "message": ""},
        ],
        "url": format!("https://{HOSTNAME}"),
        "components": components,
    })
}

/// Plays the operator: once the resource exists, Progressing with the foreman Deployment
/// starting, then after a while Ready.
fn operator_rolls_out(api: &ApiServer, after: Duration) -> std::thread::JoinHandle<()> {
    let api = api.clone();
    std::thread::spawn(move || {
        let fm = api
            // The installer makes seven RSA 4096 keys before it applies the resource: about 4 s
            // of CPU, 15 s and more on a loaded machine (operator/benches/certificates.rs).
            .wait_for(FOREMAN, Duration::from_secs(120))
            .expect("foreman-box creates the resource");
        let generation = fm["metadata"]["generation"].as_i64().unwrap();
        api.put(deployment("foreman", 0));
        api.put(pod(
            "foreman-7d9c-abcde",
            "foreman",
            json!({"waiting": {"reason": "ContainerCreating"}}),
            0,
        ));
        api.set_status(
            FOREMAN,
            status(generation, false, json!({"foreman": "0/1 replicas ready"})),
        );
        std::thread::sleep(after);
        api.put(deployment("foreman", 1));
        api.set_status(
            FOREMAN,
            status(generation, true, json!({"foreman": "ready"})),
        );
    })
}

/// The apply requests to the resource.
fn applies(api: &ApiServer) -> Vec<foreman_box_tests::apiserver::Request> {
    api.writes()
        .into_iter()
        .filter(|r| r.path == FOREMAN)
        .collect()
}

/// Converges a fresh stand-in: created, then Ready.
fn converged() -> Cluster {
    let c = cluster();
    let op = operator_rolls_out(&c.api, Duration::from_millis(300));
    let out = install(&c, &[]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    c
}

#[test]
fn absent_resource_is_created_by_server_side_apply_and_the_wait_ends_when_ready() {
    let c = cluster();
    let plan = run(&mut foreman_cmd("plan", &c, &[]));
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout.contains(&format!("create Foreman foreman/foreman (hostname {HOSTNAME}, dynflow_workers 2, katello true, remote_execution true) (it does not exist yet)")),
        "{}",
        plan.stdout
    );
    assert!(plan
        .stdout
        .contains("wait until Foreman foreman/foreman is Ready"));
    assert!(
        c.api.writes().is_empty(),
        "plan wrote: {:?}",
        c.api.writes()
    );

    let op = operator_rolls_out(&c.api, Duration::from_millis(1500));
    let out = install(&c, &[]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());

    // The generated Secrets (tested below), then one write to the resource: the apply.
    let writes: Vec<_> = c
        .api
        .writes()
        .into_iter()
        .filter(|r| r.path == FOREMAN)
        .collect();
    assert_eq!(writes.len(), 1, "one write, the apply: {writes:?}");
    let apply = &writes[0];
    assert_eq!(apply.method, "PATCH");
    assert_eq!(apply.path, FOREMAN);
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        apply.query.get("fieldManager").map(String::as_str),
        Some("foreman-box")
    );
    assert!(!apply.query.contains_key("force"), "{:?}", apply.query);
    assert_eq!(apply.status, 201);
    let body: Value = serde_json::from_str(&apply.body).unwrap();
    assert_eq!(
        body,
        json!({
            "apiVersion": "app.theforeman.org/v1alpha1",
            "kind": "Foreman",
            "metadata": {"name": "foreman", "namespace": "foreman"},
            "spec": {"hostname": HOSTNAME, "dynflow_workers": 2, "tuning": "default", "plugins": {"katello": true, "remote_execution": true}},
        })
    );
    // The live view saw the Deployment starting, then ready.
    assert!(
        out.stdout.contains("foreman waiting: 0/1 ready")
            && out.stdout.contains("foreman ready: 1/1 ready"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains(&format!("Foreman: https://{HOSTNAME}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("user:    admin"));
    assert!(out.stdout.contains(
        "kubectl -n foreman get secret foreman-generated -o jsonpath='{.data.admin-password}' | base64 -d"
    ));
}

#[test]
fn present_and_unchanged_resource_is_not_written() {
    let c = converged();
    let before = c.api.writes().len();
    let out = install(&c, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
    assert_eq!(c.api.writes().len(), before, "{:?}", c.api.writes());
    assert_eq!(run(&mut foreman_cmd("plan", &c, &[])).code, 0);
}

#[test]
fn changed_workers_and_plugin_update_the_resource() {
    let c = converged();
    let plan = run(&mut foreman_cmd(
        "plan",
        &c,
        &["--dynflow-workers", "3", "--katello", "false"],
    ));
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout
            .contains("update spec.dynflow_workers 2 → 3, spec.plugins.katello true → false"),
        "{}",
        plan.stdout
    );
    // The operator reports on the new generation after a moment.
    let api = c.api.clone();
    let op = std::thread::spawn(move || {
        for _ in 0..300 {
            let fm = api.get(FOREMAN).unwrap();
            let g = fm["metadata"]["generation"].as_i64().unwrap();
            if g == 2 {
                api.set_status(FOREMAN, status(g, true, json!({"foreman": "ready"})));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = install(&c, &["--dynflow-workers", "3", "--katello", "false"]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    let fm = c.api.get(FOREMAN).unwrap();
    assert_eq!(fm["spec"]["dynflow_workers"], 3);
    assert_eq!(fm["spec"]["plugins"]["katello"], false);
    let last = applies(&c.api).pop().unwrap();
    assert!(!last.query.contains_key("force"));
}

#[test]
fn field_changed_by_another_manager_is_left_alone_and_reported() {
    let c = converged();
    c.api
        .edit(FOREMAN, "spec.dynflow_workers", json!(5), "kubectl-edit");
    // The operator has seen the edit.
    c.api
        .set_status(FOREMAN, status(2, true, json!({"foreman": "ready"})));
    let out = install(&c, &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    let last = applies(&c.api).pop().unwrap();
    assert_eq!(last.status, 409, "the API server refused the apply");
    assert!(!last.query.contains_key("force"), "never forced");
    assert_eq!(
        c.api.get(FOREMAN).unwrap()["spec"]["dynflow_workers"],
        5,
        "their value stays"
    );
    assert!(
        out.stderr.contains(".spec.dynflow_workers is managed by field manager \"kubectl-edit\" (foreman-box wants 2)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("help:"), "{}", out.stderr);

    // Agreeing with them resolves it without a write.
    let before = c.api.writes().len();
    let agree = install(&c, &["--dynflow-workers", "5"]);
    assert_eq!(agree.code, 0, "{}", agree.all());
    assert_eq!(c.api.writes().len(), before);
}

#[test]
fn component_stuck_in_image_pull_backoff_times_out_naming_it_and_why() {
    let c = cluster();
    c.api.put(deployment("foreman", 0));
    c.api.put(deployment("dynflow-sidekiq", 0));
    c.api.put(pod(
        "foreman-7d9c-abcde",
        "foreman",
        json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"quay.io/foreman/foreman:3.18\""}}),
        0,
    ));
    c.api.put(pod(
        "dynflow-sidekiq-5f6d-xyz",
        "dynflow-sidekiq",
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}),
        3,
    ));
    // A crash-looping container's last words are in its previous run's log.
    c.api.put_previous_log(
        "foreman",
        "dynflow-sidekiq-5f6d-xyz",
        "dynflow-sidekiq",
        "starting dynflow\nPG::ConnectionBad: could not connect to server\n",
    );
    c.api.put(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "foreman-7d9c-abcde.1", "namespace": "foreman"},
        "type": "Warning", "reason": "Failed", "count": 4,
        "message": "Failed to pull image \"quay.io/foreman/foreman:3.18\": not found",
        "involvedObject": {"kind": "Pod", "name": "foreman-7d9c-abcde", "namespace": "foreman"},
        "lastTimestamp": "2026-11-23T10:00:00Z",
    }));
    c.api.put(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "foreman-7d9c-abcde.2", "namespace": "foreman"},
        "type": "Normal", "reason": "Pulling", "message": "Pulling image",
        "involvedObject": {"kind": "Pod", "name": "foreman-7d9c-abcde", "namespace": "foreman"},
    }));
    let op = {
        let api = c.api.clone();
        std::thread::spawn(move || {
            // After the installer's RSA keys (see operator_rolls_out).
            let fm = api.wait_for(FOREMAN, Duration::from_secs(120)).unwrap();
            let g = fm["metadata"]["generation"].as_i64().unwrap();
            api.set_status(
                FOREMAN,
                status(g, false, json!({"foreman": "0/1 replicas ready", "dynflow-sidekiq": "0/1 replicas ready"})),
            );
        })
    };
    let out = install(&c, &["--wait-timeout", "3"]);
    let operator = op.join();
    assert_eq!(out.code, 1, "{}", out.all());
    operator.unwrap();
    let err = &out.stderr;
    for needle in [
        "Foreman did not become Ready within 3s",
        "foreman                  0/1 ready    ImagePullBackOff",
        "dynflow-sidekiq          0/1 ready    CrashLoopBackOff: exit 1",
        "foreman-7d9c-abcde container foreman: ImagePullBackOff: Back-off pulling image \"quay.io/foreman/foreman:3.18\"",
        "Pod/foreman-7d9c-abcde Failed: Failed to pull image \"quay.io/foreman/foreman:3.18\": not found (x4)",
        "last log lines of dynflow-sidekiq-5f6d-xyz container dynflow-sidekiq (previous run):",
        "| PG::ConnectionBad: could not connect to server",
        "help: fix what is shown above",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    assert!(!err.contains("Pulling image"), "only Warning events: {err}");
    let logs = c
        .api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/log"))
        .expect("the logs were read");
    assert_eq!(logs.query.get("previous").map(String::as_str), Some("true"));
    assert_eq!(logs.query.get("tailLines").map(String::as_str), Some("20"));

    // A re-run picks up where it stopped: no new apply, only the wait, which now succeeds.
    let g = c.api.get(FOREMAN).unwrap()["metadata"]["generation"]
        .as_i64()
        .unwrap();
    c.api.put(deployment("foreman", 1));
    c.api.put(deployment("dynflow-sidekiq", 1));
    let plan = run(&mut foreman_cmd("plan", &c, &[]));
    assert!(
        plan.stdout.contains(
            "wait until Foreman foreman/foreman is Ready (Ready is False (ComponentsNotReady)"
        ) && !plan.stdout.contains("create Foreman"),
        "{}",
        plan.stdout
    );
    c.api.set_status(
        FOREMAN,
        status(
            g,
            true,
            json!({"foreman": "ready", "dynflow-sidekiq": "ready"}),
        ),
    );
    let writes = applies(&c.api).len();
    let again = install(&c, &["--wait-timeout", "3"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(applies(&c.api).len(), writes, "nothing re-applied");
}

#[test]
fn status_shows_conditions_and_components_and_says_when_k3s_is_unreachable() {
    let c = converged();
    let out = run(&mut foreman_cmd("status", &c, &[]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "foreman:  foreman/foreman Ready at https://{HOSTNAME}"
        )),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("Ready=True (AllComponentsReady): Foreman answers"));
    assert!(
        out.stdout.contains("✓ foreman                  1/1 ready"),
        "{}",
        out.stdout
    );

    let json_out = run(&mut foreman_cmd("status", &c, &["--json"]));
    let v: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(v["foreman"]["reachable"], true);
    assert_eq!(v["foreman"]["resource"]["ready"], true);
    assert_eq!(v["foreman"]["resource"]["conditions"][0]["type"], "Ready");
    assert_eq!(
        v["foreman"]["resource"]["components"][0],
        json!({"name": "foreman", "ready": true, "progress": "1/1 ready", "reason": null})
    );

    // Without a kubeconfig under the root and none given: said, not failed.
    let root = debian_root();
    let out = run(&mut foreman_box(&[
        "status",
        "--root",
        root.path().to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("foreman:  k3s not reachable through /etc/rancher/k3s/k3s.yaml (no kubeconfig at /etc/rancher/k3s/k3s.yaml"),
        "{}",
        out.stdout
    );
    // A kubeconfig whose server is gone (the stand-in stops when dropped).
    drop(c);
    let dead = ApiServer::start().kubeconfig(root.path());
    let out = run(&mut foreman_box(&[
        "status",
        "--json",
        "--root",
        root.path().to_str().unwrap(),
        "--kubeconfig",
        dead.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["foreman"]["reachable"], false, "{v}");
    assert!(
        v["foreman"]["problem"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{v}"
    );
}

#[test]
fn skip_start_plans_without_connecting_and_says_when_it_will_apply() {
    let root = debian_root();
    let out = run(&mut foreman_box(&[
        "plan",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "foreman",
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all()
            .contains("Foreman foreman/foreman will be applied once k3s runs"),
        "{}",
        out.all()
    );
    assert!(!Path::new(&root.path().join("etc/rancher")).exists());
}

/// Every step of the default order, as a curl-to-shell user would run it but under `--root
/// --skip-start`: k3s from the loopback mirror, PostgreSQL external (a throwaway server),
/// storage, and the foreman step, which connects to nothing and says when it will apply.
#[test]
fn every_step_of_the_default_order_installs_under_root_and_a_rerun_changes_no_file() {
    use foreman_box_tests::mirror::Mirror;
    use foreman_box_tests::pg::Pg;
    use foreman_box_tests::{artifact, sha256_hex, tree_mtimes};

    let mirror = Mirror::start();
    let k3s = artifact(1 << 20, 7);
    let wire = "v1.33.5%2Bk3s1";
    mirror.put(&format!("/{wire}/k3s"), k3s.clone());
    mirror.put(
        &format!("/{wire}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(&k3s)).into_bytes(),
    );
    let pg = Pg::start();
    let root = debian_root();
    let r = root.path().to_str().unwrap().to_string();
    let (url, admin) = (mirror.url(), pg.admin_url());
    // The operator step builds the image from the running binary: the static release one.
    let static_bin = foreman_box_tests::static_binary();
    let cmd = |verb: &str| {
        let mut cmd = foreman_box_tests::foreman_box_at(
            static_bin,
            &[
                verb,
                "--root",
                &r,
                "--skip-start",
                "--ignore-preflight",
                "all",
                "--hostname",
                HOSTNAME,
                "--k3s-release-url",
                &url,
                "--postgres-mode",
                "external",
                "--postgres-admin-url",
                &admin,
                "--node-ip",
                "192.0.2.10",
                "--pulp-dir",
                "/srv/pulp",
            ],
        );
        cmd.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", &pg.password);
        cmd
    };
    let out = run(&mut cmd("install"));
    assert_eq!(out.code, 0, "{}", out.all());
    for step in [
        "preflight",
        "k3s",
        "postgres",
        "storage",
        "operator",
        "foreman",
    ] {
        assert!(
            out.stdout.contains(&format!("{step}: ")),
            "step {step} did not run:\n{}",
            out.all()
        );
    }
    assert!(
        out.all()
            .contains("Foreman foreman/foreman will be applied once k3s runs"),
        "{}",
        out.all()
    );
    for file in [
        "usr/local/bin/k3s",
        "etc/rancher/k3s/config.yaml",
        "etc/foreman-box/secrets/postgres-foreman",
        "var/lib/rancher/k3s/server/manifests/foreman-box-postgres.yaml",
        "var/lib/rancher/k3s/server/manifests/foreman-box-storage.yaml",
        "var/lib/rancher/k3s/server/manifests/foreman-box-20-operator.yaml",
        "var/lib/rancher/k3s/agent/images/foreman-box-operator.tar",
        "srv/pulp/media",
    ] {
        assert!(root.path().join(file).exists(), "{file} missing");
    }
    assert!(
        !out.all().contains(&pg.password),
        "the admin password leaked"
    );

    let before = tree_mtimes(root.path());
    let again = run(&mut cmd("install"));
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("up to date, nothing changed"),
        "{}",
        again.stdout
    );
    assert_eq!(tree_mtimes(root.path()), before, "a re-run changed files");
    let plan = run(&mut cmd("plan"));
    assert_eq!(plan.code, 0, "{}", plan.all());
}

// The generated Secrets: made by foreman-box before the resource, kept outside the cluster in
// /etc/foreman-box/secrets/NAME.yaml, and brought back from there into a new cluster.

const SECRETS: &str = "/api/v1/namespaces/foreman/secrets";
const GENERATED: [&str; 5] = [
    "foreman-generated",
    "foreman-ca",
    "foreman-tls",
    "pulp-symmetric-key",
    "foreman-proxy-ssh",
];

fn copy_of(root: &Path, name: &str) -> PathBuf {
    root.join(format!("etc/foreman-box/secrets/{name}.yaml"))
}

/// The `data` of a kept copy, as the stand-in stores a Secret's (base64 strings).
fn copy_data(root: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(copy_of(root, name)).unwrap();
    let v: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(v["kind"], "Secret", "{text}");
    assert_eq!(v["metadata"]["name"], name);
    assert_eq!(v["metadata"]["namespace"], "foreman");
    v["data"].clone()
}

fn live_data(api: &ApiServer, name: &str) -> Value {
    api.get(&format!("{SECRETS}/{name}"))
        .unwrap_or_else(|| panic!("Secret {name} exists"))["data"]
        .clone()
}

fn decoded(data: &Value, key: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

/// The names of the Secrets created (POST), in order.
fn created(api: &ApiServer) -> Vec<String> {
    api.writes()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            body["metadata"]["name"].as_str().unwrap().to_string()
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Everything a run showed or logged: stdout, stderr and the run logs under the root.
fn everything_shown(root: &Path, out: &Run) -> String {
    let mut all = out.all();
    if let Ok(dir) = std::fs::read_dir(root.join("var/log/foreman-box")) {
        for e in dir.flatten() {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

#[test]
fn generated_secrets_are_created_before_the_resource_and_kept_in_0600_copies() {
    let c = cluster();
    let op = operator_rolls_out(&c.api, Duration::from_millis(300));
    let out = install(&c, &["-vv"]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());

    let writes = c.api.writes();
    assert!(
        writes
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| r.path == SECRETS),
        "{writes:?}"
    );
    assert_eq!(created(&c.api), GENERATED, "{writes:?}");
    let first_apply = writes.iter().position(|r| r.path == FOREMAN).unwrap();
    assert_eq!(
        first_apply, 5,
        "the Secrets come before the resource: {writes:?}"
    );

    let root = c.root.path();
    assert_eq!(mode(&root.join("etc/foreman-box/secrets")), 0o700);
    for name in GENERATED {
        assert_eq!(mode(&copy_of(root, name)), 0o600, "{name}");
        let kept = copy_data(root, name);
        assert!(kept.as_object().is_some_and(|m| !m.is_empty()), "{name}");
        assert_eq!(
            kept,
            live_data(&c.api, name),
            "{name}: copy and Secret agree"
        );
    }
    let generated = live_data(&c.api, "foreman-generated");
    let admin = decoded(&generated, "admin-password");
    assert_eq!(admin.len(), 48);
    let key = decoded(&generated, "encryption-key");
    let ca = live_data(&c.api, "foreman-ca");
    assert!(decoded(&ca, "ca.key").starts_with("-----BEGIN PRIVATE KEY-----"));
    let tls = live_data(&c.api, "foreman-tls");
    assert!(
        tls.get("ca.key").is_none(),
        "the CA key is kept apart from the edge's Secret"
    );
    assert_eq!(decoded(&tls, "ca.crt"), decoded(&ca, "ca.crt"));
    let shown = everything_shown(root, &out);
    for secret in [&admin, &key] {
        assert!(
            !shown.contains(secret.as_str()),
            "a generated value was shown or logged"
        );
    }
    assert!(
        !shown.contains("PRIVATE KEY-----\n"),
        "a private key was shown or logged"
    );
    assert!(
        out.stdout.contains(
            "create Secret foreman/foreman-generated with new values, kept in /etc/foreman-box/secrets/foreman-generated.yaml"
        ),
        "{}",
        out.stdout
    );

    // Converged: the copies and the Secrets agree, nothing is planned or written.
    let before = c.api.writes().len();
    let plan = run(&mut foreman_cmd("plan", &c, &[]));
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert_eq!(c.api.writes().len(), before);
}

#[test]
fn without_plugins_only_the_core_secrets_are_made() {
    let c = cluster();
    let op = operator_rolls_out(&c.api, Duration::from_millis(300));
    let out = install(&c, &["--katello", "false", "--remote-execution", "false"]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        created(&c.api),
        ["foreman-generated", "foreman-ca", "foreman-tls"]
    );
    assert!(!copy_of(c.root.path(), "pulp-symmetric-key").exists());
    assert!(!copy_of(c.root.path(), "foreman-proxy-ssh").exists());
}

#[test]
fn a_new_cluster_on_kept_data_gets_the_kept_values_back() {
    let first = converged();
    let root = first.root.path();
    let kept: Vec<Value> = GENERATED.iter().map(|n| copy_data(root, n)).collect();

    // k3s uninstalled and installed again: an empty cluster, the same host tree.
    let api = ApiServer::start();
    api.put(established_crd());
    api.put(available_operator());
    let kubeconfig = api.kubeconfig(root);
    let second = Cluster {
        api,
        root: first.root,
        kubeconfig,
    };
    let plan = run(&mut foreman_cmd("plan", &second, &[]));
    assert!(
        plan.stdout.contains(
            "create Secret foreman/foreman-generated from /etc/foreman-box/secrets/foreman-generated.yaml (the cluster lacks it; the copy holds the values the kept databases were made with)"
        ),
        "{}",
        plan.stdout
    );
    let op = operator_rolls_out(&second.api, Duration::from_millis(300));
    let out = install(&second, &[]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    for (name, kept) in GENERATED.iter().zip(&kept) {
        assert_eq!(&live_data(&second.api, name), kept, "{name} came back");
        assert_eq!(
            &copy_data(second.root.path(), name),
            kept,
            "{name}'s copy is unchanged"
        );
    }
}

#[test]
fn secrets_an_operator_made_are_copied_out_and_never_replaced() {
    let c = cluster();
    let made = json!({"admin-password": "b3BlcmF0b3ItbWFkZQ==", "encryption-key": "a2V5"});
    c.api.put(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "foreman-generated", "namespace": "foreman"},
        "type": "Opaque", "data": made,
    }));
    let op = operator_rolls_out(&c.api, Duration::from_millis(300));
    let out = install(&c, &[]);
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("no copy of Secret foreman/foreman-generated is kept outside the cluster"),
        "{}",
        out.stdout
    );
    let posted = created(&c.api);
    assert!(
        !posted.iter().any(|n| n == "foreman-generated"),
        "{posted:?}"
    );
    assert_eq!(live_data(&c.api, "foreman-generated"), made);
    assert_eq!(copy_data(c.root.path(), "foreman-generated"), made);
}

#[test]
fn a_copy_that_differs_from_the_cluster_follows_it_and_the_old_copy_is_kept() {
    let c = converged();
    let root = c.root.path();
    let path = copy_of(root, "foreman-generated");
    let old = std::fs::read(&path).unwrap();
    // Someone rotated a value in the cluster (kubectl edit): Foreman runs with that one now.
    let mut secret = c.api.get(&format!("{SECRETS}/foreman-generated")).unwrap();
    secret["data"]["admin-password"] = json!("cm90YXRlZA==");
    c.api.put(secret);

    let out = install(&c, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("warning: /etc/foreman-box/secrets/foreman-generated.yaml holds other values than Secret foreman/foreman-generated in the cluster"),
        "{}",
        out.all()
    );
    assert_eq!(
        copy_data(root, "foreman-generated")["admin-password"],
        "cm90YXRlZA=="
    );
    let replaced = root.join("etc/foreman-box/secrets/foreman-generated.yaml.replaced");
    assert_eq!(std::fs::read(&replaced).unwrap(), old);
    assert_eq!(mode(&replaced), 0o600);
    assert_eq!(run(&mut foreman_cmd("plan", &c, &[])).code, 0);

    // A second rotation keeps the second old copy next to the first, never over it.
    let second_old = std::fs::read(&path).unwrap();
    let mut secret = c.api.get(&format!("{SECRETS}/foreman-generated")).unwrap();
    secret["data"]["admin-password"] = json!("YWdhaW4=");
    c.api.put(secret);
    let out = install(&c, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("foreman-generated.yaml.replaced.1"),
        "{}",
        out.all()
    );
    assert_eq!(
        std::fs::read(&replaced).unwrap(),
        old,
        "the first old copy stays"
    );
    assert_eq!(
        std::fs::read(root.join("etc/foreman-box/secrets/foreman-generated.yaml.replaced.1"))
            .unwrap(),
        second_old
    );
}

#[test]
fn a_broken_copy_stops_the_run_names_the_file_and_changes_nothing() {
    let c = converged();
    let root = c.root.path();
    let path = copy_of(root, "foreman-tls");
    std::fs::write(
        &path,
        "kind: Secret\nmetadata: {name: someone-else}\ndata: {a: YQ==}\n",
    )
    .unwrap();
    let before = c.api.writes().len();
    let out = install(&c, &[]);
    assert_ne!(out.code, 0, "{}", out.all());
    let err = out.stderr.clone();
    assert!(
        err.contains("/etc/foreman-box/secrets/foreman-tls.yaml is not a usable copy of Secret foreman/foreman-tls: it names Secret \"someone-else\"; nothing was changed"),
        "{err}"
    );
    assert!(
        err.contains("help: restore the file from a backup"),
        "{err}"
    );
    assert_eq!(
        err.matches("is not a usable copy").count(),
        1,
        "said once: {err}"
    );
    assert_eq!(
        c.api.writes().len(),
        before,
        "nothing written to the cluster"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "kind: Secret\nmetadata: {name: someone-else}\ndata: {a: YQ==}\n"
    );

    // A copy that does not parse: where, never what (the text holds secrets).
    let unreadable =
        "kind: Secret\nmetadata: {name: foreman-tls}\ndata: {tls.key: 'hunter2 is not base64!'}\n";
    std::fs::write(&path, unreadable).unwrap();
    let out = install(&c, &[]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("is not a usable copy of Secret foreman/foreman-tls: it does not read as a Secret manifest (line "),
        "{}",
        out.stderr
    );
    assert!(
        !out.all().contains("hunter2"),
        "the copy's content was shown: {}",
        out.all()
    );
    assert_eq!(
        c.api.writes().len(),
        before,
        "nothing written to the cluster"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), unreadable);

    // An alias bomb in a field a Secret does not have: named as one, not as a nameless Secret.
    let mut bomb = String::from("kind: Secret\nmetadata: {name: foreman-tls}\ndata: {a: YQ==}\n");
    bomb.push_str(
        "x0: &x0 [hunter2, hunter2, hunter2, hunter2, hunter2, hunter2, hunter2, hunter2]\n",
    );
    for i in 1..9 {
        let eight = vec![format!("*x{}", i - 1); 8].join(", ");
        bomb.push_str(&format!("x{i}: &x{i} [{eight}]\n"));
    }
    std::fs::write(&path, &bomb).unwrap();
    let out = install(&c, &[]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("foreman-tls.yaml is not a usable copy of Secret foreman/foreman-tls: its YAML aliases (`*name`) expand past what a Secret manifest holds"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains("hunter2"), "{}", out.all());

    // A copy that is a symbolic link: named as one, never read through.
    let elsewhere = root.join("elsewhere.yaml");
    std::fs::write(&elsewhere, unreadable).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let out = install(&c, &[]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "foreman-tls.yaml is a symbolic link (to {})",
            elsewhere.display()
        )) && out.stderr.contains("help: remove the link"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains("hunter2"), "{}", out.all());
    assert_eq!(
        c.api.writes().len(),
        before,
        "nothing written to the cluster"
    );
}

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A kubeconfig naming the stand-in's credentials but `port` as its server.
fn kubeconfig_at(c: &Cluster, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["clusters"][0]["cluster"]["server"] = json!(format!("http://127.0.0.1:{port}"));
    let path = c.root.path().join("late-kubeconfig.yaml");
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    path
}

/// After `after`, listens on `port` and passes every connection through to `to`: an API
/// server that comes up while the step is already trying to reach it.
fn comes_up_late(port: u16, to: String, after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let to = to.trim_start_matches("http://").to_string();
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = std::net::TcpStream::connect(&to).unwrap();
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

/// `install --only foreman` of the cluster `c` through another kubeconfig.
fn install_through(c: &Cluster, kubeconfig: &Path, wait_timeout: &str) -> Run {
    let mut cmd = foreman_box(&[
        "install",
        "--root",
        c.root.path().to_str().unwrap(),
        "--only",
        "foreman",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--hostname",
        HOSTNAME,
        "--wait-timeout",
        wait_timeout,
    ]);
    run(&mut cmd)
}

#[test]
fn a_refused_connection_is_waited_out_within_the_wait_timeout() {
    let c = cluster();
    let port = free_port();
    let late = kubeconfig_at(&c, port);
    comes_up_late(port, c.api.url(), Duration::from_millis(2500));
    let op = operator_rolls_out(&c.api, Duration::from_millis(300));
    let out = install_through(&c, &late, "60");
    op.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !out.all().contains("client error (Connect)"),
        "kube's own error lines stay in the log: {}",
        out.all()
    );
    let shown = everything_shown(c.root.path(), &out);
    assert_eq!(
        shown
            .matches("waiting up to 60s for the Kubernetes API to answer")
            .count(),
        1,
        "said once: {shown}"
    );
    assert_eq!(applies(&c.api).len(), 1, "{:?}", c.api.writes());

    // Nothing ever listens: the wait ends at the timeout, saying so and what to look at.
    let closed = kubeconfig_at(&c, free_port());
    let started = std::time::Instant::now();
    let out = install_through(&c, &closed, "3");
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("no answer within --wait-timeout 3s")
            && out.stderr.contains("Connection refused")
            && out
                .stderr
                .contains("help: is k3s running? `systemctl status k3s`"),
        "{}",
        out.stderr
    );
}
