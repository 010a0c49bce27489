//! Foreman itself: settings, the migration Job, the web Deployment, the Dynflow orchestrator and
//! workers, the cron CronJobs, and Redis. Also the one builder every pod of the Foreman image
//! uses (the registration Jobs in [`super::pulp`] and [`super::proxy`] too), so each of them
//! gets its files, variables and ordering in one place.

use super::certificates::{self, CA_CRT, CLIENT_CRT, CLIENT_KEY, TLS_SECRET};
use super::{
    claim_volume, config_map, config_volume, db_env, deployment, dir_mount, empty_volume, env,
    file_mount, image, job, job_template, labels, metadata, secret_env, secret_volume, service,
    strings, svc, yaml, Check, Component, Container, Object, Pod, Probes, RunAs, Stream,
    GENERATED_SECRET, REDIS_PORT,
};
use crate::crd::Foreman;
use crate::profile::{self, Profile, Sized};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, Service,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

pub const FOREMAN_PORT: u16 = 3000;
/// The Service in front of the web pods. Not `foreman`: that name (the one the server
/// certificate carries) is the edge's, see [`super::edge`].
pub const WEB_SERVICE: &str = "foreman-web";
pub const CONFIG_MAP: &str = "foreman-config";
/// The claim web and Dynflow share `/usr/share/foreman/tmp` through.
pub const TMP_CLAIM: &str = "foreman-tmp";
/// The Deployment of the Dynflow workers `spec.dynflow_workers` counts.
pub const DYNFLOW_WORKER: &str = "dynflow-worker";
/// FC src/roles/foreman/defaults/main.yaml: foreman_database_pool 9, puma threads 5/5; the pool
/// must hold every puma thread and every sidekiq thread (concurrency 5) of one process.
pub const DATABASE_POOL: u32 = 9;
pub use crate::profile::PUMA_THREADS;
/// FC templates/dynflow-worker-hosts-queue.yml.
pub const HOSTS_QUEUE_CONCURRENCY: u32 = 5;
/// Seeded organization and location (foreman-installer's defaults; unconfirmed here).
pub const SEED_ORGANIZATION: &str = "Default Organization";
pub const SEED_LOCATION: &str = "Default Location";

pub fn objects(fm: &Foreman) -> Vec<Object> {
    let mut objs = vec![config(fm).into(), tmp_claim(fm).into()];
    objs.extend(redis(fm));
    objs.push(migrate_job(fm).into());
    objs.push(web_service(fm).into());
    objs.push(web(fm).into());
    objs.extend(dynflow(fm).into_iter().map(Object::from));
    objs.extend(cron(fm).into_iter().map(Object::from));
    objs
}

/// The Foreman image's user. OCI images/foreman/Containerfile: `USER foreman`; the uid is fixed
/// to 994 only from OCI 2c36a1b (foreman-5.0 branch); the foreman-3.19 branch (and 3.18) leave
/// it to the RPM, so older streams run as the image's named user without `runAsNonRoot` (which
/// the kubelet cannot check for a named user). fsGroup 994 (OCI FOREMAN_GID) is added as a
/// supplementary group either way, so the 0440 Secret files are readable.
pub fn run_as(fm: &Foreman) -> RunAs {
    RunAs {
        user: Stream::of(fm).fixed_uids.then_some(994),
        fs_group: 994,
        image_root: false,
    }
}

/// `FOREMAN_ENABLED_PLUGINS` (OCI Containerfile: bundler.d gates each plugin on it; unset would
/// load all, so core sets it empty). Katello needs foreman-tasks and foreman_remote_execution.
pub fn enabled_plugins(fm: &Foreman) -> String {
    let mut p = Vec::new();
    if fm.spec.plugins.katello || fm.spec.plugins.remote_execution {
        p.extend(["foreman-tasks", "foreman_remote_execution"]);
    }
    if fm.spec.plugins.katello {
        p.push("katello");
    }
    p.join(" ")
}

