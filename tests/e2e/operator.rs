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

/// The Foreman resource in `render`'s output.
fn rendered_foreman(stdout: &str) -> serde_yaml::Value {
    serde_yaml::Deserializer::from_str(stdout)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "Foreman")
        .expect("render prints a Foreman resource")
}

/// `render` reads the configuration as install does (config.toml under --root, then
/// FOREMAN_BOX_* variables, then flags) and prints the resource install would apply, so a
/// cluster set up with it points at the hostname and not at in-cluster names.
#[test]
fn render_takes_the_hostname_and_the_rest_of_the_configuration_as_install_does() {
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc/foreman-box");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("config.toml"),
        "hostname = \"foreman.example.org\"\n[foreman]\ndynflow_workers = 3\nremote_execution = false\n",
    )
    .unwrap();
    let r = root.path().to_str().unwrap();
    let out = run(&mut foreman_box(&["render", "--root", r]));
    assert_eq!(out.code, 0, "{}", out.all());
    let fm = rendered_foreman(&out.stdout);
    assert_eq!(fm["spec"]["hostname"], "foreman.example.org");
    assert_eq!(fm["spec"]["dynflow_workers"], 3);
    assert_eq!(fm["spec"]["plugins"]["remote_execution"], false);
    assert_eq!(fm["spec"]["plugins"]["katello"], true);
    assert_eq!(fm["spec"]["tuning"], "default");

    // A variable wins over the file, a flag over both.
    let out = run(
        foreman_box(&["render", "--root", r, "--hostname", "flag.example.org"])
            .env("FOREMAN_BOX_HOSTNAME", "env.example.org")
            .env("FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS", "4"),
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let fm = rendered_foreman(&out.stdout);
    assert_eq!(fm["spec"]["hostname"], "flag.example.org");
    assert_eq!(fm["spec"]["dynflow_workers"], 4);

    // Bad configuration is refused as install refuses it, naming where it came from.
    let out =
        run(foreman_box(&["render", "--root", r])
            .env("FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS", "many"));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing printed: {}", out.stdout);
}
