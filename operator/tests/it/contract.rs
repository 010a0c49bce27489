//! The contract per component: what the Foreman project's own deployments run, row by row, each
//! with the upstream file it comes from, asserted on the render of the default resource
//! (katello and remote_execution on, 2 workers, stream 3.18).
//!
//! FC = theforeman/foremanctl at tag 2.0.0 (Foreman 3.18); FK = theforeman/foreman-kubernetes;
//! OCI = theforeman/foreman-oci-images; PO = theforeman/pulp-oci-images;
//! CO = theforeman/candlepin-oci-images.

use foreman_operator::read::read_foreman;
use foreman_operator::resources::core::with_database_url;
use foreman_operator::resources::desired;
use serde_json::Value;

enum Check {
    Image(&'static str),
    Command(&'static [&'static str]),
    /// Started under the wrapper that sets DATABASE_URL from the `DB_*` variables.
    DatabaseUrlWrapper,
    /// Numeric user, or None: the image's own user without runAsNonRoot.
    User(Option<u64>),
    FsGroup(u64),
    Env(&'static str, Option<&'static str>),
    /// A file or directory mounted at this path.
    File(&'static str),
    Port(u64),
    Recreate,
    /// A text every listed ConfigMap key of the object's component holds.
    Config(&'static str, &'static str, &'static str),
    /// The Deployment's replica count.
    Replicas(u64),
}
use Check::*;

/// (object "Kind/name" (Jobs by prefix), container, check, source).
type Row = (&'static str, &'static str, Check, &'static str);

const FOREMAN: &[Row] = &[
    (
        "Deployment/foreman",
        "foreman",
        Image("quay.io/foreman/foreman:3.18"),
        "FC src/vars/images.yml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Command(&[
            "/usr/share/foreman/bin/rails",
            "server",
            "--environment",
            "production",
            "--pid",
            "/tmp/rails.pid",
        ]),
        "OCI images/foreman/Containerfile CMD; FK S/foreman.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        User(None),
        "OCI foreman-3.19 Containerfile: USER foreman, RPM-assigned uid",
    ),
    (
        "Deployment/foreman",
        "foreman",
        FsGroup(994),
        "OCI 2c36a1b FOREMAN_GID",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Port(3000),
        "OCI Containerfile EXPOSE 3000",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env(
            "FOREMAN_ENABLED_PLUGINS",
            Some("foreman-tasks foreman_remote_execution katello"),
        ),
        "OCI Containerfile bundler.d",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("FOREMAN_PUMA_THREADS_MAX", Some("5")),
        "FC roles/foreman/defaults/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("FOREMAN_PUMA_THREADS_MIN", Some("5")),
        "FC roles/foreman/defaults/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("FOREMAN_PUMA_WORKERS", Some("6")),
        "FC roles/foreman/defaults/main.yaml foreman_puma_workers min(32, 1.5 × 4 cores, 20 − 1.5) for src/vars/tuning/default.yml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        DatabaseUrlWrapper,
        "FC roles/foreman/tasks/main.yaml DATABASE_URL, defaults foreman_database_pool 9: set at start from DB_* (operator/tests/it/database_url.rs)",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("ENCRYPTION_KEY", None),
        "OCI cabe662",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("SECRET_KEY_BASE", None),
        "FK H",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env(
            "DYNFLOW_REDIS_URL",
            Some("redis://redis.foreman.svc:6379/6"),
        ),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Env("REDIS_PROVIDER", Some("DYNFLOW_REDIS_URL")),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/etc/foreman/settings.yaml"),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/etc/foreman/plugins/katello.yaml"),
        "FC: /etc/foreman/plugins/katello.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/etc/foreman/katello-default-ca.crt"),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/etc/foreman/client_cert.pem"),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/etc/foreman/client_key.pem"),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/foreman",
        "foreman",
        File("/usr/share/foreman/tmp"),
        "FK RC: shared with Dynflow",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "settings.yaml",
            "- redis://redis.foreman.svc:6379/4",
        ),
        "FC templates/settings.yaml.j2 :rails_cache_store",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config("foreman-config", "settings.yaml", ":require_ssl: true"),
        "FC templates/settings.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "settings.yaml",
            ":ssl_client_dn_env: HTTP_SSL_CLIENT_S_DN",
        ),
        "FC templates/settings.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "settings.yaml",
            ":ssl_client_verify_env: HTTP_SSL_CLIENT_VERIFY",
        ),
        "FC templates/settings.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "settings.yaml",
            ":ssl_client_cert_env: HTTP_SSL_CLIENT_CERT",
        ),
        "FC templates/settings.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config("foreman-config", "settings.yaml", "- 10.42.0.0/16"),
        "Foreman config/application.rb :trusted_proxies (the edge's pod network)",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "katello.yaml",
            ":url: https://candlepin.foreman.svc:23443/candlepin",
        ),
        "FC templates/katello.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config("foreman-config", "katello.yaml", ":oauth_key: katello"),
        "FC templates/katello.yaml.j2",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "katello.yaml",
            ":broker_host: candlepin.foreman.svc",
        ),
        "FC templates/katello.yaml.j2 :candlepin_events:",
    ),
    (
        "Deployment/foreman",
        "foreman",
        Config(
            "foreman-config",
            "katello.yaml",
            ":rest_client_timeout: 3600",
        ),
        "FC templates/katello.yaml.j2",
    ),
    (
        "Job/foreman-migrate-",
        "migrate",
        Command(&["bash", "-c", "bin/rails db:migrate && bin/rails db:seed"]),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Job/foreman-migrate-",
        "migrate",
        Env("SEED_ADMIN_USER", Some("admin")),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Job/foreman-migrate-",
        "migrate",
        Env("SEED_ADMIN_PASSWORD", None),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Job/foreman-migrate-",
        "migrate",
        Env("SEED_ORGANIZATION", Some("Default Organization")),
        "foreman-installer default",
    ),
    (
        "Job/foreman-migrate-",
        "migrate",
        Env("SEED_LOCATION", Some("Default Location")),
        "foreman-installer default",
    ),
];

