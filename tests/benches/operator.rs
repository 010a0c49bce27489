//! The operator's cost, run as `cargo bench -p foreman-box-tests --bench operator`. Everything
//! runs against the stand-in API server (`foreman_box_tests::apiserver`), which keeps what the
//! operator writes and plays the kubelet (Deployments become available, Jobs complete), so every
//! figure is of a reconcile that succeeds and reaches `Ready=True`. Targets (set by the project for an operator that costs nothing at rest):
//! - key generation: made once per resource, on a blocking thread, off the reconcile's thread;
//!   its CPU per generated Secret is reported apart (median of several);
//! - a fresh reconcile (every object applied, the generated Secrets already made): under 5 ms
//!   CPU of the reconciling thread;
//! - an unchanged reconcile: under 0.5 ms CPU, and no write at all (only its Secrets are read);
//! - the release static `foreman-box operator run` (the binary users run) idle after it made the
//!   resource Ready and 30 s without work: RSS under 10 MiB, RssAnon and RssFile apart
//!   (/proc/PID/status), medians of 5 samples a second apart.
//!
//! CPU is the reconciling thread's (CLOCK_THREAD_CPUTIME_ID) on a current_thread runtime that
//! also runs the controller's watches: the work the watch events cause while the reconcile
//! runs is counted; the stand-in runs on threads of its own and is not. The machine's load
//! (/proc/loadavg) is printed with the figures.
//!
//! The bench fails (panics) when a reconcile fails, when `Ready=True` is not reached, and when an
//! unchanged reconcile writes. `FOREMAN_BOX_BENCH_BREAK=secret` removes the `foreman-db` Secret
//! from the stand-in before the operator starts, to show that it does.
//! `FOREMAN_BOX_STATIC_BIN=PATH` measures another binary's memory (e.g. an older build).

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

use foreman_box_tests::apiserver::{database_secret, ApiServer, Request};
use foreman_operator::controller::{reconcile, Context};
use foreman_operator::generated;
use foreman_operator::Foreman;
use futures::StreamExt;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FOREMAN: &str = "/apis/app.theforeman.org/v1alpha1/namespaces/foreman/foremans/foreman";
const DB: &[&str] = &["foreman-db", "candlepin-db", "pulp-db"];
const IDLE: Duration = Duration::from_secs(30);

fn thread_cpu() -> Duration {
    // Nanosecond thread CPU clock; getrusage only ticks per jiffy.
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// /proc/loadavg's first three fields: the figures mean little on a busy machine.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The default resource with every plugin: the most objects and generated Secrets.
fn foreman_json() -> Value {
    json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
           "metadata": {"name": "foreman", "namespace": "foreman", "uid": "u-1", "generation": 1},
           "spec": {"hostname": "foreman.example.com", "dynflow_workers": 2,
                    "plugins": {"katello": true, "remote_execution": true}}})
}

/// A stand-in holding the resource and its database Secrets, playing the kubelet; with
/// `FOREMAN_BOX_BENCH_BREAK=secret`, without the foreman-db Secret.
fn stand_in() -> ApiServer {
    let api = ApiServer::start();
    let broken = std::env::var("FOREMAN_BOX_BENCH_BREAK").is_ok_and(|b| b == "secret");
    for name in DB.iter().filter(|n| !(broken && **n == "foreman-db")) {
        api.put(database_secret("foreman", name));
    }
    api.put(foreman_json());
    api.run_kubelet(true);
    api
}

/// The status condition of this type.
fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

fn is_ready(api: &ApiServer) -> bool {
    api.get(FOREMAN)
        .is_some_and(|f| condition(&f["status"], "Ready")["status"] == "True")
}

/// Requests a reconcile made: the watches' own left out.
fn reconcile_requests(api: &ApiServer, mark: usize) -> Vec<Request> {
    api.requests_since(mark)
        .into_iter()
        .filter(|r| !r.is_watch() && !r.query.contains_key("labelSelector"))
        .collect()
}

/// The in-process operator: a client of the stand-in and a controller context whose watches run
/// on the same current_thread runtime as the reconciles.
struct Operator {
    api: ApiServer,
    rt: tokio::runtime::Runtime,
    client: Client,
    ctx: Arc<Context>,
    _dir: tempfile::TempDir,
}

