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

/// A CA and a server certificate signed by it for `names`: (ca.crt, ca.key, tls.crt, tls.key) PEM.
pub fn ca_and_certificate(names: &[String]) -> Result<[String; 4], rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "foreman-box CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok([
        ca.pem(),
        ca_key.serialize_pem(),
        cert.pem(),
        key.serialize_pem(),
    ])
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
    fn certificate_is_signed_by_the_ca_for_the_names() {
        let [ca, _ca_key, cert, key] =
            ca_and_certificate(&["foreman.example.com".into(), "foreman-proxy".into()]).unwrap();
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
