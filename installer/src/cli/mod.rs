//! The user interface: argument parsing, output, exit codes. The only module that prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod status;

use crate::config::{self, Layers, DEFAULT_CONFIG_PATH, KEYS};
use crate::facts::Facts;
use crate::host::{Host, SystemRunner};
use crate::steps::{self, Context, RunOptions, StepReport};
use anyhow::Context as _;
use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// foreman-box: one command from a fresh Linux host to a working Foreman on k3s.
#[derive(Parser, Debug)]
#[command(name = "foreman-box", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install or converge: preflight, k3s, PostgreSQL, storage. Safe to re-run.
    Install(RunArgs),
    /// Show what `install` would change, and why; change nothing.
    /// Exits 0 when up to date, 2 when something would change, 1 on error.
    Plan(RunArgs),
    /// Run only the preflight checks.
    Preflight(RunArgs),
    /// What is installed, versions and service state.
    Status {
        #[command(flatten)]
        run: RunArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print every manifest for an existing cluster: the CRD, the operator and the default
    /// Foreman resource (`kubectl apply -f -`).
    Render {
        /// FQDN for the default resource.
        #[arg(long)]
        hostname: Option<String>,
    },
    /// The in-cluster operator (the default), or its tools.
    Operator {
        #[command(subcommand)]
        command: Option<OperatorCommand>,
    },
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
    /// Run only these steps (preflight, k3s, postgres, storage).
    #[arg(long, value_name = "STEP[,STEP]", value_delimiter = ',', global = true)]
    only: Vec<String>,
    /// Turn a failed preflight check into a warning (repeatable; `all` for every check).
    #[arg(long, value_name = "NAME", value_delimiter = ',', global = true)]
    ignore_preflight: Vec<String>,
    /// More detail in the log (-v debug, -vv trace).
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
            .filter_map(|(key, _, _)| {
                let from_cli = m.value_source(key) == Some(clap::parser::ValueSource::CommandLine);
                from_cli
                    .then(|| m.get_one::<String>(key).map(|v| (*key, v.clone())))
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
        for (key, default, help) in KEYS {
            let boolean = *default == "true" || *default == "false";
            let mut arg = clap::Arg::new(*key)
                .long(config::flag_name(key))
                .help(format!(
                    "{help} [config: {key}, env: {}]",
                    config::env_name(key)
                ))
                .global(true)
                .help_heading("Settings (also in config.toml and FOREMAN_BOX_* variables)");
            if boolean {
                arg = arg
                    .value_name("BOOL")
                    .num_args(0..=1)
                    .default_missing_value("true");
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = match &cli.command {
        Command::Install(r)
        | Command::Plan(r)
        | Command::Preflight(r)
        | Command::Status { run: r, .. } => r.verbose,
        Command::Render { .. } | Command::Operator { .. } => 0,
    };
    init_logging(verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOREMAN_BOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Install(args) => {
            let (cx, steps) = prepare(&args)?;
            let _one_run = lock(&cx)?;
            let reports = steps::apply(&cx, &steps).await?;
            let n: usize = reports.iter().map(|r| r.changes.len()).sum();
            if n == 0 {
                println!("foreman-box: up to date, nothing changed");
            } else {
                println!("foreman-box: applied {n} change(s)");
                print_reports(&reports);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            let (cx, steps) = prepare(&args)?;
            let reports = steps::plan(&cx, &steps).await?;
            print_reports(&reports);
            let pending = reports.iter().any(|r| !r.changes.is_empty());
            Ok(if pending {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Preflight(mut args) => {
            args.only = vec!["preflight".into()];
            let (cx, _) = prepare(&args)?;
            let findings = steps::preflight::run_checks(&cx.facts, &cx.config);
            let (fatal, ignored) =
                steps::preflight::partition(findings, &cx.options.ignore_preflight);
            for (name, _) in steps::preflight::CHECKS {
                let mark = if fatal.iter().any(|f| f.check == *name) {
                    "✗"
                } else if ignored.iter().any(|f| f.check == *name) {
                    "!"
                } else {
                    "✓"
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
        Command::Status { run, json } => {
            let (cx, _) = prepare(&run)?;
            let report = status::gather(&cx);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { hostname } => {
            let mut objs = vec![crate::manifests::namespace()];
            objs.extend(foreman_box_bundle::operator_objects());
            let defaults = Layers::new().resolve()?;
            objs.push(foreman_box_bundle::default_foreman(
                hostname.as_deref(),
                defaults.foreman.dynflow_workers,
                defaults.foreman.katello,
                defaults.foreman.remote_execution,
            ));
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
                let text = if file.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    fs_err::read_to_string(&file)?
                };
                let fm =
                    foreman_operator::resources::read_foreman(&file.display().to_string(), &text)?;
                print!(
                    "{}",
                    foreman_operator::resources::to_yaml(&foreman_operator::resources::desired(
                        &fm
                    ))?
                );
                Ok(ExitCode::SUCCESS)
            }
            OperatorCommand::Crd => {
                print!("{}", foreman_operator::crd::crd_yaml());
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// One run at a time for runs that change the host. `plan` changes nothing (not even a lock
/// file), so it takes none; racing an install, it shows a moment of it.
fn lock(cx: &Context) -> anyhow::Result<crate::host::RunLock> {
    Ok(cx
        .host
        .lock(|holder| tracing::warn!("waiting for another foreman-box run to finish: {holder}"))?)
}

fn print_reports(reports: &[StepReport]) {
    for r in reports {
        if r.changes.is_empty() {
            println!("{}: up to date", r.step);
        } else {
            println!("{}: {} change(s)", r.step, r.changes.len());
            for c in &r.changes {
                println!("  + {} ({})", c.what, c.why);
            }
        }
    }
}

/// Configuration, facts and the selected steps: everything a command needs.
fn prepare(args: &RunArgs) -> anyhow::Result<(Context, Vec<Box<dyn steps::Step>>)> {
    let host = Host::new(&args.root, Arc::new(SystemRunner));
    let (file, shown) = match &args.config {
        Some(p) => (p.clone(), p.clone()),
        None => (
            host.path(DEFAULT_CONFIG_PATH),
            PathBuf::from(DEFAULT_CONFIG_PATH),
        ),
    };
    let config = Layers::new()
        .with_file(&file, &shown)?
        .with_env(std::env::vars())?
        .with_flags(args.settings.values.clone())?
        .resolve()?;
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
    let facts = Facts::gather(&host, &config);
    let options = RunOptions {
        skip_start,
        ignore_preflight: args.ignore_preflight.clone(),
    };
    let cx = Context::new(host, facts, config, options, admin_password);
    Ok((cx, steps))
}