impl Operator {
    fn start(api: ApiServer) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = Kubeconfig::read_from(api.kubeconfig(dir.path())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
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
        let ctx = Context::new(client.clone(), "foreman");
        rt.spawn(ctx.watches().for_each(|()| async {}));
        Operator {
            api,
            rt,
            client,
            ctx,
            _dir: dir,
        }
    }

    fn foreman(&self) -> Arc<Foreman> {
        let api: Api<Foreman> = Api::namespaced(self.client.clone(), "foreman");
        Arc::new(self.rt.block_on(api.get("foreman")).unwrap())
    }

    /// One reconcile, as the controller runs it: its thread CPU and requests. Panics when it
    /// fails.
    fn reconcile(&self) -> (Duration, Vec<Request>) {
        let fm = self.foreman();
        let mark = self.api.request_count();
        let t = thread_cpu();
        let result = self.rt.block_on(reconcile(fm, self.ctx.clone()));
        let cpu = thread_cpu() - t;
        if let Err(e) = result {
            panic!("the reconcile failed: {e}");
        }
        (cpu, reconcile_requests(&self.api, mark))
    }

    /// Reconciles until `Ready=True` (bounded, 30 s), letting the watches catch up in between.
    fn until_ready(&self) {
        let started = Instant::now();
        while !is_ready(&self.api) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Ready=True was never reached within 30 s; status: {}",
                self.api.get(FOREMAN).unwrap()["status"]
            );
            self.reconcile();
            // The watches run while the runtime does.
            self.rt
                .block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        }
    }
}

/// The generated Secrets, made once: CPU per Secret (median of `runs`), and the Secrets as the
/// API server stores them (data in base64).
fn generated_secrets(fm: &Foreman, runs: usize) -> Vec<Value> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut secrets = Vec::new();
    // Each Secret is made from those before it (the certificates are signed by the CA).
    let mut known = generated::Known::new();
    for g in generated::needed(fm) {
        let mut cpu = Vec::new();
        let mut data = Default::default();
        for _ in 0..runs {
            let t = thread_cpu();
            data = generated::generate(fm, g.name, &known).unwrap();
            cpu.push(thread_cpu() - t);
        }
        known.insert(g.name.to_string(), data.clone());
        println!(
            "  key generation, Secret {}: median {:?} CPU ({runs} runs)",
            g.name,
            median(cpu)
        );
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.clone(), json!(b64.encode(v))))
            .collect();
        secrets.push(
            json!({"apiVersion": "v1", "kind": "Secret", "type": g.type_,
            "metadata": {"name": g.name, "namespace": "foreman", "labels": generated::labels(fm)},
            "data": data}),
        );
    }
    secrets
}

