//! Certificates from the operator's own CA, generated once by the controller into one Secret
//! (so every certificate is signed by the same CA and they appear together or not at all) and
//! never rotated. Each pod mounts only the keys it needs (`items`).
//!
//! FC 2.0.0 uses the same set: a server certificate for the hostname (httpd, here the Ingress),
//! a Foreman client certificate (katello.yaml `:candlepin_events:`, settings.yaml `:ssl_*`,
//! proxy `foreman_ssl_*`; src/roles/foreman/tasks/main.yaml), Candlepin's Tomcat certificate
//! and CA (src/roles/candlepin/tasks/certs.yml) and the proxy's server certificate
//! (src/roles/foreman_proxy/tasks/certs.yaml), plus the server certificate of Pulp's mTLS
//! front end (FK S/pulp-control-proxy.yaml: `tls.crt`/`tls.key` from the same CA as `ca.crt`).

use super::{namespace, svc};
use crate::crd::Foreman;
use std::collections::BTreeMap;

/// `kubernetes.io/tls`: `tls.crt`/`tls.key` are the Foreman server certificate the Ingress
/// serves; the other keys are listed in [`KEYS`].
pub const TLS_SECRET: &str = "foreman-tls";
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CRT: &str = "tls.crt";
pub const SERVER_KEY: &str = "tls.key";
pub const CLIENT_CRT: &str = "client.crt";
pub const CLIENT_KEY: &str = "client.key";
pub const CANDLEPIN_CRT: &str = "candlepin.crt";
pub const CANDLEPIN_KEY: &str = "candlepin.key";
pub const PROXY_CRT: &str = "proxy.crt";
pub const PROXY_KEY: &str = "proxy.key";
/// The server certificate of Pulp's mTLS front end ([`super::pulp`] `pulp-control`), for its
/// Service name (FK docs/runtime-contracts.md: "must cover the chart's Pulp control Service DNS
/// name").
pub const PULP_CONTROL_CRT: &str = "pulp-control.crt";
pub const PULP_CONTROL_KEY: &str = "pulp-control.key";
pub const KEYS: &[&str] = &[
    CA_CRT,
    CA_KEY,
    SERVER_CRT,
    SERVER_KEY,
    CLIENT_CRT,
    CLIENT_KEY,
    CANDLEPIN_CRT,
    CANDLEPIN_KEY,
    PROXY_CRT,
    PROXY_KEY,
    PULP_CONTROL_CRT,
    PULP_CONTROL_KEY,
];

/// The Foreman server's name: the hostname, else its Service's name.
pub fn server_name(fm: &Foreman) -> String {
    fm.spec
        .hostname
        .clone()
        .unwrap_or_else(|| svc(fm, "foreman"))
}

/// The Foreman client certificate's common name. Candlepin's Artemis maps it to `katelloUser`
/// (FC templates/cert-users.properties.j2), the proxy trusts it (`:trusted_hosts:`).
pub fn client_cn(fm: &Foreman) -> String {
    server_name(fm)
}

/// The subject as Artemis's TextFileCertificateLoginModule compares it (RFC 2253).
pub fn client_dn(fm: &Foreman) -> String {
    format!("CN={}", client_cn(fm))
}

/// The names Pulp's front end's certificate covers: its Service (FK RC).
pub fn pulp_control_names(fm: &Foreman) -> Vec<String> {
    vec![svc(fm, "pulp-control"), "pulp-control".into()]
}

/// The keys a certificate Secret made by an older operator lacks, signed by its own CA (the CA
/// and the other certificates are kept): the pulp-control certificate, added later. `None` when
/// nothing is missing.
pub fn complete(
    fm: &Foreman,
    have: &BTreeMap<String, String>,
) -> Result<Option<BTreeMap<String, String>>, rcgen::Error> {
    if have.contains_key(PULP_CONTROL_CRT) && have.contains_key(PULP_CONTROL_KEY) {
        return Ok(None);
    }
    let ca_key = have.get(CA_KEY).map(String::as_str).unwrap_or_default();
    let (crt, key) = crate::secrets::sign_server(ca_key, &pulp_control_names(fm))?;
    Ok(Some(BTreeMap::from([
        (PULP_CONTROL_CRT.into(), crt),
        (PULP_CONTROL_KEY.into(), key),
    ])))
}

/// Every certificate, made now from the OS RNG: called by the controller once per resource.
pub fn generate(fm: &Foreman) -> Result<BTreeMap<String, String>, rcgen::Error> {
    let ns = namespace(fm);
    let mut server: Vec<String> = fm.spec.hostname.iter().cloned().collect();
    server.push(svc(fm, "foreman"));
    server.push(format!("foreman.{ns}"));
    let set = crate::secrets::CertificateSet::generate(
        &server,
        &client_cn(fm),
        &[svc(fm, "candlepin"), "candlepin".into()],
        &[svc(fm, "foreman-proxy"), "foreman-proxy".into()],
        &pulp_control_names(fm),
    )?;
    Ok(BTreeMap::from([
        (CA_CRT.into(), set.ca_crt),
        (CA_KEY.into(), set.ca_key),
        (SERVER_CRT.into(), set.server.0),
        (SERVER_KEY.into(), set.server.1),
        (CLIENT_CRT.into(), set.client.0),
        (CLIENT_KEY.into(), set.client.1),
        (CANDLEPIN_CRT.into(), set.candlepin.0),
        (CANDLEPIN_KEY.into(), set.candlepin.1),
        (PROXY_CRT.into(), set.proxy.0),
        (PROXY_KEY.into(), set.proxy.1),
        (PULP_CONTROL_CRT.into(), set.pulp_control.0),
        (PULP_CONTROL_KEY.into(), set.pulp_control.1),
    ]))
}
