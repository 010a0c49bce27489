//! The storage step in a temp-dir root: Pulp's tree, its modes and owner, the PV and PVC.

use foreman_box_tests::{foreman_box, kubernetes_validate, mode, run, tree_mtimes};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn storage_cmd(verb: &str, root: &Path) -> std::process::Command {
    foreman_box(&[
        verb,
        "--root",
        root.to_str().unwrap(),
        "--only",
        "storage",
        "--pulp-dir",
        "/srv/pulp",
    ])
}

#[test]
fn storage_tree_modes_owner_and_prebound_volume() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&mut storage_cmd("install", root.path()));
    assert_eq!(out.code, 0, "{}", out.all());
    for sub in [
        "",
        "media",
        "tmp",
        "assets",
        "imports",
        "exports",
        "sync_imports",
    ] {
        let dir = root.path().join("srv/pulp").join(sub);
        assert!(dir.is_dir(), "{}", dir.display());
        assert_eq!(mode(&dir), 0o750, "{}", dir.display());
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (700, 700),
            "{} owned by the Pulp uid",
            dir.display()
        );
    }
    let manifest = root
        .path()
        .join("var/lib/rancher/k3s/server/manifests/foreman-box-storage.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    for needle in [
        "kind: PersistentVolume",
        "path: /srv/pulp",
        "persistentVolumeReclaimPolicy: Retain",
        "volumeName: foreman-pulp-storage",
        "name: pulp-storage",
        "kubernetes.io/hostname",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let v = kubernetes_validate(&[manifest]);
    assert_eq!(v.code, 0, "kubernetes-validate --strict: {}", v.all());
}

#[test]
fn storage_rerun_is_a_noop_and_repairs_a_wrong_mode() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(run(&mut storage_cmd("install", root.path())).code, 0);
    let before = tree_mtimes(root.path());
    let again = run(&mut storage_cmd("install", root.path()));
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(tree_mtimes(root.path()), before);
    assert_eq!(run(&mut storage_cmd("plan", root.path())).code, 0);

    let media = root.path().join("srv/pulp/media");
    std::fs::set_permissions(&media, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let plan = run(&mut storage_cmd("plan", root.path()));
    assert_eq!(plan.code, 2);
    assert!(
        plan.stdout
            .contains("chmod 0750 /srv/pulp/media (mode 0777)"),
        "{}",
        plan.stdout
    );
    assert_eq!(run(&mut storage_cmd("install", root.path())).code, 0);
    assert_eq!(mode(&media), 0o750);
}
