//! Values the operator generates once per resource: random tokens, the Remote Execution SSH key,
//! and a CA with a certificate for Foreman's services. Made from the OS RNG; stored in Secrets
//! the operator creates once and never rotates.

use base64::Engine;

/// A random token of `len` characters from [A-Za-z0-9].
pub fn token(len: usize) -> String {
    use rand::{Rng, TryRngCore};
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng.unwrap_err();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// An Ed25519 key pair: (OpenSSH private key, `ssh-ed25519 ... comment` public line).
pub fn ssh_keypair(comment: &str) -> (String, String) {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .expect("the OS RNG works");
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .expect("any 32 bytes are a seed");
    let public: &[u8] = ring::signature::KeyPair::public_key(&pair).as_ref();
    openssh_ed25519(
        &seed,
        public,
        comment,
        u32::from_ne_bytes(seed[..4].try_into().unwrap()) ^ 0x5eed,
    )
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The `openssh-key-v1` format, unencrypted (PROTOCOL.key in OpenSSH's sources).
fn openssh_ed25519(seed: &[u8; 32], public: &[u8], comment: &str, check: u32) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pubblob = Vec::new();
    put_string(&mut pubblob, b"ssh-ed25519");
    put_string(&mut pubblob, public);

    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, public);
    let mut secret = seed.to_vec();
    secret.extend_from_slice(public);
    put_string(&mut private, &secret);
    put_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut blob = b"openssh-key-v1\0".to_vec();
    put_string(&mut blob, b"none");
    put_string(&mut blob, b"none");
    put_string(&mut blob, b"");
    blob.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut blob, &pubblob);
    put_string(&mut blob, &private);

    let encoded = b64.encode(&blob);
    let mut pem = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    (
        pem,
        format!("ssh-ed25519 {} {comment}", b64.encode(&pubblob)),
    )
}

/// A CA and the certificates it signs, PEM (certificate, key) pairs.
pub struct CertificateSet {
    pub ca_crt: String,
    pub ca_key: String,
    pub server: (String, String),
    pub client: (String, String),
    pub candlepin: (String, String),
    pub proxy: (String, String),
    pub pulp_control: (String, String),
}

impl CertificateSet {
    /// A CA, a server certificate for `server` names, a client certificate for `client_cn`, and
    /// server certificates for Candlepin, the proxy and Pulp's mTLS front end.
    pub fn generate(
        server: &[String],
        client_cn: &str,
        candlepin: &[String],
        proxy: &[String],
        pulp_control: &[String],
    ) -> Result<CertificateSet, rcgen::Error> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let ca_key = KeyPair::generate()?;
        let ca_params = ca_params()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = |names: &[String], cn: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names.to_vec())?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer)?;
            Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
        };
        let first = |names: &[String]| names.first().cloned().unwrap_or_default();
        let both = || {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        };
        Ok(CertificateSet {
            server: leaf(server, &first(server), both())?,
            client: leaf(
                &[client_cn.to_string()],
                client_cn,
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )?,
            candlepin: leaf(candlepin, &first(candlepin), both())?,
            proxy: leaf(proxy, &first(proxy), both())?,
            pulp_control: leaf(
                pulp_control,
                &first(pulp_control),
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            )?,
            ca_crt: ca.pem(),
            ca_key: ca_key.serialize_pem(),
        })
    }
}

/// The operator CA's parameters: the same subject and constraints every time, so a leaf signed
/// later with the stored CA key chains to the stored CA certificate.
fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, "foreman-box CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

/// A server certificate for `names` (CN the first) signed by the stored CA key: for a
/// certificate Secret made by an older operator that lacks one (the CA itself is kept).
pub fn sign_server(ca_key_pem: &str, names: &[String]) -> Result<(String, String), rcgen::Error> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let ca_params = ca_params()?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Pulp's `database_fields.symmetric.key` as FC makes it (src/roles/pulp/tasks/main.yaml:
/// `openssl rand -base64 32 | tr "+/" "-_"`): 32 random bytes, base64 with `+/` as `-_` (so a
/// URL-safe Fernet key), and openssl's trailing newline.
pub fn fernet_key() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS RNG works");
    let mut k = base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .replace('+', "-")
        .replace('/', "_");
    k.push('\n');
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_key_is_read_back_by_ssh_keygen() {
        let (private, public) = ssh_keypair("foreman-proxy@foreman");
        // scripts/test.sh installs openssh-client.
        let keygen = std::path::Path::new("ssh-keygen");
        let dir = std::env::temp_dir().join(format!("fb-ssh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, &private).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let out = std::process::Command::new(keygen)
            .arg("-y")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8(out.stdout).unwrap();
        // ssh-keygen derives the public key from the private one: both halves agree.
        assert_eq!(
            derived.split_whitespace().take(2).collect::<Vec<_>>(),
            public.split_whitespace().take(2).collect::<Vec<_>>()
        );
        assert_ne!(ssh_keypair("x").1, ssh_keypair("x").1);
    }

    #[test]
    fn fernet_key_is_32_bytes_urlsafe_base64_like_foremanctl() {
        let k = fernet_key();
        assert!(k.ends_with('\n'));
        let body = k.trim_end();
        assert_eq!(body.len(), 44);
        assert!(!body.contains('+') && !body.contains('/'));
        let std = body.replace('-', "+").replace('_', "/");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(std)
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(fernet_key(), fernet_key());
    }

    #[test]
    fn certificate_is_signed_by_the_ca_for_the_names() {
        let set = CertificateSet::generate(
            &["foreman.example.com".into(), "foreman".into()],
            "foreman.example.com",
            &["candlepin.foreman.svc".into()],
            &["foreman-proxy.foreman.svc".into()],
            &["pulp-control.foreman.svc".into()],
        )
        .unwrap();
        let (ca, (cert, key)) = (set.ca_crt, set.server);
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        let dir = std::env::temp_dir().join(format!("fb-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), &ca).unwrap();
        std::fs::write(dir.join("tls.crt"), &cert).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.crt"))
            .args(["-verify_hostname", "foreman.example.com"])
            .arg(dir.join("tls.crt"))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
