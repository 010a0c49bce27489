//! The operator's CA and the certificates it signs, in two Secrets:
//! - [`CA_SECRET`] (`ca.crt`, `ca.key`): read by the operator to sign, and mounted by Candlepin
//!   alone, which signs the hosts' certificates with it (FC src/vars/base.yaml: `candlepin_ca_key`
//!   is the CA key; src/roles/candlepin/tasks/certs.yml makes it Candlepin's `candlepin-ca.key`);
//! - [`TLS_SECRET`] (`kubernetes.io/tls`): the CA certificate and the leaves the edge and the
//!   services present, each pod mounting only its own keys (`items`). No CA key here: whatever
//!   serves from this Secret cannot mint certificates.
//!
//! FC 2.0.0 uses the same set: a server certificate for the hostname (httpd, here the edge),
//! a Foreman client certificate (katello.yaml `:candlepin_events:`, settings.yaml `:ssl_*`,
//! proxy `foreman_ssl_*`; src/roles/foreman/tasks/main.yaml), Candlepin's Tomcat certificate
//! (src/roles/candlepin/tasks/certs.yml) and the proxy's server certificate
//! (src/roles/foreman_proxy/tasks/certs.yaml), plus the server certificate of Pulp's mTLS
//! front end (FK S/pulp-control-proxy.yaml: `tls.crt`/`tls.key` from the same CA as `ca.crt`).
//!
//! Every key is RSA ([`crate::secrets::RSA_BITS`]); every certificate is signed SHA256withRSA.
//! Lifetimes: the CA lives [`CA_DAYS`] (FC's), leaves [`LEAF_DAYS`]. FC signs leaves for 7300
//! days too (src/roles/certificates/templates/openssl.cnf.j2 `default_days = 7300`); here they
//! are shorter because the operator renews them: [`due`] says which leaves must be signed again
//! and why, [`renew`] signs them with the kept CA, the controller calls it on every reconcile,
//! and the Deployments that mount them roll ([`stamp`]).

use super::{short_hash, svc, HASH_ANNOTATION};
use crate::crd::Foreman;
use crate::Error;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

/// The CA (`Opaque`): [`CA_CRT`] and [`CA_KEY`].
pub const CA_SECRET: &str = "foreman-ca";
/// `kubernetes.io/tls`: `tls.crt`/`tls.key` are the Foreman server certificate the edge
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
/// The keys of [`CA_SECRET`].
pub const CA_KEYS: &[&str] = &[CA_CRT, CA_KEY];
/// The keys of [`TLS_SECRET`].
pub const KEYS: &[&str] = &[
    CA_CRT,
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

/// FC src/roles/certificates/tasks/ca.yml: `openssl req -x509 ... -days 7300`.
pub const CA_DAYS: u64 = 7300;
/// Leaves: two years, renewed [`RENEW_DAYS`] before they end.
pub const LEAF_DAYS: u64 = 730;
/// A leaf ending within this many days is signed again.
pub const RENEW_DAYS: u64 = 60;
/// FC src/roles/certificates/tasks/ca.yml: `-subj "/CN=Foreman Self-signed CA"`.
pub const CA_COMMON_NAME: &str = "Foreman Self-signed CA";
/// Certificates start an hour before they are made, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(3600);
const DAY: u64 = 86_400;

/// On the pod template of every Deployment that mounts [`TLS_SECRET`]: a digest of its
/// certificates, so a renewal rolls the pods (subPath mounts never see a Secret change).
pub const CERTIFICATES_ANNOTATION: &str = "app.theforeman.org/certificates";

/// The values of a Secret, by key.
pub type Values = BTreeMap<String, String>;

/// What a certificate is for (extendedKeyUsage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// One leaf certificate of [`TLS_SECRET`]: its keys there, the names it must carry (the first is
/// its common name) and its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub crt: &'static str,
    pub key: &'static str,
    pub names: Vec<String>,
    pub usage: Usage,
}

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

