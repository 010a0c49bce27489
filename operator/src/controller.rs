//! Reconcile, in phases: load (check the database Secrets, make the generated ones once), render
//! (the desired objects, reused while nothing they are made from changed), apply (what differs,
//! with server-side apply under one field manager), prune (what the resource no longer wants),
//! and status (written only when it changes). A missing Secret is a `Degraded` condition, never a
//! crash loop; errors requeue with a bounded backoff; a Job that gave up is recreated a bounded
//! number of times.
//!
//! What the managed objects look like comes from watches ([`cache`]), not from listing every
//! kind on each reconcile: a reconcile of an unchanged resource reads its Secrets and writes
//! nothing.

mod cache;
mod status;

pub use cache::RETRY_ANNOTATION;
pub use status::{status_for, ComponentState, Health, Maintenance, Problem, Retry};

use crate::crd::{Foreman, ForemanSpec, ForemanStatus};
use crate::generated::{self, Generated};
use crate::resources::{
    self, certificates, DB_KEYS, GENERATED_KEYS, GENERATED_SECRET, HASH_ANNOTATION, INSTANCE_LABEL,
    KINDS, TLS_SECRET,
};
use crate::{Error, FIELD_MANAGER};
use cache::{Cache, Pending, Readiness, Seen, View};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an unchanged resource's certificates are checked for renewal.
const RENEWAL_RECHECK: Duration = Duration::from_secs(3600);

/// How long a reconcile waits for the watches' first lists.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Context {
    pub client: Client,
    namespace: String,
    cache: Arc<Cache>,
    /// The last render per resource (by name).
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// The status last written per resource, with the resourceVersion it was written over: a
    /// resource seen again at that version is the watch lagging behind our write.
    written: Mutex<HashMap<String, (Option<String>, ForemanStatus)>>,
    /// Per resource: the certificate Secret's and the CA Secret's resourceVersions and the
    /// generation last checked for renewal, and when: the check parses every certificate, so an
    /// unchanged resource repeats it hourly, not on every reconcile (renewal starts 60 days
    /// before expiry).
    renewal_checked: Mutex<HashMap<String, (RenewalKey, Instant)>>,
    /// Consecutive failures per resource, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    jobs: Mutex<JobRetries>,
    retries: RetryPolicy,
}

/// How often and when a Job that gave up is run again: recreated up to `attempts` times, the
/// first `first` after the failure was seen, each wait twice the one before, at most `longest`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first: Duration,
    pub longest: Duration,
}

impl Default for RetryPolicy {
    /// 5 recreations after 1, 2, 4, 8 and 15 minutes: a database or service that comes back
    /// within half an hour is caught without a person.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first: Duration::from_secs(60),
            longest: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait before recreation number `attempt` (from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.longest)
    }
}

#[derive(Default)]
struct JobRetries {
    /// When each Job was first seen to have given up.
    failed_at: HashMap<String, Instant>,
    /// Jobs deleted for a retry, with the attempt their recreation is.
    recreate: HashMap<String, u32>,
}

impl Context {
    pub fn new(client: Client, namespace: &str) -> Arc<Self> {
        Self::with_retries(client, namespace, RetryPolicy::default())
    }

    pub fn with_retries(client: Client, namespace: &str, retries: RetryPolicy) -> Arc<Self> {
        Arc::new(Context {
            client,
            namespace: namespace.to_string(),
            cache: Arc::default(),
            plans: Mutex::default(),
            written: Mutex::default(),
            renewal_checked: Mutex::default(),
            failures: Mutex::default(),
            jobs: Mutex::default(),
            retries,
        })
    }

    /// The watches of the managed objects: they keep the cache current while the stream is
    /// polled, and each item is a change worth a reconcile.
    pub fn watches(&self) -> impl Stream<Item = ()> + Send + 'static {
        self.cache.watches(&self.client, &self.namespace)
    }

    fn succeeded(&self, name: &str) {
        self.failures.lock().unwrap().remove(name);
    }
}

/// Runs the controller for `Foreman` resources in `namespace` until the process is stopped.
pub async fn run(client: Client, namespace: &str) {
    let ctx = Context::new(client.clone(), namespace);
    let foremans: Api<Foreman> = Api::namespaced(client, namespace);
    let reconciles = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let idle = tokio::spawn(crate::idle::release_when_idle(reconciles.clone()));
    Controller::new(foremans, watcher::Config::default())
        .reconcile_all_on(ctx.watches())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            reconciles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                match r {
                    Ok((obj, _)) => tracing::debug!(name = %obj.name, "reconciled"),
                    Err(e) => tracing::warn!(error = %e, "reconcile failed"),
                }
            }
        })
        .await;
    idle.abort();
}

