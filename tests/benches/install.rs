//! Figures for the installer (run with `BENCH_SIZE_MB=70 cargo bench -p foreman-box-tests --bench
//! install`; the release build is measured). Targets (issue 10), all against a loopback mirror:
//! - downloading an artifact (`BENCH_SIZE_MB`, 500 MiB by default) from three servers (Python's
//!   `http.server`, nginx with sendfile, the tests' Rust mirror): foreman-box's one-pass
//!   download+hash, on the runtime `foreman-box install` runs on, against `curl -o` alone and
//!   `curl -o && sha256sum`, taken in turn (A B A B); target: at most 0.91x curl -o's time
//!   against every server, both for downloads in this process and for one download in a fresh
//!   process each (as `install` makes its one, and as curl always runs). The CPU each spent
//!   (user+system) is printed beside it: on a host whose other core is busy, that decides;
//! - a fresh `install --only preflight,k3s` with a 70 MiB k3s binary: at most 2x a bare
//!   `curl -o` of the same file (`curl -o && sha256sum` is printed beside it);
//! - a converged re-run of that install, wall time from exec to exit: under 35 ms (the binary's
//!   hash is trusted from its stat stamp, and nothing that needs the network is set up);
//! - a converged re-run of the whole install order with the static binary (every step, the
//!   operator's 15 MB image included; --root implies --skip-start), wall time: under 0.3 s.
//!
//! `BENCH_SERVERS=python,nginx,rust` picks the download servers, `BENCH_ONLY=download` stops after
//! the downloads. Medians of several runs; the same loopback server serves every contender. The machine's
//! load (/proc/loadavg) is printed with the figures: compare runs taken on a quiet machine.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

use foreman_box::download::Downloader;
use foreman_box::host::HostFs;
use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::nginx::{free_port, Nginx};
use foreman_box_tests::{artifact, k3s_only, sha256_hex};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// /proc/loadavg's first three fields: the figures mean little on a busy machine.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU time of this process's threads so far.
fn process_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).unwrap();
    Duration::from(t)
}

/// CPU time of the children this process has waited for (the curls).
fn children_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    micros(u.user_time()) + micros(u.system_time())
}

/// `curl -sSf -o OUT URL`, the yardstick every figure is compared with.
fn curl_o(url: &str, out: &std::path::Path) {
    assert!(Command::new("curl")
        .args(["-sSf", "-o"])
        .arg(out)
        .arg(url)
        .status()
        .unwrap()
        .success());
}

/// Python's `http.server` serving `dir` (the file server most mirrors in a lab start as); killed
/// when dropped.
struct Python(std::process::Child, u16);

