//! The desired state: a pure function from a `Foreman` resource to the Kubernetes objects that
//! run it. No API calls, no clock, no randomness; secrets that must be random are generated once
//! by the controller into the Secret named by [`GENERATED_SECRET`] and only referenced here.

use crate::crd::Foreman;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Random values made once per resource: encryption key, admin password, OAuth credentials.
pub const GENERATED_SECRET: &str = "foreman-generated";
/// Keys of the generated Secret.
pub const GENERATED_KEYS: &[&str] = &[
    "encryption-key",
    "admin-password",
    "oauth-consumer-key",
    "oauth-consumer-secret",
];
/// Keys every database Secret must have.
pub const DB_KEYS: &[&str] = &["host", "port", "name", "user", "password"];
pub const HASH_ANNOTATION: &str = "app.theforeman.org/desired-hash";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "foreman-operator";

/// The kinds the operator creates, in apply order, with their API paths.
pub const KINDS: &[(&str, &str, &str)] = &[
    // (apiVersion, kind, plural)
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Service", "services"),
    ("apps/v1", "Deployment", "deployments"),
    ("batch/v1", "Job", "jobs"),
    ("batch/v1", "CronJob", "cronjobs"),
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
];

const FOREMAN_PORT: u16 = 3000;
const REDIS_PORT: u16 = 6379;
const CANDLEPIN_PORT: u16 = 23443;
const PULP_API_PORT: u16 = 24817;
const PULP_CONTENT_PORT: u16 = 24816;
const PROXY_PORT: u16 = 8443;

/// The image for a component: the override, else the Foreman version's tag.
fn image(fm: &Foreman, component: &str) -> String {
    let i = &fm.spec.images;
    let v = &fm.spec.version;
    let over = match component {
        "foreman" => &i.foreman,
        "foreman-proxy" => &i.foreman_proxy,
        "candlepin" => &i.candlepin,
        "pulp" => &i.pulp,
        "redis" => &i.redis,
        _ => &None,
    };
    over.clone().unwrap_or_else(|| match component {
        "redis" => "quay.io/sclorg/valkey-8-c10s:latest".to_string(),
        other => format!("quay.io/foreman/{other}:{v}"),
    })
}

fn labels(fm: &Foreman, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "foreman",
        INSTANCE_LABEL: fm.metadata.name.clone().unwrap_or_default(),
        MANAGED_BY_LABEL: MANAGED_BY,
    })
}

fn selector(fm: &Foreman, component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, INSTANCE_LABEL: fm.metadata.name.clone().unwrap_or_default()})
}

fn metadata(fm: &Foreman, name: &str, component: &str) -> Value {
    let mut m = json!({
        "name": name,
        "namespace": fm.metadata.namespace.clone().unwrap_or_default(),
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

/// Least privilege for every container these images allow.
fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn secret_env(var: &str, secret: &str, key: &str) -> Value {
    json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

fn env(var: &str, value: impl Into<String>) -> Value {
    json!({"name": var, "value": value.into()})
}

/// `{PREFIX}HOST`, `PORT`, `NAME`, `USER`, `PASSWORD` from a database Secret.
fn db_env(prefix: &str, secret: &str) -> Vec<Value> {
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

/// Database connection for Foreman: parts from its Secret, joined by Kubernetes' $(VAR) expansion.
fn foreman_db_env(fm: &Foreman) -> Vec<Value> {
    let mut e = db_env("DB_", &fm.spec.database.secret);
    e.push(env(
        "DATABASE_URL",
        "postgresql://$(DB_USER):$(DB_PASSWORD)@$(DB_HOST):$(DB_PORT)/$(DB_NAME)?pool=5",
    ));
    e
}

fn enabled_plugins(fm: &Foreman) -> String {
    let mut p = Vec::new();
    if fm.spec.plugins.katello {
        p.push("katello");
    }
    if fm.spec.plugins.remote_execution {
        p.push("foreman_remote_execution");
    }
    p.join(" ")
}

/// Everything a Foreman application container needs.
fn foreman_env(fm: &Foreman) -> Vec<Value> {
    let mut e = foreman_db_env(fm);
    e.extend([
        env("RAILS_ENV", "production"),
        env("FOREMAN_ENABLED_PLUGINS", enabled_plugins(fm)),
        secret_env("ENCRYPTION_KEY", GENERATED_SECRET, "encryption-key"),
        env("SEED_ADMIN_USER", "admin"),
        secret_env("SEED_ADMIN_PASSWORD", GENERATED_SECRET, "admin-password"),
        env("FOREMAN_CACHE_URL", format!("redis://redis:{REDIS_PORT}/4")),
        env("DYNFLOW_REDIS_URL", format!("redis://redis:{REDIS_PORT}/6")),
        env("REDIS_PROVIDER", "DYNFLOW_REDIS_URL"),
    ]);
    e
}

fn config_volume() -> (Value, Value) {
    (
        json!({"name": "foreman-config", "configMap": {"name": "foreman-config"}}),
        json!({"name": "foreman-config", "mountPath": "/etc/foreman/settings.yaml", "subPath": "settings.yaml", "readOnly": true}),
    )
}

fn container(name: &str, image: String, command: Value, env: Vec<Value>) -> Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": env,
        "securityContext": restricted(),
    })
}

fn pod_spec(containers: Vec<Value>, volumes: Vec<Value>, restart: &str) -> Value {
    json!({
        "restartPolicy": restart,
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": volumes,
    })
}

fn deployment(fm: &Foreman, name: &str, replicas: u32, pod: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(fm, name, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(fm, name)},
            "template": {"metadata": {"labels": labels(fm, name)}, "spec": pod},
        },
    })
}

