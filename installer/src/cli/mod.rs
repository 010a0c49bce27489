//! The user interface: argument parsing, output, exit codes. The only module that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bundle;
mod daytwo;
pub mod display;
pub mod logging;
mod man;
mod status;

use crate::config::{self, Layers, DEFAULT_CONFIG_PATH, KEYS};
use crate::facts::Facts;
use crate::host::{Host, HostError, SystemRunner};
use crate::steps::{self, Context, RunOptions, StepReport};
use anyhow::Context as _;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use display::{Display, Form, Verb};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// foreman-box: one command from a fresh Linux host to a working Foreman on k3s.
#[derive(Parser, Debug)]
#[command(name = "foreman-box", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install or converge: preflight, the kept settings, k3s, PostgreSQL, storage, the operator,
    /// the Foreman resource.
    /// Safe to re-run.
    Install(RunArgs),
    /// Show what `install` would change, and why; change nothing on the host but this run's
    /// own log in /var/log/foreman-box (it takes no lock). Exits 0 when up to date, 2 when
    /// something would change, 1 on error.
    Plan {
        #[command(flatten)]
        run: RunArgs,
        /// `json`: one document on stdout, {"steps":[{"step","changes":[{"what","why","action"}]}],"pending"}; `action` is the planned operation with its `kind` and fields.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Run only the preflight checks.
    Preflight(RunArgs),
    /// What is installed, versions and service state.
    Status {
        #[command(flatten)]
        run: RunArgs,
        /// `json`: one document on stdout, for machines.
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        /// The same as `--output json`.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Print a shell completion script: `foreman-box completions bash >
    /// /usr/share/bash-completion/completions/foreman-box`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `foreman-box man > /usr/local/share/man/man1/foreman-box.1`.
    Man,
    /// Print every manifest for an existing cluster: the CRD, the operator and the Foreman
    /// resource install would apply, from the same configuration (config.toml, FOREMAN_BOX_*
    /// variables, flags; the hostname defaults to this host's FQDN), for `kubectl apply -f -`.
    Render(RunArgs),
    /// The in-cluster operator (the default), or its tools.
    Operator {
        #[command(subcommand)]
        command: Option<OperatorCommand>,
    },
    /// Every image the operator renders, per release stream: reference, digest, source.
    Images(bundle::ImagesArgs),
    /// The offline bundle: `create` one on a connected machine, `verify` one before use.
    Bundle {
        #[command(subcommand)]
        command: bundle::BundleCommand,
    },
    /// Remove k3s and foreman-box. Keeps the PostgreSQL databases and roles, the Pulp content and
    /// /etc/foreman-box unless --purge. Runs the embedded foreman-box-uninstall.sh.
    Uninstall(UninstallArgs),
    /// Back up the databases, the Pulp content, /etc/foreman-box and the Foreman resource, with
    /// Foreman in maintenance. Refuses while tasks run (see --wait-for-tasks).
    Backup(daytwo::BackupArgs),
    /// Restore a backup (after `uninstall --purge`, or onto a fresh host), then converge;
    /// --validate only checks it.
    Restore(daytwo::RestoreArgs),
    /// Check that Foreman works: resource, pods, ping, tasks, certificates, disk, images.
    /// Exits 0 when healthy, 1 when not.
    Health(daytwo::HealthArgs),
    /// Collect logs, cluster objects and facts for a bug report, without secrets.
    SupportBundle(daytwo::SupportArgs),
    /// Move Foreman one release stream forward, when healthy and backed up.
    Upgrade(daytwo::UpgradeArgs),
}

/// `scripts/uninstall.sh`, the same script install.sh puts at /usr/local/bin/foreman-box-uninstall.sh.
const UNINSTALL_SCRIPT: &str = include_str!("../../../scripts/uninstall.sh");

#[derive(Args, Debug, Clone)]
struct UninstallArgs {
    /// Also drop the databases foreman, candlepin and pulp and their roles, and remove the Pulp
    /// content and /etc/foreman-box.
    #[arg(long)]
    purge: bool,
    /// Resolve every host path under DIR and touch no service (tests).
    #[arg(
        long,
        value_name = "DIR",
        env = "FOREMAN_BOX_ROOT",
        default_value = "/"
    )]
    root: PathBuf,
    /// Print the uninstall script and exit (install.sh installs it next to the binary).
    #[arg(long, conflicts_with = "purge")]
    print_script: bool,
}

