//! `foreman-box uninstall` (the embedded scripts/uninstall.sh) after `install --root`: every step
//! that can run under a root (k3s from the loopback mirror, PostgreSQL in external mode against a
//! throwaway server, storage), real bind mounts, and a second install on the kept data.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::pg::Pg;
use foreman_box_tests::{artifact, debian_root, foreman_box, run, sha256_hex, Run};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const DATABASES: [&str; 3] = ["foreman", "candlepin", "pulp"];
const STEPS: &str = "preflight,k3s,postgres,storage";
const PASSWORD_FILE: &str = "etc/foreman-box/postgres-admin-password";

/// A k3s release on a loopback mirror, as tests/e2e/k3s.rs serves it.
fn k3s_release() -> Mirror {
    let mirror = Mirror::start();
    let wire = "v1.33.5%2Bk3s1";
    let binary = artifact(200_000, 7);
    mirror.put(
        &format!("/{wire}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(&binary)).into_bytes(),
    );
    mirror.put(&format!("/{wire}/k3s"), binary);
    mirror
}

/// The user's configuration under the root: external PostgreSQL with the admin password in a
/// 0600 file, so that the uninstall script finds the same server the installer used.
fn configure(root: &Path, pg: &Pg, mirror: Option<&Mirror>, password: &str) {
    let dir = root.join("etc/foreman-box");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!(
        "hostname = \"foreman.example.test\"\nnode_ip = \"192.0.2.10\"\n\n[postgres]\nmode = \"external\" # the throwaway server\nadmin_url = '{}'\nadmin_password_file = \"/{PASSWORD_FILE}\"\n",
        pg.admin_url()
    );
    if let Some(m) = mirror {
        text.push_str(&format!("\n[k3s]\nrelease_url = \"{}\"\n", m.url()));
    }
    std::fs::write(dir.join("config.toml"), text).unwrap();
    write_secret(&root.join(PASSWORD_FILE), password);
}

fn write_secret(path: &Path, value: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes()).unwrap();
}

fn install(root: &Path, steps: &str) -> Run {
    run(&mut foreman_box(&[
        "install",
        "--root",
        root.to_str().unwrap(),
        "--only",
        steps,
        "--ignore-preflight",
        "all",
        "--downloads-retries",
        "2",
    ]))
}

fn plan(root: &Path, steps: &str) -> Run {
    run(&mut foreman_box(&[
        "plan",
        "--root",
        root.to_str().unwrap(),
        "--only",
        steps,
        "--ignore-preflight",
        "all",
    ]))
}

fn uninstall(root: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["uninstall", "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&mut foreman_box(&args))
}

fn stored_passwords(root: &Path) -> Vec<String> {
    DATABASES
        .iter()
        .map(|db| {
            std::fs::read_to_string(root.join(format!("etc/foreman-box/secrets/postgres-{db}")))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect()
}

/// Every path under `root`, relative, without descending into `skip` (mounted trees).
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    out
}

fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// Bind mounts made by the test, unmounted whatever happens.
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn bind(&mut self, source: &Path, target: &Path) {
        std::fs::create_dir_all(target).unwrap();
        let out: Run = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output()
            .unwrap()
            .into();
        assert_eq!(
            out.code,
            0,
            "mount --bind (the tests run as root): {}",
            out.all()
        );
        self.0.push(target.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            if mounted(m) {
                let _ = Command::new("umount").arg("-l").arg(m).output();
            }
        }
    }
}

async fn assert_roles_log_in(pg: &Pg, passwords: &[String]) {
    for (db, pw) in DATABASES.iter().zip(passwords) {
        let c = pg
            .connect(db, pw, db)
            .await
            .unwrap_or_else(|e| panic!("role {db} does not accept its stored password: {e}"));
        let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

async fn databases_and_roles(pg: &Pg) -> (i64, i64) {
    let admin = pg.admin().await;
    let names: Vec<String> = DATABASES.iter().map(|s| s.to_string()).collect();
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = ANY($1)",
            &[&names],
        )
        .await
        .unwrap()
        .get(0);
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)",
            &[&names],
        )
        .await
        .unwrap()
        .get(0);
    (dbs, roles)
}

fn assert_no_secret_in(out: &Run, secrets: &[String]) {
    for s in secrets {
        assert!(
            !out.all().contains(s.as_str()),
            "a password leaked:\n{}",
            out.all()
        );
    }
}

