//! What the cluster needs to find the server: a Service with an EndpointSlice (or ExternalName)
//! and one Secret per database, in k3s's auto-deploy folder.

use super::connection::Target;
use super::Op;
use super::{DATABASES, MANIFEST, SERVICE};
use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::desired::DesiredFile;
use crate::error::{Error, Result};
use crate::manifests::{self, labels, NAMESPACE};
use crate::secret::Secret;
use serde_json::{json, Value};
use std::net::IpAddr;

/// One write per manifest file that differs, with the passwords decided while planning.
pub(super) fn plan(cx: &Context, t: &Target, passwords: &[Secret]) -> Result<Vec<Planned<Op>>> {
    let mut out = Vec::new();
    for f in files(cx, t, passwords)? {
        if let Some(c) = f.plan(&cx.host)? {
            out.push(Planned::new(Op::Host(HostOp::Write(f)), c.why));
        }
    }
    Ok(out)
}

/// Where pods reach the server: an address for the EndpointSlice, or a name for ExternalName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Address(IpAddr, u16),
    Name(String, u16),
}

fn endpoint(cx: &Context, t: &Target) -> Option<Endpoint> {
    let port = t.url.port;
    let node = cx.facts.node_ip;
    match t.url.host.parse::<IpAddr>() {
        _ if t.url.host == "localhost" => node.map(|ip| Endpoint::Address(ip, port)),
        Ok(ip) if ip.is_loopback() => node.map(|ip| Endpoint::Address(ip, port)),
        Ok(ip) => Some(Endpoint::Address(ip, port)),
        Err(_) => Some(Endpoint::Name(t.url.host.clone(), port)),
    }
}

fn files(cx: &Context, t: &Target, passwords: &[Secret]) -> Result<Vec<DesiredFile>> {
    let Some(ep) = endpoint(cx, t) else {
        return Err(Error::Preflight {
            report: "  ✗ route: the node has no IPv4 address for pods to reach PostgreSQL on\n    fix: pass --node-ip".into(),
        });
    };
    Ok(vec![
        manifests::namespace_file()?,
        manifests::manifest_file(MANIFEST, &objects(&ep, passwords))?,
    ])
}

/// The Service, EndpointSlice and one Secret per database.
pub(crate) fn objects(ep: &Endpoint, passwords: &[Secret]) -> Vec<Value> {
    let mut objs = Vec::new();
    let port = match ep {
        Endpoint::Address(_, p) | Endpoint::Name(_, p) => *p,
    };
    match ep {
        Endpoint::Address(ip, port) => {
            objs.push(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels("postgres")},
                "spec": {"ports": [{"name": "postgres", "port": port, "targetPort": port, "protocol": "TCP"}]},
            }));
            objs.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": SERVICE,
                    "namespace": NAMESPACE,
                    "labels": {
                        "kubernetes.io/service-name": SERVICE,
                        "endpointslice.kubernetes.io/managed-by": "foreman-box",
                        "app.kubernetes.io/part-of": "foreman",
                        "app.kubernetes.io/managed-by": "foreman-box",
                    },
                },
                "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
                "ports": [{"name": "postgres", "port": port, "protocol": "TCP"}],
            }));
        }
        Endpoint::Name(name, _) => objs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels("postgres")},
            "spec": {"type": "ExternalName", "externalName": name},
        })),
    }
    for (db, password) in DATABASES.iter().zip(passwords) {
        objs.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("{db}-db"), "namespace": NAMESPACE, "labels": labels(db)},
            "type": "Opaque",
            "stringData": {
                "host": format!("{SERVICE}.{NAMESPACE}.svc"),
                "port": port.to_string(),
                "name": db,
                "user": db,
                "password": password.expose(),
                "sslmode": "prefer",
            },
        }));
    }
    objs
}