/// Every leaf this resource needs, with the names it is reached under.
pub fn leaves(fm: &Foreman) -> Vec<Leaf> {
    let ns = super::namespace(fm);
    let hostname: Vec<String> = fm.spec.hostname.iter().cloned().collect();
    let mut server = hostname.clone();
    server.extend([svc(fm, "foreman"), format!("foreman.{ns}")]);
    // The proxy is registered and called back under the hostname in FC (src/roles/
    // foreman_proxy/defaults/main.yaml: foreman_proxy_name is the fqdn, its url
    // https://<fqdn>:8443), in the cluster under its Service: both names.
    let mut proxy = vec![svc(fm, "foreman-proxy"), "foreman-proxy".into()];
    proxy.extend(hostname);
    vec![
        Leaf {
            crt: SERVER_CRT,
            key: SERVER_KEY,
            names: server,
            usage: Usage::ServerAndClient,
        },
        Leaf {
            crt: CLIENT_CRT,
            key: CLIENT_KEY,
            names: vec![client_cn(fm)],
            usage: Usage::Client,
        },
        Leaf {
            crt: CANDLEPIN_CRT,
            key: CANDLEPIN_KEY,
            names: vec![svc(fm, "candlepin"), "candlepin".into()],
            usage: Usage::ServerAndClient,
        },
        Leaf {
            crt: PROXY_CRT,
            key: PROXY_KEY,
            names: proxy,
            usage: Usage::ServerAndClient,
        },
        Leaf {
            crt: PULP_CONTROL_CRT,
            key: PULP_CONTROL_KEY,
            names: pulp_control_names(fm),
            usage: Usage::Server,
        },
    ]
}

/// A CA and every leaf, made now from the OS RNG: the values of [`CA_SECRET`] and
/// [`TLS_SECRET`] in one map (`ca.key` included). Six RSA keys, the costly part of a first
/// reconcile; made side by side.
pub fn generate(fm: &Foreman) -> Result<Values, Error> {
    let now = SystemTime::now();
    let ca = new_ca(now)?;
    let mut all = issue(fm, &ca, now)?;
    all.extend(ca);
    Ok(all)
}

/// A new CA: the values of [`CA_SECRET`].
pub fn new_ca(now: SystemTime) -> Result<Values, Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let failed = |e: rcgen::Error| generate_error("the CA", e);
    let key = crate::secrets::rsa_key().map_err(failed)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    // Path length 0: it signs end-entity certificates only (ours and Candlepin's).
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = (now - BACKDATE).into();
    p.not_after = (now + Duration::from_secs(CA_DAYS * DAY)).into();
    p.serial_number = Some(serial());
    let crt = p.self_signed(&key).map_err(failed)?;
    Ok(Values::from([
        (CA_CRT.into(), crt.pem()),
        (CA_KEY.into(), key.serialize_pem()),
    ]))
}

/// Every leaf signed by `ca` (the values of [`CA_SECRET`]): the values of [`TLS_SECRET`].
pub fn issue(fm: &Foreman, ca: &Values, now: SystemTime) -> Result<Values, Error> {
    let mut tls = sign(&leaves(fm), ca, now)?;
    tls.insert(CA_CRT.into(), ca[CA_CRT].clone());
    Ok(tls)
}

/// The CA of a [`TLS_SECRET`] made by an older operator, which kept `ca.key` there: its values
/// for [`CA_SECRET`], when the key is RSA and belongs to the certificate. `None` otherwise (an
/// ECDSA CA from before keys were RSA cannot be read by Candlepin; a new CA replaces it).
pub fn ca_from_older_tls(tls: &Values) -> Option<Values> {
    let ca = Values::from([
        (CA_CRT.to_string(), tls.get(CA_CRT)?.clone()),
        (CA_KEY.to_string(), tls.get(CA_KEY)?.clone()),
    ]);
    usable_ca(&ca).ok().map(|_| ca)
}

/// Why a leaf must be signed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Unreadable,
    NotRsa,
    KeyMismatch,
    NotFromCa,
    Expires { days_left: i64 },
    LacksNames(Vec<String>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "missing"),
            Reason::Unreadable => write!(f, "not a readable PEM certificate and key"),
            Reason::NotRsa => write!(f, "its key is not RSA"),
            Reason::KeyMismatch => write!(f, "its key does not belong to it"),
            Reason::NotFromCa => write!(f, "not signed by the CA in Secret {CA_SECRET}"),
            Reason::Expires { days_left } if *days_left < 0 => {
                write!(f, "expired {} days ago", -days_left)
            }
            Reason::Expires { days_left } => write!(f, "ends in {days_left} days"),
            Reason::LacksNames(names) => write!(f, "lacks the name(s) {}", names.join(", ")),
        }
    }
}

/// A leaf to sign again, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub leaf: Leaf,
    pub reason: Reason,
}

