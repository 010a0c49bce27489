//! Pulp: the migration Job (migrate, then the admin that remote-user maps to), the API, the
//! content app, the workers, and the Job that registers Pulp as a smart proxy in Foreman.
//!
//! Ordering: the migration Job runs `pulpcore-manager migrate --noinput` as an init container,
//! then `reset-admin-password --random` (FC roles/pulp/tasks/main.yaml does the two in this
//! order). Every Pulp Deployment has an init container looping on `pulpcore-manager migrate
//! --check` (FK: pods wait on it), which succeeds only once the Job has migrated, so the API,
//! content app and workers start after it without crash-looping. The registration Job waits for
//! Foreman's migrations and retries (backoff) until Pulp answers.

use super::core::{self, Needs};
use super::{
    certificates, deployment, dir_mount, env, file_mount, image, job, optional_secret_env,
    secret_env, service, svc, Component, Container, Pod, RunAs, GENERATED_SECRET, REDIS_PORT,
};
use crate::crd::Foreman;
use serde_json::{json, Value};

pub const API_PORT: u16 = 24817;
pub const CONTENT_PORT: u16 = 24816;
/// Made once by the controller: FC's `database_fields.symmetric.key`.
pub const PULP_KEY_SECRET: &str = "pulp-symmetric-key";
pub const PULP_KEY: &str = "database_fields.symmetric.key";
/// FC roles/pulp: the secret mounted at this path in every Pulp container.
pub const PULP_KEY_PATH: &str = "/etc/pulp/certs/database_fields.symmetric.key";
pub const STORAGE_PATH: &str = "/var/lib/pulp";
/// FC roles/pulp/defaults: pulp_default_plugins + pulp_plugins.
pub const PLUGINS: &[&str] = &[
    "pulp_certguard",
    "pulp_file",
    "pulp_smart_proxy",
    "pulp_container",
    "pulp_rpm",
];

pub fn objects(fm: &Foreman) -> Vec<Value> {
    vec![
        migrate_job(fm),
        service(fm, "pulp-api", &[("http", API_PORT)]),
        api_policy(fm),
        server(fm, "pulp-api", &["pulp-api"], Some(API_PORT)),
        service(fm, "pulp-content", &[("http", CONTENT_PORT)]),
        server(fm, "pulp-content", &["pulp-content"], Some(CONTENT_PORT)),
        server(fm, "pulp-worker", &["pulp-worker"], None),
        registration_job(fm),
    ]
}

/// PO images/pulp/Containerfile has no USER line (so root), while FK RC claims `USER pulp`
/// 700:700, and foreman-box's storage step chowns the Pulp claim's directory to 700:700. Nothing
/// in the image needs root (the wrappers exec gunicorn/pulpcore-worker on unprivileged ports),
/// so the pods run as 700:700, the owner of their storage, with runAsNonRoot.
pub fn run_as() -> RunAs {
    RunAs {
        user: Some(700),
        fs_group: 700,
        image_root: false,
    }
}

