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
            .wait_for(FOREMAN, Duration::from_secs(30))
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

    let writes = c.api.writes();
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
            "spec": {"hostname": HOSTNAME, "dynflow_workers": 2, "plugins": {"katello": true, "remote_execution": true}},
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
    c.api.put_log(
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
            let fm = api.wait_for(FOREMAN, Duration::from_secs(30)).unwrap();
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
