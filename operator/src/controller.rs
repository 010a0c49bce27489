//! Reconcile: check the database Secrets, make the generated Secret once, apply what changed with
//! server-side apply (one field manager), prune what the resource no longer wants, and report
//! status. A missing Secret is a `Degraded` condition, never a crash loop; errors requeue with a
//! bounded backoff.

use crate::crd::{Condition, Foreman, ForemanStatus};
use crate::generated;
use crate::resources::{
    self, certificates, DB_KEYS, GENERATED_KEYS, GENERATED_SECRET, HASH_ANNOTATION, INSTANCE_LABEL,
    KINDS, MANAGED_BY, MANAGED_BY_LABEL, TLS_SECRET,
};
use crate::{Error, FIELD_MANAGER};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Context {
    pub client: Client,
    /// Consecutive failures per resource, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Context {
            client,
            failures: Mutex::new(HashMap::new()),
        })
    }
}

/// Runs the controller for `Foreman` resources in `namespace` until the process is stopped.
pub async fn run(client: Client, namespace: &str) {
    let foremans: Api<Foreman> = Api::namespaced(client.clone(), namespace);
    let mut controller = Controller::new(foremans, watcher::Config::default());
    for (version, kind, plural) in KINDS {
        let ar = api_resource(version, kind, plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        controller = controller.owns_with(
            api,
            ar,
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
        );
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, Context::new(client))
        .for_each(|r| async move {
            match r {
                Ok((obj, _)) => tracing::debug!(name = %obj.name, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
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
    let ns = fm.namespace().ok_or(Error::NoNamespace)?;
    let name = fm.name_any();
    let client = &ctx.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let foremans: Api<Foreman> = Api::namespaced(client.clone(), &ns);

    // 1. The database Secrets the installer (or the user) provides.
    let mut needed = vec![fm.spec.database.secret.clone()];
    if fm.spec.plugins.katello {
        needed.extend([
            fm.spec.database.candlepin_secret.clone(),
            fm.spec.database.pulp_secret.clone(),
        ]);
    }
    let mut problems = Vec::new();
    for s in &needed {
        match secrets
            .get_opt(s)
            .await
            .map_err(kube_err(format!("reading Secret {ns}/{s}")))?
        {
            None => problems.push(format!(
                "Secret {ns}/{s} does not exist; create it with keys {}",
                DB_KEYS.join(", ")
            )),
            Some(secret) => {
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
                if !missing.is_empty() {
                    problems.push(format!(
                        "Secret {ns}/{s} lacks key(s) {}",
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        let status = status_for(
            &fm,
            Vec::new(),
            Some(("DatabaseSecretMissing", problems.join("; "))),
            false,
        );
        patch_status(&foremans, &fm, status).await?;
        ctx.failures.lock().unwrap().remove(&name);
        return Ok(Action::requeue(Duration::from_secs(60)));
    }

    // 2. Generated values, made once (foreman-box's installer may have created them already,
    //    from the copies it keeps outside the cluster); only certificates are renewed.
    let mut known = generated::Known::new();
    for g in generated::needed(&fm) {
        let values = ensure_secret(&secrets, &fm, g, &mut known).await?;
        known.insert(g.name.to_string(), values);
    }

    // 3. Apply what differs, 4. prune what is no longer wanted.
    let mut desired = resources::desired(&fm);
    certificates::stamp(&mut desired, &known[TLS_SECRET]);
    if let Some(uid) = fm.uid() {
        for o in &mut desired {
            o["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
        }
    }
    let selector = format!("{INSTANCE_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}");
    let mut components = Vec::new();
    let mut applied = 0;
    let mut rejected: Vec<String> = Vec::new();
    for (version, kind, plural) in KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(version, kind, plural));
        let existing = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube_err(format!("listing {plural}")))?;
        let existing: BTreeMap<String, DynamicObject> = existing
            .items
            .into_iter()
            .map(|o| (o.name_any(), o))
            .collect();
        let wanted: Vec<&Value> = desired.iter().filter(|o| o["kind"] == *kind).collect();
        for obj in &wanted {
            let oname = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let want_hash = obj["metadata"]["annotations"][HASH_ANNOTATION].as_str();
            let current = existing.get(&oname);
            let have_hash = current
                .and_then(|c| c.annotations().get(HASH_ANNOTATION))
                .map(String::as_str);
            if have_hash != want_hash {
                match api
                    .patch(
                        &oname,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(obj),
                    )
                    .await
                {
                    Ok(_) => applied += 1,
                    // The API refused this object: report it and go on with the others.
                    Err(kube::Error::Api(resp)) => {
                        rejected.push(format!("{kind} {oname}: {}", resp.message));
                        continue;
                    }
                    Err(e) => return Err(kube_err(format!("applying {kind} {oname}"))(e)),
                }
            }
            if let Some(c) = component_state(kind, current, have_hash == want_hash) {
                components.push((oname, c));
            }
        }
        for (oname, _) in existing
            .iter()
            .filter(|(n, _)| !wanted.iter().any(|w| w["metadata"]["name"] == n.as_str()))
        {
            api.delete(oname, &DeleteParams::background())
                .await
                .map_err(kube_err(format!("deleting {kind} {oname}")))?;
        }
    }

    // 5. Status.
    let ready = applied == 0 && rejected.is_empty() && components.iter().all(|(_, s)| s == "ready");
    let degraded = (!rejected.is_empty()).then(|| {
        (
            "ObjectsRejected",
            format!("the API server rejected {}", rejected.join("; ")),
        )
    });
    let status = status_for(&fm, components, degraded, ready);
    patch_status(&foremans, &fm, status).await?;
    ctx.failures.lock().unwrap().remove(&name);
    Ok(Action::requeue(if ready {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(15)
    }))
}

/// Creates the Secret with generated data unless it exists, and returns its values; existing
/// values are never replaced. The token Secret made by an older operator gets the keys it lacks
/// added (one merge patch with only those keys); the certificates are renewed.
async fn ensure_secret(
    api: &Api<Secret>,
    fm: &Foreman,
    g: generated::Generated,
    known: &mut generated::Known,
) -> Result<BTreeMap<String, String>, Error> {
    let name = g.name;
    if let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {name}")))?
    {
        let mut have = strings(existing.data.unwrap_or_default());
        if name == TLS_SECRET {
            return complete_certificates(api, fm, have, known).await;
        }
        let wanted = wanted_keys(name);
        if wanted.iter().all(|k| have.contains_key(*k)) {
            return Ok(have);
        }
        let fresh = generated::generate(fm, name, known)?;
        let missing: BTreeMap<String, String> = fresh
            .into_iter()
            .filter(|(k, _)| !have.contains_key(k))
            .collect();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "stringData": missing })),
        )
        .await
        .map_err(kube_err(format!("adding keys to Secret {name}")))?;
        have.extend(missing);
        return Ok(have);
    }
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
    let values = generated::generate(fm, name, known)?;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": generated::labels(fm), "ownerReferences": owner_refs(fm)},
        "type": g.type_,
        "stringData": values,
    }))
    .expect("a generated Secret is well-formed");
    api.create(&PostParams::default(), &secret)
        .await
        .map_err(kube_err(format!("creating Secret {name}")))?;
    Ok(values)
}

fn strings(data: BTreeMap<String, k8s_openapi::ByteString>) -> BTreeMap<String, String> {
    data.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The certificate Secret brought in line with the CA Secret ([`certificates::renew`]): leaves
/// that are missing, expiring, lacking a name or from another CA signed again, an older
/// operator's `ca.key` removed once the CA Secret holds it. One merge patch with only those
/// keys; returns the values after it.
async fn complete_certificates(
    api: &Api<Secret>,
    fm: &Foreman,
    mut have: BTreeMap<String, String>,
    known: &generated::Known,
) -> Result<BTreeMap<String, String>, Error> {
    let ca = known
        .get(certificates::CA_SECRET)
        .cloned()
        .unwrap_or_default();
    let update = certificates::renew(fm, &ca, &have, std::time::SystemTime::now())?;
    if let Some(update) = update {
        let removed: BTreeMap<&String, Value> =
            update.remove.iter().map(|k| (k, Value::Null)).collect();
        api.patch(
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
    }
    Ok(have)
}

/// The keys an existing generated Secret is completed with. Only the token Secret: its keys
/// are independent (certificates are completed by [`complete_certificates`]).
fn wanted_keys(name: &str) -> Vec<&'static str> {
    match name {
        GENERATED_SECRET => GENERATED_KEYS.to_vec(),
        _ => Vec::new(),
    }
}

fn owner_refs(fm: &Foreman) -> Value {
    json!([{"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "name": fm.name_any(), "uid": fm.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true}])
}

/// `ready`, or what a component waits for; None for kinds without a readiness of their own.
fn component_state(
    kind: &str,
    current: Option<&DynamicObject>,
    up_to_date: bool,
) -> Option<String> {
    if !matches!(kind, "Deployment" | "Job") {
        return None;
    }
    let Some(obj) = current.filter(|_| up_to_date) else {
        return Some("rolling out".into());
    };
    let status = &obj.data["status"];
    Some(match kind {
        "Deployment" => {
            let want = obj.data["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = status["readyReplicas"].as_i64().unwrap_or(0);
            if ready >= want {
                "ready".into()
            } else {
                format!("{ready}/{want} replicas ready")
            }
        }
        _ => {
            if status["succeeded"].as_i64().unwrap_or(0) > 0 {
                "ready".into()
            } else if status["failed"].as_i64().unwrap_or(0) > 0 {
                format!(
                    "{} failed attempt(s); see `kubectl logs job/{}`",
                    status["failed"],
                    obj.name_any()
                )
            } else {
                "running".into()
            }
        }
    })
}

fn condition(type_: &str, on: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
    }
}

/// The status a person can act on.
pub fn status_for(
    fm: &Foreman,
    components: Vec<(String, String)>,
    degraded: Option<(&str, String)>,
    ready: bool,
) -> ForemanStatus {
    let waiting: Vec<String> = components
        .iter()
        .filter(|(_, s)| s != "ready")
        .map(|(n, s)| format!("{n}: {s}"))
        .collect();
    let conditions = match &degraded {
        Some((reason, msg)) => vec![
            condition("Ready", false, reason, msg.clone()),
            condition(
                "Progressing",
                false,
                reason,
                "waiting for the problem to be fixed",
            ),
            condition("Degraded", true, reason, msg.clone()),
        ],
        None if ready => vec![
            condition("Ready", true, "AllComponentsReady", "Foreman answers"),
            condition("Progressing", false, "Complete", "nothing left to roll out"),
            condition("Degraded", false, "AsExpected", ""),
        ],
        None => vec![
            condition("Ready", false, "ComponentsNotReady", waiting.join("; ")),
            condition("Progressing", true, "RollingOut", waiting.join("; ")),
            condition("Degraded", false, "AsExpected", ""),
        ],
    };
    ForemanStatus {
        observed_generation: fm.metadata.generation,
        conditions,
        url: fm.spec.hostname.as_ref().map(|h| format!("https://{h}")),
        components: components.into_iter().collect(),
    }
}

async fn patch_status(
    api: &Api<Foreman>,
    fm: &Foreman,
    status: ForemanStatus,
) -> Result<(), Error> {
    if fm.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // Server-side apply of the whole status: components that went away are dropped with it.
    let body =
        json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "status": status});
    api.patch_status(
        &fm.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(kube_err("updating status"))?;
    Ok(())
}