const DYNFLOW: &[Row] = &[
    (
        "Deployment/dynflow-orchestrator",
        "dynflow",
        Command(&[
            "/usr/libexec/foreman/sidekiq-selinux",
            "-e",
            "production",
            "-r",
            "./extras/dynflow-sidekiq.rb",
            "-C",
            "/etc/foreman/dynflow/orchestrator.yml",
        ]),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/dynflow-orchestrator",
        "dynflow",
        Recreate,
        "FK S/dynflow.yaml",
    ),
    (
        "Deployment/dynflow-orchestrator",
        "dynflow",
        File("/usr/share/foreman/tmp"),
        "FK RC",
    ),
    (
        "Deployment/dynflow-worker",
        "dynflow",
        Command(&[
            "/usr/libexec/foreman/sidekiq-selinux",
            "-e",
            "production",
            "-r",
            "./extras/dynflow-sidekiq.rb",
            "-C",
            "/etc/foreman/dynflow/worker.yml",
        ]),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/dynflow-worker-hosts-queue",
        "dynflow",
        File("/etc/foreman/dynflow/worker-hosts-queue.yml"),
        "FC roles/foreman/tasks/main.yaml",
    ),
    (
        "Deployment/dynflow-worker-hosts-queue",
        "dynflow",
        Config("foreman-config", "worker-hosts-queue.yml", "- hosts_queue"),
        "FC templates/dynflow-worker-hosts-queue.yml",
    ),
    (
        "Deployment/dynflow-worker-hosts-queue",
        "dynflow",
        Config(
            "foreman-config",
            "worker-hosts-queue.yml",
            ":concurrency: 5",
        ),
        "FC templates/dynflow-worker-hosts-queue.yml",
    ),
    (
        "CronJob/foreman-cron-hourly",
        "cron",
        Command(&["foreman-rake", "cron:hourly"]),
        "FC roles/foreman/defaults foreman_recurring_tasks",
    ),
    (
        "CronJob/foreman-cron-daily",
        "cron",
        Command(&["foreman-rake", "cron:daily"]),
        "FC roles/foreman/defaults foreman_recurring_tasks",
    ),
    (
        "CronJob/foreman-cron-weekly",
        "cron",
        Command(&["foreman-rake", "cron:weekly"]),
        "FC roles/foreman/defaults foreman_recurring_tasks",
    ),
    (
        "CronJob/foreman-cron-monthly",
        "cron",
        Command(&["foreman-rake", "cron:monthly"]),
        "FC roles/foreman/defaults foreman_recurring_tasks",
    ),
    (
        "Deployment/redis",
        "redis",
        Image("quay.io/sclorg/redis-6-c9s:20250108"),
        "FC src/vars/images.yml (latest, moving); dated tag: radiorabe/container-image-redis",
    ),
    (
        "Deployment/redis",
        "redis",
        Command(&["run-redis"]),
        "FC roles/redis/tasks/main.yaml",
    ),
    (
        "Deployment/redis",
        "redis",
        User(Some(1001)),
        "FC roles/redis/tasks/main.yaml (owner 1001)",
    ),
    (
        "Deployment/redis",
        "redis",
        Port(6379),
        "FC: redis://localhost:6379",
    ),
];