/// The environment of every Pulp process (FC roles/pulp/defaults/main.yaml
/// pulp_settings_database_env + pulp_settings_other_env; FK S/pulp.yaml for the smart proxy's).
pub fn pulp_env(fm: &Foreman) -> Vec<Value> {
    let db = &fm.spec.database.pulp_secret;
    let origin = format!("https://{}", certificates::server_name(fm));
    let list = |items: &[&str]| {
        let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
        format!("[{}]", quoted.join(", "))
    };
    vec![
        secret_env("PULP_DATABASES__default__NAME", db, "name"),
        secret_env("PULP_DATABASES__default__USER", db, "user"),
        secret_env("PULP_DATABASES__default__PASSWORD", db, "password"),
        secret_env("PULP_DATABASES__default__HOST", db, "host"),
        secret_env("PULP_DATABASES__default__PORT", db, "port"),
        // The installer's Secret has `sslmode`; a user's may not (then libpq's default).
        optional_secret_env("PULP_DATABASES__default__OPTIONS__sslmode", db, "sslmode"),
        env("PULP_ENABLED_PLUGINS", list(PLUGINS)),
        secret_env("PULP_SECRET_KEY", GENERATED_SECRET, "pulp-secret-key"),
        env("PULP_ANALYTICS", "false"),
        env(
            "PULP_AUTHENTICATION_BACKENDS",
            list(&["pulpcore.app.authentication.PulpNoCreateRemoteUserBackend"]),
        ),
        env("PULP_CACHE_ENABLED", "true"),
        env("PULP_CONTENT_ORIGIN", origin.clone()),
        env(
            "PULP_REDIS_URL",
            format!("redis://{}:{REDIS_PORT}/8", svc(fm, "redis")),
        ),
        env("PULP_REMOTE_USER_ENVIRON_NAME", "HTTP_REMOTE_USER"),
        env(
            "PULP_REST_FRAMEWORK__DEFAULT_AUTHENTICATION_CLASSES",
            list(&[
                "rest_framework.authentication.SessionAuthentication",
                "pulpcore.app.authentication.PulpRemoteUserAuthentication",
            ]),
        ),
        env("PULP_SMART_PROXY_PULP_URL", origin.clone()),
        env("PULP_SMART_PROXY_RHSM_URL", format!("{origin}/rhsm")),
        env("PULP_SMART_PROXY_MIRROR", "false"),
        // FC computes these from the CPU count; the PO image's default is 2.
        env("PULP_API_WORKERS", "2"),
        env("PULP_CONTENT_WORKERS", "2"),
        env("PULP_TOKEN_AUTH_DISABLED", "true"),
        env("PULP_FLATPAK_INDEX", "true"),
    ]
}

/// Pulp trusts the `Remote-User` header (FC/FK put a front end that sets it from a verified
/// client certificate before the API), so the API must not be reachable by just anyone: only
/// this Foreman's own pods and the Ingress controller (k3s runs Traefik in kube-system, which
/// forwards only the routes in [`super::ingress`]) may connect. k3s enforces NetworkPolicy.
fn api_policy(fm: &Foreman) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": super::metadata(fm, "pulp-api", "pulp-api"),
        "spec": {
            "podSelector": {"matchLabels": super::selector(fm, "pulp-api")},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {
                        "app.kubernetes.io/part-of": "foreman",
                        super::INSTANCE_LABEL: fm.metadata.name.clone().unwrap_or_default(),
                    }}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
                ],
                "ports": [{"port": API_PORT, "protocol": "TCP"}],
            }],
        },
    })
}

fn mounts() -> Vec<Value> {
    vec![
        dir_mount("storage", STORAGE_PATH, false),
        file_mount("symmetric-key", PULP_KEY_PATH, PULP_KEY),
    ]
}

fn volumes(fm: &Foreman) -> Vec<Value> {
    vec![
        json!({"name": "storage", "persistentVolumeClaim": {"claimName": fm.spec.storage.pulp_claim}}),
        super::secret_volume("symmetric-key", PULP_KEY_SECRET, &[(PULP_KEY, PULP_KEY)]),
    ]
}

fn pulp_container(fm: &Foreman, name: &'static str, command: &[&str]) -> Container {
    let mut c = Container::new(name, image(fm, Component::Pulp), command);
    c.env = pulp_env(fm);
    c.mounts = mounts();
    c
}