/// Which leaves of `tls` must be signed again with `ca`: missing, unreadable, not RSA, not
/// matching their key, not signed by this CA, ending within [`RENEW_DAYS`] of `now`, or lacking
/// a name the resource now needs. Pure: no clock, no randomness.
pub fn due(fm: &Foreman, ca: &Values, tls: &Values, now: SystemTime) -> Vec<Due> {
    let ca_crt = ca.get(CA_CRT).and_then(|c| Der::from_pem(c));
    let now = unix(now);
    leaves(fm)
        .into_iter()
        .filter_map(|leaf| {
            let reason = leaf_reason(&leaf, ca_crt.as_ref(), tls, now)?;
            Some(Due { leaf, reason })
        })
        .collect()
}

fn leaf_reason(leaf: &Leaf, ca: Option<&Der>, tls: &Values, now: i64) -> Option<Reason> {
    let (Some(crt), Some(key)) = (tls.get(leaf.crt), tls.get(leaf.key)) else {
        return Some(Reason::Missing);
    };
    let Some(der) = Der::from_pem(crt) else {
        return Some(Reason::Unreadable);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der.0) else {
        return Some(Reason::Unreadable);
    };
    let Ok(key) = rcgen::KeyPair::from_pem(key) else {
        return Some(Reason::Unreadable);
    };
    if key.algorithm() != &rcgen::PKCS_RSA_SHA256 {
        return Some(Reason::NotRsa);
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Some(Reason::KeyMismatch);
    }
    let signed = ca
        .and_then(|ca| x509_parser::parse_x509_certificate(&ca.0).ok())
        .is_some_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok());
    if !signed {
        return Some(Reason::NotFromCa);
    }
    let days_left = (cert.validity().not_after.timestamp() - now).div_euclid(DAY as i64);
    if days_left < RENEW_DAYS as i64 {
        return Some(Reason::Expires { days_left });
    }
    let have: Vec<&str> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let lacking: Vec<String> = leaf
        .names
        .iter()
        .filter(|n| !have.contains(&n.as_str()))
        .cloned()
        .collect();
    (!lacking.is_empty()).then_some(Reason::LacksNames(lacking))
}

/// What [`renew`] changes in [`TLS_SECRET`]: keys to set, keys to remove, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub set: Values,
    pub remove: Vec<String>,
    pub why: Vec<String>,
}

/// Brings `tls` in line with `ca` (the values of [`CA_SECRET`]): the CA certificate copied when
/// it differs, every [`due`] leaf signed again with the CA and a new key, and the `ca.key` an
/// older operator kept in `tls` removed once `ca` holds it (or when it is one no reader
/// takes). `None` when nothing changes.
pub fn renew(
    fm: &Foreman,
    ca: &Values,
    tls: &Values,
    now: SystemTime,
) -> Result<Option<Update>, Error> {
    usable_ca(ca)?;
    let mut update = Update::default();
    if tls.get(CA_CRT) != ca.get(CA_CRT) {
        update.set.insert(CA_CRT.into(), ca[CA_CRT].clone());
        update.why.push(format!(
            "{CA_CRT} is not the certificate of Secret {CA_SECRET}"
        ));
    }
    let due = due(fm, ca, tls, now);
    if !due.is_empty() {
        let wanted: Vec<Leaf> = due.iter().map(|d| d.leaf.clone()).collect();
        update.set.extend(sign(&wanted, ca, now)?);
        update
            .why
            .extend(due.iter().map(|d| format!("{}: {}", d.leaf.crt, d.reason)));
    }
    if let Some(old) = tls.get(CA_KEY) {
        let copied = ca.get(CA_KEY) == Some(old);
        let unusable = ca_from_older_tls(tls).is_none();
        if copied || unusable {
            update.remove.push(CA_KEY.into());
            update.why.push(format!(
                "{CA_KEY} belongs in Secret {CA_SECRET}, not in the Secret the edge serves from"
            ));
        }
    }
    Ok((update != Update::default()).then_some(update))
}