/// What a pod of the Foreman image does besides its main container.
#[derive(Clone, Copy, Default)]
pub struct Needs {
    /// Mount the shared `/usr/share/foreman/tmp` (web and Dynflow: FK RC, Katello hands uploads
    /// to Dynflow by path).
    pub shared_tmp: bool,
    /// Wait until the migration Job has migrated the database.
    pub migrated: bool,
    /// Wait until Candlepin answers (seeding an organization with Katello creates its owner).
    pub candlepin: bool,
    /// Add the seed variables.
    pub seed: bool,
}

/// Every variable a Foreman container needs (FK S/foreman.yaml, FC roles/foreman).
pub fn foreman_env(fm: &Foreman, seed: bool) -> Vec<EnvVar> {
    // DATABASE_URL is made from these when the container starts (`with_database_url`).
    let mut e = db_env("DB_", &fm.spec.database.secret);
    e.extend([
        env("RAILS_ENV", "production"),
        env("FOREMAN_BIND", "0.0.0.0"),
        env("RAILS_SERVE_STATIC_FILES", "true"),
        env("FOREMAN_ENABLED_PLUGINS", enabled_plugins(fm)),
        // OCI cabe662: images up to 2026-06 bake in an RPM-made encryption key; always set it.
        secret_env("ENCRYPTION_KEY", GENERATED_SECRET, "encryption-key"),
        // FK H: one SECRET_KEY_BASE shared by every pod, so sessions survive any of them.
        secret_env("SECRET_KEY_BASE", GENERATED_SECRET, "secret-key-base"),
        // FC roles/foreman/tasks/main.yaml: Dynflow on Redis db 6.
        env(
            "DYNFLOW_REDIS_URL",
            format!("redis://{}:{REDIS_PORT}/6", svc(fm, "redis")),
        ),
        env("REDIS_PROVIDER", "DYNFLOW_REDIS_URL"),
    ]);
    if seed {
        // FC: SEED_ADMIN_USER/PASSWORD for db:seed. SEED_ORGANIZATION/SEED_LOCATION name the
        // first organization and location (puppet-foreman passes them to db:seed; not found in
        // the sources read for this render: unconfirmed).
        e.extend([
            env("SEED_ADMIN_USER", "admin"),
            secret_env("SEED_ADMIN_PASSWORD", GENERATED_SECRET, "admin-password"),
            env("SEED_ORGANIZATION", SEED_ORGANIZATION),
            env("SEED_LOCATION", SEED_LOCATION),
        ]);
    }
    e
}

/// FC sets DATABASE_URL=postgresql://user:password@host:port/name?pool=… (the pool holds every
/// puma and sidekiq thread). The user and password come from the database Secret and may hold
/// `@:/%?#`, which a URL must carry percent-encoded, and the kubelet's `$(VAR)` substitution
/// encodes nothing: so the container starts under this Ruby (the image's interpreter), which
/// encodes them from `DB_*`, sets DATABASE_URL and execs the command itself (no shell). Rails
/// (ActiveRecord's ConnectionUrlResolver) decodes them again.
const DATABASE_URL_RUBY: &str = r#"enc = ->(k) { ENV.fetch(k).b.gsub(/[^A-Za-z0-9._~-]/n) { |c| format('%%%02X', c.ord) } }
host = ENV.fetch('DB_HOST'); host = "[#{host}]" if host.include?(':')
ENV['DATABASE_URL'] = "postgresql://#{enc['DB_USER']}:#{enc['DB_PASSWORD']}@#{host}:#{Integer(ENV.fetch('DB_PORT'))}/#{enc['DB_NAME']}?pool=POOL"
exec([ARGV[0], ARGV[0]], *ARGV.drop(1))"#;

/// `command` started with DATABASE_URL set from the `DB_*` variables ([`DATABASE_URL_RUBY`]).
pub fn with_database_url<S: AsRef<str>>(command: &[S]) -> Vec<String> {
    let script = DATABASE_URL_RUBY.replace("POOL", &DATABASE_POOL.to_string());
    ["ruby".to_string(), "-e".into(), script, "--".into()]
        .into_iter()
        .chain(command.iter().map(|c| c.as_ref().to_string()))
        .collect()
}

