//! What a person sees while a command runs: the [`Display`] is the CLI's [`Reporter`].
//!
//! On a terminal: one line per step with a spinner while it works, then `✓ k3s  1.2s`,
//! `– k3s  up to date` or `✗ k3s  0.3s`; under it, once, the step's changes, its warnings
//! and (with `-v`) its notes; download bars and the wait's component view live in the same
//! display while the step works. Elsewhere (CI logs, Vagrant provisioning): plain lines, one per
//! event, no colour and no control codes. Every event also goes to the run log (tracing, target
//! [`REPORT_TARGET`]) whatever is shown.

use crate::steps::{Change, ComponentLine, Outcome, ProgressHandle, Reporter};
use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The tracing target of the display's own events: logged to the file, never shown twice.
pub const REPORT_TARGET: &str = "foreman_box::report";

/// Step names are padded to this width so the states line up.
const NAME_WIDTH: usize = 10;

/// What the steps' outcomes mean: changes made (install) or changes that would be made (plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Install,
    Plan,
}

/// How the display writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Live lines on a terminal (stdout is one).
    Terminal,
    /// One line per event on stdout, without colour or control codes.
    Plain,
    /// Step events only in the log: stdout carries a document (`--output json`). Warnings and
    /// detail still go to stderr.
    Quiet,
}

impl Form {
    /// The form for this process: the terminal display when stdout is a terminal and TERM is not
    /// `dumb`.
    pub fn detect() -> Form {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if console::Term::stdout().is_term() && !dumb {
            Form::Terminal
        } else {
            Form::Plain
        }
    }
}

/// The CLI's reporter. Cheap to clone; every clone draws into the same display.
#[derive(Clone)]
pub struct Display {
    shared: Arc<Shared>,
}

struct Shared {
    form: Form,
    verb: Verb,
    verbose: u8,
    multi: Option<MultiProgress>,
    /// Live lines a step may use under its own before the rest is summed up as "… N more":
    /// a live area taller than the terminal cannot be redrawn in place.
    max_live: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    steps: Vec<StepView>,
}

/// A step that started and has not finished.
struct StepView {
    name: &'static str,
    bar: Option<ProgressBar>,
    lines: Vec<Line>,
    live: Vec<ProgressBar>,
    more: Option<ProgressBar>,
    components: Vec<(String, ProgressBar)>,
    last_components: Vec<ComponentLine>,
}

/// What is shown under a step, once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Change(Change),
    Warning(String),
    Note(String),
}

