//! Kubernetes objects the installer renders for the host's side of the deployment (PostgreSQL
//! endpoint and Secrets, the Pulp volume). They go to k3s's auto-deploy folder, which k3s
//! applies once its API is up and keeps applied, and `foreman-box render` prints them for
//! clusters that are not ours.

use crate::desired::DesiredFile;
use crate::error::{Error, Result};
use crate::validate::Cidr;
use serde_json::{json, Value};

pub(crate) const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";
pub(crate) const NAMESPACE: &str = "foreman";
/// The CRD and the operator, in k3s's auto-deploy folder (applied in name order).
pub const CRD_MANIFEST: &str = "foreman-box-10-crd.yaml";
pub const OPERATOR_MANIFEST: &str = "foreman-box-20-operator.yaml";

/// Labels every object we create carries.
pub(crate) fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/part-of": "foreman",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "foreman-box",
    })
}

pub(crate) fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": labels("namespace")},
    })
}

/// Objects as a multi-document YAML stream: the operator's writer, so `render` and the
/// auto-deploy folder write YAML one way.
pub(crate) fn to_yaml(objects: &[Value]) -> Result<String> {
    foreman_operator::resources::to_yaml(objects).map_err(|e| match e {
        foreman_operator::Error::Render { what, source } => Error::Render { what, source },
        other => Error::Generate {
            what: "a manifest".into(),
            source: other,
        },
    })
}

/// A manifest file in k3s's auto-deploy folder. 0600: some hold Secrets.
pub(crate) fn manifest_file(name: &str, objects: &[Value]) -> Result<DesiredFile> {
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
pub(crate) fn namespace_file() -> Result<DesiredFile> {
    manifest_file("foreman-box-00-namespace.yaml", &[namespace()])
}

/// The operator's files: the CRD, and its ServiceAccount, Role, RoleBinding and Deployment of
/// `image` (with the namespace file they need).
pub(crate) fn operator_files(image: &str) -> Result<Vec<DesiredFile>> {
    let crd: Value =
        serde_yaml::from_str(foreman_box_bundle::CRD_YAML).map_err(|source| Error::Render {
            what: "the Foreman CRD".into(),
            source,
        })?;
    Ok(vec![
        namespace_file()?,
        manifest_file(CRD_MANIFEST, &[crd])?,
        manifest_file(
            OPERATOR_MANIFEST,
            &foreman_box_bundle::operator_objects_for(image),
        )?,
    ])
}

/// `/etc/rancher/k3s/config.yaml`, through serde: a value can never add a key.
#[derive(serde::Serialize)]
#[serde(rename_all = "kebab-case")]
struct K3sConfigFile<'a> {
    write_kubeconfig_mode: &'a str,
    tls_san: Vec<&'a str>,
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_ip: Option<String>,
    /// k3s's packaged components left out: Traefik, so the operator's edge (a LoadBalancer
    /// Service) gets 80 and 443 from ServiceLB (operator/src/resources/edge.rs says why).
    disable: Vec<&'a str>,
}

pub(crate) fn k3s_config_yaml(
    fqdn: &str,
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    node_ip: Option<std::net::IpAddr>,
) -> String {
    let body = serde_yaml::to_string(&K3sConfigFile {
        write_kubeconfig_mode: "0600",
        tls_san: vec![fqdn],
        cluster_cidr,
        service_cidr,
        node_ip: node_ip.map(|ip| ip.to_string()),
        disable: vec!["traefik"],
    })
    .expect("a struct of strings and networks serializes");
    format!("# Written by foreman-box; `foreman-box install` replaces changes made here.\n{body}")
}

/// A systemd `EnvironmentFile`: `NAME="value"` lines with `\` and `"` escaped, so a value is
/// always one value. Names must be shell-like identifiers; a value with a newline or another
/// control character cannot be written safely and is left out (the caller is told which).
pub(crate) fn env_file(vars: &[(&str, String)]) -> (String, Vec<String>) {
    let mut out = String::from("# Written by foreman-box.\n");
    let mut skipped = Vec::new();
    for (name, value) in vars {
        let name_ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok || value.chars().any(char::is_control) {
            skipped.push((*name).to_string());
            continue;
        }
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{name}=\"{escaped}\"\n"));
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(raw: &str) -> Cidr {
        crate::validate::cidr(raw, crate::validate::Network::Cluster).unwrap()
    }

    #[test]
    fn k3s_config_values_cannot_add_keys() {
        let yaml = k3s_config_yaml(
            "a.b\"\nnode-ip: 1.2.3.4",
            net("10.42.0.0/16"),
            net("10.43.0.0/16"),
            None,
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let map = v.as_mapping().unwrap();
        assert_eq!(map.len(), 5, "{yaml}");
        assert_eq!(v["tls-san"][0].as_str(), Some("a.b\"\nnode-ip: 1.2.3.4"));
        assert_eq!(v["write-kubeconfig-mode"].as_str(), Some("0600"));
        let yaml = k3s_config_yaml(
            "a.b",
            net("10.42.0.0/16"),
            net("10.43.0.0/16"),
            Some("10.0.0.5".parse().unwrap()),
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["node-ip"].as_str(), Some("10.0.0.5"));
    }

    #[test]
    fn k3s_runs_without_traefik_so_the_edge_gets_80_and_443() {
        let yaml = k3s_config_yaml("a.b", net("10.42.0.0/16"), net("10.43.0.0/16"), None);
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            v["disable"],
            serde_yaml::from_str::<serde_yaml::Value>("[traefik]").unwrap(),
            "{yaml}"
        );
    }

    #[test]
    fn env_file_values_are_quoted_and_newlines_left_out() {
        let (text, skipped) = env_file(&[
            ("HTTP_PROXY", "http://proxy:3128".into()),
            ("NO_PROXY", "a\"b\\c".into()),
            ("HTTPS_PROXY", "x\nEVIL=1".into()),
        ]);
        assert_eq!(
            text,
            "# Written by foreman-box.\nHTTP_PROXY=\"http://proxy:3128\"\nNO_PROXY=\"a\\\"b\\\\c\"\n"
        );
        assert_eq!(skipped, ["HTTPS_PROXY"]);
    }
}
