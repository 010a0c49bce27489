//! Values the operator generates once per resource: random tokens, RSA keys (for the CA, the
//! certificates it signs and the Remote Execution SSH key) and Pulp's symmetric key. Made from
//! the OS RNG and stored in Secrets; only certificates are ever re-signed
//! ([`crate::resources::certificates`]).

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

/// The size of every RSA key: FC 2.0.0 makes each key 4096 bits (src/roles/certificates/
/// templates/openssl.cnf.j2 `default_bits = 4096` for the CA, tasks/issue.yml `openssl genrsa
/// ... 4096` for the server and client keys), and its REX key with community.crypto's
/// `openssh_keypair` defaults (type rsa, size 4096; src/roles/foreman_proxy/tasks/feature/
/// remote_execution_ssh.yaml).
pub const RSA_BITS: usize = 4096;

/// A new RSA key that signs SHA256withRSA (PKCS#1 v1.5), what Candlepin signs with and what
/// Candlepin's and Katello's readers accept (`KeyFactory.getInstance("RSA")`,
/// `OpenSSL::PKey::RSA.new`). Its PEM is PKCS#8 (`BEGIN PRIVATE KEY`), as OpenSSL 3's `genrsa`
/// and `openssl pkey` write it for FC.
pub fn rsa_key() -> Result<rcgen::KeyPair, rcgen::Error> {
    rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
}

/// `n` RSA keys made side by side, one thread each: the prime search is the slow part of
/// making a certificate set, and it is independent per key.
pub fn rsa_keys(n: usize) -> Result<Vec<rcgen::KeyPair>, rcgen::Error> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..n).map(|_| s.spawn(rsa_key)).collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("RSA key generation does not panic"))
            .collect()
    })
}

/// Remote Execution's SSH key pair: (private key in OpenSSH's own format, `ssh-rsa ... comment`
/// public line). RSA as FC makes it (see [`RSA_BITS`]): hosts in FIPS mode refuse Ed25519. The
/// OpenSSH format is what `ssh-keygen` (which `openssh_keypair` runs) writes since OpenSSH 7.8.
pub fn ssh_keypair(comment: &str) -> Result<(String, String), rcgen::Error> {
    use rand::TryRngCore;
    let key = rsa_key()?;
    let rsa = RsaPrivate::from_pkcs8(key.serialized_der())
        .expect("a freshly generated RSA key is well-formed PKCS#8");
    let mut check = [0u8; 4];
    rand::rngs::OsRng
        .try_fill_bytes(&mut check)
        .expect("the OS RNG works");
    Ok(openssh_rsa(&rsa, comment, u32::from_be_bytes(check)))
}

/// The integers of a PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2), each as DER gives it: big-endian
/// two's complement, shortest form, which is also SSH's `mpint` encoding (RFC 4251 section 5).
struct RsaPrivate<'a> {
    n: &'a [u8],
    e: &'a [u8],
    d: &'a [u8],
    p: &'a [u8],
    q: &'a [u8],
    qinv: &'a [u8],
}

impl<'a> RsaPrivate<'a> {
    /// From PKCS#8 (RFC 5208): SEQUENCE { version, algorithm, OCTET STRING { RSAPrivateKey } }.
    fn from_pkcs8(der: &'a [u8]) -> Option<Self> {
        let (info, _) = der_take(der, 0x30)?;
        let (_version, rest) = der_take(info, 0x02)?;
        let (_algorithm, rest) = der_take(rest, 0x30)?;
        let (private, _) = der_take(rest, 0x04)?;
        let (fields, _) = der_take(private, 0x30)?;
        let mut ints = Vec::new();
        let mut rest = fields;
        while !rest.is_empty() {
            let (int, next) = der_take(rest, 0x02)?;
            ints.push(int);
            rest = next;
        }
        // version, n, e, d, p, q, d mod (p-1), d mod (q-1), q^-1 mod p
        let [_, n, e, d, p, q, _, _, qinv] = ints[..] else {
            return None;
        };
        Some(RsaPrivate {
            n,
            e,
            d,
            p,
            q,
            qinv,
        })
    }
}

/// One DER element with tag `tag` at the start of `input`: (its content, what follows).
fn der_take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// The `openssh-key-v1` format, unencrypted (PROTOCOL.key in OpenSSH's sources; the RSA fields
/// in the order sshkey.c writes them: n, e, d, iqmp, p, q).
fn openssh_rsa(key: &RsaPrivate<'_>, comment: &str, check: u32) -> (String, String) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pubblob = Vec::new();
    put_string(&mut pubblob, b"ssh-rsa");
    put_string(&mut pubblob, key.e);
    put_string(&mut pubblob, key.n);

    let mut private = Vec::new();
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, b"ssh-rsa");
    for field in [key.n, key.e, key.d, key.qinv, key.p, key.q] {
        put_string(&mut private, field);
    }
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
    (pem, format!("ssh-rsa {} {comment}", b64.encode(&pubblob)))
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

    /// `ssh-keygen` (scripts/test.sh installs openssh-client) on the private key: it derives
    /// the public half, which must be the line we hand hosts, and names its type and size.
    #[test]
    fn ssh_key_is_rsa_4096_and_read_back_by_ssh_keygen() {
        let (private, public) = ssh_keypair("foreman-proxy@foreman.example.com").unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let dir = std::env::temp_dir().join(format!("fb-ssh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("id_rsa_foreman_proxy");
        std::fs::write(&file, &private).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let keygen = |args: &[&str]| {
            let out = std::process::Command::new("ssh-keygen")
                .args(args)
                .arg("-f")
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ssh-keygen {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let derived = keygen(&["-y"]);
        let fingerprint = keygen(&["-l"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            derived.split_whitespace().take(2).collect::<Vec<_>>(),
            public.split_whitespace().take(2).collect::<Vec<_>>(),
            "both halves are one key"
        );
        assert!(public.starts_with("ssh-rsa "), "{public}");
        assert!(public.ends_with(" foreman-proxy@foreman.example.com"));
        assert!(
            fingerprint.starts_with("4096 SHA256:") && fingerprint.trim_end().ends_with("(RSA)"),
            "{fingerprint}"
        );
        assert_ne!(ssh_keypair("x").unwrap().1, ssh_keypair("x").unwrap().1);
    }

    #[test]
    fn der_reader_refuses_what_is_not_an_rsa_pkcs8_key() {
        let key = rsa_key().unwrap();
        let der = key.serialized_der();
        assert!(RsaPrivate::from_pkcs8(der).is_some());
        assert!(RsaPrivate::from_pkcs8(&der[..der.len() - 1]).is_none());
        assert!(RsaPrivate::from_pkcs8(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(RsaPrivate::from_pkcs8(ec.serialized_der()).is_none());
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
}