impl Display {
    pub fn new(form: Form, verb: Verb, verbose: u8) -> Self {
        let multi = (form == Form::Terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(15)));
        let rows = console::Term::stdout().size().0 as usize;
        Display {
            shared: Arc::new(Shared {
                form,
                verb,
                verbose,
                multi,
                max_live: rows.saturating_sub(6).max(4),
                state: Mutex::new(State::default()),
            }),
        }
    }

    pub fn form(&self) -> Form {
        self.shared.form
    }

    /// A line that belongs to no step (the closing summary), above any live line.
    pub fn line(&self, text: &str) {
        match &self.shared.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None if self.shared.form == Form::Plain => out(text),
            None => {}
        }
    }

    /// A tracing event from outside the display (see [`super::logging`]): warnings go under the
    /// running step, detail is shown as it comes.
    pub fn event(&self, level: tracing::Level, text: &str) {
        if level <= tracing::Level::WARN {
            self.add_line(None, Line::Warning(text.to_string()));
            return;
        }
        match &self.shared.multi {
            Some(m) => {
                let _ = m.println(format!("  {}", style(text).dim()));
            }
            None => err(text),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a line under `step` (the running step when None or not running).
    fn add_line(&self, step: Option<&'static str>, line: Line) {
        let shared = &self.shared;
        let mut state = self.lock();
        let view = match step {
            Some(s) => state.steps.iter_mut().rev().find(|v| v.name == s),
            None => None,
        };
        let view = match view {
            Some(v) => Some(v),
            None => state.steps.last_mut(),
        };
        let Some(view) = view else {
            drop(state);
            // Nothing is running (a warning while reading the configuration): say it now.
            match (&shared.multi, shared.form) {
                (Some(m), _) => {
                    let _ = m.println(styled_line(&line));
                }
                (None, Form::Plain) => out(&plain_line(step.unwrap_or("foreman-box"), &line)),
                (None, _) => {
                    if let Line::Warning(w) = &line {
                        err(&format!("warning: {w}"));
                    }
                }
            }
            return;
        };
        match (&shared.multi, shared.form) {
            (Some(m), _) => {
                if view.live.len() < shared.max_live {
                    let anchor = view.live.last().or(view.bar.as_ref()).cloned();
                    let bar = static_line(&styled_line(&line));
                    let bar = match anchor {
                        Some(a) => m.insert_after(&a, bar),
                        None => m.add(bar),
                    };
                    bar.tick();
                    view.live.push(bar);
                } else {
                    let hidden = view.lines.len() + 1 - view.live.len();
                    let more = view.more.get_or_insert_with(|| {
                        let anchor = view.live.last().cloned().expect("max_live > 0");
                        m.insert_after(&anchor, static_line(""))
                    });
                    more.set_message(format!("  {}", style(format!("… {hidden} more")).dim()));
                }
            }
            (None, Form::Plain) => out(&plain_line(view.name, &line)),
            (None, _) => {
                if let Line::Warning(w) = &line {
                    err(&format!("{}: warning: {w}", view.name));
                }
            }
        }
        view.lines.push(line);
    }
}

impl Reporter for Display {
    fn step_started(&self, step: &'static str) {
        tracing::debug!(target: REPORT_TARGET, step, "started");
        let bar = self.shared.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix} {elapsed:.dim}")
                    .expect("template is valid")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.set_prefix(format!("{step:<NAME_WIDTH$}"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        self.lock().steps.push(StepView {
            name: step,
            bar,
            lines: Vec::new(),
            live: Vec::new(),
            more: None,
            components: Vec::new(),
            last_components: Vec::new(),
        });
    }

    fn step_planned(&self, step: &'static str, changes: &[Change]) {
        for c in changes {
            tracing::info!(target: REPORT_TARGET, step, change = %c.what, why = %c.why, "planned");
        }
        if self.shared.form == Form::Plain && !changes.is_empty() {
            let n = count(changes.len(), "change");
            out(&match self.shared.verb {
                Verb::Install => format!("{step}: applying {n}"),
                Verb::Plan => format!("{step}: {n}"),
            });
        }
        for c in changes {
            self.add_line(Some(step), Line::Change(c.clone()));
        }
    }

    fn step_finished(&self, step: &'static str, outcome: Outcome, elapsed: Duration) {
        tracing::info!(target: REPORT_TARGET, step, ?outcome, elapsed_ms = elapsed.as_millis() as u64, "finished");
        let view = {
            let mut state = self.lock();
            let at = state.steps.iter().rposition(|v| v.name == step);
            at.map(|i| state.steps.remove(i))
        };
        let Some(view) = view else { return };
        let changes = view
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Change(_)))
            .count();
        let warnings = view
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Warning(_)))
            .count();
        match &self.shared.multi {
            Some(m) => {
                let bars = view
                    .bar
                    .iter()
                    .chain(&view.live)
                    .chain(&view.more)
                    .chain(view.components.iter().map(|(_, b)| b));
                for b in bars {
                    b.finish_and_clear();
                    m.remove(b);
                }
                let mut block = vec![step_header(
                    step,
                    outcome,
                    elapsed,
                    self.shared.verb,
                    changes,
                    warnings,
                    true,
                )];
                block.extend(view.lines.iter().filter(|l| self.shown(l)).map(styled_line));
                if outcome == Outcome::Failed {
                    block.extend(view.last_components.iter().map(styled_component));
                }
                let _ = m.println(block.join("\n"));
            }
            // A plan's changes were counted when planned.
            None if self.shared.form == Form::Plain
                && !(self.shared.verb == Verb::Plan && outcome == Outcome::Changed) =>
            {
                out(&step_header(
                    step,
                    outcome,
                    elapsed,
                    self.shared.verb,
                    changes,
                    warnings,
                    false,
                ));
            }
            None => {}
        }
    }

    fn warning(&self, step: &'static str, message: &str) {
        tracing::warn!(target: REPORT_TARGET, step, "{message}");
        self.add_line(Some(step), Line::Warning(message.to_string()));
    }

    fn changed(&self, step: &'static str, c: &Change) {
        tracing::info!(target: REPORT_TARGET, step, change = %c.what, why = %c.why, "made");
        self.add_line(Some(step), Line::Change(c.clone()));
    }

    fn note(&self, step: &'static str, message: &str) {
        tracing::info!(target: REPORT_TARGET, step, "{message}");
        let line = Line::Note(message.to_string());
        if self.shown(&line) {
            self.add_line(Some(step), line);
        }
    }

    fn download(&self, what: &str, total: Option<u64>) -> Box<dyn ProgressHandle> {
        tracing::info!(target: REPORT_TARGET, what, total, "downloading");
        let step = self
            .lock()
            .steps
            .last()
            .map(|v| v.name)
            .unwrap_or("download");
        let bar = self.shared.multi.as_ref().map(|m| {
            let bar = m.add(match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::no_length(),
            });
            bar.set_style(
                ProgressStyle::with_template(
                    "  {msg} [{bar:30.cyan/dim}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("template is valid")
                .progress_chars("=> "),
            );
            bar.set_message(what.to_string());
            bar
        });
        if self.shared.form == Form::Plain {
            let size = total.map(|t| format!(" ({})", indicatif::HumanBytes(t)));
            out(&format!(
                "{step}: downloading {what}{}",
                size.unwrap_or_default()
            ));
        }
        Box::new(Download {
            display: self.clone(),
            step,
            what: what.to_string(),
            bar,
            bytes: 0,
            started: Instant::now(),
            finished: false,
        })
    }

    fn components(&self, step: &'static str, lines: &[ComponentLine]) {
        let shared = &self.shared;
        let mut state = self.lock();
        let Some(view) = state.steps.iter_mut().rev().find(|v| v.name == step) else {
            return;
        };
        if view.last_components == lines {
            return;
        }
        for l in lines {
            if !view.last_components.contains(l) {
                tracing::info!(target: REPORT_TARGET, step, component = %l.name, ready = l.ready, progress = %l.progress, reason = l.reason.as_deref().unwrap_or(""), "component");
                if shared.form == Form::Plain {
                    out(&format!("{step}: {}", plain_component(l)));
                }
            }
        }
        if let Some(m) = &shared.multi {
            view.components.retain(|(name, bar)| {
                let keep = lines.iter().any(|l| &l.name == name);
                if !keep {
                    bar.finish_and_clear();
                    m.remove(bar);
                }
                keep
            });
            for l in lines {
                let text = styled_component(l);
                match view.components.iter().find(|(n, _)| *n == l.name) {
                    Some((_, bar)) => bar.set_message(text),
                    None => {
                        let bar = m.add(static_line(&text));
                        bar.tick();
                        view.components.push((l.name.clone(), bar));
                    }
                }
            }
        }
        view.last_components = lines.to_vec();
    }
}

