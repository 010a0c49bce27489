//! Golden tests on the pure function, for the default resource and each plugin combination;
//! every object passes `kubernetes-validate --strict` for the pinned k3s's Kubernetes minor.
//! `UPDATE_GOLDEN=1 cargo test -p foreman-operator` rewrites the files after a deliberate change.

use foreman_operator::read::read_foreman;
use foreman_operator::resources::{desired, to_yaml};
use std::path::PathBuf;

const CASES: &[(&str, bool, bool)] = &[
    ("core", false, false),
    ("katello", true, false),
    ("remote-execution", false, true),
    ("default", true, true),
];

fn resource(katello: bool, rex: bool) -> String {
    format!(
        "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata:\n  name: foreman\n  namespace: foreman\n  uid: 6f1c1e5e-0000-4000-8000-000000000001\nspec:\n  hostname: foreman.example.com\n  dynflow_workers: 2\n  plugins: {{katello: {katello}, remote_execution: {rex}}}\n"
    )
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"))
}

#[test]
fn rendered_objects_match_golden_files() {
    for (name, katello, rex) in CASES {
        let cr = resource(*katello, *rex);
        let yaml = to_yaml(&desired(&read_foreman(name, &cr).unwrap())).unwrap();
        let path = golden(name);
        if std::env::var("UPDATE_GOLDEN").is_ok() {
            std::fs::write(&path, &yaml).unwrap();
            std::fs::write(golden(&format!("{name}.cr")), &cr).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        assert_eq!(
            yaml,
            want,
            "{name}: rendered objects differ from {}",
            path.display()
        );
    }
}

#[test]
fn rendered_objects_pass_kubernetes_validate_strict() {
    let files: Vec<PathBuf> = CASES.iter().map(|(n, _, _)| golden(n)).collect();
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
