//! The desired state: a pure function from a `Foreman` resource to the Kubernetes objects that
//! run it. No API calls, no clock, no randomness; values that must be random (passwords, keys,
//! certificates) are generated once by the controller into Secrets and only referenced here.
//!
//! One module per component, each returning its finished objects:
//! [`core`] (Foreman web, Dynflow, cron, Redis), [`candlepin`], [`pulp`], [`proxy`],
//! [`certificates`] (what the controller generates once) and [`edge`] (the front door on 80
//! and 443). Facts taken from the
//! Foreman project's own deployments carry a comment naming their source:
//! FC = theforeman/foremanctl at tag 2.0.0 (Foreman 3.18), FK = theforeman/foreman-kubernetes,
//! OCI = theforeman/foreman-oci-images, PO = theforeman/pulp-oci-images,
//! CO = theforeman/candlepin-oci-images.
//!
//! Ordering without crash loops: every Deployment that needs a migrated database has an init
//! container that waits (polling, it never exits non-zero) until the migration Job's work is
//! visible in the database (`db:abort_if_pending_migrations` for Foreman, `migrate --check` for
//! Pulp), so it starts only after its Job succeeded; Jobs that need a running service (seeding
//! with Katello needs Candlepin, registration needs the proxies) wait for it the same way.

pub mod candlepin;
pub mod certificates;
pub mod core;
pub mod edge;
pub mod nginx;
pub mod proxy;
pub mod pulp;

use crate::crd::Foreman;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Random values made once per resource by the controller.
pub const GENERATED_SECRET: &str = "foreman-generated";
/// Keys of the generated Secret (48 characters from [A-Za-z0-9] each).
pub const GENERATED_KEYS: &[&str] = &[
    "encryption-key",
    "admin-password",
    "candlepin-oauth-secret",
    "secret-key-base",
    "pulp-secret-key",
    "keystore-password",
];
/// Keys every database Secret must have (the installer's postgres step also writes `sslmode`).
pub const DB_KEYS: &[&str] = &["host", "port", "name", "user", "password"];
/// The edge's Deployment and ConfigMap ([`edge`]); Pulp's NetworkPolicy lets it in.
pub const EDGE: &str = "foreman-edge";
/// The pod network k3s gives pods unless told otherwise (the installer's default
/// `cluster-cidr`): the edge's address is in it, so Foreman may believe its X-Forwarded-For.
pub const POD_CIDR: &str = "10.42.0.0/16";
pub const HASH_ANNOTATION: &str = "app.theforeman.org/desired-hash";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "foreman-operator";
pub use certificates::{CA_SECRET, TLS_SECRET};
pub use proxy::REX_SSH_SECRET;
pub use pulp::PULP_KEY_SECRET;

/// The kinds the operator creates, in apply order, with their API paths.
pub const KINDS: &[(&str, &str, &str)] = &[
    // (apiVersion, kind, plural)
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("v1", "Service", "services"),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ("apps/v1", "Deployment", "deployments"),
    ("batch/v1", "Job", "jobs"),
    ("batch/v1", "CronJob", "cronjobs"),
    // Nothing renders an Ingress any more (the edge replaced it); listed so that the one an
    // older operator made is pruned.
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
];

pub(crate) const REDIS_PORT: u16 = 6379;

/// Every object for this resource, in apply order, each with its desired-hash annotation.
pub fn desired(fm: &Foreman) -> Vec<Value> {
    let mut objs = objects(fm);
    if fm.spec.maintenance {
        hold_writers(&mut objs);
    }
    for o in &mut objs {
        let hash = short_hash(o);
        o["metadata"]["annotations"] = json!({HASH_ANNOTATION: hash});
    }
    objs
}

