//! Day two through the real binary: backup and restore with the real PostgreSQL and the real
//! pulpcore of the Pulp scenario, the maintenance contract against the stand-in API server
//! (a thread plays the operator's half: `spec.maintenance` → `Maintenance=True/Reached`), a
//! killed backup, the support bundle's redaction, health and the upgrade guard.

use crate::pulp::{self as pulp_e2e, Auth, PULP_PORTS};
use foreman_box_tests::apiserver::{available_operator, established_crd, ApiServer};
use foreman_box_tests::pg::Pg;
use foreman_box_tests::pulp::{self, Cluster, Loopback, Redis, Running};
use foreman_box_tests::{debian_root, foreman_box, mode, run, Run};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FOREMAN: &str = "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman";
const HOSTNAME: &str = "foreman.example.test";
const ADMIN_FILE: &str = "etc/foreman-box/postgres-admin-password";
const DATABASES: [&str; 3] = ["foreman", "candlepin", "pulp"];

/// Plays the operator: Ready while not in maintenance; with `spec.maintenance`, Ready=False
/// and, once `reach` allows (no writer left), Maintenance=True/Reached for that generation.
struct Operator {
    stop: Arc<AtomicBool>,
    pub reach: Arc<AtomicBool>,
    pub saw_maintenance: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    fn start(api: &ApiServer) -> Operator {
        let (stop, reach, saw) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let (api, s, r, w) = (api.clone(), stop.clone(), reach.clone(), saw.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(fm) = api.get(FOREMAN) {
                    let generation = fm["metadata"]["generation"].as_i64().unwrap_or(1);
                    let asked = fm["spec"]["maintenance"] == true;
                    if asked {
                        w.store(true, Ordering::SeqCst);
                    }
                    let reached = asked && r.load(Ordering::SeqCst);
                    let status = json!({
                        "observed_generation": generation,
                        "conditions": [
                            if asked {
                                json!({"type": "Ready", "status": "False", "reason": "Maintenance", "message": "writers are stopped"})
                            } else {
                                json!({"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "Foreman answers"})
                            },
                            match (asked, reached) {
                                (true, true) => json!({"type": "Maintenance", "status": "True", "reason": "Reached", "message": "no writer pod is left"}),
                                (true, false) => json!({"type": "Maintenance", "status": "False", "reason": "WritersRunning", "message": "2 writer pods are still terminating"}),
                                _ => json!({"type": "Maintenance", "status": "False", "reason": "NotRequested", "message": ""}),
                            },
                        ],
                        "url": format!("https://{HOSTNAME}"),
                        "components": {"foreman": if asked { "scaled to 0" } else { "ready" }},
                    });
                    if fm["status"] != status {
                        api.set_status(FOREMAN, status);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Operator {
            stop,
            reach,
            saw_maintenance: saw,
            handle: Some(handle),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A fresh stand-in cluster: the CRD established, the operator available, nothing else.
fn stand_in(dir: &Path) -> (ApiServer, PathBuf) {
    foreman_box_tests::binary();
    let api = ApiServer::start();
    api.put(established_crd());
    api.put(available_operator());
    let kubeconfig = api.kubeconfig(dir);
    (api, kubeconfig)
}

/// The user's configuration: external PostgreSQL (the throwaway server) with the admin password
/// in a 0600 file under /etc/foreman-box, so that a backup carries it.
fn configure(root: &Path, pg: &Pg) {
    let dir = root.join("etc/foreman-box");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "hostname = \"{HOSTNAME}\"\nnode_ip = \"192.0.2.10\"\n\n[postgres]\nmode = \"external\"\nadmin_url = '{}'\nadmin_password_file = \"/{ADMIN_FILE}\"\n\n[foreman]\nwait_timeout = 60\n",
            pg.admin_url()
        ),
    )
    .unwrap();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(root.join(ADMIN_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{}\n", pg.password).as_bytes()).unwrap();
}

/// `foreman-box VERB --root ROOT --kubeconfig K ARGS...`.
fn cmd(verb: &str, root: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut all = vec![
        verb,
        "--root",
        root.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    foreman_box(&all)
}

fn install(root: &Path, kubeconfig: &Path, only: &str) -> Run {
    run(&mut cmd("install", root, kubeconfig, &["--only", only]))
}

fn stored(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(format!("etc/foreman-box/secrets/postgres-{name}")))
        .unwrap()
        .trim()
        .to_string()
}

/// Every file under `dir` with its bytes and mode.
fn files(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    (std::fs::read(&p).unwrap(), mode(&p)),
                );
            }
        }
    }
    out
}

/// Rows a test put in the databases, as text.
async fn rows(pg: &Pg, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for db in ["foreman", "candlepin"] {
        let c = pg.connect(db, &stored(root, db), db).await.unwrap();
        for r in c
            .query("SELECT id, note FROM daytwo_rows ORDER BY id", &[])
            .await
            .unwrap()
        {
            out.push(format!(
                "{db}: {} {}",
                r.get::<_, i32>(0),
                r.get::<_, String>(1)
            ));
        }
    }
    let c = pg
        .connect("pulp", &stored(root, "pulp"), "pulp")
        .await
        .unwrap();
    for r in c
        .query(
            "SELECT relative_path FROM core_contentartifact ORDER BY relative_path",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("pulp: {}", r.get::<_, String>(0)));
    }
    out
}

async fn databases(pg: &Pg) -> Vec<String> {
    pg.admin()
        .await
        .query(
            "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
            &[&DATABASES.to_vec()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The objects a Pulp pod reads: the render, the installer's manifests, and the generated
/// Secrets from the copies foreman-box keeps (the values the data was made with).
fn pulp_objects(root: &Path) -> Vec<Value> {
    let (mut objects, _) = pulp_e2e::rendered_objects(root);
    let secrets = root.join("etc/foreman-box/secrets");
    for e in std::fs::read_dir(&secrets).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            objects.extend(pulp::parse_objects(&std::fs::read_to_string(&p).unwrap()));
        }
    }
    objects
}

struct PulpRun {
    running: Vec<Running>,
    content_url: String,
}

/// Runs the migrate Job (when `migrate`) and the given Deployments, waiting for their ports.
fn start_pulp(
    root: &Path,
    pg: &Pg,
    redis: &Redis,
    scratch: &Path,
    migrate: bool,
    deployments: &[&str],
) -> (PulpRun, Option<pulp::Pod>) {
    let venv = pulp::venv();
    let cluster = Cluster {
        objects: pulp_objects(root),
        root: root.to_path_buf(),
    };
    let loopback = Loopback {
        db_port: pg.port,
        redis_port: redis.port,
    };
    let pod = |w: &Value| pulp::pod(&cluster, w, &venv, &loopback, scratch).unwrap();
    if migrate {
        let job = cluster
            .objects
            .iter()
            .find(|o| {
                o["kind"] == "Job"
                    && o["metadata"]["labels"]["app.kubernetes.io/name"] == "pulp-migrate"
            })
            .unwrap();
        let job = pod(job);
        for p in job.init.iter().chain(&job.containers) {
            pulp::run_to_completion(p, scratch, Duration::from_secs(240)).unwrap();
        }
    }
    let mut running = Vec::new();
    let mut api_pod = None;
    let mut content_port = 0;
    for d in deployments {
        let w = cluster
            .objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == *d)
            .unwrap();
        let p = pod(w);
        for c in &p.init {
            pulp::run_to_completion(c, scratch, Duration::from_secs(90)).unwrap();
        }
        for c in &p.containers {
            for port in &c.ports {
                pulp::require_free_port(*port).unwrap();
            }
            running.push(pulp::spawn(c, scratch));
            let r = running.last_mut().unwrap();
            for port in &c.ports {
                pulp::wait_for_port(r, *port, Duration::from_secs(90)).unwrap();
            }
        }
        if *d == "pulp-content" {
            content_port = pulp_e2e::port_of(&p, d);
        }
        if *d == "pulp-api" {
            api_pod = Some(p);
        }
    }
    (
        PulpRun {
            running,
            content_url: format!(
                "http://127.0.0.1:{content_port}/pulp/content/daytwo/e2e/payload.bin"
            ),
        },
        api_pod,
    )
}

/// The backup's directory, the one entry `backup` made under `parent`.
fn the_backup(parent: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// The apply requests to the resource, as (manager, spec.maintenance).
fn maintenance_applies(api: &ApiServer) -> Vec<(String, Option<bool>)> {
    api.writes()
        .into_iter()
        .filter(|r| r.path == FOREMAN && r.method == "PATCH")
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (
                r.query.get("fieldManager").cloned().unwrap_or_default(),
                body["spec"]["maintenance"].as_bool(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_purge_restore_brings_back_rows_pulp_content_and_kept_secrets_byte_for_byte() {
    let _ports = PULP_PORTS.lock().await;
    let started = Instant::now();
    let pg = Pg::start();
    let redis = Redis::start();
    let root = debian_root();
    let r = root.path();
    let work = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = stand_in(work.path());
    let op = Operator::start(&api);
    configure(r, &pg);
    let out = install(r, &kubeconfig, "postgres,storage,foreman");
    assert_eq!(out.code, 0, "install: {}", out.all());

    // Content: rows in foreman and candlepin, a file uploaded through Pulp's API.
    for db in ["foreman", "candlepin"] {
        let c = pg.connect(db, &stored(r, db), db).await.unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE daytwo_rows (id int PRIMARY KEY, note text); INSERT INTO daytwo_rows VALUES (1, '{db} row é'), (2, 'second {db}');"
        ))
        .await
        .unwrap();
    }
    let c = pg
        .connect("foreman", &stored(r, "foreman"), "foreman")
        .await
        .unwrap();
    c.batch_execute("CREATE TABLE foreman_tasks_tasks (id text, label text, state text, result text); INSERT INTO foreman_tasks_tasks VALUES ('1', 'Actions::Katello::EventQueue::Monitor', 'running', 'pending'), ('2', 'Actions::Foo', 'stopped', 'success');")
        .await
        .unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("fb-daytwo-")
        .tempdir()
        .unwrap();
    let (mut p, api_pod) = start_pulp(
        r,
        &pg,
        &redis,
        scratch.path(),
        true,
        &["pulp-api", "pulp-content", "pulp-worker"],
    );
    let api_pod = api_pod.unwrap();
    let api_url = format!(
        "http://127.0.0.1:{}",
        pulp_e2e::port_of(&api_pod, "pulp-api")
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    pulp_e2e::wait_for_status(&http, &api_url, &mut p.running).await;
    let auth = Auth::of(&api_pod.containers[0]);
    let bytes = foreman_box_tests::artifact(128 * 1024 + 5, 20);
    let repo = pulp_e2e::call(
        &http,
        &auth,
        &api_url,
        "POST",
        "/pulp/api/v3/repositories/file/file/",
        Some(json!({"name": "daytwo"})),
        &mut p.running,
    )
    .await;
    let repo_href = repo["pulp_href"].as_str().unwrap().to_string();
    let (ctype, body) = pulp::multipart(
        &[
            ("relative_path", "e2e/payload.bin"),
            ("repository", &repo_href),
        ],
        ("file", "payload.bin", &bytes),
    );
    let resp = auth
        .apply(http.post(format!("{api_url}/pulp/api/v3/content/file/files/")))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let task = pulp_e2e::json_of(resp, "upload", &mut p.running).await;
    pulp_e2e::wait_task(&http, &auth, &api_url, &task, &mut p.running).await;
    let publication = pulp_e2e::call(
        &http,
        &auth,
        &api_url,
        "POST",
        "/pulp/api/v3/publications/file/file/",
        Some(json!({"repository": repo_href})),
        &mut p.running,
    )
    .await;
    let done = pulp_e2e::wait_task(&http, &auth, &api_url, &publication, &mut p.running).await;
    let pub_href = done["created_resources"][0].as_str().unwrap().to_string();
    let dist = pulp_e2e::call(
        &http,
        &auth,
        &api_url,
        "POST",
        "/pulp/api/v3/distributions/file/file/",
        Some(json!({"name": "daytwo", "base_path": "daytwo", "publication": pub_href})),
        &mut p.running,
    )
    .await;
    pulp_e2e::wait_task(&http, &auth, &api_url, &dist, &mut p.running).await;
    let served = http
        .get(&p.content_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(served[..] == bytes[..], "Pulp serves the uploaded file");
    drop(p);

    let rows_before = rows(&pg, r).await;
    // Two rows in each of foreman and candlepin; in Pulp the upload and the PULP_MANIFEST its
    // publication writes.
    assert_eq!(rows_before.len(), 6, "{rows_before:?}");
    let kept_before = files(&r.join("etc/foreman-box"));
    let secrets_before: BTreeMap<String, Value> =
        ["foreman-generated", "foreman-tls", "foreman-pulp-key"]
            .iter()
            .filter_map(|n| {
                api.get(&format!("/api/v1/namespaces/foreman/secrets/{n}"))
                    .map(|s| (n.to_string(), s["data"].clone()))
            })
            .collect();
    assert!(secrets_before["foreman-generated"]["admin-password"].is_string());
    let sha = foreman_box_tests::sha256_hex(&bytes);
    let artifact = format!("var/lib/pulp/media/artifact/{}/{}", &sha[..2], &sha[2..]);

    // Backup, in maintenance.
    let backups = work.path().join("backups");
    let t = Instant::now();
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap()],
    ));
    assert_eq!(out.code, 0, "backup: {}", out.all());
    let backup_secs = t.elapsed().as_secs_f64();
    assert!(op.saw_maintenance.load(Ordering::SeqCst));
    assert_eq!(
        maintenance_applies(&api)[1..],
        [
            ("foreman-box".to_string(), Some(true)),
            ("foreman-box".to_string(), None)
        ],
        "after install's apply: one apply entering maintenance, one leaving it"
    );
    let live = api.get(FOREMAN).unwrap();
    assert_eq!(
        live["spec"]["dynflow_workers"], 2,
        "leaving maintenance kept install's fields: {live}"
    );
    assert!(live["spec"].get("maintenance").is_none());
    assert!(!r.join("var/lib/foreman-box/maintenance.json").exists());
    let dir = the_backup(&backups);
    assert_eq!(mode(&dir), 0o700);
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sha256sum -c: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let listed = Command::new("tar")
        .arg("-tf")
        .arg(dir.join("pulp-content.tar"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l == artifact.trim_start_matches("var/lib/pulp/")),
        "GNU tar lists the artifact:\n{listed}"
    );
    assert!(!listed.lines().any(|l| l.starts_with("tmp")), "{listed}");

    // A byte flipped in a dump: refused before anything changes.
    let tampered = work.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tampered.join(f.file_name().unwrap())).unwrap();
    }
    let mut dump = std::fs::read(tampered.join("pulp.dump")).unwrap();
    let at = dump.len() / 2;
    dump[at] ^= 0x01;
    std::fs::write(tampered.join("pulp.dump"), dump).unwrap();
    let out = run(&mut cmd(
        "restore",
        r,
        &kubeconfig,
        &[
            tampered.to_str().unwrap(),
            "--force",
            "--only",
            "postgres,storage",
        ],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("pulp.dump in") && out.stderr.contains("does not match SHA256SUMS"),
        "{}",
        out.stderr
    );
    assert_eq!(
        rows(&pg, r).await,
        rows_before,
        "the databases are untouched"
    );
    assert_eq!(files(&r.join("etc/foreman-box")), kept_before);

    // --validate: every check, nothing changed.
    let before = foreman_box_tests::tree_mtimes(r);
    let out = run(&mut cmd(
        "restore",
        r,
        &kubeconfig,
        &[dir.to_str().unwrap(), "--validate"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("pulp.dump: pg_restore --list reads"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("nothing was changed"), "{}", out.stdout);
    assert_eq!(foreman_box_tests::tree_mtimes(r), before);

    // uninstall --purge, as a user would before moving to a fresh host.
    let mut purge = foreman_box(&["uninstall", "--root", r.to_str().unwrap(), "--purge"]);
    let out = run(&mut purge);
    assert_eq!(out.code, 0, "uninstall --purge: {}", out.all());
    assert!(databases(&pg).await.is_empty());
    assert!(!r.join("etc/foreman-box").exists() && !r.join("var/lib/pulp").exists());
    drop(op);

    // Restore on the purged host with a new, empty cluster.
    let fresh = tempfile::tempdir().unwrap();
    let (api2, kubeconfig2) = stand_in(fresh.path());
    let _op2 = Operator::start(&api2);
    let t = Instant::now();
    let out = run(&mut cmd(
        "restore",
        r,
        &kubeconfig2,
        &[
            dir.to_str().unwrap(),
            "--only",
            "postgres,storage,foreman",
            "--hostname",
            HOSTNAME,
        ],
    ));
    assert_eq!(out.code, 0, "restore: {}", out.all());
    let restore_secs = t.elapsed().as_secs_f64();
    assert_eq!(rows(&pg, r).await, rows_before);
    assert_eq!(
        files(&r.join("etc/foreman-box")),
        kept_before,
        "kept secrets and configuration"
    );
    for (name, data) in &secrets_before {
        let now = api2
            .get(&format!("/api/v1/namespaces/foreman/secrets/{name}"))
            .unwrap();
        assert_eq!(
            &now["data"], data,
            "Secret {name} (the admin password among them) is the same"
        );
    }
    assert_eq!(std::fs::read(r.join(&artifact)).unwrap(), bytes);
    let pulp_root = r.join("var/lib/pulp");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(r.join(&artifact)).unwrap().uid(),
        std::fs::metadata(&pulp_root).unwrap().uid()
    );
    assert_eq!(std::fs::metadata(&pulp_root).unwrap().uid(), 700);

    // Pulp serves the file again from the restored database and storage.
    let scratch2 = tempfile::Builder::new()
        .prefix("fb-daytwo-")
        .tempdir()
        .unwrap();
    let (p, _) = start_pulp(r, &pg, &redis, scratch2.path(), false, &["pulp-content"]);
    let again = http.get(&p.content_url).send().await.unwrap();
    assert_eq!(again.status(), 200, "{}", pulp_e2e::logs(&p.running));
    assert!(again.bytes().await.unwrap()[..] == bytes[..]);
    drop(p);
    eprintln!(
        "daytwo round trip: backup {backup_secs:.1} s, restore {restore_secs:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A database with a Foreman resource applied by install, for the scenarios below.
fn installed(
    pg: &Pg,
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    ApiServer,
    PathBuf,
    Operator,
) {
    let root = debian_root();
    let work = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = stand_in(work.path());
    let op = Operator::start(&api);
    configure(root.path(), pg);
    let out = install(root.path(), &kubeconfig, "postgres,storage,foreman");
    assert_eq!(out.code, 0, "install: {}", out.all());
    (root, work, api, kubeconfig, op)
}

#[test]
fn a_backup_killed_in_maintenance_is_taken_out_of_it_by_the_next_run() {
    let pg = Pg::start();
    let (root, work, api, kubeconfig, op) = installed(&pg);
    let r = root.path();
    op.reach.store(false, Ordering::SeqCst);
    let backups = work.path().join("backups");
    let mut child = cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap(), "--maintenance-timeout", "120"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let marker = r.join("var/lib/foreman-box/maintenance.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(marker.exists() && api.get(FOREMAN).unwrap()["spec"]["maintenance"] == true) {
        assert!(
            Instant::now() < deadline,
            "the backup never asked for maintenance"
        );
        assert!(child.try_wait().unwrap().is_none(), "backup ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert_eq!(
        api.get(FOREMAN).unwrap()["spec"]["maintenance"],
        true,
        "kill -9 left it in maintenance"
    );
    let health = run(&mut cmd("health", r, &kubeconfig, &["--output", "json"]));
    let report: Value = serde_json::from_str(&health.stdout).unwrap();
    let m = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "maintenance")
        .unwrap();
    assert_eq!(m["status"], "failed", "{m}");
    assert!(m["summary"].as_str().unwrap().contains("`backup`"), "{m}");

    op.reach.store(true, Ordering::SeqCst);
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap()],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all()
            .contains("was stopped before it ended it; it is out of maintenance again"),
        "{}",
        out.all()
    );
    assert_eq!(
        maintenance_applies(&api)[1..],
        [
            ("foreman-box".to_string(), Some(true)),
            ("foreman-box".to_string(), None),
            ("foreman-box".to_string(), Some(true)),
            ("foreman-box".to_string(), None),
        ],
        "killed run's request, the next run's recovery, then its own request and release"
    );
    assert!(api.get(FOREMAN).unwrap()["spec"]
        .get("maintenance")
        .is_none());
    assert!(!marker.exists());
}

#[test]
fn backup_refuses_while_tasks_run_and_a_maintenance_timeout_leaves_it_again() {
    let pg = Pg::start();
    let (root, work, api, kubeconfig, op) = installed(&pg);
    let r = root.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = pg.connect("foreman", &stored(r, "foreman"), "foreman").await.unwrap();
        c.batch_execute("CREATE TABLE foreman_tasks_tasks (id text, label text, state text, result text); INSERT INTO foreman_tasks_tasks VALUES ('1', 'Actions::Katello::Repository::Sync', 'running', 'pending'), ('2', 'Actions::Candlepin::ListenOnCandlepinEvents', 'running', 'pending');").await.unwrap();
    });
    let backups = work.path().join("backups");
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap()],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("1 Foreman task(s) is running"),
        "{}",
        out.stderr
    );
    assert_eq!(
        maintenance_applies(&api).len(),
        1,
        "nothing but install's apply"
    );
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[
            backups.to_str().unwrap(),
            "--wait-for-tasks",
            "--tasks-timeout",
            "1",
        ],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("still running after waiting 1s"),
        "{}",
        out.stderr
    );

