//! The installer's modules, and the operator's, form layers that only point down: a module may
//! use (`crate::...`) only the modules declared below it. A new module must be placed in the order, and an import
//! that points up a layer (or closes a cycle, which needs one) fails here, naming the line.
//! Test code (`#[cfg(test)]` onwards in a file) is left out: a test may reach up for fixtures.

use std::path::{Path, PathBuf};

/// The installer's top-level modules, lowest first: host → vocabulary → clients → steps → cli.
const ORDER: &[&str] = &[
    "validate",
    "postgres_error",
    "secret",
    "host",
    "config",
    "facts",
    // the vocabulary every layer above shares
    "report",
    "diagnosis",
    // the cluster's and the registry's clients, and the errors that wrap theirs
    "cluster",
    "inspect",
    "error",
    "desired",
    "action",
    "download",
    "manifests",
    // what a step sees and what a plan is made of; the kept secrets' rules
    "context",
    "kept",
    "maintenance",
    // the step engine and the steps
    "steps",
    // day two, built on the steps
    "backup",
    "health",
    "upgrade",
    "support",
    "cli",
];

/// The operator's top-level modules, lowest first: the resource type and the tables it names →
/// the renders → what is summed and read from them → the controller.
const OPERATOR_ORDER: &[&str] = &[
    "idle",
    "crd",
    "images",
    "streams",
    "secrets",
    "profile",
    "resources",
    "generated",
    "sizing",
    "schema",
    "read",
    "controller",
];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../installer/src")
}

fn operator_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `steps/postgres/roles.rs` → `steps`; `lib.rs` and `main.rs` are the crate itself.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level modules a piece of code names through `crate::`, with `use crate::{a, b::c}`
/// groups opened.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = 0usize;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        found.push(first_ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(first_ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Every `crate::` use in a crate's production code, as (file, line, from, to).
fn uses(root: &Path, order: &[&str]) -> Vec<(String, usize, String, String)> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap().to_path_buf();
        let Some(from) = module_of(&relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        // a `use crate::{...}` group can span lines: join each statement before reading it
        let mut statement = String::new();
        let mut first_line = 0;
        for (n, line) in code.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("//") {
                continue;
            }
            if statement.is_empty() {
                first_line = n + 1;
            }
            statement.push_str(line);
            statement.push(' ');
            let open = statement.matches('{').count() > statement.matches('}').count();
            if statement.trim_start().starts_with("use ") && open {
                continue;
            }
            for to in crate_paths(&statement) {
                if to != from && order.contains(&to.as_str()) {
                    out.push((relative.display().to_string(), first_line, from.clone(), to));
                }
            }
            statement.clear();
        }
    }
    out
}

#[test]
fn installer_imports_only_point_down_the_declared_layers() {
    assert_layers(&source_root(), ORDER, 100);
}

#[test]
fn operator_imports_only_point_down_the_declared_layers() {
    assert_layers(&operator_root(), OPERATOR_ORDER, 30);
}

/// Every top-level module of the crate at `root` is in `order`, and none uses one above it.
fn assert_layers(root: &Path, order: &[&str], at_least: usize) {
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let mut root_modules = Vec::new();
    let mut files = Vec::new();
    rust_files(root, &mut files);
    for file in &files {
        if let Some(m) = module_of(file.strip_prefix(root).unwrap()) {
            root_modules.push(m);
        }
    }
    root_modules.sort();
    root_modules.dedup();
    let unplaced: Vec<_> = root_modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules of {} not in the layer order of tests/e2e/layers.rs: {unplaced:?}; place each where it belongs",
        root.display()
    );
    let all = uses(root, order);
    assert!(
        all.len() > at_least,
        "the reader found only {} crate:: uses: it is not reading the sources",
        all.len()
    );
    let upward: Vec<String> = all
        .iter()
        .filter(|(_, _, from, to)| rank(to) > rank(from))
        .map(|(file, line, from, to)| format!("{file}:{line}: {from} uses {to}, a layer above it"))
        .collect();
    assert!(
        upward.is_empty(),
        "imports that point up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_paths() {
    assert_eq!(
        crate_paths("use crate::{steps::{Action, Context}, host::Host, error};"),
        ["steps", "host", "error"]
    );
    assert_eq!(
        crate_paths("let p = crate::kept::copy_path(crate::cluster::X);"),
        ["kept", "cluster"]
    );
    // and an upward use in a fixture tree is caught by the same rule the real test applies
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    assert!(rank("steps") > rank("download"));
}