const PULP: &[Row] = &[
    ("Deployment/pulp-api", "pulp-api", Image("quay.io/foreman/pulp:foreman-3.18"), "FC src/vars/images.yml"),
    ("Deployment/pulp-api", "pulp-api", Command(&["pulp-api"]), "FC roles/pulp/tasks/main.yaml; PO images/pulp/assets/pulp-api"),
    ("Deployment/pulp-content", "pulp-content", Command(&["pulp-content"]), "FC roles/pulp/tasks/main.yaml"),
    ("Deployment/pulp-worker", "pulp-worker", Command(&["pulp-worker"]), "FC roles/pulp/tasks/main.yaml"),
    ("Deployment/pulp-api", "pulp-api", Port(24817), "FC roles/pulp/defaults pulp_pulp_url"),
    ("Deployment/pulp-content", "pulp-content", Port(24816), "FC roles/pulp/defaults pulp_content_origin"),
    ("Deployment/pulp-api", "pulp-api", User(Some(700)), "FK RC 700:700; installer storage step chowns 700:700"),
    ("Deployment/pulp-worker", "pulp-worker", FsGroup(700), "FK RC"),
    ("Deployment/pulp-api", "pulp-api", File("/var/lib/pulp"), "FC roles/pulp/defaults pulp_volumes"),
    ("Deployment/pulp-worker", "pulp-worker", File("/etc/pulp/certs/database_fields.symmetric.key"), "FC roles/pulp/tasks/main.yaml"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_DATABASES__default__HOST", None), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_DATABASES__default__PASSWORD", None), "FC roles/pulp/tasks/main.yaml (secret env)"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_DATABASES__default__OPTIONS__sslmode", None), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_SECRET_KEY", None), "FC roles/pulp/tasks/main.yaml"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_REDIS_URL", Some("redis://redis.foreman.svc:6379/8")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_CONTENT_ORIGIN", Some("https://foreman.example.com")), "issue 7; FC pulp_content_origin"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_ENABLED_PLUGINS", Some("['pulp_certguard', 'pulp_file', 'pulp_smart_proxy', 'pulp_container', 'pulp_rpm']")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_AUTHENTICATION_BACKENDS", Some("['pulpcore.app.authentication.PulpNoCreateRemoteUserBackend']")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_REST_FRAMEWORK__DEFAULT_AUTHENTICATION_CLASSES", Some("['rest_framework.authentication.SessionAuthentication', 'pulpcore.app.authentication.PulpRemoteUserAuthentication']")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_REMOTE_USER_ENVIRON_NAME", Some("HTTP_REMOTE_USER")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_TOKEN_AUTH_DISABLED", Some("true")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_CACHE_ENABLED", Some("true")), "FC roles/pulp/defaults"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_API_WORKERS", Some("5")), "FC roles/pulp/defaults pulp_api_service_worker_count min(4, 4 cores) + 1 (src/vars/tuning/default.yml)"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_CONTENT_WORKERS", Some("9")), "FC roles/pulp/defaults pulp_content_service_worker_count 2 × min(8, 4 cores) + 1"),
    ("Deployment/pulp-worker", "pulp-worker", Replicas(4), "FC roles/pulp/defaults pulp_worker_count min(8, 4 cores), one pulp-worker@N each"),
    ("Deployment/pulp-api", "wait-for-migrations", Command(&["/bin/sh", "-c", "until pulpcore-manager migrate --check; do echo 'waiting for the migration Job'; sleep 10; done"]), "FK: pods wait on migrate --check"),
    ("Job/pulp-migrate-", "migrate", Command(&["pulpcore-manager", "migrate", "--noinput"]), "FC roles/pulp/tasks/main.yaml"),
    ("Job/pulp-migrate-", "admin", Command(&["pulpcore-manager", "reset-admin-password", "--random"]), "FC roles/pulp/tasks/main.yaml"),
    ("Job/pulp-registration-", "register", Env("PROXY_NAME", Some("foreman.example.com-pulp")), "FC roles/foreman/tasks/main.yaml (<fqdn>-pulp)"),
    ("Job/pulp-registration-", "register", Env("EXPECTED_FEATURES", Some("Pulpcore")), "FK S/pulp-registration.yaml"),
    ("Job/pulp-registration-", "register", Env("PROXY_URL", Some("https://pulp-control.foreman.svc/pulp/api/v3/smart_proxy")), "FK H pulpSmartProxyUrl"),
    ("Deployment/pulp-api", "pulp-api", Env("PULP_SMART_PROXY_PULP_URL", Some("https://pulp-control.foreman.svc")), "FK H pulpEnv, pulpControlProxyUrl"),
    // Pulp's mTLS front end: FK S/pulp-control-proxy.yaml and H pulpControlProxyConfig.
    ("Deployment/pulp-control", "nginx", Image("docker.io/nginxinc/nginx-unprivileged:1.28"), "UNCONFIRMED: FK values.yaml not indexed; image fits FK S/pulp-control-proxy.yaml's pod"),
    ("Deployment/pulp-control", "nginx", User(Some(101)), "nginx-unprivileged USER 101; FK: runAsNonRoot"),
    ("Deployment/pulp-control", "nginx", Port(8443), "UNCONFIRMED: FK values.yaml not indexed; unprivileged port"),
    ("Deployment/pulp-control", "nginx", File("/etc/nginx/conf.d/default.conf"), "FK S/pulp-control-proxy.yaml"),
    ("Deployment/pulp-control", "nginx", File("/etc/nginx/pki"), "FK S/pulp-control-proxy.yaml"),
    ("Deployment/pulp-control", "nginx", File("/tmp"), "FK S/pulp-control-proxy.yaml (emptyDir, read-only root)"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "map $pulp_verified_dn $pulp_remote_user {\n  default \"\";\n  ~(?:^|,)CN=foreman\\.example\\.com(?:,|$) admin;\n}"), "FK H pulpControlProxyConfig (CN = platform.fqdn)"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "map $ssl_client_verify $pulp_verified_dn {\n  default \"\";\n  SUCCESS $ssl_client_s_dn;\n}"), "FC foreman-ssl-vhost.conf.j2 (SSL_CLIENT_S_DN_CN of a verified certificate)"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "location = /pulp/api/v3/status/ {"), "Katello 4.20 app/models/katello/ping.rb backend_status: <pulp_url>/pulp/api/v3/status/, CA file, no client certificate"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "proxy_set_header REMOTE-USER \"\";"), "FC foreman-ssl-vhost.conf.j2 RequestHeader unset REMOTE-USER"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "server pulp-api.foreman.svc:24817;"), "FK H pulpControlProxyConfig upstream"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "listen 8443 ssl;"), "FK H pulpControlProxyConfig"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "ssl_client_certificate /etc/nginx/pki/ca.crt;"), "FK H pulpControlProxyConfig"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "ssl_verify_client optional;"), "FC foreman-ssl-vhost.conf.j2 SSLVerifyClient optional (FK's `on` fails Katello's ping)"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "if ( $pulp_remote_user = \"\" ) {\n      return 403;"), "FK H pulpControlProxyConfig"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "proxy_set_header REMOTE-USER $pulp_remote_user;"), "FK H pulpControlProxyConfig"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "proxy_set_header X-CLIENT-CERT \"\";"), "FK H pulpControlProxyConfig"),
    ("Deployment/pulp-control", "nginx", Config("pulp-control", "default.conf", "proxy_pass http://pulp_api;"), "FK H pulpControlProxyConfig"),
];