    rt.block_on(async {
        let c = pg
            .connect("foreman", &stored(r, "foreman"), "foreman")
            .await
            .unwrap();
        c.batch_execute("UPDATE foreman_tasks_tasks SET state = 'stopped'")
            .await
            .unwrap();
    });
    op.reach.store(false, Ordering::SeqCst);
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap(), "--maintenance-timeout", "2"],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("did not report maintenance reached within 2s"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("WritersRunning"), "{}", out.stderr);
    assert!(
        api.get(FOREMAN).unwrap()["spec"]
            .get("maintenance")
            .is_none(),
        "left again"
    );
    assert!(
        !backups.exists() || std::fs::read_dir(&backups).unwrap().count() == 0,
        "nothing written"
    );
}

#[test]
fn an_archive_backup_is_one_zstd_tar_that_gnu_tar_reads_and_restore_validates() {
    let pg = Pg::start();
    let (root, work, _api, kubeconfig, _op) = installed(&pg);
    let r = root.path();
    let backups = work.path().join("backups");
    let out = run(&mut cmd(
        "backup",
        r,
        &kubeconfig,
        &[backups.to_str().unwrap(), "--archive"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let archive = the_backup(&backups);
    assert!(
        archive.to_string_lossy().ends_with(".tar.zst"),
        "{}",
        archive.display()
    );
    assert_eq!(mode(&archive), 0o600);
    let x = work.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let untar = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(&archive)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        untar.status.success(),
        "{}",
        String::from_utf8_lossy(&untar.stderr)
    );
    let inner = the_backup(&x);
    let check = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&inner)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let out = run(&mut cmd(
        "restore",
        r,
        &kubeconfig,
        &[archive.to_str().unwrap(), "--validate"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("foreman.dump: pg_restore --list reads"),
        "{}",
        out.stdout
    );
    // Without --force, a host with data is not overwritten.
    let out = run(&mut cmd(
        "restore",
        r,
        &kubeconfig,
        &[archive.to_str().unwrap(), "--only", "postgres,storage"],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("already exist on this host"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
}

const CANARIES: [&str; 4] = [
    "canary-kept-5b1d0c2e7f",
    "canary-secret-9e8d7c6b5a",
    "canary-env-1f2e3d4c5b",
    "canary/annot+9=3x",
];

/// Every form a canary could take in the bundle.
fn forms(canary: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![
        canary.to_string(),
        b64.encode(canary).trim_end_matches('=').to_string(),
    ];
    for pad in 1..3usize {
        let enc = b64.encode(format!("{}{canary}", "x".repeat(pad)));
        let skip = (pad * 8).div_ceil(6);
        let whole = ((pad + canary.len()) / 3) * 4;
        out.push(enc[skip..whole].to_string());
    }
    let url: String = canary
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    out.push(url);
    out
}

fn bundle_files(out: &Path, into: &Path) -> BTreeMap<String, String> {
    let x = Command::new("tar")
        .args(["--zstd", "-xf"])
        .arg(out)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let top = the_backup(into);
    files(&top)
        .into_iter()
        .map(|(p, (b, m))| {
            assert_eq!(m, 0o600, "{}", p.display());
            (
                p.display().to_string(),
                String::from_utf8_lossy(&b).into_owned(),
            )
        })
        .collect()
}

#[test]
fn the_support_bundle_holds_no_canary_in_any_form_and_works_with_the_cluster_down() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let root = debian_root();
    let r = root.path();
    let work = tempfile::tempdir().unwrap();
    let (api, kubeconfig) = stand_in(work.path());
    // Kept copies.
    let secrets = r.join("etc/foreman-box/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("postgres-foreman"),
        format!("{}\n", CANARIES[0]),
    )
    .unwrap();
    std::fs::write(
        secrets.join("foreman-generated.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: foreman-generated\ndata:\n  admin-password: {}\n", b64.encode(CANARIES[1])),
    )
    .unwrap();
    // Secrets in the cluster, one with the value in an annotation too; a pod that logs them.
    api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-generated", "namespace": "foreman"}, "data": {"admin-password": b64.encode(CANARIES[1])}}));
    api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "foreman-db", "namespace": "foreman",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{{\"stringData\":{{\"password\":\"{}\"}}}}", CANARIES[3])}},
        "data": {"password": b64.encode(CANARIES[3]), "host": b64.encode("postgres")}}));
    api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "foreman-operator-abc", "namespace": "foreman", "labels": {"app.kubernetes.io/name": "foreman-operator"}},
        "spec": {"containers": [{"name": "operator", "image": "foreman-box-operator:1"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "operator", "ready": true, "restartCount": 1, "image": "x", "imageID": "sha256:1", "state": {"running": {}}}]}}));
    api.put_log(
        "foreman",
        "foreman-operator-abc",
        "operator",
        &format!(
            "reconciled; db password {} base64 {}\n",
            CANARIES[3],
            b64.encode(format!("user:{}", CANARIES[1]))
        ),
    );
    api.put_previous_log(
        "foreman",
        "foreman-operator-abc",
        "operator",
        "previous run: panicked\n",
    );
    // A run log that leaked (as a -vv log could), and the auto-deploy manifests.
    std::fs::create_dir_all(r.join("var/log/foreman-box")).unwrap();
    std::fs::write(
        r.join("var/log/foreman-box/20260101T000000Z-1-install.log"),
        format!("debug: url postgres://x:{}@db\n", url_of(CANARIES[3])),
    )
    .unwrap();
    // A link among the logs to a file elsewhere, whose text no redaction knows: never read.
    let elsewhere = work.path().join("not-a-log.txt");
    std::fs::write(&elsewhere, "text from outside the log directory\n").unwrap();
    std::os::unix::fs::symlink(
        &elsewhere,
        r.join("var/log/foreman-box/20260101T000001Z-2-install.log"),
    )
    .unwrap();
    let manifests = r.join("var/lib/rancher/k3s/server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("foreman-box-operator.yaml"),
        "kind: Deployment\n",
    )
    .unwrap();
    std::fs::write(
        manifests.join("foreman-box-postgres.yaml"),
        format!("password: {}\n", CANARIES[0]),
    )
    .unwrap();
    std::fs::set_permissions(
        manifests.join("foreman-box-postgres.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let out_file = work.path().join("bundle.tar.zst");
    let mut c = cmd(
        "support-bundle",
        r,
        &kubeconfig,
        &[
            "-o",
            out_file.to_str().unwrap(),
            "-vv",
            "--hostname",
            HOSTNAME,
            "--url",
            "http://127.0.0.1:9",
        ],
    );
    c.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", CANARIES[2]);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(mode(&out_file), 0o600);
    let x = work.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let bundle = bundle_files(&out_file, &x);
    for canary in CANARIES {
        for form in forms(canary) {
            for (path, text) in &bundle {
                assert!(!text.contains(&form), "{path} holds {canary} as {form:?}");
            }
        }
    }
    let tsv = &bundle["collection.tsv"];
    assert!(tsv.contains("cluster/secrets.yaml\tok"), "{tsv}");
    assert!(
        tsv.contains("logs/20260101T000001Z-2-install.log\tfailed"),
        "{tsv}"
    );
    for (path, text) in &bundle {
        assert!(
            !text.contains("text from outside the log directory"),
            "{path} holds a file a link among the logs points at"
        );
    }
    assert!(
        tsv.contains("pods/foreman-operator-abc/operator.log\tok"),
        "{tsv}"
    );
    assert!(
        tsv.contains("pods/foreman-operator-abc/operator.previous.log\tok"),
        "{tsv}"
    );
    assert!(
        tsv.contains("manifests/foreman-box-postgres.yaml\tskipped"),
        "{tsv}"
    );
    assert!(
        tsv.contains("manifests/foreman-box-operator.yaml\tok"),
        "{tsv}"
    );
    assert!(
        bundle["cluster/secrets.yaml"].contains("- admin-password"),
        "Secret key names are kept"
    );
    assert!(
        bundle
            .keys()
            .any(|k| k.starts_with("logs/") && k.ends_with("-support-bundle.log")),
        "this run's -vv log: {:?}",
        bundle.keys()
    );
    assert!(
        !bundle.keys().any(|k| k.contains("secrets/")),
        "{:?}",
        bundle.keys()
    );
    assert!(
        bundle["redaction.txt"].contains("replaced\t"),
        "{}",
        bundle["redaction.txt"]
    );
    assert!(bundle.contains_key("health.json"));

    // The API server down: the host part is still written.
    drop(api);
    let dead = work.path().join("dead-kubeconfig.yaml");
    std::fs::write(
        &dead,
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .replace(&url_port(&kubeconfig), "1"),
    )
    .unwrap();
    let out_file = work.path().join("host-only.tar.zst");
    let mut c = cmd(
        "support-bundle",
        r,
        &dead,
        &[
            "-o",
            out_file.to_str().unwrap(),
            "--hostname",
            HOSTNAME,
            "--url",
            "http://127.0.0.1:9",
        ],
    );
    c.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", CANARIES[2]);
    let out = run(&mut c);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("host part only"), "{}", out.stdout);
    let y = work.path().join("y");
    std::fs::create_dir(&y).unwrap();
    let bundle = bundle_files(&out_file, &y);
    assert!(
        bundle["collection.tsv"].contains("cluster/\tfailed"),
        "{}",
        bundle["collection.tsv"]
    );
    assert!(bundle.contains_key("host/facts.txt"));
    for canary in CANARIES {
        for (path, text) in &bundle {
            assert!(!text.contains(canary), "{path} holds {canary}");
        }
    }
}

