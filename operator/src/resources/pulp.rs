//! Pulp: the migration Job (migrate, then the admin that remote-user maps to), the API, the
//! content app, the workers, the mTLS front end `pulp-control` through which Foreman reaches
//! the API (it sets REMOTE-USER from Foreman's verified client certificate), and the Job that
//! registers Pulp as a smart proxy in Foreman.
//!
//! Ordering: the migration Job runs `pulpcore-manager migrate --noinput` as an init container,
//! then `reset-admin-password --random` (FC roles/pulp/tasks/main.yaml does the two in this
//! order). Every Pulp Deployment has an init container looping on `pulpcore-manager migrate
//! --check` (FK: pods wait on it), which succeeds only once the Job has migrated, so the API,
//! content app and workers start after it without crash-looping. The registration Job waits for
//! Foreman's migrations and retries (backoff) until Pulp answers.

use super::core::{self, Needs};
use super::nginx::{block, directive, quoted, regex_literal, word};
use super::{
    annotate_pods, certificates, claim_volume, config_map, config_volume, deployment, dir_mount,
    empty_volume, env, file_mount, image, ingress_policy, job, optional_secret_env, secret_env,
    selector, service, service_port, strings, svc, Check, Component, Container, Object, Pod,
    Probes, RunAs, GENERATED_SECRET, REDIS_PORT,
};
use crate::crd::Foreman;
use crate::profile::{self, Profile, Sized};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Service, ServiceSpec, Volume, VolumeMount};
use k8s_openapi::api::networking::v1::NetworkPolicy;

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

