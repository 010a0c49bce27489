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
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container as K8sContainer, ContainerPort,
    EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

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

/// One rendered object, typed: a misspelt field is a compile error. Serialized (with its
/// `apiVersion` and `kind`) it is what the controller applies.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Object {
    ConfigMap(ConfigMap),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Service(Service),
    NetworkPolicy(NetworkPolicy),
    // The kinds that carry a pod are large: boxed.
    Deployment(Box<Deployment>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
}

macro_rules! object_from {
    ($($kind:ident),*; boxed $($big:ident),*) => {
        $(impl From<$kind> for Object {
            fn from(o: $kind) -> Self {
                Object::$kind(o)
            }
        })*
        $(impl From<$big> for Object {
            fn from(o: $big) -> Self {
                Object::$big(Box::new(o))
            }
        })*
    };
}
object_from!(ConfigMap, PersistentVolumeClaim, Service, NetworkPolicy; boxed Deployment, Job, CronJob);

impl Object {
    /// The wire form: what server-side apply sends.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("Kubernetes objects serialize")
    }
}

/// Every object for this resource, in apply order, each with its desired-hash annotation, in
/// the wire form the controller applies.
pub fn desired(fm: &Foreman) -> Vec<Value> {
    let mut objs = objects(fm);
    if fm.spec.maintenance {
        hold_writers(&mut objs);
    }
    objs.iter()
        .map(|o| {
            let mut v = o.to_value();
            let hash = value_hash(&v);
            v["metadata"]["annotations"] = json!({HASH_ANNOTATION: hash});
            v
        })
        .collect()
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
fn hold_writers(objs: &mut [Object]) {
    for o in objs.iter_mut() {
        match o {
            Object::Deployment(d) => {
                let component = d.metadata.labels.as_ref().and_then(|l| l.get(NAME_LABEL));
                if component.is_some_and(|c| WRITERS.contains(&c.as_str())) {
                    if let Some(spec) = d.spec.as_mut() {
                        spec.replicas = Some(0);
                    }
                }
            }
            Object::CronJob(c) => {
                if let Some(spec) = c.spec.as_mut() {
                    spec.suspend = Some(true);
                }
            }
            _ => {}
        }
    }
}

/// Every object for this resource, in apply order, before the desired-hash annotation.
pub fn objects(fm: &Foreman) -> Vec<Object> {
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

pub(crate) const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Labels, annotations, a ConfigMap's data.
pub(crate) type Strings = BTreeMap<String, String>;

pub(crate) fn strings<const N: usize>(pairs: [(&str, String); N]) -> Strings {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub(crate) fn labels(fm: &Foreman, component: &str) -> Strings {
    strings([
        (NAME_LABEL, component.to_string()),
        ("app.kubernetes.io/part-of", "foreman".to_string()),
        (INSTANCE_LABEL, fm.metadata.name.clone().unwrap_or_default()),
        (MANAGED_BY_LABEL, MANAGED_BY.to_string()),
    ])
}

pub(crate) fn selector(fm: &Foreman, component: &str) -> LabelSelector {
    match_labels(strings([
        (NAME_LABEL, component.to_string()),
        (INSTANCE_LABEL, fm.metadata.name.clone().unwrap_or_default()),
    ]))
}

pub(crate) fn match_labels(labels: Strings) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

pub(crate) fn metadata(fm: &Foreman, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace(fm)),
        labels: Some(labels(fm, component)),
        // Rendered outside a cluster the resource has no uid yet: owner references come with
        // one.
        owner_references: fm.metadata.uid.as_ref().map(|uid| {
            vec![OwnerReference {
                api_version: "app.theforeman.org/v1alpha1".into(),
                kind: "Foreman".into(),
                name: fm.metadata.name.clone().unwrap_or_default(),
                uid: uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        }),
        ..ObjectMeta::default()
    }
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

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    })
}

pub(crate) fn pod_security(run_as: RunAs) -> PodSecurityContext {
    let user = run_as.user.map(i64::from);
    PodSecurityContext {
        fs_group: Some(i64::from(run_as.fs_group)),
        seccomp_profile: runtime_default(),
        run_as_user: user,
        run_as_group: user.map(|_| i64::from(run_as.fs_group)),
        run_as_non_root: user.map(|_| true),
        ..PodSecurityContext::default()
    }
}

pub(crate) fn container_security(run_as: RunAs) -> SecurityContext {
    let user = run_as.user.map(i64::from);
    SecurityContext {
        allow_privilege_escalation: Some(false),
        seccomp_profile: runtime_default(),
        capabilities: (!run_as.image_root).then(|| Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_user: user,
        run_as_group: user.map(|_| i64::from(run_as.fs_group)),
        run_as_non_root: user.map(|_| true),
        ..SecurityContext::default()
    }
}

fn secret_key(var: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: var.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional,
            }),
            ..EnvVarSource::default()
        }),
    }
}

