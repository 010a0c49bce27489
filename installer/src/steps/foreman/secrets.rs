//! The Secrets the operator would generate (operator/src/generated.rs: tokens, the admin
//! password, the CA, the certificates, Pulp's symmetric key, the REX SSH key) are made here first, and a copy of
//! each is kept in `/etc/foreman-box/secrets/NAME.yaml` (0600, a Secret manifest that
//! `kubectl apply -f` takes). The databases outlive the cluster: uninstall keeps them and the
//! copies, and the next install creates the Secrets from the copies before the operator runs, so
//! Foreman comes back with the encryption key and admin password its data was made with.
//!
//! Per Secret, from the copy and the cluster's Secret:
//! - neither: new values, the copy written first, then the Secret created;
//! - only the copy: the Secret created from it (a reinstall on kept data);
//! - only the Secret: the copy written from it (made by an operator before the installer kept
//!   copies, or the copy was removed);
//! - both, the same values: nothing; different: the cluster's values are the ones Foreman runs
//!   with, so the copy follows them and the old copy is kept next to it as `NAME.yaml.replaced`
//!   (`.replaced.N` when an earlier one is there: no copy is ever overwritten).
//!
//! The cluster's Secrets are only ever created, never replaced.

use super::{Op, Values, STEP};
use crate::action::{HostOp, Planned};
use crate::cluster::Cluster;
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::error::{Error, Result};
use crate::kept::copy_path;
use crate::manifests;
use foreman_box_bundle::NAMESPACE;
use foreman_operator::generated::{self, Generated};
use foreman_operator::Foreman;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Data = BTreeMap<String, ByteString>;

/// The Secret object for `data`, as created in the cluster and as kept in the copy.
fn object(fm: &Foreman, g: Generated, data: &Data) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": g.name, "namespace": NAMESPACE, "labels": generated::labels(fm)},
        "type": g.type_,
        "data": data,
    })
}

fn copy_file(fm: &Foreman, g: Generated, data: &Data) -> Result<DesiredFile> {
    let body = format!(
        "# Kept by foreman-box: the values of Secret {NAMESPACE}/{} that the databases were made with.\n# A later install creates the Secret from this file; keep it with the databases.\n{}",
        g.name,
        manifests::to_yaml(&[object(fm, g, data)])?
    );
    Ok(DesiredFile::new(copy_path(g.name), body, 0o600))
}

/// The kept copy's data and text, checked: a Secret manifest named `name` with values.
fn read_copy(cx: &Context, name: &str) -> Result<Option<(Data, String)>> {
    let path = copy_path(name);
    let Some(text) = crate::kept::read(&cx.host, &path)? else {
        return Ok(None);
    };
    let bad = |problem: String| Error::KeptSecret {
        path: path.clone(),
        name: name.to_string(),
        problem,
    };
    // Only where it failed: serde's message can quote the value it choked on, a secret here.
    let unreadable = |e: serde_yaml::Error| {
        match e.location() {
        Some(l) => format!(
            "it does not read as a Secret manifest (line {}, column {})",
            l.line(),
            l.column()
        ),
        // serde_yaml stops alias expansion at its repetition limit; foreman-box writes none.
        None if e.to_string().contains("repetition limit") => {
            "its YAML aliases (`*name`) expand past what a Secret manifest holds; foreman-box writes copies without aliases".into()
        }
        None => "it does not read as a Secret manifest".into(),
    }
    };
    // As a YAML value first: that expands every alias, also those in fields a Secret does not
    // have, so an alias bomb anywhere is named as one. Then as a Secret, from the text, so a
    // bad field is named by its line.
    serde_yaml::from_str::<serde_yaml::Value>(&text).map_err(|e| bad(unreadable(e)))?;
    let secret: Secret = serde_yaml::from_str(&text).map_err(|e| bad(unreadable(e)))?;
    match secret.metadata.name.as_deref() {
        Some(n) if n == name => {}
        Some(other) => return Err(bad(format!("it names Secret {other:?}"))),
        None => return Err(bad("it names no Secret (metadata.name is missing)".into())),
    }
    let mut data = secret.data.unwrap_or_default();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    if data.is_empty() {
        return Err(bad("it holds no values".into()));
    }
    Ok(Some((data, text)))
}

/// Where an old copy goes: `NAME.yaml.replaced`, or `.replaced.N` when an earlier one is there
/// with other content, so no copy ever replaces another.
fn replaced_path(cx: &Context, path: &str, old: &str) -> Result<String> {
    let mut n = 0;
    loop {
        let candidate = match n {
            0 => format!("{path}.replaced"),
            n => format!("{path}.replaced.{n}"),
        };
        match cx.host.fs().read_string(&cx.host.path(&candidate))? {
            Some(text) if text != old => n += 1,
            _ => return Ok(candidate),
        }
    }
}

