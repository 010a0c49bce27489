//! What foreman-box ships to the host: the operator's manifests (CRD, least-privilege RBAC,
//! Deployment of the image built from foreman-box itself) and the default `Foreman` resource.

use serde_json::{json, Value};

pub const NAMESPACE: &str = "foreman";
pub const OPERATOR: &str = "foreman-operator";
/// The operator image, imported into k3s from a local archive: never pulled from a registry.
pub fn operator_image() -> String {
    format!(
        "localhost/foreman-box/operator:{}",
        env!("CARGO_PKG_VERSION")
    )
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
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": manage},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": manage},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": manage},
    ])
}

/// ServiceAccount, Role, RoleBinding and Deployment of the operator (the CRD is separate).
pub fn operator_objects() -> Vec<Value> {
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
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "operator",
                            "image": operator_image(),
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
) -> Value {
    let mut spec = json!({"dynflow_workers": dynflow_workers, "plugins": {"katello": katello, "remote_execution": remote_execution}});
    if let Some(h) = hostname {
        spec["hostname"] = json!(h);
    }
    json!({"apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman", "metadata": {"name": "foreman", "namespace": NAMESPACE}, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crd_matches_the_generator() {
        assert_eq!(
            CRD_YAML,
            foreman_operator::crd::crd_yaml(),
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
        let fm: foreman_operator::Foreman =
            serde_json::from_value(default_foreman(Some("foreman.example.com"), 2, true, true))
                .unwrap();
        assert_eq!(fm.spec.dynflow_workers, 2);
        assert!(fm.spec.plugins.katello && fm.spec.plugins.remote_execution);
    }
}
