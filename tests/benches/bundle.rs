//! `bundle create` from a loopback registry against `skopeo copy` of the same images, run as
//! `cargo bench -p foreman-box-tests --bench bundle`.
//!
//! Debian's docker-registry on loopback holds six images under the pinned names of one stream,
//! each one gzip layer of 24 MiB of incompressible data. Each round makes a bundle from scratch
//! (fresh output and work directory; k3s comes from a loopback mirror and is small here) with the
//! release build, then copies the same six images with `skopeo copy docker://... oci-archive:...`.
//! Medians of five rounds, with the load average: the machine is shared.

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks report to the terminal

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::registry::Registry;
use foreman_box_tests::{artifact, foreman_box, run, sha256_hex};
use foreman_operator::images::{Component, Table};
use std::process::Command;
use std::time::{Duration, Instant};

const STREAM: &str = "3.18";
const LAYER: usize = 24 << 20;
const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    std::env::set_var("FOREMAN_BOX_BENCH", "1");
    let registry = Registry::start().unwrap_or_else(|why| panic!("{why}"));
    let mut pins = Vec::new();
    let mut refs = Vec::new();
    for (i, c) in Component::ALL.iter().enumerate() {
        let mut pin = Table::builtin().pin(STREAM, *c).unwrap().clone();
        let path = pin.repository.split_once('/').unwrap().1.to_string();
        let p = registry.push_sized_image(&path, &pin.tag, LAYER, 100 + i as u64);
        pin.digest = Some(p.digest.clone());
        refs.push(format!("{path}@{}", p.digest));
        pins.push(pin);
    }
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("images.json");
    std::fs::write(
        &table,
        serde_json::to_vec(&serde_json::json!({"streams": {STREAM: pins}})).unwrap(),
    )
    .unwrap();
    let mirror = Mirror::start();
    let wire = "v1.33.5%2Bk3s1";
    let (k3s, airgap) = (artifact(1 << 20, 1), artifact(1 << 20, 2));
    mirror.put(
        &format!("/{wire}/sha256sum-amd64.txt"),
        format!(
            "{}  k3s\n{}  k3s-airgap-images-amd64.tar.zst\n",
            sha256_hex(&k3s),
            sha256_hex(&airgap)
        )
        .into_bytes(),
    );
    mirror.put(&format!("/{wire}/k3s"), k3s);
    mirror.put(&format!("/{wire}/k3s-airgap-images-amd64.tar.zst"), airgap);
    let reg = registry.url();

    let (mut ours, mut skopeo) = (Vec::new(), Vec::new());
    let mut size = 0;
    for round in 0..ROUNDS {
        let out = dir.path().join(format!("b{round}.tar"));
        let started = Instant::now();
        let made = run(&mut foreman_box(&[
            "bundle",
            "create",
            "-o",
            out.to_str().unwrap(),
            "--images",
            table.to_str().unwrap(),
            "--registry-mirror",
            &format!("quay.io={reg}"),
            "--registry-mirror",
            &format!("docker.io={reg}"),
            "--binary",
            "/bin/busybox",
            "--k3s-release-url",
            &mirror.url(),
        ]));
        ours.push(started.elapsed());
        assert_eq!(made.code, 0, "{}", made.all());
        size = std::fs::metadata(&out).unwrap().len();
        std::fs::remove_file(&out).unwrap();

        let started = Instant::now();
        for (i, r) in refs.iter().enumerate() {
            let dest = dir.path().join(format!("s{round}-{i}.tar"));
            let ok = Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://127.0.0.1:{}/{r}", registry.port))
                .arg(format!("oci-archive:{}", dest.display()))
                .status()
                .unwrap()
                .success();
            assert!(ok, "skopeo copy {r}");
        }
        skopeo.push(started.elapsed());
        for i in 0..refs.len() {
            let _ = std::fs::remove_file(dir.path().join(format!("s{round}-{i}.tar")));
        }
    }
    let mib = (refs.len() * LAYER) as f64 / f64::from(1 << 20);
    let (a, b) = (median(ours), median(skopeo));
    println!(
        "bundle create: six images, {mib:.0} MiB of layers, bundle {size} bytes: median {:.2}s ({:.0} MiB/s) over {ROUNDS} rounds",
        a.as_secs_f64(),
        mib / a.as_secs_f64()
    );
    println!(
        "skopeo copy docker:// -> oci-archive: of the same six images: median {:.2}s ({:.0} MiB/s)",
        b.as_secs_f64(),
        mib / b.as_secs_f64()
    );
    println!("load average: {}", loadavg());
}