fn service(fm: &Foreman, name: &str, ports: &[(&str, u16)]) -> Value {
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

/// A Job whose name carries a hash of what it runs: a new image or command is a new Job (a Job's
/// template cannot change), the same one is left alone once it has run.
fn job(fm: &Foreman, base: &str, component: &str, pod: Value) -> Value {
    let hash = short_hash(&pod);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(fm, &format!("{base}-{hash}"), component),
        "spec": {
            "backoffLimit": 6,
            "template": {"metadata": {"labels": labels(fm, component)}, "spec": pod},
        },
    })
}

fn short_hash(v: &Value) -> String {
    hex::encode(&Sha256::digest(v.to_string().as_bytes())[..5])
}

/// Every object for this resource, in apply order, each with its desired-hash annotation.
pub fn desired(fm: &Foreman) -> Vec<Value> {
    let mut objs = Vec::new();
    let spec = &fm.spec;
    let foreman_image = image(fm, "foreman");
    let (cfg_vol, cfg_mount) = config_volume();
    let hostname = spec.hostname.clone();

    let mut settings = String::from(
        ":unattended: true\n:require_ssl: false\n:rails_cache_store:\n  :type: redis\n",
    );
    if let Some(h) = &hostname {
        settings.push_str(&format!(":foreman_url: https://{h}\n"));
    }
    let dynflow_queues = if spec.plugins.remote_execution {
        "[default, remote_execution]"
    } else {
        "[default]"
    };
    objs.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(fm, "foreman-config", "foreman"),
        "data": {
            "settings.yaml": settings,
            "orchestrator.yml": ":concurrency: 1\n:queues:\n  - dynflow_orchestrator\n",
            "worker.yml": format!(":concurrency: 5\n:queues: {dynflow_queues}\n"),
        },
    }));

    // redis (valkey): cache db 4, dynflow db 6, pulp db 8.
    objs.push(service(fm, "redis", &[("redis", REDIS_PORT)]));
    objs.push(deployment(
        fm,
        "redis",
        1,
        pod_spec(
            vec![{
                let mut c = container("redis", image(fm, "redis"), json!(["run-valkey"]), vec![]);
                c["ports"] = json!([{"containerPort": REDIS_PORT, "name": "redis"}]);
                c["readinessProbe"] =
                    json!({"tcpSocket": {"port": REDIS_PORT}, "periodSeconds": 5});
                c["volumeMounts"] = json!([{"name": "data", "mountPath": "/var/lib/valkey/data"}]);
                c
            }],
            vec![json!({"name": "data", "emptyDir": {}})],
            "Always",
        ),
    ));

    // Foreman core: migrations, the web app, dynflow, cron.
    let migrate = pod_spec(
        vec![{
            let mut c = container(
                "migrate",
                foreman_image.clone(),
                json!(["/bin/sh", "-c", "bin/rails db:migrate && bin/rails db:seed"]),
                foreman_env(fm),
            );
            c["volumeMounts"] = json!([cfg_mount.clone()]);
            c
        }],
        vec![cfg_vol.clone()],
        "OnFailure",
    );
    objs.push(job(fm, "foreman-migrate", "foreman-migrate", migrate));
    objs.push(service(fm, "foreman", &[("http", FOREMAN_PORT)]));
    objs.push(deployment(fm, "foreman", 1, pod_spec(
        vec![{
            let mut c = container("foreman", foreman_image.clone(), json!(["bin/rails", "server", "--binding", "0.0.0.0", "--port", FOREMAN_PORT.to_string()]), foreman_env(fm));
            c["ports"] = json!([{"containerPort": FOREMAN_PORT, "name": "http"}]);
            c["readinessProbe"] = json!({"httpGet": {"path": "/api/v2/ping", "port": FOREMAN_PORT}, "periodSeconds": 10, "failureThreshold": 3});
            c["volumeMounts"] = json!([cfg_mount.clone()]);
            c
        }],
        vec![cfg_vol.clone()],
        "Always",
    )));
    for (name, role, replicas) in [
        ("dynflow-orchestrator", "orchestrator", 1),
        ("dynflow-worker", "worker", spec.dynflow_workers),
    ] {
        let mut mounts = vec![cfg_mount.clone()];
        mounts.push(json!({"name": "foreman-config", "mountPath": format!("/etc/foreman/dynflow/{role}.yml"), "subPath": format!("{role}.yml"), "readOnly": true}));
        objs.push(deployment(
            fm,
            name,
            replicas,
            pod_spec(
                vec![{
                    let mut c = container(
                        "dynflow",
                        foreman_image.clone(),
                        json!([
                            "sidekiq",
                            "-r",
                            "./extras/dynflow-sidekiq.rb",
                            "-C",
                            format!("/etc/foreman/dynflow/{role}.yml")
                        ]),
                        foreman_env(fm),
                    );
                    c["volumeMounts"] = json!(mounts);
                    c
                }],
                vec![cfg_vol.clone()],
                "Always",
            ),
        ));
    }
    for (period, schedule) in [
        ("daily", "30 3 * * *"),
        ("weekly", "30 4 * * 0"),
        ("monthly", "30 5 1 * *"),
    ] {
        let pod = pod_spec(
            vec![{
                let mut c = container(
                    "cron",
                    foreman_image.clone(),
                    json!(["foreman-rake", format!("cron:{period}")]),
                    foreman_env(fm),
                );
                c["volumeMounts"] = json!([cfg_mount.clone()]);
                c
            }],
            vec![cfg_vol.clone()],
            "OnFailure",
        );
        objs.push(json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata(fm, &format!("foreman-cron-{period}"), "foreman-cron"),
            "spec": {
                "schedule": schedule,
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"metadata": {"labels": labels(fm, "foreman-cron")}, "spec": pod}}},
            },
        }));
    }

    let mut paths = vec![
        json!({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "foreman", "port": {"number": FOREMAN_PORT}}}}),
    ];
    if spec.plugins.katello {
        objs.extend(katello(fm));
        paths.push(json!({"path": "/pulp/content", "pathType": "Prefix", "backend": {"service": {"name": "pulp-content", "port": {"number": PULP_CONTENT_PORT}}}}));
        paths.push(json!({"path": "/pulp/api/v3", "pathType": "Prefix", "backend": {"service": {"name": "pulp-api", "port": {"number": PULP_API_PORT}}}}));
    }
    if spec.plugins.remote_execution {
        objs.extend(remote_execution(fm));
    }
    let mut rule = json!({"http": {"paths": paths}});
    let mut ingress_spec = json!({"rules": [rule.clone()]});
    if let Some(h) = &hostname {
        rule["host"] = json!(h);
        ingress_spec = json!({"rules": [rule], "tls": [{"hosts": [h], "secretName": TLS_SECRET}]});
    }
    objs.push(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(fm, "foreman", "foreman"),
        "spec": ingress_spec,
    }));

    if spec.plugins.katello {
        for o in &mut objs {
            with_katello_settings(fm, o, &foreman_image);
        }
    }
    for o in &mut objs {
        let hash = short_hash(o);
        o["metadata"]["annotations"] = json!({HASH_ANNOTATION: hash});
    }
    objs
}

