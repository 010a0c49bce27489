//! Killed at every host write, then run again: the tree is a clean install's, with no temp file
//! left. The debug build's crash seam (`TEST_FOREMAN_BOX_CRASH_AT_WRITE=N`) aborts the process
//! just before its Nth write, as SIGKILL at that point would.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::pg::Pg;
use foreman_box_tests::{artifact, debian_root, foreman_box, run, sha256_hex, Run};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const CRASH_ENV: &str = "TEST_FOREMAN_BOX_CRASH_AT_WRITE";
/// More writes than any of these steps makes: reaching it means the seam never fired.
const MAX_WRITES: u32 = 80;

/// What a file, folder or link is, for comparing trees.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    /// sha256 of a file, target of a link; None where it legitimately differs between runs.
    content: Option<String>,
}

/// Every entry under `root`; `varies` names the files whose content differs by nature
/// (generated passwords, the lock's PID, the stat stamp's inode and ctime).
fn snapshot(root: &Path, varies: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            // Each run's own log is not host state (the lock is, by presence: see `varies`).
            if rel.starts_with("var/log/foreman-box") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.is_dir() {
                stack.push(path.clone());
                ("dir", None)
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", Some(target.display().to_string()))
            } else if varies(&rel) {
                ("file", None)
            } else {
                ("file", Some(sha256_hex(&std::fs::read(&path).unwrap())))
            };
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: meta.mode() & 0o7777,
                    owner: (meta.uid(), meta.gid()),
                    content,
                },
            );
        }
    }
    out
}

fn temp_files(tree: &BTreeMap<PathBuf, Entry>) -> Vec<&PathBuf> {
    tree.keys()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".tmp") || name.ends_with(".part")
        })
        .collect()
}

/// Runs `install` killed at write 1, 2, ... then again to completion, comparing each result with
/// `reference`; `reset` puts anything outside the root back before each try. Returns how many
/// writes a full install makes.
fn crash_at_every_write(
    install: &dyn Fn(&Path) -> Command,
    reference: &BTreeMap<PathBuf, Entry>,
    varies: &dyn Fn(&Path) -> bool,
    reset: &mut dyn FnMut(),
    check: &mut dyn FnMut(&Path),
) -> u32 {
    for n in 1..=MAX_WRITES {
        reset();
        let root = debian_root();
        let crashed = run(install(root.path()).env(CRASH_ENV, n.to_string()));
        if crashed.code == 0 {
            assert!(n > 1, "the seam never fired: {}", crashed.all());
            return n - 1;
        }
        assert_eq!(
            crashed.code,
            -1,
            "write {n}: the run ended by abort, not an error: {}",
            crashed.all()
        );
        let again: Run = run(&mut install(root.path()));
        assert_eq!(
            again.code,
            0,
            "re-run after a kill at write {n}: {}",
            again.all()
        );
        let tree = snapshot(root.path(), varies);
        assert!(
            temp_files(&tree).is_empty(),
            "kill at write {n} left {:?}",
            temp_files(&tree)
        );
        if &tree != reference {
            let diff: Vec<_> = tree
                .iter()
                .filter(|(p, e)| reference.get(*p) != Some(e))
                .map(|(p, e)| format!("{}: {e:?} (clean: {:?})", p.display(), reference.get(p)))
                .chain(
                    reference
                        .keys()
                        .filter(|p| !tree.contains_key(*p))
                        .map(|p| format!("{}: missing", p.display())),
                )
                .collect();
            panic!(
                "kill at write {n}: the tree differs from a clean install's:\n{}",
                diff.join("\n")
            );
        }
        check(root.path());
    }
    panic!("more than {MAX_WRITES} writes");
}

fn clean_install(
    install: &dyn Fn(&Path) -> Command,
    varies: &dyn Fn(&Path) -> bool,
) -> (tempfile::TempDir, BTreeMap<PathBuf, Entry>) {
    let root = debian_root();
    let out = run(&mut install(root.path()));
    assert_eq!(out.code, 0, "{}", out.all());
    let tree = snapshot(root.path(), varies);
    (root, tree)
}

fn is_lock(p: &Path) -> bool {
    p == Path::new("run/foreman-box.lock")
}

