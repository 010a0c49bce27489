//! Integrity of every render: each plugin combination × several worker counts × each release
//! stream, with and without a hostname. What the API server's schema cannot see: references
//! between objects (mounts, Secret and ConfigMap keys, claims, Service selectors, Ingress
//! backends), users the kubelet can verify, and images from the release-stream table.

use foreman_operator::read::read_foreman;
use foreman_operator::resources::{
    certificates, desired, proxy, pulp, CA_SECRET, GENERATED_KEYS, GENERATED_SECRET,
    PULP_KEY_SECRET, REX_SSH_SECRET, STREAMS, TLS_SECRET,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the installer creates (installer/src/steps/postgres.rs `objects`: one Secret
/// `<db>-db` per database with these keys; installer/src/steps/storage.rs: claim
/// `pulp-storage`). Checked against that source text below, so a rename there fails here.
const INSTALLER_DB_SECRETS: &[&str] = &["foreman-db", "candlepin-db", "pulp-db"];
const INSTALLER_DB_KEYS: &[&str] = &["host", "port", "name", "user", "password", "sslmode"];
const INSTALLER_CLAIMS: &[&str] = &["pulp-storage"];

fn cr(katello: bool, rex: bool, workers: u32, version: &str, hostname: bool) -> String {
    let host = if hostname {
        "  hostname: foreman.example.com\n"
    } else {
        ""
    };
    format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman, uid: u-1}}\nspec:\n{host}  dynflow_workers: {workers}\n  version: \"{version}\"\n  plugins: {{katello: {katello}, remote_execution: {rex}}}\n")
}

