//! What foreman-box ships to the host: the operator's manifests (CRD, least-privilege RBAC,
//! Deployment of the image built from foreman-box itself), the default `Foreman` resource, the
//! writer of that image ([`oci`]), and the offline bundle: its format and verifier
//! ([`archive`]), the archive of every pinned image ([`images`]), the registry client that
//! fetches them ([`registry`]) and the making of a bundle ([`create`]).

pub mod archive;
pub mod create;
pub mod elf;
mod fsio;
pub mod images;
pub mod oci;
pub mod progress;
pub mod registry;

pub use fsio::{IoError, CRASH_ENV};

use serde_json::{json, Value};
use std::path::PathBuf;

/// `scripts/install.sh`, carried in every bundle.
pub const INSTALL_SH: &str = include_str!("../../scripts/install.sh");
/// `scripts/uninstall.sh`, carried in every bundle as foreman-box-uninstall.sh.
pub const UNINSTALL_SH: &str = include_str!("../../scripts/uninstall.sh");

const BUNDLE_HELP: &str = "help: copy the bundle again from where it was made and compare its SHA-256 with the one `foreman-box bundle create` printed; `foreman-box bundle verify FILE` checks it";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an executable this platform runs: {why}")]
    NotElf { why: String },
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("cannot write the bundle")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("request to {url} failed")]
    Registry {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}\nhelp: check that the registry (or the mirror given with --registry-mirror) serves the distribution API at that address")]
    RegistryStatus { url: String, status: u16 },
    #[error("{url} did not answer or stopped sending for {secs}s\nhelp: check the network and the registry; a mirror nearer to this machine can be given with --registry-mirror HOST=URL")]
    Stalled { url: String, secs: u64 },
    #[error("{url} sent {have} of {size} bytes and closed the connection")]
    Cut { url: String, have: u64, size: u64 },
    #[error("{registry} refused access to {repository}{}", if *had_credentials { " with the credentials given" } else { " without credentials" })]
    #[allow(clippy::enum_variant_names)]
    Unauthorized {
        registry: String,
        repository: String,
        had_credentials: bool,
    },
    #[error("the token service {realm} gave no usable token: {problem}")]
    BadToken { realm: String, problem: String },
    #[error("{reference} is not on {registry}\nhelp: check the image table (`foreman-box images`): the tag or digest may not exist there, or the mirror lacks it")]
    NotFound { reference: String, registry: String },
    #[error("{what}: expected {expected}, the data has {actual}; nothing was kept\nhelp: run the command again; if it repeats, the registry or mirror serves other bytes under that digest")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: expected {expected} bytes, the registry sent {actual}; nothing was kept\nhelp: run the command again; if it repeats, the registry or mirror serves other bytes under that digest")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{reference}: {problem}")]
    BadManifest { reference: String, problem: String },
    #[error("{reference} has no linux/{arch} image (it has: {})\nhelp: choose another --arch, or override the image for this platform in an image table (--images FILE)", found.join(", "))]
    NoPlatform {
        reference: String,
        arch: String,
        found: Vec<String>,
    },
    #[error("the image table has no digest for {}; nothing was fetched\nhelp: run scripts/pin-images.sh on a machine that reaches the registries and rebuild foreman-box (or give the table it writes with --images FILE); or pass --resolve-unpinned to take what the tags name now (the bundle's manifest records the digests it got)", images.join(", "))]
    Unpinned { images: Vec<String> },
    #[error("{what} is not a usable credentials file: {problem}\nhelp: the format is containers-auth.json: {{\"auths\": {{\"quay.io\": {{\"auth\": \"<base64 of user:password>\"}}}}}}")]
    Credentials { what: String, problem: String },
    #[error("{} already exists and no interrupted run of `bundle create` left a work directory beside it; nothing was changed\nhelp: remove it or choose another file with -o", path.display())]
    Exists { path: PathBuf },
    #[error("blob {digest} ({}) in the work directory is damaged: {problem}; it was removed\nhelp: run the same command again: it fetches that blob anew", path.display())]
    BlobDamaged {
        path: PathBuf,
        digest: String,
        problem: String,
    },
    #[error("member {member} was to be {expected} bytes and is {actual}")]
    MemberSize {
        member: String,
        expected: u64,
        actual: u64,
    },
    #[error("{member} of {} is damaged: {problem}; nothing was used\n{BUNDLE_HELP}", path.display())]
    Damaged {
        path: PathBuf,
        member: String,
        problem: String,
    },
    #[error("{} was cut short: {member}: {problem}; nothing was used\n{BUNDLE_HELP}", path.display())]
    Truncated {
        path: PathBuf,
        member: String,
        problem: String,
    },
    #[error("{} is not a foreman-box bundle: {problem}\nhelp: make one with `foreman-box bundle create -o FILE`", path.display())]
    NotABundle { path: PathBuf, problem: String },
    #[error("{} is {found}, not a static linux/{arch} executable, so it cannot be the bundle's foreman-box\nhelp: build it with `scripts/build.sh` (for another architecture, build there) and give it with --binary FILE", path.display())]
    WrongBinary {
        path: PathBuf,
        arch: String,
        found: String,
    },
}