#[test]
fn k3s_killed_at_every_write_converges_to_the_clean_tree() {
    let mirror = Mirror::start();
    let binary = artifact(300_000, 3);
    let wire = "v1.33.5%2Bk3s1";
    mirror.put(
        &format!("/{wire}/sha256sum-amd64.txt"),
        format!("{}  k3s\n", sha256_hex(&binary)).into_bytes(),
    );
    mirror.put(&format!("/{wire}/k3s"), binary);
    let url = mirror.url();
    let install = |root: &Path| {
        let mut cmd = foreman_box(&[
            "install",
            "--root",
            root.to_str().unwrap(),
            "--skip-start",
            "--only",
            "k3s",
            "--hostname",
            "foreman.example.test",
        ]);
        cmd.arg("--k3s-release-url").arg(&url);
        cmd
    };
    let varies = |p: &Path| is_lock(p) || p == Path::new("var/lib/foreman-box/k3s-binary.stamp");
    let (_clean, reference) = clean_install(&install, &varies);
    let writes = crash_at_every_write(&install, &reference, &varies, &mut || {}, &mut |_| {});
    assert!(writes >= 10, "only {writes} writes: is the seam counting?");
}

#[test]
fn storage_killed_at_every_write_converges_to_the_clean_tree() {
    let install = |root: &Path| {
        foreman_box(&[
            "install",
            "--root",
            root.to_str().unwrap(),
            "--only",
            "storage",
            "--pulp-dir",
            "/srv/pulp",
        ])
    };
    let (_clean, reference) = clean_install(&install, &is_lock);
    let writes = crash_at_every_write(&install, &reference, &is_lock, &mut || {}, &mut |_| {});
    assert!(writes >= 7, "only {writes} writes: is the seam counting?");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_killed_at_every_write_converges_to_the_clean_tree() {
    let pg = Pg::start();
    let hba_original = std::fs::read_to_string(pg.hba_path()).unwrap();
    let admin_url = pg.admin_url();
    let password = pg.password.clone();
    let install = |root: &Path| {
        let mut cmd = foreman_box(&[
            "install",
            "--root",
            root.to_str().unwrap(),
            "--only",
            "postgres",
            "--postgres-mode",
            "external",
            "--postgres-admin-url",
            &admin_url,
            "--node-ip",
            "192.0.2.10",
        ]);
        cmd.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", &password);
        cmd
    };
    // Passwords are generated per install: the secrets and the manifest holding them vary.
    let varies = |p: &Path| {
        is_lock(p)
            || p.starts_with("etc/foreman-box/secrets/")
            || p.ends_with("foreman-box-postgres.yaml")
    };
    let handle = tokio::runtime::Handle::current();
    let admin = pg.admin().await;
    let mut reset = || {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for db in ["foreman", "candlepin", "pulp"] {
                    // One statement per call: DROP DATABASE refuses a transaction block.
                    for stmt in [
                        format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
                        format!("DROP ROLE IF EXISTS \"{db}\""),
                    ] {
                        admin.batch_execute(&stmt).await.unwrap();
                    }
                }
                std::fs::write(pg.hba_path(), &hba_original).unwrap();
                admin.batch_execute("ALTER SYSTEM RESET ALL").await.unwrap();
                admin
                    .batch_execute("SELECT pg_reload_conf()")
                    .await
                    .unwrap();
            })
        })
    };
    reset();
    let (_clean, reference) = clean_install(&install, &varies);
    let hba_clean = std::fs::read_to_string(pg.hba_path()).unwrap();
    let mut check = |root: &Path| {
        assert_eq!(
            std::fs::read_to_string(pg.hba_path()).unwrap(),
            hba_clean,
            "pg_hba.conf differs from a clean install's"
        );
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for db in ["foreman", "candlepin", "pulp"] {
                    let stored = std::fs::read_to_string(
                        root.join(format!("etc/foreman-box/secrets/postgres-{db}")),
                    )
                    .unwrap();
                    let manifest = std::fs::read_to_string(
                        root.join("var/lib/rancher/k3s/server/manifests/foreman-box-postgres.yaml"),
                    )
                    .unwrap();
                    assert!(
                        manifest.contains(stored.trim()),
                        "the manifest's Secret for {db} holds the stored password"
                    );
                    pg.connect(db, stored.trim(), db).await.unwrap_or_else(|e| {
                        panic!("{db} cannot log in with its stored password: {e}")
                    });
                }
            })
        })
    };
    let writes = crash_at_every_write(&install, &reference, &varies, &mut reset, &mut check);
    assert!(writes >= 5, "only {writes} writes: is the seam counting?");
}
