//! Pulp for real: the operator's Pulp pods, rendered for the default resource, run as processes
//! from pulpcore (PyPI, the version of Foreman 3.18's image) with exactly their environment and
//! files (see `tests/src/pulp.rs` for how), against the throwaway PostgreSQL with the `pulp` role
//! the real postgres step created and the Pulp storage the real storage step prepared.

use foreman_box_tests::pg::Pg;
use foreman_box_tests::pulp::{self, Cluster, Loopback, Redis, Running};
use foreman_box_tests::{debian_root, foreman_box, run, sha256_hex};
use foreman_operator::crd::Foreman;
use foreman_operator::read::read_foreman;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bounds for each stage; the whole test aims at under 3 minutes on 2 cores.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(240);
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
const TASK_TIMEOUT: Duration = Duration::from_secs(60);
/// The workloads the Pulp render must have (the migrate Job goes by its label: its name is hashed).
const MIGRATE_LABEL: &str = "pulp-migrate";
const DEPLOYMENTS: [&str; 3] = ["pulp-api", "pulp-content", "pulp-worker"];

#[tokio::test(flavor = "multi_thread")]
async fn pulp_render_migrates_serves_status_and_serves_an_uploaded_file_back() {
    let _ports = PULP_PORTS.lock().await;
    let started = Instant::now();
    let venv = pulp::venv();
    let pg = Pg::start();
    let redis = Redis::start();
    let root = debian_root();

    // The product's way to the database and the storage: the real steps, external mode.
    let mut install = foreman_box(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "postgres,storage",
        "--postgres-mode",
        "external",
        "--postgres-admin-url",
        &pg.admin_url(),
        "--node-ip",
        "192.0.2.10",
    ]);
    install.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", &pg.password);
    let out = run(&mut install);
    assert_eq!(out.code, 0, "foreman-box install: {}", out.all());

    let (objects, fm) = objects(root.path());
    let stored =
        std::fs::read_to_string(root.path().join("etc/foreman-box/secrets/postgres-pulp")).unwrap();
    let cluster = Cluster {
        objects,
        root: root.path().to_path_buf(),
    };
    let loopback = Loopback {
        db_port: pg.port,
        redis_port: redis.port,
    };
    let scratch = tempfile::Builder::new()
        .prefix("fb-pulp-")
        .tempdir()
        .unwrap();
    let pod = |w: &Value| {
        pulp::pod(&cluster, w, &venv, &loopback, scratch.path()).unwrap_or_else(|e| {
            panic!("the rendered Pulp pod cannot run as the kubelet would run it: {e}")
        })
    };
    let migrate = cluster
        .objects
        .iter()
        .find(|o| {
            o["kind"] == "Job" && o["metadata"]["labels"]["app.kubernetes.io/name"] == MIGRATE_LABEL
        })
        .unwrap_or_else(|| panic!("the render has no Job labelled {MIGRATE_LABEL}"));
    let deployments: Vec<&Value> = DEPLOYMENTS
        .iter()
        .map(|d| {
            cluster
                .objects
                .iter()
                .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == *d)
                .unwrap_or_else(|| panic!("the render has no Deployment {d}"))
        })
        .collect();
    let api_pod = pod(deployments[0]);
    assert_eq!(
        api_pod.containers[0].env["PULP_DATABASES__default__PASSWORD"],
        stored.trim(),
        "the Pulp pods log in with the password the postgres step stored"
    );

    // 1. The migration Job, every container in order, as the Job's pod runs them.
    let t = Instant::now();
    let job = pod(migrate);
    for p in job.init.iter().chain(&job.containers) {
        pulp::run_to_completion(p, scratch.path(), MIGRATE_TIMEOUT)
            .unwrap_or_else(|e| panic!("the migrate Job failed: {e}"));
    }
    let migrate_time = t.elapsed();
    // The schema exists and belongs to the `pulp` role (it created it with its own privileges).
    let owner: String = pg
        .connect("pulp", stored.trim(), "pulp")
        .await
        .expect("pulp logs in")
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'core_artifact'",
            &[],
        )
        .await
        .expect("the migrate Job created core_artifact")
        .get(0);
    assert_eq!(owner, "pulp");

    // 2. The Deployments: init containers to completion, then the containers, listening.
    let t = Instant::now();
    let mut running: Vec<Running> = Vec::new();
    for d in &deployments {
        let p = pod(d);
        for c in &p.containers {
            for port in &c.ports {
                pulp::require_free_port(*port).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            }
        }
        for c in &p.init {
            pulp::run_to_completion(c, scratch.path(), START_TIMEOUT)
                .unwrap_or_else(|e| panic!("init container: {e}"));
        }
        for c in &p.containers {
            running.push(pulp::spawn(c, scratch.path()));
            let r = running.last_mut().unwrap();
            for port in &c.ports {
                pulp::wait_for_port(r, *port, START_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    let api_port = port_of(&api_pod, "pulp-api");
    let content_port = port_of(&pod(deployments[1]), "pulp-content");
    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // 3. Status: the database connected, a worker and a content app online.
    let status = wait_for_status(&http, &api, &mut running).await;
    let start_time = t.elapsed();
    assert_eq!(status["database_connection"]["connected"], true, "{status}");
    assert_eq!(
        status["versions"]
            .as_array()
            .and_then(|v| v.iter().find(|c| c["component"] == "core"))
            .map(|c| c["version"].clone()),
        Some(json!(pulp::PULPCORE_VERSION)),
        "{status}"
    );
    if status["redis_connection"].is_object() {
        assert_eq!(status["redis_connection"]["connected"], true, "{status}");
    }

    // 4. A file through the API and a worker task, served back by the content app.
    let auth = Auth::of(&api_pod.containers[0]);
    let bytes = foreman_box_tests::artifact(256 * 1024 + 17, 7);
    let repo = call(
        &http,
        &auth,
        &api,
        "POST",
        "/pulp/api/v3/repositories/file/file/",
        Some(json!({"name": "foreman-box-e2e"})),
        &mut running,
    )
    .await;
    let repo_href = repo["pulp_href"]
        .as_str()
        .unwrap_or_else(|| panic!("{repo}"))
        .to_string();
    let (ctype, body) = pulp::multipart(
        &[
            ("relative_path", "e2e/payload.bin"),
            ("repository", &repo_href),
        ],
        ("file", "payload.bin", &bytes),
    );
    let resp = auth
        .apply(http.post(format!("{api}/pulp/api/v3/content/file/files/")))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .expect("upload request");
    let task = json_of(resp, "upload", &mut running).await;
    wait_task(&http, &auth, &api, &task, &mut running).await;
    let publication = call(
        &http,
        &auth,
        &api,
        "POST",
        "/pulp/api/v3/publications/file/file/",
        Some(json!({"repository": repo_href})),
        &mut running,
    )
    .await;
    let done = wait_task(&http, &auth, &api, &publication, &mut running).await;
    let pub_href = done["created_resources"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{done}"))
        .to_string();
    let dist = call(&http, &auth, &api, "POST", "/pulp/api/v3/distributions/file/file/", Some(json!({"name": "foreman-box-e2e", "base_path": "foreman-box-e2e", "publication": pub_href})), &mut running).await;
    wait_task(&http, &auth, &api, &dist, &mut running).await;

    let url =
        format!("http://127.0.0.1:{content_port}/pulp/content/foreman-box-e2e/e2e/payload.bin");
    let got = http.get(&url).send().await.expect("content request");
    assert_eq!(
        got.status(),
        200,
        "{url}: {:?}\n{}",
        got.status(),
        logs(&running)
    );
    let served = got.bytes().await.unwrap();
    assert_eq!(served.len(), bytes.len(), "{url} served a different length");
    assert!(served[..] == bytes[..], "{url} served different bytes");

    // The artifact is in the storage step's directory (the claim's hostPath), not elsewhere.
    let sha = sha256_hex(&bytes);
    let artifact = root
        .path()
        .join("var/lib/pulp/media/artifact")
        .join(&sha[..2])
        .join(&sha[2..]);
    assert!(artifact.is_file(), "{} missing", artifact.display());

    // 5. Katello's three calls to Pulp, replayed with curl as Katello makes them, through the
    // rendered pulp-control and edge in front of this pulpcore.
    katello_calls_reach_pulp_as_katello_makes_them(&cluster.objects, &fm, api_port, &repo_href);

    drop(running);
    eprintln!(
        "pulp e2e: migrate {:.1} s, start to status {:.1} s, total {:.1} s",
        migrate_time.as_secs_f64(),
        start_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The Pulp processes share this machine's network and the image's fixed ports: one scenario
/// that runs them at a time.
pub(crate) static PULP_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Everything a Pulp pod can read: the operator's render of the product's default resource, the
/// installer's manifests under `root`, and the Secrets the controller generates at reconcile.
fn objects(root: &Path) -> (Vec<Value>, Foreman) {
    let (mut objects, fm) = rendered_objects(root);
    objects.extend(generated_secrets());
    (objects, fm)
}

/// The operator's render of the product's default resource and the installer's manifests under
/// `root`, with the resource as the operator reads it.
pub(crate) fn rendered_objects(root: &Path) -> (Vec<Value>, Foreman) {
    let all = run(&mut foreman_box(&[
        "render",
        "--hostname",
        "foreman.example.com",
    ]));
    assert_eq!(all.code, 0, "{}", all.all());
    let cr = pulp::parse_objects(&all.stdout)
        .into_iter()
        .find(|o| o["kind"] == "Foreman")
        .expect("render prints the default Foreman resource");
    let dir = tempfile::tempdir().unwrap();
    let cr_file = dir.path().join("foreman.yaml");
    let cr_text = serde_yaml::to_string(&cr).unwrap();
    std::fs::write(&cr_file, &cr_text).unwrap();
    let fm = read_foreman("render", &cr_text).expect("the rendered resource reads back");
    let out = run(&mut foreman_box(&[
        "operator",
        "render",
        cr_file.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    let mut objects = pulp::parse_objects(&out.stdout);
    let manifests = root.join("var/lib/rancher/k3s/server/manifests");
    for e in std::fs::read_dir(&manifests).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        objects.extend(pulp::parse_objects(&text));
    }
    (objects, fm)
}

/// The Secrets the controller creates once per resource (controller.rs `ensure_secret`), made
/// with the same generators: `foreman-generated` (`GENERATED_KEYS`, each `secrets::token(48)`)
/// and Pulp's symmetric key (`secrets::fernet_key`).
fn generated_secrets() -> Vec<Value> {
    use foreman_operator::resources::{pulp, GENERATED_KEYS, GENERATED_SECRET};
    use foreman_operator::secrets;
    let data: serde_json::Map<String, Value> = GENERATED_KEYS
        .iter()
        .map(|k| (k.to_string(), json!(secrets::token(48))))
        .collect();
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": GENERATED_SECRET}, "stringData": data}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": pulp::PULP_KEY_SECRET}, "stringData": {pulp::PULP_KEY: secrets::fernet_key()}}),
    ]
}

pub(crate) fn port_of(pod: &pulp::Pod, name: &str) -> u16 {
    *pod.containers[0]
        .ports
        .first()
        .unwrap_or_else(|| panic!("the {name} container declares no containerPort"))
}

/// How the test authenticates as Katello does. With Pulp's remote-user authentication (what the
/// Foreman project configures: the proxy in front maps Foreman's client certificate to
/// `REMOTE-USER: admin`), the header; nothing else is set up by the render.
pub(crate) enum Auth {
    RemoteUser(String),
    None,
}

impl Auth {
    pub(crate) fn of(api: &pulp::Process) -> Auth {
        let classes = api
            .env
            .get("PULP_REST_FRAMEWORK__DEFAULT_AUTHENTICATION_CLASSES")
            .cloned()
            .unwrap_or_default();
        match api.env.get("PULP_REMOTE_USER_ENVIRON_NAME") {
            Some(environ) if classes.contains("PulpRemoteUserAuthentication") => {
                // WSGI turns the header `Remote-User` into HTTP_REMOTE_USER.
                let header = environ
                    .strip_prefix("HTTP_")
                    .unwrap_or_else(|| {
                        panic!("PULP_REMOTE_USER_ENVIRON_NAME={environ} is not set from a header")
                    })
                    .replace('_', "-");
                Auth::RemoteUser(header)
            }
            _ => Auth::None,
        }
    }

    pub(crate) fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::RemoteUser(header) => rb.header(header.as_str(), "admin"),
            Auth::None => rb,
        }
    }
}

pub(crate) async fn call(
    http: &reqwest::Client,
    auth: &Auth,
    api: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    running: &mut [Running],
) -> Value {
    let mut rb = http.request(method.parse().unwrap(), format!("{api}{path}"));
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = auth
        .apply(rb)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    json_of(resp, &format!("{method} {path}"), running).await
}

pub(crate) async fn json_of(resp: reqwest::Response, what: &str, running: &mut [Running]) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.as_u16() == 401 || status.as_u16() == 403 {
        panic!(
            "{what}: {status}: {text}\nThe rendered Pulp does not let the test in as Katello would \
             (the `admin` user through remote-user authentication: PULP_AUTHENTICATION_BACKENDS, \
             PULP_REST_FRAMEWORK__DEFAULT_AUTHENTICATION_CLASSES, PULP_REMOTE_USER_ENVIRON_NAME, and \
             `pulpcore-manager reset-admin-password` after migrating; foremanctl src/roles/pulp)\n{}",
            logs(running)
        );
    }
    assert!(
        status.is_success(),
        "{what}: {status}: {text}\n{}",
        logs(running)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// Polls a task (`{"task": href}`) until it completes; returns the task.
pub(crate) async fn wait_task(
    http: &reqwest::Client,
    auth: &Auth,
    api: &str,
    started: &Value,
    running: &mut [Running],
) -> Value {
    let href = started["task"]
        .as_str()
        .unwrap_or_else(|| panic!("no task in {started}"));
    let deadline = Instant::now() + TASK_TIMEOUT;
    loop {
        let task = call(http, auth, api, "GET", href, None, running).await;
        match task["state"].as_str() {
            Some("completed") => return task,
            Some("failed") | Some("canceled") => {
                panic!("task {href} {}: {task}\n{}", task["state"], logs(running))
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "task {href} still {} after {TASK_TIMEOUT:?} (is a worker online?)\n{}",
            task["state"],
            logs(running)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Polls `/pulp/api/v3/status/` until the database, a worker and a content app are reported.
pub(crate) async fn wait_for_status(
    http: &reqwest::Client,
    api: &str,
    running: &mut [Running],
) -> Value {
    let url = format!("{api}/pulp/api/v3/status/");
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        for r in running.iter_mut() {
            if let Some(status) = r.exited() {
                panic!("{} exited with {status}:\n{}", r.name, r.tail(40));
            }
        }
        let last = match http.get(&url).send().await {
            Ok(resp) => {
                let code = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if code.is_success() {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let online = |k: &str| v[k].as_array().is_some_and(|a| !a.is_empty());
                    if v["database_connection"]["connected"] == true
                        && online("online_workers")
                        && online("online_content_apps")
                    {
                        return v;
                    }
                }
                format!("{code}: {body}")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{url} did not report the database connected, an online worker and an online content \
             app within {STATUS_TIMEOUT:?}; last answer: {last}\n{}",
            logs(running)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) fn logs(running: &[Running]) -> String {
    running
        .iter()
        .map(|r| format!("--- {} (last lines)\n{}", r.name, r.tail(25)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a rendered nginx configuration.
fn nginx_config<'a>(objects: &'a [Value], config_map: &str) -> &'a str {
    objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == config_map)
        .and_then(|o| o["data"]["default.conf"].as_str())
        .unwrap_or_else(|| panic!("the render has no ConfigMap {config_map} with default.conf"))
}

/// Katello 4.20's calls to Pulp:
/// - the ping (app/models/katello/ping.rb `backend_status`): GET `<pulp_url>/pulp/api/v3/status/`
///   with the CA file and no client certificate, where pulp_url is what the Pulp smart proxy
///   reports (PULP_SMART_PROXY_PULP_URL, pulp-control);
/// - the API (smart_proxy_extensions.rb `pulp3_configuration`/`pulp3_ssl_configuration`): the
///   same host, Foreman's client_cert.pem/client_key.pem, no user name;
/// - the registry (app/lib/katello/resources/registry.rb): `/pulpcore_registry/` on the host
///   of the content app URL (the edge), with Foreman's client certificate.
fn katello_calls_reach_pulp_as_katello_makes_them(
    objects: &[Value],
    fm: &Foreman,
    api_port: u16,
    repo_href: &str,
) {
    let control = crate::edge::Control::start(fm, nginx_config(objects, "pulp-control"), api_port);
    let ping = control.call("/pulp/api/v3/status/", None, &[]);
    assert_eq!(ping.code, 200, "Katello's ping: {}", ping.text());
    let status = ping.json();
    assert!(
        status["online_workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "Katello's ping fails without an online worker: {status}"
    );
    let repos = control.call("/pulp/api/v3/repositories/file/file/", Some("foreman"), &[]);
    assert_eq!(repos.code, 200, "Katello's API call: {}", repos.text());
    assert!(
        repos.text().contains(repo_href),
        "the admin does not see {repo_href}: {}",
        repos.text()
    );
    // Nobody else is the admin: Pulp itself refuses the anonymous call that gets past
    // pulp-control's status path, and pulp-control refuses the rest.
    for (cert, code) in [(None, 403), (Some("host"), 403), (Some("stranger"), 400)] {
        let a = control.call(
            "/pulp/api/v3/repositories/file/file/",
            cert,
            &["-H", "REMOTE-USER: admin"],
        );
        assert_eq!(a.code, code, "{cert:?}: {}", a.text());
    }
    let users = control.call("/pulp/api/v3/status/../users/", None, &["--path-as-is"]);
    assert!(
        users.code == 401 || users.code == 403,
        "a path that normalizes out of the status location: {} {}",
        users.code,
        users.text()
    );

    let edge =
        crate::edge::Edge::start_with(fm, nginx_config(objects, "foreman-edge"), Some(api_port));
    let registry = edge.https("/pulpcore_registry/v2/", Some("foreman"), &[]);
    assert_eq!(
        registry.code,
        200,
        "Katello's registry call: {}",
        registry.text()
    );
    let anonymous = edge.https(
        "/pulpcore_registry/v2/",
        None,
        &["-H", "REMOTE-USER: admin"],
    );
    assert_eq!(
        anonymous.code,
        401,
        "an anonymous registry call: {}",
        anonymous.text()
    );
}