pub(crate) fn secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
    secret_key(var, secret, key, None)
}

pub(crate) fn optional_secret_env(var: &str, secret: &str, key: &str) -> EnvVar {
    secret_key(var, secret, key, Some(true))
}

pub(crate) fn env(var: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: var.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// `{PREFIX}HOST`, `PORT`, `NAME`, `USER`, `PASSWORD` from a database Secret.
pub(crate) fn db_env(prefix: &str, secret: &str) -> Vec<EnvVar> {
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

/// A probe's check: a TCP connect or a command.
pub(crate) enum Check {
    Tcp(IntOrString),
    Exec(Vec<String>),
}

impl Check {
    pub(crate) fn tcp(port: u16) -> Check {
        Check::Tcp(IntOrString::Int(i32::from(port)))
    }

    pub(crate) fn tcp_named(port: &str) -> Check {
        Check::Tcp(IntOrString::String(port.into()))
    }

    pub(crate) fn exec<S: AsRef<str>>(command: &[S]) -> Check {
        Check::Exec(command.iter().map(|c| c.as_ref().to_string()).collect())
    }

    /// Checked every `period` seconds; `initial_delay`, `timeout` and `failure_threshold` when
    /// given (the kubelet's defaults otherwise).
    pub(crate) fn every(
        self,
        period: i32,
        initial_delay: Option<i32>,
        timeout: Option<i32>,
        failure_threshold: Option<i32>,
    ) -> Probe {
        let (tcp_socket, exec) = match self {
            Check::Tcp(port) => (Some(TCPSocketAction { port, host: None }), None),
            Check::Exec(command) => (
                None,
                Some(ExecAction {
                    command: Some(command),
                }),
            ),
        };
        Probe {
            tcp_socket,
            exec,
            period_seconds: Some(period),
            initial_delay_seconds: initial_delay,
            timeout_seconds: timeout,
            failure_threshold,
            ..Probe::default()
        }
    }
}

/// A container's probes.
#[derive(Default)]
pub struct Probes {
    pub startup: Option<Probe>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
}

/// The nginx front ends' probes (FK S/pulp-control-proxy.yaml): TCP on the https port.
pub(crate) fn nginx_probes() -> Probes {
    let https = || Check::tcp_named("https");
    Probes {
        startup: Some(https().every(2, None, Some(1), Some(30))),
        readiness: Some(https().every(5, Some(3), None, None)),
        liveness: Some(https().every(10, Some(10), None, None)),
    }
}

/// A container: everything it needs is given here, nothing is added later.
pub struct Container {
    pub name: &'static str,
    pub image: String,
    /// Empty: the image's own entrypoint and command.
    pub command: Vec<String>,
    pub env: Vec<EnvVar>,
    pub mounts: Vec<VolumeMount>,
    pub ports: Vec<(&'static str, u16)>,
    pub probes: Probes,
    pub resources: Option<ResourceRequirements>,
    pub read_only_root: bool,
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
            probes: Probes::default(),
            resources: None,
            read_only_root: false,
        }
    }

    pub fn render(self, run_as: RunAs) -> K8sContainer {
        let mut security = container_security(run_as);
        if self.read_only_root {
            security.read_only_root_filesystem = Some(true);
        }
        let ports = self
            .ports
            .iter()
            .map(|(n, p)| ContainerPort {
                name: Some(n.to_string()),
                container_port: i32::from(*p),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            })
            .collect();
        K8sContainer {
            name: self.name.into(),
            image: Some(self.image),
            image_pull_policy: Some("IfNotPresent".into()),
            command: non_empty(self.command),
            security_context: Some(security),
            env: non_empty(self.env),
            volume_mounts: non_empty(self.mounts),
            ports: non_empty(ports),
            startup_probe: self.probes.startup,
            readiness_probe: self.probes.readiness,
            liveness_probe: self.probes.liveness,
            resources: self.resources,
            ..K8sContainer::default()
        }
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// A pod: its containers, init containers and volumes, finished.
pub struct Pod {
    pub run_as: RunAs,
    pub init: Vec<Container>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub restart: &'static str,
    pub grace_seconds: Option<u32>,
}

impl Pod {
    pub fn render(self) -> PodSpec {
        let run_as = self.run_as;
        let render = |cs: Vec<Container>| cs.into_iter().map(|c| c.render(run_as)).collect();
        PodSpec {
            restart_policy: Some(self.restart.into()),
            automount_service_account_token: Some(false),
            security_context: Some(pod_security(run_as)),
            containers: render(self.containers),
            init_containers: non_empty(render(self.init)),
            volumes: Some(self.volumes),
            termination_grace_period_seconds: self.grace_seconds.map(i64::from),
            ..PodSpec::default()
        }
    }
}

fn template(labels: Strings, pod: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }),
        spec: Some(pod),
    }
}

