//! `foreman-box health`: is this Foreman working, and if not, what to do. foremanctl's health
//! playbook runs two checks (theforeman/foremanctl src/playbooks/health/health.yaml):
//! `check_services` (every unit of foreman.target active, src/roles/check_services) and
//! `check_foreman_api` (`/api/v2/ping` answers 200 and Katello's `foreman_tasks` service is
//! `ok`, src/roles/check_foreman_api). Here the units are the resource's pods, and more is
//! looked at: the resource Ready and not in maintenance, every Katello service of the ping,
//! paused tasks counted in the database (foreman-maintain's ForemanTasksNotPaused,
//! definitions/checks/foreman_tasks/not_paused.rb), certificate expiry, free disk, and the
//! images the pods run.
//!
//! Every check is a [`Check`] with a status; a failed one says what to do. Exit 0 when none
//! failed, 1 otherwise (warnings do not fail).

use crate::backup::db::{self, Server};
use crate::cluster::{self, Cluster};
use crate::inspect::{self, ImageInfo, Inspector};
use crate::maintenance;
use crate::steps::Context;
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Certificates expiring sooner than this are named.
pub const CERT_WARN_DAYS: i64 = 30;
const GIB: u64 = 1 << 30;
/// Below this, writes fail soon: a failure, not a warning.
const DISK_CRITICAL: u64 = GIB;
const PING_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Failed,
    /// Could not be looked at here (`--root`, no cluster yet): neither good nor bad.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub summary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, summary: impl Into<String>) -> Check {
        Check {
            name,
            status,
            summary: summary.into(),
            details: Vec::new(),
            help: None,
        }
    }
    fn details(mut self, d: Vec<String>) -> Check {
        self.details = d;
        self
    }
    fn help(mut self, h: impl Into<String>) -> Check {
        self.help = Some(h.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failures(&self) -> Vec<&Check> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// Foreman's URL; `https://<hostname>` when not given.
    pub url: Option<String>,
}

pub async fn check(cx: &Context, opts: &HealthOptions) -> Report {
    let mut checks = Vec::new();
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let cluster = Cluster::connect(&cx.host, explicit).await;
    let live = match &cluster {
        Ok(c) => c
            .foreman()
            .await
            .map_err(|e| crate::backup::cluster_problem(&e)),
        Err(e) => Err(crate::backup::cluster_problem(e)),
    };
    checks.push(resource_check(&live));
    checks.push(maintenance_check(cx, &live));
    checks.push(match (&cluster, &live) {
        (Ok(c), Ok(fm)) => pods_check(c, fm.as_ref()).await,
        _ => Check::new("pods", Status::Skipped, "the cluster cannot be read"),
    });
    checks.push(ping_check(cx, opts).await);
    checks.push(tasks_check(cx).await);
    checks.push(certificates_check(cx, cluster.as_ref().ok()).await);
    checks.push(disk_check(cx));
    checks.push(images_check(cx, live.is_ok()).await);
    checks.push(services_check(cx));
    Report {
        healthy: checks.iter().all(|c| c.status != Status::Failed),
        checks,
    }
}

fn resource_check(live: &Result<Option<kube::api::DynamicObject>, String>) -> Check {
    let fm = match live {
        Err(problem) => return Check::new(
            "resource",
            Status::Failed,
            format!("the cluster cannot be read: {problem}"),
        )
        .help(
            "is k3s running? `systemctl status k3s`; `foreman-box status` shows what it can reach",
        ),
        Ok(None) => {
            return Check::new(
                "resource",
                Status::Failed,
                "there is no Foreman resource foreman/foreman",
            )
            .help("run `foreman-box install`")
        }
        Ok(Some(fm)) => fm,
    };
    if cluster::is_ready(fm) {
        return Check::new("resource", Status::Ok, "Foreman foreman/foreman is Ready");
    }
    let why = match cluster::condition(fm, "Ready") {
        Some(c) => format!("Ready is {} ({}) {}", c.status, c.reason, c.message),
        None => "the operator has not reported on it yet".into(),
    };
    Check::new("resource", Status::Failed, format!("Foreman foreman/foreman is not Ready: {}", why.trim()))
        .help("see the pods below and `kubectl -n foreman describe foreman foreman`; `foreman-box install` waits for it and explains what is stuck")
}

fn maintenance_check(
    cx: &Context,
    live: &Result<Option<kube::api::DynamicObject>, String>,
) -> Check {
    let marker = maintenance::read_marker(&cx.host).ok().flatten();
    let requested = matches!(live, Ok(Some(fm)) if maintenance::state(fm).requested);
    match (requested, marker) {
        (false, None) => Check::new("maintenance", Status::Ok, "not in maintenance"),
        (_, Some(m)) => Check::new(
            "maintenance",
            Status::Failed,
            format!("in maintenance, asked for by `{}` (PID {}) which did not end it", m.command, m.pid),
        )
        .help("the next `foreman-box backup`, `restore` or `upgrade` takes it out of maintenance first; a backup is a good one to run"),
        (true, None) => Check::new(
            "maintenance",
            Status::Failed,
            "in maintenance (spec.maintenance is true): Foreman's writers are stopped",
        )
        .help("if no backup or restore is running, set it back: `kubectl -n foreman patch foreman foreman --type merge -p '{\"spec\":{\"maintenance\":null}}'`"),
    }
}

async fn pods_check(c: &Cluster, fm: Option<&kube::api::DynamicObject>) -> Check {
    match c.components(fm).await {
        Err(e) => Check::new(
            "pods",
            Status::Failed,
            format!(
                "cannot read the pods: {}",
                crate::backup::cluster_problem(&e)
            ),
        ),
        Ok(lines) if lines.is_empty() => Check::new(
            "pods",
            Status::Failed,
            "no component of Foreman has been created yet",
        )
        .help("check the operator: `kubectl -n foreman logs deploy/foreman-operator`"),
        Ok(lines) => {
            let bad: Vec<String> = lines
                .iter()
                .filter(|l| !l.ready)
                .map(|l| {
                    format!(
                        "{}: {}{}",
                        l.name,
                        l.progress,
                        l.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if bad.is_empty() {
                Check::new(
                    "pods",
                    Status::Ok,
                    format!("{} components ready", lines.len()),
                )
            } else {
                Check::new("pods", Status::Failed, format!("{} of {} components not ready", bad.len(), lines.len()))
                    .details(bad)
                    .help("`kubectl -n foreman describe pod NAME` and `kubectl -n foreman logs NAME` for the ones named; `foreman-box support-bundle` collects all of it")
            }
        }
    }
}

/// The problems a `/api/v2/ping` answer reports (empty: all good). The answer's shape:
/// `results.foreman.{database.active, cache.servers[].status}` and
/// `results.katello.services.<name>.status` (Katello's Ping; foremanctl checks
/// `results.katello.services.foreman_tasks.status == 'ok'`).
pub fn ping_problems(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let foreman = &v["results"]["foreman"];
    if foreman["database"]["active"] != Value::Bool(true) {
        out.push("foreman: the database connection is not active".into());
    }
    for (i, s) in foreman["cache"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if s["status"] != "ok" {
            out.push(format!("foreman: cache server {i} is {}", s["status"]));
        }
    }
    if let Some(services) = v["results"]["katello"]["services"].as_object() {
        for (name, s) in services {
            let status = s["status"].as_str().unwrap_or("unknown");
            if !status.eq_ignore_ascii_case("ok") {
                let msg = s["message"].as_str().unwrap_or("");
                out.push(format!(
                    "katello: {name} is {status}{}",
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {msg}")
                    }
                ));
            }
        }
    }
    if v["results"].as_object().is_none() {
        out.push("the answer has no `results`".into());
    }
    out
}

async fn ping_check(cx: &Context, opts: &HealthOptions) -> Check {
    let base = opts
        .url
        .clone()
        .unwrap_or_else(|| format!("https://{}", cx.facts.fqdn));
    let url = format!("{}/api/v2/ping", base.trim_end_matches('/'));
    let mut builder = reqwest::Client::builder().timeout(PING_TIMEOUT);
    if let Some(ca) = kept_certificates(cx)
        .into_iter()
        .find(|(k, _)| k == foreman_operator::resources::certificates::CA_CRT)
        .and_then(|(_, pem)| reqwest::Certificate::from_pem(&pem).ok())
    {
        builder = builder.add_root_certificate(ca);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                "ping",
                Status::Failed,
                format!("cannot make an HTTP client: {e}"),
            )
        }
    };
    let answer = match client.get(&url).send().await {
        Err(e) => {
            let cause = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string());
            return Check::new("ping", Status::Failed, format!("{url} does not answer: {cause}"))
                .help("check the Ingress and the foreman pods (`kubectl -n foreman get pods`); --url URL when Foreman is reached at another address");
        }
        Ok(a) => a,
    };
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    if !status.is_success() {
        return Check::new(
            "ping",
            Status::Failed,
            format!("{url} answered HTTP {}", status.as_u16()),
        )
        .help("`kubectl -n foreman logs deploy/foreman` shows why");
    }
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return Check::new("ping", Status::Failed, format!("{url} did not answer JSON"))
            .help("something other than Foreman answers there; check the Ingress");
    };
    let problems = ping_problems(&v);
    let services = v["results"]["katello"]["services"]
        .as_object()
        .map(|m| m.len())
        .unwrap_or(0);
    if problems.is_empty() {
        Check::new(
            "ping",
            Status::Ok,
            format!("{url}: database active, {services} Katello services ok"),
        )
    } else {
        Check::new("ping", Status::Failed, format!("{url} reports {} problem(s)", problems.len()))
            .details(problems)
            .help("the named service's pods and logs say why (`kubectl -n foreman get pods`); Foreman's About page lists the same")
    }
}