/// Rolls the Deployments that mount [`TLS_SECRET`] when its certificates change: each gets
/// [`CERTIFICATES_ANNOTATION`] on its pod template (a digest of the certificates, never of the
/// keys) and a desired-hash that includes it.
pub fn stamp(objs: &mut [Value], tls: &Values) {
    let certificates: Vec<(&String, &String)> =
        tls.iter().filter(|(k, _)| k.ends_with(".crt")).collect();
    let digest = short_hash(&json!(certificates));
    for o in objs.iter_mut().filter(|o| o["kind"] == "Deployment") {
        let mounts_tls = o["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["secret"]["secretName"] == TLS_SECRET);
        if !mounts_tls {
            continue;
        }
        o["spec"]["template"]["metadata"]["annotations"][CERTIFICATES_ANNOTATION] = json!(digest);
        let hash = o["metadata"]["annotations"][HASH_ANNOTATION].clone();
        o["metadata"]["annotations"][HASH_ANNOTATION] = json!(short_hash(&json!([hash, digest])));
    }
}

/// Signs `leaves` with the CA `ca`, each with a new key: their keys in [`TLS_SECRET`].
fn sign(leaves: &[Leaf], ca: &Values, now: SystemTime) -> Result<Values, Error> {
    let issuer = usable_ca(ca)?;
    let keys = crate::secrets::rsa_keys(leaves.len())
        .map_err(|e| generate_error("keys for the certificates", e))?;
    let mut out = Values::new();
    for (leaf, key) in leaves.iter().zip(keys) {
        let crt = leaf_params(leaf, now)
            .and_then(|p| p.signed_by(&key, &issuer))
            .map_err(|e| generate_error(&format!("certificate {}", leaf.crt), e))?;
        out.insert(leaf.crt.into(), crt.pem());
        out.insert(leaf.key.into(), key.serialize_pem());
    }
    Ok(out)
}

fn leaf_params(leaf: &Leaf, now: SystemTime) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose};
    let mut p = CertificateParams::new(leaf.names.clone())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(
        DnType::CommonName,
        leaf.names.first().cloned().unwrap_or_default(),
    );
    // FC openssl.cnf.j2 [ssl_server]/[ssl_client]: CA:FALSE, digitalSignature and
    // keyEncipherment, serverAuth or clientAuth.
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match leaf.usage {
        Usage::Server => vec![Eku::ServerAuth],
        Usage::Client => vec![Eku::ClientAuth],
        Usage::ServerAndClient => vec![Eku::ServerAuth, Eku::ClientAuth],
    };
    p.use_authority_key_identifier_extension = true;
    p.not_before = (now - BACKDATE).into();
    p.not_after = (now + Duration::from_secs(LEAF_DAYS * DAY)).into();
    p.serial_number = Some(serial());
    Ok(p)
}

/// The signer of a [`CA_SECRET`]'s values: an RSA key and a certificate that is its own.
fn usable_ca(ca: &Values) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, Error> {
    let bad = |message: &str| {
        Error::Generate {
        what: format!("certificates from the CA in Secret {CA_SECRET}"),
        message: format!(
            "{message}\nhelp: restore {CA_CRT} and {CA_KEY} from the copy foreman-box keeps in /etc/foreman-box/secrets/{CA_SECRET}.yaml"
        ),
    }
    };
    let (Some(crt), Some(key)) = (ca.get(CA_CRT), ca.get(CA_KEY)) else {
        return Err(bad(&format!("it lacks {CA_CRT} or {CA_KEY}")));
    };
    let key =
        rcgen::KeyPair::from_pem(key).map_err(|_| bad(&format!("{CA_KEY} is not a PEM key")))?;
    if key.algorithm() != &rcgen::PKCS_RSA_SHA256 {
        return Err(bad(&format!(
            "{CA_KEY} is not an RSA key, and Candlepin reads only RSA"
        )));
    }
    let der =
        Der::from_pem(crt).ok_or_else(|| bad(&format!("{CA_CRT} is not a PEM certificate")))?;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der.0) else {
        return Err(bad(&format!("{CA_CRT} is not an X.509 certificate")));
    };
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad(&format!("{CA_KEY} is not the key of {CA_CRT}")));
    }
    rcgen::Issuer::from_ca_cert_der(&der.0.clone().into(), key)
        .map_err(|e| bad(&format!("{CA_CRT} cannot sign: {e}")))
}

/// A certificate's DER, from its PEM.
struct Der(Vec<u8>);

impl Der {
    fn from_pem(pem: &str) -> Option<Der> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
        (p.label == "CERTIFICATE").then_some(Der(p.contents))
    }
}

/// A random positive 20-byte serial (RFC 5280 4.1.2.2): a leaf signed again with the same CA
/// never repeats one.
fn serial() -> rcgen::SerialNumber {
    use rand::TryRngCore;
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS RNG works");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn generate_error(what: &str, e: rcgen::Error) -> Error {
    Error::Generate {
        what: what.into(),
        message: e.to_string(),
    }
}
