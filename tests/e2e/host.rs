//! On a real Debian host with systemd as PID 1 (a systemd-nspawn machine of Debian 12 or 13, see
//! `foreman_box_tests::nspawn`): no `--root`, no `--skip-start`. Local-mode PostgreSQL installed
//! through apt and run by systemd, and the k3s unit enabled, started, restarted only on change
//! and diagnosed on timeout, with a stand-in k3s binary from the loopback mirror. The binary is
//! the release one (`scripts/build.sh`), as a person would install it.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::nspawn::{Debian, Machine};
use foreman_box_tests::{sha256_hex, static_binary, Run};

const HOSTNAME: &str = "foreman.example.test";
const VERSION: &str = "v1.33.5+k3s1";
const WIRE: &str = "v1.33.5%2Bk3s1";

fn boot(release: Debian, name: &str) -> Machine {
    let machine = Machine::boot(release, name)
        .unwrap_or_else(|e| panic!("cannot boot a Debian {} host: {e}", release.version()));
    machine.install_file(static_binary(), "/usr/local/bin/foreman-box", 0o755);
    machine
}

/// `foreman-box ARGS` inside the machine. This build machine is not a Foreman host (2 cores):
/// preflight runs and reports, as warnings.
fn foreman_box(m: &Machine, args: &[&str]) -> Run {
    let mut argv = vec!["foreman-box"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--ignore-preflight", "all", "--hostname", HOSTNAME]);
    m.exec(&argv, &[("FOREMAN_BOX_LOG", "info")], None)
}

fn assert_ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what} failed:\n{}", r.all());
}

/// The postmaster's PID: it changes exactly when the server restarts.
fn postmaster_pid(m: &Machine) -> String {
    let data = m.postgres_cluster().data_directory;
    m.ok(&format!("head -n1 {data}/postmaster.pid"))
        .trim()
        .to_string()
}

#[test]
fn local_postgres_is_installed_by_apt_started_by_systemd_and_converges_on_debian12() {
    local_postgres_is_installed_by_apt_started_by_systemd_and_converges(Debian::Bookworm);
}

#[test]
fn local_postgres_is_installed_by_apt_started_by_systemd_and_converges_on_debian13() {
    local_postgres_is_installed_by_apt_started_by_systemd_and_converges(Debian::Trixie);
}

fn local_postgres_is_installed_by_apt_started_by_systemd_and_converges(release: Debian) {
    let m = boot(release, "fb-postgres");
    assert!(
        !m.has_package("postgresql"),
        "the fresh host must not have PostgreSQL yet"
    );

    let first = foreman_box(&m, &["install", "--only", "preflight,postgres"]);
    assert_ok(&first, "install --only preflight,postgres");
    // What was done to the server once it ran is shown as changes, once each, like the
    // planned ones (not only in the log).
    for db in ["foreman", "candlepin", "pulp"] {
        let line = format!("  + create database {db} (UTF8, owner {db}) (missing)");
        assert_eq!(
            first.stdout.matches(&line).count(),
            1,
            "{line:?} once:\n{}",
            first.stdout
        );
    }
    assert!(m.has_package("postgresql"), "apt installed the server");
    // The release's own server, in the cluster its packaging made.
    let cluster = m.postgres_cluster();
    assert_eq!(
        cluster.major,
        release.postgresql_major(),
        "Debian {} runs another PostgreSQL than its own",
        release.version()
    );
    assert_eq!(
        m.ok("runuser -u postgres -- psql -tAc 'SHOW server_version_num'")
            .trim()
            .parse::<u32>()
            .unwrap()
            / 10000,
        release.postgresql_major()
    );
    assert_eq!(m.ok("systemctl is-enabled postgresql").trim(), "enabled");
    assert_eq!(
        m.ok(&format!("systemctl is-active {}", cluster.unit()))
            .trim(),
        "active"
    );

    // Each role logs in over TCP with the password the installer stored.
    for role in ["foreman", "candlepin", "pulp"] {
        let password =
            std::fs::read_to_string(m.path(&format!("/etc/foreman-box/secrets/postgres-{role}")))
                .unwrap_or_else(|e| panic!("stored password of {role}: {e}"));
        assert_eq!(
            foreman_box_tests::mode(&m.path(&format!("/etc/foreman-box/secrets/postgres-{role}"))),
            0o600
        );
        let login = m.exec(
            &[
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                role,
                "-d",
                role,
                "-tAc",
                "SELECT current_user",
            ],
            &[("PGPASSWORD", password.trim())],
            None,
        );
        assert_eq!(login.code, 0, "{role} cannot log in:\n{}", login.all());
        assert_eq!(login.stdout.trim(), role);
        assert!(
            !first.all().contains(password.trim()),
            "the password of {role} shows in the install output"
        );
    }

    // A re-run changes nothing and restarts nothing.
    let pid = postmaster_pid(&m);
    assert_ok(
        &foreman_box(&m, &["install", "--only", "preflight,postgres"]),
        "re-run",
    );
    assert_eq!(
        postmaster_pid(&m),
        pid,
        "a converged re-run restarted PostgreSQL"
    );
    let plan = foreman_box(&m, &["plan", "--only", "postgres"]);
    assert_eq!(
        plan.code,
        0,
        "plan after a converged run wants changes:\n{}",
        plan.all()
    );

    // More dynflow workers need more connections: a setting that takes a restart, done once.
    let more = [
        "install",
        "--only",
        "preflight,postgres",
        "--dynflow-workers",
        "8",
    ];
    assert_ok(&foreman_box(&m, &more), "install with 8 workers");
    let restarted = postmaster_pid(&m);
    assert_ne!(
        restarted, pid,
        "max_connections changed but PostgreSQL was not restarted"
    );
    assert_eq!(
        m.ok("runuser -u postgres -- psql -tAc 'SHOW max_connections'")
            .trim(),
        // 100 + 30 per dynflow worker + 150 for Katello's Candlepin and Pulp (steps/postgres).
        (100 + 30 * 8 + 150).to_string(),
        "max_connections in force"
    );
    assert_ok(&foreman_box(&m, &more), "re-run with 8 workers");
    assert_eq!(
        postmaster_pid(&m),
        restarted,
        "restarted again without a change"
    );
}

