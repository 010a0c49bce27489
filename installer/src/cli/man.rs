//! The man page: one page, foreman-box(1), that documents every command with its own options
//! and every setting once (flag, config key, variable, default). clap_mangen writes the head;
//! the rest goes through roff's writer, never through string formatting of roff.

use super::Cli;
use crate::config::{self, KEYS};
use clap::CommandFactory;
use roff::{bold, italic, roman, Inline, Roff};
use std::io::Write;

pub fn render(w: &mut dyn Write) -> std::io::Result<()> {
    let mut cli = Cli::command();
    cli.build();
    let head = clap_mangen::Man::new(cli.clone());
    head.render_title(w)?;
    head.render_name_section(w)?;
    head.render_synopsis_section(w)?;
    head.render_description_section(w)?;

    // The options every run command shares (install's, plan's, ...): documented once.
    let runs: Vec<&clap::Command> = ["install", "plan", "preflight", "status", "render"]
        .iter()
        .filter_map(|n| cli.find_subcommand(n))
        .collect();
    let common: Vec<&clap::Arg> = runs[0]
        .get_arguments()
        .filter(|a| {
            own(a)
                && runs
                    .iter()
                    .all(|c| c.get_arguments().any(|b| b.get_id() == a.get_id()))
        })
        .collect();
    let shared = |a: &clap::Arg| common.iter().any(|c| c.get_id() == a.get_id());

    let mut page = Roff::new();
    page.control("SH", ["COMMANDS"]);
    page.text([roman(
        "Every command with its own options; the options the run commands share and the \
         settings follow the commands.",
    )]);
    for sub in cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        command(&mut page, &["foreman-box"], sub, &shared);
    }
    page.control("SH", ["RUN OPTIONS"]);
    page.text([roman(format!(
        "The options of {}.",
        runs.iter()
            .map(|c| c.get_name())
            .collect::<Vec<_>>()
            .join(", ")
    ))]);
    for arg in &common {
        option(&mut page, arg);
    }
    settings(&mut page);
    page.control("SH", ["FILES"]);
    for (path, what) in [
        (config::DEFAULT_CONFIG_PATH, "the configuration file"),
        (
            "/etc/foreman-box/secrets",
            "kept copies of the generated Secrets (0600)",
        ),
        (
            "/var/log/foreman-box",
            "one log per run, with the debug detail",
        ),
    ] {
        page.control("TP", []);
        page.text([italic(path)]);
        page.text([roman(what)]);
    }
    page.to_writer(w)
}

/// One command's section: its path, what it does, its arguments, then its own subcommands.
fn command(
    page: &mut Roff,
    parents: &[&str],
    cmd: &clap::Command,
    shared: &dyn Fn(&clap::Arg) -> bool,
) {
    let mut path = parents.to_vec();
    path.push(cmd.get_name());
    page.control("SS", [path.join(" ").as_str()]);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        page.text([roman(about.to_string())]);
    }
    for arg in cmd.get_arguments().filter(|a| own(a) && !shared(a)) {
        option(page, arg);
    }
    let mut also = Vec::new();
    if cmd.get_arguments().any(|a| own(a) && shared(a)) {
        also.push("RUN OPTIONS");
    }
    if cmd.get_arguments().any(is_setting) {
        also.push("SETTINGS");
    }
    if !also.is_empty() {
        page.control("PP", []);
        page.text([roman(format!(
            "Also the options under {}.",
            also.join(" and ")
        ))]);
    }
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        command(page, &path, sub, shared);
    }
}

fn option(page: &mut Roff, arg: &clap::Arg) {
    page.control("TP", []);
    page.text(header(arg));
    page.text(help(arg));
}

/// An argument of the command itself: not hidden, not a setting, not --help or --version.
fn own(a: &clap::Arg) -> bool {
    !a.is_hide_set() && !is_setting(a) && !is_builtin(a)
}

/// The settings, once: the flag, then what it sets, its default and its other two forms.
fn settings(page: &mut Roff) {
    page.control("SH", ["SETTINGS"]);
    page.text([roman(format!(
        "Each setting is a flag, a key of {} and a FOREMAN_BOX_* variable; a flag wins over a \
         variable, which wins over the file.",
        config::DEFAULT_CONFIG_PATH
    ))]);
    for k in KEYS {
        page.control("TP", []);
        let value = match k.kind {
            config::Kind::Bool => "[BOOL]",
            config::Kind::Number => "NUMBER",
            config::Kind::Text => "VALUE",
        };
        page.text([
            bold(format!("--{}", config::flag_name(k.name))),
            roman(" "),
            italic(value),
        ]);
        let mut text = vec![roman(k.help)];
        if !k.default.is_empty() {
            text.push(roman(format!(" (default: {})", k.default)));
        }
        text.push(roman(format!(
            "; config: {}; env: {}",
            k.name,
            config::env_name(k.name)
        )));
        page.text(text);
    }
}

fn is_setting(a: &clap::Arg) -> bool {
    KEYS.iter().any(|k| a.get_id() == k.name)
}

fn is_builtin(a: &clap::Arg) -> bool {
    matches!(a.get_id().as_str(), "help" | "version")
}

/// `-v, --verbose`, `--root <DIR>`, `<SHELL>`.
fn header(a: &clap::Arg) -> Vec<Inline> {
    let mut h = Vec::new();
    if let Some(s) = a.get_short() {
        h.push(bold(format!("-{s}")));
        if a.get_long().is_some() {
            h.push(roman(", "));
        }
    }
    if let Some(l) = a.get_long() {
        h.push(bold(format!("--{l}")));
    }
    let takes = a.get_num_args().is_some_and(|n| n.takes_values());
    if takes || a.is_positional() {
        let names = a
            .get_value_names()
            .map(|n| {
                n.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
        if !h.is_empty() {
            h.push(roman(" "));
        }
        h.push(italic(names));
    }
    h
}

/// The help text, then the default, the choices and the variable, as `--help` shows them.
fn help(a: &clap::Arg) -> Vec<Inline> {
    let mut parts: Vec<String> = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|h| h.to_string())
        .into_iter()
        .collect();
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && a.get_num_args().is_some_and(|n| n.takes_values()) {
        parts.push(format!("(default: {})", defaults.join(", ")));
    }
    let choices: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !choices.is_empty() {
        parts.push(format!("(one of: {})", choices.join(", ")));
    }
    if let Some(env) = a.get_env() {
        parts.push(format!("(env: {})", env.to_string_lossy()));
    }
    vec![roman(parts.join(" "))]
}