/// Katello's settings (Candlepin's URL and the OAuth consumer Foreman and Candlepin share) hold
/// secrets, so a ConfigMap cannot carry them: an init container writes
/// /etc/foreman/plugins/katello.yaml from the generated Secret into a memory volume that every
/// Foreman container mounts.
fn with_katello_settings(fm: &Foreman, obj: &mut Value, foreman_image: &str) {
    let pod = match obj["kind"].as_str() {
        Some("Deployment") | Some("Job") => &mut obj["spec"]["template"]["spec"],
        Some("CronJob") => &mut obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => return,
    };
    if pod["containers"][0]["image"] != foreman_image {
        return;
    }
    let ns = fm.metadata.namespace.clone().unwrap_or_default();
    let script = format!(
        "printf '%s\\n' ':katello:' '  :candlepin:' '    :url: https://candlepin.{ns}.svc:{CANDLEPIN_PORT}/candlepin' \"    :oauth_key: ${{OAUTH_KEY}}\" \"    :oauth_secret: ${{OAUTH_SECRET}}\" '    :ca_cert_file: /etc/foreman/tls/ca.crt' > /etc/foreman/plugins/katello.yaml"
    );
    let mut init = container(
        "katello-settings",
        foreman_image.to_string(),
        json!(["/bin/sh", "-c", script]),
        vec![
            secret_env("OAUTH_KEY", GENERATED_SECRET, "oauth-consumer-key"),
            secret_env("OAUTH_SECRET", GENERATED_SECRET, "oauth-consumer-secret"),
        ],
    );
    init["volumeMounts"] = json!([{"name": "plugins", "mountPath": "/etc/foreman/plugins"}]);
    pod["initContainers"] = json!([init]);
    let volumes = pod["volumes"]
        .as_array_mut()
        .expect("pods have a volume list");
    volumes.push(json!({"name": "plugins", "emptyDir": {"medium": "Memory"}}));
    volumes.push(json!({"name": "tls-ca", "secret": {"secretName": TLS_SECRET, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}));
    for c in pod["containers"]
        .as_array_mut()
        .expect("pods have containers")
    {
        let mounts = c["volumeMounts"]
            .as_array_mut()
            .expect("Foreman containers mount their config");
        mounts.push(
            json!({"name": "plugins", "mountPath": "/etc/foreman/plugins", "readOnly": true}),
        );
        mounts.push(json!({"name": "tls-ca", "mountPath": "/etc/foreman/tls", "readOnly": true}));
    }
}

fn katello(fm: &Foreman) -> Vec<Value> {
    let spec = &fm.spec;
    let pulp_image = image(fm, "pulp");
    let db = &spec.database.pulp_secret;
    let content_origin = match &spec.hostname {
        Some(h) => format!("https://{h}"),
        None => format!("http://pulp-content:{PULP_CONTENT_PORT}"),
    };
    let mut pulp_env = db_env("PULP_DATABASES__default__", db);
    pulp_env.extend([
        env(
            "PULP_DATABASES__default__ENGINE",
            "django.db.backends.postgresql",
        ),
        env("PULP_CONTENT_ORIGIN", content_origin),
        env("PULP_REDIS_URL", format!("redis://redis:{REDIS_PORT}/8")),
        env("PULP_CACHE_ENABLED", "true"),
    ]);
    let storage = json!({"name": "pulp-storage", "persistentVolumeClaim": {"claimName": spec.storage.pulp_claim}});
    let storage_mount = json!({"name": "pulp-storage", "mountPath": "/var/lib/pulp"});
    let pulp_pod = |name: &str, command: Value, port: Option<u16>, restart: &str| {
        let mut c = container(name, pulp_image.clone(), command, pulp_env.clone());
        c["volumeMounts"] = json!([storage_mount.clone()]);
        if let Some(p) = port {
            c["ports"] = json!([{"containerPort": p, "name": "http"}]);
            c["readinessProbe"] = json!({"tcpSocket": {"port": p}, "periodSeconds": 10});
        }
        pod_spec(vec![c], vec![storage.clone()], restart)
    };
    let mut objs = vec![
        job(
            fm,
            "pulp-migrate",
            "pulp-migrate",
            pulp_pod(
                "migrate",
                json!(["pulpcore-manager", "migrate", "--noinput"]),
                None,
                "OnFailure",
            ),
        ),
        service(fm, "pulp-api", &[("http", PULP_API_PORT)]),
        deployment(
            fm,
            "pulp-api",
            1,
            pulp_pod(
                "pulp-api",
                json!(["pulp-api"]),
                Some(PULP_API_PORT),
                "Always",
            ),
        ),
        service(fm, "pulp-content", &[("http", PULP_CONTENT_PORT)]),
        deployment(
            fm,
            "pulp-content",
            1,
            pulp_pod(
                "pulp-content",
                json!(["pulp-content"]),
                Some(PULP_CONTENT_PORT),
                "Always",
            ),
        ),
        deployment(
            fm,
            "pulp-worker",
            1,
            pulp_pod("pulp-worker", json!(["pulp-worker"]), None, "Always"),
        ),
    ];

    // Candlepin reads its JDBC settings from candlepin.conf: written at start from its Secret.
    let cdb = &spec.database.candlepin_secret;
    let conf = "printf '%s\\n' \"jpa.config.hibernate.connection.url=jdbc:postgresql://${DB_HOST}:${DB_PORT}/${DB_NAME}\" \"jpa.config.hibernate.connection.username=${DB_USER}\" \"jpa.config.hibernate.connection.password=${DB_PASSWORD}\" \"candlepin.db.database_manage_on_startup=Manage\" \"candlepin.auth.oauth.consumer.${OAUTH_KEY}.secret=${OAUTH_SECRET}\" > /etc/candlepin/conf.d/database.conf";
    let mut init = container(
        "configure",
        image(fm, "candlepin"),
        json!(["/bin/sh", "-c", conf]),
        db_env("DB_", cdb)
            .into_iter()
            .chain([
                secret_env("OAUTH_KEY", GENERATED_SECRET, "oauth-consumer-key"),
                secret_env("OAUTH_SECRET", GENERATED_SECRET, "oauth-consumer-secret"),
            ])
            .collect(),
    );
    init["volumeMounts"] = json!([{"name": "conf", "mountPath": "/etc/candlepin/conf.d"}]);
    let mut tomcat = container(
        "candlepin",
        image(fm, "candlepin"),
        json!(["/usr/libexec/tomcat/server", "start"]),
        vec![],
    );
    tomcat["ports"] = json!([{"containerPort": CANDLEPIN_PORT, "name": "https"}]);
    tomcat["readinessProbe"] = json!({"tcpSocket": {"port": CANDLEPIN_PORT}, "periodSeconds": 10});
    tomcat["volumeMounts"] =
        json!([{"name": "conf", "mountPath": "/etc/candlepin/conf.d", "readOnly": true}]);
    let mut pod = pod_spec(
        vec![tomcat],
        vec![json!({"name": "conf", "emptyDir": {"medium": "Memory"}})],
        "Always",
    );
    pod["initContainers"] = json!([init]);
    objs.push(service(fm, "candlepin", &[("https", CANDLEPIN_PORT)]));
    objs.push(deployment(fm, "candlepin", 1, pod));
    objs
}

fn remote_execution(fm: &Foreman) -> Vec<Value> {
    let settings = ":enabled: https\n:ssh_identity_key_file: /var/lib/foreman-proxy/ssh/id_rsa_foreman_proxy\n:local_working_dir: /var/tmp\n:remote_working_dir: /var/tmp\n:kerberos_auth: false\n:mode: ssh\n";
    let mut c = container(
        "foreman-proxy",
        image(fm, "foreman-proxy"),
        json!(["smart-proxy"]),
        vec![],
    );
    c["ports"] = json!([{"containerPort": PROXY_PORT, "name": "https"}]);
    c["readinessProbe"] = json!({"tcpSocket": {"port": PROXY_PORT}, "periodSeconds": 10});
    c["volumeMounts"] = json!([
        {"name": "rex-settings", "mountPath": "/etc/foreman-proxy/settings.d/remote_execution_ssh.yml", "subPath": "remote_execution_ssh.yml", "readOnly": true},
        {"name": "rex-ssh", "mountPath": "/var/lib/foreman-proxy/ssh", "readOnly": true},
        {"name": "tls", "mountPath": "/etc/foreman-proxy/ssl", "readOnly": true},
    ]);
    let pod = pod_spec(
        vec![c],
        vec![
            json!({"name": "rex-settings", "configMap": {"name": "foreman-proxy-rex"}}),
            json!({"name": "rex-ssh", "secret": {"secretName": REX_SSH_SECRET, "defaultMode": 0o400}}),
        ],
        "Always",
    );
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(fm, "foreman-proxy-rex", "foreman-proxy"),
            "data": {"remote_execution_ssh.yml": settings},
        }),
        service(fm, "foreman-proxy", &[("https", PROXY_PORT)]),
        deployment(fm, "foreman-proxy", 1, pod),
    ]
}

