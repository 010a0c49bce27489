//! Configuration: `/etc/foreman-box/config.toml`, `FOREMAN_BOX_*` variables and flags, in rising
//! order of precedence. Every key is known up front; an unknown key or a bad value is an error
//! that names the key and where it came from.

use crate::secret::Secret;
use crate::validate::{self, Network};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The k3s release this foreman-box release is tested with.
pub const PINNED_K3S_VERSION: &str = "v1.33.5+k3s1";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/foreman-box/config.toml";
const ENV_PREFIX: &str = "FOREMAN_BOX_";
/// Variables of ours that are not config keys (they belong to flags handled by the CLI).
const NON_KEY_ENV: &[&str] = &["FOREMAN_BOX_ROOT", "FOREMAN_BOX_CONFIG", "FOREMAN_BOX_LOG"];
/// The one secret that may come from the environment: never from a flag (argv) or the file.
pub const ADMIN_PASSWORD_ENV: &str = "FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD";

/// What a key's value is: a flag of a boolean key may be given bare (`--katello`), and
/// `install` remembers booleans and numbers as TOML booleans and integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    /// A whole number.
    Number,
}

/// One configuration key: its name (`foreman.katello`: the TOML key, the flag
/// `--foreman-katello` and the variable `FOREMAN_BOX_FOREMAN_KATELLO`), its kind, its default
/// as written (empty: none, or one worked out at run time, said in `help`), and its help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub help: &'static str,
}

const fn key(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        kind,
        default,
        help,
    }
}

/// The key named `name`, if there is one.
pub fn key_named(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Every configuration key.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key("hostname", Kind::Text, "", "FQDN Foreman is served on [default: the host's FQDN]"),
    key("node_ip", Kind::Text, "", "this host's address for pods to reach [default: the default route's address]"),
    key("bundle", Kind::Text, "", "offline bundle to install from (`foreman-box bundle create`): verified whole before anything changes; k3s, its airgap images and the pinned images then come from it, not the network"),
    key("k3s.version", Kind::Text, PINNED_K3S_VERSION, "k3s release tag to install"),
    key("k3s.channel", Kind::Text, "", "k3s channel (stable, latest, v1.33, ...) resolved to a release; ignored when a version is given"),
    key("k3s.channel_url", Kind::Text, "https://update.k3s.io/v1-release/channels", "k3s channel service"),
    key("k3s.release_url", Kind::Text, "https://github.com/k3s-io/k3s/releases/download", "base URL of k3s release assets (a mirror for air-gapped hosts)"),
    key("k3s.airgap_images", Kind::Bool, "false", "also install the k3s airgap images archive"),
    key("k3s.cluster_cidr", Kind::Text, "10.42.0.0/16", "pod network"),
    key("k3s.service_cidr", Kind::Text, "10.43.0.0/16", "service network"),
    key("k3s.ready_timeout", Kind::Number, "300", "seconds to wait for k3s to become ready"),
    key("downloads.retries", Kind::Number, "5", "retries of a failed download"),
    key("downloads.retry_delay_ms", Kind::Number, "500", "first retry delay in milliseconds (doubles each time)"),
    key("downloads.connect_timeout_secs", Kind::Number, "10", "seconds to wait for a connection to a download server"),
    key("downloads.timeout_secs", Kind::Number, "30", "a request fails when its answer does not start within this many seconds, or when fewer than 1 KiB/s arrive over this many seconds"),
    key("postgres.mode", Kind::Text, "local", "local (the distribution's server on this host) or external"),
    key("postgres.admin_url", Kind::Text, "", "external admin connection, postgres://USER@HOST:PORT/DB (no password)"),
    key("postgres.admin_password_file", Kind::Text, "", "file holding the external admin password (or set FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD)"),
    key("postgres.manage_server", Kind::Bool, "", "manage pg_hba.conf, listen address and tuning [default: local mode or a server on loopback]"),
    key("storage.pulp_dir", Kind::Text, "/var/lib/pulp", "Pulp content directory"),
    key("foreman.dynflow_workers", Kind::Number, "2", "dynflow worker replicas (1-32; as many as the tuning profile's host schedules)"),
    key("foreman.tuning", Kind::Text, "default", "foremanctl tuning profile the pods are sized for: development, default, medium, large, extra-large, extra-extra-large"),
    key("foreman.katello", Kind::Bool, "true", "enable Katello (content management)"),
    key("foreman.remote_execution", Kind::Bool, "true", "enable Remote Execution"),
    key("foreman.wait_timeout", Kind::Number, "1800", "seconds to wait for Foreman to become Ready (first installs pull several GiB of images)"),
    key("foreman.kubeconfig", Kind::Text, "", "kubeconfig for the Foreman resource, used as given (not under --root); the cluster is then reached even with --root or --skip-start [default: /etc/rancher/k3s/k3s.yaml]"),
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// A file, with the line and column (1-based) of the value when known.
    File(PathBuf, Option<(usize, usize)>),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File(p, None) => write!(f, "{}", p.display()),
            Source::File(p, Some((line, col))) => write!(f, "{}:{line}:{col}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(flag) => write!(f, "flag --{flag}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "environment variable {name} is not UTF-8 text\nhelp: set it to a UTF-8 value, or unset it"
    )]
    EnvNotText { name: String },
    #[error("unknown configuration key `{key}` in {source_}\nhelp: known keys are: {known}")]
    UnknownKey {
        key: String,
        source_: Source,
        known: String,
    },
    #[error("bad value for `{key}` from {source_}: {problem}\nhelp: {help}")]
    BadValue {
        key: String,
        source_: Source,
        problem: String,
        help: String,
    },
    #[error("cannot read configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}{} is not valid TOML: {message}\nhelp: fix the file's syntax; values are written as `key = \"value\"` under `[section]` headers", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        location: Option<(usize, usize)>,
        message: String,
    },
    #[error("configuration file {path} does not exist\nhelp: check the path given to --config (or FOREMAN_BOX_CONFIG), or leave it out to use {DEFAULT_CONFIG_PATH} (under --root DIR when given) if it exists")]
    Missing { path: PathBuf },
    #[error("configuration file {path} is {problem}; it chooses what root downloads and runs, so it is not used\nhelp: {help}")]
    Unsafe {
        path: PathBuf,
        problem: String,
        help: String,
    },
    #[error("configuration file {path} is {what}, not a regular file\nhelp: give the path of a TOML file (`foreman-box man` lists the keys)")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("configuration file {path} is larger than {MAX_CONFIG_BYTES} bytes\nhelp: a configuration holds a few dozen keys; check that the path names the right file")]
    TooLarge { path: PathBuf },
    #[error("configuration file {path} is not UTF-8 text (byte {offset} is not)\nhelp: save the file as UTF-8")]
    NotText { path: PathBuf, offset: usize },
    #[error("unknown preflight check `{name}` in --ignore-preflight\nhelp: known checks are: {known}, or `all`")]
    UnknownPreflight { name: String, known: String },
}