impl Display {
    /// Notes are detail: shown with `-v`, always logged.
    fn shown(&self, line: &Line) -> bool {
        !matches!(line, Line::Note(_)) || self.shared.verbose > 0
    }
}

/// One download's bar (terminal) or its start and end lines (plain).
struct Download {
    display: Display,
    step: &'static str,
    what: String,
    bar: Option<ProgressBar>,
    bytes: u64,
    started: Instant,
    finished: bool,
}

impl ProgressHandle for Download {
    fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(target: REPORT_TARGET, what = %self.what, bytes = self.bytes, secs, "downloaded");
        if self.display.shared.form == Form::Plain {
            out(&format!(
                "{}: downloaded {} ({} in {})",
                self.step,
                self.what,
                indicatif::HumanBytes(self.bytes),
                elapsed_text(self.started.elapsed())
            ));
        }
        self.clear();
    }
}

impl Download {
    fn clear(&mut self) {
        if let (Some(b), Some(m)) = (self.bar.take(), &self.display.shared.multi) {
            b.finish_and_clear();
            m.remove(&b);
        }
    }
}

impl Drop for Download {
    /// A download that failed leaves no bar behind; its error is told by the step.
    fn drop(&mut self) {
        self.clear();
    }
}

/// A line of text in the live area. Hidden until added to the display, so setting it up draws
/// nothing anywhere else.
fn static_line(text: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    bar.set_style(ProgressStyle::with_template("{wide_msg}").expect("template is valid"));
    bar.set_message(text.to_string());
    bar
}

