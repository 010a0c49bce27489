//! A snapshot catalogue of what the CLI prints when it refuses: the whole stdout and stderr of
//! representative failures (a bad flag value, an unknown check name, a missing or unsafe or
//! malformed config file, a bad hostname, a system directory for Pulp, overlapping networks, an
//! unreachable PostgreSQL server, a resource the operator refuses) and of `plan --output json`,
//! with the root, the mirror and times replaced (`UPDATE_SNAPSHOTS=1` rewrites them; review each).
//! Besides the snapshot, each failure must print one `error:` with one `help:` and name no path
//! outside its --root: an error printed twice or a lost help line fails even a fresh snapshot.

use crate::terminal::{assert_snapshot, scrub};
use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::{debian_root, foreman_box, run, sha256_hex, Run};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The run's output as a reviewable document: the command, its exit code and both streams.
fn document(args: &[String], out: &Run, root: &Path, mirror: Option<&Mirror>) -> String {
    let scrub = |t: &str| scrub(t, root, mirror);
    format!(
        "$ foreman-box {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
        scrub(&args.join(" ")),
        out.code,
        scrub(out.stdout.trim_end()),
        scrub(out.stderr.trim_end())
    )
}

/// `foreman-box ARGS` under ROOT as a user runs it (no log filter: what the screen shows).
fn refused(name: &str, root: &Path, args: &[&str], env: &[(&str, &str)]) {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("<root>", root.to_str().unwrap()))
        .collect();
    let mut cmd = foreman_box(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env_remove("FOREMAN_BOX_LOG");
    // Should a case be accepted by mistake, it must not reach the internet.
    cmd.env("FOREMAN_BOX_K3S_RELEASE_URL", "http://127.0.0.1:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    let doc = document(&args, &out, root, None);
    assert_eq!(out.code, 1, "{name}:\n{doc}");
    assert!(!out.all().contains("panicked"), "{name}:\n{doc}");
    assert_eq!(
        out.stderr.matches("error:").count(),
        1,
        "{name}: one error, printed once:\n{doc}"
    );
    assert_eq!(
        out.stderr.matches("help:").count(),
        1,
        "{name}: one `help:` line:\n{doc}"
    );
    // Every path it names is under the root (the run log included).
    let tmp = std::env::temp_dir();
    let outside = scrub(&out.all(), root, None);
    assert!(
        !outside.contains(tmp.to_str().unwrap()),
        "{name}: names a path outside --root:\n{doc}"
    );
    assert_snapshot(&format!("error_{name}"), &doc);
}

fn with_config(root: &Path, text: &str, mode: u32) {
    let dir = root.join("etc/foreman-box");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
    std::fs::set_permissions(
        dir.join("config.toml"),
        std::fs::Permissions::from_mode(mode),
    )
    .unwrap();
}

const K3S: [&str; 5] = ["install", "--root", "<root>", "--only", "preflight,k3s"];

fn k3s_with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = K3S.to_vec();
    v.extend_from_slice(extra);
    v
}