/// A Deployment; `recreate` for singletons that must never run twice at once.
pub(crate) fn deployment(
    fm: &Foreman,
    name: &str,
    replicas: u32,
    recreate: bool,
    pod: PodSpec,
) -> Deployment {
    Deployment {
        metadata: metadata(fm, name, name),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: selector(fm, name),
            template: template(labels(fm, name), pod),
            strategy: recreate.then(|| DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Sets the pod template's annotations (a checksum that rolls the pods when it changes).
pub(crate) fn annotate_pods(d: &mut Deployment, annotations: Strings) {
    if let Some(meta) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
        meta.annotations = Some(annotations);
    }
}

/// A Service port: `port` on the Service, `target` on the pods.
pub(crate) fn service_port(name: &str, port: u16, target: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(target))),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub(crate) fn service(fm: &Foreman, name: &str, ports: &[(&str, u16)]) -> Service {
    let ports = ports.iter().map(|(n, p)| service_port(n, *p, *p)).collect();
    Service {
        metadata: metadata(fm, name, name),
        spec: Some(ServiceSpec {
            selector: selector(fm, name).match_labels,
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A Job whose name carries a hash of its finished pod: a Job's template cannot change under
/// one name, so a new image, command or setting is a new Job, and the same one is left alone
/// once it has run.
pub(crate) fn job(fm: &Foreman, base: &str, component: &str, backoff: u32, pod: PodSpec) -> Job {
    let hash = short_hash(&pod);
    Job {
        metadata: metadata(fm, &format!("{base}-{hash}"), component),
        spec: Some(JobSpec {
            backoff_limit: Some(i32::try_from(backoff).unwrap_or(i32::MAX)),
            template: template(labels(fm, component), pod),
            ..JobSpec::default()
        }),
        status: None,
    }
}

pub(crate) fn job_template(labels: Strings, backoff: i32, pod: PodSpec) -> JobTemplateSpec {
    JobTemplateSpec {
        metadata: None,
        spec: Some(JobSpec {
            backoff_limit: Some(backoff),
            template: template(labels, pod),
            ..JobSpec::default()
        }),
    }
}

pub(crate) fn config_map(fm: &Foreman, name: &str, component: &str, data: Strings) -> ConfigMap {
    ConfigMap {
        metadata: metadata(fm, name, component),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A file from a ConfigMap or Secret volume mounted at `path`.
pub(crate) fn file_mount(volume: &str, path: &str, key: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        sub_path: Some(key.into()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

pub(crate) fn dir_mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

pub(crate) fn config_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A Secret volume with only the listed keys (key, file name), mode 0440: group-readable so
/// the pod's `fsGroup` reads it whatever user the image runs as.
pub(crate) fn secret_volume(name: &str, secret: &str, items: &[(&str, &str)]) -> Volume {
    let items = items
        .iter()
        .map(|(k, p)| KeyToPath {
            key: k.to_string(),
            path: p.to_string(),
            mode: None,
        })
        .collect();
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(items),
            default_mode: Some(0o440),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// An emptyDir volume, in memory when it holds secrets.
pub(crate) fn empty_volume(name: &str, memory: bool) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".into()),
            size_limit: None,
        }),
        ..Volume::default()
    }
}

pub(crate) fn claim_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: None,
        }),
        ..Volume::default()
    }
}

/// A NetworkPolicy admitting to `component`'s pods, on `port`, only the pods `from` selects.
pub(crate) fn ingress_policy(
    fm: &Foreman,
    component: &str,
    from: Vec<LabelSelector>,
    port: u16,
) -> NetworkPolicy {
    let from = from
        .into_iter()
        .map(|s| NetworkPolicyPeer {
            pod_selector: Some(s),
            ..NetworkPolicyPeer::default()
        })
        .collect();
    NetworkPolicy {
        metadata: metadata(fm, component, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(fm, component)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    end_port: None,
                }]),
            }]),
            egress: None,
        }),
    }
}

/// YAML for a configuration file, through the serializer.
pub(crate) fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).expect("JSON values serialise as YAML")
}

/// The first ten hex digits of the SHA-256 of `v` as JSON with sorted keys (so a typed object
/// and its wire form hash alike).
pub fn short_hash<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let v = serde_json::to_value(v).expect("rendered values serialize");
    value_hash(&v)
}

/// [`short_hash`] of a value already in JSON form: its text streamed into the digest.
fn value_hash(v: &Value) -> String {
    struct Digesting(Sha256);
    impl std::io::Write for Digesting {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut d = Digesting(Sha256::new());
    serde_json::to_writer(&mut d, v).expect("a JSON value writes");
    hex::encode(&d.0.finalize()[..5])
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