/// `✓ k3s        1.2s`, `– k3s        up to date`, `✗ k3s        0.3s`, and on a plan
/// `• k3s        3 changes`.
fn step_header(
    step: &str,
    outcome: Outcome,
    elapsed: Duration,
    verb: Verb,
    changes: usize,
    warnings: usize,
    colour: bool,
) -> String {
    let time = elapsed_text(elapsed);
    let warned = match warnings {
        0 => String::new(),
        n => format!(", {}", count(n, "warning")),
    };
    let (mark, state) = match (outcome, verb) {
        (Outcome::Failed, _) => (style("✗").red().bold(), format!("failed after {time}")),
        (Outcome::UpToDate, _) if step == "preflight" => {
            (style("✓").green(), format!("passed{warned}"))
        }
        (Outcome::UpToDate, _) => (style("–").dim(), format!("up to date{warned}")),
        (Outcome::Changed, Verb::Install) => (style("✓").green(), format!("{time}{warned}")),
        (Outcome::Changed, Verb::Plan) => (
            style("•").yellow(),
            format!("{} to make{warned}", count(changes, "change")),
        ),
    };
    if colour {
        format!("{mark} {step:<NAME_WIDTH$} {}", style(state).dim())
    } else {
        let verb = match (outcome, verb) {
            (Outcome::Changed, Verb::Install) => "done in ",
            _ => "",
        };
        format!("{step}: {verb}{state}")
    }
}

fn styled_line(line: &Line) -> String {
    match line {
        Line::Change(c) => format!(
            "  {} {}  {}",
            style("+").green(),
            c.what,
            style(format!("({})", c.why)).dim()
        ),
        Line::Warning(w) => format!("  {} {}", style("!").yellow().bold(), style(w).yellow()),
        Line::Note(n) => format!("  {}", style(format!("· {n}")).dim()),
    }
}

fn plain_line(step: &str, line: &Line) -> String {
    match line {
        Line::Change(c) => format!("  + {c}"),
        Line::Warning(w) => format!("{step}: warning: {w}"),
        Line::Note(n) => format!("{step}: {n}"),
    }
}

fn styled_component(l: &ComponentLine) -> String {
    let mark = if l.ready {
        style("✓").green()
    } else {
        style("…").yellow()
    };
    let reason = l
        .reason
        .as_deref()
        .map(|r| format!("  {}", style(r).red()))
        .unwrap_or_default();
    format!(
        "  {mark} {:<18} {}{reason}",
        l.name,
        style(&l.progress).dim()
    )
}

fn plain_component(l: &ComponentLine) -> String {
    let reason = l
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let state = if l.ready { "ready" } else { "waiting" };
    format!("{} {state}: {}{reason}", l.name, l.progress)
}

/// `0.4s`, `12s`, `3m05s`.
pub fn elapsed_text(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1}s")
    } else if secs < 60.0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// `1 change`, `3 changes`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A line on stdout; a closed pipe is not worth a panic.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn err(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_short_and_human() {
        assert_eq!(elapsed_text(Duration::from_millis(420)), "0.4s");
        assert_eq!(elapsed_text(Duration::from_millis(12_300)), "12s");
        assert_eq!(elapsed_text(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn plain_step_lines_name_the_step_and_its_state() {
        let t = Duration::from_millis(1200);
        let h = |o, v, c, w| step_header("k3s", o, t, v, c, w, false);
        assert_eq!(
            h(Outcome::Changed, Verb::Install, 3, 0),
            "k3s: done in 1.2s"
        );
        assert_eq!(h(Outcome::UpToDate, Verb::Install, 0, 0), "k3s: up to date");
        assert_eq!(
            h(Outcome::Failed, Verb::Install, 3, 0),
            "k3s: failed after 1.2s"
        );
        assert_eq!(
            h(Outcome::Changed, Verb::Plan, 1, 2),
            "k3s: 1 change to make, 2 warnings"
        );
        assert_eq!(
            step_header(
                "preflight",
                Outcome::UpToDate,
                t,
                Verb::Install,
                0,
                1,
                false
            ),
            "preflight: passed, 1 warning"
        );
    }

    #[test]
    fn plain_lines_carry_no_control_codes() {
        let lines = [
            plain_line("k3s", &Line::Change(Change::new("write /x", "missing"))),
            plain_line("k3s", &Line::Warning("w".into())),
            plain_component(&ComponentLine {
                name: "foreman".into(),
                ready: false,
                progress: "0/1 ready".into(),
                reason: Some("ImagePullBackOff".into()),
            }),
        ];
        assert_eq!(lines[0], "  + write /x (missing)");
        assert_eq!(lines[1], "k3s: warning: w");
        assert_eq!(lines[2], "foreman waiting: 0/1 ready (ImagePullBackOff)");
        assert!(lines.iter().all(|l| !l.contains('\x1b')));
    }
}
