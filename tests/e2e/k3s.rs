//! `install --only preflight,k3s` against a loopback mirror: tree, modes, convergence, and
//! recovery from corrupted, failing, cut and killed downloads.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::{
    artifact, debian_root, foreman_box, mode, run, sha256_hex, tree_mtimes, Run,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const VERSION: &str = "v1.33.5+k3s1";
const WIRE: &str = "v1.33.5%2Bk3s1";

struct Release {
    mirror: Mirror,
    binary: Vec<u8>,
    airgap: Vec<u8>,
}

/// A release layout as GitHub serves it, made here: a stand-in binary and its sha256sum file.
fn release(size: usize) -> Release {
    let mirror = Mirror::start();
    let binary = artifact(size, 1);
    let airgap = artifact(300_000, 2);
    let sums = format!(
        "{}  k3s\n{}  k3s-arm64\n{}  k3s-airgap-images-amd64.tar.zst\n",
        sha256_hex(&binary),
        sha256_hex(b"arm"),
        sha256_hex(&airgap)
    );
    mirror.put(&format!("/{WIRE}/k3s"), binary.clone());
    mirror.put(
        &format!("/{WIRE}/k3s-airgap-images-amd64.tar.zst"),
        airgap.clone(),
    );
    mirror.put(&format!("/{WIRE}/sha256sum-amd64.txt"), sums.into_bytes());
    Release {
        mirror,
        binary,
        airgap,
    }
}

fn k3s_cmd(verb: &str, root: &Path, mirror: &Mirror, extra: &[&str]) -> std::process::Command {
    // Preflight itself is tested in its own scenario.
    let mut cmd = foreman_box_tests::k3s_only(verb, root, &mirror.url());
    cmd.args([
        "--skip-start",
        "--downloads-retries",
        "4",
        "--downloads-retry-delay-ms",
        "20",
    ]);
    cmd.args(extra);
    cmd
}

fn install(root: &Path, rel: &Release, extra: &[&str]) -> Run {
    run(&mut k3s_cmd("install", root, &rel.mirror, extra))
}

fn assert_installed(root: &Path, rel: &Release) {
    let bin = root.join("usr/local/bin/k3s");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        rel.binary,
        "installed binary is the release artifact"
    );
    assert_eq!(mode(&bin), 0o755);
    for (path, want) in [
        ("etc/rancher/k3s/config.yaml", 0o600),
        ("etc/systemd/system/k3s.service", 0o644),
        ("etc/systemd/system/k3s.service.env", 0o600),
    ] {
        assert_eq!(mode(&root.join(path)), want, "{path}");
    }
    let config = std::fs::read_to_string(root.join("etc/rancher/k3s/config.yaml")).unwrap();
    assert!(config.contains("write-kubeconfig-mode: '0600'"), "{config}");
    assert!(
        config.contains("- foreman.example.test"),
        "tls-san names the FQDN: {config}"
    );
    assert!(config.contains("cluster-cidr: 10.42.0.0/16"), "{config}");
    assert!(
        config.contains("disable:\n- traefik\n"),
        "Traefik off, the edge takes 80/443: {config}"
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/k3s.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/k3s server"),
        "{unit}"
    );
    assert!(
        unit.contains("EnvironmentFile=-/etc/systemd/system/k3s.service.env"),
        "{unit}"
    );
    for link in ["kubectl", "crictl", "ctr"] {
        assert_eq!(
            std::fs::read_link(root.join("usr/local/bin").join(link)).unwrap(),
            PathBuf::from("k3s")
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join("var/lib/foreman-box/k3s-version"))
            .unwrap()
            .trim(),
        VERSION
    );
    let leftovers: Vec<_> = tree_mtimes(root)
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p.ends_with(".part") || p.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn k3s_install_writes_verified_binary_config_and_unit() {
    let rel = release(3 << 20);
    let root = debian_root();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    // `+` in the tag went over the wire as %2B.
    assert!(!rel.mirror.requests_for(&format!("/{WIRE}/k3s")).is_empty());
}

#[test]
fn k3s_rerun_changes_nothing_and_plan_is_empty() {
    let rel = release(1 << 20);
    let root = debian_root();
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    let before = tree_mtimes(root.path());
    let requests = rel.mirror.requests().len();

    let again = install(root.path(), &rel, &[]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("up to date, nothing changed"),
        "{}",
        again.stdout
    );
    assert_eq!(
        tree_mtimes(root.path()),
        before,
        "a converged re-run rewrote files"
    );
    assert_eq!(
        rel.mirror.requests().len(),
        requests,
        "a converged re-run used the network"
    );

    let plan = run(&mut k3s_cmd("plan", root.path(), &rel.mirror, &[]));
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("k3s: up to date"), "{}", plan.stdout);
}