/// The components that write to the databases or Pulp's storage (by their
/// `app.kubernetes.io/name`): scaled to 0 in maintenance. Redis, the edge and pulp-control keep
/// running (they hold nothing a backup reads; the edge tells users what is going on).
pub const WRITERS: &[&str] = &[
    "foreman",
    "dynflow-orchestrator",
    "dynflow-worker",
    "dynflow-worker-hosts-queue",
    "candlepin",
    "pulp-api",
    "pulp-content",
    "pulp-worker",
    "foreman-proxy",
];

/// Maintenance: the writers' Deployments at 0 replicas, every CronJob suspended.
fn hold_writers(objs: &mut [Value]) {
    for o in objs.iter_mut() {
        let component = o["metadata"]["labels"]["app.kubernetes.io/name"].clone();
        match o["kind"].as_str() {
            Some("Deployment") if WRITERS.iter().any(|w| component == *w) => {
                o["spec"]["replicas"] = json!(0);
            }
            Some("CronJob") => o["spec"]["suspend"] = json!(true),
            _ => {}
        }
    }
}

/// Every object for this resource, in apply order, before the desired-hash annotation.
pub(crate) fn objects(fm: &Foreman) -> Vec<Value> {
    let mut objs = core::objects(fm);
    if fm.spec.plugins.katello {
        objs.extend(candlepin::objects(fm));
        objs.extend(pulp::objects(fm));
    }
    if fm.spec.plugins.remote_execution {
        objs.extend(proxy::objects(fm));
    }
    objs.extend(edge::objects(fm));
    objs
}

/// What a release stream's images are: tags and users differ between streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub version: String,
    /// Foreman and foreman-proxy images with fixed numeric users (994 and 991). OCI 2c36a1b
    /// ("Static UID/GID", 2026-07-20) is on the foreman-5.0 branch; the foreman-3.19 branch (and
    /// 3.18 before it) has `USER foreman`/`USER foreman-proxy` with RPM-assigned ids.
    pub fixed_uids: bool,
}

/// The release streams whose images this operator renders, newest last.
pub const STREAMS: &[&str] = &["3.18", "3.19", "5.0"];

impl Stream {
    pub fn of(fm: &Foreman) -> Stream {
        let v = fm.spec.version.clone();
        let fixed_uids = v.split_once('.').and_then(|(m, _)| m.parse::<u32>().ok()) >= Some(5);
        Stream {
            version: v,
            fixed_uids,
        }
    }
}

/// The image for a component: the override, else the release stream's entry in the image
/// table ([`crate::images`]: `repository:tag@digest`, tag only while a digest is unknown).
pub fn image(fm: &Foreman, component: Component) -> String {
    let i = &fm.spec.images;
    let over = match component {
        Component::Foreman => &i.foreman,
        Component::Proxy => &i.foreman_proxy,
        Component::Candlepin => &i.candlepin,
        Component::Pulp => &i.pulp,
        Component::Redis => &i.redis,
        Component::PulpControl => &i.pulp_control,
    };
    over.clone()
        .unwrap_or_else(|| crate::images::default_reference(&fm.spec.version, component))
}

pub use crate::images::Component;

pub(crate) fn namespace(fm: &Foreman) -> String {
    fm.metadata.namespace.clone().unwrap_or_default()
}

/// `name.namespace.svc`, how pods reach a Service.
pub(crate) fn svc(fm: &Foreman, name: &str) -> String {
    format!("{name}.{}.svc", namespace(fm))
}

pub(crate) fn labels(fm: &Foreman, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "foreman",
        INSTANCE_LABEL: fm.metadata.name.clone().unwrap_or_default(),
        MANAGED_BY_LABEL: MANAGED_BY,
    })
}

pub(crate) fn selector(fm: &Foreman, component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, INSTANCE_LABEL: fm.metadata.name.clone().unwrap_or_default()})
}