/// The `FOREMAN_BOX_*` variables of an environment (others are not ours to judge, whatever
/// their bytes); one of ours that is not UTF-8 is an error naming it, never skipped.
pub fn environment(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in vars {
        if !name.as_encoded_bytes().starts_with(ENV_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.to_string_lossy().into_owned();
        let value = value
            .into_string()
            .map_err(|_| ConfigError::EnvNotText { name: name.clone() })?;
        ours.push((name, value));
    }
    Ok(ours)
}

/// A configuration file is read only up to this size (it holds a few dozen keys).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The text of a configuration file, or `None` when there is none: a regular file (a device,
/// FIFO or directory is refused before it is opened, so nothing hangs or reads without end),
/// at most [`MAX_CONFIG_BYTES`] even if it grows while it is read, and UTF-8.
pub fn read_file(fs: &crate::host::HostFs, path: &Path) -> Result<Option<String>, ConfigError> {
    use crate::host::TextError;
    let path = path.to_path_buf();
    fs.read_text(&path, MAX_CONFIG_BYTES).map_err(|e| match e {
        TextError::Host(e) => ConfigError::Read {
            path,
            source: std::io::Error::other(e),
        },
        TextError::NotAFile(what) => ConfigError::NotAFile { path, what },
        TextError::TooLarge => ConfigError::TooLarge { path },
        TextError::NotText(offset) => ConfigError::NotText { path, offset },
    })
}

/// 1-based line and column of a byte offset in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// The environment variable for a key: `k3s.version` -> `FOREMAN_BOX_K3S_VERSION`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

/// The flag for a key: `k3s.version` -> `k3s-version`; `storage.pulp_dir` -> `pulp-dir`.
pub fn flag_name(key: &str) -> String {
    let key = key
        .strip_prefix("storage.")
        .or_else(|| key.strip_prefix("foreman."))
        .unwrap_or(key);
    key.replace(['.', '_'], "-")
}

/// A tuning profile by its name in the resource (`extra-large`).
fn tuning(raw: &str) -> Result<foreman_operator::Tuning, validate::Invalid> {
    let names: Vec<&str> = foreman_operator::profile::PROFILES
        .iter()
        .map(|p| p.tuning.name())
        .collect();
    foreman_operator::profile::PROFILES
        .iter()
        .map(|p| p.tuning)
        .find(|t| t.name() == raw)
        .ok_or_else(|| validate::Invalid {
            problem: format!("{} is not a tuning profile", validate::shown(raw)),
            help: format!("use one of {}", names.join(", ")),
        })
}

/// Raw values with their source, before typing.
#[derive(Debug, Clone)]
pub struct Layers {
    values: BTreeMap<&'static str, (String, Source)>,
}

impl Layers {
    /// Starts from the defaults.
    pub fn new() -> Self {
        let values = KEYS
            .iter()
            .map(|k| (k.name, (k.default.to_string(), Source::Default)))
            .collect();
        Layers { values }
    }

    /// Layers the text of a TOML file over what is there; `shown_as` names the file in errors,
    /// with the line and column of the value.
    pub fn with_text(mut self, text: &str, shown_as: &Path) -> Result<Self, ConfigError> {
        let table = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Parse {
            path: shown_as.to_path_buf(),
            location: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        let mut flat = Vec::new();
        flatten("", table.get_ref(), &mut flat);
        for (key, span, value) in flat {
            let source = Source::File(shown_as.to_path_buf(), Some(line_col(text, span)));
            let value = match value {
                toml::de::DeValue::String(s) => s.to_string(),
                toml::de::DeValue::Integer(i) => {
                    match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                        Ok(n) => n.to_string(),
                        Err(_) => i.as_str().to_string(),
                    }
                }
                toml::de::DeValue::Boolean(b) => b.to_string(),
                other => {
                    let found = match other {
                        toml::de::DeValue::Float(_) => "a float",
                        toml::de::DeValue::Datetime(_) => "a date",
                        toml::de::DeValue::Array(_) => "an array",
                        _ => "a table",
                    };
                    return Err(ConfigError::BadValue {
                        key,
                        source_: source,
                        problem: format!(
                            "expected a string, whole number or boolean, found {found}"
                        ),
                        help: "write the value as `key = \"value\"`".into(),
                    });
                }
            };
            self.set(&key, value, source)?;
        }
        Ok(self)
    }

    /// Layers `FOREMAN_BOX_*` variables over what is there.
    pub fn with_env(
        mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        for (name, value) in vars {
            if !name.starts_with(ENV_PREFIX)
                || NON_KEY_ENV.contains(&name.as_str())
                || name == ADMIN_PASSWORD_ENV
            {
                continue;
            }
            let Some(key) = KEYS.iter().find(|k| env_name(k.name) == name) else {
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    source_: Source::Env(name),
                    known: KEYS
                        .iter()
                        .map(|k| env_name(k.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            self.set(key.name, value, Source::Env(name))?;
        }
        Ok(self)
    }

    /// Layers this process's environment (see [`environment`]) over what is there.
    pub fn with_process_env(self) -> Result<Self, ConfigError> {
        self.with_env(environment(std::env::vars_os())?)
    }

    /// Layers flags (key, value) over what is there.
    pub fn with_flags(
        mut self,
        flags: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Result<Self, ConfigError> {
        for (key, value) in flags {
            self.set(key, value, Source::Flag(flag_name(key)))?;
        }
        Ok(self)
    }

    /// What this run was given, by key: flags, variables and a `--config` file other than
    /// `kept` (the file `install` remembers the settings in); not the defaults, not `kept`.
    pub fn given(&self, kept: &Path) -> Vec<Given> {
        self.values
            .iter()
            .filter(|(_, (_, source))| match source {
                Source::Default => false,
                Source::File(p, _) => p != kept,
                Source::Env(_) | Source::Flag(_) => true,
            })
            .map(|(key, (value, source))| Given {
                key,
                value: value.clone(),
                source: source.clone(),
            })
            .collect()
    }

    fn set(&mut self, key: &str, value: String, source: Source) -> Result<(), ConfigError> {
        let Some(k) = key_named(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                source_: source,
                known: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            });
        };
        self.values.insert(k.name, (value, source));
        Ok(())
    }

    fn raw(&self, key: &str) -> (&str, &Source) {
        let (v, s) = self.values.get(key).expect("every key has a default");
        (v.as_str(), s)
    }

    fn bad(&self, key: &str, problem: impl Into<String>, help: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            key: key.to_string(),
            source_: self.raw(key).1.clone(),
            problem: problem.into(),
            help: help.into(),
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        let v = self.raw(key).0.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        match self.raw(key).0.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            other => Err(self.bad(
                key,
                format!("{} is not a boolean", validate::shown(other)),
                "use true or false",
            )),
        }
    }

    fn number<T>(&self, key: &str, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let raw = self.raw(key).0.trim();
        let n: T = raw.parse().map_err(|_| {
            self.bad(
                key,
                format!("{} is not a whole number", validate::shown(raw)),
                format!("use a number from {} to {}", range.start(), range.end()),
            )
        })?;
        if !range.contains(&n) {
            return Err(self.bad(
                key,
                format!("{n} is out of range"),
                format!("use a number from {} to {}", range.start(), range.end()),
            ));
        }
        Ok(n)
    }

    /// A non-empty value through one of the checks in `validate`.
    fn checked<T>(
        &self,
        key: &str,
        check: impl FnOnce(&str) -> Result<T, validate::Invalid>,
    ) -> Result<T, ConfigError> {
        check(self.raw(key).0.trim()).map_err(|i| self.bad(key, i.problem, i.help))
    }

    fn optional<T>(
        &self,
        key: &str,
        check: impl FnOnce(&str) -> Result<T, validate::Invalid>,
    ) -> Result<Option<T>, ConfigError> {
        match self.string(key) {
            None => Ok(None),
            Some(_) => self.checked(key, check).map(Some),
        }
    }

    /// Paths we change must stay inside the host root even through symlinks: the Pulp
    /// directory's nearest existing ancestor, resolved, must lie under the resolved root.
    pub fn check_under_root(
        &self,
        config: &Config,
        root: &Path,
        canonical: impl Fn(&Path) -> Option<PathBuf>,
    ) -> Result<(), ConfigError> {
        let Some(real_root) = canonical(root) else {
            return Ok(()); // a missing root fails later, naming itself
        };
        let relative = config
            .storage
            .pulp_dir
            .strip_prefix("/")
            .unwrap_or(&config.storage.pulp_dir);
        let mut probe = root.join(relative);
        loop {
            if let Some(real) = canonical(&probe) {
                if !real.starts_with(&real_root) {
                    return Err(self.bad(
                        "storage.pulp_dir",
                        format!(
                            "`{}` leads outside the host root through a symlink (to {})",
                            config.storage.pulp_dir.display(),
                            real.display()
                        ),
                        "use a directory that is not reached through a symlink, such as /var/lib/pulp",
                    ));
                }
                return Ok(());
            }
            if !probe.pop() {
                return Ok(());
            }
        }
    }

    /// Types every value; the first bad one is the error.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mode = match self.raw("postgres.mode").0.trim() {
            "local" => PostgresMode::Local,
            "external" => PostgresMode::External,
            other => {
                return Err(self.bad(
                    "postgres.mode",
                    format!("{} is not a mode", validate::shown(other)),
                    "use `local` (run PostgreSQL on this host) or `external` (use your server)",
                ))
            }
        };
        let admin_url = match self.string("postgres.admin_url") {
            None if mode == PostgresMode::External => {
                return Err(self.bad("postgres.admin_url", "external mode needs an admin connection", "set postgres.admin_url = \"postgres://USER@HOST:5432/postgres\" and the password in postgres.admin_password_file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD"))
            }
            None => None,
            Some(raw) => Some(AdminUrl::parse(&raw).map_err(|problem| {
                // The value is shown unless it may hold a password.
                let problem = if problem.contains("password") {
                    problem
                } else {
                    format!("{}: {problem}", validate::shown(&validate::redact_url(&raw)))
                };
                self.bad("postgres.admin_url", problem, "write it as postgres://USER@HOST:PORT/DATABASE; put the password in postgres.admin_password_file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD")
            })?),
        };
        let hostname = self.optional("hostname", validate::hostname)?;
        let node_ip = self.optional("node_ip", validate::node_ip)?;
        let cluster = self.checked("k3s.cluster_cidr", |v| validate::cidr(v, Network::Cluster))?;
        let service = self.checked("k3s.service_cidr", |v| validate::cidr(v, Network::Service))?;
        if cluster.overlaps(&service) {
            return Err(self.bad(
                "k3s.service_cidr",
                format!("{service} overlaps the cluster network {cluster} (k3s.cluster_cidr)"),
                "give pods and services separate networks, e.g. 10.42.0.0/16 and 10.43.0.0/16",
            ));
        }
        if let Some(ip) = node_ip {
            for (key, net) in [("k3s.cluster_cidr", cluster), ("k3s.service_cidr", service)] {
                if net.contains(ip) {
                    return Err(self.bad(
                        key,
                        format!("{net} contains this node's address {ip} (node_ip)"),
                        "choose a network that does not contain the host's own address",
                    ));
                }
            }
        }
        let manage_server = match self.string("postgres.manage_server") {
            None => None,
            Some(_) => Some(self.boolean("postgres.manage_server")?),
        };
        let pulp_dir = self.checked("storage.pulp_dir", validate::pulp_dir)?;
        let version = self.optional("k3s.version", validate::k3s_version)?;
        let channel = self.optional("k3s.channel", validate::k3s_channel)?;
        let admin_password_file = match self.string("postgres.admin_password_file") {
            None => None,
            Some(raw) if Path::new(&raw).is_absolute() && !raw.chars().any(char::is_control) => {
                Some(PathBuf::from(raw))
            }
            Some(raw) => {
                return Err(self.bad(
                    "postgres.admin_password_file",
                    format!("{} is not an absolute path", validate::shown(&raw)),
                    "give the full path of a 0600 file holding the password, e.g. /etc/foreman-box/secrets/postgres-admin",
                ))
            }
        };
        let bundle = match self.string("bundle") {
            None => None,
            Some(raw) if !raw.chars().any(char::is_control) => Some(PathBuf::from(raw)),
            Some(raw) => {
                return Err(self.bad(
                    "bundle",
                    format!("{} is not a path", validate::shown(&raw)),
                    "give the file `foreman-box bundle create` wrote, e.g. --bundle foreman-box-3.18-amd64.tar",
                ))
            }
        };
        Ok(Config {
            given: Vec::new(),
            bundle,
            hostname,
            node_ip,
            k3s: K3sConfig {
                version: version.unwrap_or_else(|| PINNED_K3S_VERSION.to_string()),
                version_from_user: self.raw("k3s.version").1 != &Source::Default,
                channel,
                channel_url: self.checked("k3s.channel_url", validate::http_url)?,
                release_url: self.checked("k3s.release_url", validate::http_url)?,
                airgap_images: self.boolean("k3s.airgap_images")?,
                cluster_cidr: cluster,
                service_cidr: service,
                ready_timeout_secs: self.number("k3s.ready_timeout", 1u64..=86_400)?,
            },
            downloads: DownloadConfig {
                retries: self.number("downloads.retries", 0u32..=100)?,
                retry_delay_ms: self.number("downloads.retry_delay_ms", 0u64..=600_000)?,
                connect_timeout_secs: self.number("downloads.connect_timeout_secs", 1u64..=600)?,
                timeout_secs: self.number("downloads.timeout_secs", 1u64..=3600)?,
            },
            postgres: PostgresConfig {
                mode,
                admin_url,
                admin_password_file,
                manage_server,
            },
            storage: StorageConfig { pulp_dir },
            foreman: ForemanConfig {
                dynflow_workers: self.number(
                    "foreman.dynflow_workers",
                    foreman_operator::crd::MIN_DYNFLOW_WORKERS
                        ..=foreman_operator::crd::MAX_DYNFLOW_WORKERS,
                )?,
                tuning: self.checked("foreman.tuning", tuning)?,
                katello: self.boolean("foreman.katello")?,
                remote_execution: self.boolean("foreman.remote_execution")?,
                wait_timeout_secs: self.number("foreman.wait_timeout", 1u64..=86_400)?,
                kubeconfig: self.string("foreman.kubeconfig").map(PathBuf::from),
            },
        })
    }
}

