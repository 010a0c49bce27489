//! The settings `install` was given are kept in /etc/foreman-box/config.toml, so that a bare
//! `plan` or re-run afterwards needs no flags: what was given (not the defaults), each value
//! with a comment naming where it came from, a person's own lines left as they were.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::{artifact, debian_root, foreman_box, mode, run, sha256_hex, Run};
use std::path::Path;

const WIRE: &str = "v1.33.4%2Bk3s1";

/// A k3s release mirror for v1.33.4+k3s1 (not the pinned version: a bare run would plan it).
fn mirror() -> Mirror {
    let mirror = Mirror::start();
    let binary = artifact(200_000, 7);
    mirror.put(
        &format!("/{WIRE}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(&binary)).into_bytes(),
    );
    mirror.put(&format!("/{WIRE}/k3s"), binary);
    mirror
}

fn cmd(verb: &str, root: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        verb,
        "--root",
        root.to_str().unwrap(),
        "--only",
        "preflight,settings,k3s",
        "--ignore-preflight",
        "all",
    ];
    args.extend_from_slice(extra);
    foreman_box(&args)
}

#[test]
fn install_keeps_what_it_was_given_and_a_bare_plan_afterwards_needs_no_flags() {
    let root = debian_root();
    let mirror = mirror();
    let url = mirror.url();
    let given = [
        "--hostname",
        "foreman.example.test",
        "--k3s-version",
        "v1.33.4+k3s1",
        "--k3s-release-url",
        &url,
        "--downloads-retry-delay-ms",
        "20",
    ];
    let mut first = cmd("install", root.path(), &given);
    first.env("FOREMAN_BOX_FOREMAN_KATELLO", "false");
    let first: Run = run(&mut first);
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        first
            .stdout
            .contains("write /etc/foreman-box/config.toml (remember"),
        "{}",
        first.stdout
    );

    let kept_path = root.path().join("etc/foreman-box/config.toml");
    let kept = std::fs::read_to_string(&kept_path).unwrap();
    assert_eq!(mode(&kept_path), 0o644);
    for line in [
        "hostname = \"foreman.example.test\" # --hostname",
        "version = \"v1.33.4+k3s1\" # --k3s-version",
        &format!("release_url = \"{url}\" # --k3s-release-url"),
        "retry_delay_ms = 20 # --downloads-retry-delay-ms",
        "katello = false # FOREMAN_BOX_FOREMAN_KATELLO",
    ] {
        assert!(kept.contains(line), "{line:?} not kept:\n{kept}");
    }
    // Only what was given: no default is written.
    for default in [
        "cluster_cidr",
        "wait_timeout",
        "dynflow_workers",
        "postgres",
    ] {
        assert!(!kept.contains(default), "{default} was not given:\n{kept}");
    }

    // Later runs need no flags: nothing to change, and the k3s it plans from is the kept one.
    let bare = run(&mut cmd("plan", root.path(), &[]));
    assert_eq!(bare.code, 0, "a bare plan plans nothing:\n{}", bare.all());

    // A flag given again with the same value changes nothing; a new value is kept in place,
    // and a person's own line and comment stay as they were.
    let mut text = kept.clone();
    text.push_str("# my own note\n");
    std::fs::write(&kept_path, &text).unwrap();
    let same = run(&mut cmd(
        "install",
        root.path(),
        &["--hostname", "foreman.example.test"],
    ));
    assert_eq!(same.code, 0, "{}", same.all());
    assert_eq!(std::fs::read_to_string(&kept_path).unwrap(), text);
    let changed = run(&mut cmd(
        "plan",
        root.path(),
        &["--hostname", "box.example.test"],
    ));
    assert_eq!(changed.code, 2, "{}", changed.all());
    assert!(
        changed.stdout.contains(
            "write /etc/foreman-box/config.toml (remember hostname (--hostname) for later runs)"
        ),
        "{}",
        changed.stdout
    );
    let moved = run(&mut cmd(
        "install",
        root.path(),
        &["--hostname", "box.example.test"],
    ));
    assert_eq!(moved.code, 0, "{}", moved.all());
    let after = std::fs::read_to_string(&kept_path).unwrap();
    assert!(
        after.contains("hostname = \"box.example.test\" # --hostname")
            && !after.contains("foreman.example.test")
            && after.contains("# my own note")
            && after.contains("version = \"v1.33.4+k3s1\" # --k3s-version"),
        "{after}"
    );
    // The kept file is read back as any config.toml is: a bare plan is still up to date.
    let bare = run(&mut cmd("plan", root.path(), &[]));
    assert_eq!(bare.code, 0, "{}", bare.all());
}
