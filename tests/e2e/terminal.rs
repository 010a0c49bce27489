//! What a person sees: the terminal display under a real pseudo-terminal (`script(1)`), rendered
//! by a terminal emulator (vt100) into the final screen and compared with snapshots in
//! `e2e/snapshots/` (paths, times and the mirror's port replaced; `UPDATE_SNAPSHOTS=1` rewrites
//! them); the plain form when stdout is not a terminal; the run log; JSON output; completions
//! and the man page against the clap definitions.

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::pg::Pg;
use foreman_box_tests::{artifact, binary, debian_root, foreman_box, mode, run, sha256_hex};
use std::path::{Path, PathBuf};
use std::process::Command;

const WIRE: &str = "v1.33.5%2Bk3s1";
const ROWS: u16 = 60;
const COLS: u16 = 110;

/// Checks that depend on the machine the tests run on (its cores, memory, disks, ports, route,
/// cgroups): ignored, and their warnings left out of the snapshots. `fqdn` (a `.test` name never
/// resolves), `arch` and `os` are the same everywhere and stay in.
const MACHINE_CHECKS: [&str; 9] = [
    "cpu",
    "memory",
    "sizing",
    "disk",
    "ports",
    "route",
    "cgroup",
    "selinux",
    "firewalld",
];

/// A release mirror with a stand-in k3s binary (`k3s` serves `served`, the list says `binary`).
fn mirror_with(binary: &[u8], served: Vec<u8>) -> Mirror {
    let mirror = Mirror::start();
    let sums = format!(
        "{}  k3s\n{}  k3s-arm64\n",
        sha256_hex(binary),
        sha256_hex(b"arm")
    );
    mirror.put(&format!("/{WIRE}/k3s"), served);
    mirror.put(&format!("/{WIRE}/sha256sum-amd64.txt"), sums.into_bytes());
    mirror
}