/// The edge: FC src/roles/httpd/templates/foreman-ssl-vhost.conf.j2 (443) and
/// foreman-vhost.conf.j2 (80), and what the programs behind it read.
#[rustfmt::skip]
const EDGE: &[Row] = &[
    ("Deployment/foreman-edge", "nginx", Image("docker.io/nginxinc/nginx-unprivileged:1.28"), "not from upstream: FC runs httpd on the host, FK ingress-nginx; the same image as pulp-control"),
    ("Deployment/foreman-edge", "nginx", Port(8443), "FC foreman-ssl-vhost.conf.j2 <VirtualHost *:443> (Service 443 -> 8443)"),
    ("Deployment/foreman-edge", "nginx", Port(8080), "FC foreman-vhost.conf.j2 <VirtualHost *:80> (Service 80 -> 8080)"),
    ("Deployment/foreman-edge", "nginx", File("/srv/pub"), "FC roles/httpd/tasks/main.yml: katello-server-ca.crt in the pub directory"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "ssl_verify_client optional;"), "FC foreman-ssl-vhost.conf.j2 SSLVerifyClient optional"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "ssl_verify_depth 3;"), "FC foreman-ssl-vhost.conf.j2 SSLVerifyDepth 3"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "ssl_client_certificate /etc/nginx/pki/ca.crt;"), "FC foreman-ssl-vhost.conf.j2 SSLCACertificateFile katello-default-ca.crt"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header SSL-CLIENT-S-DN $edge_client_s_dn;"), "FC foreman-ssl-vhost.conf.j2 RequestHeader set SSL_CLIENT_S_DN; Foreman app/services/foreman/client_certificate.rb"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header SSL-CLIENT-VERIFY $ssl_client_verify;"), "FC foreman-ssl-vhost.conf.j2 RequestHeader set SSL_CLIENT_VERIFY; Foreman client_certificate.rb verified? == 'SUCCESS'"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header SSL-CLIENT-CERT $edge_client_cert;"), "FC foreman-ssl-vhost.conf.j2 SSLOptions +ExportCertData; Foreman certificate_extract.rb, Katello cert/rhsm_client.rb strip_cert + Base64.decode64"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header X-RHSM-SSL-CLIENT-CERT \"\";"), "Katello 4.20 client_authentication.rb cert_from_request reads HTTP_X_RHSM_SSL_CLIENT_CERT first"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header REMOTE-USER \"\";"), "FC foreman-ssl-vhost.conf.j2 RequestHeader unset REMOTE-USER"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header REMOTE-USER-GROUPS \"\";"), "FC foreman-ssl-vhost.conf.j2 RequestHeader unset REMOTE-USER-GROUPS"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "underscores_in_headers off;"), "Puma 6.4.3/5.6.9 drops an underscore header when the hyphen one exists"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header X-Forwarded-Proto https;"), "FC foreman-ssl-vhost.conf.j2 RequestHeader set X_FORWARDED_PROTO https; Foreman client_certificate.rb request.ssl?"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header X-Forwarded-Proto http;"), "FC foreman-vhost.conf.j2 RequestHeader set X-FORWARDED-PROTO http"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"), "FC ProxyAddHeaders On; Foreman config/application.rb trusted_proxies"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header Upgrade $http_upgrade;"), "FC foreman-ssl-vhost.conf.j2 ProxyPass / upgrade=websocket"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_read_timeout 900s;"), "FC foreman-ssl-vhost.conf.j2 ProxyPass / timeout=900"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_pass http://foreman-web.foreman.svc:3000;"), "FC foreman-ssl-vhost.conf.j2 ProxyPass / httpd_foreman_backend"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "location /pulp/content {"), "FC foreman-ssl-vhost.conf.j2 <Location \"/pulp/content\">"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header X-CLIENT-CERT $edge_client_escaped_cert;"), "FC foreman-ssl-vhost.conf.j2 X-CLIENT-CERT; pulp_certguard app/models.py unquote()"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_pass http://pulp-content.foreman.svc:24816/pulp/content/;"), "FK S/ingress.yaml /pulp/isos -> /pulp/content/ (not in FC 2.0.0)"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "location /pulp/container/ {"), "FC foreman-ssl-vhost.conf.j2 ProxyPass /pulp/container/"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "location /pulp/assets/ {"), "FC foreman-ssl-vhost.conf.j2 ProxyPass /pulp/assets/"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_pass http://pulp-api.foreman.svc:24817/v2/;"), "FC foreman-ssl-vhost.conf.j2 <Location \"/pulpcore_registry/v2/\">; Katello app/lib/katello/resources/registry.rb"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "proxy_set_header REMOTE-USER $edge_pulp_admin;"), "FC foreman-ssl-vhost.conf.j2 REMOTE-USER admin iff SSL_CLIENT_S_DN_CN == fqdn"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "location /pulp/ {\n    return 404;"), "FC ProxyPass /pulp !"),
    ("Deployment/foreman-edge", "nginx", Config("foreman-edge", "default.conf", "alias /srv/pub/;"), "FC Alias /pub"),
];

