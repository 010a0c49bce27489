//! `foreman-box support-bundle`: what someone helping needs, in one `.tar.zst`, without a secret.
//!
//! Collected: host facts and configuration, the run logs, the k3s and PostgreSQL journals, the
//! manifests k3s deploys that are not 0600, every object in namespace foreman (Secrets with
//! their key names only; every annotation's value dropped, since `last-applied-configuration`
//! can hold a whole Secret; no managedFields), events, every container's log (current and
//! previous), and `foreman-box health`. `collection.tsv` says what was collected and what
//! failed; `redaction.txt` how many values of which secret were replaced.
//!
//! Never read: /etc/foreman-box/secrets (only its values are, to redact them) and the 0600
//! auto-deploy manifests. On top of that every text collected goes through [`Redactor`]: each
//! known secret value (the kept copies, the cluster's Secrets, the PostgreSQL admin password
//! from the environment or its file) is replaced wherever it appears, plain, base64 (at any
//! alignment) or URL-encoded. With the cluster unreachable the host part is still written.

use crate::host::{Cmd, HostError};
use crate::inspect::Inspector;
use crate::report::LOG_DIR;
use crate::steps::Context;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use zstd::stream::write::Encoder;

/// Shorter values are not redacted: they would match ordinary words (`true`, a port).
const MIN_SECRET_LEN: usize = 8;