/// `preflight` on a real host, with every check but the two under test ignored (this build
/// machine is no Foreman host), as a person runs it: no --root, no --skip-start.
fn preflight_of(m: &Machine, shell_prefix: &str) -> Run {
    let others: Vec<&str> = [
        "arch",
        "os",
        "cpu",
        "memory",
        "sizing",
        "disk",
        "ports",
        "route",
        "cgroup",
        "selinux",
        "firewalld",
    ]
    .to_vec();
    m.sh(&format!(
        "{shell_prefix}foreman-box preflight --hostname {HOSTNAME} --ignore-preflight {}",
        others.join(",")
    ))
}

#[test]
fn preflight_fails_without_systemd_as_pid_1_and_on_a_hostname_that_resolves_only_to_loopback() {
    let m = boot(Debian::Bookworm, "fb-preflight");
    // Debian's usual line for the host's own name: loopback only.
    m.ok(&format!(
        "printf '127.0.0.1 localhost\\n127.0.1.1 {HOSTNAME} foreman\\n' > /etc/hosts"
    ));
    let loopback = preflight_of(&m, "");
    assert_eq!(loopback.code, 1, "{}", loopback.all());
    assert!(
        loopback.all().contains(&format!(
            "`{HOSTNAME}` resolves only to loopback (127.0.1.1)"
        )) && loopback.all().contains("replace the 127.0.1.1 line"),
        "{}",
        loopback.all()
    );
    assert!(loopback.stdout.contains("✓ systemd"), "{}", loopback.all());

    // The node's address: both pass.
    m.ok(&format!(
        "printf '127.0.0.1 localhost\\n192.0.2.10 {HOSTNAME} foreman\\n' > /etc/hosts"
    ));
    let fit = preflight_of(&m, "");
    assert_eq!(fit.code, 0, "{}", fit.all());
    assert!(
        fit.stdout.contains("✓ fqdn") && fit.stdout.contains("✓ systemd"),
        "{}",
        fit.all()
    );

    // The same host as a container without systemd sees it: PID 1 is a shell and
    // /run/systemd is empty (a new PID and mount namespace, /run/systemd under a tmpfs).
    let no_systemd = preflight_of(
        &m,
        "unshare --mount --pid --fork --mount-proc sh -c 'mount -t tmpfs tmpfs /run/systemd && \"$0\" \"$@\"; exit $?' ",
    );
    assert_eq!(no_systemd.code, 1, "{}", no_systemd.all());
    assert!(
        no_systemd
            .all()
            .contains("systemd is not running as PID 1 (PID 1 is `sh`)")
            && no_systemd.all().contains("pass --skip-start"),
        "{}",
        no_systemd.all()
    );
    // ... and --skip-start starts nothing, so it does not need systemd.
    let skip = preflight_of(
        &m,
        "unshare --mount --pid --fork --mount-proc sh -c 'mount -t tmpfs tmpfs /run/systemd && \"$0\" \"$@\" --skip-start; exit $?' ",
    );
    assert_eq!(skip.code, 0, "{}", skip.all());
}