fn every_render() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for katello in [false, true] {
        for rex in [false, true] {
            for workers in [1, 2, 32] {
                for version in STREAMS {
                    for hostname in [true, false] {
                        let mut text = cr(katello, rex, workers, version, hostname);
                        if workers == 32 {
                            // The smallest profile whose host schedules 32 workers.
                            text.push_str("  tuning: large\n");
                        }
                        let fm = read_foreman("t", &text).unwrap();
                        out.push((
                            format!("katello={katello} rex={rex} workers={workers} version={version} hostname={hostname}"),
                            desired(&fm),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// (owner, pod spec) for every pod template.
fn pods(objs: &[Value]) -> Vec<(String, &Value)> {
    objs.iter()
        .filter_map(|o| {
            let name = format!(
                "{}/{}",
                o["kind"].as_str()?,
                o["metadata"]["name"].as_str()?
            );
            match o["kind"].as_str()? {
                "Deployment" | "Job" => Some((name, &o["spec"]["template"]["spec"])),
                "CronJob" => Some((name, &o["spec"]["jobTemplate"]["spec"]["template"]["spec"])),
                _ => None,
            }
        })
        .collect()
}

fn containers(pod: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = pod["containers"].as_array().unwrap().iter().collect();
    v.extend(pod["initContainers"].as_array().into_iter().flatten());
    v
}

/// Every key of every Secret and ConfigMap a pod can read: the rendered ConfigMaps, the
/// Secrets the operator generates and the installer's.
fn sources(
    objs: &[Value],
) -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
    secrets.insert(GENERATED_SECRET.into(), set(GENERATED_KEYS));
    secrets.insert(TLS_SECRET.into(), set(certificates::KEYS));
    secrets.insert(CA_SECRET.into(), set(certificates::CA_KEYS));
    secrets.insert(PULP_KEY_SECRET.into(), set(&[pulp::PULP_KEY]));
    secrets.insert(
        REX_SSH_SECRET.into(),
        set(&[proxy::SSH_KEY, proxy::SSH_PUB]),
    );
    for s in INSTALLER_DB_SECRETS {
        secrets.insert(s.to_string(), set(INSTALLER_DB_KEYS));
    }
    let config_maps = objs
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["data"].as_object().unwrap().keys().cloned().collect(),
            )
        })
        .collect();
    (secrets, config_maps)
}

#[test]
fn installer_table_matches_the_installer_source() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The postgres step is a folder of modules: read them all.
    let mut postgres = String::new();
    let dir = root.join("installer/src/steps/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        postgres.push_str(&std::fs::read_to_string(f).unwrap());
    }
    assert!(postgres.contains(r#"const DATABASES: &[&str] = &["foreman", "candlepin", "pulp"];"#));
    assert!(postgres.contains(r#""name": format!("{db}-db")"#));
    for k in INSTALLER_DB_KEYS {
        assert!(
            postgres.contains(&format!("\"{k}\": ")),
            "installer Secret key {k}"
        );
    }
    let storage = std::fs::read_to_string(root.join("installer/src/steps/storage.rs")).unwrap();
    for c in INSTALLER_CLAIMS {
        assert!(storage.contains(&format!("const CLAIM: &str = \"{c}\";")));
    }
}

#[test]
fn every_mount_has_its_volume_and_every_key_read_exists() {
    for (case, objs) in every_render() {
        let (secrets, config_maps) = sources(&objs);
        let claims: BTreeSet<String> = objs
            .iter()
            .filter(|o| o["kind"] == "PersistentVolumeClaim")
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .chain(INSTALLER_CLAIMS.iter().map(|s| s.to_string()))
            .collect();
        for (owner, pod) in pods(&objs) {
            let volumes: BTreeMap<&str, &Value> = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (v["name"].as_str().unwrap(), v))
                .collect();
            // The files each volume offers (None: any, e.g. emptyDir and claims).
            let files = |v: &Value| -> Option<BTreeSet<String>> {
                if let Some(s) = v.get("secret") {
                    let name = s["secretName"].as_str().unwrap();
                    let have = secrets.get(name).unwrap_or_else(|| {
                        panic!("{case}: {owner}: Secret {name} is made by nobody")
                    });
                    let items = s["items"]
                        .as_array()
                        .expect("Secret volumes list their items");
                    let mut paths = BTreeSet::new();
                    for i in items {
                        let key = i["key"].as_str().unwrap();
                        assert!(
                            have.contains(key),
                            "{case}: {owner}: Secret {name} has no key {key}"
                        );
                        paths.insert(i["path"].as_str().unwrap().to_string());
                    }
                    Some(paths)
                } else if let Some(c) = v.get("configMap") {
                    let name = c["name"].as_str().unwrap();
                    Some(
                        config_maps
                            .get(name)
                            .unwrap_or_else(|| {
                                panic!("{case}: {owner}: ConfigMap {name} is not rendered")
                            })
                            .clone(),
                    )
                } else if let Some(c) = v.get("persistentVolumeClaim") {
                    let name = c["claimName"].as_str().unwrap();
                    assert!(
                        claims.contains(name),
                        "{case}: {owner}: claim {name} is made by nobody"
                    );
                    None
                } else {
                    assert!(
                        v.get("emptyDir").is_some(),
                        "{case}: {owner}: unexpected volume {v}"
                    );
                    None
                }
            };
            for c in containers(pod) {
                for m in c["volumeMounts"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap();
                    let v = volumes.get(name).unwrap_or_else(|| {
                        panic!("{case}: {owner}: container {} mounts volume {name}, which the pod does not define", c["name"])
                    });
                    if let (Some(sub), Some(offered)) = (m["subPath"].as_str(), files(v)) {
                        assert!(
                            offered.contains(sub),
                            "{case}: {owner}: {} mounts {sub} from {name}, which has {offered:?}",
                            c["name"]
                        );
                    }
                }
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                        let (name, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                        let have = secrets.get(name).unwrap_or_else(|| {
                            panic!("{case}: {owner}: Secret {name} is made by nobody")
                        });
                        assert!(
                            have.contains(key),
                            "{case}: {owner}: {} reads {name}/{key}, which does not exist",
                            e["name"]
                        );
                    }
                    assert!(e["valueFrom"].get("configMapKeyRef").is_none());
                }
            }
        }
    }
}

#[test]
fn every_service_selects_a_pod_port_and_every_edge_backend_a_service_port() {
    for (case, objs) in every_render() {
        let templates: Vec<(&Value, &Value)> = objs
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .map(|o| {
                (
                    &o["spec"]["template"]["metadata"]["labels"],
                    &o["spec"]["template"]["spec"],
                )
            })
            .collect();
        let mut service_ports: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for s in objs.iter().filter(|o| o["kind"] == "Service") {
            let name = s["metadata"]["name"].as_str().unwrap();
            let sel = s["spec"]["selector"].as_object().unwrap();
            let pod = templates
                .iter()
                .find(|(labels, _)| sel.iter().all(|(k, v)| labels[k] == *v))
                .unwrap_or_else(|| panic!("{case}: Service {name} selects no pod template"))
                .1;
            let container_ports: Vec<u64> = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .map(|p| p["containerPort"].as_u64().unwrap())
                .collect();
            for p in s["spec"]["ports"].as_array().unwrap() {
                let target = p["targetPort"].as_u64().unwrap();
                assert!(
                    container_ports.contains(&target),
                    "{case}: Service {name} targets port {target}, which its pod does not open"
                );
                service_ports
                    .entry(name.into())
                    .or_default()
                    .push(p["port"].as_u64().unwrap());
            }
        }
        for p in objs.iter().filter(|o| o["kind"] == "NetworkPolicy") {
            let sel = p["spec"]["podSelector"]["matchLabels"].as_object().unwrap();
            assert!(
                templates
                    .iter()
                    .any(|(labels, _)| sel.iter().all(|(k, v)| labels[k] == *v)),
                "{case}: NetworkPolicy {} selects no pod template",
                p["metadata"]["name"]
            );
        }
        assert!(
            !objs.iter().any(|o| o["kind"] == "Ingress"),
            "{case}: the edge replaced the Ingress"
        );
        // Every backend an nginx configuration (the edge, pulp-control) proxies to is a Service
        // port of this render, by its in-cluster name.
        let ns = objs[0]["metadata"]["namespace"].as_str().unwrap();
        let mut backends = 0;
        for cm in objs.iter().filter(|o| o["kind"] == "ConfigMap") {
            let Some(conf) = cm["data"]["default.conf"].as_str() else {
                continue;
            };
            for line in conf.lines().map(str::trim) {
                let target = line
                    .strip_prefix("proxy_pass http://")
                    .or_else(|| line.strip_prefix("server "))
                    .map(|t| t.trim_end_matches(';'));
                let Some(target) = target.filter(|t| t.contains(':')) else {
                    continue;
                };
                let host_port = target.split('/').next().unwrap();
                let (host, port) = host_port.rsplit_once(':').unwrap();
                let name = host
                    .strip_suffix(&format!(".{ns}.svc"))
                    .unwrap_or_else(|| panic!("{case}: {line} names no Service of {ns}"));
                let port: u64 = port.parse().unwrap();
                assert!(
                    service_ports
                        .get(name)
                        .is_some_and(|ports| ports.contains(&port)),
                    "{case}: {} sends {line} to {name}:{port}, which no Service offers",
                    cm["metadata"]["name"]
                );
                backends += 1;
            }
        }
        assert!(backends > 0, "{case}: no nginx backend found to check");
        // The edge is published on the host's 80 and 443 (ServiceLB binds a LoadBalancer's ports).
        let edge = objs
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "foreman")
            .unwrap_or_else(|| panic!("{case}: no edge Service"));
        assert_eq!(edge["spec"]["type"], "LoadBalancer", "{case}");
        assert_eq!(service_ports["foreman"], [80, 443], "{case}");
    }
}

#[test]
fn run_as_non_root_always_comes_with_a_numeric_user() {
    for (case, objs) in every_render() {
        for (owner, pod) in pods(&objs) {
            let pod_sc = &pod["securityContext"];
            for c in containers(pod) {
                let sc = &c["securityContext"];
                let non_root = sc["runAsNonRoot"]
                    .as_bool()
                    .or(pod_sc["runAsNonRoot"].as_bool())
                    == Some(true);
                let user = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
                if non_root {
                    assert!(
                        user.is_some_and(|u| u > 0),
                        "{case}: {owner}: {} is runAsNonRoot without a numeric user",
                        c["name"]
                    );
                }
            }
        }
    }
}

#[test]
fn every_image_is_the_release_streams() {
    for (case, objs) in every_render() {
        let version = case
            .split("version=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        // The stream's entries in the image table (operator/images.json), nothing else.
        let table: Vec<String> = foreman_operator::images::Table::builtin().streams[version]
            .iter()
            .map(|p| p.reference())
            .collect();
        for (owner, pod) in pods(&objs) {
            for c in containers(pod) {
                let image = c["image"].as_str().unwrap();
                assert!(
                    table.iter().any(|t| t == image),
                    "{case}: {owner}: {image} is not in the release-stream table"
                );
            }
        }
    }
}

#[test]
fn jobs_are_named_after_their_final_pod_and_renders_are_deterministic() {
    for (case, objs) in every_render() {
        for j in objs.iter().filter(|o| o["kind"] == "Job") {
            let name = j["metadata"]["name"].as_str().unwrap();
            let hash = name.rsplit('-').next().unwrap();
            assert_eq!(hash.len(), 10, "{case}: {name}");
            let pod = &j["spec"]["template"]["spec"];
            let mut other = pod.clone();
            other["containers"][0]["image"] = "changed".into();
            assert_ne!(
                foreman_operator::resources::short_hash(pod),
                foreman_operator::resources::short_hash(&other)
            );
            assert_eq!(
                hash,
                foreman_operator::resources::short_hash(pod),
                "{case}: {name} is named after its final pod"
            );
        }
    }
    let text = cr(true, true, 2, "3.18", true);
    let fm = read_foreman("t", &text).unwrap();
    assert_eq!(desired(&fm), desired(&fm));
}

#[test]
fn plugins_add_and_remove_their_objects_only() {
    let names = |k, r| -> BTreeSet<String> {
        desired(&read_foreman("t", &cr(k, r, 2, "3.18", true)).unwrap())
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let core = names(false, false);
    assert!(!core
        .iter()
        .any(|n| n.contains("pulp") || n.contains("candlepin") || n.contains("proxy")));
    let all = names(true, true);
    for n in [
        "Deployment/pulp-api",
        "Deployment/candlepin",
        "Deployment/foreman-proxy",
        "Deployment/dynflow-worker-hosts-queue",
        "CronJob/foreman-cron-hourly",
    ] {
        assert!(all.contains(n), "{n}");
    }
}

#[test]
fn pulp_control_image_can_be_overridden_since_its_default_is_unconfirmed() {
    let text = cr(true, false, 1, "3.18", true)
        + "  images: {pulp_control: registry.example.com/nginx-unprivileged:1.28}\n";
    let objs = desired(&read_foreman("override", &text).unwrap());
    let d = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == pulp::CONTROL)
        .unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/nginx-unprivileged:1.28"
    );
}

/// The names a pod is reached under over TLS are in the certificate it presents: for every
/// Service, the leaves of the certificate Secret its pod mounts (server certificates, not the
/// client one) include `name.namespace.svc`; the edge's names are in `tls.crt`. The
/// leaves' names are those the operator signs (`certificates::leaves`).
#[test]
fn every_name_a_pod_serves_tls_under_is_in_the_certificate_it_mounts() {
    let mut checked = BTreeSet::new();
    for katello in [false, true] {
        for rex in [false, true] {
            for hostname in [true, false] {
                let fm = read_foreman("t", &cr(katello, rex, 2, STREAMS[0], hostname)).unwrap();
                let objs = desired(&fm);
                let case = format!("katello={katello} rex={rex} hostname={hostname}");
                let leaves = certificates::leaves(&fm);
                let names_of = |crt: &str| -> &Vec<String> {
                    &leaves.iter().find(|l| l.crt == crt).unwrap().names
                };
                let ns = fm.metadata.namespace.clone().unwrap();
                for s in objs.iter().filter(|o| o["kind"] == "Service") {
                    let name = s["metadata"]["name"].as_str().unwrap();
                    let sel = s["spec"]["selector"].as_object().unwrap();
                    let pod = objs
                        .iter()
                        .filter(|o| o["kind"] == "Deployment")
                        .find(|o| {
                            sel.iter()
                                .all(|(k, v)| o["spec"]["template"]["metadata"]["labels"][k] == *v)
                        })
                        .unwrap_or_else(|| panic!("{case}: Service {name} selects no Deployment"));
                    let served: Vec<&str> = pod["spec"]["template"]["spec"]["volumes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|v| v["secret"]["secretName"] == TLS_SECRET)
                        .flat_map(|v| v["secret"]["items"].as_array().unwrap())
                        .map(|i| i["key"].as_str().unwrap())
                        .filter(|k| {
                            leaves
                                .iter()
                                .any(|l| l.crt == *k && l.usage != certificates::Usage::Client)
                        })
                        .collect();
                    if served.is_empty() {
                        continue;
                    }
                    let dns = format!("{name}.{ns}.svc");
                    assert!(
                        served.iter().any(|crt| names_of(crt).contains(&dns)),
                        "{case}: Service {name} reaches a pod that presents {served:?}, none of which names {dns}"
                    );
                    checked.insert(name.to_string());
                }
                // The edge presents tls.crt under every name clients reach it by.
                for name in foreman_operator::resources::edge::names(&fm) {
                    assert!(
                        names_of(certificates::SERVER_CRT).contains(&name),
                        "{case}: the edge is reached as {name}, which tls.crt lacks"
                    );
                    checked.insert(format!("edge {name}"));
                }
            }
        }
    }
    // The edge, the services that terminate TLS themselves, and the hostname at the edge.
    for name in [
        "foreman",
        "candlepin",
        "foreman-proxy",
        "pulp-control",
        "edge foreman.example.com",
    ] {
        assert!(
            checked.contains(name),
            "{name} was never checked: {checked:?}"
        );
    }
}