const CANDLEPIN: &[Row] = &[
    (
        "Deployment/candlepin",
        "candlepin",
        Image("quay.io/foreman/candlepin:foreman-3.18"),
        "FC src/vars/images.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Command(&["/usr/libexec/tomcat/server", "start"]),
        "CO Containerfile CMD",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        User(None),
        "CO foreman-3.19 Containerfile: no USER (root)",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        FsGroup(53),
        "FK S/candlepin.yaml; FC gid 53",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Port(23443),
        "FC roles/candlepin/defaults candlepin_ssl_port",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Port(61613),
        "FC templates/broker.xml.j2 STOMP acceptor",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Recreate,
        "fact sheet: singleton",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/candlepin.conf"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/certs/keystore"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/certs/truststore"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/certs/candlepin-ca.crt"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/certs/candlepin-ca.key"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/candlepin/broker.xml"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/server.xml"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/tomcat.conf"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/login.config"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/cert-users.properties"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/conf.d/jaas.conf"),
        "FC roles/candlepin/tasks/main.yml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/etc/tomcat/logging.properties"),
        "FK S/candlepin.yaml (Tomcat's logging to the console)",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        File("/var/lib/tomcat/webapps/candlepin/WEB-INF/classes/logback.xml"),
        "FK S/candlepin.yaml (Candlepin's logging to the console)",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "logging.properties",
            "handlers = java.util.logging.ConsoleHandler\n.handlers = java.util.logging.ConsoleHandler\n",
        ),
        "FK S/runtime-config.yaml logging.properties",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "logback.xml",
            "<appender name=\"STDOUT\" class=\"ch.qos.logback.core.ConsoleAppender\">",
        ),
        "FK S/runtime-config.yaml logback.xml",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "server.xml.in",
            "className=\"org.apache.catalina.valves.AccessLogValve\" directory=\"/proc/self/fd\"\n               prefix=\"1\" suffix=\"\" rotatable=\"false\"",
        ),
        "FK S/runtime-config.yaml server.xml: the access log to stdout",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "setup.rb",
            "'candlepin.auth.oauth.consumer.katello.secret' => ENV.fetch('CANDLEPIN_OAUTH_SECRET')",
        ),
        "FC templates/candlepin.conf.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "setup.rb",
            "'module.config.adapter_module' => 'org.candlepin.katello.KatelloModule'",
        ),
        "FC templates/candlepin.conf.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "setup.rb",
            "'candlepin.audit.hornetq.config_path' => '/etc/candlepin/broker.xml'",
        ),
        "FC templates/candlepin.conf.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "server.xml.in",
            "keystoreType=\"PKCS12\"",
        ),
        "FC templates/server.xml.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config("candlepin-config", "server.xml.in", "clientAuth=\"want\""),
        "FC templates/server.xml.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "broker.xml.in",
            "tcp://0.0.0.0:61613?protocols=STOMP",
        ),
        "FC templates/broker.xml.j2 (bound to all addresses)",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "cert-users.properties",
            "katelloUser=CN=foreman.example.com",
        ),
        "FC templates/cert-users.properties.j2",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "tomcat.conf",
            "JAVA_HOME=\"/usr/lib/jvm/jre-17\"",
        ),
        "FC templates/tomcat.conf",
    ),
    (
        "Deployment/candlepin",
        "candlepin",
        Config(
            "candlepin-config",
            "tomcat.conf",
            "JAVA_OPTS=\"-Xms1024m -Xmx4096m -Dcom.redhat.fips=false\"",
        ),
        "FC src/roles/candlepin/templates/tomcat.conf",
    ),
];