/// Where the katello-settings init container writes katello.yaml (an emptyDir); the other
/// containers mount that one file at /etc/foreman/plugins/katello.yaml.
const PLUGINS_SCRATCH: &str = "/run/foreman-box/plugins";

/// A finished pod around `main` (a container of the Foreman image): its files, the init
/// containers that write katello.yaml and wait for what it needs, and its volumes.
pub fn foreman_pod(
    fm: &Foreman,
    mut main: Container,
    needs: Needs,
    restart: &'static str,
) -> PodSpec {
    let img = image(fm, Component::Foreman);
    let katello = fm.spec.plugins.katello;
    // FC roles/foreman/tasks/main.yaml mounts these files at these paths in every container.
    let mut mounts = vec![
        file_mount("config", "/etc/foreman/settings.yaml", "settings.yaml"),
        file_mount(
            "tls",
            "/etc/foreman/katello-default-ca.crt",
            "katello-default-ca.crt",
        ),
        file_mount("tls", "/etc/foreman/client_cert.pem", "client_cert.pem"),
        file_mount("tls", "/etc/foreman/client_key.pem", "client_key.pem"),
    ];
    let mut volumes = vec![
        config_volume("config", CONFIG_MAP),
        secret_volume(
            "tls",
            TLS_SECRET,
            &[
                (CA_CRT, "katello-default-ca.crt"),
                (CLIENT_CRT, "client_cert.pem"),
                (CLIENT_KEY, "client_key.pem"),
            ],
        ),
    ];
    let mut init = Vec::new();
    if katello {
        // katello.yaml holds Candlepin's OAuth secret, so it cannot live in the ConfigMap: the
        // template is there and this container adds the secret with Ruby's YAML serializer.
        let mut c = Container::new(
            "katello-settings",
            img.clone(),
            &[
                "ruby",
                "/etc/foreman-box/katello-settings.rb",
                "/etc/foreman-box/katello.yaml",
                &format!("{PLUGINS_SCRATCH}/katello.yaml"),
            ],
        );
        c.env = vec![secret_env(
            "CANDLEPIN_OAUTH_SECRET",
            GENERATED_SECRET,
            "candlepin-oauth-secret",
        )];
        c.mounts = vec![
            dir_mount("config", "/etc/foreman-box", true),
            dir_mount("plugins", PLUGINS_SCRATCH, false),
        ];
        init.push(c);
        // Only the one file: the image's own /etc/foreman/plugins (the other plugins' settings)
        // stays visible.
        mounts.push(file_mount(
            "plugins",
            "/etc/foreman/plugins/katello.yaml",
            "katello.yaml",
        ));
        volumes.push(empty_volume("plugins", true));
    }
    if needs.shared_tmp {
        mounts.push(dir_mount("tmp", "/usr/share/foreman/tmp", false));
        volumes.push(claim_volume("tmp", TMP_CLAIM));
    }
    if needs.candlepin {
        let mut c = Container::new(
            "wait-for-candlepin",
            img.clone(),
            &[
                "/bin/sh",
                "-c",
                &format!(
                    "until curl -fsS -o /dev/null --max-time 10 --cacert /etc/foreman/katello-default-ca.crt https://{}:{}/candlepin/status; do echo 'waiting for Candlepin'; sleep 10; done",
                    svc(fm, "candlepin"),
                    super::candlepin::PORT
                ),
            ],
        );
        c.mounts = mounts.clone();
        init.push(c);
    }
    if needs.migrated {
        // FK: Deployments gated by db:abort_if_pending_migrations. A loop, so the pod waits in
        // Init instead of crash-looping while the migration Job runs.
        let mut c = Container::new(
            "wait-for-migrations",
            img.clone(),
            &[
                "/bin/sh",
                "-c",
                "until /usr/share/foreman/bin/rails db:abort_if_pending_migrations; do echo 'waiting for the migration Job'; sleep 15; done",
            ],
        );
        c.env = foreman_env(fm, false);
        c.command = with_database_url(&c.command);
        c.mounts = mounts.clone();
        init.push(c);
    }
    main.command = with_database_url(&main.command);
    main.env = foreman_env(fm, needs.seed)
        .into_iter()
        .chain(main.env)
        .collect();
    main.mounts = mounts.into_iter().chain(main.mounts).collect();
    Pod {
        run_as: run_as(fm),
        init,
        containers: vec![main],
        volumes,
        restart,
        grace_seconds: None,
    }
    .render()
}