async fn tasks_check(cx: &Context) -> Check {
    let server = match Server::admin(cx) {
        Ok(s) => s,
        Err(e) => {
            return Check::new(
                "tasks",
                Status::Skipped,
                format!(
                    "the database cannot be read: {}",
                    first_line(&e.to_string())
                ),
            )
        }
    };
    let counted = async {
        let c = server.connect("foreman").await?;
        let paused = server
            .count_if_table(
                &c,
                "foreman_tasks_tasks",
                db::PAUSED_TASKS,
                "counting paused tasks",
            )
            .await?;
        let errored = server
            .count_if_table(
                &c,
                "foreman_tasks_tasks",
                db::PAUSED_ERROR_TASKS,
                "counting paused tasks",
            )
            .await?;
        let running = server
            .count_if_table(
                &c,
                "foreman_tasks_tasks",
                db::RUNNING_FOREMAN_TASKS,
                "counting running tasks",
            )
            .await?;
        crate::Result::Ok((paused, errored, running))
    };
    match counted.await {
        Err(e) => Check::new("tasks", Status::Failed, format!("cannot count tasks: {}", first_line(&crate::Error::to_string(&e))))
            .help("check PostgreSQL: `systemctl status postgresql` (local) or your server"),
        Ok((0, _, running)) => Check::new("tasks", Status::Ok, format!("no paused task; {running} running")),
        Ok((paused, errored, _)) => Check::new(
            "tasks",
            Status::Failed,
            format!("{paused} paused task(s), {errored} of them stopped by an error"),
        )
        .help("look at them in Monitor > Tasks (search `state = paused`) and resume them (`hammer task resume`), or cancel the ones that cannot go on"),
    }
}