pub fn objects(fm: &Foreman) -> Vec<Object> {
    let control = control_config(fm);
    // The certificates and configuration are mounted by subPath/items: a changed configuration
    // rolls the pods (FK: checksum/config annotation).
    let control_checksum = super::short_hash(&control);
    vec![
        migrate_job(fm).into(),
        service(fm, "pulp-api", &[("http", API_PORT)]).into(),
        api_policy(fm).into(),
        server(fm, "pulp-api", &["pulp-api"], Some(API_PORT)).into(),
        service(fm, "pulp-content", &[("http", CONTENT_PORT)]).into(),
        server(fm, "pulp-content", &["pulp-content"], Some(CONTENT_PORT)).into(),
        server(fm, "pulp-worker", &["pulp-worker"], None).into(),
        config_map(
            fm,
            CONTROL,
            CONTROL,
            strings([(CONTROL_CONFIG_KEY, control)]),
        )
        .into(),
        control_service(fm).into(),
        control_policy(fm).into(),
        control_deployment(fm, control_checksum).into(),
        registration_job(fm).into(),
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
pub fn pulp_env(fm: &Foreman) -> Vec<EnvVar> {
    let db = &fm.spec.database.pulp_secret;
    let origin = format!("https://{}", certificates::server_name(fm));
    let profile = Profile::of(fm.spec.tuning);
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
        // FK H pulpEnv: the private mTLS front end, what Katello talks to.
        env("PULP_SMART_PROXY_PULP_URL", control_url(fm)),
        env("PULP_SMART_PROXY_RHSM_URL", format!("{origin}/rhsm")),
        env("PULP_SMART_PROXY_MIRROR", "false"),
        // FC roles/pulp/defaults: from the host's CPU count, here the tuning profile's host.
        env("PULP_API_WORKERS", profile.pulp_api_workers().to_string()),
        env(
            "PULP_CONTENT_WORKERS",
            profile.pulp_content_workers().to_string(),
        ),
        env("PULP_TOKEN_AUTH_DISABLED", "true"),
        env("PULP_FLATPAK_INDEX", "true"),
    ]
}

/// Pulp trusts the `Remote-User` header, so the API is reachable only from its mTLS front end
/// ([`control_deployment`], which sets the header from a verified client certificate) and the
/// edge ([`super::edge`], which sets it the same way on /pulpcore_registry/v2/ and removes it
/// on /pulp/assets/). FK S/network-policies.yaml: pulp-api admits the pulp-control-proxy pods
/// and the ingress controller (and its smoke test). k3s enforces NetworkPolicy.
fn api_policy(fm: &Foreman) -> NetworkPolicy {
    let from = vec![selector(fm, CONTROL), selector(fm, super::EDGE)];
    ingress_policy(fm, "pulp-api", from, API_PORT)
}

/// Pulp's private mTLS front end (FK S/pulp-control-proxy.yaml and H pulpControlProxyConfig):
/// nginx verifies the client certificate against the operator's CA, maps the subject's CN ==
/// the Foreman client certificate's CN ([`certificates::client_cn`], FK: platform.fqdn) to
/// `REMOTE-USER: admin`, answers 403 to anything else and proxies to pulp-api.
pub const CONTROL: &str = "pulp-control";
pub const CONTROL_CONFIG_KEY: &str = "default.conf";
/// FK H pulpControlProxyUrl is `https://<service>` without a port, so the Service answers on
/// 443 (FK RC: stock Katello drops a non-default port when it builds Pulp clients).
pub const CONTROL_SERVICE_PORT: u16 = 443;
/// The container's port. FK's default (values.yaml) is not in the indexed sources; a port
/// above 1024 because the container runs unprivileged with every capability dropped (FK).
pub const CONTROL_PORT: u16 = 8443;
/// FK's image default lives in values.yaml, which is not in the indexed sources: UNCONFIRMED.
/// FK's pod (runAsNonRoot without runAsUser, read-only root, an emptyDir on /tmp, config in
/// /etc/nginx/conf.d/default.conf) fits nginxinc/nginx-unprivileged, whose numeric USER is 101
/// and whose pid and temp paths are under /tmp. `spec.images.pulp_control` overrides it.
pub const CONTROL_IMAGE: &str = "docker.io/nginxinc/nginx-unprivileged:1.28";
/// FK S/pulp-control-proxy.yaml mounts the certificates here.
pub const CONTROL_PKI: &str = "/etc/nginx/pki";

/// FK H pulpControlProxyUrl: the front end's in-cluster URL, advertised to Katello.
pub fn control_url(fm: &Foreman) -> String {
    format!("https://{}", svc(fm, CONTROL))
}

/// The nginx map pattern for a subject DN (`$ssl_client_s_dn`, RFC 2253) whose CN is the
/// Foreman client certificate's ([`certificates::client_cn`]; FK: platform.fqdn; FC
/// `%{SSL_CLIENT_S_DN_CN} == fqdn`).
pub fn cn_pattern(fm: &Foreman) -> String {
    format!(
        "~(?:^|,)CN={}(?:,|$)",
        regex_literal(&certificates::client_cn(fm))
    )
}

/// Katello's health check (app/models/katello/ping.rb `backend_status`): GET
/// `<pulp_url>/pulp/api/v3/status/` with the CA file and no client certificate.
pub const STATUS_PATH: &str = "/pulp/api/v3/status/";

/// The nginx configuration, through the structured builder in [`super::nginx`] (every value
/// checked when written). Directives from FK H pulpControlProxyConfig, with two changes that
/// follow FC 2.0.0's httpd (foreman-ssl-vhost.conf.j2 `<Location "/pulp/api/v3">`), which
/// verifies client certificates optionally and maps only Foreman's to `REMOTE-USER: admin`:
/// - the certificate is optional (`ssl_verify_client optional`), because Katello pings
///   [`STATUS_PATH`] without one (FK's `on` answers that 400 and Katello's ping fails);
/// - the status path is proxied for anyone with `REMOTE-USER` removed (Pulp serves it
///   anonymously); every other path needs Foreman's certificate (403 otherwise), and a
///   certificate the CA did not sign is refused (400) before any path is looked at.
pub fn control_config(fm: &Foreman) -> String {
    let header = |name: &str, value| directive("proxy_set_header", vec![word(name), value]);
    let proxied = |remote_user| {
        vec![
            directive("proxy_http_version", vec![word("1.1")]),
            directive("proxy_request_buffering", vec![word("off")]),
            directive("proxy_read_timeout", vec![word("600s")]),
            header("Connection", quoted("")),
            header("Host", word("$http_host")),
            header("X-Forwarded-For", word("$proxy_add_x_forwarded_for")),
            header("X-Forwarded-Proto", word("https")),
            header("REMOTE-USER", remote_user),
            header("REMOTE_USER", quoted("")),
            header("X-CLIENT-CERT", quoted("")),
            directive("proxy_pass", vec![word("http://pulp_api")]),
        ]
    };
    let mut admin_only = vec![block(
        "if",
        vec![
            word("("),
            word("$pulp_remote_user"),
            word("="),
            quoted(""),
            word(")"),
        ],
        vec![directive("return", vec![word("403")])],
    )];
    admin_only.extend(proxied(word("$pulp_remote_user")));
    let conf = [
        // Only a certificate nginx verified has a subject here.
        block(
            "map",
            vec![word("$ssl_client_verify"), word("$pulp_verified_dn")],
            vec![
                directive("default", vec![quoted("")]),
                directive("SUCCESS", vec![word("$ssl_client_s_dn")]),
            ],
        ),
        block(
            "map",
            vec![word("$pulp_verified_dn"), word("$pulp_remote_user")],
            vec![
                directive("default", vec![quoted("")]),
                directive(cn_pattern(fm), vec![word("admin")]),
            ],
        ),
        block(
            "upstream",
            vec![word("pulp_api")],
            vec![
                directive(
                    "server",
                    vec![word(format!("{}:{API_PORT}", svc(fm, "pulp-api")))],
                ),
                directive("keepalive", vec![word("32")]),
            ],
        ),
        block(
            "server",
            vec![],
            vec![
                directive("listen", vec![word(CONTROL_PORT.to_string()), word("ssl")]),
                directive("server_name", vec![word("_")]),
                directive("server_tokens", vec![word("off")]),
                directive("client_max_body_size", vec![word("0")]),
                directive("underscores_in_headers", vec![word("off")]),
                directive(
                    "ssl_certificate",
                    vec![word(format!("{CONTROL_PKI}/tls.crt"))],
                ),
                directive(
                    "ssl_certificate_key",
                    vec![word(format!("{CONTROL_PKI}/tls.key"))],
                ),
                directive(
                    "ssl_client_certificate",
                    vec![word(format!("{CONTROL_PKI}/ca.crt"))],
                ),
                directive("ssl_verify_client", vec![word("optional")]),
                directive("ssl_verify_depth", vec![word("3")]),
                directive("ssl_protocols", vec![word("TLSv1.2"), word("TLSv1.3")]),
                block(
                    "location",
                    vec![word("="), word(STATUS_PATH)],
                    proxied(quoted("")),
                ),
                block("location", vec![word("/")], admin_only),
            ],
        ),
    ];
    // The hostname is checked against the CRD's DNS pattern where the resource is read, and
    // namespaces are DNS labels, so every value here is a DNS name, a constant or a regex of one.
    super::nginx::render(&conf)
        .expect("the pulp-control configuration has only DNS names and constants")
}

fn control_service(fm: &Foreman) -> Service {
    Service {
        metadata: super::metadata(fm, CONTROL, CONTROL),
        spec: Some(ServiceSpec {
            selector: selector(fm, CONTROL).match_labels,
            ports: Some(vec![service_port(
                "https",
                CONTROL_SERVICE_PORT,
                CONTROL_PORT,
            )]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// FK S/network-policies.yaml admits Foreman's web, Dynflow, registration and smoke-test pods;
/// here every pod of this Foreman (the cron Jobs and the seed run Katello code too). The front
/// end itself admits only the Foreman client certificate.
fn control_policy(fm: &Foreman) -> NetworkPolicy {
    let this_foreman = strings([
        ("app.kubernetes.io/part-of", "foreman".to_string()),
        (
            super::INSTANCE_LABEL,
            fm.metadata.name.clone().unwrap_or_default(),
        ),
    ]);
    ingress_policy(
        fm,
        CONTROL,
        vec![super::match_labels(this_foreman)],
        CONTROL_PORT,
    )
}

/// FK S/pulp-control-proxy.yaml: one nginx container, read-only root, /tmp an emptyDir, TCP
/// probes on the https port. FK runs at least 2 replicas; a single host runs 1.
fn control_deployment(fm: &Foreman, config_checksum: String) -> Deployment {
    let mut c = Container::new("nginx", image(fm, Component::PulpControl), &[]);
    c.ports = vec![("https", CONTROL_PORT)];
    c.mounts = vec![
        file_mount(
            "config",
            "/etc/nginx/conf.d/default.conf",
            CONTROL_CONFIG_KEY,
        ),
        dir_mount("certificates", CONTROL_PKI, true),
        dir_mount("temporary", "/tmp", false),
    ];
    c.resources = Some(profile::resources(&fm.spec, Sized::Nginx));
    c.probes = super::nginx_probes();
    // FK: the image's own entrypoint and command; a read-only root filesystem.
    c.read_only_root = true;
    let pod = Pod {
        // nginx-unprivileged's USER 101 (group 101).
        run_as: RunAs {
            user: Some(101),
            fs_group: 101,
            image_root: false,
        },
        init: vec![],
        containers: vec![c],
        volumes: vec![
            config_volume("config", CONTROL),
            super::secret_volume(
                "certificates",
                certificates::TLS_SECRET,
                &[
                    (certificates::CA_CRT, "ca.crt"),
                    (certificates::PULP_CONTROL_CRT, "tls.crt"),
                    (certificates::PULP_CONTROL_KEY, "tls.key"),
                ],
            ),
            empty_volume("temporary", false),
        ],
        restart: "Always",
        grace_seconds: None,
    };
    let mut d = deployment(fm, CONTROL, 1, false, pod.render());
    annotate_pods(&mut d, strings([("checksum/config", config_checksum)]));
    d
}

fn mounts() -> Vec<VolumeMount> {
    vec![
        dir_mount("storage", STORAGE_PATH, false),
        file_mount("symmetric-key", PULP_KEY_PATH, PULP_KEY),
    ]
}

fn volumes(fm: &Foreman) -> Vec<Volume> {
    vec![
        claim_volume("storage", &fm.spec.storage.pulp_claim),
        super::secret_volume("symmetric-key", PULP_KEY_SECRET, &[(PULP_KEY, PULP_KEY)]),
    ]
}

fn pulp_container(fm: &Foreman, name: &'static str, command: &[&str]) -> Container {
    let mut c = Container::new(name, image(fm, Component::Pulp), command);
    c.env = pulp_env(fm);
    c.mounts = mounts();
    c
}

fn migrate_job(fm: &Foreman) -> Job {
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

fn server(fm: &Foreman, name: &'static str, command: &[&str], port: Option<u16>) -> Deployment {
    let wait = pulp_container(
        fm,
        "wait-for-migrations",
        &["/bin/sh", "-c", "until pulpcore-manager migrate --check; do echo 'waiting for the migration Job'; sleep 10; done"],
    );
    let mut c = pulp_container(fm, name, command);
    let (sized, replicas) = match port {
        Some(API_PORT) => (Sized::PulpApi, 1),
        Some(_) => (Sized::PulpContent, 1),
        // FC pulp_worker_count: one pulpcore-worker per service (pulp-worker@N), so one per pod.
        None => (
            Sized::PulpWorker,
            Profile::of(fm.spec.tuning).pulp_workers(),
        ),
    };
    c.resources = Some(profile::resources(&fm.spec, sized));
    match port {
        Some(API_PORT) => {
            c.ports = vec![("http", API_PORT)];
            // FK S/pulp.yaml: the API is ready when /pulp/api/v3/status/ says the database and
            // Redis are connected and a worker and a content app are online; it answers 200
            // either way, so the JSON is read.
            let check = format!(
                "import json, sys, urllib.request\ns = json.load(urllib.request.urlopen('http://127.0.0.1:{API_PORT}/pulp/api/v3/status/', timeout=8))\nok = s['database_connection']['connected'] and (s.get('redis_connection') or {{}}).get('connected', True) and s['online_workers'] and s['online_content_apps']\nsys.exit(0 if ok else 1)\n"
            );
            c.probes = Probes {
                startup: None,
                readiness: Some(Check::exec(&["python3", "-c", &check]).every(
                    10,
                    None,
                    Some(10),
                    Some(3),
                )),
                liveness: Some(Check::tcp(API_PORT).every(20, Some(60), Some(5), None)),
            };
        }
        Some(p) => {
            c.ports = vec![("http", p)];
            c.probes = Probes {
                startup: None,
                readiness: Some(Check::tcp(p).every(10, None, Some(5), None)),
                liveness: Some(Check::tcp(p).every(20, Some(60), Some(5), None)),
            };
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
    deployment(fm, name, replicas, false, pod.render())
}

/// Registers Pulp as a smart proxy (FC: name `<fqdn>-pulp`; FK S/pulp-registration.yaml: a
/// `rails runner` Job that upserts the SmartProxy and asserts the `Pulpcore` feature). The URL is
/// the mTLS front end's (FK H pulpSmartProxyUrl): its host is the name pulp-control's
/// certificate carries, and Foreman reaches it with its client certificate, which pulp-control
/// maps to the admin. The edge does not route /pulp/api/v3 (FK has no public API either; FC's
/// httpd does, with the same mapping). Pulp never calls Foreman back, so no certificate of its
/// own has to match the registration; the name is FC's.
fn registration_job(fm: &Foreman) -> Job {
    let c = registration_container(
        fm,
        &format!("{}-pulp", certificates::server_name(fm)),
        &format!("{}/pulp/api/v3/smart_proxy", control_url(fm)),
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