/// Keys of a Secret that say where to connect, not how to prove who one is (the database
/// Secrets carry them beside the password): their values are words like `postgres` that name
/// files and services, and replacing them would garble the bundle without hiding anything.
const CONNECTION_KEYS: &[&str] = &["host", "port", "database", "dbname", "sslmode"];
const JOURNAL_LINES: &str = "5000";
const MANIFESTS: &str = "/var/lib/rancher/k3s/server/manifests";
/// What is listed from the cluster: (apiVersion, kind, plural, namespaced).
const KINDS: &[(&str, &str, &str, bool)] = &[
    ("app.theforeman.org/v1alpha1", "Foreman", "foremans", true),
    ("v1", "Pod", "pods", true),
    ("v1", "Service", "services", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Secret", "secrets", true),
    (
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "Event", "events", true),
    ("apps/v1", "Deployment", "deployments", true),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    ("apps/v1", "ReplicaSet", "replicasets", true),
    ("batch/v1", "Job", "jobs", true),
    ("batch/v1", "CronJob", "cronjobs", true),
    ("networking.k8s.io/v1", "Ingress", "ingresses", true),
    (
        "discovery.k8s.io/v1",
        "EndpointSlice",
        "endpointslices",
        true,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    ("v1", "PersistentVolume", "persistentvolumes", false),
    ("v1", "Node", "nodes", false),
];

/// Known secret values and how often each source's were replaced.
pub struct Redactor {
    /// (needle, source name), longest first.
    needles: Vec<(String, String)>,
    counts: BTreeMap<String, u64>,
}

impl Redactor {
    pub fn new() -> Self {
        Redactor {
            needles: Vec::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Adds a secret value under `source` (a name, never the value), in every form it could
    /// take in a text: plain, URL-encoded, base64 on its own and at each alignment inside a
    /// longer base64 text; a multi-line value also line by line.
    pub fn add(&mut self, source: &str, value: &[u8]) {
        let mut forms: Vec<Vec<u8>> = vec![value.to_vec()];
        if let Ok(text) = std::str::from_utf8(value) {
            let trimmed = text.trim();
            forms.push(trimmed.as_bytes().to_vec());
            for line in trimmed.lines().map(str::trim).filter(|l| l.len() >= 16) {
                forms.push(line.as_bytes().to_vec());
            }
            forms.push(url_encode(trimmed).into_bytes());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut extra = Vec::new();
        for f in &forms {
            extra.push(b64.encode(f).trim_end_matches('=').as_bytes().to_vec());
            extra.extend(base64_cores(f).into_iter().map(String::into_bytes));
        }
        forms.extend(extra);
        for f in forms {
            let Ok(s) = String::from_utf8(f) else {
                continue;
            };
            if s.len() >= MIN_SECRET_LEN && !self.needles.iter().any(|(n, _)| *n == s) {
                self.needles.push((s, source.to_string()));
            }
        }
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
    }

    /// `text` with every known value replaced by `<redacted:SOURCE>`.
    pub fn redact(&mut self, text: &str) -> String {
        let mut out = text.to_string();
        for (needle, source) in &self.needles {
            let n = out.matches(needle.as_str()).count() as u64;
            if n > 0 {
                out = out.replace(needle.as_str(), &format!("<redacted:{source}>"));
                *self.counts.entry(source.clone()).or_default() += n;
            }
        }
        out
    }

    pub fn sources(&self) -> usize {
        let mut s: Vec<&String> = self.needles.iter().map(|(_, s)| s).collect();
        s.sort();
        s.dedup();
        s.len()
    }

    /// `redaction.txt`: the rules, then per source how many values were replaced.
    pub fn report(&self) -> String {
        let mut out = String::from(
            "# What was kept out of this bundle, and how (never the values themselves).\n\
             never read: /etc/foreman-box/secrets/* (their values are only used to find them below), 0600 files in /var/lib/rancher/k3s/server/manifests\n\
             Secrets: key names only, values dropped\n\
             every object: annotation values dropped (last-applied-configuration can hold a Secret), managedFields dropped\n\
             every text: each known secret value replaced by <redacted:SOURCE>, plain, base64 or URL-encoded\n",
        );
        out.push_str(&format!("secret sources known: {}\n", self.sources()));
        for (source, n) in &self.counts {
            out.push_str(&format!("replaced\t{source}\t{n}\n"));
        }
        out
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The part of `value`'s base64 that is the same wherever `value` starts inside a longer
/// text: for each of the three alignments, the characters that depend on `value` alone.
pub fn base64_cores(value: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for pad in 0..3usize {
        let mut buf = vec![0u8; pad];
        buf.extend_from_slice(value);
        let enc = b64.encode(&buf);
        // Leading characters mix in the padding bytes; trailing ones the bytes after.
        let skip = if pad == 0 { 0 } else { (pad * 8).div_ceil(6) };
        let whole = (buf.len() / 3) * 4;
        if whole > skip {
            out.push(enc[skip..whole].to_string());
        }
    }
    out
}

/// One line of `collection.tsv`.
struct Collected {
    path: String,
    status: &'static str,
    bytes: usize,
    detail: String,
}

/// The archive being written and its record.
struct Bundle<W: Write> {
    tar: tar::Builder<W>,
    prefix: String,
    mtime: u64,
    redactor: Redactor,
    collected: Vec<Collected>,
}

impl<W: Write> Bundle<W> {
    /// Adds a text, redacted.
    fn text(&mut self, path: &str, text: &str, detail: &str) -> Result<(), std::io::Error> {
        let clean = self.redactor.redact(text);
        self.raw(path, clean.as_bytes())?;
        self.collected.push(Collected {
            path: path.into(),
            status: "ok",
            bytes: clean.len(),
            detail: detail.into(),
        });
        Ok(())
    }

    fn raw(&mut self, path: &str, bytes: &[u8]) -> Result<(), std::io::Error> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, format!("{}/{path}", self.prefix), bytes)
    }

    fn failed(&mut self, path: &str, why: &str) {
        let why = self.redactor.redact(why);
        self.collected.push(Collected {
            path: path.into(),
            status: "failed",
            bytes: 0,
            detail: one_line(&why),
        });
    }

    fn skipped(&mut self, path: &str, why: &str) {
        self.collected.push(Collected {
            path: path.into(),
            status: "skipped",
            bytes: 0,
            detail: one_line(why),
        });
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleReport {
    pub path: PathBuf,
    pub collected: usize,
    pub failed: usize,
    pub redacted: u64,
    pub cluster_reachable: bool,
}

/// Writes the bundle to `output` (a new 0600 file). `health` is the health report's JSON.
pub async fn collect(
    cx: &Context,
    output: &Path,
    health: Option<String>,
) -> crate::Result<BundleReport> {
    let stamp = k8s_openapi::jiff::Timestamp::now();
    let inspector = Inspector::connect(&cx.host, cx.config.foreman.kubeconfig.as_deref()).await;
    // Every value to keep out, before anything is read.
    let (redactor, cluster_error) = redactor_for(cx, &inspector).await?;
    let file = cx.host.fs().create_new(output, 0o600)?;
    let enc = Encoder::new(BufWriter::new(file), 3).map_err(|source| HostError::Io {
        action: "compress into",
        path: output.to_path_buf(),
        source,
    })?;
    let mut b = Bundle {
        tar: tar::Builder::new(enc),
        prefix: format!("foreman-box-support-{}", stamp.strftime("%Y%m%dT%H%M%SZ")),
        mtime: stamp.as_second().max(0) as u64,
        redactor,
        collected: Vec::new(),
    };
    let io = |source: std::io::Error| HostError::Io {
        action: "write",
        path: output.to_path_buf(),
        source,
    };
    collect_host(cx, &mut b).map_err(io)?;
    match (&inspector, &cluster_error) {
        (Ok(i), None) => {
            collect_objects(i, &mut b).await.map_err(io)?;
            collect_pod_logs(i, &mut b).await.map_err(io)?;
        }
        (_, problem) => b.failed(
            "cluster/",
            &format!(
                "the cluster cannot be read ({}): only the host part was collected",
                problem.clone().unwrap_or_default()
            ),
        ),
    }
    match health {
        Some(h) => b
            .text("health.json", &h, "foreman-box health --output json")
            .map_err(io)?,
        None => b.skipped("health.json", "not run"),
    }
    let mut report = finish(b).map_err(io)?;
    report.path = output.to_path_buf();
    report.cluster_reachable = cluster_error.is_none();
    Ok(report)
}

/// Every secret value the bundle must not hold: the kept copies, the external admin password,
/// and every value of every Secret in the namespace (connection keys apart). Also says why the
/// cluster cannot be read, when it cannot.
async fn redactor_for(
    cx: &Context,
    inspector: &Result<Inspector, crate::cluster::ClusterError>,
) -> crate::Result<(Redactor, Option<String>)> {
    let host = &cx.host;
    let mut redactor = Redactor::new();
    let secrets_dir = host.path(crate::kept::SECRETS_DIR);
    for name in host.fs().list_dir(&secrets_dir)? {
        if let Ok(Some(bytes)) = host.fs().read(&secrets_dir.join(&name)) {
            add_secret_file(&mut redactor, &name, &bytes);
        }
    }
    if let Some(p) = &cx.postgres_admin_password {
        redactor.add("postgres-admin-password", p.expose().as_bytes());
    }
    let secrets = match inspector {
        Ok(i) => match i.list("v1", "Secret", "secrets", true).await {
            Ok(list) => list,
            Err(e) => return Ok((redactor, Some(crate::backup::cluster_problem(&e)))),
        },
        Err(e) => return Ok((redactor, Some(crate::backup::cluster_problem(e)))),
    };
    for s in &secrets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let values = |field: &str| s.data[field].as_object().into_iter().flatten();
        for (k, v) in values("data").filter(|(k, _)| !CONNECTION_KEYS.contains(&k.as_str())) {
            if let Some(bytes) = v
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            {
                redactor.add(&format!("secret {name}/{k}"), &bytes);
            }
        }
        for (k, v) in values("stringData").filter(|(k, _)| !CONNECTION_KEYS.contains(&k.as_str())) {
            if let Some(t) = v.as_str() {
                redactor.add(&format!("secret {name}/{k}"), t.as_bytes());
            }
        }
    }
    Ok((redactor, None))
}

/// The host part: facts, os-release and our configuration, the run logs, the k3s and
/// PostgreSQL journals, and the auto-deploy manifests that cannot hold secrets (not 0600).
fn collect_host<W: Write>(cx: &Context, b: &mut Bundle<W>) -> std::io::Result<()> {
    let host = &cx.host;
    b.text(
        "host/facts.txt",
        &facts_text(cx),
        "facts gathered by foreman-box",
    )?;
    for (path, shown) in [
        ("/etc/os-release", "host/os-release"),
        (crate::config::DEFAULT_CONFIG_PATH, "host/config.toml"),
    ] {
        match host.fs().read_string(&host.path(path)) {
            Ok(Some(t)) => b.text(shown, &t, path)?,
            Ok(None) => b.skipped(shown, &format!("{path} does not exist")),
            Err(e) => b.failed(shown, &e.to_string()),
        }
    }
    // The run logs, each refused if it is a symbolic link: a link put there must not carry a
    // file from elsewhere (a kept secret, say) into a bundle meant to be shared.
    let logs = host.owned(LOG_DIR).map(|dir| host.fs().list_dir(&dir));
    let names = match logs {
        Ok(Ok(names)) => names,
        Ok(Err(e)) => {
            b.failed("logs", &e.to_string());
            Vec::new()
        }
        Err(e) => {
            b.failed("logs", &e.to_string());
            Vec::new()
        }
    };
    for name in names {
        let shown = format!("logs/{name}");
        let path = format!("{LOG_DIR}/{name}");
        match host.owned(&path).and_then(|p| host.fs().read_string(&p)) {
            Ok(Some(t)) => b.text(&shown, &t, &path)?,
            Ok(None) => {}
            Err(e) => b.failed(&shown, &e.to_string()),
        }
    }
    for unit in ["k3s", "postgresql"] {
        collect_journal(cx, b, unit)?;
    }
    let manifests = host.path(MANIFESTS);
    for name in host.fs().list_dir(&manifests).unwrap_or_default() {
        let shown = format!("manifests/{name}");
        let path = manifests.join(&name);
        if let Ok(Some(m)) = host.fs().mode(&path) {
            if m & 0o077 == 0 {
                let why = format!("mode {m:04o}: it may hold secrets, so it is not read");
                b.skipped(&shown, &why);
                continue;
            }
        }
        match host.fs().read_string(&path) {
            Ok(Some(t)) => b.text(&shown, &t, &format!("{MANIFESTS}/{name}"))?,
            Ok(None) => {}
            Err(e) => b.failed(&shown, &e.to_string()),
        }
    }
    Ok(())
}

/// The last lines of a unit's journal (only on the real root: under --root the machine's
/// journal is not the host's).
fn collect_journal<W: Write>(cx: &Context, b: &mut Bundle<W>, unit: &str) -> std::io::Result<()> {
    let shown = format!("journal/{unit}.log");
    if !cx.host.is_real_root() {
        b.skipped(&shown, "--root: the machine's journal is not this host's");
        return Ok(());
    }
    let cmd = Cmd::new("journalctl").args([
        "-u",
        unit,
        "--no-pager",
        "-o",
        "short-iso",
        "-n",
        JOURNAL_LINES,
    ]);
    match cx.host.runner().output(&cmd) {
        Ok(o) if o.success() => b.text(&shown, &o.stdout, &cmd.display())?,
        Ok(o) => b.failed(
            &shown,
            &format!("{} exited {}: {}", cmd.display(), o.status, o.stderr.trim()),
        ),
        Err(e) => b.failed(&shown, &e.to_string()),
    }
    Ok(())
}

/// Every object of [`KINDS`] in the namespace, sanitized (Secrets as key names, annotation
/// values dropped).
async fn collect_objects<W: Write>(i: &Inspector, b: &mut Bundle<W>) -> std::io::Result<()> {
    for (api_version, kind, plural, namespaced) in KINDS {
        let shown = format!("cluster/{plural}.yaml");
        match i.list(api_version, kind, plural, *namespaced).await {
            Ok(items) => {
                let docs: Vec<Value> = items.iter().map(sanitize).collect();
                let mut text = String::new();
                for d in &docs {
                    text.push_str("---\n");
                    text.push_str(&serde_yaml::to_string(d).unwrap_or_default());
                }
                b.text(&shown, &text, &format!("{} {plural}", docs.len()))?;
            }
            Err(e) => b.failed(&shown, &crate::backup::cluster_problem(&e)),
        }
    }
    Ok(())
}

/// Every container's log, and the previous run's where the container restarted.
async fn collect_pod_logs<W: Write>(i: &Inspector, b: &mut Bundle<W>) -> std::io::Result<()> {
    let pods = match i.pods().await {
        Ok(pods) => pods,
        Err(e) => {
            b.failed("pods/", &crate::backup::cluster_problem(&e));
            return Ok(());
        }
    };
    for p in pods {
        let pod = p.metadata.name.clone().unwrap_or_default();
        let restarted: BTreeMap<String, bool> = p
            .status
            .iter()
            .flat_map(|s| {
                let init = s.init_container_statuses.iter().flatten();
                init.chain(s.container_statuses.iter().flatten())
            })
            .map(|c| (c.name.clone(), c.restart_count > 0))
            .collect();
        let containers = p.spec.iter().flat_map(|s| {
            let init = s.init_containers.iter().flatten();
            init.chain(s.containers.iter()).map(|c| c.name.clone())
        });
        for c in containers {
            for previous in [false, true] {
                let suffix = if previous { ".previous" } else { "" };
                let shown = format!("pods/{pod}/{c}{suffix}.log");
                if previous && !restarted.get(&c).copied().unwrap_or(false) {
                    let why = "the container has not restarted: there is no previous log";
                    b.skipped(&shown, why);
                    continue;
                }
                match i.log(&pod, &c, previous).await {
                    Ok(t) => b.text(&shown, &t, "container log")?,
                    Err(e) => b.failed(&shown, &crate::backup::cluster_problem(&e)),
                }
            }
        }
    }
    Ok(())
}

/// The record (`collection.tsv`), then the redaction report (it counts the record's
/// redactions too); the archive closed and synced. The caller fills in the path and whether the
/// cluster was reached.
fn finish(
    mut b: Bundle<Encoder<'static, BufWriter<std::fs::File>>>,
) -> std::io::Result<BundleReport> {
    let mut tsv = String::from("path\tstatus\tbytes\tdetail\n");
    for c in &b.collected {
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            c.path, c.status, c.bytes, c.detail
        ));
    }
    tsv.push_str("collection.tsv\tok\t0\tthis file\nredaction.txt\tok\t0\twhat was kept out\n");
    let tsv = b.redactor.redact(&tsv);
    b.raw("collection.tsv", tsv.as_bytes())?;
    let report = b.redactor.report();
    b.raw("redaction.txt", report.as_bytes())?;
    let failed = b.collected.iter().filter(|c| c.status == "failed").count();
    let collected = b.collected.iter().filter(|c| c.status == "ok").count();
    let redacted = b.redactor.counts.values().sum();
    let enc = b.tar.into_inner()?;
    let w = enc.finish()?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(BundleReport {
        path: PathBuf::new(),
        collected,
        failed,
        redacted,
        cluster_reachable: false,
    })
}

/// The values of a kept secret file: a Secret manifest's data, else each line.
fn add_secret_file(r: &mut Redactor, name: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(secret) = serde_yaml::from_str::<k8s_openapi::api::core::v1::Secret>(&text) {
        if secret.data.is_some() || secret.string_data.is_some() {
            for (k, v) in secret.data.unwrap_or_default() {
                r.add(&format!("{name}/{k}"), &v.0);
            }
            for (k, v) in secret.string_data.unwrap_or_default() {
                r.add(&format!("{name}/{k}"), v.as_bytes());
            }
            return;
        }
    }
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        r.add(name, line.as_bytes());
    }
}

/// An object as the bundle keeps it: no managedFields, annotation values dropped, a Secret's
/// values dropped (its key names kept).
pub fn sanitize(o: &kube::api::DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for val in ann.values_mut() {
                *val = Value::String("<value dropped>".into());
            }
        }
    }
    if v["kind"] == "Secret" {
        let keys: Vec<Value> = ["data", "stringData", "binaryData"]
            .iter()
            .flat_map(|f| {
                v[*f]
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .map(Value::String)
            .collect();
        if let Some(m) = v.as_object_mut() {
            m.remove("data");
            m.remove("stringData");
            m.remove("binaryData");
            m.insert("keys".into(), Value::Array(keys));
        }
    }
    v
}

fn facts_text(cx: &Context) -> String {
    let f = &cx.facts;
    let mut out = String::new();
    let os =
        f.os.as_ref()
            .map(|o| o.pretty_name.clone())
            .unwrap_or_else(|| "unknown".into());
    out.push_str(&format!("foreman-box {}\n", env!("CARGO_PKG_VERSION")));
    out.push_str(&format!(
        "os: {os}\narch: {}\ncpus: {}\nmemory: {} MiB\n",
        f.arch.name(),
        f.cpus,
        f.memory_bytes >> 20
    ));
    out.push_str(&format!(
        "fqdn: {} (resolves to: {:?})\nnode: {}\n",
        f.fqdn, f.fqdn_addrs, f.node_name
    ));
    out.push_str(&format!(
        "node ip: {}\ndefault route: {}\n",
        f.node_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "none".into()),
        f.default_route_iface
            .clone()
            .unwrap_or_else(|| "none".into())
    ));
    out.push_str(&format!(
        "memory cgroup: {}\nselinux: {:?}\nfirewalld running: {}\nk3s active: {}\npostgresql active: {}\n",
        f.memory_cgroup, f.selinux, f.firewalld_running, f.k3s_active, f.postgres_active
    ));
    out.push_str(&format!("listening ports: {:?}\n", f.listening_ports));
    for (dir, free) in &f.free_disk {
        out.push_str(&format!(
            "free in {}: {:.1} GiB\n",
            dir.display(),
            *free as f64 / (1u64 << 30) as f64
        ));
    }
    out.push_str(&format!(
        "postgres mode: {:?}\npulp dir: {}\nkatello: {}\nremote execution: {}\n",
        cx.config.postgres.mode,
        cx.config.storage.pulp_dir.display(),
        cx.config.foreman.katello,
        cx.config.foreman.remote_execution
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_plain_url_encoded_and_inside_base64_at_any_alignment() {
        let secret = "canary/Secret+Value=42";
        let mut r = Redactor::new();
        r.add("kept", secret.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        for prefix in ["", "x", "xy", "xyz"] {
            let wrapped = b64.encode(format!("{prefix}{secret} and more"));
            let out = r.redact(&format!("data: {wrapped}"));
            assert!(out.contains("<redacted:kept>"), "prefix {prefix:?}: {out}");
        }
        assert_eq!(
            r.redact(&format!("pw={}", url_encode(secret))),
            "pw=<redacted:kept>"
        );
        assert_eq!(r.redact(&format!("pw={secret}!")), "pw=<redacted:kept>!");
        assert!(r.report().contains("replaced\tkept\t"), "{}", r.report());
        assert!(!r.report().contains("canary"));
    }

    #[test]
    fn sanitized_objects_keep_secret_key_names_and_no_annotation_values() {
        let o: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "foreman-db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"c2VjcmV0\"}}"},
                         "managedFields": [{"manager": "x"}]},
            "data": {"password": "c2VjcmV0", "host": "cG9zdGdyZXM="},
        }))
        .unwrap();
        let v = sanitize(&o);
        assert_eq!(v["keys"], serde_json::json!(["host", "password"]));
        assert!(v.get("data").is_none());
        assert!(v["metadata"].get("managedFields").is_none());
        assert_eq!(
            v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "<value dropped>"
        );
        assert!(!v.to_string().contains("c2VjcmV0"));
    }
}