impl Default for Layers {
    fn default() -> Self {
        Self::new()
    }
}

fn flatten<'i>(
    prefix: &str,
    table: &toml::de::DeTable<'i>,
    out: &mut Vec<(String, usize, toml::de::DeValue<'i>)>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        match v.get_ref() {
            toml::de::DeValue::Table(t) => flatten(&key, t, out),
            other => out.push((key, v.span().start, other.clone())),
        }
    }
}

/// A configuration file is refused when someone other than root (or the user running us) owns
/// it, or anyone may write it: it chooses the URLs root downloads from and runs.
pub fn check_file_safety(
    path: &Path,
    mode: u32,
    owner_uid: u32,
    our_uid: u32,
) -> Result<(), ConfigError> {
    let unsafe_ = |problem: String, help: String| ConfigError::Unsafe {
        path: path.to_path_buf(),
        problem,
        help,
    };
    if owner_uid != 0 && owner_uid != our_uid {
        return Err(unsafe_(
            format!("owned by uid {owner_uid}, not root"),
            format!("chown root:root {}", path.display()),
        ));
    }
    if mode & 0o002 != 0 {
        return Err(unsafe_(
            format!("writable by everyone (mode {:04o})", mode & 0o7777),
            format!(
                "chmod 0644 {} (or 0600 when it names secrets' files)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses `--ignore-preflight` names that are no check, listing the known ones.
pub fn check_preflight_names(names: &[String], known: &[&str]) -> Result<(), ConfigError> {
    match names
        .iter()
        .find(|n| n.as_str() != "all" && !known.contains(&n.as_str()))
    {
        Some(name) => Err(ConfigError::UnknownPreflight {
            name: name.escape_debug().to_string(),
            known: known.join(", "),
        }),
        None => Ok(()),
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// What this run was given (see [`Layers::given`]): what `install` remembers.
    pub given: Vec<Given>,
    /// The offline bundle to install from.
    pub bundle: Option<PathBuf>,
    pub hostname: Option<String>,
    pub node_ip: Option<IpAddr>,
    pub k3s: K3sConfig,
    pub downloads: DownloadConfig,
    pub postgres: PostgresConfig,
    pub storage: StorageConfig,
    pub foreman: ForemanConfig,
}

#[derive(Debug, Clone)]
pub struct K3sConfig {
    pub version: String,
    pub version_from_user: bool,
    pub channel: Option<String>,
    pub channel_url: String,
    pub release_url: String,
    pub airgap_images: bool,
    /// The pod network, checked (`validate::cidr`).
    pub cluster_cidr: validate::Cidr,
    /// The service network, checked, apart from the pod network.
    pub service_cidr: validate::Cidr,
    pub ready_timeout_secs: u64,
}

#[derive(Debug, Clone)]
pub struct DownloadConfig {
    pub retries: u32,
    pub retry_delay_ms: u64,
    pub connect_timeout_secs: u64,
    /// Time to the first byte of an answer, and the window of the 1 KiB/s minimum throughput.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresMode {
    Local,
    External,
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub mode: PostgresMode,
    pub admin_url: Option<AdminUrl>,
    pub admin_password_file: Option<PathBuf>,
    /// Whether we own the server's pg_hba.conf, listen address and tuning. Unset: yes for local
    /// mode, and for an external server on this host (loopback).
    pub manage_server: Option<bool>,
}

/// `postgres://USER@HOST:PORT/DATABASE`, never with a password in it (URLs end up in argv and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl AdminUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("scheme `{}` is not postgres://", url.scheme()));
        }
        if url.password().is_some() {
            return Err(
                "the URL carries a password, which would leak into process lists and logs".into(),
            );
        }
        if url
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("passfile"))
        {
            return Err("the URL carries a password in its query, which would leak into process lists and logs".into());
        }
        if url.query().is_some() {
            let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
            return Err(format!(
                "the URL has query parameters ({}), which foreman-box does not use",
                names.join(", ")
            ));
        }
        if url.fragment().is_some() {
            return Err("the URL has a fragment (`#...`)".into());
        }
        if url.port() == Some(0) {
            return Err("port 0 is not a port".into());
        }
        let user = url.username();
        if user.is_empty() {
            return Err("no user in the URL".into());
        }
        if !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "user `{}` has characters other than letters, digits, `_`, `-` and `.`",
                user.escape_debug()
            ));
        }
        let host = url
            .host_str()
            .ok_or("no host in the URL")?
            .trim_matches(['[', ']'])
            .to_string();
        let database = url.path().trim_start_matches('/');
        Ok(AdminUrl {
            user: user.to_string(),
            host,
            port: url.port().unwrap_or(5432),
            database: if database.is_empty() {
                "postgres".into()
            } else {
                database.to_string()
            },
        })
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// Reads the admin password from the environment (never argv) or its file.
pub fn admin_password(
    cfg: &PostgresConfig,
    env: Option<String>,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        return Ok(Some(Secret::new(v)));
    }
    match &cfg.admin_password_file {
        None => Ok(None),
        Some(path) => {
            let text = read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let first = text.lines().next().unwrap_or("").to_string();
            Ok(Some(Secret::new(first)))
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub pulp_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ForemanConfig {
    pub dynflow_workers: u32,
    /// The profile the operator sizes the pods for (`spec.tuning`).
    pub tuning: foreman_operator::Tuning,
    pub katello: bool,
    pub remote_execution: bool,
    pub wait_timeout_secs: u64,
    /// Given explicitly: the step talks to this cluster even under --root or --skip-start.
    pub kubeconfig: Option<PathBuf>,
}

/// A value this run was given, and where from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

impl Given {
    /// Where it came from, as the kept file's comment says it: `--k3s-version`,
    /// `FOREMAN_BOX_K3S_VERSION`, a file's path.
    fn origin(&self) -> String {
        match &self.source {
            Source::Flag(f) => format!("--{f}"),
            Source::Env(v) => v.clone(),
            Source::File(p, _) => p.display().to_string(),
            Source::Default => "the default".into(),
        }
    }

    /// The value as TOML: booleans and whole numbers typed as their keys' defaults are.
    fn toml_value(&self) -> toml_edit::Value {
        let raw = self.value.trim();
        match key_named(self.key).map(|k| k.kind) {
            Some(Kind::Bool) => match raw.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => return true.into(),
                "false" | "no" | "0" | "off" => return false.into(),
                _ => {}
            },
            Some(Kind::Number) => {
                if let Ok(n) = raw.parse::<i64>() {
                    return n.into();
                }
            }
            Some(Kind::Text) | None => {}
        }
        self.value.as_str().into()
    }
}

/// A TOML value as the configuration reads it (strings, whole numbers, booleans).
fn plain(v: &toml_edit::Value) -> Option<String> {
    match v {
        toml_edit::Value::String(s) => Some(s.value().clone()),
        toml_edit::Value::Integer(i) => Some(i.value().to_string()),
        toml_edit::Value::Boolean(b) => Some(b.value().to_string()),
        _ => None,
    }
}

/// The first lines of the file `install` remembers its settings in, when it makes it.
const KEPT_HEADER: &str = "\
# The settings foreman-box install was given (flags, FOREMAN_BOX_* variables), kept so that
# later runs (install, plan, status, backup, upgrade, ...) need none. A comment says where each
# value came from. Change a value here, or give the flag again. Defaults are not written.
";

/// The text of the kept configuration file `current` (None: there is none yet) once it holds
/// every value in `given`, and what was added or changed (as `key (origin)`); `None` when it
/// already holds them all. A person's own lines, comments and layout are kept: only the given
/// keys are set, each with a comment naming where it came from.
pub fn remembered(
    current: Option<&str>,
    shown_as: &Path,
    given: &[Given],
) -> Result<Option<(String, Vec<String>)>, ConfigError> {
    let mut doc: toml_edit::DocumentMut =
        current
            .unwrap_or("")
            .parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: shown_as.to_path_buf(),
                location: None,
                message: e.message().trim_end().to_string(),
            })?;
    let mut changed = Vec::new();
    for g in given {
        let (table, name) = match g.key.split_once('.') {
            Some((t, n)) => (Some(t), n),
            None => (None, g.key),
        };
        let want = g.toml_value();
        let slot = match table {
            Some(t) => {
                // A `[section]` of its own: a comment cannot follow a value in `{ ... }`.
                let section = doc.entry(t).or_insert_with(toml_edit::table);
                if let Some(inline) = section.as_inline_table().cloned() {
                    *section = toml_edit::Item::Table(inline.into_table());
                }
                &mut section[name]
            }
            None => &mut doc[name],
        };
        let same = slot.as_value().and_then(plain) == plain(&want);
        if same {
            continue;
        }
        let mut value = want;
        value.decor_mut().set_suffix(format!(" # {}", g.origin()));
        *slot = toml_edit::Item::Value(value);
        changed.push(format!("{} ({})", g.key, g.origin()));
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let mut text = doc.to_string();
    if current.is_none_or(|c| c.trim().is_empty()) {
        text.insert_str(0, KEPT_HEADER);
    }
    Ok(Some((text, changed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_default_reads_as_its_kind_and_a_kept_value_is_typed_by_it() {
        for k in KEYS {
            let ok = match k.kind {
                Kind::Bool => ["", "true", "false"].contains(&k.default),
                Kind::Number => k.default.is_empty() || k.default.parse::<u64>().is_ok(),
                Kind::Text => k.default.parse::<i64>().is_err() && k.default != "true",
            };
            assert!(
                ok,
                "{} is {:?} with default {:?}",
                k.name, k.kind, k.default
            );
        }
        let given = |key: &'static str, value: &str| Given {
            key,
            value: value.into(),
            source: Source::Flag(flag_name(key)),
        };
        assert_eq!(
            given("postgres.manage_server", "yes")
                .toml_value()
                .as_bool(),
            Some(true),
            "a boolean with a computed default is still a boolean"
        );
        assert_eq!(
            given("foreman.wait_timeout", "600")
                .toml_value()
                .as_integer(),
            Some(600)
        );
        assert_eq!(
            given("k3s.version", "v1.33.4+k3s1").toml_value().as_str(),
            Some("v1.33.4+k3s1")
        );
    }

    fn given(pairs: &[(&'static str, &str, Source)]) -> Vec<Given> {
        pairs
            .iter()
            .map(|(key, value, source)| Given {
                key,
                value: value.to_string(),
                source: source.clone(),
            })
            .collect()
    }

    #[test]
    fn remembered_settings_read_back_as_given_and_a_second_pass_changes_nothing() {
        let kept = Path::new("/etc/foreman-box/config.toml");
        let g = given(&[
            (
                "hostname",
                "foreman.example.com",
                Source::Flag("hostname".into()),
            ),
            (
                "k3s.version",
                "v1.32.1+k3s1",
                Source::Env("FOREMAN_BOX_K3S_VERSION".into()),
            ),
            ("foreman.katello", "no", Source::Flag("katello".into())),
            (
                "foreman.dynflow_workers",
                "3",
                Source::Flag("dynflow-workers".into()),
            ),
            (
                "storage.pulp_dir",
                "/srv/pulp",
                Source::File("/root/box.toml".into(), Some((1, 1))),
            ),
        ]);
        let (text, changed) = remembered(None, kept, &g).unwrap().unwrap();
        assert!(
            text.starts_with("# The settings foreman-box install was given"),
            "{text}"
        );
        assert_eq!(changed.len(), 5, "{changed:?}");
        assert!(text.contains("katello = false # --katello"), "{text}");
        assert!(
            text.contains("dynflow_workers = 3 # --dynflow-workers"),
            "{text}"
        );
        assert!(
            text.contains("pulp_dir = \"/srv/pulp\" # /root/box.toml"),
            "{text}"
        );
        // The configuration reads it back to the same values.
        let c = Layers::new()
            .with_text(&text, kept)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.hostname.as_deref(), Some("foreman.example.com"));
        assert_eq!(c.k3s.version, "v1.32.1+k3s1");
        assert!(!c.foreman.katello);
        assert_eq!(c.foreman.dynflow_workers, 3);
        assert_eq!(c.storage.pulp_dir, Path::new("/srv/pulp"));
        assert_eq!(remembered(Some(&text), kept, &g).unwrap(), None);
        // Nothing given, nothing kept: no file.
        assert_eq!(remembered(None, kept, &[]).unwrap(), None);
    }

    #[test]
    fn remembering_keeps_a_persons_lines_and_changes_only_the_given_key() {
        let kept = Path::new("/etc/foreman-box/config.toml");
        let mine = "# my box\nhostname = \"old.example.com\"  # set by hand\n\n[k3s]\n# pinned for the lab\nversion = \"v1.32.1+k3s1\"\n";
        let g = given(&[(
            "hostname",
            "new.example.com",
            Source::Flag("hostname".into()),
        )]);
        let (text, changed) = remembered(Some(mine), kept, &g).unwrap().unwrap();
        assert_eq!(changed, ["hostname (--hostname)"]);
        // A section written inline becomes a `[section]`, where a value can carry its comment.
        let inline =
            "k3s = { version = \"v1.32.1+k3s1\", channel_url = \"https://c.example.com\" }\n";
        let g2 = given(&[(
            "k3s.version",
            "v1.33.5+k3s1",
            Source::Flag("k3s-version".into()),
        )]);
        let (t2, _) = remembered(Some(inline), kept, &g2).unwrap().unwrap();
        let c = Layers::new()
            .with_text(&t2, kept)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.k3s.version, "v1.33.5+k3s1", "{t2}");
        assert_eq!(c.k3s.channel_url, "https://c.example.com", "{t2}");
        assert_eq!(
            text,
            mine.replace(
                "\"old.example.com\"  # set by hand",
                "\"new.example.com\" # --hostname"
            )
        );
    }

    fn file(text: &str) -> (String, PathBuf) {
        (
            text.to_string(),
            PathBuf::from("/etc/foreman-box/config.toml"),
        )
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let (_d, p) = file("[k3s]\nversion = \"v1.0.0+k3s1\"\nairgap_images = true\n");
        let cfg = Layers::new().with_text(&_d, &p).unwrap().resolve().unwrap();
        assert_eq!(cfg.k3s.version, "v1.0.0+k3s1");
        assert!(cfg.k3s.airgap_images);
        let layers = Layers::new()
            .with_text(&_d, &p)
            .unwrap()
            .with_env([(
                "FOREMAN_BOX_K3S_VERSION".to_string(),
                "v2.0.0+k3s1".to_string(),
            )])
            .unwrap();
        assert_eq!(layers.resolve().unwrap().k3s.version, "v2.0.0+k3s1");
        let cfg = layers
            .with_flags([("k3s.version", "v3.0.0+k3s1".to_string())])
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(cfg.k3s.version, "v3.0.0+k3s1");
        assert_eq!(
            Layers::new().resolve().unwrap().k3s.version,
            PINNED_K3S_VERSION
        );
    }

    #[test]
    fn unknown_file_key_names_key_and_file() {
        let (_d, _p) = file("[k3s]\nverison = \"x\"\n");
        let err = Layers::new()
            .with_text(&_d, Path::new("/etc/foreman-box/config.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`k3s.verison`"), "{err}");
        assert!(err.contains("/etc/foreman-box/config.toml"), "{err}");
    }

    #[test]
    fn unknown_env_var_is_named() {
        let err = Layers::new()
            .with_env([("FOREMAN_BOX_K3S_VERISON".to_string(), "x".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("FOREMAN_BOX_K3S_VERISON"), "{err}");
    }

    #[test]
    fn bad_value_names_key_value_and_source() {
        let err = Layers::new()
            .with_env([(
                "FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS".to_string(),
                "lots".to_string(),
            )])
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("foreman.dynflow_workers"), "{err}");
        assert!(err.contains("lots"), "{err}");
        assert!(err.contains("FOREMAN_BOX_FOREMAN_DYNFLOW_WORKERS"), "{err}");
        let err = Layers::new()
            .with_flags([("k3s.cluster_cidr", "10.42.0.0".to_string())])
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--k3s-cluster-cidr"), "{err}");
    }

    #[test]
    fn admin_url_with_password_is_refused_without_echoing_it() {
        let err = Layers::new()
            .with_flags([
                ("postgres.mode", "external".to_string()),
                (
                    "postgres.admin_url",
                    "postgres://admin:topsecret@db:5432/postgres".to_string(),
                ),
            ])
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(err.contains("carries a password"), "{err}");
        assert!(!err.contains("topsecret"), "{err}");
    }

    #[test]
    fn env_and_flag_names_follow_the_key() {
        assert_eq!(env_name("k3s.release_url"), "FOREMAN_BOX_K3S_RELEASE_URL");
        assert_eq!(flag_name("k3s.release_url"), "k3s-release-url");
        assert_eq!(flag_name("storage.pulp_dir"), "pulp-dir");
    }
}