fn k3s_args(verb: &str, root: &Path, mirror: &Mirror, ignore: &str) -> Vec<String> {
    [
        verb,
        "--root",
        root.to_str().unwrap(),
        "--only",
        "preflight,k3s",
        "--ignore-preflight",
        ignore,
        "--hostname",
        "foreman.example.test",
        "--downloads-retries",
        "1",
        "--downloads-retry-delay-ms",
        "10",
        "--k3s-release-url",
        &mirror.url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ignore_all() -> String {
    let mut v: Vec<&str> = MACHINE_CHECKS.to_vec();
    v.push("fqdn");
    v.join(",")
}

/// What a terminal shows after `foreman-box ARGS` ran in it.
struct Screen {
    code: i32,
    /// The final screen, as text.
    text: String,
    /// Everything written to the terminal, control codes included.
    raw: String,
}

fn on_terminal(args: &[String], env: &[(&str, &str)]) -> Screen {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = format!(
        "stty rows {ROWS} cols {COLS}; exec {}",
        quote(binary().to_str().unwrap())
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    for (k, _) in std::env::vars() {
        if k.starts_with("FOREMAN_BOX_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script(1) runs (util-linux)");
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    parser.process(&out.stdout);
    // Row by row, joining a row with the next only where text ran past the edge: a line padded
    // to the full width with blanks counts as wrapped too, and is a line of its own.
    let screen = parser.screen();
    let mut lines: Vec<String> = Vec::new();
    let mut continued = false;
    for (i, row) in screen.rows(0, COLS).enumerate() {
        let row = row.trim_end().to_string();
        if continued {
            lines.last_mut().expect("a row before").push_str(&row);
        } else {
            lines.push(row);
        }
        let i = i as u16;
        continued = screen.row_wrapped(i)
            && screen
                .cell(i, COLS - 1)
                .is_some_and(|c| !c.contents().trim().is_empty());
    }
    let text = lines.join("\n").trim_end().to_string();
    Screen {
        code: out.status.code().unwrap_or(-1),
        text,
        raw: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Replaces what differs between runs: the root, the mirror's address, times, the log's name,
/// and the preflight warnings of checks that depend on this machine.
pub(crate) fn scrub(text: &str, root: &Path, mirror: Option<&Mirror>) -> String {
    let mut t = text.replace(root.to_str().unwrap(), "<root>");
    if let Some(m) = mirror {
        t = t.replace(&m.url(), "<mirror>");
    }
    let mut lines = Vec::new();
    // A machine check's warning too long for one row may be cut where a row ends in a blank
    // (the screen cannot tell that from a padded line): its rows up to the one that ends the
    // warning go too.
    let mut in_machine_warning = false;
    for line in t.lines() {
        let trimmed = line.trim_start();
        let machine = MACHINE_CHECKS.iter().any(|c| {
            trimmed.starts_with(&format!("! {c}: "))
                || trimmed.starts_with(&format!("preflight: warning: {c}: "))
        });
        // A row that starts an item of its own ends the warning whatever its last row said.
        let starts_item = ["! ", "✓ ", "✗ ", "preflight: "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if machine || (in_machine_warning && !starts_item) {
            in_machine_warning = !line.trim_end().ends_with("(ignored as asked)");
            continue;
        }
        in_machine_warning = false;
        // The log's name (time, PID) becomes `<log>`; what follows it on the line stays.
        let line = match line.find("/var/log/foreman-box/") {
            Some(at) => {
                let rest = &line[at..];
                let end = rest.find(".log").map_or(rest.len(), |e| e + 4);
                format!("{}/var/log/foreman-box/<log>{}", &line[..at], &rest[end..])
            }
            None => line.to_string(),
        };
        lines.push(
            line.split(' ')
                .map(scrub_word)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let t = lines.join("\n");
    // The number of preflight warnings depends on the machine too.
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(at) = rest.find("passed, ") {
        out.push_str(&rest[..at]);
        out.push_str("passed, <n> warnings");
        let after = &rest[at + "passed, ".len()..];
        let end = after.find("warning").map(|e| {
            let w = &after[e..];
            e + if w.starts_with("warnings") { 8 } else { 7 }
        });
        rest = &after[end.unwrap_or(0)..];
    }
    out.push_str(rest);
    out
}

/// `1.2s`, `12s`, `3m05s` (with trailing punctuation) become `<t>`; other words stay.
fn scrub_word(w: &str) -> String {
    let inner = w.trim_start_matches('(');
    let head = &w[..w.len() - inner.len()];
    let core = inner.trim_end_matches(['.', ',', ')']);
    let tail = &inner[core.len()..];
    let num = core.strip_suffix('s').unwrap_or("");
    let is_time = !num.is_empty()
        && (num.chars().all(|c| c.is_ascii_digit() || c == '.')
            || (num.contains('m') && num.chars().all(|c| c.is_ascii_digit() || c == 'm')));
    if is_time {
        format!("{head}<t>{tail}")
    } else {
        w.to_string()
    }
}

/// Compares with `e2e/snapshots/NAME.txt`; `UPDATE_SNAPSHOTS=1` writes it instead.
pub(crate) fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/snapshots")
        .join(format!("{name}.txt"));
    let actual = format!("{}\n", actual.trim_end());
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it. Got:\n{actual}",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_SNAPSHOTS=1 rewrites it)",
        path.display()
    );
}

const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

/// The final screen holds no spinner and no live bar: everything finished drew its last line.
fn assert_settled(s: &Screen) {
    assert!(
        !s.text.chars().any(|c| SPINNER.contains(c)),
        "a spinner was left on the screen:\n{}",
        s.text
    );
    assert!(!s.text.contains("[="), "a bar was left:\n{}", s.text);
}

fn run_log(root: &Path) -> PathBuf {
    let dir = root.join("var/log/foreman-box");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    logs.pop().expect("a run log")
}

#[test]
fn terminal_fresh_install_shows_a_line_per_step_with_its_changes() {
    let bin = artifact(2 << 20, 7);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let s = on_terminal(
        &k3s_args("install", root.path(), &mirror, &ignore_all()),
        &[],
    );
    assert_eq!(s.code, 0, "{}", s.text);
    assert_settled(&s);
    assert!(s.raw.contains('\x1b'), "a terminal gets colour");
    // No log levels, no timestamps, no raw tracing.
    for noise in ["INFO", "WARN", "DEBUG", "step=", "2026-", "T0", "Z "] {
        assert!(
            !s.text.contains(noise),
            "`{noise}` on the terminal:\n{}",
            s.text
        );
    }
    assert_snapshot(
        "terminal_fresh_install",
        &scrub(&s.text, root.path(), Some(&mirror)),
    );
}

#[test]
fn terminal_converged_rerun_says_up_to_date() {
    let bin = artifact(1 << 20, 8);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let args = k3s_args("install", root.path(), &mirror, &ignore_all());
    assert_eq!(on_terminal(&args, &[]).code, 0);
    let s = on_terminal(&args, &[]);
    assert_eq!(s.code, 0, "{}", s.text);
    assert_settled(&s);
    assert_snapshot(
        "terminal_rerun",
        &scrub(&s.text, root.path(), Some(&mirror)),
    );
}

#[test]
fn terminal_plan_lists_what_would_change_under_each_step() {
    let bin = artifact(1 << 20, 9);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let s = on_terminal(&k3s_args("plan", root.path(), &mirror, &ignore_all()), &[]);
    assert_eq!(s.code, 2, "{}", s.text);
    assert_settled(&s);
    assert_snapshot("terminal_plan", &scrub(&s.text, root.path(), Some(&mirror)));
}

#[test]
fn terminal_preflight_failure_marks_the_step_and_ends_with_the_log() {
    let mirror = mirror_with(b"x", b"x".to_vec());
    let root = debian_root();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=alpine\nPRETTY_NAME=\"Alpine Linux\"\n",
    )
    .unwrap();
    // An unsupported OS, and a hostname that does not resolve (a malformed one is refused before
    // preflight, where the configuration is read).
    let args = k3s_args("install", root.path(), &mirror, &MACHINE_CHECKS.join(","));
    let s = on_terminal(&args, &[]);
    assert_eq!(s.code, 1, "{}", s.text);
    assert_settled(&s);
    assert!(s.text.contains("✗ preflight"), "{}", s.text);
    let last = s.text.lines().last().unwrap();
    assert!(last.starts_with("the full log of this run: "), "{}", s.text);
    assert!(Path::new(last.trim_start_matches("the full log of this run: ")).is_file());
    assert_snapshot(
        "terminal_preflight_failure",
        &scrub(&s.text, root.path(), Some(&mirror)),
    );
}

#[test]
fn terminal_download_failure_marks_the_step_clears_the_bar_and_ends_with_the_log() {
    let bin = artifact(1 << 20, 10);
    let mirror = mirror_with(&bin, artifact(1 << 20, 11));
    let root = debian_root();
    let s = on_terminal(
        &k3s_args("install", root.path(), &mirror, &ignore_all()),
        &[],
    );
    assert_eq!(s.code, 1, "{}", s.text);
    assert_settled(&s);
    assert!(s.text.contains("checksum mismatch"), "{}", s.text);
    let scrubbed = scrub(&s.text, root.path(), Some(&mirror));
    // The hashes are the artifacts' own and fixed by their seeds: they stay in the snapshot.
    assert_snapshot("terminal_download_failure", &scrubbed);
}

#[test]
fn plain_output_is_one_line_per_event_without_control_codes() {
    let bin = artifact(1 << 20, 12);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let args = k3s_args("install", root.path(), &mirror, &ignore_all());
    let mut cmd = foreman_box(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env_remove("FOREMAN_BOX_LOG")
        .env("TERM", "xterm-256color");
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !out.all().contains('\x1b') && !out.all().contains('\r'),
        "control codes in plain output:\n{:?}",
        out.all()
    );
    assert_eq!(
        out.stderr, "",
        "nothing on stderr unless asked (-v) or wrong"
    );
    let scrubbed = scrub(&out.stdout, root.path(), Some(&mirror));
    assert_snapshot("plain_install", &scrubbed);
    let again = run(&mut cmd);
    assert_snapshot(
        "plain_rerun",
        &scrub(&again.stdout, root.path(), Some(&mirror)),
    );
}

#[test]
fn verbose_terminal_adds_notes_and_detail() {
    let bin = artifact(1 << 20, 13);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let mut args = k3s_args("install", root.path(), &mirror, &ignore_all());
    let quiet = on_terminal(&args, &[]);
    assert!(!quiet.text.contains("not starting k3s"), "{}", quiet.text);
    args.push("-v".into());
    let loud = on_terminal(&args, &[]);
    assert_eq!(loud.code, 0, "{}", loud.text);
    assert!(
        loud.text.contains("not starting k3s: --skip-start"),
        "{}",
        loud.text
    );
    assert!(!loud.text.contains("INFO"), "{}", loud.text);
}

#[test]
fn run_log_is_private_timestamped_and_holds_what_the_terminal_left_out() {
    let bin = artifact(1 << 20, 14);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let s = on_terminal(
        &k3s_args("install", root.path(), &mirror, &ignore_all()),
        &[],
    );
    assert_eq!(s.code, 0, "{}", s.text);
    let log = run_log(root.path());
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
    let name = log.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("-install.log"), "{name}");
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        assert!(
            line.starts_with("20") && line.as_bytes()[10] == b'T',
            "no timestamp: {line}"
        );
    }
    // Detail the terminal did not show: debug lines and notes.
    assert!(text.contains("DEBUG"), "{text}");
    assert!(text.contains("not starting k3s: --skip-start"), "{text}");
    assert!(!s.text.contains("not starting k3s"), "{}", s.text);
    // And what it did show.
    assert!(text.contains("install /usr/local/bin/k3s"), "{text}");

    // Plan, preflight and status log too; the last ten runs are kept.
    for _ in 0..11 {
        let out = run(&mut foreman_box(&[
            "status",
            "--root",
            root.path().to_str().unwrap(),
        ]));
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let logs = std::fs::read_dir(root.path().join("var/log/foreman-box"))
        .unwrap()
        .count();
    assert_eq!(logs, 10);
}

#[test]
fn unwritable_log_directory_is_a_warning_not_a_failure() {
    let bin = artifact(1 << 20, 15);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    // A file where the log directory should be: the log cannot be created, even as root.
    std::fs::write(root.path().join("var/log/foreman-box"), "not a dir").unwrap();
    let args = k3s_args("plan", root.path(), &mirror, &ignore_all());
    let mut cmd = foreman_box(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env_remove("FOREMAN_BOX_LOG");
    let out = run(&mut cmd);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("no run log"), "{}", out.all());
    assert!(
        out.stdout.contains("+ write /etc/rancher/k3s/config.yaml"),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_and_status_print_one_json_document() {
    let bin = artifact(1 << 20, 16);
    let mirror = mirror_with(&bin, bin.clone());
    let root = debian_root();
    let mut args = k3s_args("plan", root.path(), &mirror, &ignore_all());
    args.extend(["--output".into(), "json".into()]);
    let out = run(&mut foreman_box(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(out.code, 2, "{}", out.all());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{}", out.stdout));
    assert_eq!(doc["pending"], true);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "preflight");
    assert_eq!(steps[0]["changes"], serde_json::json!([]));
    assert_eq!(steps[1]["step"], "k3s");
    let changes = steps[1]["changes"].as_array().unwrap();
    // Each change is the planned operation itself, with its fields (never a file's content).
    let write = changes
        .iter()
        .find(|c| c["what"] == "write /etc/rancher/k3s/config.yaml")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(write["why"], "missing");
    assert_eq!(write["action"]["kind"], "write");
    assert_eq!(write["action"]["path"], "/etc/rancher/k3s/config.yaml");
    assert_eq!(write["action"]["mode"], "0600");
    assert!(write["action"]["bytes"].as_u64().unwrap() > 0, "{write}");
    assert!(!out.stdout.contains("cluster-cidr"), "no content shown");
    let binary = changes
        .iter()
        .find(|c| c["action"]["kind"] == "install_binary")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(binary["action"]["sha256"], sha256_hex(&bin));
    let url = binary["action"]["from"]["release"]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&mirror.url()) && url.ends_with("/k3s"),
        "{url}"
    );
    for step in steps {
        for change in step["changes"].as_array().unwrap() {
            assert!(change["action"]["kind"].is_string(), "{change}");
        }
    }

    let r = root.path().to_str().unwrap();
    let a = run(&mut foreman_box(&[
        "status", "--root", r, "--output", "json",
    ]));
    let b = run(&mut foreman_box(&["status", "--root", r, "--json"]));
    assert_eq!(a.code, 0, "{}", a.all());
    let a: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
    assert_eq!(a, b, "--json is --output json");
    assert_eq!(a["k3s"]["installed"], false);
}

/// Every subcommand in the clap definitions (`CommandFactory`, not a list kept by hand), at every
/// depth, as (its parent's names, its name): `([], "install")`, `(["operator"], "crd")`.
pub(crate) fn subcommands() -> Vec<(Vec<String>, String)> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, parents: &[String], out: &mut Vec<(Vec<String>, String)>) {
        for sub in cmd.get_subcommands() {
            let name = sub.get_name().to_string();
            out.push((parents.to_vec(), name.clone()));
            let mut path = parents.to_vec();
            path.push(name);
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&foreman_box::cli::Cli::command(), &[], &mut out);
    out
}

/// The completion script for SHELL offers every subcommand where it completes its parent's
/// subcommands: bash's `opts="..."` word lists, zsh's `'NAME:description'` entries, fish's
/// `-a "NAME"`.
pub(crate) fn assert_completion_offers_every_subcommand(shell: &str, script: &str) {
    for (parents, name) in subcommands() {
        let offered = match shell {
            "bash" => script.lines().any(|l| {
                l.trim()
                    .strip_prefix("opts=\"")
                    .and_then(|o| o.strip_suffix('"'))
                    .is_some_and(|o| o.split(' ').any(|w| w == name))
            }),
            "zsh" => script.lines().any(|l| l.starts_with(&format!("'{name}:"))),
            "fish" => script.lines().any(|l| {
                l.contains(&format!("-a \"{name}\""))
                    && parents.iter().all(|p| l.contains(p.as_str()))
            }),
            other => panic!("no check for {other}"),
        };
        assert!(
            offered,
            "the {shell} completion does not offer `{}`",
            [parents.join(" "), name].join(" ").trim()
        );
    }
}

/// The man page names every top-level subcommand in its SUBCOMMANDS section, and every nested
/// one somewhere.
pub(crate) fn assert_man_page_mentions_every_subcommand(page: &str) {
    assert!(
        page.contains(".TH foreman-box 1"),
        "not a man(1) page: {page}"
    );
    // One page: it points at no other page (there is no foreman-box-install(1)).
    assert!(
        !page.contains("(1)"),
        "the page names pages that do not exist"
    );
    use clap::CommandFactory;
    let mut cli = foreman_box::cli::Cli::command();
    cli.build();
    for (parents, name) in subcommands() {
        let mut path = vec!["foreman-box".to_string()];
        path.extend(parents.iter().cloned());
        path.push(name.clone());
        assert!(
            page.contains(&format!(".SS \"{}\"", path.join(" "))),
            "the man page has no section for {}",
            path.join(" ")
        );
        // Every option the command takes is documented, by its flag.
        let mut cmd = &cli;
        for p in path.iter().skip(1) {
            cmd = cmd.find_subcommand(p).unwrap();
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    page.contains(&format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"))),
                    "{} --{long} is not documented",
                    path.join(" ")
                );
            }
        }
    }
}

#[test]
fn completions_and_man_page_offer_every_subcommand_of_the_clap_definitions() {
    let all = subcommands();
    // The enumeration itself sees the tree: top-level commands and the operator's tools.
    for c in ["install", "plan", "uninstall", "completions", "man"] {
        assert!(all.contains(&(vec![], c.to_string())), "{c} in {all:?}");
    }
    assert!(all.contains(&(vec!["operator".to_string()], "crd".to_string())));
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&mut foreman_box(&["completions", shell]));
        assert_eq!(out.code, 0, "{}", out.all());
        assert_completion_offers_every_subcommand(shell, &out.stdout);
        // Flags made from the key table are completed too.
        assert!(out.stdout.contains("k3s-release-url"), "{shell}");
    }
    let man = run(&mut foreman_box(&["man"]));
    assert_eq!(man.code, 0, "{}", man.all());
    assert_man_page_mentions_every_subcommand(&man.stdout);
    // man's own formatter reads it without a warning, and a reader sees the defaults.
    let page = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(page.path(), &man.stdout).unwrap();
    let groff = std::process::Command::new("groff")
        // Plain text: no bold or underline by overstriking or escape sequences.
        .args(["-man", "-ww", "-Tutf8", "-rLL=200n", "-P-cbou"])
        .arg(page.path())
        .output()
        .expect("groff runs (scripts/test.sh installs groff-base)");
    let stderr = String::from_utf8_lossy(&groff.stderr);
    assert!(groff.status.success() && stderr.is_empty(), "{stderr}");
    let shown = String::from_utf8_lossy(&groff.stdout);
    for line in [
        "k3s release tag to install (default: v1.33.5+k3s1)",
        "seconds to wait for Foreman to become Ready",
        "(default: 1800)",
        "local (the distribution's server on this host) or external (default: local)",
    ] {
        assert!(
            shown.contains(line),
            "{line:?} not in the rendered page:\n{shown}"
        );
    }
}

#[test]
fn the_subcommand_checks_fail_when_one_is_missing() {
    // The checks above are only worth something if they can fail.
    let bash = run(&mut foreman_box(&["completions", "bash"])).stdout;
    let without = bash.replace(" uninstall ", " ");
    assert!(
        std::panic::catch_unwind(|| assert_completion_offers_every_subcommand("bash", &without))
            .is_err()
    );
    let man = run(&mut foreman_box(&["man"])).stdout;
    let without = man.replace(".SS \"foreman-box plan\"", "");
    assert!(
        std::panic::catch_unwind(|| assert_man_page_mentions_every_subcommand(&without)).is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_log_of_a_postgres_install_holds_no_password() {
    let pg = Pg::start();
    let root = debian_root();
    let r = root.path().to_str().unwrap();
    let mut cmd = foreman_box(&[
        "install",
        "--root",
        r,
        "--only",
        "postgres",
        "--postgres-mode",
        "external",
        "--postgres-admin-url",
        &pg.admin_url(),
        "--node-ip",
        "192.0.2.10",
        "-vv",
    ]);
    cmd.env("FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD", &pg.password);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.all());
    let log = std::fs::read_to_string(run_log(root.path())).unwrap();
    assert!(log.contains("DEBUG"), "{log}");
    let mut secrets = vec![pg.password.clone()];
    for db in ["foreman", "candlepin", "pulp"] {
        let p = std::fs::read_to_string(
            root.path()
                .join(format!("etc/foreman-box/secrets/postgres-{db}")),
        )
        .unwrap();
        secrets.push(p.trim().to_string());
    }
    for s in &secrets {
        assert!(s.len() >= 8, "a password to look for");
        assert!(!log.contains(s.as_str()), "a password is in the run log");
        assert!(
            !out.all().contains(s.as_str()),
            "a password is in the output"
        );
    }
}

#[test]
fn scrub_replaces_times_paths_and_machine_warnings() {
    let root = Path::new("/tmp/abc");
    let text = "✓ preflight  passed, 3 warnings\n  ! cpu: 2 cores (ignored as asked)\n  ! sizing: a warning cut at a blank\nat the row's end (ignored as asked)\n  ! memory: 1 GiB\n  ! fqdn: nope\n✓ k3s  1.2s\nUp to date (0.3s).\nDone: 8 changes in 12s.\nlog: /tmp/abc/var/log/foreman-box/20261123T1-1-install.log\n- k3s  3m05s";
    assert_eq!(
        scrub(text, root, None),
        "✓ preflight  passed, <n> warnings\n  ! fqdn: nope\n✓ k3s  <t>\nUp to date (<t>).\nDone: 8 changes in <t>.\nlog: <root>/var/log/foreman-box/<log>\n- k3s  <t>"
    );
}
