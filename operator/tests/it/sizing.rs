//! Sizing as the API server and `operator render` apply it: the CRD's `x-kubernetes-validations`
//! rule, evaluated by a CEL implementation (cel-python) on every profile, plugin combination and
//! worker count, refuses exactly what `operator render` refuses; rendered pods carry the
//! profile's process counts and heap.

use foreman_operator::profile::PROFILES;
use foreman_operator::read::read_foreman;
use foreman_operator::resources::desired;
use foreman_operator::schema::crd_yaml;
use foreman_operator::sizing;
use foreman_operator::ForemanSpec;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Evaluates every rule of the spec's `x-kubernetes-validations` on each `self`, returning per
/// case whether all rules hold and the messageExpression of the first that does not.
const EVALUATE: &str = r#"
import json, sys
import celpy
job = json.load(sys.stdin)
env = celpy.Environment()
rules = [(env.program(env.compile(r["rule"])), env.program(env.compile(r["messageExpression"]))) for r in job["rules"]]
out = []
for case in job["cases"]:
    act = {"self": celpy.json_to_cel(case)}
    verdict = [True, None]
    for rule, message in rules:
        if not bool(rule.evaluate(act)):
            verdict = [False, str(message.evaluate(act))]
            break
    out.append(verdict)
json.dump(out, sys.stdout)
"#;

fn spec_rules() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"]
        .clone()
}