#[test]
fn k3s_plan_on_fresh_host_lists_changes_exits_2_and_writes_nothing() {
    let rel = release(1 << 20);
    let root = debian_root();
    let before = tree_mtimes(root.path());
    let plan = run(&mut k3s_cmd("plan", root.path(), &rel.mirror, &[]));
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout
            .contains("+ install /usr/local/bin/k3s v1.33.5+k3s1 (missing)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("+ write /etc/rancher/k3s/config.yaml (missing)"),
        "{}",
        plan.stdout
    );
    assert_eq!(tree_mtimes(root.path()), before, "plan changed the host");
}

#[test]
fn k3s_config_change_is_planned_and_rewritten() {
    let rel = release(1 << 20);
    let root = debian_root();
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    let cfg = root.path().join("etc/rancher/k3s/config.yaml");
    std::fs::write(&cfg, "tampered\n").unwrap();
    let plan = run(&mut k3s_cmd("plan", root.path(), &rel.mirror, &[]));
    assert_eq!(plan.code, 2);
    assert!(
        plan.stdout
            .contains("write /etc/rancher/k3s/config.yaml (content differs)"),
        "{}",
        plan.stdout
    );
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("tls-san"));
}

#[test]
fn k3s_corrupted_artifact_installs_nothing_and_names_both_hashes() {
    let rel = release(1 << 20);
    let mut bad = rel.binary.clone();
    bad[1000] ^= 0xff;
    rel.mirror.put(&format!("/{WIRE}/k3s"), bad.clone());
    let root = debian_root();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&sha256_hex(&rel.binary)),
        "expected hash named: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&sha256_hex(&bad)),
        "actual hash named: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("/{WIRE}/k3s")),
        "URL named: {}",
        out.stderr
    );
    assert!(
        !root.path().join("usr/local/bin/k3s").exists(),
        "a corrupt binary was installed"
    );
    assert!(!root.path().join("etc/systemd/system/k3s.service").exists());
    let cache = root
        .path()
        .join(format!("var/lib/foreman-box/cache/k3s/{VERSION}"));
    assert!(
        !cache.join("k3s").exists() && !cache.join("k3s.part").exists(),
        "corrupt bytes were kept"
    );
}

#[test]
fn k3s_server_errors_are_retried_until_it_recovers() {
    let rel = release(1 << 20);
    let path = format!("/{WIRE}/k3s");
    rel.mirror.fail_next(&path, 2);
    let root = debian_root();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    let statuses: Vec<u16> = rel
        .mirror
        .requests_for(&path)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
}

#[test]
fn k3s_giving_up_after_retries_names_the_url_and_status() {
    let rel = release(1 << 20);
    let path = format!("/{WIRE}/k3s");
    rel.mirror.fail_next(&path, 100);
    let root = debian_root();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("answered HTTP 503"), "{}", out.stderr);
    assert!(out.stderr.contains(&path), "{}", out.stderr);
    assert_eq!(rel.mirror.requests_for(&path).len(), 5, "1 try + 4 retries");
}

#[test]
fn k3s_connection_cut_halfway_resumes_with_range() {
    let rel = release(2 << 20);
    let path = format!("/{WIRE}/k3s");
    rel.mirror.cut_next(&path, 1 << 20);
    let root = debian_root();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    let reqs = rel.mirror.requests_for(&path);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=1048576-"), "{reqs:?}");
    assert_eq!(reqs[1].status, 206);
}