fn url_of(s: &str) -> String {
    forms(s).pop().unwrap()
}

/// The port of the stand-in in a kubeconfig it wrote.
fn url_port(kubeconfig: &Path) -> String {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let server = v["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    server.rsplit(':').next().unwrap().to_string()
}

/// A loopback HTTP server answering every request with `body` (Foreman's ping stand-in).
fn ping_server(body: Value) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let text = body.to_string();
            let _ = std::io::Write::write_all(
                &mut s,
                format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}", text.len()).as_bytes(),
            );
        }
    });
    (port, h)
}

#[test]
fn health_names_paused_tasks_and_a_certificate_ten_days_from_expiry() {
    let pg = Pg::start();
    let (root, work, api, kubeconfig, _op) = installed(&pg);
    let r = root.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = pg.connect("foreman", &stored(r, "foreman"), "foreman").await.unwrap();
        c.batch_execute("CREATE TABLE foreman_tasks_tasks (id text, label text, state text, result text); INSERT INTO foreman_tasks_tasks VALUES ('1', 'Actions::Katello::Repository::Sync', 'paused', 'error'), ('2', 'Actions::Foo', 'stopped', 'success');").await.unwrap();
    });
    // The kept foreman-tls copy with a certificate that expires in 10 days (openssl's).
    let key = work.path().join("k.pem");
    let crt = work.path().join("c.pem");
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "10",
            "-subj",
            "/CN=foreman.example.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let copy = r.join("etc/foreman-box/secrets/foreman-tls.yaml");
    let mut secret: Value = serde_yaml::from_str(&std::fs::read_to_string(&copy).unwrap()).unwrap();
    use base64::Engine;
    secret["data"]["tls.crt"] =
        json!(base64::engine::general_purpose::STANDARD.encode(std::fs::read(&crt).unwrap()));
    std::fs::write(&copy, serde_yaml::to_string(&secret).unwrap()).unwrap();
    api.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "foreman", "namespace": "foreman", "labels": {"app.kubernetes.io/name": "foreman", "app.kubernetes.io/instance": "foreman"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "foreman"}}, "template": {}},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}));
    api.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "foreman-1", "namespace": "foreman", "labels": {"app.kubernetes.io/name": "foreman", "app.kubernetes.io/instance": "foreman"}},
        "spec": {"containers": [{"name": "foreman", "image": "quay.io/foreman/foreman:3.18"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "foreman", "ready": true, "restartCount": 0, "image": "quay.io/foreman/foreman:3.18", "imageID": "quay.io/foreman/foreman@sha256:0123", "state": {"running": {}}}]}}));
    let (port, _srv) = ping_server(
        json!({"results": {"foreman": {"database": {"active": true, "duration_ms": "1"}, "cache": {"servers": [{"status": "ok", "duration_ms": "0"}]}},
        "katello": {"status": "ok", "services": {"candlepin": {"status": "ok"}, "foreman_tasks": {"status": "ok"}, "pulp3": {"status": "ok"}}}}}),
    );
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&mut cmd(
        "health",
        r,
        &kubeconfig,
        &["--output", "json", "--url", &url],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(check("tasks")["status"], "failed");
    assert_eq!(
        check("tasks")["summary"],
        "1 paused task(s), 1 of them stopped by an error"
    );
    assert_eq!(check("certificates")["status"], "warning");
    assert!(
        check("certificates")["details"][0]
            .as_str()
            .unwrap()
            .starts_with("tls.crt (CN=foreman.example.test) expires on "),
        "{}",
        check("certificates")
    );
    assert!(
        check("certificates")["details"][0]
            .as_str()
            .unwrap()
            .ends_with("in 10 days"),
        "{}",
        check("certificates")
    );
    assert_eq!(check("ping")["status"], "ok", "{}", check("ping"));
    assert_eq!(check("resource")["status"], "ok");
    // A snapshot of the document, with what differs per machine and day replaced.
    let mut shown = report.clone();
    for c in shown["checks"].as_array_mut().unwrap() {
        if c["name"] == "disk" {
            // Free space is this machine's.
            *c = json!({"name": "disk", "status": "<varies>"});
        }
        if c["name"] == "ping" {
            c["summary"] = json!("<varies>");
        }
        if c["name"] == "certificates" {
            for d in c["details"].as_array_mut().unwrap() {
                let s = d.as_str().unwrap();
                *d = json!(format!(
                    "{}<date>{}",
                    &s[..s.find("expires on ").unwrap() + 11],
                    &s[s.find(", in").unwrap()..]
                ));
            }
        }
    }
    crate::terminal::assert_snapshot(
        "health_json",
        &serde_json::to_string_pretty(&shown).unwrap(),
    );

    // Resume the task: healthy, exit 0.
    rt.block_on(async {
        let c = pg
            .connect("foreman", &stored(r, "foreman"), "foreman")
            .await
            .unwrap();
        c.batch_execute("UPDATE foreman_tasks_tasks SET state = 'stopped'")
            .await
            .unwrap();
    });
    let out = run(&mut cmd("health", r, &kubeconfig, &["--url", &url]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("warn certificates"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().last(), Some("healthy"), "{}", out.stdout);
}

#[test]
fn upgrade_refuses_a_skipped_stream_and_a_stale_backup_with_nothing_written() {
    let pg = Pg::start();
    let (root, work, api, kubeconfig, _op) = installed(&pg);
    let r = root.path();
    let (port, _srv) = ping_server(
        json!({"results": {"foreman": {"database": {"active": true}}, "katello": {"services": {"foreman_tasks": {"status": "ok"}}}}}),
    );
    let url = format!("http://127.0.0.1:{port}");
    api.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "foreman", "namespace": "foreman", "labels": {"app.kubernetes.io/name": "foreman", "app.kubernetes.io/instance": "foreman"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "foreman"}}, "template": {}},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}));
    let writes = api.writes().len();
    let before = foreman_box_tests::tree_mtimes(r);

    let out = run(&mut cmd(
        "upgrade",
        r,
        &kubeconfig,
        &["--to", "5.0", "--url", &url],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("3.18 → 5.0 skips a stream: one stream at a time, 3.18 → 3.19 → 5.0"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("foreman-box upgrade --to 3.19"),
        "{}",
        out.stderr
    );
    assert_eq!(api.writes().len(), writes, "nothing written to the cluster");
    assert_eq!(
        foreman_box_tests::tree_mtimes(r),
        before,
        "nothing written on the host"
    );

    // A backup two days old does not count.
    std::fs::create_dir_all(r.join("var/lib/foreman-box")).unwrap();
    let old = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 2 * 86_400;
    let backup_dir = work.path().join("old-backup");
    std::fs::create_dir(&backup_dir).unwrap();
    std::fs::write(
        r.join("var/lib/foreman-box/last-backup.json"),
        json!({"path": backup_dir.display().to_string(), "created_unix": old, "stream": "3.18"})
            .to_string(),
    )
    .unwrap();
    let before = foreman_box_tests::tree_mtimes(r);
    let out = run(&mut cmd("upgrade", r, &kubeconfig, &["--url", &url]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("is 48 hours old"), "{}", out.stderr);
    assert!(
        out.stderr.contains("needs a backup younger than a day"),
        "{}",
        out.stderr
    );
    assert_eq!(api.writes().len(), writes);
    assert_eq!(foreman_box_tests::tree_mtimes(r), before);

    // Said aloud, it goes: one apply of spec.version by its own field manager.
    let out = run(&mut cmd(
        "upgrade",
        r,
        &kubeconfig,
        &["--url", &url, "--skip-backup"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all()
            .contains("--skip-backup: upgrading without a backup younger than a day"),
        "{}",
        out.all()
    );
    let applies: Vec<_> = api.writes().into_iter().skip(writes).collect();
    assert_eq!(applies.len(), 1, "{applies:?}");
    assert_eq!(applies[0].query["fieldManager"], "foreman-box-upgrade");
    let body: Value = serde_json::from_str(&applies[0].body).unwrap();
    assert_eq!(body["spec"], json!({"version": "3.19"}));
    let live = api.get(FOREMAN).unwrap();
    assert_eq!(live["spec"]["version"], "3.19");
    assert_eq!(live["spec"]["dynflow_workers"], 2, "install's fields stay");
    // A later install (manager foreman-box) neither drops nor reverts the stream.
    let out = install(r, &kubeconfig, "foreman");
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(api.get(FOREMAN).unwrap()["spec"]["version"], "3.19");
}
