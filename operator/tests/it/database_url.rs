//! Foreman's DATABASE_URL carries the database user and password from a Secret: a password with
//! `@:/%?#` must reach Rails intact. The rendered container command is run as it is (Ruby, as
//! the image runs it) with such a password in `DB_PASSWORD`, and the program it starts reads
//! DATABASE_URL back with Ruby's `URI.parse` and ActiveRecord's own DATABASE_URL reader
//! (`ActiveRecord::DatabaseConfigurations::ConnectionUrlResolver`, Debian's ruby-activerecord,
//! which scripts/test.sh installs).

use foreman_operator::read::read_foreman;
use foreman_operator::resources::desired;
use serde_json::Value;
use std::process::Command;

/// Prints what URI and ActiveRecord read from DATABASE_URL, as JSON.
const READER: &str = r#"
require 'json'
require 'uri'
require 'active_record'
require 'active_record/database_configurations'
url = ENV.fetch('DATABASE_URL')
u = URI.parse(url)
c = ActiveRecord::DatabaseConfigurations::ConnectionUrlResolver.new(url).to_hash
puts JSON.generate(
  'uri' => { 'host' => u.host, 'port' => u.port, 'path' => u.path, 'query' => u.query },
  'rails' => c.transform_keys(&:to_s).transform_values(&:to_s),
)
"#;

const USER: &str = "fore@man:/%";
const PASSWORD: &str = "p@ss:w/rd%25?#& +é";

/// Every Foreman (Rails) container, with its command.
fn database_commands() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/default.cr.yaml"
    ))
    .unwrap();
    let objs = desired(&read_foreman("default", &text).unwrap());
    let mut out = Vec::new();
    for o in &objs {
        let pod = match o["kind"].as_str() {
            Some("Deployment" | "Job") => &o["spec"]["template"]["spec"],
            Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for c in pod["initContainers"]
            .as_array()
            .into_iter()
            .chain(pod["containers"].as_array())
            .flatten()
        {
            let env = c["env"].as_array().cloned().unwrap_or_default();
            // Foreman's own variables (RAILS_ENV) with the database's: a Rails process.
            let has = |n: &str| env.iter().any(|e| e["name"] == n);
            if has("RAILS_ENV") && has("DB_PASSWORD") {
                let cmd = c["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                out.push((
                    format!(
                        "{}/{}",
                        o["metadata"]["name"].as_str().unwrap(),
                        c["name"].as_str().unwrap()
                    ),
                    cmd,
                ));
            }
        }
    }
    out
}

/// Runs `program` with the database variables set, and what READER prints.
fn run(program: &[String], extra_env: &[(&str, &str)]) -> Value {
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..])
        .env_remove("DATABASE_URL")
        .env("DB_USER", USER)
        .env("DB_PASSWORD", PASSWORD)
        .env("DB_HOST", "postgres.foreman.svc")
        .env("DB_PORT", "5432")
        .env("DB_NAME", "foreman");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("ruby runs (scripts/test.sh installs ruby and ruby-activerecord)");
    assert!(
        out.status.success(),
        "{program:?} failed (scripts/test.sh installs ruby-activerecord): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reader() -> Vec<String> {
    vec!["ruby".into(), "-e".into(), READER.into()]
}

#[test]
fn a_password_with_url_delimiters_reaches_rails_intact() {
    let commands = database_commands();
    // web, the three Dynflow Deployments, their wait-for-migrations, migration Job, CronJobs.
    assert!(commands.len() >= 8, "{commands:?}");
    for (name, cmd) in &commands {
        let at = cmd
            .iter()
            .position(|a| a == "--")
            .unwrap_or_else(|| panic!("{name}: no DATABASE_URL wrapper in {cmd:?}"));
        // The wrapper as rendered, starting the reader instead of the container's program.
        let program: Vec<String> = cmd[..=at].iter().cloned().chain(reader()).collect();
        let got = run(&program, &[]);
        let rails = &got["rails"];
        assert_eq!(rails["adapter"], "postgresql", "{name}: {got}");
        assert_eq!(rails["username"], USER, "{name}: {got}");
        assert_eq!(rails["password"], PASSWORD, "{name}: {got}");
        assert_eq!(rails["host"], "postgres.foreman.svc", "{name}: {got}");
        assert_eq!(rails["port"], "5432", "{name}: {got}");
        assert_eq!(rails["database"], "foreman", "{name}: {got}");
        // FC roles/foreman/defaults foreman_database_pool.
        assert_eq!(rails["pool"], "9", "{name}: {got}");
        assert_eq!(got["uri"]["host"], "postgres.foreman.svc", "{name}: {got}");
        assert_eq!(got["uri"]["query"], "pool=9", "{name}: {got}");
    }
}

/// What the kubelet's `$(VAR)` substitution made before: the same password breaks the URL, so
/// the test above is one that fails without the encoding.
#[test]
fn the_unencoded_url_loses_such_a_password() {
    let plain = format!("postgresql://{USER}:{PASSWORD}@postgres.foreman.svc:5432/foreman?pool=9");
    let mut cmd = Command::new("ruby");
    cmd.args(["-e", READER]).env("DATABASE_URL", &plain);
    let out = cmd.output().expect("ruby runs");
    let read_back: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    assert!(
        !out.status.success() || read_back.as_ref().unwrap()["rails"]["password"] != PASSWORD,
        "{read_back:?}"
    );
}

/// The wrapper starts the container's own program with its arguments, through no shell.
#[test]
fn the_wrapper_execs_the_command_with_its_arguments_unchanged() {
    let (_, cmd) = database_commands()
        .into_iter()
        .find(|(name, _)| name == "foreman/foreman")
        .unwrap();
    let at = cmd.iter().position(|a| a == "--").unwrap();
    let program: Vec<String> = cmd[..=at]
        .iter()
        .cloned()
        .chain(
            [
                "ruby",
                "-rjson",
                "-e",
                "puts JSON.generate(ARGV + [ENV['DATABASE_URL'].start_with?('postgresql://')])",
                "a b",
                "$(x); echo",
                "*",
            ]
            .map(String::from),
        )
        .collect();
    let out = Command::new(&program[0])
        .args(&program[1..])
        .env("DB_USER", "u")
        .env("DB_PASSWORD", "p")
        .env("DB_HOST", "h")
        .env("DB_PORT", "5432")
        .env("DB_NAME", "n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::json!(["a b", "$(x); echo", "*", true]));
}
