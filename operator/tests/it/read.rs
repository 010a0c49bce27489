//! `operator render` reads a resource from a file: it refuses what the CRD refuses, and bounds
//! hostile input before the YAML parser sees it.

use foreman_operator::read::{read_foreman, MAX_INPUT_BYTES, MAX_NESTING};
use foreman_operator::Error;

fn cr(spec: &str) -> String {
    format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman}}\nspec:\n{spec}")
}

fn refused(text: &str) -> String {
    match read_foreman("in.yaml", text) {
        Ok(_) => panic!("accepted: {text:.200}"),
        Err(e @ Error::Invalid { .. }) => e.to_string(),
        Err(e) => panic!("refused, but not as invalid input: {e}"),
    }
}

#[test]
fn dynflow_workers_outside_the_crds_range_are_refused() {
    // 32 fits the large profile's host; no worker at all would leave the `default` and
    // `remote_execution` queues without a consumer.
    assert_eq!(
        read_foreman("in.yaml", &cr("  dynflow_workers: 32\n  tuning: large\n"))
            .unwrap()
            .spec
            .dynflow_workers,
        32
    );
    let msg = refused(&cr("  dynflow_workers: 0\n"));
    assert!(
        msg.contains("`spec.dynflow_workers` is 0, outside 1..=32"),
        "{msg}"
    );
    let msg = refused(&cr("  dynflow_workers: 33\n"));
    assert!(
        msg.contains("spec.dynflow_workers") && msg.contains("1..=32"),
        "{msg}"
    );
    assert!(msg.contains("in.yaml") && msg.contains("help:"), "{msg}");
    let msg = refused(&cr("  dynflow_workers: -1\n"));
    assert!(msg.contains("spec.dynflow_workers"), "{msg}");
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let msg = refused(&cr("  plugins: {katello: true, remote_exec: true}\n"));
    assert!(
        msg.contains("unknown field `spec.plugins.remote_exec`"),
        "{msg}"
    );
    assert!(
        msg.contains("remote_execution"),
        "names the known fields: {msg}"
    );
    let msg = refused(&cr("  dynflow_worker: 2\n"));
    assert!(msg.contains("`spec.dynflow_worker`"), "{msg}");
    let msg = refused(&format!("{}specs: {{}}\n", cr("")));
    assert!(msg.contains("unknown field `specs`"), "{msg}");
}

#[test]
fn hostname_and_version_follow_the_crds_patterns() {
    assert!(refused(&cr("  hostname: Foreman.Example.com\n")).contains("spec.hostname"));
    assert!(refused(&cr("  version: latest\n")).contains("spec.version"));
    read_foreman(
        "in.yaml",
        &cr("  hostname: foreman.example.com\n  version: \"3.19\"\n"),
    )
    .unwrap();
}

#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    // A parser walks this recursively; the bound refuses it in one pass over the text.
    let deep = format!(
        "{}spec: {}{}\n",
        cr(""),
        "[".repeat(MAX_INPUT_BYTES / 2),
        "]".repeat(MAX_INPUT_BYTES / 2 - 200)
    );
    assert!(deep.len() < MAX_INPUT_BYTES);
    let msg = refused(&deep);
    assert!(msg.contains("nesting"), "{msg}");
    // Just within the bound, the same shape reaches the parser and the schema check.
    let ok_depth = format!(
        "{}  plugins: {}{}\n",
        cr(""),
        "[".repeat(MAX_NESTING - 2),
        "]".repeat(MAX_NESTING - 2)
    );
    assert!(!refused(&ok_depth).contains("nesting"));
}

#[test]
fn deep_block_nesting_and_oversized_input_are_refused() {
    let mut block = cr("");
    for i in 0..40 {
        block.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
    }
    assert!(refused(&block).contains("nesting"));
    let dashes = format!("{}{}a\n", cr(""), "- ".repeat(100));
    assert!(refused(&dashes).contains("nesting"));
    let big = format!("{}# {}\n", cr(""), "x".repeat(MAX_INPUT_BYTES));
    let msg = refused(&big);
    assert!(msg.contains("bytes"), "{msg}");
}