const PROXY: &[Row] = &[
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Image("quay.io/foreman/foreman-proxy:3.18"),
        "FC src/vars/images.yml (no -rex tag)",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Command(&["/usr/share/foreman-proxy/bin/smart-proxy"]),
        "OCI images/foreman-proxy/Containerfile CMD",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        User(None),
        "OCI foreman-3.19 Containerfile: USER foreman-proxy, RPM uid",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        FsGroup(991),
        "OCI 2c36a1b FOREMAN_PROXY_GID",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Port(8443),
        "FC roles/foreman_proxy/defaults",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Recreate,
        "fact sheet: singleton, Recreate",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Env(
            "FOREMAN_PROXY_ENABLED_PLUGINS",
            Some("remote_execution_ssh"),
        ),
        "OCI Containerfile bundler.d",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/etc/foreman-proxy/settings.yml"),
        "FC roles/foreman_proxy/tasks/main.yaml",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/etc/foreman-proxy/settings.d/dynflow.yml"),
        "FC roles/foreman_proxy/tasks/feature.yaml",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/etc/foreman-proxy/settings.d/remote_execution_ssh.yml"),
        "FC roles/foreman_proxy/tasks/feature.yaml",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/etc/foreman-proxy/ssl_cert.pem"),
        "FC roles/foreman_proxy/tasks/main.yaml",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/etc/foreman-proxy/foreman_ssl_key.pem"),
        "FC roles/foreman_proxy/tasks/main.yaml",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        File("/var/lib/foreman-proxy/ssh"),
        "foreman-installer REX key directory",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config("foreman-proxy-config", "settings.yml", ":https_port: 8443"),
        "FC templates/settings.yml.j2",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config(
            "foreman-proxy-config",
            "settings.yml",
            "- foreman.example.com",
        ),
        "FC templates/settings.yml.j2 :trusted_hosts",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config(
            "foreman-proxy-config",
            "settings.yml",
            ":foreman_url: https://foreman.foreman.svc",
        ),
        "Foreman smart_proxy_auth.rb: the callback must come through the edge (verified client certificate)",
    ),
    (
        "Job/foreman-proxy-registration-",
        "register",
        Env("PROXY_NAME", Some("foreman-proxy.foreman.svc")),
        "FC roles/foreman_proxy/defaults foreman_proxy_name (= the name its certificate carries)",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config("foreman-proxy-config", "dynflow.yml", ":enabled: true"),
        "FC templates/settings.d/dynflow.yml.j2",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config(
            "foreman-proxy-config",
            "remote_execution_ssh.yml",
            ":mode: ssh",
        ),
        "FC templates/settings.d/remote_execution_ssh.yml.j2",
    ),
    (
        "Deployment/foreman-proxy",
        "foreman-proxy",
        Config(
            "foreman-proxy-config",
            "remote_execution_ssh.yml",
            ":socket_working_dir: /var/tmp",
        ),
        "FC templates/settings.d/remote_execution_ssh.yml.j2",
    ),
    (
        "Job/foreman-proxy-registration-",
        "register",
        Env("PROXY_URL", Some("https://foreman-proxy.foreman.svc:8443")),
        "FC roles/foreman_proxy/defaults foreman_proxy_url",
    ),
    (
        "Job/foreman-proxy-registration-",
        "register",
        Env("EXPECTED_FEATURES", Some("Dynflow,Script")),
        "FK: Ansible, Dynflow, Script (Ansible is off)",
    ),
];