#[test]
fn k3s_killed_install_finishes_on_next_run() {
    let rel = release(8 << 20);
    let path = format!("/{WIRE}/k3s");
    rel.mirror.slow(&path, Duration::from_millis(40));
    let root = debian_root();
    let mut child = k3s_cmd("install", root.path(), &rel.mirror, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = root
        .path()
        .join(format!("var/lib/foreman-box/cache/k3s/{VERSION}/k3s.part"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < (1 << 20) {
        assert!(
            std::time::Instant::now() < deadline,
            "download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !root.path().join("usr/local/bin/k3s").exists(),
        "a partial binary was installed"
    );

    rel.mirror.slow(&path, Duration::ZERO);
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    let last = rel.mirror.requests_for(&path).pop().unwrap();
    assert!(
        last.range.is_some(),
        "the second run resumed the part: {last:?}"
    );
}

#[test]
fn k3s_channel_resolves_through_redirect() {
    let rel = release(1 << 20);
    rel.mirror.redirect(
        "/channels/stable",
        &format!("https://github.com/k3s-io/k3s/releases/tag/{WIRE}"),
    );
    let root = debian_root();
    let channel_url = format!("{}/channels", rel.mirror.url());
    // Only the file's version key is set, so the channel decides.
    let out = run(k3s_cmd(
        "install",
        root.path(),
        &rel.mirror,
        &["--k3s-channel", "stable", "--k3s-channel-url", &channel_url],
    )
    .env_remove("FOREMAN_BOX_K3S_VERSION"));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    assert!(
        out.stderr.contains("resolved k3s channel"),
        "{}",
        out.stderr
    );
}

#[test]
fn k3s_airgap_images_land_in_the_images_folder() {
    let rel = release(1 << 20);
    let root = debian_root();
    let out = install(root.path(), &rel, &["--k3s-airgap-images"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let images = root
        .path()
        .join("var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst");
    assert_eq!(std::fs::read(images).unwrap(), rel.airgap);
}

#[test]
fn k3s_second_install_downloads_nothing_from_cache() {
    let rel = release(1 << 20);
    let root = debian_root();
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    // The binary is lost, the cache is not: reinstalling needs no download.
    std::fs::remove_file(root.path().join("usr/local/bin/k3s")).unwrap();
    let before = rel.mirror.requests().len();
    let out = install(root.path(), &rel, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_installed(root.path(), &rel);
    assert_eq!(
        rel.mirror.requests().len(),
        before,
        "the cache was not used"
    );
}

#[test]
fn k3s_unit_passes_systemd_analyze_verify() {
    // scripts/test.sh installs systemd: a missing tool is a failure, not a skip.
    assert!(
        Path::new("/usr/bin/systemd-analyze").exists(),
        "systemd-analyze is not installed"
    );
    let rel = release(1 << 20);
    let root = debian_root();
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    // verify resolves the unit's dependencies (sysinit.target, ...) under the root too.
    let units = root.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(&units)
        .status()
        .unwrap();
    assert!(copied.success());
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg("/etc/systemd/system/k3s.service")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    assert!(!stderr.contains("k3s.service:"), "unit warnings: {stderr}");
}

#[test]
fn preflight_reports_each_failure_with_its_fix_and_override() {
    let root = debian_root();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=alpine\nPRETTY_NAME=\"Alpine Linux\"\n",
    )
    .unwrap();
    let out = run(&mut foreman_box(&[
        "preflight",
        "--root",
        root.path().to_str().unwrap(),
        // Valid as a name (bad names are refused before preflight, see bad_input.rs) but it
        // does not resolve.
        "--hostname",
        "foreman.invalid",
    ]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("✗ os: Alpine Linux (alpine) is not a supported distribution"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("✗ fqdn"), "{}", out.stdout);
    assert!(
        out.stdout.contains("or pass --ignore-preflight os"),
        "{}",
        out.stdout
    );
    let ok = run(&mut foreman_box(&[
        "preflight",
        "--root",
        root.path().to_str().unwrap(),
        "--ignore-preflight",
        "all",
    ]));
    assert_eq!(ok.code, 0, "{}", ok.all());
    // install stops at preflight and touches nothing.
    let before = tree_mtimes(root.path());
    let out = run(&mut foreman_box(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "preflight,k3s",
        "--ignore-preflight",
        "cpu",
    ]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("preflight failed"), "{}", out.stderr);
    assert_eq!(tree_mtimes(root.path()), before);
}

#[test]
fn config_file_unknown_key_and_bad_value_are_named_with_their_source() {
    let root = debian_root();
    let plan_with = |config: &str| {
        std::fs::create_dir_all(root.path().join("etc/foreman-box")).unwrap();
        std::fs::write(root.path().join("etc/foreman-box/config.toml"), config).unwrap();
        run(&mut foreman_box(&[
            "plan",
            "--root",
            root.path().to_str().unwrap(),
        ]))
    };
    let out = plan_with("[k3s]\nverison = \"v1\"\n");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "unknown configuration key `k3s.verison` in {}/etc/foreman-box/config.toml",
            root.path().display()
        )),
        "{}",
        out.stderr
    );

    let out = plan_with("[foreman]\ndynflow_workers = 99\n");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "bad value for `foreman.dynflow_workers` from {}/etc/foreman-box/config.toml:2:19: 99 is out of range",
            root.path().display()
        )),
        "{}",
        out.stderr
    );

    let out = run(
        foreman_box(&["plan", "--root", root.path().to_str().unwrap()])
            .env("FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS", "3")
            .env("FOREMAN_BOX_K3S_CLUSTER_CIDR", "nonsense"),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("`k3s.cluster_cidr` from environment variable FOREMAN_BOX_K3S_CLUSTER_CIDR"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_reports_the_installed_version_as_json() {
    let rel = release(1 << 20);
    let root = debian_root();
    assert_eq!(install(root.path(), &rel, &[]).code, 0);
    let out = run(&mut foreman_box(&[
        "status",
        "--json",
        "--root",
        root.path().to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["k3s"]["installed"], true);
    assert_eq!(v["k3s"]["version"], VERSION);
}

#[test]
fn a_proxy_variable_with_a_newline_is_left_out_of_the_env_file_with_a_warning() {
    let rel = release(1 << 20);
    let root = debian_root();
    let value = "http://user:hunter2@proxy.example:3128\nEVIL=1";
    let out = run(k3s_cmd("install", root.path(), &rel.mirror, &[]).env("HTTPS_PROXY", value));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("warning: HTTPS_PROXY holds a newline or another control character, so it is not passed on to k3s"),
        "{}",
        out.all()
    );
    assert!(
        !out.all().contains("hunter2"),
        "the value was shown: {}",
        out.all()
    );
    let env =
        std::fs::read_to_string(root.path().join("etc/systemd/system/k3s.service.env")).unwrap();
    assert!(
        !env.contains("HTTPS_PROXY") && !env.contains("EVIL"),
        "{env}"
    );
}