/// A release on the loopback mirror whose `k3s` is the stand-in program of this suite.
fn standin_release() -> Mirror {
    let mirror = Mirror::start();
    let standin = std::fs::read(env!("CARGO_BIN_EXE_k3s-standin")).unwrap();
    let sums = format!("{}  k3s\n", sha256_hex(&standin));
    mirror.put(&format!("/{WIRE}/k3s"), standin);
    mirror.put(&format!("/{WIRE}/sha256sum-amd64.txt"), sums.into_bytes());
    mirror
}

fn starts(m: &Machine) -> usize {
    std::fs::read_to_string(m.path("/var/lib/k3s-standin/starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout_on_debian12() {
    k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout(Debian::Bookworm);
}

#[test]
fn k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout_on_debian13() {
    k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout(Debian::Trixie);
}

fn k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout(release: Debian) {
    let mirror = standin_release();
    let m = boot(release, "fb-k3s");
    std::fs::write(m.path("/etc/k3s-standin.conf"), "ready_after_secs=2\n").unwrap();
    let url = mirror.url();
    let k3s = |extra: &[&str]| {
        let mut args = vec![
            "install",
            "--only",
            "preflight,k3s",
            "--k3s-version",
            VERSION,
            "--k3s-release-url",
            url.as_str(),
        ];
        args.extend_from_slice(extra);
        foreman_box(&m, &args)
    };

    let first = k3s(&["--k3s-ready-timeout", "60"]);
    assert_ok(&first, "install --only preflight,k3s");
    assert_eq!(m.ok("systemctl is-enabled k3s").trim(), "enabled");
    assert_eq!(m.ok("systemctl is-active k3s").trim(), "active");
    assert_eq!(starts(&m), 1, "k3s started once");

    // A re-run restarts nothing.
    assert_ok(&k3s(&["--k3s-ready-timeout", "60"]), "re-run");
    assert_eq!(starts(&m), 1, "a converged re-run restarted k3s");

    // A changed config restarts it once.
    let changed = [
        "--k3s-ready-timeout",
        "60",
        "--k3s-service-cidr",
        "10.45.0.0/16",
    ];
    assert_ok(&k3s(&changed), "install with another service CIDR");
    assert_eq!(starts(&m), 2, "the config changed: one restart");
    assert!(
        std::fs::read_to_string(m.path("/etc/rancher/k3s/config.yaml"))
            .unwrap()
            .contains("10.45.0.0/16")
    );
    assert_ok(&k3s(&changed), "re-run with the new CIDR");
    assert_eq!(starts(&m), 2, "restarted again without a change");

    // A k3s that never gets ready: install times out and says why, from systemd and the journal.
    std::fs::write(m.path("/etc/k3s-standin.conf"), "never_ready=true\n").unwrap();
    let stuck = k3s(&[
        "--k3s-ready-timeout",
        "5",
        "--k3s-service-cidr",
        "10.46.0.0/16",
    ]);
    assert_eq!(stuck.code, 1, "{}", stuck.all());
    let text = stuck.all();
    assert!(
        text.contains("k3s did not become ready within 5s"),
        "{text}"
    );
    assert!(
        text.contains("active"),
        "the service state is missing:\n{text}"
    );
    assert!(
        text.contains("told never to become ready"),
        "the journal's last lines are missing:\n{text}"
    );
    // Only this start's lines: the earlier starts' lines are in the journal, not in the error.
    assert!(
        !text.contains("k3s stand-in: server") && !text.contains("k3s stand-in: API ready"),
        "lines of earlier runs are quoted:\n{text}"
    );
}

/// The person's path: `curl | sh` from a clean host, a working install, an uninstall that keeps
/// the data, a second install that converges on it, and `--purge`.
#[test]
fn curl_to_shell_install_then_uninstall_keeps_data_and_purge_removes_it() {
    let mirror = standin_release();
    let script = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/install.sh"
    ))
    .unwrap();
    let binary_bytes = std::fs::read(static_binary()).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    mirror.put("/install.sh", script);
    mirror.put(
        &format!("/v{version}/foreman-box-x86_64"),
        binary_bytes.clone(),
    );
    mirror.put(
        &format!("/v{version}/SHA256SUMS"),
        format!("{}  foreman-box-x86_64\n", sha256_hex(&binary_bytes)).into_bytes(),
    );
    let url = mirror.url();
    let m = Machine::boot(Debian::Bookworm, "fb-curl")
        .unwrap_or_else(|e| panic!("cannot boot a Debian host: {e}"));
    std::fs::write(m.path("/etc/k3s-standin.conf"), "ready_after_secs=1\n").unwrap();
    let install_line = format!(
        "curl -sfL {url}/install.sh | sh -s -- --only preflight,k3s,postgres,storage \
         --ignore-preflight all --hostname {HOSTNAME} --k3s-version {VERSION} \
         --k3s-release-url {url} --k3s-ready-timeout 60"
    );
    let curl = |what: &str| {
        let r = m.exec(
            &["/bin/sh", "-c", &install_line],
            &[("FOREMAN_BOX_DOWNLOAD_URL", &url)],
            None,
        );
        assert_eq!(r.code, 0, "{what}: `{install_line}` failed:\n{}", r.all());
        r
    };
    curl("first install");
    assert_eq!(
        sha256_hex(&std::fs::read(m.path("/usr/local/bin/foreman-box")).unwrap()),
        sha256_hex(&binary_bytes),
        "install.sh installed the release binary"
    );
    assert!(m.path("/usr/local/bin/foreman-box-uninstall.sh").exists());
    assert_eq!(m.ok("systemctl is-active k3s").trim(), "active");
    let databases = "runuser -u postgres -- psql -tAc \"SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname IN ('foreman','candlepin','pulp')\"";
    assert_eq!(m.ok(databases).trim(), "candlepin,foreman,pulp");
    let stored =
        std::fs::read_to_string(m.path("/etc/foreman-box/secrets/postgres-foreman")).unwrap();

    // Uninstall keeps the data, and says how to remove it.
    let out = m.ok("foreman-box-uninstall.sh");
    assert!(
        out.contains("--purge"),
        "uninstall does not say how to remove the kept data:\n{out}"
    );
    assert!(
        !m.path("/etc/systemd/system/k3s.service").exists(),
        "the k3s unit is still there"
    );
    assert!(
        !m.path("/usr/local/bin/k3s").exists(),
        "the k3s binary is still there"
    );
    assert_ne!(m.sh("systemctl is-active k3s").stdout.trim(), "active");
    assert_eq!(
        m.sh("pgrep -x k3s").code,
        1,
        "a k3s process survived the uninstall"
    );
    assert_eq!(
        m.ok(databases).trim(),
        "candlepin,foreman,pulp",
        "uninstall dropped databases"
    );
    assert!(
        m.path("/var/lib/pulp").is_dir(),
        "uninstall removed /var/lib/pulp"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("/etc/foreman-box/secrets/postgres-foreman")).unwrap(),
        stored,
        "the stored password did not survive"
    );

    // A second install converges on the kept data: the kept roles still take their passwords.
    curl("second install");
    let login = m.exec(
        &[
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "foreman",
            "-d",
            "foreman",
            "-tAc",
            "SELECT 1",
        ],
        &[("PGPASSWORD", stored.trim())],
        None,
    );
    assert_eq!(
        login.code,
        0,
        "the kept role does not take its stored password:\n{}",
        login.all()
    );

    // --purge removes it all, the server foreman-box installed with its data included.
    m.ok("foreman-box-uninstall.sh --purge");
    assert!(
        !m.has_package("postgresql") && !m.has_package("postgresql-common"),
        "--purge left the server foreman-box installed"
    );
    for gone in ["/var/lib/postgresql", "/etc/postgresql"] {
        assert!(!m.path(gone).exists(), "--purge kept {gone}");
    }
    assert!(
        !m.path("/var/lib/pulp").exists(),
        "--purge kept /var/lib/pulp"
    );
    assert!(
        !m.path("/etc/foreman-box").exists(),
        "--purge kept /etc/foreman-box"
    );
}