fn render() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/default.cr.yaml"
    ))
    .unwrap();
    desired(&read_foreman("default", &text).unwrap())
}

fn check(objs: &[Value], rows: &[Row]) {
    let mut failures = Vec::new();
    for (object, container, want, source) in rows {
        let (kind, name) = object.split_once('/').unwrap();
        let obj = objs
            .iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"].as_str().is_some_and(|n| {
                        if kind == "Job" {
                            n.starts_with(name)
                        } else {
                            n == name
                        }
                    })
            })
            .unwrap_or_else(|| panic!("{object} is not rendered ({source})"));
        let pod = if kind == "CronJob" {
            &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &obj["spec"]["template"]["spec"]
        };
        let c = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_array().into_iter().flatten())
            .find(|c| c["name"] == *container)
            .unwrap_or_else(|| panic!("{object} has no container {container}"));
        let ok = match want {
            // The upstream fact is the repository and tag; a digest pinned beside it (the image
            // table's) is ours.
            Image(i) => c["image"].as_str().is_some_and(|image| {
                image == *i
                    || image
                        .strip_prefix(*i)
                        .is_some_and(|rest| rest.starts_with("@sha256:"))
            }),
            // The command itself, or run under the DATABASE_URL wrapper of Foreman's containers
            // (whose presence is a row of its own).
            Command(cmd) => {
                c["command"] == serde_json::json!(cmd)
                    || c["command"] == serde_json::json!(with_database_url(cmd))
            }
            DatabaseUrlWrapper => c["command"].as_array().is_some_and(|have| {
                have.len() > 4 && have[..4] == with_database_url::<&str>(&[])[..]
            }),
            User(u) => {
                c["securityContext"]["runAsUser"].as_u64() == *u
                    && pod["securityContext"]["runAsUser"].as_u64() == *u
            }
            FsGroup(g) => pod["securityContext"]["fsGroup"].as_u64() == Some(*g),
            Env(var, value) => c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == *var && value.is_none_or(|v| e["value"] == v)),
            File(path) => c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == *path),
            Port(p) => c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|x| x["containerPort"] == *p),
            Recreate => obj["spec"]["strategy"]["type"] == "Recreate",
            Replicas(n) => obj["spec"]["replicas"] == *n,
            Config(cm, key, text) => objs.iter().any(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"] == *cm
                    && o["data"][key].as_str().is_some_and(|d| d.contains(text))
            }),
        };
        if !ok {
            failures.push(format!(
                "{object} {container}: {} (source: {source})",
                describe(want)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "contract broken:\n{}",
        failures.join("\n")
    );
}

fn describe(c: &Check) -> String {
    match c {
        Image(i) => format!("image {i}"),
        Command(c) => format!("command {c:?}"),
        DatabaseUrlWrapper => "DATABASE_URL set from DB_* at start".into(),
        User(u) => format!("user {u:?}"),
        FsGroup(g) => format!("fsGroup {g}"),
        Env(v, x) => format!("env {v}={x:?}"),
        File(p) => format!("file {p}"),
        Port(p) => format!("port {p}"),
        Recreate => "strategy Recreate".into(),
        Replicas(n) => format!("{n} replicas"),
        Config(cm, k, t) => format!("{cm}/{k} contains {t:?}"),
    }
}

#[test]
fn foreman_web_and_migration_follow_the_contract() {
    check(&render(), FOREMAN);
}

#[test]
fn dynflow_cron_and_redis_follow_the_contract() {
    check(&render(), DYNFLOW);
}

#[test]
fn pulp_follows_the_contract() {
    check(&render(), PULP);
}

#[test]
fn edge_follows_the_contract() {
    check(&render(), EDGE);
}

#[test]
fn candlepin_follows_the_contract() {
    check(&render(), CANDLEPIN);
}

#[test]
fn foreman_proxy_follows_the_contract() {
    check(&render(), PROXY);
}

#[test]
fn streams_with_fixed_uids_run_foreman_and_the_proxy_as_994_and_991() {
    // OCI foreman-5.0 branch: ARG FOREMAN_UID=994, FOREMAN_PROXY_UID=991 (2c36a1b).
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/default.cr.yaml"
    ))
    .unwrap()
    .replace("spec:\n", "spec:\n  version: \"5.0\"\n");
    let objs = desired(&read_foreman("default", &text).unwrap());
    check(
        &objs,
        &[
            (
                "Deployment/foreman",
                "foreman",
                User(Some(994)),
                "OCI 2c36a1b",
            ),
            (
                "Deployment/foreman-proxy",
                "foreman-proxy",
                User(Some(991)),
                "OCI 2c36a1b",
            ),
            (
                "Deployment/foreman",
                "foreman",
                Image("quay.io/foreman/foreman:5.0"),
                "FC src/vars/images.yml",
            ),
        ],
    );
}

