//! foreman-proxy with Remote Execution over SSH: its settings and enabled modules, its
//! certificates and SSH key, and the Job that registers it in Foreman.

use super::certificates::{self, CA_CRT, PROXY_CRT, PROXY_KEY, TLS_SECRET};
use super::core::{self, Needs};
use super::{
    config_map, config_volume, deployment, dir_mount, env, file_mount, image, job, secret_volume,
    service, strings, svc, yaml, Check, Component, Container, Object, Pod, Probes, RunAs, Stream,
};
use crate::crd::Foreman;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use serde_json::json;

/// FC roles/foreman_proxy/defaults: foreman_proxy_https_port.
pub const PORT: u16 = 8443;
/// The SSH key Remote Execution logs in to hosts with (generated once by the controller or
/// the installer): RSA 4096 in OpenSSH's format, as FC makes it (src/roles/foreman_proxy/tasks/
/// feature/remote_execution_ssh.yaml: `openssh_keypair` with its defaults, type rsa, size
/// 4096), under FC's file names `id_rsa_foreman_proxy` and the adjacent `.pub`.
pub const REX_SSH_SECRET: &str = "foreman-proxy-ssh";
pub const SSH_KEY: &str = "id_rsa_foreman_proxy";
pub const SSH_PUB: &str = "id_rsa_foreman_proxy.pub";
/// foreman-installer's REX key directory (the key and the adjacent .pub the module wants).
pub const SSH_DIR: &str = "/var/lib/foreman-proxy/ssh";
const CONFIG_MAP: &str = "foreman-proxy-config";

pub fn objects(fm: &Foreman) -> Vec<Object> {
    vec![
        config(fm).into(),
        service(fm, "foreman-proxy", &[("https", PORT)]).into(),
        deployment(fm, "foreman-proxy", 1, true, pod(fm)).into(),
        registration_job(fm).into(),
    ]
}

/// OCI images/foreman-proxy/Containerfile: `USER foreman-proxy`, uid 991 fixed only from OCI
/// 2c36a1b (foreman-5.0 branch); older streams run as the image's named user. fsGroup 991 makes
/// the 0440 key and certificate files readable by it either way.
pub fn run_as(fm: &Foreman) -> RunAs {
    RunAs {
        user: Stream::of(fm).fixed_uids.then_some(991),
        fs_group: 991,
        image_root: false,
    }
}

fn config(fm: &Foreman) -> ConfigMap {
    // FC templates/settings.yml.j2 (logs to the container's output instead of the journal).
    let settings = json!({
        ":settings_directory": "/etc/foreman-proxy/settings.d",
        // Where the proxy calls Foreman back (Dynflow task callbacks): through the edge, by the
        // Service name its certificate carries, so the edge verifies the proxy's certificate
        // and Foreman (smart_proxy_auth.rb) matches its names against the registered URL.
        // Hosts still use the hostname: this is only the proxy's own way in.
        ":foreman_url": super::edge::internal_url(fm),
        ":trusted_hosts": [certificates::client_cn(fm)],
        ":https_port": PORT,
        ":ssl_ca_file": "/etc/foreman-proxy/ssl_ca.pem",
        ":ssl_certificate": "/etc/foreman-proxy/ssl_cert.pem",
        ":ssl_private_key": "/etc/foreman-proxy/ssl_key.pem",
        ":foreman_ssl_ca": "/etc/foreman-proxy/foreman_ssl_ca.pem",
        ":foreman_ssl_cert": "/etc/foreman-proxy/foreman_ssl_cert.pem",
        ":foreman_ssl_key": "/etc/foreman-proxy/foreman_ssl_key.pem",
        ":bind_host": "*",
        ":log_level": "INFO",
        ":log_file": "STDOUT",
        ":log_buffer": 2000,
        ":log_buffer_errors": 1000,
    });
    config_map(
        fm,
        CONFIG_MAP,
        "foreman-proxy",
        strings([
            ("settings.yml", yaml(&settings)),
            // The image disables every settings.d file (OCI Containerfile `sed ... :enabled:
            // false`); FC templates/settings.d enable logs (a base feature), dynflow and
            // remote_execution_ssh. Dynflow's :database: empty keeps it in memory (FC).
            ("logs.yml", yaml(&json!({":enabled": true}))),
            (
                "dynflow.yml",
                yaml(&json!({":enabled": true, ":database": null})),
            ),
            (
                "remote_execution_ssh.yml",
                yaml(&json!({
                    ":enabled": true,
                    ":ssh_identity_key_file": format!("{SSH_DIR}/{SSH_KEY}"),
                    ":local_working_dir": "/var/tmp",
                    ":remote_working_dir": "/var/tmp",
                    // Sockets live here; the path stays under 49 characters.
                    ":socket_working_dir": "/var/tmp",
                    ":mode": "ssh",
                })),
            ),
        ]),
    )
}