fn in_process() {
    let fm: Foreman = serde_json::from_value(foreman_json()).unwrap();
    println!("in process (load {}):", loadavg());
    let secrets = generated_secrets(&fm, 5);

    // The render alone (part of a fresh reconcile): every object, typed, then in wire form.
    let (mut render, mut objects) = (Vec::new(), 0);
    for _ in 0..50 {
        let t = thread_cpu();
        objects = std::hint::black_box(foreman_operator::resources::desired(&fm)).len();
        render.push(thread_cpu() - t);
    }
    // Katello and REX: Foreman's, Candlepin's, Pulp's, the proxy's and the edge's objects.
    assert!(
        objects >= 30,
        "the render has {objects} objects, not the whole deployment"
    );
    println!(
        "  render alone ({objects} objects with their desired hashes): median {:?} CPU of 50",
        median(render)
    );

    // Fresh: a new stand-in each time, holding the database Secrets and the generated ones
    // (made above, once: the installer makes them before the operator runs).
    let mut fresh = Vec::new();
    let mut fresh_requests = 0;
    for _ in 0..30 {
        let api = stand_in();
        for s in &secrets {
            api.put(s.clone());
        }
        let op = Operator::start(api);
        let (cpu, reqs) = op.reconcile();
        let status = op.api.get(FOREMAN).unwrap()["status"].clone();
        assert_ne!(
            condition(&status, "Degraded")["status"],
            "True",
            "the fresh reconcile reported a problem: {status}"
        );
        fresh.push(cpu);
        fresh_requests = reqs.len();
        op.until_ready();
    }
    let fresh = median(fresh);
    println!(
        "  fresh reconcile ({fresh_requests} requests, every object applied, keys made before): median {fresh:?} CPU of 30 (target 5 ms: {})",
        if fresh < Duration::from_millis(5) { "met" } else { "NOT MET" }
    );

    // Unchanged: the resource Ready, nothing changed since.
    let op = Operator::start(stand_in());
    op.until_ready();
    let mut unchanged = Vec::new();
    let mut gets = 0;
    for _ in 0..300 {
        let (cpu, reqs) = op.reconcile();
        let writes: Vec<String> = reqs
            .iter()
            .filter(|r| r.is_write())
            .map(Request::line)
            .collect();
        assert!(
            writes.is_empty(),
            "an unchanged reconcile wrote: {writes:?}"
        );
        gets = reqs.len();
        unchanged.push(cpu);
    }
    let unchanged = median(unchanged);
    println!(
        "  unchanged reconcile ({gets} requests, all GETs of its Secrets, no write): median {unchanged:?} CPU of 300 (target 0.5 ms: {})",
        if unchanged < Duration::from_micros(500) { "met" } else { "NOT MET" }
    );
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn idle_memory(bin: &Path) {
    let api = stand_in();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let mut child = foreman_box_tests::foreman_box_at(bin, &["operator", "run"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "foreman")
        .env("FOREMAN_BOX_LOG", "warn")
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    while !is_ready(&api) {
        if started.elapsed() > Duration::from_secs(60) {
            let status = api.get(FOREMAN).unwrap()["status"].clone();
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`foreman-box operator run` did not make the resource Ready within 60 s; status: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_after = started.elapsed();
    let writes_before = api.writes().len();
    std::thread::sleep(IDLE);
    let fields = ["VmRSS:", "RssAnon:", "RssFile:", "Threads:"];
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); fields.len()];
    for _ in 0..5 {
        for (f, s) in fields.iter().zip(samples.iter_mut()) {
            s.push(status_kib(pid, f));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let hwm = status_kib(pid, "VmHWM:");
    let where_ = smaps(pid);
    let idle_writes = api.writes().len() - writes_before;
    let alive = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive, "the operator exited while idle");
    let [rss, anon, file, threads]: [u64; 4] = samples
        .into_iter()
        .map(median)
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    println!(
        "{} operator run (load {}): Ready after {:.1} s; after {} s idle ({idle_writes} writes meanwhile): RSS median {} (RssAnon {}, RssFile {}), peak {}, {threads} threads (target 10 MiB: {})",
        bin.display(),
        loadavg(),
        ready_after.as_secs_f64(),
        IDLE.as_secs(),
        mib(rss),
        mib(anon),
        mib(file),
        mib(hwm),
        if rss < 10 * 1024 { "met" } else { "NOT MET" }
    );
    println!("  where the resident pages are (/proc/PID/smaps): {where_}");
}

/// Resident KiB per kind of mapping: the executable's code, read-only data and writable data,
/// the heap, other anonymous memory (thread stacks, mmap'd allocator arenas), the rest.
fn smaps(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_string_lossy();
    let mut sums: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let perms = fields.get(1).copied().unwrap_or("");
            let name = fields.get(5).copied().unwrap_or("");
            current = if name.starts_with(exe.trim_end_matches(" (deleted)")) {
                match perms {
                    p if p.contains('x') => "binary code",
                    p if p.contains('w') => "binary data (relocated)",
                    _ => "binary read-only data",
                }
                .to_string()
            } else if name == "[heap]" {
                "heap".to_string()
            } else if name.is_empty() {
                "anonymous (stacks, arenas)".to_string()
            } else {
                format!("other {name}")
            };
        } else if let ("Rss:", Some(kib)) = (fields.first().copied().unwrap_or(""), fields.get(1)) {
            *sums.entry(current.clone()).or_default() += kib.parse::<u64>().unwrap_or(0);
        }
    }
    sums.iter()
        .filter(|(_, k)| **k > 0)
        .map(|(n, k)| format!("{n} {}", mib(*k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    // SAFETY: set before any thread that reads the environment is started.
    unsafe { std::env::set_var("FOREMAN_BOX_BENCH", "1") };
    in_process();
    idle_memory(foreman_box_tests::static_binary());
}