/// The certificates of the kept copy of Secret foreman-tls: (key, PEM).
fn kept_certificates(cx: &Context) -> Vec<(String, Vec<u8>)> {
    let path = cx.host.path(crate::kept::copy_path(
        foreman_operator::resources::TLS_SECRET,
    ));
    let Ok(Some(text)) = cx.host.fs().read_string(&path) else {
        return Vec::new();
    };
    let Ok(secret) = serde_yaml::from_str::<k8s_openapi::api::core::v1::Secret>(&text) else {
        return Vec::new();
    };
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.ends_with(".crt"))
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The expiry of every certificate in `pem`: (status, line). `now` in seconds since the epoch.
pub fn cert_findings(key: &str, pem: &[u8], now: i64) -> Vec<(Status, String)> {
    let mut out = Vec::new();
    let mut rest = pem;
    loop {
        let (left, parsed) = match x509_parser::pem::parse_x509_pem(rest) {
            Ok(x) => x,
            Err(_) if out.is_empty() => {
                out.push((Status::Failed, format!("{key}: not a PEM certificate")));
                break;
            }
            Err(_) => break,
        };
        match parsed.parse_x509() {
            Err(e) => out.push((
                Status::Failed,
                format!("{key}: cannot read the certificate: {e}"),
            )),
            Ok(cert) => {
                let not_after = cert.validity().not_after.timestamp();
                // To the nearest day: a certificate made with `-days 10` expires "in 10 days".
                let days = (not_after - now + 43_200).div_euclid(86_400);
                let subject = cert.subject().to_string();
                let when = k8s_openapi::jiff::Timestamp::from_second(not_after)
                    .map(|t| t.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                let (status, text) = if not_after <= now {
                    (
                        Status::Failed,
                        format!("{key} ({subject}) expired on {when}"),
                    )
                } else if days < CERT_WARN_DAYS {
                    (
                        Status::Warning,
                        format!("{key} ({subject}) expires on {when}, in {days} days"),
                    )
                } else {
                    (Status::Ok, format!("{key} ({subject}) valid until {when}"))
                };
                out.push((status, text));
            }
        }
        if left.is_empty() || left.iter().all(u8::is_ascii_whitespace) {
            break;
        }
        rest = left;
    }
    out
}

async fn certificates_check(cx: &Context, cluster: Option<&Cluster>) -> Check {
    let mut certs = kept_certificates(cx);
    let mut source = format!(
        "the kept copy {}",
        crate::kept::copy_path(foreman_operator::resources::TLS_SECRET)
    );
    if certs.is_empty() {
        if let Some(c) = cluster {
            if let Ok(Some(data)) = c.secret_data(foreman_operator::resources::TLS_SECRET).await {
                certs = data
                    .into_iter()
                    .filter(|(k, _)| k.ends_with(".crt"))
                    .map(|(k, v)| (k, v.0))
                    .collect();
                source = "Secret foreman/foreman-tls".into();
            }
        }
    }
    if certs.is_empty() {
        return Check::new(
            "certificates",
            Status::Skipped,
            "no certificates found (no kept copy of foreman-tls, no Secret)",
        );
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let findings: Vec<(Status, String)> = certs
        .iter()
        .flat_map(|(k, pem)| cert_findings(k, pem, now))
        .collect();
    let worst = if findings.iter().any(|(s, _)| *s == Status::Failed) {
        Status::Failed
    } else if findings.iter().any(|(s, _)| *s == Status::Warning) {
        Status::Warning
    } else {
        Status::Ok
    };
    let named: Vec<String> = findings
        .iter()
        .filter(|(s, _)| *s != Status::Ok)
        .map(|(_, t)| t.clone())
        .collect();
    match worst {
        Status::Ok => Check::new("certificates", Status::Ok, format!("{} certificates valid for {CERT_WARN_DAYS} days or more ({source})", findings.len())),
        _ => Check::new(
            "certificates",
            worst,
            format!("{} of {} certificates expire within {CERT_WARN_DAYS} days or have expired ({source})", named.len(), findings.len()),
        )
        .details(named)
        .help("the operator signs them again with the CA in foreman-ca 60 days before they expire; if that has not happened, read its log (kubectl -n foreman logs deploy/foreman-operator) and the Foreman resource's Degraded condition"),
    }
}

fn disk_check(cx: &Context) -> Check {
    let needs = crate::steps::preflight::disk_needs(&cx.config);
    let mut details = Vec::new();
    let mut worst = Status::Ok;
    let mut lines = Vec::new();
    for (dir, need) in needs {
        let Ok(free) = cx.host.fs().free_bytes(&cx.host.path(&dir)) else {
            continue;
        };
        let gib = free as f64 / GIB as f64;
        let line = format!("{}: {gib:.1} GiB free", dir.display());
        if free < DISK_CRITICAL {
            worst = Status::Failed;
            details.push(format!("{line}, under 1 GiB: writes will fail"));
        } else if free < need {
            if worst == Status::Ok {
                worst = Status::Warning;
            }
            details.push(format!(
                "{line}, under the {} GiB foreman-box asks for",
                need / GIB
            ));
        }
        lines.push(line);
    }
    match worst {
        Status::Ok => Check::new("disk", Status::Ok, lines.join("; ")),
        s => Check::new("disk", s, "free space is short")
            .details(details)
            .help(
                "free space (old Pulp content: orphan cleanup; old backups) or grow the filesystem",
            ),
    }
}

/// Present: the node pulled it (an image ID). Pinned: a version tag or a digest, not `latest`.
pub fn image_problems(images: &[ImageInfo]) -> (Vec<String>, Vec<String>) {
    let mut missing = Vec::new();
    let mut unpinned = Vec::new();
    for i in images {
        if i.image_id.is_empty() {
            missing.push(format!(
                "{}/{}: {} is not pulled",
                i.pod, i.container, i.image
            ));
        }
        let last = i.image.rsplit('/').next().unwrap_or(&i.image);
        let pinned = i.image.contains("@sha256:")
            || last
                .split_once(':')
                .is_some_and(|(_, tag)| tag != "latest" && !tag.is_empty());
        if !pinned {
            unpinned.push(format!(
                "{}/{}: {} follows a moving tag",
                i.pod, i.container, i.image
            ));
        }
    }
    missing.sort();
    missing.dedup();
    unpinned.sort();
    unpinned.dedup();
    (missing, unpinned)
}

async fn images_check(cx: &Context, reachable: bool) -> Check {
    if !reachable {
        return Check::new("images", Status::Skipped, "the cluster cannot be read");
    }
    let explicit = cx.config.foreman.kubeconfig.as_deref();
    let pods = match Inspector::connect(&cx.host, explicit).await {
        Ok(i) => i.pods().await,
        Err(e) => Err(e),
    };
    let images = match pods {
        Ok(p) => inspect::images(&p),
        Err(e) => {
            return Check::new(
                "images",
                Status::Failed,
                format!(
                    "cannot read the pods: {}",
                    crate::backup::cluster_problem(&e)
                ),
            )
        }
    };
    let (missing, unpinned) = image_problems(&images);
    if !missing.is_empty() {
        let mut d = missing;
        d.extend(unpinned);
        return Check::new("images", Status::Failed, "images are missing on the node").details(d)
            .help("`kubectl -n foreman describe pod NAME` shows the pull error; an air-gapped host needs the images imported");
    }
    if !unpinned.is_empty() {
        return Check::new(
            "images",
            Status::Warning,
            format!("{} containers run a moving tag", unpinned.len()),
        )
        .details(unpinned)
        .help("a moving tag (`latest`) can change under a restart; pin it in spec.images");
    }
    Check::new(
        "images",
        Status::Ok,
        format!("{} containers, every image pulled and pinned", images.len()),
    )
}

fn services_check(cx: &Context) -> Check {
    if !cx.host.is_real_root() {
        return Check::new(
            "services",
            Status::Skipped,
            "--root: the machine's services are not this host's",
        );
    }
    let mut units = vec!["k3s"];
    if cx.config.postgres.mode == crate::config::PostgresMode::Local {
        units.push("postgresql");
    }
    let states: Vec<(String, String)> = units
        .iter()
        .map(|u| (u.to_string(), cx.host.services().state(u)))
        .collect();
    let bad: Vec<String> = states
        .iter()
        .filter(|(_, s)| s != "active")
        .map(|(u, s)| format!("{u}: {s}"))
        .collect();
    if bad.is_empty() {
        Check::new(
            "services",
            Status::Ok,
            format!("{} active", units.join(", ")),
        )
    } else {
        Check::new("services", Status::Failed, "services are not running")
            .details(bad)
            .help(
                "`systemctl status UNIT` and `journalctl -u UNIT` say why; `systemctl start UNIT`",
            )
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// The report for people: one line per check, then its details and what to do.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warning => "warn",
            Status::Failed => "FAIL",
            Status::Skipped => "skip",
        };
        out.push_str(&format!("{mark} {:<13} {}\n", c.name, c.summary));
        for d in &c.details {
            out.push_str(&format!("     {:<13} - {d}\n", ""));
        }
        if c.status == Status::Failed || c.status == Status::Warning {
            if let Some(h) = &c.help {
                out.push_str(&format!("     {:<13} help: {h}\n", ""));
            }
        }
    }
    out.push_str(if r.healthy {
        "healthy\n"
    } else {
        "unhealthy\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ping_problems_name_every_service_that_is_not_ok() {
        let ok = json!({"results": {"foreman": {"database": {"active": true}, "cache": {"servers": [{"status": "ok"}]}},
            "katello": {"status": "ok", "services": {"candlepin": {"status": "ok"}, "foreman_tasks": {"status": "ok"}}}}});
        assert!(ping_problems(&ok).is_empty());
        let bad = json!({"results": {"foreman": {"database": {"active": false}},
            "katello": {"services": {"pulp3": {"status": "FAIL", "message": "503"}, "foreman_tasks": {"status": "ok"}}}}});
        assert_eq!(
            ping_problems(&bad),
            [
                "foreman: the database connection is not active",
                "katello: pulp3 is FAIL: 503"
            ]
        );
    }

    /// A self-signed certificate valid until `days` from now (rcgen).
    fn cert_expiring_in(days: i64) -> String {
        let until = k8s_openapi::jiff::Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(
                24 * days + 12,
            ))
            .unwrap()
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC);
        let mut params = rcgen::CertificateParams::new(vec!["foreman.example.com".into()]).unwrap();
        params.not_after =
            rcgen::date_time_ymd(until.year().into(), until.month() as u8, until.day() as u8);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn certificates_expiring_within_thirty_days_are_named_expired_ones_fail() {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let soon = cert_findings("tls.crt", cert_expiring_in(10).as_bytes(), now);
        assert_eq!(soon.len(), 1);
        assert_eq!(soon[0].0, Status::Warning);
        assert!(soon[0].1.starts_with("tls.crt ("), "{}", soon[0].1);
        // rcgen sets whole dates: 10 days and a half from now is midnight of that day.
        assert!(
            ["in 10 days", "in 11 days"]
                .iter()
                .any(|d| soon[0].1.ends_with(d)),
            "{}",
            soon[0].1
        );
        let later = cert_findings("ca.crt", cert_expiring_in(400).as_bytes(), now);
        assert_eq!(later[0].0, Status::Ok);
        let bundle = format!("{}{}", cert_expiring_in(400), cert_expiring_in(3));
        let both = cert_findings("chain.crt", bundle.as_bytes(), now);
        assert_eq!(
            both.iter().map(|f| f.0).collect::<Vec<_>>(),
            [Status::Ok, Status::Warning]
        );
        let past = cert_findings(
            "tls.crt",
            cert_expiring_in(10).as_bytes(),
            now + 20 * 86_400,
        );
        assert_eq!(past[0].0, Status::Failed);
        assert!(past[0].1.contains("expired on"), "{}", past[0].1);
        assert_eq!(cert_findings("x.crt", b"nope", now)[0].0, Status::Failed);
    }

    #[test]
    fn pinned_means_a_digest_or_a_version_tag() {
        let i = |image: &str, id: &str| ImageInfo {
            pod: "p".into(),
            container: "c".into(),
            image: image.into(),
            image_id: id.into(),
        };
        let (missing, unpinned) = image_problems(&[
            i("quay.io/foreman/foreman:3.18", "sha256:1"),
            i("quay.io/sclorg/redis-6-c9s:latest", "sha256:2"),
            i("registry:5000/x", ""),
            i("quay.io/foreman/pulp@sha256:abc", "sha256:3"),
        ]);
        assert_eq!(missing, ["p/c: registry:5000/x is not pulled"]);
        assert_eq!(
            unpinned,
            [
                "p/c: quay.io/sclorg/redis-6-c9s:latest follows a moving tag",
                "p/c: registry:5000/x follows a moving tag"
            ]
        );
    }
}