impl Error {
    /// Worth another try: the network or the server, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Registry { source, .. } => !source.is_builder() && !source.is_redirect(),
            Error::RegistryStatus { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            Error::Stalled { .. } | Error::Cut { .. } => true,
            _ => false,
        }
    }
}

pub const NAMESPACE: &str = "foreman";
pub const OPERATOR: &str = "foreman-operator";
/// The operator image for `render` (clusters that are not ours): the version tag of the
/// repository that `install` tags by digest ([`oci::Image::reference`]).
pub fn operator_image() -> String {
    format!("{}:{}", oci::REPOSITORY, env!("CARGO_PKG_VERSION"))
}

/// The CRD as checked in; a test fails when it differs from the generator.
pub const CRD_YAML: &str = include_str!("../manifests/foreman-crd.yaml");

fn labels() -> Value {
    json!({"app.kubernetes.io/name": OPERATOR, "app.kubernetes.io/part-of": "foreman", "app.kubernetes.io/managed-by": "foreman-box"})
}

/// The verbs the operator needs, per resource: a namespaced Role, no ClusterRole.
pub fn rules() -> Value {
    let manage = json!(["get", "list", "watch", "create", "patch", "update", "delete"]);
    json!([
        {"apiGroups": ["app.theforeman.org"], "resources": ["foremans"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["app.theforeman.org"], "resources": ["foremans/status"], "verbs": ["get", "patch", "update"]},
        // Database Secrets are read; generated Secrets are created once, never listed, and
        // patched only to add keys a newer operator needs (existing values are never replaced).
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
        {"apiGroups": [""], "resources": ["configmaps", "services", "persistentvolumeclaims"], "verbs": manage},
        // Maintenance is reached when no writer pod is left: pods are listed, never changed.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        // A failed Job's last log lines go into the Degraded condition.
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": manage},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": manage},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": manage},
    ])
}

/// ServiceAccount, Role, RoleBinding and Deployment of the operator (the CRD is separate).
pub fn operator_objects() -> Vec<Value> {
    operator_objects_for(&operator_image())
}

/// The same objects with the Deployment running `image`, which is imported into the node from a
/// local archive and never pulled (`imagePullPolicy: Never`).
pub fn operator_objects_for(image: &str) -> Vec<Value> {
    let meta = |name: &str| json!({"name": name, "namespace": NAMESPACE, "labels": labels()});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(OPERATOR)}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(OPERATOR), "rules": rules()}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(OPERATOR),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR},
            "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}],
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(OPERATOR),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR}},
                "template": {
                    "metadata": {"labels": labels()},
                    "spec": {
                        "serviceAccountName": OPERATOR,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": oci::USER_ID, "runAsGroup": oci::USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "operator",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "FOREMAN_BOX_LOG", "value": "info"},
                            ],
                            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        }],
                    },
                },
            },
        }),
    ]
}

/// The default resource: the seed example, with this host's name.
pub fn default_foreman(
    hostname: Option<&str>,
    dynflow_workers: u32,
    katello: bool,
    remote_execution: bool,
) -> foreman_operator::Foreman {
    let spec = foreman_operator::ForemanSpec {
        hostname: hostname.map(str::to_string),
        dynflow_workers,
        plugins: foreman_operator::crd::Plugins {
            katello,
            remote_execution,
        },
        ..Default::default()
    };
    let mut fm = foreman_operator::Foreman::new("foreman", spec);
    fm.metadata.namespace = Some(NAMESPACE.into());
    fm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crd_matches_the_generator() {
        assert_eq!(
            CRD_YAML,
            foreman_operator::schema::crd_yaml(),
            "bundle/manifests/foreman-crd.yaml is stale: run `cargo run -p foreman-box -- operator crd > bundle/manifests/foreman-crd.yaml`"
        );
    }

    #[test]
    fn operator_has_no_cluster_wide_rights() {
        for o in operator_objects() {
            assert_ne!(o["kind"], "ClusterRole");
            assert_ne!(o["kind"], "ClusterRoleBinding");
        }
        let rules = rules();
        let secret_rule = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"][0] == "secrets")
            .unwrap();
        assert_eq!(
            secret_rule["verbs"],
            json!(["get", "create", "patch"]),
            "secrets are never listed, deleted or replaced"
        );
    }

    #[test]
    fn operator_may_manage_every_kind_it_renders() {
        let rules = rules();
        for (version, kind, plural) in foreman_operator::resources::KINDS {
            let group = version.split_once('/').map_or("", |(g, _)| g);
            assert!(
                rules
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["apiGroups"][0] == group
                        && r["resources"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|x| x == plural)
                        && r["verbs"].as_array().unwrap().iter().any(|v| v == "patch")
                        && r["verbs"].as_array().unwrap().iter().any(|v| v == "delete")),
                "no rule lets the operator manage {kind} ({group}/{plural})"
            );
        }
    }

    #[test]
    fn default_resource_is_the_seed_example() {
        let fm = default_foreman(Some("foreman.example.com"), 2, true, true);
        assert_eq!(fm.spec.hostname.as_deref(), Some("foreman.example.com"));
        assert_eq!(fm.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(fm.spec.dynflow_workers, 2);
        assert!(fm.spec.plugins.katello && fm.spec.plugins.remote_execution);
    }
}