/// The SSH key Remote Execution logs in to hosts with (generated by the controller).
pub const REX_SSH_SECRET: &str = "foreman-proxy-ssh";
/// The CA and the certificate for Foreman's names (generated by the controller).
pub const TLS_SECRET: &str = "foreman-tls";

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

/// Reads a `Foreman` resource from YAML, filling defaults (as the API server would).
pub fn read_foreman(path: &str, text: &str) -> Result<Foreman, crate::Error> {
    let mut fm: Foreman = serde_yaml::from_str(text).map_err(|source| crate::Error::Read {
        path: path.to_string(),
        source,
    })?;
    if fm.metadata.namespace.is_none() {
        fm.metadata.namespace = Some("foreman".into());
    }
    Ok(fm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreman(katello: bool, rex: bool) -> Foreman {
        read_foreman("t", &format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman, uid: 1234}}\nspec:\n  dynflow_workers: 2\n  plugins: {{katello: {katello}, remote_execution: {rex}}}\n")).unwrap()
    }

    fn names(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn plugins_add_and_remove_their_objects_only() {
        let core = names(&desired(&foreman(false, false)));
        let kat = names(&desired(&foreman(true, false)));
        let all = names(&desired(&foreman(true, true)));
        assert!(core.contains(&"Deployment/foreman".into()));
        assert!(!core
            .iter()
            .any(|n| n.contains("pulp") || n.contains("candlepin") || n.contains("proxy")));
        for n in [
            "Deployment/pulp-api",
            "Deployment/pulp-content",
            "Deployment/pulp-worker",
            "Deployment/candlepin",
        ] {
            assert!(kat.contains(&n.to_string()), "{n}");
        }
        assert!(all.contains(&"Deployment/foreman-proxy".into()));
        // Core objects keep their exact content whatever the plugins, but for the plugin list.
        let core_dep = |objs: Vec<Value>| {
            objs.into_iter()
                .find(|o| o["metadata"]["name"] == "redis" && o["kind"] == "Deployment")
                .unwrap()
        };
        assert_eq!(
            core_dep(desired(&foreman(false, false))),
            core_dep(desired(&foreman(true, true)))
        );
    }

    #[test]
    fn worker_replicas_follow_the_spec_and_everything_is_owned() {
        let objs = desired(&foreman(true, true));
        let workers = objs
            .iter()
            .find(|o| o["metadata"]["name"] == "dynflow-worker")
            .unwrap();
        assert_eq!(workers["spec"]["replicas"], 2);
        for o in &objs {
            assert_eq!(
                o["metadata"]["ownerReferences"][0]["uid"], "1234",
                "{}",
                o["metadata"]["name"]
            );
            assert_eq!(o["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
            assert!(o["metadata"]["annotations"][HASH_ANNOTATION].is_string());
        }
    }

    #[test]
    fn katello_settings_reach_every_foreman_pod_and_only_with_katello() {
        let with = desired(&foreman(true, false));
        let foreman_pods: Vec<&Value> = with
            .iter()
            .filter(|o| {
                o["kind"] != "CronJob"
                    && o["spec"]["template"]["spec"]["containers"][0]["image"]
                        == "quay.io/foreman/foreman:3.18"
            })
            .collect();
        assert_eq!(
            foreman_pods.len(),
            4,
            "migration, web, orchestrator, worker"
        );
        for o in foreman_pods {
            let pod = &o["spec"]["template"]["spec"];
            assert_eq!(
                pod["initContainers"][0]["name"], "katello-settings",
                "{}",
                o["metadata"]["name"]
            );
            assert!(pod["containers"][0]["volumeMounts"]
                .to_string()
                .contains("/etc/foreman/plugins"));
        }
        let candlepin = with
            .iter()
            .find(|o| o["metadata"]["name"] == "candlepin" && o["kind"] == "Deployment")
            .unwrap();
        assert!(candlepin
            .to_string()
            .contains("candlepin.auth.oauth.consumer.${OAUTH_KEY}.secret"));
        let without = desired(&foreman(false, true));
        assert!(!without
            .iter()
            .any(|o| o.to_string().contains("katello-settings")));
    }

    #[test]
    fn desired_state_is_deterministic() {
        assert_eq!(desired(&foreman(true, true)), desired(&foreman(true, true)));
    }
}
