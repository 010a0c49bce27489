//! On a real Debian 12 host with systemd as PID 1 (a systemd-nspawn machine, see
//! `foreman_box_tests::nspawn`): no `--root`, no `--skip-start`. Local-mode PostgreSQL installed
//! through apt and run by systemd, and the k3s unit enabled, started, restarted only on change
//! and diagnosed on timeout, with a stand-in k3s binary from the loopback mirror.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::nspawn::Machine;
use foreman_box_tests::{binary, sha256_hex, Run};

const HOSTNAME: &str = "foreman.example.test";
const VERSION: &str = "v1.33.5+k3s1";
const WIRE: &str = "v1.33.5%2Bk3s1";

fn boot(name: &str) -> Machine {
    let machine = Machine::boot(name).unwrap_or_else(|e| panic!("cannot boot a Debian host: {e}"));
    machine.install_file(binary(), "/usr/local/bin/foreman-box", 0o755);
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
    m.ok("head -n1 /var/lib/postgresql/15/main/postmaster.pid")
        .trim()
        .to_string()
}

#[test]
fn local_postgres_is_installed_by_apt_started_by_systemd_and_converges() {
    let m = boot("fb-postgres");
    assert!(
        m.sh("dpkg-query -W -f='${Status}' postgresql")
            .stdout
            .trim()
            != "install ok installed",
        "the fresh host must not have PostgreSQL yet"
    );

    let first = foreman_box(&m, &["install", "--only", "preflight,postgres"]);
    assert_ok(&first, "install --only preflight,postgres");
    assert_eq!(
        m.sh("dpkg-query -W -f='${Status}' postgresql")
            .stdout
            .trim(),
        "install ok installed",
        "apt installed the server"
    );
    assert_eq!(m.ok("systemctl is-enabled postgresql").trim(), "enabled");
    assert_eq!(
        m.ok("systemctl is-active postgresql@15-main").trim(),
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
fn k3s_unit_is_enabled_started_restarted_only_on_change_and_diagnosed_on_timeout() {
    let mirror = standin_release();
    let m = boot("fb-k3s");
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
}
