//! One run at a time: a second `install` waits a bounded time for the first, then fails naming
//! the PID that holds the lock; when the first finishes in time, the second goes on.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::{artifact, debian_root, foreman_box, sha256_hex, Run};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const WIRE: &str = "v1.33.5%2Bk3s1";

/// A mirror serving a `size`-byte stand-in k3s at `pause` per 64 KiB.
fn slow_release(size: usize, pause: Duration) -> Mirror {
    let mirror = Mirror::start();
    let binary = artifact(size, 7);
    mirror.put(
        &format!("/{WIRE}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(&binary)).into_bytes(),
    );
    mirror.put(&format!("/{WIRE}/k3s"), binary);
    mirror.slow(&format!("/{WIRE}/k3s"), pause);
    mirror
}

fn install(root: &Path, mirror: &Mirror) -> std::process::Command {
    let mut cmd = foreman_box(&[
        "install",
        "--root",
        root.to_str().unwrap(),
        "--skip-start",
        "--only",
        "preflight,k3s",
        "--ignore-preflight",
        "all",
        "--hostname",
        "foreman.example.test",
    ]);
    cmd.arg("--k3s-release-url").arg(mirror.url());
    cmd
}

/// Starts an install and returns once it holds the lock.
fn start_holding(root: &Path, mirror: &Mirror) -> Child {
    let child = install(root, mirror)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It holds the lock once it downloads (the lock is taken before planning).
    let part = root.join("var/lib/foreman-box/cache/k3s/v1.33.5+k3s1/k3s.part");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !part.exists() {
        assert!(
            Instant::now() < deadline,
            "the first run never started downloading"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn second_install_waits_then_fails_naming_the_pid_that_holds_the_lock() {
    // 8 MiB at 200 ms per 64 KiB: the first run downloads for far longer than the wait.
    let mirror = slow_release(8 << 20, Duration::from_millis(200));
    let root = debian_root();
    let mut first = start_holding(root.path(), &mirror);

    let started = Instant::now();
    let second = foreman_box_tests::run(&mut install(root.path(), &mirror));
    let waited = started.elapsed();
    first.kill().unwrap();
    first.wait().unwrap();

    assert_eq!(second.code, 1, "{}", second.all());
    let holder = format!("PID {}, running `install`", first.id());
    assert!(
        second.stderr.contains("another foreman-box run holds"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains(&holder), "{}", second.stderr);
    assert!(
        second.stderr.contains("help: let that run finish"),
        "{}",
        second.stderr
    );
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(20),
        "the wait is bounded at 10 s: {waited:?}"
    );
    assert!(
        !root.path().join("usr/local/bin/k3s").exists(),
        "the second run installed while the first held the lock"
    );
}

#[test]
fn second_install_goes_on_once_the_first_finishes() {
    // 2 MiB at 60 ms per 64 KiB: about 2 s, well inside the wait.
    let mirror = slow_release(2 << 20, Duration::from_millis(60));
    let root = debian_root();
    let first = start_holding(root.path(), &mirror);
    let second = install(root.path(), &mirror)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = finish(first);
    let second = finish(second);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(
        second
            .all()
            .contains("waiting for another foreman-box run to finish"),
        "{}",
        second.all()
    );
    assert!(
        second.stdout.contains("up to date, nothing changed"),
        "the second run found the first one's work done: {}",
        second.stdout
    );
}