#[derive(Subcommand, Debug)]
enum OperatorCommand {
    /// Reconcile Foreman resources in this pod's namespace (POD_NAMESPACE) until stopped.
    Run,
    /// Print the objects the operator would create for a Foreman resource, as YAML.
    Render {
        /// The Foreman resource (YAML); `-` for standard input.
        file: PathBuf,
    },
    /// Print the CustomResourceDefinition generated from the Rust type.
    Crd,
}

/// The form of a command's result on stdout.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// For people: lines, colour on a terminal.
    Human,
    /// For machines: one JSON document with stable keys.
    Json,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Resolve every host path under DIR (tests, image building). Implies --skip-start.
    #[arg(
        long,
        value_name = "DIR",
        env = "FOREMAN_BOX_ROOT",
        default_value = "/",
        global = true
    )]
    root: PathBuf,
    /// Configuration file [default: /etc/foreman-box/config.toml under the root].
    #[arg(long, value_name = "FILE", env = "FOREMAN_BOX_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Write everything, start nothing.
    #[arg(long, global = true)]
    skip_start: bool,
    /// Run only these steps (preflight, settings, k3s, postgres, storage, operator, foreman).
    #[arg(long, value_name = "STEP[,STEP]", value_delimiter = ',', global = true)]
    only: Vec<String>,
    /// Turn a failed preflight check into a warning (repeatable; `all` for every check).
    #[arg(long, value_name = "NAME", value_delimiter = ',', global = true)]
    ignore_preflight: Vec<String>,
    /// More detail on the screen (-v notes and info, -vv debug, -vvv trace); the run log in
    /// /var/log/foreman-box always has the debug detail.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(flatten)]
    settings: ConfigFlags,
}