pub(crate) fn metadata(fm: &Foreman, name: &str, component: &str) -> Value {
    let mut m = json!({
        "name": name,
        "namespace": namespace(fm),
        "labels": labels(fm, component),
    });
    // Rendered outside a cluster the resource has no uid yet: owner references come with one.
    if let Some(uid) = &fm.metadata.uid {
        m["ownerReferences"] = json!([{
            "apiVersion": "app.theforeman.org/v1alpha1",
            "kind": "Foreman",
            "name": fm.metadata.name.clone().unwrap_or_default(),
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    m
}

/// Who a pod runs as. `Some(uid)`: a numeric user, so `runAsNonRoot` can be checked by the
/// kubelet; `None`: the image's own user (named, or root), so no `runAsNonRoot` (the kubelet
/// cannot verify a named user and refuses the pod). `fs_group` makes mounted Secrets (mode 0440)
/// readable whatever the user is.
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub user: Option<u32>,
    pub fs_group: u32,
    /// The image runs as root (no USER line): it keeps the default capabilities, since root
    /// without CAP_DAC_OVERRIDE cannot write the directories its RPMs give to other users.
    pub image_root: bool,
}

pub(crate) fn pod_security(run_as: RunAs) -> Value {
    let mut s = json!({"fsGroup": run_as.fs_group, "seccompProfile": {"type": "RuntimeDefault"}});
    if let Some(uid) = run_as.user {
        s["runAsUser"] = json!(uid);
        s["runAsGroup"] = json!(run_as.fs_group);
        s["runAsNonRoot"] = json!(true);
    }
    s
}

pub(crate) fn container_security(run_as: RunAs) -> Value {
    let mut s = json!({
        "allowPrivilegeEscalation": false,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if !run_as.image_root {
        s["capabilities"] = json!({"drop": ["ALL"]});
    }
    if let Some(uid) = run_as.user {
        s["runAsUser"] = json!(uid);
        s["runAsGroup"] = json!(run_as.fs_group);
        s["runAsNonRoot"] = json!(true);
    }
    s
}

pub(crate) fn secret_env(var: &str, secret: &str, key: &str) -> Value {
    json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

pub(crate) fn optional_secret_env(var: &str, secret: &str, key: &str) -> Value {
    json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": true}}})
}

pub(crate) fn env(var: &str, value: impl Into<String>) -> Value {
    json!({"name": var, "value": value.into()})
}

/// `{PREFIX}HOST`, `PORT`, `NAME`, `USER`, `PASSWORD` from a database Secret.
pub(crate) fn db_env(prefix: &str, secret: &str) -> Vec<Value> {
    [
        ("HOST", "host"),
        ("PORT", "port"),
        ("NAME", "name"),
        ("USER", "user"),
        ("PASSWORD", "password"),
    ]
    .iter()
    .map(|(var, key)| secret_env(&format!("{prefix}{var}"), secret, key))
    .collect()
}

/// A container: everything it needs is given here, nothing is added later.
pub struct Container {
    pub name: &'static str,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<Value>,
    pub mounts: Vec<Value>,
    pub ports: Vec<(&'static str, u16)>,
    pub probes: Value,
    pub resources: Value,
}

impl Container {
    pub fn new(name: &'static str, image: String, command: &[&str]) -> Self {
        Container {
            name,
            image,
            command: command.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            mounts: Vec::new(),
            ports: Vec::new(),
            probes: json!({}),
            resources: json!({}),
        }
    }

    pub fn render(self, run_as: RunAs) -> Value {
        let mut c = json!({
            "name": self.name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "command": self.command,
            "securityContext": container_security(run_as),
        });
        if !self.env.is_empty() {
            c["env"] = json!(self.env);
        }
        if !self.mounts.is_empty() {
            c["volumeMounts"] = json!(self.mounts);
        }
        if !self.ports.is_empty() {
            c["ports"] = self
                .ports
                .iter()
                .map(|(n, p)| json!({"name": n, "containerPort": p, "protocol": "TCP"}))
                .collect();
        }
        if let Some(p) = self.probes.as_object() {
            for (k, v) in p {
                c[k] = v.clone();
            }
        }
        if self.resources.as_object().is_some_and(|r| !r.is_empty()) {
            c["resources"] = self.resources;
        }
        c
    }
}

/// A pod: its containers, init containers and volumes, finished.
pub struct Pod {
    pub run_as: RunAs,
    pub init: Vec<Container>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Value>,
    pub restart: &'static str,
    pub grace_seconds: Option<u32>,
}

impl Pod {
    pub fn render(self) -> Value {
        let run_as = self.run_as;
        let mut p = json!({
            "restartPolicy": self.restart,
            "automountServiceAccountToken": false,
            "securityContext": pod_security(run_as),
            "containers": self.containers.into_iter().map(|c| c.render(run_as)).collect::<Vec<_>>(),
            "volumes": self.volumes,
        });
        if !self.init.is_empty() {
            p["initContainers"] = self.init.into_iter().map(|c| c.render(run_as)).collect();
        }
        if let Some(g) = self.grace_seconds {
            p["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }
}

/// A Deployment; `recreate` for singletons that must never run twice at once.
pub(crate) fn deployment(
    fm: &Foreman,
    name: &str,
    replicas: u32,
    recreate: bool,
    pod: Value,
) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(fm, name, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(fm, name)},
            "template": {"metadata": {"labels": labels(fm, name)}, "spec": pod},
        },
    });
    if recreate {
        d["spec"]["strategy"] = json!({"type": "Recreate"});
    }
    d
}

pub(crate) fn service(fm: &Foreman, name: &str, ports: &[(&str, u16)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "port": p, "targetPort": p, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(fm, name, name),
        "spec": {"selector": selector(fm, name), "ports": ports},
    })
}

/// A Job whose name carries a hash of its finished pod: a Job's template cannot change under
/// one name, so a new image, command or setting is a new Job, and the same one is left alone
/// once it has run.
pub(crate) fn job(fm: &Foreman, base: &str, component: &str, backoff: u32, pod: Value) -> Value {
    let hash = short_hash(&pod);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(fm, &format!("{base}-{hash}"), component),
        "spec": {
            "backoffLimit": backoff,
            "template": {"metadata": {"labels": labels(fm, component)}, "spec": pod},
        },
    })
}

pub(crate) fn config_map(fm: &Foreman, name: &str, component: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(fm, name, component),
        "data": data,
    })
}

/// A file from a ConfigMap or Secret volume mounted at `path`.
pub(crate) fn file_mount(volume: &str, path: &str, key: &str) -> Value {
    json!({"name": volume, "mountPath": path, "subPath": key, "readOnly": true})
}

pub(crate) fn dir_mount(volume: &str, path: &str, read_only: bool) -> Value {
    json!({"name": volume, "mountPath": path, "readOnly": read_only})
}

pub(crate) fn config_volume(name: &str, config_map: &str) -> Value {
    json!({"name": name, "configMap": {"name": config_map}})
}

/// A Secret volume with only the listed keys (key, file name), mode 0440: group-readable so
/// the pod's `fsGroup` reads it whatever user the image runs as.
pub(crate) fn secret_volume(name: &str, secret: &str, items: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(k, p)| json!({"key": k, "path": p}))
        .collect();
    json!({"name": name, "secret": {"secretName": secret, "items": items, "defaultMode": 0o440}})
}

/// YAML for a configuration file, through the serializer.
pub(crate) fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("JSON values serialise as YAML")
}

pub fn short_hash(v: &Value) -> String {
    hex::encode(&Sha256::digest(v.to_string().as_bytes())[..5])
}

/// The objects as a YAML stream, for `foreman-box operator render`.
pub fn to_yaml(objs: &[Value]) -> Result<String, crate::Error> {
    let mut out = String::new();
    for o in objs {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml::to_string(o).map_err(|source| crate::Error::Render {
                what: format!(
                    "{} {}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ),
                source,
            })?,
        );
    }
    Ok(out)
}
