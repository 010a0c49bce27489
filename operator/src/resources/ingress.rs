//! The Ingress: the hostname over TLS with the Foreman server certificate, and the paths Katello
//! clients need routed to Pulp.

use super::certificates::TLS_SECRET;
use super::core::FOREMAN_PORT;
use super::metadata;
use super::pulp::{API_PORT, CONTENT_PORT};
use crate::crd::Foreman;
use serde_json::{json, Value};

/// (path, Service, port). FC roles/httpd (one host): /pulp/content, /pulp/isos and
/// /pulp/container go to the content app, /pulp/assets to the API, everything else (/rhsm,
/// /v2 ...) to Foreman. FC also sends /pulp_ansible/galaxy and /pypi to the API; their plugins
/// (pulp_ansible, pulp_python) are not in PULP_ENABLED_PLUGINS, so they are left out. /pulp/api/v3 is not routed: FC's httpd and
/// FK's nginx only pass it with a verified client certificate mapped to REMOTE-USER, which this
/// Ingress cannot do (FK has no public /pulp/api/v3 either).
pub fn routes(fm: &Foreman) -> Vec<(&'static str, &'static str, u16)> {
    let mut r = vec![("/", "foreman", FOREMAN_PORT)];
    if fm.spec.plugins.katello {
        r.extend([
            ("/pulp/content", "pulp-content", CONTENT_PORT),
            ("/pulp/isos", "pulp-content", CONTENT_PORT),
            ("/pulp/container", "pulp-content", CONTENT_PORT),
            ("/pulp/assets", "pulp-api", API_PORT),
        ]);
    }
    r
}

pub fn object(fm: &Foreman) -> Value {
    let paths: Vec<Value> = routes(fm)
        .into_iter()
        .map(|(path, svc, port)| json!({"path": path, "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": port}}}}))
        .collect();
    let mut rule = json!({"http": {"paths": paths}});
    let spec = match &fm.spec.hostname {
        Some(h) => {
            rule["host"] = json!(h);
            json!({"rules": [rule], "tls": [{"hosts": [h], "secretName": TLS_SECRET}]})
        }
        None => json!({"rules": [rule]}),
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(fm, "foreman", "foreman"),
        "spec": spec,
    })
}