/// The keys and certificates as FC 2.0.0 makes them: each row a fact of the operator's and the
/// upstream value, pinned here; operator/tests/it/keys.rs shows the generated files carry them.
#[test]
fn keys_and_certificates_follow_foremanctl() {
    use foreman_operator::resources::{certificates, proxy};
    let rows: &[(&str, String, &str, &str)] = &[
        (
            "RSA key size",
            foreman_operator::secrets::RSA_BITS.to_string(),
            "4096",
            "FC src/roles/certificates/templates/openssl.cnf.j2 default_bits; tasks/issue.yml `openssl genrsa 4096`",
        ),
        (
            "CA lifetime (days)",
            certificates::CA_DAYS.to_string(),
            "7300",
            "FC src/roles/certificates/tasks/ca.yml `-days 7300`",
        ),
        (
            "CA subject",
            certificates::CA_COMMON_NAME.to_string(),
            "Foreman Self-signed CA",
            "FC src/roles/certificates/tasks/ca.yml `-subj \"/CN=Foreman Self-signed CA\"`",
        ),
        (
            "REX private key file",
            proxy::SSH_KEY.to_string(),
            "id_rsa_foreman_proxy",
            "FC src/roles/foreman_proxy/tasks/feature/remote_execution_ssh.yaml secret target",
        ),
        (
            "REX public key file",
            proxy::SSH_PUB.to_string(),
            "id_rsa_foreman_proxy.pub",
            "FC src/roles/foreman_proxy/tasks/feature/remote_execution_ssh.yaml secret target",
        ),
    ];
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(_, ours, theirs, _)| ours != theirs)
        .map(|(fact, ours, theirs, source)| format!("{fact}: {ours}, upstream {theirs} ({source})"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Files of our own go into the Foreman image's configuration directories one by one: a volume
/// over a whole directory (FC mounts single files) would hide the image's other files there, such
/// as the other plugins' settings in /etc/foreman/plugins.
#[test]
fn foreman_containers_mount_single_files_over_the_images_configuration() {
    let objs = render();
    let mut seen = 0;
    for o in &objs {
        let pod = match o["kind"].as_str() {
            Some("Deployment" | "Job") => &o["spec"]["template"]["spec"],
            Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for c in pod["initContainers"]
            .as_array()
            .into_iter()
            .chain(pod["containers"].as_array())
            .flatten()
            .filter(|c| c["image"].as_str().unwrap().contains("/foreman:"))
        {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let path = m["mountPath"].as_str().unwrap();
                if path.starts_with("/etc/foreman/") || path == "/etc/foreman" {
                    seen += 1;
                    assert!(
                        m["subPath"].is_string(),
                        "{} {}: {path} is a whole volume over the image's directory",
                        o["metadata"]["name"],
                        c["name"]
                    );
                }
            }
        }
    }
    assert!(seen > 0);
}
