//! The cost of making the operator's keys and certificates (once per resource, then only
//! renewals), run as `cargo bench -p foreman-operator --bench certificates`.
//!
//! Six RSA 4096 keys (the CA and five leaves) made by `certificates::generate`, side by side on
//! threads; one leaf signed again by `certificates::renew`; the REX SSH key. Wall time and the
//! process's CPU time (all threads), median of RUNS, with the load average before and after:
//! the prime search is random, so single runs spread widely.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

use foreman_operator::read::read_foreman;
use foreman_operator::resources::certificates;
use std::time::{Duration, Instant, SystemTime};

const RUNS: usize = 7;

fn process_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn measure(what: &str, mut f: impl FnMut()) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let (w, c) = (Instant::now(), process_cpu());
        f();
        wall.push(w.elapsed());
        cpu.push(process_cpu() - c);
    }
    let (lo, hi) = (
        wall.iter().min().unwrap().as_millis(),
        wall.iter().max().unwrap().as_millis(),
    );
    println!(
        "{what}: median wall {} ms (min {lo}, max {hi}), median CPU {} ms, {RUNS} runs",
        median(wall).as_millis(),
        median(cpu).as_millis()
    );
}

fn main() {
    let fm = read_foreman(
        "bench",
        "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {name: foreman, namespace: foreman}\nspec:\n  hostname: foreman.example.com\n  plugins: {katello: true, remote_execution: true}\n",
    )
    .unwrap();
    println!(
        "{} CPUs, load average before: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load()
    );
    measure("certificates::generate (CA + 5 leaves, RSA 4096)", || {
        certificates::generate(&fm).unwrap();
    });
    let all = certificates::generate(&fm).unwrap();
    let ca: certificates::Values = certificates::CA_KEYS
        .iter()
        .map(|k| (k.to_string(), all[*k].clone()))
        .collect();
    let mut tls = all.clone();
    tls.remove(certificates::CA_KEY);
    tls.remove(certificates::PULP_CONTROL_CRT);
    measure("certificates::renew (one leaf)", || {
        certificates::renew(&fm, &ca, &tls, SystemTime::now())
            .unwrap()
            .unwrap();
    });
    tls = all.clone();
    tls.remove(certificates::CA_KEY);
    measure("certificates::due (nothing due)", || {
        assert!(certificates::due(&fm, &ca, &tls, SystemTime::now()).is_empty());
    });
    measure("secrets::ssh_keypair (RSA 4096)", || {
        foreman_operator::secrets::ssh_keypair("foreman-proxy@foreman.example.com").unwrap();
    });
    println!("load average after: {}", load());
}
