//! Kubernetes objects the installer renders for the host's side of the deployment (PostgreSQL
//! endpoint and Secrets, the Pulp volume). They go to k3s's auto-deploy folder, which k3s
//! applies once its API is up and keeps applied, and `foreman-box render` prints them for
//! clusters that are not ours.

use crate::error::{Error, Result};
use crate::steps::DesiredFile;
use serde_json::{json, Value};

pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";
pub const NAMESPACE: &str = "foreman";

/// Labels every object we create carries.
pub fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/part-of": "foreman",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "foreman-box",
    })
}

pub fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": labels("namespace")},
    })
}

/// Objects as a multi-document YAML stream.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(o).map_err(|source| Error::Render {
            what: format!(
                "{} {}",
                o["kind"].as_str().unwrap_or("object"),
                o["metadata"]["name"].as_str().unwrap_or("")
            ),
            source,
        })?);
    }
    Ok(out)
}

/// A manifest file in k3s's auto-deploy folder. 0600: some hold Secrets.
pub fn manifest_file(name: &str, objects: &[Value]) -> Result<DesiredFile> {
    let body = format!(
        "# Written by foreman-box; k3s applies this file and re-applies it when it changes.\n{}",
        to_yaml(objects)?
    );
    Ok(DesiredFile::new(
        format!("{MANIFESTS_DIR}/{name}"),
        body,
        0o600,
    ))
}

/// The namespace gets a file of its own, so no step's file owns it alone.
pub fn namespace_file() -> Result<DesiredFile> {
    manifest_file("foreman-box-00-namespace.yaml", &[namespace()])
}

/// The operator's files: the CRD, and its ServiceAccount, Role, RoleBinding and Deployment of
/// `image` (with the namespace file they need).
pub fn operator_files(image: &str) -> Result<Vec<DesiredFile>> {
    let crd: Value =
        serde_yaml::from_str(foreman_box_bundle::CRD_YAML).map_err(|source| Error::Render {
            what: "the Foreman CRD".into(),
            source,
        })?;
    Ok(vec![
        namespace_file()?,
        manifest_file(crate::steps::operator::CRD_MANIFEST, &[crd])?,
        manifest_file(
            crate::steps::operator::OPERATOR_MANIFEST,
            &foreman_box_bundle::operator_objects_for(image),
        )?,
    ])
}
