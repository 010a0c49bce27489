//! The postgres step in external mode against a real, throwaway PostgreSQL server.

use foreman_box_tests::pg::Pg;
use foreman_box_tests::{
    debian_root, foreman_box, kubernetes_validate, mode, run, tree_mtimes, Run,
};
use std::path::Path;

const DATABASES: [&str; 3] = ["foreman", "candlepin", "pulp"];

fn postgres_cmd(verb: &str, root: &Path, pg: &Pg, password: &str) -> std::process::Command {
    let mut cmd = foreman_box(&[
        verb,
        "--root",
        root.to_str().unwrap(),
        "--only",
        "postgres",
        "--postgres-mode",
        "external",
        "--postgres-admin-url",
        &pg.admin_url(),
        "--node-ip",
        "192.0.2.10",
    ]);
    // The admin password comes from the environment, never argv.
    cmd.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", password);
    cmd
}

fn install(root: &Path, pg: &Pg) -> Run {
    run(&mut postgres_cmd("install", root, pg, &pg.password))
}

fn stored_password(root: &Path, db: &str) -> String {
    let path = root.join(format!("etc/foreman-box/secrets/postgres-{db}"));
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn assert_no_secret_in(out: &Run, secrets: &[String]) {
    for s in secrets {
        assert!(
            !out.all().contains(s.as_str()),
            "a password leaked into the output:\n{}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_roles_log_in_over_tcp_with_stored_scram_passwords() {
    let pg = Pg::start();
    let root = debian_root();
    let out = install(root.path(), &pg);
    assert_eq!(out.code, 0, "{}", out.all());

    let admin = pg.admin().await;
    let mut secrets = vec![pg.password.clone()];
    for db in DATABASES {
        let password = stored_password(root.path(), db);
        assert_eq!(password.len(), 32);
        secrets.push(password.clone());
        let client = pg
            .connect(db, &password, db)
            .await
            .unwrap_or_else(|e| panic!("{db} cannot log in: {e}"));
        let who: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, db);
        let row = admin
            .query_one("SELECT rolpassword, pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text FROM pg_authid a, pg_database d WHERE a.rolname = $1 AND d.datname = $1", &[&db])
            .await
            .unwrap();
        let (verifier, owner, encoding): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        assert!(
            verifier.starts_with("SCRAM-SHA-256$"),
            "{db} is stored as {verifier}"
        );
        assert_eq!(owner, db);
        assert_eq!(encoding, "UTF8");
    }
    assert_no_secret_in(&out, &secrets);
    let plan = run(&mut postgres_cmd("plan", root.path(), &pg, &pg.password));
    assert_no_secret_in(&plan, &secrets);

    // Access rules: one managed block, first in the file, scram only.
    let hba = std::fs::read_to_string(pg.hba_path()).unwrap();
    assert!(hba.starts_with("# BEGIN foreman-box"), "{hba}");
    assert!(
        hba.contains("host    foreman     foreman           10.42.0.0/16    scram-sha-256"),
        "{hba}"
    );
    assert!(
        hba.contains("host    foreman,candlepin,pulp all 0.0.0.0/0 reject"),
        "{hba}"
    );
    let rules: i64 = admin
        .query_one("SELECT count(*) FROM pg_hba_file_rules WHERE '10.42.0.0' = ANY(ARRAY[address]) OR address = '10.42.0.0'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rules, 3, "the server loaded the pod-network rules");
    let listen: String = admin
        .query_one("SELECT setting FROM pg_file_settings WHERE name = 'listen_addresses' ORDER BY seqno DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "localhost,192.0.2.10");

    // What the cluster gets: a Service, an EndpointSlice to the node, one Secret per database.
    let manifest = root
        .path()
        .join("var/lib/rancher/k3s/server/manifests/foreman-box-postgres.yaml");
    assert_eq!(mode(&manifest), 0o600);
    let text = std::fs::read_to_string(&manifest).unwrap();
    for needle in [
        "kind: EndpointSlice",
        "- 192.0.2.10",
        "name: foreman-db",
        "name: candlepin-db",
        "name: pulp-db",
        "kubernetes.io/service-name: postgres",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(
        text.contains(&stored_password(root.path(), "pulp")),
        "the Secret carries the password"
    );
    let v = kubernetes_validate(&[
        manifest,
        root.path()
            .join("var/lib/rancher/k3s/server/manifests/foreman-box-00-namespace.yaml"),
    ]);
    assert_eq!(v.code, 0, "kubernetes-validate --strict: {}", v.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_rerun_is_a_noop_with_the_same_passwords_and_one_hba_block() {
    let pg = Pg::start();
    let root = debian_root();
    assert_eq!(install(root.path(), &pg).code, 0);
    let first: Vec<String> = DATABASES
        .iter()
        .map(|d| stored_password(root.path(), d))
        .collect();
    let files = tree_mtimes(root.path());
    for _ in 0..2 {
        let out = install(root.path(), &pg);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            out.stdout.contains("up to date, nothing changed"),
            "{}",
            out.all()
        );
    }
    let again: Vec<String> = DATABASES
        .iter()
        .map(|d| stored_password(root.path(), d))
        .collect();
    assert_eq!(first, again, "passwords were rotated");
    assert_eq!(tree_mtimes(root.path()), files, "a re-run rewrote files");
    let hba = std::fs::read_to_string(pg.hba_path()).unwrap();
    assert_eq!(hba.matches("# BEGIN foreman-box").count(), 1, "{hba}");
    let plan = run(&mut postgres_cmd("plan", root.path(), &pg, &pg.password));
    assert_eq!(plan.code, 0, "{}", plan.all());
    for (db, pw) in DATABASES.iter().zip(&again) {
        pg.connect(db, pw, db).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_wrong_admin_password_is_a_clear_error_and_changes_nothing() {
    let pg = Pg::start();
    let root = debian_root();
    let hba = std::fs::read_to_string(pg.hba_path()).unwrap();
    let before = tree_mtimes(root.path());
    let out = run(&mut postgres_cmd(
        "install",
        root.path(),
        &pg,
        "not-the-password",
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains(&format!("cannot log in to PostgreSQL at 127.0.0.1:{}: the server refused the password for `postgres`", pg.port)), "{}", out.stderr);
    assert!(out.stderr.contains("help:"), "{}", out.stderr);
    assert!(!out.all().contains("not-the-password"));
    assert_eq!(tree_mtimes(root.path()), before);
    assert_eq!(std::fs::read_to_string(pg.hba_path()).unwrap(), hba);
}

#[test]
fn postgres_unreachable_server_is_a_clear_error() {
    let root = debian_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(foreman_box(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "postgres",
        "--postgres-mode",
        "external",
        "--postgres-admin-url",
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    ])
    .env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", "x"));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
}

#[test]
fn postgres_external_without_admin_password_says_where_to_put_it() {
    let root = debian_root();
    let out = run(&mut foreman_box(&[
        "plan",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "postgres",
        "--postgres-mode",
        "external",
        "--postgres-admin-url",
        "postgres://postgres@127.0.0.1:5/postgres",
    ]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_existing_role_with_unknown_password_is_refused_without_damage() {
    let pg = Pg::start();
    let admin = pg.admin().await;
    admin
        .batch_execute("CREATE ROLE candlepin LOGIN PASSWORD 'theirs'")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE candlepin OWNER candlepin")
        .await
        .unwrap();
    let theirs = pg
        .connect("candlepin", "theirs", "candlepin")
        .await
        .unwrap();
    theirs
        .batch_execute("CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)")
        .await
        .unwrap();
    let root = debian_root();

    let out = install(root.path(), &pg);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("role `candlepin` already exists"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("/etc/foreman-box/secrets/postgres-candlepin"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Nothing was changed"), "{}", out.stderr);

    // Nothing was changed: their password, their data, and no half-done roles of ours.
    let theirs = pg
        .connect("candlepin", "theirs", "candlepin")
        .await
        .expect("their password still works");
    let x: i32 = theirs
        .query_one("SELECT x FROM precious", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
    let ours: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('foreman', 'pulp')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ours, 0);

    // The way out the message gives: store their password, and the run goes through.
    std::fs::create_dir_all(root.path().join("etc/foreman-box/secrets")).unwrap();
    let secret = root
        .path()
        .join("etc/foreman-box/secrets/postgres-candlepin");
    std::fs::write(&secret, "theirs\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = install(root.path(), &pg);
    assert_eq!(out.code, 0, "{}", out.all());
    pg.connect("candlepin", "theirs", "candlepin")
        .await
        .expect("password kept, not rotated");

    // A stored password that no longer matches is refused too, not overwritten.
    admin
        .batch_execute("ALTER ROLE pulp PASSWORD 'changed-by-hand'")
        .await
        .unwrap();
    let out = install(root.path(), &pg);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("role `pulp`"), "{}", out.stderr);
    assert!(
        out.stderr.contains("password other than the one stored"),
        "{}",
        out.stderr
    );
    pg.connect("pulp", "changed-by-hand", "pulp")
        .await
        .expect("not rotated");
}

#[test]
fn postgres_local_mode_refuses_a_root_run_instead_of_touching_this_machine() {
    let root = debian_root();
    let out = run(&mut foreman_box(&[
        "plan",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "postgres",
    ]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("a --root run must not touch"),
        "{}",
        out.stderr
    );
}

/// A run killed during `CREATE DATABASE` leaves its backend creating the database: the server
/// finishes the statement after the client is gone. The next run sees no database (the row is
/// not committed), and its own `CREATE DATABASE` waits on that row; when the killed run's
/// commits, the next run must converge, not end on PostgreSQL's raw `duplicate key value
/// violates unique constraint "pg_database_datname_index"`. To hold the killed run's statement
/// between its insert and its commit every time, it copies with STRATEGY FILE_COPY, which waits
/// for a checkpoint after inserting its row, while the checkpointer is stopped (SIGSTOP); no
/// other session needs the checkpointer.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_rerun_converges_while_a_killed_runs_create_database_commits() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::time::{Duration, Instant};

    let pg = Pg::start();
    let root = debian_root();
    let out = install(root.path(), &pg);
    assert_eq!(out.code, 0, "{}", out.all());
    let admin = pg.admin().await;
    admin.batch_execute("DROP DATABASE foreman").await.unwrap();

    let checkpointer: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let checkpointer = Pid::from_raw(checkpointer);
    kill(checkpointer, Signal::SIGSTOP).unwrap();
    // Resumed whatever happens, so the server can stop at the end of the test.
    struct Resume(Pid);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
        }
    }
    let resume = Resume(checkpointer);

    // The killed run's statement (its client is gone; the server goes on).
    let killed_run = pg.admin().await;
    let killed_pid: i32 = killed_run
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let creating = tokio::spawn(async move {
        killed_run
            .batch_execute(
                "CREATE DATABASE foreman OWNER foreman ENCODING 'UTF8' TEMPLATE template0 STRATEGY FILE_COPY",
            )
            .await
    });
    let wait_for = |what: &'static str, sql: &'static str| {
        let admin = &admin;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let n: i64 = admin.query_one(sql, &[&killed_pid]).await.unwrap().get(0);
                if n > 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "waited 60s for {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(
        "the killed run's CREATE DATABASE to insert its row and wait for the checkpoint",
        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event LIKE 'Checkpoint%' AND backend_xid IS NOT NULL",
    )
    .await;
    let visible: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'foreman'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "the killed run's row is not committed yet");

    // The next run starts now; its own CREATE DATABASE waits for the killed run's transaction.
    let mut cmd = postgres_cmd("install", root.path(), &pg, &pg.password);
    let rerun = std::thread::spawn(move || run(&mut cmd));
    wait_for(
        "the re-run's CREATE DATABASE to wait on the killed run's row",
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'transactionid' AND NOT l.granted AND a.pid <> $1 \
         AND a.query LIKE 'CREATE DATABASE%'",
    )
    .await;

    // The killed run's statement commits.
    drop(resume);
    creating.await.unwrap().unwrap();
    let out = tokio::task::spawn_blocking(move || rerun.join().unwrap())
        .await
        .unwrap();
    assert!(
        !out.all().contains("duplicate key") && !out.all().contains("pg_database_datname_index"),
        "{}",
        out.all()
    );
    assert_eq!(out.code, 0, "{}", out.all());

    let row = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text FROM pg_database WHERE datname = 'foreman'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("foreman".to_string(), "UTF8".to_string())
    );
    let plan = run(&mut postgres_cmd("plan", root.path(), &pg, &pg.password));
    assert_eq!(
        plan.code,
        0,
        "a converged host plans nothing: {}",
        plan.all()
    );
}