fn pod(fm: &Foreman) -> PodSpec {
    // OCI Containerfile CMD; `smart-proxy` is not on the image's PATH.
    let mut c = Container::new(
        "foreman-proxy",
        image(fm, Component::Proxy),
        &["/usr/share/foreman-proxy/bin/smart-proxy"],
    );
    // OCI Containerfile: bundler.d loads a plugin only when listed here (unset loads all).
    c.env = vec![env("FOREMAN_PROXY_ENABLED_PLUGINS", "remote_execution_ssh")];
    c.resources = Some(crate::profile::resources(
        &fm.spec,
        crate::profile::Sized::Proxy,
    ));
    // FC roles/foreman_proxy/tasks/main.yaml: these files at these paths.
    c.mounts = vec![
        file_mount("config", "/etc/foreman-proxy/settings.yml", "settings.yml"),
        file_mount(
            "config",
            "/etc/foreman-proxy/settings.d/logs.yml",
            "logs.yml",
        ),
        file_mount(
            "config",
            "/etc/foreman-proxy/settings.d/dynflow.yml",
            "dynflow.yml",
        ),
        file_mount(
            "config",
            "/etc/foreman-proxy/settings.d/remote_execution_ssh.yml",
            "remote_execution_ssh.yml",
        ),
        file_mount("tls", "/etc/foreman-proxy/ssl_ca.pem", "ssl_ca.pem"),
        file_mount("tls", "/etc/foreman-proxy/ssl_cert.pem", "ssl_cert.pem"),
        file_mount("tls", "/etc/foreman-proxy/ssl_key.pem", "ssl_key.pem"),
        file_mount(
            "tls",
            "/etc/foreman-proxy/foreman_ssl_ca.pem",
            "foreman_ssl_ca.pem",
        ),
        file_mount(
            "tls",
            "/etc/foreman-proxy/foreman_ssl_cert.pem",
            "foreman_ssl_cert.pem",
        ),
        file_mount(
            "tls",
            "/etc/foreman-proxy/foreman_ssl_key.pem",
            "foreman_ssl_key.pem",
        ),
        dir_mount("ssh", SSH_DIR, true),
    ];
    c.ports = vec![("https", PORT)];
    // Every HTTPS endpoint wants Foreman's client certificate, which a probe does not have:
    // the listening port is what is checked.
    c.probes = Probes {
        startup: None,
        readiness: Some(Check::tcp(PORT).every(10, None, Some(5), None)),
        liveness: Some(Check::tcp(PORT).every(20, Some(30), Some(5), None)),
    };
    Pod {
        run_as: run_as(fm),
        init: vec![],
        containers: vec![c],
        volumes: vec![
            config_volume("config", CONFIG_MAP),
            secret_volume(
                "tls",
                TLS_SECRET,
                &[
                    (CA_CRT, "ssl_ca.pem"),
                    (PROXY_CRT, "ssl_cert.pem"),
                    (PROXY_KEY, "ssl_key.pem"),
                    (CA_CRT, "foreman_ssl_ca.pem"),
                    // FC roles/foreman_proxy/tasks/certs.yaml: the proxy presents its own
                    // certificate to Foreman (clientAuth), not Foreman's.
                    (PROXY_CRT, "foreman_ssl_cert.pem"),
                    (PROXY_KEY, "foreman_ssl_key.pem"),
                ],
            ),
            secret_volume(
                "ssh",
                REX_SSH_SECRET,
                &[(SSH_KEY, SSH_KEY), (SSH_PUB, SSH_PUB)],
            ),
        ],
        restart: "Always",
        grace_seconds: None,
    }
    .render()
}

/// The name the proxy is registered under and its URL's host: the first name its certificate
/// carries (`foreman-proxy.<namespace>.svc`, certificates.rs). FC roles/foreman_proxy/defaults:
/// name = fqdn, url `https://<name>:8443` with the certificate for that fqdn, so the three agree;
/// here the proxy lives at its Service name. Foreman (app/controllers/concerns/foreman/
/// controller/smart_proxy_auth.rb) admits a callback when a name of the verified client
/// certificate (its SANs, else its CN) equals the host of a registered proxy's URL.
pub fn registered_name(fm: &Foreman) -> String {
    svc(fm, "foreman-proxy")
}

pub fn registered_url(fm: &Foreman) -> String {
    format!("https://{}:{PORT}", registered_name(fm))
}

/// Registers the proxy (FK: the features are Ansible, Dynflow and Script, Ansible only when its
/// module is on, which it is not here).
fn registration_job(fm: &Foreman) -> Job {
    let c = super::pulp::registration_container(
        fm,
        &registered_name(fm),
        &registered_url(fm),
        &["Dynflow", "Script"],
    );
    let needs = Needs {
        migrated: true,
        ..Needs::default()
    };
    job(
        fm,
        "foreman-proxy-registration",
        "foreman-proxy-registration",
        10,
        core::foreman_pod(fm, c, needs, "OnFailure"),
    )
}