impl Python {
    fn start(dir: &std::path::Path) -> Python {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "python3 -m http.server did not listen on {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Python(child, port)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sha256sum FILE`'s hash.
fn sha256sum(file: &std::path::Path) -> String {
    let s = Command::new("sha256sum").arg(file).output().unwrap();
    assert!(s.status.success());
    String::from_utf8_lossy(&s.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The downloader's settings in every run of the bench.
fn downloader() -> Downloader {
    Downloader::new(&foreman_box::config::DownloadConfig {
        retries: 0,
        retry_delay_ms: 10,
        connect_timeout_secs: 20,
        timeout_secs: 30,
    })
}

/// The child of a fresh-process run: one download, as `foreman-box install` makes its one, from
/// a process that has done nothing before (no warm heap, no client yet). Set by the parent:
/// URL, OUT and SHA256 after `BENCH_FETCH=`.
fn fresh_fetch(spec: &str) {
    let mut parts = spec.split(' ');
    let (Some(url), Some(out), Some(sha)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("BENCH_FETCH is URL OUT SHA256, not {spec:?}");
    };
    let rt = foreman_box::cli::runtime();
    let out = std::path::Path::new(out);
    rt.block_on(downloader().fetch(&HostFs, url, out, sha))
        .unwrap();
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_FETCH") {
        return fresh_fetch(&spec);
    }
    // SAFETY: set before any thread that reads the environment is started.
    unsafe { std::env::set_var("FOREMAN_BOX_BENCH", "1") };
    let size: usize = std::env::var("BENCH_SIZE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
        << 20;
    let data = artifact(size, 7);
    let sha = sha256_hex(&data);
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    std::fs::write(served.join("big"), &data).unwrap();
    let mirror = Mirror::start();
    mirror.put("/big", data);
    let out = dir.path().join("big");
    let mb = size as f64 / (1 << 20) as f64;

    // The installer's own runtime, as `foreman-box install` builds it.
    let rt = foreman_box::cli::runtime();
    let dl = downloader();
    let fetch = |url: &str| {
        let _ = std::fs::remove_file(&out);
        let (t, cpu) = (Instant::now(), process_cpu());
        rt.block_on(dl.fetch(&HostFs, url, &out, &sha)).unwrap();
        (t.elapsed(), process_cpu() - cpu)
    };
    let me = std::env::current_exe().unwrap();
    let fresh = |url: &str| {
        let _ = std::fs::remove_file(&out);
        let (t, cpu) = (Instant::now(), children_cpu());
        let spec = format!("{url} {} {sha}", out.display());
        assert!(Command::new(&me)
            .env("BENCH_FETCH", spec)
            .status()
            .unwrap()
            .success());
        (t.elapsed(), children_cpu() - cpu)
    };
    let python = Python::start(&served);
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx_port = free_port();
    let _nginx = Nginx::start(
        nginx_dir.path(),
        &format!(
            "server {{\n  listen 127.0.0.1:{nginx_port};\n  root {};\n  sendfile on;\n}}\n",
            served.display()
        ),
        &[nginx_port],
    );
    let servers = [
        ("Python's http.server", python.url()),
        ("nginx (sendfile)", format!("http://127.0.0.1:{nginx_port}")),
        ("the tests' Rust mirror", mirror.url()),
    ];
    let mut worst: f64 = 0.0;
    // BENCH_SERVERS=python,nginx,rust measures those only; BENCH_ONLY=download stops after them.
    let chosen = std::env::var("BENCH_SERVERS").unwrap_or_else(|_| "python,nginx,rust".into());
    let keys = ["python", "nginx", "rust"];
    for ((server, base), key) in servers.iter().zip(keys) {
        if !chosen.split(',').any(|c| c == key) {
            continue;
        }
        let url = format!("{base}/big");
        let (mut ours, mut curl, mut pair) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours_cpu, mut curl_cpu) = (Vec::new(), Vec::new());
        let (mut cold, mut cold_cpu) = (Vec::new(), Vec::new());
        // A B A B: each contender sees the same machine state in turn.
        for _ in 0..RUNS {
            let (wall, cpu) = fetch(&url);
            ours.push(wall);
            ours_cpu.push(cpu);

            let (wall, cpu) = fresh(&url);
            cold.push(wall);
            cold_cpu.push(cpu);

            let _ = std::fs::remove_file(&out);
            let (t, cpu) = (Instant::now(), children_cpu());
            curl_o(&url, &out);
            curl.push(t.elapsed());
            curl_cpu.push(children_cpu() - cpu);

            let _ = std::fs::remove_file(&out);
            let t = Instant::now();
            curl_o(&url, &out);
            assert_eq!(sha256sum(&out), sha);
            pair.push(t.elapsed());
        }
        let rate = |d: Duration| mb / d.as_secs_f64();
        let (o, f, c, p) = (median(ours), median(cold), median(curl), median(pair));
        let (oc, fc, cc) = (median(ours_cpu), median(cold_cpu), median(curl_cpu));
        let ratio = |d: Duration| d.as_secs_f64() / c.as_secs_f64();
        worst = worst.max(ratio(o)).max(ratio(f));
        println!("download {mb:.0} MiB from {server} on loopback, median of {RUNS}:");
        let line = |what: &str, wall: Duration, cpu: Option<Duration>| {
            let cpu = cpu.map_or(String::new(), |cpu| {
                format!(", CPU {:.3} s", cpu.as_secs_f64())
            });
            println!(
                "  {what:<48} {:>7.3} s  {:>6.0} MiB/s{cpu}",
                wall.as_secs_f64(),
                rate(wall)
            );
        };
        // The in-process CPU of the rust mirror's runs includes the mirror itself.
        let own = (key != "rust").then_some(oc);
        line("foreman-box (download+sha256, one pass):", o, own);
        line("  the same, each in a fresh process:", f, Some(fc));
        line("curl -o:", c, Some(cc));
        line("curl -o && sha256sum:", p, None);
        println!(
            "  foreman-box time / curl -o time: {:.2}x, in a fresh process {:.2}x (target at most 0.91x)",
            ratio(o),
            ratio(f)
        );
        println!("  load average: {}", loadavg());
    }
    println!("download, worst server: {worst:.2}x curl -o's time (target at most 0.91x)");
    if std::env::var("BENCH_ONLY").is_ok_and(|o| o == "download") {
        return;
    }

    // Converged re-run of the k3s step, as a user runs it: the whole binary, start to exit.
    let release = Mirror::start();
    let bin_mb = 70;
    let bin = artifact(bin_mb << 20, 3);
    let sums = format!("{}  k3s\n", sha256_hex(&bin));
    release.put("/v1.33.5%2Bk3s1/k3s", bin);
    release.put("/v1.33.5%2Bk3s1/sha256sum-amd64.txt", sums.into_bytes());
    let debian = || {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/os-release"), "ID=debian\n").unwrap();
        root
    };
    let install_into = |root: &std::path::Path| {
        let o = k3s_only("install", root, &release.url()).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // Fresh install against the same file fetched by curl alone and curl + sha256sum.
    let bin_url = format!("{}/v1.33.5%2Bk3s1/k3s", release.url());
    let (mut fresh, mut fresh_curl, mut fresh_pair) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let root = debian();
        let t = Instant::now();
        install_into(root.path());
        fresh.push(t.elapsed());
        drop(root);

        let _ = std::fs::remove_file(&out);
        let t = Instant::now();
        curl_o(&bin_url, &out);
        fresh_curl.push(t.elapsed());

        let _ = std::fs::remove_file(&out);
        let t = Instant::now();
        curl_o(&bin_url, &out);
        assert_eq!(sha256sum(&out).len(), 64);
        fresh_pair.push(t.elapsed());
    }
    let (f, fc, fp) = (median(fresh), median(fresh_curl), median(fresh_pair));
    println!("fresh install --only preflight,k3s ({bin_mb} MiB k3s binary), median of {RUNS}:");
    println!("  foreman-box install:    {:>7.3} s", f.as_secs_f64());
    println!("  curl -o:                {:>7.3} s", fc.as_secs_f64());
    println!("  curl -o && sha256sum:   {:>7.3} s", fp.as_secs_f64());
    println!("  load average: {}", loadavg());
    println!(
        "  install / curl -o:      {:.2}x (target at most 2x)",
        f.as_secs_f64() / fc.as_secs_f64()
    );
    println!(
        "  install / (curl -o && sha256sum): {:.2}x",
        f.as_secs_f64() / fp.as_secs_f64()
    );

    let root = debian();
    let install = || {
        let o = k3s_only("install", root.path(), &release.url())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    install();
    let mut reruns = Vec::new();
    for _ in 0..RUNS * 2 {
        let t = Instant::now();
        install();
        reruns.push(t.elapsed());
    }
    reruns.sort();
    println!(
        "converged re-run of install --only preflight,k3s ({bin_mb} MiB k3s binary), median of {}: {:.1} ms (min {:.1}, max {:.1}; target under 35 ms)",
        reruns.len(),
        median(reruns.clone()).as_secs_f64() * 1000.0,
        reruns[0].as_secs_f64() * 1000.0,
        reruns[reruns.len() - 1].as_secs_f64() * 1000.0
    );
    println!("  load average while measuring: {}", loadavg());

    // The whole order, with the README's static binary (the operator step refuses any other)
    // and PostgreSQL in external mode against a throwaway server.
    let pg = foreman_box_tests::pg::Pg::start();
    let full_root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(full_root.path().join("etc")).unwrap();
    std::fs::write(full_root.path().join("etc/os-release"), "ID=debian\n").unwrap();
    let full = || {
        let o = foreman_box_tests::foreman_box_at(
            foreman_box_tests::static_binary(),
            &[
                "install",
                "--root",
                full_root.path().to_str().unwrap(),
                "--ignore-preflight",
                "all",
                "--hostname",
                "foreman.example.test",
                "--k3s-release-url",
                &release.url(),
                "--postgres-mode",
                "external",
                "--postgres-admin-url",
                &pg.admin_url(),
                "--node-ip",
                "192.0.2.10",
            ],
        )
        .env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", &pg.password)
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    full();
    let mut reruns = Vec::new();
    for _ in 0..RUNS * 2 {
        let t = Instant::now();
        let out = full();
        reruns.push(t.elapsed());
        assert!(out.contains("up to date"), "{out}");
    }
    println!(
        "converged re-run of the whole install (all steps, static binary), median of {}: {:.3} s (target under 0.3 s)",
        RUNS * 2,
        median(reruns).as_secs_f64()
    );
    println!("  load average: {}", loadavg());
}