pub fn api_resource(version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, ver) = version.split_once('/').unwrap_or(("", version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, ver, kind), plural)
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// Requeue after a failure: 5 s, doubling, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(300))
}

pub fn error_policy(fm: Arc<Foreman>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut f = ctx.failures.lock().unwrap();
    let n = f.entry(fm.name_any()).or_insert(0);
    let delay = backoff(*n);
    *n = n.saturating_add(1);
    tracing::warn!(name = %fm.name_any(), error = %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

pub async fn reconcile(fm: Arc<Foreman>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = fm.name_any();
    let (secrets, known) = match load(&fm, &ctx).await? {
        Ok(loaded) => loaded,
        Err(problems) => {
            write_status(&fm, &ctx, &[], &Health::Degraded(problems), None).await?;
            ctx.succeeded(&name);
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    ctx.cache
        .listed(LIST_TIMEOUT)
        .await
        .map_err(|kinds| Error::Watch {
            kinds: kinds.join(", "),
            waited: LIST_TIMEOUT,
        })?;
    let tls = known.get(TLS_SECRET).cloned().unwrap_or_default();
    let (plan, mut rendered) = render(&fm, &ctx, secrets, &tls);
    let outcome = apply(&fm, &ctx, &plan, &mut rendered, &tls).await?;
    prune(&fm, &ctx, &plan).await?;
    let assessed = assess(&fm, &ctx, &plan, &outcome).await?;
    let ready = outcome.applied.is_empty()
        && assessed.problems.is_empty()
        && assessed.components.iter().all(|(_, s)| s.is_ready());
    let health = Health::judge(assessed.problems, ready);
    let maintenance = if fm.spec.maintenance {
        Some(writers_left(&fm, &ctx).await?)
    } else {
        None
    };
    write_status(
        &fm,
        &ctx,
        &assessed.components,
        &health,
        maintenance.as_ref(),
    )
    .await?;
    // Entering maintenance is watched pod by pod, which no watch here sees: look again soon.
    if maintenance
        .as_ref()
        .is_some_and(|m| !m.writers_left.is_empty())
    {
        ctx.succeeded(&name);
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    ctx.succeeded(&name);
    let again = if ready { 300 } else { 15 };
    Ok(Action::requeue(
        assessed.due.map_or(Duration::from_secs(again), |d| {
            d.min(Duration::from_secs(again))
        }),
    ))
}

/// The resourceVersion of each Secret the objects are made with, by name.
type Versions = Vec<(String, Option<String>)>;

/// What a renewal check of the certificates depended on: the resource's generation, the
/// certificate Secret's resourceVersion and the CA certificate.
type RenewalKey = (Option<i64>, Option<String>, Option<String>);

/// Load: the database Secrets the installer (or the user) provides, checked, then the generated
/// ones, made once and never rotated by the operator (foreman-box's installer may have created
/// them already, from the copies it keeps outside the cluster). Their versions, or what is
/// missing.
#[allow(clippy::type_complexity)]
async fn load(
    fm: &Arc<Foreman>,
    ctx: &Context,
) -> Result<Result<(Versions, generated::Known), Vec<(Problem, String)>>, Error> {
    let ns = fm.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let mut needed = vec![fm.spec.database.secret.clone()];
    if fm.spec.plugins.katello {
        needed.extend([
            fm.spec.database.candlepin_secret.clone(),
            fm.spec.database.pulp_secret.clone(),
        ]);
    }
    let mut versions = Vec::new();
    let mut problems = Vec::new();
    for s in needed {
        let secret = api
            .get_opt(&s)
            .await
            .map_err(kube_err(format!("reading Secret {ns}/{s}")))?;
        if let Some(problem) = database_secret_problem(&ns, &s, secret.as_ref()) {
            problems.push((Problem::DatabaseSecretMissing, problem));
        }
        versions.push((s, secret.and_then(|s| s.metadata.resource_version)));
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let mut known = generated::Known::new();
    for g in generated::needed(fm) {
        let (version, values) = ensure_secret(&api, fm, ctx, g, &mut known).await?;
        known.insert(g.name.to_string(), values);
        versions.push((g.name.to_string(), version));
    }
    Ok(Ok((versions, known)))
}

/// What is wrong with a database Secret, if anything.
fn database_secret_problem(ns: &str, name: &str, secret: Option<&Secret>) -> Option<String> {
    let Some(secret) = secret else {
        return Some(format!(
            "Secret {ns}/{name} does not exist; create it with keys {}",
            DB_KEYS.join(", ")
        ));
    };
    let have: Vec<&String> = secret
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(secret.string_data.iter().flat_map(|d| d.keys()))
        .collect();
    let missing: Vec<&str> = DB_KEYS
        .iter()
        .copied()
        .filter(|k| !have.iter().any(|h| h == k))
        .collect();
    (!missing.is_empty()).then(|| format!("Secret {ns}/{name} lacks key(s) {}", missing.join(", ")))
}

/// Key generation (an RSA key takes tens to hundreds of milliseconds) runs on a blocking
/// thread, off the thread that reconciles and answers watches.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("key generation does not panic")
}

/// The data of a Secret as text.
fn strings(data: BTreeMap<String, k8s_openapi::ByteString>) -> certificates::Values {
    data.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Creates the Secret with generated data unless it exists; existing values are never
/// replaced. The token Secret made by an older operator gets the keys it lacks added (one merge
/// patch with only those keys); the certificates are renewed. Its resourceVersion and values.
async fn ensure_secret(
    api: &Api<Secret>,
    fm: &Arc<Foreman>,
    ctx: &Context,
    g: Generated,
    known: &mut generated::Known,
) -> Result<(Option<String>, certificates::Values), Error> {
    let name = g.name;
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {name}")))?
    else {
        return create_secret(api, fm, g, known).await;
    };
    let version = existing.metadata.resource_version.clone();
    let mut have = strings(existing.data.unwrap_or_default());
    if name == TLS_SECRET {
        return complete_certificates(api, fm, ctx, version, have, known).await;
    }
    let wanted = wanted_keys(name);
    if wanted.iter().all(|k| have.contains_key(*k)) {
        return Ok((version, have));
    }
    let (for_fm, for_known) = (fm.clone(), known.clone());
    let fresh = off_thread(move || generated::generate(&for_fm, name, &for_known)).await?;
    let missing: BTreeMap<String, String> = fresh
        .into_iter()
        .filter(|(k, _)| !have.contains_key(k))
        .collect();
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": missing })),
        )
        .await
        .map_err(kube_err(format!("adding keys to Secret {name}")))?;
    have.extend(missing);
    Ok((patched.metadata.resource_version, have))
}

/// Makes the generated Secret's data (on a blocking thread) from the [`generated::inputs`] it
/// needs, and creates it. Its resourceVersion and values.
async fn create_secret(
    api: &Api<Secret>,
    fm: &Arc<Foreman>,
    g: Generated,
    known: &mut generated::Known,
) -> Result<(Option<String>, certificates::Values), Error> {
    let name = g.name;
    for input in generated::inputs(name) {
        if known.contains_key(*input) {
            continue;
        }
        if let Some(s) = api
            .get_opt(input)
            .await
            .map_err(kube_err(format!("reading Secret {input}")))?
        {
            known.insert(input.to_string(), strings(s.data.unwrap_or_default()));
        }
    }
    let (for_fm, for_known) = (fm.clone(), known.clone());
    let data = off_thread(move || generated::generate(&for_fm, name, &for_known)).await?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": generated::labels(fm), "ownerReferences": owner_refs(fm)},
        "type": g.type_,
        "stringData": data,
    }))
    .expect("a generated Secret is well-formed");
    let made = api
        .create(&PostParams::default(), &secret)
        .await
        .map_err(kube_err(format!("creating Secret {name}")))?;
    Ok((made.metadata.resource_version, data))
}

/// The certificate Secret brought in line with the CA Secret ([`certificates::renew`]): leaves
/// that are missing, expiring, lacking a name or from another CA signed again, an older
/// operator's `ca.key` removed once the CA Secret holds it. One merge patch with only those
/// keys. Checked when either Secret or the resource changed, else hourly. Its resourceVersion
/// and the values after it.
async fn complete_certificates(
    api: &Api<Secret>,
    fm: &Arc<Foreman>,
    ctx: &Context,
    version: Option<String>,
    mut have: certificates::Values,
    known: &generated::Known,
) -> Result<(Option<String>, certificates::Values), Error> {
    let ca = known
        .get(certificates::CA_SECRET)
        .cloned()
        .unwrap_or_default();
    let key: RenewalKey = (
        fm.metadata.generation,
        version.clone(),
        ca.get("ca.crt").cloned(),
    );
    let who = fm.name_any();
    let fresh = ctx
        .renewal_checked
        .lock()
        .unwrap()
        .get(&who)
        .is_some_and(|(k, at)| *k == key && at.elapsed() < RENEWAL_RECHECK);
    if fresh {
        return Ok((version, have));
    }
    let (for_fm, for_have) = (fm.clone(), have.clone());
    let update = off_thread(move || {
        certificates::renew(&for_fm, &ca, &for_have, std::time::SystemTime::now())
    })
    .await?;
    let Some(update) = update else {
        ctx.renewal_checked
            .lock()
            .unwrap()
            .insert(who, (key, Instant::now()));
        return Ok((version, have));
    };
    let removed: BTreeMap<&String, Value> =
        update.remove.iter().map(|k| (k, Value::Null)).collect();
    let patched = api
        .patch(
            TLS_SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": update.set, "data": removed })),
        )
        .await
        .map_err(kube_err(format!(
            "renewing certificates in Secret {TLS_SECRET}"
        )))?;
    tracing::info!(secret = TLS_SECRET, why = %update.why.join("; "), "certificates renewed");
    for k in &update.remove {
        have.remove(k);
    }
    have.extend(update.set);
    Ok((patched.metadata.resource_version, have))
}

/// The keys an existing generated Secret is completed with. Only the token Secret: its keys
/// are independent, while certificates must come as one set from one CA (a CA from an older
/// operator is not reused to sign new ones).
fn wanted_keys(name: &str) -> Vec<&'static str> {
    match name {
        GENERATED_SECRET => GENERATED_KEYS.to_vec(),
        _ => Vec::new(),
    }
}

fn owner_refs(fm: &Foreman) -> Value {
    json!([{"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "name": fm.name_any(), "uid": fm.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}])
}

/// Everything the desired objects are made from: while it is the same, the last render stands.
#[derive(Debug, Clone, PartialEq)]
struct RenderKey {
    operator: &'static str,
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    generation: Option<i64>,
    spec: ForemanSpec,
    secrets: Versions,
}

impl RenderKey {
    fn of(fm: &Foreman, secrets: Versions) -> RenderKey {
        RenderKey {
            operator: env!("CARGO_PKG_VERSION"),
            name: fm.metadata.name.clone(),
            namespace: fm.metadata.namespace.clone(),
            uid: fm.metadata.uid.clone(),
            generation: fm.metadata.generation,
            spec: fm.spec.clone(),
            secrets,
        }
    }
}

/// One render, kept without its objects: per object its kind (index into [`KINDS`]), name and
/// desired hash, in apply order.
#[derive(Debug)]
struct Plan {
    from: RenderKey,
    objects: Vec<Planned>,
}

#[derive(Debug, Clone, PartialEq)]
struct Planned {
    kind: usize,
    name: String,
    hash: String,
}

impl Planned {
    fn of(obj: &Value) -> Option<Planned> {
        let kind = KINDS
            .iter()
            .position(|(v, k, _)| obj["apiVersion"] == *v && obj["kind"] == *k);
        let name = obj["metadata"]["name"].as_str();
        let hash = obj["metadata"]["annotations"][HASH_ANNOTATION].as_str();
        match (kind, name, hash) {
            (Some(kind), Some(name), Some(hash)) => Some(Planned {
                kind,
                name: name.to_string(),
                hash: hash.to_string(),
            }),
            _ => {
                tracing::error!(kind = %obj["kind"], name = %obj["metadata"]["name"], "rendered an object the controller does not manage; left out");
                None
            }
        }
    }

    fn kind_name(&self) -> &'static str {
        KINDS[self.kind].1
    }

    /// Whether `obj` is this object as planned: compared in place, without making a `Planned`
    /// of every rendered object for every one applied.
    fn is(&self, obj: &Value) -> bool {
        let (version, kind, _) = KINDS[self.kind];
        obj["metadata"]["name"].as_str() == Some(self.name.as_str())
            && obj["kind"] == kind
            && obj["apiVersion"] == version
            && obj["metadata"]["annotations"][HASH_ANNOTATION].as_str() == Some(self.hash.as_str())
    }
}

/// Render: the desired objects when anything they are made from changed, else the last plan
/// (and no objects: they are made again only if one must be applied).
fn render(
    fm: &Foreman,
    ctx: &Context,
    secrets: Versions,
    tls: &certificates::Values,
) -> (Arc<Plan>, Option<Vec<Value>>) {
    let key = RenderKey::of(fm, secrets);
    let name = fm.name_any();
    if let Some(plan) = ctx
        .plans
        .lock()
        .unwrap()
        .get(&name)
        .filter(|p| p.from == key)
    {
        return (plan.clone(), None);
    }
    let objects = desired(fm, tls);
    let mut planned: Vec<Planned> = objects.iter().filter_map(Planned::of).collect();
    planned.sort_by_key(|p| p.kind);
    let plan = Arc::new(Plan {
        from: key,
        objects: planned,
    });
    ctx.plans.lock().unwrap().insert(name, plan.clone());
    (plan, Some(objects))
}

/// The desired objects, the Deployments that mount the certificates stamped with their digest
/// (so a renewal rolls them).
fn desired(fm: &Foreman, tls: &certificates::Values) -> Vec<Value> {
    let mut objects = resources::desired(fm);
    certificates::stamp(&mut objects, tls);
    objects
}

/// What the apply phase did.
#[derive(Debug, Default)]
struct Outcome {
    applied: Vec<(usize, String)>,
    /// Deployments left at their running version, by name, with the migration Job they wait
    /// for.
    held: BTreeMap<String, String>,
    /// Objects the API server refused (kind, name, its message).
    rejected: Vec<(usize, String, String)>,
}

/// Apply: each object whose desired hash the cluster does not have yet, in apply order. An
/// object the API server refuses is reported and the others still applied.
async fn apply(
    fm: &Foreman,
    ctx: &Context,
    plan: &Plan,
    rendered: &mut Option<Vec<Value>>,
    tls: &certificates::Values,
) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    let stale = |p: &Planned| ctx.cache.view(p.kind, &p.name).hash() != Some(p.hash.as_str());
    if (plan.objects.iter()).any(|p| p.kind_name() == "Deployment" && stale(p)) {
        let objects = rendered.get_or_insert_with(|| desired(fm, tls));
        outcome.held = held_for_migrations(ctx, objects);
    }
    for p in &plan.objects {
        if !stale(p) || outcome.held.contains_key(&p.name) && p.kind_name() == "Deployment" {
            continue;
        }
        let objects = rendered.get_or_insert_with(|| desired(fm, tls));
        let Some(body) = objects.iter_mut().find(|o| p.is(o)) else {
            continue;
        };
        // Each object is applied once a reconcile, and the render is not read after: moved
        // out, not copied.
        let mut body = std::mem::take(body);
        let attempt = ctx.jobs.lock().unwrap().recreate.get(&p.name).copied();
        if let Some(n) = attempt {
            body["metadata"]["annotations"][RETRY_ANNOTATION] = json!(n.to_string());
        }
        match send_apply(ctx, p, &body).await? {
            Ok(()) => {
                ctx.jobs.lock().unwrap().recreate.remove(&p.name);
                outcome.applied.push((p.kind, p.name.clone()));
            }
            Err(message) => outcome.rejected.push((p.kind, p.name.clone(), message)),
        }
    }
    Ok(outcome)
}

/// The migration Jobs (Foreman's `db:migrate`, Pulp's `migrate`): an upgrade runs them before
/// anything rolls. Candlepin migrates in its own pod as it starts, so it has none here.
const MIGRATION_JOBS: &[&str] = &["foreman-migrate-", "pulp-migrate-"];

/// The Deployments to leave at their running version for now, with the Job each waits for:
/// those that run the image of a migration Job that has not succeeded yet while their live pods
/// run another (an upgrade). Only Deployments whose containers run the Job's own image are held,
/// so what the Job itself needs (Candlepin, on another image) still rolls; a Deployment not created yet (a
/// first install) is not held: its init container waits for the migration.
fn held_for_migrations(ctx: &Context, objects: &[Value]) -> BTreeMap<String, String> {
    let kind = |k: &str| KINDS.iter().position(|(_, kind, _)| *kind == k);
    let (Some(job_kind), Some(deployment_kind)) = (kind("Job"), kind("Deployment")) else {
        return BTreeMap::new();
    };
    let mut held = BTreeMap::new();
    for job in objects.iter().filter(|o| o["kind"] == "Job") {
        let name = job["metadata"]["name"].as_str().unwrap_or_default();
        if !MIGRATION_JOBS.iter().any(|m| name.starts_with(m)) {
            continue;
        }
        let finished = matches!(
            ctx.cache.view(job_kind, name),
            View::Present(Seen { readiness: Readiness::Job { succeeded, .. }, .. }) if succeeded > 0
        );
        if finished {
            continue;
        }
        // The image the migration runs in: the Job's containers (its init containers only wait).
        let job_images: Vec<&str> = (job["spec"]["template"]["spec"]["containers"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| c["image"].as_str())
            .collect();
        for d in objects.iter().filter(|o| o["kind"] == "Deployment") {
            let d_name = d["metadata"]["name"].as_str().unwrap_or_default();
            // Its own containers, not its init containers: Candlepin's init container runs
            // Foreman's image only to wait, and holding Candlepin would hold the Job that waits
            // for it.
            let runs = |image: &&str| {
                (d["spec"]["template"]["spec"]["containers"].as_array())
                    .into_iter()
                    .flatten()
                    .any(|c| c["image"] == *image)
            };
            if !job_images.iter().any(runs) {
                continue;
            }
            if let View::Present(Seen {
                readiness: Readiness::Deployment { images: live, .. },
                ..
            }) = ctx.cache.view(deployment_kind, d_name)
            {
                if !job_images.iter().all(|i| live.iter().any(|l| l == i)) {
                    held.insert(d_name.to_string(), name.to_string());
                }
            }
        }
    }
    held
}

/// One server-side apply (forced: the operator owns these objects). The response is not
/// parsed: the watch brings the object. `Err(message)` when the API server refused it.
async fn send_apply(ctx: &Context, p: &Planned, body: &Value) -> Result<Result<(), String>, Error> {
    let what = || format!("applying {} {}", p.kind_name(), p.name);
    let request = object_request(ctx, p.kind)
        .patch(
            &p.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .map_err(|e| kube_err(what())(kube::Error::BuildRequest(e)))?;
    let mark = ctx.cache.mark(p.kind, &p.name);
    match ctx.client.request_text(request).await {
        Ok(_) => {
            ctx.cache
                .wrote(p.kind, &p.name, mark, Pending::Applied(p.hash.clone()));
            Ok(Ok(()))
        }
        // The API refused this object: report it and go on with the others.
        Err(kube::Error::Api(status)) => Ok(Err(status.message)),
        Err(e) => Err(kube_err(what())(e)),
    }
}

fn object_request(ctx: &Context, kind: usize) -> kube::core::Request {
    let (version, k, plural) = KINDS[kind];
    kube::core::Request::new(DynamicObject::url_path(
        &api_resource(version, k, plural),
        Some(&ctx.namespace),
    ))
}

/// Prune: the resource's objects it no longer wants.
async fn prune(fm: &Foreman, ctx: &Context, plan: &Plan) -> Result<(), Error> {
    for (kind, name) in ctx.cache.names_of(&fm.name_any()) {
        if !plan
            .objects
            .iter()
            .any(|p| p.kind == kind && p.name == name)
        {
            delete(ctx, kind, &name).await?;
        }
    }
    Ok(())
}

/// Deletes an object, its dependents in the background; one already gone is fine.
async fn delete(ctx: &Context, kind: usize, name: &str) -> Result<(), Error> {
    let what = || format!("deleting {} {name}", KINDS[kind].1);
    let request = object_request(ctx, kind)
        .delete(name, &DeleteParams::background())
        .map_err(|e| kube_err(what())(kube::Error::BuildRequest(e)))?;
    let mark = ctx.cache.mark(kind, name);
    match ctx.client.request_text(request).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(kube_err(what())(e)),
    }
    ctx.cache.wrote(kind, name, mark, Pending::Deleted);
    Ok(())
}

/// What the status phase reports.
#[derive(Debug, Default)]
struct Assessed {
    components: Vec<(String, ComponentState)>,
    problems: Vec<(Problem, String)>,
    /// When a failed Job is due to run again.
    due: Option<Duration>,
}

/// Each Deployment's and Job's state and the problems to report; a Job that gave up is
/// deleted for a retry when its time has come.
async fn assess(
    fm: &Foreman,
    ctx: &Context,
    plan: &Plan,
    outcome: &Outcome,
) -> Result<Assessed, Error> {
    let mut a = Assessed::default();
    if !outcome.rejected.is_empty() {
        let each: Vec<String> = (outcome.rejected.iter())
            .map(|(k, n, m)| format!("{} {n}: {m}", KINDS[*k].1))
            .collect();
        let message = format!("the API server rejected {}", each.join("; "));
        a.problems.push((Problem::ObjectsRejected, message));
    }
    for p in plan
        .objects
        .iter()
        .filter(|p| matches!(p.kind_name(), "Deployment" | "Job"))
    {
        if let Some(state) = component_state(fm, ctx, p, outcome, &mut a).await? {
            a.components.push((p.name.clone(), state));
        }
    }
    ctx.jobs.lock().unwrap().failed_at.retain(|job, _| {
        a.components
            .iter()
            .any(|(n, s)| n == job && matches!(s, ComponentState::Failed { .. }))
    });
    Ok(a)
}

/// One Deployment's or Job's state as the watch last showed it; none for an object the API
/// server refused (the problem says so).
async fn component_state(
    fm: &Foreman,
    ctx: &Context,
    p: &Planned,
    outcome: &Outcome,
    a: &mut Assessed,
) -> Result<Option<ComponentState>, Error> {
    if let Some(job) = outcome
        .held
        .get(&p.name)
        .filter(|_| p.kind_name() == "Deployment")
    {
        return Ok(Some(ComponentState::WaitingForMigration {
            job: job.clone(),
        }));
    }
    let applied_now = (outcome.applied.iter()).any(|(k, n)| *k == p.kind && *n == p.name);
    let rejected = (outcome.rejected.iter()).any(|(k, n, _)| *k == p.kind && *n == p.name);
    let seen = match ctx.cache.view(p.kind, &p.name) {
        View::Present(s) if !applied_now && s.hash.as_deref() == Some(p.hash.as_str()) => s,
        _ if rejected => return Ok(None),
        _ => return Ok(Some(ComponentState::RollingOut)),
    };
    Ok(Some(match seen.readiness {
        Readiness::Job {
            gave_up: Some((reason, message)),
            attempt,
            ..
        } => job_gave_up(fm, ctx, p, &reason, &message, attempt, a).await?,
        r => readiness_state(&p.name, r),
    }))
}

fn readiness_state(name: &str, readiness: Readiness) -> ComponentState {
    match readiness {
        Readiness::Deployment { want, ready, .. } if ready >= want => ComponentState::Ready,
        Readiness::Deployment { want, ready, .. } => ComponentState::Replicas { ready, want },
        Readiness::Job { succeeded, .. } if succeeded > 0 => ComponentState::Ready,
        Readiness::Job { failed, .. } if failed > 0 => ComponentState::Retrying {
            failed,
            job: name.to_string(),
        },
        Readiness::Job { .. } => ComponentState::Running,
        Readiness::None => ComponentState::RollingOut,
    }
}

/// A Job that gave up: deleted once its wait has passed (the next reconcile creates it again,
/// counting the attempt on it), reported as Degraded meanwhile and after the last attempt.
async fn job_gave_up(
    fm: &Foreman,
    ctx: &Context,
    p: &Planned,
    reason: &str,
    message: &str,
    attempt: u32,
    a: &mut Assessed,
) -> Result<ComponentState, Error> {
    let ns = fm.namespace().unwrap_or_default();
    let job = &p.name;
    let next = attempt + 1;
    let policy = ctx.retries;
    let log = job_log_tail(ctx, &ns, job).await;
    let retry = if next > policy.attempts {
        let help = format!("help: read `kubectl -n {ns} logs job/{job}`, fix the cause, then `kubectl -n {ns} delete job {job}`: the operator creates it again");
        let text = format!("Job {job} failed ({reason}: {message}) and was run again {} times; it is not retried any more{log}\n{help}", policy.attempts);
        a.problems.push((Problem::JobFailed, text));
        Retry::Exhausted {
            of: policy.attempts,
        }
    } else {
        let after = policy.delay(next);
        retry_when_due(ctx, p, next, after, a).await?;
        let text = format!("Job {job} failed ({reason}: {message}); the operator runs it again (attempt {next} of {}) {} after the failure; see `kubectl -n {ns} logs job/{job}`{log}", policy.attempts, status::human(after));
        a.problems.push((Problem::JobFailed, text));
        Retry::After {
            attempt: next,
            of: policy.attempts,
            after,
        }
    };
    Ok(ComponentState::Failed {
        job: job.clone(),
        reason: reason.to_string(),
        retry,
    })
}

/// How many lines of a failed Job's log its Degraded message quotes, and at most how many bytes.
const JOB_LOG_LINES: i64 = 10;
const JOB_LOG_BYTES: usize = 2048;

/// The last lines of the newest pod of a failed Job (its first container), as a paragraph for
/// the Degraded message; empty when there is no pod or log to read (the message still names
/// the `kubectl logs` command).
async fn job_log_tail(ctx: &Context, ns: &str, job: &str) -> String {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("job-name={job}");
    let Ok(pods) = api.list(&ListParams::default().labels(&selector)).await else {
        return String::new();
    };
    let Some(pod) = pods
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone())
    else {
        return String::new();
    };
    let name = pod.name_any();
    let container = pod
        .spec
        .and_then(|s| s.containers.into_iter().next())
        .map(|c| c.name);
    let params = LogParams {
        container,
        tail_lines: Some(JOB_LOG_LINES),
        ..LogParams::default()
    };
    match api.logs(&name, &params).await {
        Ok(text) if !text.trim().is_empty() => {
            let mut tail = text.trim_end().to_string();
            if tail.len() > JOB_LOG_BYTES {
                let cut = tail.len() - JOB_LOG_BYTES;
                let cut = (cut..tail.len())
                    .find(|i| tail.is_char_boundary(*i))
                    .unwrap_or(cut);
                tail = format!("…{}", &tail[cut..]);
            }
            format!("\nlast lines of pod {name}:\n{tail}")
        }
        _ => String::new(),
    }
}

/// Deletes the failed Job `after` it was first seen failed (the apply phase recreates it as
/// attempt `next`); until then, asks for a reconcile when it is due.
async fn retry_when_due(
    ctx: &Context,
    p: &Planned,
    next: u32,
    after: Duration,
    a: &mut Assessed,
) -> Result<(), Error> {
    let failed_at = *(ctx.jobs.lock().unwrap().failed_at)
        .entry(p.name.clone())
        .or_insert_with(Instant::now);
    let waited = failed_at.elapsed();
    if waited >= after {
        delete(ctx, p.kind, &p.name).await?;
        ctx.jobs
            .lock()
            .unwrap()
            .recreate
            .insert(p.name.clone(), next);
    } else {
        a.due = Some(a.due.map_or(after - waited, |d| d.min(after - waited)));
    }
    Ok(())
}

/// Status: written when it differs from what the resource has (or, while the watch has not
/// brought our last write back, from what we wrote).
/// The writer pods of this resource still there (terminating ones included: they may still
/// write), by name. One list of pods by label; only while in maintenance.
async fn writers_left(fm: &Foreman, ctx: &Context) -> Result<Maintenance, Error> {
    let ns = fm.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{INSTANCE_LABEL}={}", fm.name_any());
    let pods = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err("listing the writer pods"))?;
    let mut writers_left: Vec<String> = pods
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/name"))
                .is_some_and(|c| resources::WRITERS.contains(&c.as_str()))
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    writers_left.sort();
    Ok(Maintenance { writers_left })
}

async fn write_status(
    fm: &Foreman,
    ctx: &Context,
    components: &[(String, ComponentState)],
    health: &Health,
    maintenance: Option<&Maintenance>,
) -> Result<(), Error> {
    let status = status_for(fm, components, health, maintenance);
    let name = fm.name_any();
    let version = fm.resource_version();
    let current = match ctx.written.lock().unwrap().get(&name) {
        Some((over, written)) if *over == version => Some(written.clone()),
        _ => fm.status.clone(),
    };
    if current.as_ref() == Some(&status) {
        return Ok(());
    }
    let ns = fm.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Foreman> = Api::namespaced(ctx.client.clone(), &ns);
    // Server-side apply of the whole status: components that went away are dropped with it.
    let body =
        json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(kube_err("updating status"))?;
    ctx.written.lock().unwrap().insert(name, (version, status));
    Ok(())
}