/// FK tests/kind/values.yaml: pulp 50m / 256Mi, limit 1Gi.
fn resources() -> Value {
    json!({"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})
}

fn migrate_job(fm: &Foreman) -> Value {
    // FC "Create Pulp storage subdirs": tmp, assets, media under /var/lib/pulp.
    let prepare = pulp_container(
        fm,
        "storage",
        &[
            "mkdir",
            "-p",
            "/var/lib/pulp/tmp",
            "/var/lib/pulp/assets",
            "/var/lib/pulp/media",
        ],
    );
    let migrate = pulp_container(fm, "migrate", &["pulpcore-manager", "migrate", "--noinput"]);
    let admin = pulp_container(
        fm,
        "admin",
        &["pulpcore-manager", "reset-admin-password", "--random"],
    );
    let pod = Pod {
        run_as: run_as(),
        init: vec![prepare, migrate],
        containers: vec![admin],
        volumes: volumes(fm),
        restart: "OnFailure",
        grace_seconds: None,
    };
    job(fm, "pulp-migrate", "pulp-migrate", 6, pod.render())
}

fn server(fm: &Foreman, name: &'static str, command: &[&str], port: Option<u16>) -> Value {
    let wait = pulp_container(
        fm,
        "wait-for-migrations",
        &["/bin/sh", "-c", "until pulpcore-manager migrate --check; do echo 'waiting for the migration Job'; sleep 10; done"],
    );
    let mut c = pulp_container(fm, name, command);
    c.resources = resources();
    match port {
        Some(API_PORT) => {
            c.ports = vec![("http", API_PORT)];
            // FK S/pulp.yaml: the API is ready when /pulp/api/v3/status/ says the database and
            // Redis are connected and a worker and a content app are online; it answers 200
            // either way, so the JSON is read.
            let check = format!(
                "import json, sys, urllib.request\ns = json.load(urllib.request.urlopen('http://127.0.0.1:{API_PORT}/pulp/api/v3/status/', timeout=8))\nok = s['database_connection']['connected'] and (s.get('redis_connection') or {{}}).get('connected', True) and s['online_workers'] and s['online_content_apps']\nsys.exit(0 if ok else 1)\n"
            );
            c.probes = json!({
                "readinessProbe": {"exec": {"command": ["python3", "-c", check]}, "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 3},
                "livenessProbe": {"tcpSocket": {"port": API_PORT}, "initialDelaySeconds": 60, "periodSeconds": 20, "timeoutSeconds": 5},
            });
        }
        Some(p) => {
            c.ports = vec![("http", p)];
            c.probes = json!({
                "readinessProbe": {"tcpSocket": {"port": p}, "periodSeconds": 10, "timeoutSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": p}, "initialDelaySeconds": 60, "periodSeconds": 20, "timeoutSeconds": 5},
            });
        }
        None => {}
    }
    let pod = Pod {
        run_as: run_as(),
        init: vec![wait],
        containers: vec![c],
        volumes: volumes(fm),
        restart: "Always",
        // FK: workers finish their task, up to an hour.
        grace_seconds: port.is_none().then_some(3600),
    };
    deployment(fm, name, 1, false, pod.render())
}

/// Registers Pulp as a smart proxy (FC: name `<fqdn>-pulp`; FK S/pulp-registration.yaml: a
/// `rails runner` Job that upserts the SmartProxy and asserts the `Pulpcore` feature). The URL is
/// the in-cluster API Service: the public one is not routed (see [`super::ingress`]).
fn registration_job(fm: &Foreman) -> Value {
    let c = registration_container(
        fm,
        &format!("{}-pulp", certificates::server_name(fm)),
        &format!(
            "http://{}:{API_PORT}/pulp/api/v3/smart_proxy",
            svc(fm, "pulp-api")
        ),
        &["Pulpcore"],
    );
    let needs = Needs {
        migrated: true,
        ..Needs::default()
    };
    job(
        fm,
        "pulp-registration",
        "pulp-registration",
        10,
        core::foreman_pod(fm, c, needs, "OnFailure"),
    )
}

/// A container of the Foreman image that upserts a SmartProxy and fails unless it has every
/// expected feature (so the Job retries until the proxy answers).
pub fn registration_container(fm: &Foreman, name: &str, url: &str, features: &[&str]) -> Container {
    let mut c = Container::new(
        "register",
        image(fm, Component::Foreman),
        &["/usr/share/foreman/bin/rails", "runner", REGISTER_RB],
    );
    c.env = vec![
        env("PROXY_NAME", name),
        env("PROXY_URL", url),
        env("EXPECTED_FEATURES", features.join(",")),
    ];
    c
}

const REGISTER_RB: &str = "User.as_anonymous_admin do
  proxy = SmartProxy.unscoped.find_or_initialize_by(name: ENV.fetch('PROXY_NAME'))
  proxy.url = ENV.fetch('PROXY_URL')
  proxy.save || abort(\"cannot register smart proxy #{proxy.name}: #{proxy.errors.full_messages.join('; ')}\")
  proxy.refresh
  missing = ENV.fetch('EXPECTED_FEATURES').split(',') - proxy.reload.features.map(&:name)
  abort(\"smart proxy #{proxy.name} lacks feature(s) #{missing.join(', ')}\") unless missing.empty?
  puts \"smart proxy #{proxy.name} registered with #{proxy.features.map(&:name).sort.join(', ')}\"
end
";
