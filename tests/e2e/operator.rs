//! The operator's command-line face: `operator render` is the pure function the controller
//! applies, and `render` prints what an existing cluster needs.

use foreman_box_tests::{foreman_box, kubernetes_validate, run};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../operator/tests/golden")
        .join(name)
}

#[test]
fn operator_render_prints_the_golden_objects_for_the_default_resource() {
    let out = run(&mut foreman_box(&[
        "operator",
        "render",
        golden("default.cr.yaml").to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout,
        std::fs::read_to_string(golden("default.yaml")).unwrap()
    );
}

#[test]
fn operator_render_of_a_bad_resource_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {name: f}\nspec: {dynflow_workers: many}\n").unwrap();
    let out = run(&mut foreman_box(&[
        "operator",
        "render",
        bad.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("bad.yaml") && out.stderr.contains("dynflow_workers"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("bad.yaml").count(),
        1,
        "the error is printed once:\n{}",
        out.stderr
    );
}

#[test]
fn render_for_an_existing_cluster_validates() {
    let out = run(&mut foreman_box(&[
        "render",
        "--hostname",
        "foreman.example.com",
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("kind: CustomResourceDefinition"));
    assert!(out.stdout.contains("kind: Role\n"));
    assert!(
        !out.stdout.contains("ClusterRole"),
        "the operator needs only namespaced rights"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let v = kubernetes_validate(&[file]);
    assert_eq!(v.code, 0, "{}", v.all());
}