/// One flag per configuration key, generated from the key table so the two cannot drift.
#[derive(Debug, Clone, Default)]
struct ConfigFlags {
    values: Vec<(&'static str, String)>,
}

impl FromArgMatches for ConfigFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let values = KEYS
            .iter()
            .filter_map(|k| {
                let from_cli =
                    m.value_source(k.name) == Some(clap::parser::ValueSource::CommandLine);
                from_cli
                    .then(|| m.get_one::<String>(k.name).map(|v| (k.name, v.clone())))
                    .flatten()
            })
            .collect();
        Ok(ConfigFlags { values })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for ConfigFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for k in KEYS {
            let default = if k.default.is_empty() {
                String::new()
            } else {
                format!(" [default: {}]", k.default)
            };
            let mut arg = clap::Arg::new(k.name)
                .long(config::flag_name(k.name))
                .help(format!(
                    "{}{default} [config: {}, env: {}]",
                    k.help,
                    k.name,
                    config::env_name(k.name)
                ))
                .global(true)
                .help_heading("Settings (also in config.toml and FOREMAN_BOX_* variables)");
            if k.kind == config::Kind::Bool {
                arg = arg
                    .value_name("BOOL")
                    .num_args(0..=1)
                    .default_missing_value("true");
            } else if k.kind == config::Kind::Number {
                arg = arg.value_name("NUMBER");
            } else {
                arg = arg.value_name("VALUE");
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The runtime every command but the operator runs on (the install bench measures downloads on
/// this one), with the allocator set for the large buffers of a download. One worker thread:
/// the installer's tasks wait on the network, PostgreSQL and the cluster, and its CPU work
/// (hashing, key generation) runs on blocking threads; with two workers, a download's chunks
/// crossed between hyper's connection task and the task taking them on every chunk.
pub fn runtime() -> tokio::runtime::Runtime {
    keep_buffers_in_heap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime starts")
}

/// A download passes hundreds of megabytes through buffers of about 400 KiB that hyper allocates
/// afresh while earlier ones wait to be written. glibc's malloc maps each block above its
/// threshold (128 KiB at start, raised only as such blocks are freed) and unmaps it when freed,
/// so the first 500 MiB download of a process took 34,000 page faults (387 ms, against 290-320 ms
/// for the next ones). Blocks under 8 MiB now come from the heap, which keeps up to 64 MiB of
/// freed memory for reuse: 2,900 faults, 333 ms. The operator, which idles, keeps the defaults.
fn keep_buffers_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets two tuning parameters of glibc's allocator under its own lock; it
    // touches no memory of ours, and a refused value leaves the default in place.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 8 << 20);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's usage errors would exit 2, which is `plan`'s "changes pending": a mistyped
            // flag exits 1 like every other error. Help and version go to stdout and exit 0.
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let runtime = match &cli.command {
        // The operator idles most of its life: one thread keeps its memory small (each worker
        // thread has its own stack and malloc arena); key generation runs on a blocking thread.
        Command::Operator { .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime starts"),
        _ => runtime(),
    };
    let (name, args, verb, output) = match &cli.command {
        Command::Install(r) => ("install", r, Verb::Install, Output::Human),
        Command::Plan { run, output } => ("plan", run, Verb::Plan, *output),
        Command::Preflight(r) => ("preflight", r, Verb::Install, Output::Human),
        Command::Status { run, output, json } => {
            let output = if *json { Output::Json } else { *output };
            ("status", run, Verb::Install, output)
        }
        Command::Bundle { command } => {
            let form = match command.output() {
                Output::Json => Form::Quiet,
                Output::Human => Form::detect(),
            };
            let display = Display::new(form, Verb::Install, command.verbose());
            logging::init(&display, command.verbose(), None);
            let command = command.clone();
            return finish(
                runtime.block_on(bundle::run(command, Arc::new(display))),
                None,
                form,
            );
        }
        Command::Backup(a) => ("backup", &a.run, Verb::Install, Output::Human),
        Command::Restore(a) => ("restore", &a.run, Verb::Install, Output::Human),
        Command::Health(a) => ("health", &a.run, Verb::Install, a.output),
        Command::SupportBundle(a) => ("support-bundle", &a.run, Verb::Install, Output::Human),
        Command::Upgrade(a) => ("upgrade", &a.run, Verb::Install, Output::Human),
        Command::Render(_)
        | Command::Images(_)
        | Command::Operator { .. }
        | Command::Uninstall(_)
        | Command::Completions { .. }
        | Command::Man => {
            logging::init_stderr(0);
            return finish(runtime.block_on(run_tool(cli.command)), None, Form::Plain);
        }
    };
    let form = match output {
        Output::Json => Form::Quiet,
        Output::Human => Form::detect(),
    };
    let display = Display::new(form, verb, args.verbose);
    let host = Host::new(&args.root, Arc::new(SystemRunner));
    let (log, log_error) = match logging::open_run_log(&host, name) {
        Ok(l) => (Some(l), None),
        // Not a full disk or a read-only /var/log that a run may go on without: a link put
        // where our files go, refused before anything is written.
        Err(e @ (HostError::Symlink { .. } | HostError::OutsideRoot { .. })) => {
            return finish(Err(e.into()), None, form);
        }
        Err(e) => (None, Some(e)),
    };
    let log_path = log.as_ref().map(|l| l.path.clone());
    logging::init(&display, args.verbose, log);
    if let Some(e) = log_error {
        tracing::warn!(
            "no run log: {}; going on without one",
            anyhow::Error::new(e)
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ")
        );
    }
    tracing::info!(target: display::REPORT_TARGET, command = name, version = env!("CARGO_PKG_VERSION"), root = %args.root.display(), "foreman-box started");
    let result = runtime.block_on(run(cli.command, display, output));
    finish(result, log_path, form)
}

/// The exit code; an error is logged, printed once with its causes, and ends with the log's path.
fn finish(result: anyhow::Result<ExitCode>, log: Option<PathBuf>, form: Form) -> ExitCode {
    let e = match result {
        Ok(code) => return code,
        Err(e) => e,
    };
    // Into the run log; tools have none, and their stderr gets the error once, below.
    if log.is_some() {
        tracing::error!(target: display::REPORT_TARGET, "{e:#}");
    }
    if form == Form::Quiet {
        // Stdout was to carry a document: a script reading it gets one that says what failed.
        println!("{}", error_document(&e, log.as_deref()));
    }
    let terminal = form == Form::Terminal;
    let label = if terminal {
        console::style("error:").red().bold().to_string()
    } else {
        "error:".to_string()
    };
    let message = e.to_string();
    let message = if terminal {
        // The `help:` lines are what to do next: make them stand out.
        message
            .lines()
            .map(|l| match l.strip_prefix("help:") {
                Some(rest) => format!("{}{rest}", console::style("help:").cyan().bold()),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        message
    };
    eprintln!("{label} {message}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(path) = log {
        eprintln!("the full log of this run: {}", path.display());
    }
    ExitCode::from(1)
}

/// A failed `--output json` command's document: `{"error": {"message", "help", "causes",
/// "log"}}` (`log` is null when the run kept none).
fn error_document(e: &anyhow::Error, log: Option<&std::path::Path>) -> String {
    let text = e.to_string();
    let (help, message): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.starts_with("help:"));
    let help: Vec<&str> = help
        .iter()
        .map(|l| l.trim_start_matches("help:").trim())
        .collect();
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "error": {
            "message": message.join("\n"),
            "help": help.join("\n"),
            "causes": causes,
            "log": log.map(|l| l.display().to_string()),
        }
    }))
    .unwrap_or_default()
}

async fn run(command: Command, display: Display, output: Output) -> anyhow::Result<ExitCode> {
    let reporter: Arc<dyn steps::Reporter> = Arc::new(display.clone());
    match command {
        Command::Install(args) => {
            let started = Instant::now();
            let (cx, steps) = prepare(&args, reporter)?;
            if steps.iter().any(|s| s.name() == "operator") {
                // Refused before any step runs: such a build must change nothing.
                steps::operator::require_static(&cx.host)?;
            }
            let _one_run = lock(&cx)?;
            let reports = steps::apply(&cx, &steps).await?;
            let n: usize = reports.iter().map(|r| r.changes.len()).sum();
            let time = display::elapsed_text(started.elapsed());
            display.line(&match (n, display.form()) {
                (0, Form::Terminal) => format!("Up to date: nothing changed ({time})."),
                (0, _) => "foreman-box: up to date, nothing changed".to_string(),
                (n, Form::Terminal) => format!("Done: {} in {time}.", display::count(n, "change")),
                (n, _) => format!(
                    "foreman-box: applied {} in {time}",
                    display::count(n, "change")
                ),
            });
            if steps.iter().any(|s| s.name() == "foreman") && steps::foreman::connects(&cx) {
                display.line(&steps::foreman::access_text(&cx.facts.fqdn));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { run: args, .. } => {
            let (cx, steps) = prepare(&args, reporter)?;
            let reports = steps::plan(&cx, &steps).await?;
            let n: usize = reports.iter().map(|r| r.changes.len()).sum();
            if output == Output::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan_document(&reports))?
                );
            } else if n == 0 {
                display.line("Up to date: install would change nothing.");
            } else {
                display.line(&format!(
                    "install would make {}; `foreman-box install` makes them.",
                    display::count(n, "change")
                ));
            }
            Ok(if n > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Preflight(mut args) => {
            args.only = vec!["preflight".into()];
            let (cx, _) = prepare(&args, reporter)?;
            let findings = steps::preflight::run_checks(&cx.facts, &cx.config);
            let (fatal, ignored) =
                steps::preflight::partition(findings, &cx.options.ignore_preflight);
            for (name, _) in steps::preflight::CHECKS {
                let mark = if fatal.iter().any(|f| f.check == *name) {
                    console::style("✗").red().bold()
                } else if ignored.iter().any(|f| f.check == *name) {
                    console::style("!").yellow().bold()
                } else {
                    console::style("✓").green()
                };
                println!("{mark} {name}");
            }
            if !ignored.is_empty() {
                println!("ignored as asked:\n{}", steps::preflight::render(&ignored));
            }
            if fatal.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{}", steps::preflight::render(&fatal));
                Ok(ExitCode::from(1))
            }
        }
        Command::Status { run, .. } => {
            let (cx, _) = prepare(&run, reporter)?;
            let report = status::gather(&cx).await;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(a) => daytwo::backup(a, display, reporter).await,
        Command::Restore(a) => daytwo::restore(a, display, reporter).await,
        Command::Health(a) => daytwo::health(a, reporter).await,
        Command::SupportBundle(a) => daytwo::support_bundle(a, display, reporter).await,
        Command::Upgrade(a) => daytwo::upgrade(a, display, reporter).await,
        other => run_tool(other).await,
    }
}

/// `plan --output json`: the keys are an interface; change them only compatibly.
fn plan_document(reports: &[StepReport]) -> serde_json::Value {
    serde_json::json!({
        "steps": reports,
        "pending": reports.iter().any(|r| !r.changes.is_empty()),
    })
}

/// Commands that need no host: they print a document and log to stderr.
async fn run_tool(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "foreman-box", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            man::render(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(run) => {
            let host = Host::new(&run.root, Arc::new(SystemRunner));
            let config = load_config(&run, &host)?;
            let fqdn = crate::facts::fqdn_of(&host, &config);
            let mut objs = vec![crate::manifests::namespace()];
            objs.extend(foreman_box_bundle::operator_objects());
            objs.push(steps::foreman::applied(&steps::foreman::resource(
                &config,
                Some(&fqdn),
            )));
            print!(
                "---\n{}{}",
                foreman_box_bundle::CRD_YAML,
                crate::manifests::to_yaml(&objs)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Operator { command } => match command.unwrap_or(OperatorCommand::Run) {
            OperatorCommand::Run => {
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the Kubernetes API")?;
                let namespace = std::env::var("POD_NAMESPACE")
                    .unwrap_or_else(|_| client.default_namespace().to_string());
                tracing::info!(namespace = %namespace, "foreman operator starting");
                foreman_operator::controller::run(client, &namespace).await;
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Render { file } => {
                let text = read_resource(&file)?;
                let fm = foreman_operator::read::read_foreman(&file.display().to_string(), &text)?;
                print!(
                    "{}",
                    foreman_operator::resources::to_yaml(&foreman_operator::resources::desired(
                        &fm
                    ))?
                );
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Crd => {
                print!("{}", foreman_operator::schema::crd_yaml());
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Uninstall(args) => uninstall(&args),
        Command::Images(args) => bundle::images(&args),
        Command::Install(_)
        | Command::Bundle { .. }
        | Command::Plan { .. }
        | Command::Preflight(_)
        | Command::Status { .. }
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::Health(_)
        | Command::SupportBundle(_)
        | Command::Upgrade(_) => unreachable!("host commands run through `run`"),
    }
}

/// The text of `operator render`'s input: a regular file (or `-`, standard input) of at most
/// what a Foreman resource may be, read without going past that bound.
fn read_resource(file: &std::path::Path) -> anyhow::Result<String> {
    use crate::host::{HostFs, TextError};
    use std::io::Read;
    let max = foreman_operator::read::MAX_INPUT_BYTES as u64;
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .take(max + 1)
            .read_to_string(&mut text)
            .context("reading the Foreman resource from standard input")?;
        return Ok(text);
    }
    let shown = file.display();
    let help = "help: give the path of a YAML file holding one Foreman resource, or `-` to read it from standard input";
    match HostFs.read_text(file, max) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => anyhow::bail!("Foreman resource file {shown} does not exist\n{help}"),
        Err(TextError::NotAFile(what)) => {
            anyhow::bail!("Foreman resource file {shown} is {what}, not a regular file\n{help}")
        }
        Err(TextError::TooLarge) => anyhow::bail!(
            "Foreman resource file {shown} is larger than {max} bytes\nhelp: a Foreman resource is a few dozen lines; check that the path names the right file"
        ),
        Err(TextError::NotText(offset)) => anyhow::bail!(
            "Foreman resource file {shown} is not UTF-8 text (byte {offset} is not)\nhelp: save the file as UTF-8"
        ),
        Err(TextError::Host(e)) => Err(e.into()),
    }
}

/// One run at a time for runs that change the host. `plan` changes nothing (not even a lock
/// file), so it takes none; racing an install, it shows a moment of it.
fn lock(cx: &Context) -> anyhow::Result<crate::host::RunLock> {
    Ok(cx
        .host
        .lock(|holder| tracing::warn!("waiting for another foreman-box run to finish: {holder}"))?)
}

/// Runs the embedded script with `sh -s`, the script on standard input (no temp file to clean
/// up). Its lines show as it runs.
fn uninstall(args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    use crate::host::Cmd;
    if args.print_script {
        print!("{UNINSTALL_SCRIPT}");
        return Ok(ExitCode::SUCCESS);
    }
    let root = args
        .root
        .to_str()
        .context("--root must be valid UTF-8")?
        .to_string();
    let mut cmd = Cmd::new("sh").args(["-s", "--", "--root", root.as_str()]);
    if args.purge {
        cmd = cmd.arg("--purge");
    }
    // Stdin is typed as a secret; the script is not one, it is simply never logged either.
    let status = SystemRunner.stream(&cmd.stdin(crate::secret::Secret::new(UNINSTALL_SCRIPT)))?;
    Ok(match u8::try_from(status) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::from(1),
    })
}

/// What foreman-box keeps on the host: none may be a symbolic link (nor, under `--root`, lead out
/// of the root). Checked before any command plans, so such a link changes nothing.
const OWNED: &[&str] = &[
    crate::backup::ETC_DIR,
    crate::kept::SECRETS_DIR,
    logging::LOG_DIR,
    crate::host::LOCK_PATH,
    steps::k3s::IMAGES_DIR,
    steps::operator::ARCHIVE,
];

/// Configuration, facts and the selected steps: everything a command needs.
fn prepare(
    args: &RunArgs,
    reporter: Arc<dyn steps::Reporter>,
) -> anyhow::Result<(Context, Vec<steps::Step>)> {
    let host = Host::new(&args.root, Arc::new(SystemRunner));
    host.refuse_links(OWNED)?;
    let mut config = load_config(args, &host)?;
    // Every byte of a bundle is checked before any step plans, so a bad one changes nothing.
    let bundle = match config.bundle.clone() {
        None => None,
        Some(path) => Some(Arc::new(open_bundle(&path, &mut config, reporter.clone())?)),
    };
    let admin_password = config::admin_password(
        &config.postgres,
        std::env::var(config::ADMIN_PASSWORD_ENV).ok(),
        |p| {
            host.fs()
                .read_string(&host.path(p))
                .map_err(std::io::Error::other)
                .and_then(|o| o.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound)))
        },
    )?;
    let mut skip_start = args.skip_start;
    if !host.is_real_root() && !skip_start {
        tracing::info!(root = %args.root.display(), "--root given: starting nothing (--skip-start)");
        skip_start = true;
    }
    let steps = steps::select(&args.only)?;
    let facts = Facts::gather(&host, &config, !skip_start);
    let options = RunOptions {
        skip_start,
        ignore_preflight: args.ignore_preflight.clone(),
    };
    if let Some(b) = &bundle {
        let arch = &b.manifest().arch;
        if arch != facts.arch.name() {
            return Err(crate::error::Error::WrongBundle {
                path: b.path().to_path_buf(),
                found: format!("linux/{arch}"),
                wanted: format!("linux/{}", facts.arch.name()),
                help: format!(
                    "make one for this host with `foreman-box bundle create --arch {}`",
                    facts.arch.name()
                ),
            }
            .into());
        }
    }
    let mut cx = Context::new(host, facts, config, options, admin_password).with_reporter(reporter);
    if let Some(b) = bundle {
        cx = cx.with_bundle(b);
    }
    Ok((cx, steps))
}

/// Opens and verifies the bundle; the k3s release becomes the bundle's (no channel is asked).
fn open_bundle(
    path: &std::path::Path,
    config: &mut config::Config,
    reporter: Arc<dyn steps::Reporter>,
) -> anyhow::Result<foreman_box_bundle::archive::Bundle> {
    let b = foreman_box_bundle::archive::Bundle::open(path, &bundle::ReporterProgress(reporter))
        .map_err(crate::error::Error::from)?;
    let version = &b.manifest().k3s.version;
    if config.k3s.version_from_user && &config.k3s.version != version {
        return Err(crate::error::Error::WrongBundle {
            path: path.to_path_buf(),
            found: format!("k3s {version}"),
            wanted: format!("k3s {} (k3s.version)", config.k3s.version),
            help: "leave k3s.version unset to install the bundle's k3s, or make a bundle with that version (`bundle create --k3s-version`)".into(),
        }
        .into());
    }
    config.k3s.version = version.clone();
    config.k3s.version_from_user = true;
    tracing::info!(bundle = %path.display(), k3s = %version, "bundle verified: every member is intact");
    Ok(b)
}

/// The configuration as every command reads it: the file, then FOREMAN_BOX_* variables, then
/// flags, each checked where it is read.
fn load_config(args: &RunArgs, host: &Host) -> anyhow::Result<config::Config> {
    // An explicit --config must exist; the default file is optional. Messages name the file
    // that was read: under --root, <root>/etc/foreman-box/config.toml, so that their `help:`
    // (chmod, chown) never points at the real host's file.
    let (file, shown, required) = match &args.config {
        Some(p) => (p.clone(), p.clone(), true),
        None => (
            host.path(DEFAULT_CONFIG_PATH),
            host.path(DEFAULT_CONFIG_PATH),
            false,
        ),
    };
    let mut layers = Layers::new();
    match config::read_file(host.fs(), &file)? {
        None if required => return Err(config::ConfigError::Missing { path: shown }.into()),
        None => {}
        Some(text) => {
            let mode = host.fs().mode(&file)?.unwrap_or(0);
            let (uid, _) = host.fs().owner(&file)?.unwrap_or((0, 0));
            config::check_file_safety(&shown, mode, uid, nix::unistd::geteuid().as_raw())?;
            layers = layers.with_text(&text, &shown)?;
        }
    }
    config::check_preflight_names(
        &args.ignore_preflight,
        &steps::preflight::CHECKS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>(),
    )?;
    let layers = layers
        .with_process_env()?
        .with_flags(args.settings.values.clone())?;
    let mut config = layers.resolve()?;
    layers.check_under_root(&config, &args.root, |p| host.fs().canonical(p))?;
    config.given = layers.given(&host.path(DEFAULT_CONFIG_PATH));
    Ok(config)
}