/// A failure: its snapshot's name, the arguments, and config.toml's text and mode if any.
type Case = (&'static str, Vec<&'static str>, Option<(&'static str, u32)>);

#[test]
fn cli_errors_print_once_with_their_help_and_match_the_snapshots() {
    let cases: Vec<Case> = vec![
        ("bad_flag_value", k3s_with(&["--katello", "maybe"]), None),
        (
            "unknown_ignore_preflight",
            k3s_with(&["--ignore-preflight", "fqdm"]),
            None,
        ),
        (
            "missing_config",
            k3s_with(&["--config", "<root>/etc/foreman-box/missing.toml"]),
            None,
        ),
        (
            "toml_syntax",
            K3S.to_vec(),
            Some(("[k3s\nversion = \"v1\"\n", 0o644)),
        ),
        (
            "world_writable_config",
            K3S.to_vec(),
            Some(("hostname = \"foreman.example.com\"\n", 0o666)),
        ),
        (
            "bad_hostname",
            k3s_with(&["--hostname", "foreman_1.example.com"]),
            None,
        ),
        ("pulp_dir_root", k3s_with(&["--pulp-dir", "/"]), None),
        (
            "overlapping_cidrs",
            k3s_with(&["--k3s-service-cidr", "10.42.0.0/16"]),
            None,
        ),
    ];
    for (name, args, config) in cases {
        let root = debian_root();
        if let Some((text, mode)) = config {
            with_config(root.path(), text, mode);
        }
        refused(name, root.path(), &args, &[]);
    }
}

#[test]
fn postgres_connection_error_prints_once_with_its_help() {
    let root = debian_root();
    // Nothing listens on port 1: the connection is refused at once.
    refused(
        "postgres_unreachable",
        root.path(),
        &[
            "install",
            "--root",
            "<root>",
            "--only",
            "postgres",
            "--postgres-mode",
            "external",
            "--postgres-admin-url",
            "postgres://admin@127.0.0.1:1/postgres",
            "--node-ip",
            "192.0.2.10",
        ],
        &[("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", "not-shown-anywhere")],
    );
}

#[test]
fn operator_render_refusal_prints_once_with_its_help() {
    let root = debian_root();
    std::fs::write(
        root.path().join("foreman.yaml"),
        "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {name: f}\nspec: {hostname: foreman.example.com, dynflow_workers: 1000}\n",
    )
    .unwrap();
    refused(
        "operator_render_refusal",
        root.path(),
        &["operator", "render", "<root>/foreman.yaml"],
        &[],
    );
}

#[test]
fn operator_render_names_an_alias_bomb_a_directory_and_a_device() {
    let root = debian_root();
    // Nine aliases of nine: 9^9 strings once expanded, from a few hundred bytes.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip("abcdefgh".chars())
    {
        let nine = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("{name}: &{name} [{nine}]\n"));
    }
    bomb.push_str("kind: Foreman\n");
    std::fs::write(root.path().join("bomb.yaml"), bomb).unwrap();
    std::fs::create_dir(root.path().join("dir.yaml")).unwrap();
    for (name, file) in [
        ("operator_render_alias_bomb", "<root>/bomb.yaml"),
        ("operator_render_directory", "<root>/dir.yaml"),
        ("operator_render_device", "/dev/zero"),
    ] {
        refused(name, root.path(), &["operator", "render", file], &[]);
    }
}

#[test]
fn a_failing_json_command_prints_an_error_document_on_stdout() {
    let root = debian_root();
    let args = [
        "plan",
        "--root",
        "<root>",
        "--output",
        "json",
        "--hostname",
        "foreman",
    ];
    refused("plan_json_refused", root.path(), &args, &[]);
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("<root>", root.path().to_str().unwrap()))
        .collect();
    let out = run(&mut foreman_box(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", out.all()));
    let error = &doc["error"];
    assert!(
        error["message"].as_str().unwrap().contains("`foreman`"),
        "{doc}"
    );
    assert!(
        error["help"]
            .as_str()
            .unwrap()
            .starts_with("add the domain"),
        "{doc}"
    );
    assert!(
        error["log"]
            .as_str()
            .unwrap()
            .starts_with(root.path().join("var/log/foreman-box").to_str().unwrap()),
        "{doc}"
    );
}

#[test]
fn plan_json_on_a_root_tree_matches_the_snapshot() {
    let mirror = Mirror::start();
    let wire = "v1.33.5%2Bk3s1";
    mirror.put(&format!("/{wire}/k3s"), b"k3s".to_vec());
    mirror.put(
        &format!("/{wire}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(b"k3s")).into_bytes(),
    );
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let url = mirror.url();
    let args: Vec<String> = [
        "plan",
        "--root",
        r,
        "--only",
        "preflight,k3s,storage",
        "--ignore-preflight",
        "all",
        "--hostname",
        "foreman.example.test",
        "--k3s-release-url",
        &url,
        "--output",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cmd = foreman_box(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env_remove("FOREMAN_BOX_LOG");
    let out = run(&mut cmd);
    let doc = document(&args, &out, root.path(), Some(&mirror));
    assert_eq!(out.code, 2, "{doc}");
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{doc}"));
    assert_snapshot("plan_json", &doc);
}

#[test]
fn usage_errors_exit_1_not_the_2_of_changes_pending() {
    // clap's own errors: the value or argument, a tip, the usage and a pointer to --help.
    for (name, args) in [
        ("usage_bad_output_value", vec!["plan", "--output", "yaml"]),
        ("usage_misspelt_flag", vec!["plan", "--katelo", "true"]),
    ] {
        let root = debian_root();
        let mut args = args;
        args.extend(["--root", root.path().to_str().unwrap()]);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run(&mut foreman_box(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        let doc = document(&args, &out, root.path(), None);
        assert_eq!(
            out.code, 1,
            "{name}: a usage error is an error, not `plan`'s 2:\n{doc}"
        );
        assert_eq!(out.stderr.matches("error:").count(), 1, "{name}:\n{doc}");
        assert!(out.stderr.contains("try '--help'"), "{name}:\n{doc}");
        assert_snapshot(name, &doc);
    }
    let help = run(&mut foreman_box(&["plan", "--help"]));
    assert_eq!(help.code, 0, "{}", help.all());
    assert!(
        help.stdout.contains("Usage: foreman-box plan"),
        "{}",
        help.all()
    );
    // Every setting with a default shows it, from the key table itself.
    let help = run(&mut foreman_box(&["install", "--help"]));
    for foreman_box::config::Key {
        name: key, default, ..
    } in foreman_box::config::KEYS
    {
        let flag = format!("--{}", foreman_box::config::flag_name(key));
        let text = help
            .stdout
            .split(&format!("      {flag} "))
            .nth(1)
            .unwrap_or_else(|| panic!("{flag} is not in install --help:\n{}", help.stdout));
        let entry = text.split("\n      --").next().unwrap();
        if !default.is_empty() {
            assert!(
                entry.contains(&format!("[default: {default}]")),
                "{flag} shows no default: {entry}"
            );
        }
    }
    let version = run(&mut foreman_box(&["--version"]));
    assert_eq!(version.code, 0, "{}", version.all());
    assert_eq!(
        version.stdout,
        format!("foreman-box {}\n", env!("CARGO_PKG_VERSION"))
    );
}