fn evaluate(cases: &[Value]) -> Vec<(bool, Option<String>)> {
    let mut child = Command::new("python3")
        .args(["-c", EVALUATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs cel-python for it)");
    let job = json!({"rules": spec_rules(), "cases": cases});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cel-python failed (scripts/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<(bool, Option<String>)>>(&out.stdout).unwrap()
}

fn resource(spec: &Value) -> String {
    format!(
        "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman}}\nspec: {spec}\n"
    )
}

#[test]
fn crd_rule_refuses_exactly_what_operator_render_refuses() {
    assert!(
        spec_rules().as_array().is_some_and(|r| !r.is_empty()),
        "the CRD carries no x-kubernetes-validations on spec"
    );
    // Every profile and plugin combination with the worker counts around its bound, as the
    // API server sees a resource after defaulting; and a few partial ones (the rule must hold
    // without defaults too). cel-python takes ~10 ms a rule, so not all 32 counts.
    let mut cases = Vec::new();
    for p in PROFILES {
        for (katello, rex) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut spec: ForemanSpec = serde_json::from_value(json!({"tuning": p.tuning.name(), "plugins": {"katello": katello, "remote_execution": rex}})).unwrap();
            spec.dynflow_workers = 1;
            let bound = sizing::profile_bound(&spec);
            let mut counts = vec![1, 2, bound.max(1), bound + 1, 32];
            counts.sort();
            counts.dedup();
            for w in counts.into_iter().filter(|w| (1..=32).contains(w)) {
                cases.push(json!({
                    "tuning": p.tuning.name(), "dynflow_workers": w,
                    "plugins": {"katello": katello, "remote_execution": rex},
                }));
            }
        }
    }
    cases.extend([
        json!({}),
        json!({"dynflow_workers": 9, "plugins": {"katello": true}}),
        json!({"tuning": "development", "plugins": {"remote_execution": true}}),
        json!({"tuning": "medium", "dynflow_workers": 12, "plugins": {"katello": true}}),
    ]);
    let verdicts = evaluate(&cases);
    assert_eq!(verdicts.len(), cases.len());
    let mut refused = 0;
    for (case, (cel_ok, message)) in cases.iter().zip(verdicts) {
        let render = read_foreman("case.yaml", &resource(case));
        assert_eq!(
            cel_ok,
            render.is_ok(),
            "{case}: CEL says {cel_ok} ({message:?}), operator render says {:?}",
            render.as_ref().err().map(ToString::to_string)
        );
        if !cel_ok {
            refused += 1;
            let spec: ForemanSpec = serde_json::from_value(case.clone()).unwrap();
            let message = message.unwrap();
            let bound = sizing::profile_bound(&spec);
            assert!(
                message.starts_with(&format!(
                    "spec.dynflow_workers is {}: a host of the {} tuning profile schedules at most {bound} ",
                    spec.dynflow_workers,
                    spec.tuning.name()
                )),
                "{message}"
            );
            let err = render.unwrap_err().to_string();
            assert!(
                err.contains("`spec.dynflow_workers` is") && err.contains("help: "),
                "{err}"
            );
        }
    }
    // Both verdicts occur: the sweep is not vacuous.
    assert!(
        refused > 20 && refused < cases.len() - 20,
        "{refused} of {}",
        cases.len()
    );
}

#[test]
fn operator_render_refuses_32_workers_on_the_default_profile_naming_the_numbers() {
    let err = read_foreman(
        "big.yaml",
        &resource(
            &json!({"dynflow_workers": 32, "plugins": {"katello": true, "remote_execution": true}}),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("big.yaml: `spec.dynflow_workers` is 32: Foreman with Katello and Remote Execution with 32 Dynflow workers requests 44.7 GiB and 9.1 CPU, more than the default tuning profile's host (4 cores, 20.0 GiB) schedules next to PostgreSQL and k3s; at most 6 fit\nhelp: lower spec.dynflow_workers, or set spec.tuning to a larger profile (large, extra-large, extra-extra-large)"), "{err}");
    let large = read_foreman(
        "large.yaml",
        &resource(
            &json!({"tuning": "large", "dynflow_workers": 32, "plugins": {"katello": true, "remote_execution": true}}),
        ),
    );
    assert!(large.is_ok(), "{:?}", large.err());
}

#[test]
fn zero_dynflow_workers_and_unknown_profiles_are_refused() {
    let zero = read_foreman("zero.yaml", &resource(&json!({"dynflow_workers": 0})))
        .unwrap_err()
        .to_string();
    assert!(
        zero.contains("`spec.dynflow_workers` is 0, outside 1..=32"),
        "{zero}"
    );
    let huge = read_foreman("huge.yaml", &resource(&json!({"tuning": "huge"})))
        .unwrap_err()
        .to_string();
    assert!(
        huge.contains("spec.tuning") && huge.contains("extra-extra-large"),
        "{huge}"
    );
}

/// (Deployment, container, env var or "replicas", the value for the default and the large
/// profile).
#[test]
fn pods_carry_the_profiles_process_counts_and_heap() {
    let render = |tuning: &str| {
        desired(
            &read_foreman(
                "r.yaml",
                &resource(&json!({"tuning": tuning, "plugins": {"katello": true, "remote_execution": true}})),
            )
            .unwrap(),
        )
    };
    for (tuning, puma, api, content, workers, heap) in [
        ("default", "6", "5", "9", 4, "-Xmx4096m"),
        ("large", "24", "5", "17", 8, "-Xmx4096m"),
        ("extra-large", "32", "5", "17", 8, "-Xmx8192m"),
    ] {
        let objs = render(tuning);
        let find = |kind: &str, name: &str| {
            objs.iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{kind}/{name}"))
                .clone()
        };
        let env = |deployment: &str, var: &str| {
            find("Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == var)
                .map(|e| e["value"].as_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(env("foreman", "FOREMAN_PUMA_WORKERS"), puma, "{tuning}");
        assert_eq!(env("pulp-api", "PULP_API_WORKERS"), api, "{tuning}");
        assert_eq!(env("pulp-api", "PULP_CONTENT_WORKERS"), content, "{tuning}");
        assert_eq!(
            find("Deployment", "pulp-worker")["spec"]["replicas"],
            workers,
            "{tuning}"
        );
        let tomcat = find("ConfigMap", "candlepin-config")["data"]["tomcat.conf"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            tomcat.contains(&format!("JAVA_OPTS=\"-Xms1024m {heap} ")),
            "{tuning}: {tomcat}"
        );
    }
}