fn config(fm: &Foreman) -> ConfigMap {
    let server = certificates::server_name(fm);
    // FC src/roles/foreman/templates/settings.yaml.j2.
    let settings = json!({
        ":fqdn": server,
        ":foreman_url": format!("https://{server}"),
        ":ssl_certificate": "/etc/foreman/client_cert.pem",
        ":ssl_ca_file": "/etc/foreman/katello-default-ca.crt",
        ":ssl_priv_key": "/etc/foreman/client_key.pem",
        ":require_ssl": true,
        ":rails_cache_store": {
            ":type": "redis",
            ":urls": [format!("redis://{}:{REDIS_PORT}/4", svc(fm, "redis"))],
            ":options": {":compress": true, ":namespace": "foreman"},
        },
        // Foreman (config/application.rb) believes X-Forwarded-For only from these: the edge's
        // pod address (FC 2.0.0 sets none: its Apache is on localhost, Foreman's default).
        ":trusted_proxies": ["127.0.0.1/8", "::1", super::POD_CIDR],
        // What the edge passes on (FC settings.yaml.j2 "Configure reverse proxy headers"):
        // Rack turns the edge's `SSL-CLIENT-S-DN` header into HTTP_SSL_CLIENT_S_DN.
        ":ssl_client_dn_env": "HTTP_SSL_CLIENT_S_DN",
        ":ssl_client_verify_env": "HTTP_SSL_CLIENT_VERIFY",
        ":ssl_client_cert_env": "HTTP_SSL_CLIENT_CERT",
        ":delivery_method": "smtp",
    });
    let mut data = strings([
        ("settings.yaml", yaml(&settings)),
        // FC templates/dynflow-worker-hosts-queue.yml; orchestrator.yml and worker.yml are the
        // ones the foreman-dynflow-sidekiq RPM ships in the image (FC mounts only this one).
        (
            "worker-hosts-queue.yml",
            yaml(&json!({":concurrency": HOSTS_QUEUE_CONCURRENCY, ":queues": ["hosts_queue"]})),
        ),
    ]);
    if fm.spec.plugins.katello {
        let ca = "/etc/foreman/katello-default-ca.crt";
        // FC src/roles/foreman/templates/katello.yaml.j2, with the Services' names for localhost.
        let katello = json!({":katello": {
            ":rest_client_timeout": 3600,
            ":candlepin": {
                ":url": format!("https://{}:{}/candlepin", svc(fm, "candlepin"), super::candlepin::PORT),
                ":oauth_key": "katello",
                ":oauth_secret": "",
                ":ca_cert_file": ca,
            },
            ":candlepin_events": {
                ":broker_host": svc(fm, "candlepin"),
                ":ssl_cert_file": "/etc/foreman/client_cert.pem",
                ":ssl_key_file": "/etc/foreman/client_key.pem",
                ":ssl_ca_file": ca,
            },
            ":pulp": {":ca_cert_file": ca},
        }});
        data.insert("katello.yaml".into(), yaml(&katello));
        data.insert("katello-settings.rb".into(), KATELLO_SETTINGS_RB.into());
    }
    config_map(fm, CONFIG_MAP, "foreman", data)
}

/// Loads the template, turns `:key` strings into Ruby symbols (as Foreman's settings use them),
/// adds the OAuth secret from the environment and writes the file with Ruby's YAML serializer.
const KATELLO_SETTINGS_RB: &str = r#"require 'yaml'
sym = lambda do |v|
  case v
  when Hash then v.to_h { |k, x| [k.is_a?(String) && k.start_with?(':') ? k[1..].to_sym : k, sym.call(x)] }
  else v
  end
end
raw = YAML.respond_to?(:unsafe_load_file) ? YAML.unsafe_load_file(ARGV[0]) : YAML.load_file(ARGV[0])
settings = sym.call(raw)
settings[:katello][:candlepin][:oauth_secret] = ENV.fetch('CANDLEPIN_OAUTH_SECRET')
File.write(ARGV[1], settings.to_yaml, perm: 0o600)
"#;