fn as_strings(data: &Data) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

fn as_data(values: BTreeMap<String, String>) -> Data {
    values
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect()
}

/// A Secret object carried from the plan to `apply`: its Debug names the Secret, never its
/// values.
#[derive(Clone, PartialEq)]
pub struct Sealed(Box<Secret>);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0.metadata.name.as_deref().unwrap_or_default();
        write!(f, "Secret {name} (values not shown)")
    }
}

fn create_op(fm: &Foreman, g: Generated, data: &Data, copy: Option<DesiredFile>) -> Result<Op> {
    let secret: Secret =
        serde_json::from_value(object(fm, g, data)).map_err(|e| Error::Generate {
            what: format!("Secret {NAMESPACE}/{}", g.name),
            source: foreman_operator::Error::Invalid {
                path: format!("Secret {}", g.name),
                message: e.to_string(),
            },
        })?;
    Ok(Op::CreateSecret {
        name: g.name.to_string(),
        values: if copy.is_some() {
            Values::New
        } else {
            Values::Copy
        },
        secret: Sealed(Box::new(secret)),
        copy,
    })
}

/// The copy first: a run killed between the two leaves values that the next run creates the
/// Secret from, never a Secret without a copy.
pub(super) async fn create(
    cx: &Context,
    cluster: &Cluster,
    secret: Sealed,
    copy: Option<DesiredFile>,
) -> Result<()> {
    if let Some(copy) = copy {
        cx.host
            .fs()
            .ensure_dir(&crate::kept::dir(&cx.host)?, 0o700)?;
        copy.write(&cx.host)?;
    }
    Ok(cluster.create_secret(&secret.0).await?)
}

/// The actions that bring the copies and the cluster's Secrets together (see the module).
pub async fn plan(cx: &Context, cluster: &Cluster, fm: &Foreman) -> Result<Vec<Planned<Op>>> {
    let mut actions = Vec::new();
    // Read every copy and Secret first: the CA and the certificates are made from each other
    // (`generated::inputs`), whatever their order.
    let mut found = Vec::new();
    for g in generated::needed(fm) {
        found.push((
            g,
            read_copy(cx, g.name)?,
            cluster.secret_data(g.name).await?,
        ));
    }
    let mut known: generated::Known = found
        .iter()
        .filter_map(|(g, copy, live)| {
            let data = live.as_ref().or(copy.as_ref().map(|(d, _)| d))?;
            Some((g.name.to_string(), as_strings(data)))
        })
        .collect();
    for (g, copy, live) in found {
        let path = copy_path(g.name);
        match (copy, live) {
            (None, None) => {
                let values =
                    generated::generate(fm, g.name, &known).map_err(|source| Error::Generate {
                        what: format!("Secret {NAMESPACE}/{}", g.name),
                        source,
                    })?;
                known.insert(g.name.to_string(), values.clone());
                let data = as_data(values);
                let copy = copy_file(fm, g, &data)?;
                actions.push(Planned::new(
                    create_op(fm, g, &data, Some(copy))?,
                    "neither the cluster nor /etc/foreman-box/secrets has it",
                ));
            }
            (Some((data, _)), None) => actions.push(Planned::new(
                create_op(fm, g, &data, None)?,
                "the cluster lacks it; the copy holds the values the kept databases were made with",
            )),
            (copy, Some(live)) => {
                let file = copy_file(fm, g, &live)?;
                let Some(change) = file.plan(&cx.host)? else {
                    continue;
                };
                match copy {
                    None => actions.push(Planned::new(
                        Op::Host(HostOp::Write(file)),
                        format!(
                            "no copy of Secret {NAMESPACE}/{} is kept outside the cluster",
                            g.name
                        ),
                    )),
                    Some((data, _)) if data == live => {
                        actions.push(Planned::new(Op::Host(HostOp::Write(file)), change.why))
                    }
                    Some((_, old)) => {
                        let kept = replaced_path(cx, &path, &old)?;
                        let why = format!(
                            "it holds other values than Secret {NAMESPACE}/{}, which Foreman runs with; the old copy is kept as {kept}",
                            g.name
                        );
                        cx.reporter.warning(
                            STEP,
                            &format!(
                                "{path} holds other values than Secret {NAMESPACE}/{} in the cluster; the copy will follow the cluster, which Foreman runs with, and the old copy is kept as {kept}",
                                g.name
                            ),
                        );
                        let old = DesiredFile::new(kept, old, 0o600);
                        actions.push(Planned::new(Op::ReplaceCopy { copy: file, old }, why));
                    }
                }
            }
        }
    }
    Ok(actions)
}