#[test]
fn uninstall_keeps_exactly_the_data_and_a_second_install_converges_on_it() {
    // The mirror runs its own runtime: started outside the one that talks to PostgreSQL.
    let mirror = k3s_release();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pg = Pg::start();
    let root = debian_root();
    let r = root.path();
    configure(r, &pg, Some(&mirror), &pg.password);
    let out = install(r, STEPS);
    assert_eq!(out.code, 0, "{}", out.all());
    let passwords = stored_passwords(r);
    assert!(r.join("usr/local/bin/k3s").exists() && r.join("var/lib/foreman-box").exists());
    assert!(std::fs::read_to_string(pg.hba_path())
        .unwrap()
        .contains("# BEGIN foreman-box"));
    let before = tree(r);

    // A volume someone mounted under k3s's data dir, and one kubelet mounted for a pod.
    let theirs = tempfile::tempdir().unwrap();
    std::fs::write(theirs.path().join("precious"), "keep me").unwrap();
    let pods = tempfile::tempdir().unwrap();
    std::fs::write(pods.path().join("pod-data"), "volume source").unwrap();
    let their_mount = r.join("var/lib/rancher/k3s/storage/pvc-theirs");
    let pod_mount = r.join("var/lib/kubelet/pods/0123/volumes/kubernetes.io~empty-dir/data");
    let mut mounts = Mounts(Vec::new());
    mounts.bind(theirs.path(), &their_mount);
    mounts.bind(pods.path(), &pod_mount);

    let out = uninstall(r, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut secrets = passwords.clone();
    secrets.push(pg.password.clone());
    assert_no_secret_in(&out, &secrets);
    assert!(
        out.stdout.contains(&format!(
            "to remove them too: foreman-box-uninstall.sh --root {} --purge",
            r.display()
        )),
        "says what is kept and how to remove it: {}",
        out.all()
    );

    // Exactly the kept data: /etc/foreman-box, the Pulp tree, and their mounted volume.
    let kept = |p: &Path| {
        [
            "etc/os-release",
            "etc/foreman-box",
            "var/lib/pulp",
            "var/log",
        ]
        .iter()
        .any(|k| p.starts_with(k))
    };
    let mut expected: BTreeSet<PathBuf> = before.iter().filter(|p| kept(p)).cloned().collect();
    // The system's own directories the installer wrote into stay, empty.
    for p in [
        "etc/systemd",
        "etc/systemd/system",
        "usr",
        "usr/local",
        "usr/local/bin",
    ] {
        if before.contains(Path::new(p)) {
            expected.insert(p.into());
        }
    }
    for p in [
        "etc",
        "var",
        "var/lib",
        "var/lib/rancher",
        "var/lib/rancher/k3s",
        "var/lib/rancher/k3s/storage",
        "var/lib/rancher/k3s/storage/pvc-theirs",
        "var/lib/rancher/k3s/storage/pvc-theirs/precious",
    ] {
        expected.insert(p.into());
    }
    assert_eq!(tree(r), expected, "{}", out.all());
    assert!(
        mounted(&their_mount),
        "a mount it did not make stays mounted"
    );
    assert_eq!(
        std::fs::read_to_string(their_mount.join("precious")).unwrap(),
        "keep me"
    );
    assert!(
        !mounted(&pod_mount),
        "kubelet's pod volume is unmounted, as k3s-killall.sh does"
    );
    assert_eq!(
        std::fs::read_to_string(pods.path().join("pod-data")).unwrap(),
        "volume source",
        "unmounted before removal: the volume's source is untouched"
    );
    assert!(
        !std::fs::read_to_string(pg.hba_path())
            .unwrap()
            .contains("foreman-box"),
        "the managed pg_hba.conf block is gone"
    );
    assert_eq!(
        rt.block_on(databases_and_roles(&pg)),
        (3, 3),
        "databases and roles are kept"
    );
    rt.block_on(assert_roles_log_in(&pg, &passwords));

    // Twice, now as the standalone script under bash (no binary involved): nothing changes.
    let again: Run = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/uninstall.sh"))
        .arg("--root")
        .arg(r)
        .output()
        .unwrap()
        .into();
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(tree(r), expected);
    drop(mounts);

    // A second install converges on the kept data: same passwords, roles still accept them.
    let out = install(r, STEPS);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        stored_passwords(r),
        passwords,
        "the stored passwords are reused"
    );
    rt.block_on(assert_roles_log_in(&pg, &passwords));
    let p = plan(r, STEPS);
    assert_eq!(p.code, 0, "converged: nothing left to change\n{}", p.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_purge_drops_the_databases_and_roles_and_removes_the_kept_data() {
    let pg = Pg::start();
    let root = debian_root();
    let r = root.path();
    configure(r, &pg, None, &pg.password);
    let auto_conf = pg.data().join("postgresql.auto.conf");
    let theirs = std::fs::read_to_string(&auto_conf).unwrap();
    let out = install(r, "postgres,storage");
    assert_eq!(out.code, 0, "{}", out.all());
    assert_ne!(
        std::fs::read_to_string(&auto_conf).unwrap(),
        theirs,
        "the install tuned nothing"
    );
    let passwords = stored_passwords(r);
    assert_eq!(databases_and_roles(&pg).await, (3, 3));

    // The server refuses the admin: nothing is dropped and nothing kept is removed.
    write_secret(&r.join(PASSWORD_FILE), "not-the-admin-password");
    let out = uninstall(r, &["--purge"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("cannot be dropped; nothing kept was removed"),
        "{}",
        out.all()
    );
    assert_no_secret_in(&out, std::slice::from_ref(&pg.password));
    assert!(r.join("etc/foreman-box/secrets").is_dir() && r.join("var/lib/pulp").is_dir());
    assert_eq!(databases_and_roles(&pg).await, (3, 3));
    assert_roles_log_in(&pg, &passwords).await;

    write_secret(&r.join(PASSWORD_FILE), &pg.password);
    let out = uninstall(r, &["--purge"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut secrets = passwords.clone();
    secrets.push(pg.password.clone());
    assert_no_secret_in(&out, &secrets);
    assert_eq!(databases_and_roles(&pg).await, (0, 0), "{}", out.all());
    assert_eq!(
        tree(r),
        // The host's own /var/log stays; foreman-box's run logs go with --purge.
        ["etc", "etc/os-release", "var", "var/lib", "var/log"]
            .iter()
            .map(PathBuf::from)
            .collect::<BTreeSet<_>>()
    );
    assert!(!std::fs::read_to_string(pg.hba_path())
        .unwrap()
        .contains("foreman-box"));
    // The server it found, managed because it is on localhost: its settings are its own again.
    assert_eq!(std::fs::read_to_string(&auto_conf).unwrap(), theirs);
    assert!(
        out.stdout
            .contains("put back PostgreSQL's settings from before foreman-box"),
        "{}",
        out.all()
    );

    // Twice: the configuration is gone now, and there is nothing left to remove.
    let again = uninstall(r, &["--purge"]);
    assert_eq!(again.code, 0, "{}", again.all());
}

/// A machine of `release` with a stand-in k3s release on a loopback mirror, and the one
/// `install` line the booted scenarios run (the installed binary is refreshed first, as
/// uninstall removes it).
struct Booted {
    m: foreman_box_tests::nspawn::Machine,
    url: String,
    _mirror: Mirror,
}

impl Booted {
    fn boot(release: foreman_box_tests::nspawn::Debian, name: &str) -> Booted {
        let mirror = Mirror::start();
        let standin = std::fs::read(env!("CARGO_BIN_EXE_k3s-standin")).unwrap();
        let wire = "v1.33.5%2Bk3s1";
        mirror.put(
            &format!("/{wire}/sha256sum-amd64.txt"),
            format!("{}  k3s\n", sha256_hex(&standin)).into_bytes(),
        );
        mirror.put(&format!("/{wire}/k3s"), standin);
        let m = foreman_box_tests::nspawn::Machine::boot(release, name)
            .unwrap_or_else(|e| panic!("cannot boot Debian {}: {e}", release.version()));
        std::fs::write(m.path("/etc/k3s-standin.conf"), "ready_after_secs=2\n").unwrap();
        Booted {
            m,
            url: mirror.url(),
            _mirror: mirror,
        }
    }

    fn install(&self, steps: &str, extra: &[&str]) {
        self.m.install_file(
            foreman_box_tests::binary(),
            "/usr/local/bin/foreman-box",
            0o755,
        );
        let mut argv = vec![
            "foreman-box",
            "install",
            "--only",
            steps,
            "--ignore-preflight",
            "all",
            "--hostname",
            "foreman.example.test",
            "--k3s-release-url",
            &self.url,
            "--k3s-ready-timeout",
            "60",
        ];
        argv.extend_from_slice(extra);
        let r = self.m.exec(&argv, &[], None);
        assert_eq!(r.code, 0, "install:\n{}", r.all());
    }

    /// The standalone script, as install.sh puts it.
    fn uninstall_sh(&self, args: &[&str]) -> Run {
        self.m.install_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/uninstall.sh"),
            "/usr/local/bin/foreman-box-uninstall.sh",
            0o755,
        );
        let mut argv = vec!["foreman-box-uninstall.sh"];
        argv.extend_from_slice(args);
        let out = self.m.exec(&argv, &[], None);
        assert_eq!(
            out.code,
            0,
            "foreman-box-uninstall.sh {args:?}:\n{}",
            out.all()
        );
        out
    }

    /// One value from the local server, as its superuser.
    fn psql(&self, sql: &str) -> String {
        self.m
            .ok(&format!("runuser -u postgres -- psql -tAc \"{sql}\""))
            .trim()
            .to_string()
    }
}

const OUR_DATABASES: &str =
    "SELECT count(*) FROM pg_database WHERE datname IN ('foreman','candlepin','pulp')";
const OUR_ROLES: &str = "SELECT count(*) FROM pg_roles WHERE rolname IN ('foreman','candlepin','pulp','foreman_box_admin')";
const RECORD: &str = "/etc/foreman-box/postgres-original.toml";

/// On a booted Debian host (systemd-nspawn, see `foreman_box_tests::nspawn`), no `--root`, with
/// the PostgreSQL server foreman-box installed from packages: the k3s unit is stopped, disabled
/// and removed; the server keeps running with the databases, loses the managed pg_hba block; a
/// second install converges; `--purge` removes the server's packages with its data.
#[test]
fn uninstall_keeps_the_postgres_server_it_installed_running_with_data_and_purge_removes_it_on_debian12(
) {
    uninstall_keeps_the_postgres_server_it_installed_and_purge_removes_it(
        foreman_box_tests::nspawn::Debian::Bookworm,
    );
}

#[test]
fn uninstall_keeps_the_postgres_server_it_installed_running_with_data_and_purge_removes_it_on_debian13(
) {
    uninstall_keeps_the_postgres_server_it_installed_and_purge_removes_it(
        foreman_box_tests::nspawn::Debian::Trixie,
    );
}

fn uninstall_keeps_the_postgres_server_it_installed_and_purge_removes_it(
    release: foreman_box_tests::nspawn::Debian,
) {
    let b = Booted::boot(release, "fb-uninstall");
    let m = &b.m;
    assert!(!m.has_package("postgresql"), "a fresh host has no server");
    let installed = || -> BTreeSet<String> {
        m.ok("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" { print $2 }'")
            .lines()
            .map(str::to_string)
            .collect()
    };
    let before = installed();

    b.install("preflight,k3s,postgres", &[]);
    assert_eq!(m.ok("systemctl is-active k3s").trim(), "active");
    let record = std::fs::read_to_string(m.path(RECORD)).unwrap();
    assert_eq!(foreman_box_tests::mode(&m.path(RECORD)), 0o600);
    let parsed: toml::Table = record.parse().unwrap();
    assert_eq!(parsed["server"].as_str(), Some("installed"), "{record}");
    let cluster = m.postgres_cluster();
    assert_eq!(cluster.major, release.postgresql_major());
    let hba = b.psql("SHOW hba_file");
    assert!(std::fs::read_to_string(m.path(&hba))
        .unwrap()
        .contains("# BEGIN foreman-box"));

    let out = m.exec(&["foreman-box", "uninstall"], &[], None);
    assert_eq!(out.code, 0, "uninstall:\n{}", out.all());
    assert_ne!(m.sh("systemctl is-active k3s").stdout.trim(), "active");
    for gone in [
        "/usr/local/bin/k3s",
        "/usr/local/bin/kubectl",
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s.service.env",
        "/etc/rancher/k3s",
        "/var/lib/rancher/k3s",
        "/var/lib/foreman-box",
        "/usr/local/bin/foreman-box",
    ] {
        assert!(
            !m.path(gone).exists() && m.path(gone).symlink_metadata().is_err(),
            "{gone} is still there"
        );
    }
    assert!(!std::fs::read_to_string(m.path(&hba))
        .unwrap()
        .contains("foreman-box"));
    // Without --purge the server foreman-box installed stays, running, with the data.
    assert!(m.has_package("postgresql"));
    assert_eq!(
        m.ok(&format!("systemctl is-active {}", cluster.unit()))
            .trim(),
        "active"
    );
    assert_eq!(b.psql(OUR_DATABASES), "3", "the databases are kept");
    assert!(m.path("/etc/foreman-box/secrets/postgres-foreman").exists());
    assert_eq!(
        std::fs::read_to_string(m.path(RECORD)).unwrap(),
        record,
        "the record is kept"
    );
    assert!(
        out.stdout
            .contains("to remove them too: foreman-box-uninstall.sh --purge"),
        "{}",
        out.all()
    );

    // Reinstall on the kept data: the stored passwords still log in; the record stays the first.
    b.install("preflight,k3s,postgres", &[]);
    assert_eq!(std::fs::read_to_string(m.path(RECORD)).unwrap(), record);
    let password =
        std::fs::read_to_string(m.path("/etc/foreman-box/secrets/postgres-foreman")).unwrap();
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
        &[("PGPASSWORD", password.trim())],
        None,
    );
    assert_eq!(login.code, 0, "{}", login.all());

    // --purge: the server goes, with its data and what apt pulled in for it alone.
    let out = b.uninstall_sh(&["--purge"]);
    assert!(!out.all().contains(password.trim()));
    assert!(
        out.stdout
            .contains("removed the PostgreSQL server and its data"),
        "{}",
        out.all()
    );
    let after = installed();
    let brought: Vec<&String> = after.difference(&before).collect();
    assert!(
        !brought
            .iter()
            .any(|p| p.starts_with("postgresql") || p.starts_with("libpq")),
        "packages of the server are still there: {brought:?}\n{}",
        out.all()
    );
    // What else came with it is gone as far as apt finds nothing else wants it (perl and locales
    // stay when other packages recommend them): nothing is left unneeded.
    assert_eq!(
        m.ok("apt-get -s autoremove | awk '$1 == \"Remv\" { print $2 }'")
            .trim(),
        "",
        "--purge left packages nothing needs"
    );
    assert_eq!(
        before.difference(&after).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "--purge removed packages the host had before"
    );
    for gone in [
        "/var/lib/postgresql",
        "/etc/postgresql",
        "/etc/foreman-box",
        "/usr/local/bin/foreman-box-uninstall.sh",
    ] {
        assert!(!m.path(gone).exists(), "--purge kept {gone}");
    }
    assert_eq!(
        m.sh("pgrep -x postgres").code,
        1,
        "a postgres process survived"
    );
}

/// A PostgreSQL server that was there before foreman-box, with settings of its own (some in
/// postgresql.auto.conf, listen_addresses from postgresql.conf's default) and a pg_hba.conf of
/// its own: uninstall keeps what the install tuned; `--purge` drops our roles and databases and
/// puts every setting back as it was, and the server keeps running, still installed.
#[test]
fn purge_puts_back_the_settings_of_a_postgres_server_it_found_on_debian12() {
    purge_puts_back_the_settings_of_a_postgres_server_it_found(
        foreman_box_tests::nspawn::Debian::Bookworm,
    );
}

#[test]
fn purge_puts_back_the_settings_of_a_postgres_server_it_found_on_debian13() {
    purge_puts_back_the_settings_of_a_postgres_server_it_found(
        foreman_box_tests::nspawn::Debian::Trixie,
    );
}

fn purge_puts_back_the_settings_of_a_postgres_server_it_found(
    release: foreman_box_tests::nspawn::Debian,
) {
    let b = Booted::boot(release, "fb-pgfound");
    let m = &b.m;
    // The person's server: installed, tuned by them, restarted into their values.
    m.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql");
    b.psql("ALTER SYSTEM SET max_connections = 120");
    b.psql("ALTER SYSTEM SET shared_buffers = '48MB'");
    let cluster = m.postgres_cluster();
    m.ok(&format!("systemctl restart {}", cluster.unit()));
    let auto_conf = format!("{}/postgresql.auto.conf", cluster.data_directory);
    let theirs_auto = std::fs::read_to_string(m.path(&auto_conf)).unwrap();
    let hba = b.psql("SHOW hba_file");
    let theirs_hba = std::fs::read_to_string(m.path(&hba)).unwrap();
    let show = |b: &Booted| {
        ["listen_addresses", "max_connections", "shared_buffers"]
            .map(|s| b.psql(&format!("SHOW {s}")))
    };
    let theirs = show(&b);
    assert_eq!(theirs, ["localhost", "120", "48MB"]);

    b.install("preflight,postgres", &[]);
    let record = std::fs::read_to_string(m.path(RECORD)).unwrap();
    assert_eq!(foreman_box_tests::mode(&m.path(RECORD)), 0o600);
    let parsed: toml::Table = record.parse().unwrap();
    assert_eq!(parsed["server"].as_str(), Some("found"), "{record}");
    let tuned = show(&b);
    assert_ne!(
        tuned[1], theirs[1],
        "the install did not tune max_connections"
    );
    assert_ne!(
        tuned[2], theirs[2],
        "the install did not tune shared_buffers"
    );

    // A plain uninstall keeps the tuning (a reinstall reuses it) and says so; a reinstall with
    // other settings leaves the record as the first run wrote it.
    let out = b.uninstall_sh(&[]);
    assert!(
        out.stdout
            .contains("the PostgreSQL settings foreman-box tuned"),
        "{}",
        out.all()
    );
    assert_eq!(show(&b), tuned);
    b.install("preflight,postgres", &["--dynflow-workers", "8"]);
    assert_eq!(
        std::fs::read_to_string(m.path(RECORD)).unwrap(),
        record,
        "a later run rewrote the record"
    );
    assert_ne!(show(&b)[1], theirs[1]);

    b.uninstall_sh(&["--purge"]);
    assert_eq!(show(&b), theirs, "--purge did not put the settings back");
    assert_eq!(
        std::fs::read_to_string(m.path(&auto_conf)).unwrap(),
        theirs_auto,
        "postgresql.auto.conf differs from the person's"
    );
    assert_eq!(
        std::fs::read_to_string(m.path(&hba)).unwrap(),
        theirs_hba,
        "pg_hba.conf differs from the person's"
    );
    assert_eq!(b.psql(OUR_DATABASES), "0");
    assert_eq!(b.psql(OUR_ROLES), "0");
    assert!(m.has_package("postgresql"), "--purge removed their server");
    assert_eq!(
        m.ok(&format!("systemctl is-active {}", cluster.unit()))
            .trim(),
        "active"
    );
    assert!(!m.path("/etc/foreman-box").exists());
}

#[test]
fn uninstall_removes_the_bash_completion_and_man_page_install_sh_wrote_under_the_root() {
    // Where install.sh writes them by default, and in the directories its variables choose.
    let completion = "usr/share/bash-completion/completions/foreman-box";
    let man = "usr/local/share/man/man1/foreman-box.1";
    let theirs = "usr/share/bash-completion/completions/git";
    for (vars, completion, man) in [
        (None, completion, man),
        (
            Some(("/opt/completions", "/opt/man1")),
            "opt/completions/foreman-box",
            "opt/man1/foreman-box.1",
        ),
    ] {
        let root = debian_root();
        let r = root.path();
        for f in [completion, man, theirs, "usr/local/bin/foreman-box"] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), f).unwrap();
        }
        let mut cmd = foreman_box(&["uninstall", "--root", r.to_str().unwrap()]);
        if let Some((c, m)) = vars {
            cmd.env("FOREMAN_BOX_COMPLETION_DIR", c)
                .env("FOREMAN_BOX_MAN_DIR", m);
        }
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{}", out.all());
        for gone in [completion, man, "usr/local/bin/foreman-box"] {
            assert!(
                !r.join(gone).exists(),
                "{gone} is still there: {}",
                out.all()
            );
        }
        assert!(
            r.join(theirs).exists(),
            "another program's completion stays"
        );
        assert!(
            r.join(man).parent().unwrap().is_dir(),
            "the system's directory stays"
        );
    }
}