/// web and Dynflow share `/usr/share/foreman/tmp` (FK RC: an RWX claim). foreman-box runs one
/// k3s node whose local-path provisioner offers ReadWriteOnce only; ReadWriteOnce is per node,
/// so every pod on the node mounts it. An emptyDir could not be shared across pods at all.
fn tmp_claim(fm: &Foreman) -> PersistentVolumeClaim {
    let requests = [("storage".to_string(), Quantity("10Gi".into()))];
    PersistentVolumeClaim {
        metadata: metadata(fm, TMP_CLAIM, "foreman"),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(requests.into_iter().collect()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn migrate_job(fm: &Foreman) -> Job {
    // FC roles/foreman/tasks/main.yaml "Migrate and seed the Foreman database".
    let c = Container::new(
        "migrate",
        image(fm, Component::Foreman),
        &["bash", "-c", "bin/rails db:migrate && bin/rails db:seed"],
    );
    let needs = Needs {
        candlepin: fm.spec.plugins.katello,
        seed: true,
        ..Needs::default()
    };
    job(
        fm,
        "foreman-migrate",
        "foreman-migrate",
        6,
        foreman_pod(fm, c, needs, "OnFailure"),
    )
}

fn ping_probe(fm: &Foreman) -> Probes {
    // FK H: readiness is /api/v2/ping with Host=fqdn and X-Forwarded-Proto=https; it answers
    // 200 when something is down, so the JSON is read: the database active, every cache server
    // ok and, with Katello, Katello's own status ok (it checks Candlepin and Pulp).
    let katello = if fm.spec.plugins.katello {
        " && r['katello']['status'] == 'ok'"
    } else {
        ""
    };
    let script = format!(
        "curl -fsS --max-time 8 -H 'Host: {}' -H 'X-Forwarded-Proto: https' http://127.0.0.1:{FOREMAN_PORT}/api/v2/ping | ruby -rjson -e \"r = JSON.parse(STDIN.read)['results']; f = r['foreman']; exit(f['database']['active'] && Array(f.dig('cache', 'servers')).all? {{ |s| s['status'] == 'ok' }}{katello} ? 0 : 1)\"",
        certificates::server_name(fm)
    );
    Probes {
        startup: None,
        readiness: Some(Check::exec(&["/bin/sh", "-c", &script]).every(
            10,
            None,
            Some(10),
            Some(3),
        )),
        liveness: Some(Check::tcp(FOREMAN_PORT).every(20, Some(90), Some(5), Some(6))),
    }
}

/// [`WEB_SERVICE`], selecting the web Deployment's pods (named `foreman`).
fn web_service(fm: &Foreman) -> Service {
    let mut s = service(fm, "foreman", &[("http", FOREMAN_PORT)]);
    s.metadata = metadata(fm, WEB_SERVICE, "foreman");
    s
}

fn web(fm: &Foreman) -> Deployment {
    // OCI Containerfile CMD / FK S/foreman.yaml, without the CMD's migration.
    let mut c = Container::new(
        "foreman",
        image(fm, Component::Foreman),
        &[
            "/usr/share/foreman/bin/rails",
            "server",
            "--environment",
            "production",
            "--pid",
            "/tmp/rails.pid",
        ],
    );
    // FC roles/foreman/defaults: foreman_puma_workers from the host, here the tuning
    // profile's host (crate::sizing).
    let profile = Profile::of(fm.spec.tuning);
    c.env = vec![
        env("FOREMAN_PUMA_WORKERS", profile.puma_workers().to_string()),
        env("FOREMAN_PUMA_THREADS_MIN", PUMA_THREADS.to_string()),
        env("FOREMAN_PUMA_THREADS_MAX", PUMA_THREADS.to_string()),
    ];
    c.ports = vec![("http", FOREMAN_PORT)];
    c.probes = ping_probe(fm);
    c.resources = Some(profile::resources(&fm.spec, Sized::Web));
    let needs = Needs {
        shared_tmp: true,
        migrated: true,
        ..Needs::default()
    };
    deployment(fm, "foreman", 1, false, foreman_pod(fm, c, needs, "Always"))
}

fn dynflow(fm: &Foreman) -> Vec<Deployment> {
    // FC roles/foreman: dynflow-sidekiq@{orchestrator,worker,worker-hosts-queue}.
    [
        (
            "dynflow-orchestrator",
            "orchestrator",
            1,
            Sized::DynflowOrchestrator,
        ),
        (
            DYNFLOW_WORKER,
            "worker",
            fm.spec.dynflow_workers,
            Sized::DynflowWorker,
        ),
        (
            "dynflow-worker-hosts-queue",
            "worker-hosts-queue",
            1,
            Sized::DynflowHostsQueue,
        ),
    ]
    .into_iter()
    .map(|(name, cfg, replicas, sized)| {
        let path = format!("/etc/foreman/dynflow/{cfg}.yml");
        let mut c = Container::new(
            "dynflow",
            image(fm, Component::Foreman),
            &[
                "/usr/libexec/foreman/sidekiq-selinux",
                "-e",
                "production",
                "-r",
                "./extras/dynflow-sidekiq.rb",
                "-C",
                &path,
            ],
        );
        if cfg == "worker-hosts-queue" {
            c.mounts = vec![file_mount("config", &path, "worker-hosts-queue.yml")];
        }
        c.resources = Some(profile::resources(&fm.spec, sized));
        let needs = Needs {
            shared_tmp: true,
            migrated: true,
            ..Needs::default()
        };
        // FK S/dynflow.yaml: the orchestrator holds a Redis lock, so never two at once.
        deployment(
            fm,
            name,
            replicas,
            cfg == "orchestrator",
            foreman_pod(fm, c, needs, "Always"),
        )
    })
    .collect()
}

fn cron(fm: &Foreman) -> Vec<CronJob> {
    // FC defaults foreman_recurring_tasks: `foreman-rake cron:<period>` on systemd's hourly,
    // daily, weekly (Monday) and monthly calendars; FK runs them as CronJobs with Forbid.
    [
        ("hourly", "0 * * * *"),
        ("daily", "0 0 * * *"),
        ("weekly", "0 0 * * 1"),
        ("monthly", "0 0 1 * *"),
    ]
    .into_iter()
    .map(|(period, schedule)| {
        let c = Container::new(
            "cron",
            image(fm, Component::Foreman),
            &["foreman-rake", &format!("cron:{period}")],
        );
        let needs = Needs {
            migrated: true,
            ..Needs::default()
        };
        let pod = foreman_pod(fm, c, needs, "OnFailure");
        CronJob {
            metadata: metadata(fm, &format!("foreman-cron-{period}"), "foreman-cron"),
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Forbid".into()),
                job_template: job_template(labels(fm, "foreman-cron"), 2, pod),
                ..CronJobSpec::default()
            }),
            status: None,
        }
    })
    .collect()
}

/// FC src/roles/redis: quay.io/sclorg/redis-6-c9s, `run-redis`, data owned by 1001:1001 (the
/// sclorg image's user). Cache on db 4, Dynflow on 6, Pulp on 8.
fn redis(fm: &Foreman) -> Vec<Object> {
    let mut c = Container::new("redis", image(fm, Component::Redis), &["run-redis"]);
    c.ports = vec![("redis", REDIS_PORT)];
    c.probes.readiness = Some(Check::tcp(REDIS_PORT).every(5, None, Some(2), None));
    // The sclorg image's data directory.
    c.mounts = vec![dir_mount("data", "/var/lib/redis/data", false)];
    c.resources = Some(profile::resources(&fm.spec, Sized::Redis));
    let pod = Pod {
        run_as: RunAs {
            user: Some(1001),
            fs_group: 1001,
            image_root: false,
        },
        init: vec![],
        containers: vec![c],
        volumes: vec![empty_volume("data", false)],
        restart: "Always",
        grace_seconds: None,
    };
    vec![
        service(fm, "redis", &[("redis", REDIS_PORT)]).into(),
        deployment(fm, "redis", 1, true, pod.render()).into(),
    ]
}
