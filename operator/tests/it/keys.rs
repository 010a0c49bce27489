//! The keys and certificates the operator makes, read by the programs that read them in a
//! Foreman deployment: Java 17's `KeyFactory.getInstance("RSA")` and PKCS12 `KeyStore` the way
//! Candlepin and Tomcat load them (operator/tests/java/CandlepinKeys.java, compiled here with
//! javac), `keytool -list`, Ruby's `OpenSSL::PKey::RSA.new` (Katello's cert/certs.rb and the
//! stomp gem), and `openssl verify`. scripts/test.sh installs the JDK, Ruby and openssl.
//!
//! Each reader is also shown an ECDSA key, what the operator made before its keys were RSA: it
//! must refuse it, so these tests fail on such keys.

use foreman_operator::crd::Foreman;
use foreman_operator::read::read_foreman;
use foreman_operator::resources::certificates::{self, Reason, Values};
use foreman_operator::resources::desired;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

fn foreman(hostname: bool) -> Foreman {
    let host = if hostname {
        "  hostname: foreman.example.com\n"
    } else {
        ""
    };
    read_foreman("t", &format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman, uid: u-1}}\nspec:\n{host}  plugins: {{katello: true, remote_execution: true}}\n")).unwrap()
}

/// One set per test binary (six RSA 4096 keys are slow to make): made at `MADE`.
fn set() -> &'static (Foreman, Values, SystemTime) {
    static SET: OnceLock<(Foreman, Values, SystemTime)> = OnceLock::new();
    SET.get_or_init(|| {
        let fm = foreman(true);
        let now = SystemTime::now();
        let values = certificates::generate(&fm).unwrap();
        (fm, values, now)
    })
}

fn split(values: &Values) -> (Values, Values) {
    let (ca, tls) = values
        .clone()
        .into_iter()
        .partition(|(k, _)| k == certificates::CA_KEY);
    let mut ca: Values = ca;
    ca.insert(
        certificates::CA_CRT.into(),
        values[certificates::CA_CRT].clone(),
    );
    (ca, tls)
}

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "fb-keys-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ecdsa_key() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem()
}

/// Katello and the stomp gem: `OpenSSL::PKey::RSA.new(File.read(path))`, a private key.
fn ruby_rsa(path: &Path) -> Output {
    run(Command::new("ruby").args([
        "-ropenssl",
        "-e",
        "k = OpenSSL::PKey::RSA.new(File.read(ARGV[0])); abort 'no private half' unless k.private?; puts k.n.num_bits",
    ]).arg(path))
}

#[test]
fn every_key_is_rsa_4096_that_ruby_openssl_reads_as_katello_does() {
    let (_, values, _) = set();
    let dir = Dir::new("ruby");
    let mut keys: Vec<&str> = vec![certificates::CA_KEY];
    keys.extend(certificates::KEYS.iter().filter(|k| k.ends_with(".key")));
    assert_eq!(keys.len(), 6, "{keys:?}");
    for k in keys {
        let pem = &values[k];
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{k}");
        let out = ruby_rsa(&dir.write(k, pem));
        assert_eq!(ok(&out, k).trim(), "4096", "{k}");
    }
    let out = ruby_rsa(&dir.write("ec.key", &ecdsa_key()));
    assert!(!out.status.success(), "Ruby took an ECDSA key as RSA");
}

fn java_checker() -> &'static Path {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("fb-keys-java-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/CandlepinKeys.java");
        ok(
            &run(Command::new("javac").arg("-d").arg(&out).arg(src)),
            "javac",
        );
        out
    })
}

fn java(args: &[&Path], first: &str, password: Option<&str>) -> Output {
    let mut cmd = Command::new("java");
    cmd.arg("-cp")
        .arg(java_checker())
        .arg("CandlepinKeys")
        .arg(first);
    cmd.args(args);
    if let Some(p) = password {
        cmd.env("STORE_PASSWORD", p);
    }
    run(&mut cmd)
}

#[test]
fn candlepin_reads_its_ca_key_with_keyfactory_rsa_and_signs_sha256_with_rsa() {
    let (_, values, _) = set();
    let dir = Dir::new("java-key");
    let crt = dir.write("candlepin-ca.crt", &values[certificates::CA_CRT]);
    let key = dir.write("candlepin-ca.key", &values[certificates::CA_KEY]);
    let line = ok(&java(&[&key, &crt], "key", None), "CandlepinKeys key");
    assert!(
        line.starts_with("ok RSA 4096 bits, CN=Foreman Self-signed CA, signed SHA256withRSA"),
        "{line}"
    );
    // What the operator made before: an ECDSA key in the same PKCS#8 PEM form.
    let ec = dir.write("ec.key", &ecdsa_key());
    let out = java(&[&ec, &crt], "key", None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidKeySpecException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rendered Candlepin Deployment: (ConfigMap data, the certs volume's key -> file name).
fn candlepin_render(fm: &Foreman) -> (serde_json::Map<String, Value>, Vec<(String, String)>) {
    let objs = desired(fm);
    let cm = objs
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "candlepin-config")
        .unwrap();
    let dep = objs
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "candlepin")
        .unwrap();
    let certs = dep["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "certs")
        .unwrap();
    let items = certs["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (cm["data"].as_object().unwrap().clone(), items)
}

/// The init container's setup.rb, run with the system Ruby on the rendered ConfigMap and the
/// certificate files its pod mounts (only /etc/foreman-box moved to a temporary directory);
/// then the stores it writes are opened as Tomcat and Artemis open them.
#[test]
fn candlepin_stores_open_with_their_password_in_keytool_and_java() {
    let (fm, values, _) = set();
    let (config, items) = candlepin_render(fm);
    let dir = Dir::new("stores");
    let root = dir.0.to_str().unwrap();
    for (k, v) in &config {
        dir.write(k, &v.as_str().unwrap().replace("/etc/foreman-box", root));
    }
    for (key, path) in &items {
        dir.write(&format!("certs/{path}"), &values[key]);
    }
    std::fs::create_dir_all(dir.0.join("generated")).unwrap();
    let password = "s3cret&<\"password";
    let out = run(Command::new("ruby")
        .arg(dir.0.join("setup.rb"))
        .env("KEYSTORE_PASSWORD", password)
        .env("CANDLEPIN_OAUTH_SECRET", "oauth")
        .envs([
            ("DB_HOST", "db"),
            ("DB_PORT", "5432"),
            ("DB_NAME", "candlepin"),
            ("DB_USER", "candlepin"),
            ("DB_PASSWORD", "pw"),
        ]));
    ok(&out, "setup.rb");
    let ca = dir.0.join("certs/candlepin-ca.crt");
    for (store, alias) in [("keystore", "tomcat"), ("truststore", "artemis-client")] {
        let file = dir.0.join("generated").join(store);
        let keytool = |pass: &str| {
            run(Command::new("keytool")
                .args([
                    "-list",
                    "-storetype",
                    "PKCS12",
                    "-storepass:env",
                    "STORE_PASSWORD",
                    "-keystore",
                ])
                .arg(&file)
                .env("STORE_PASSWORD", pass))
        };
        let listed = ok(&keytool(password), store);
        assert!(
            listed.contains(&format!("{alias}, ")) && listed.contains("PrivateKeyEntry"),
            "{store}: {listed}"
        );
        assert!(
            !keytool("wrong").status.success(),
            "{store} opened with a wrong password"
        );
        let line = ok(
            &java(&[&file, Path::new(alias), &ca], "store", Some(password)),
            store,
        );
        assert!(
            line.starts_with(&format!("ok {alias}: RSA 4096 bits")),
            "{line}"
        );
    }
}

fn openssl_verify(ca: &Path, leaf: &Path, purpose: &str, name: Option<&str>) -> Output {
    openssl_verify_at(ca, leaf, purpose, name, SystemTime::now())
}

fn openssl_verify_at(
    ca: &Path,
    leaf: &Path,
    purpose: &str,
    name: Option<&str>,
    at: SystemTime,
) -> Output {
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-x509_strict", "-purpose", purpose]);
    cmd.args(["-attime", &unix(at).to_string()]);
    if let Some(n) = name {
        cmd.args(["-verify_hostname", n]);
    }
    cmd.arg("-CAfile").arg(ca).arg(leaf);
    run(&mut cmd)
}

fn validity(pem: &str) -> (i64, i64) {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(&p.contents).unwrap();
    (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    )
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn every_leaf_chains_to_the_ca_under_each_of_its_names_for_two_years() {
    let (fm, values, made) = set();
    let dir = Dir::new("verify");
    let ca = dir.write("ca.crt", &values[certificates::CA_CRT]);
    let text = ok(
        &run(Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&ca)),
        "ca",
    );
    assert!(
        text.contains("Public-Key: (4096 bit)") && text.contains("CA:TRUE, pathlen:0"),
        "{text}"
    );
    let (start, end) = validity(&values[certificates::CA_CRT]);
    let made = unix(*made);
    assert!(
        (made - 3700..=made).contains(&start),
        "the CA starts about now"
    );
    assert_eq!(
        (end - start) / DAY as i64,
        certificates::CA_DAYS as i64,
        "CA lifetime"
    );
    for leaf in certificates::leaves(fm) {
        let pem = &values[leaf.crt];
        let path = dir.write(leaf.crt, pem);
        let purpose = match leaf.usage {
            certificates::Usage::Client => "sslclient",
            _ => "sslserver",
        };
        for name in &leaf.names {
            let out = openssl_verify(&ca, &path, purpose, Some(name));
            ok(&out, &format!("{} for {name}", leaf.crt));
        }
        let out = openssl_verify(&ca, &path, purpose, Some("someone-else.example.com"));
        assert!(
            !out.status.success(),
            "{} verified for a name it lacks",
            leaf.crt
        );
        let text = ok(
            &run(Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in"])
                .arg(&path)),
            leaf.crt,
        );
        assert!(
            text.contains("Signature Algorithm: sha256WithRSAEncryption")
                && text.contains("Public-Key: (4096 bit)")
                && text.contains("CA:FALSE"),
            "{}: {text}",
            leaf.crt
        );
        let (start, end) = validity(pem);
        assert!((made - 3700..=made).contains(&start), "{}", leaf.crt);
        assert_eq!(
            (end - start) / DAY as i64,
            certificates::LEAF_DAYS as i64,
            "{} lifetime",
            leaf.crt
        );
    }
    // A certificate from another CA does not verify: the check above can fail.
    let other = certificates::new_ca(SystemTime::now()).unwrap();
    let other = dir.write("other.crt", &other[certificates::CA_CRT]);
    let leaf = dir.0.join(certificates::SERVER_CRT);
    assert!(!openssl_verify(&other, &leaf, "sslserver", None)
        .status
        .success());
}

#[test]
fn nothing_is_due_until_a_leaf_nears_its_end_then_every_leaf_is_signed_again_by_the_kept_ca() {
    let (fm, values, made) = set();
    let (ca, tls) = split(values);
    assert_eq!(certificates::due(fm, &ca, &tls, *made), []);
    assert_eq!(certificates::renew(fm, &ca, &tls, *made).unwrap(), None);

    // Just before the renewal window, nothing; a day into it, every leaf.
    let window = certificates::LEAF_DAYS - certificates::RENEW_DAYS;
    let before = *made + Duration::from_secs((window - 1) * DAY);
    assert_eq!(certificates::due(fm, &ca, &tls, before), []);
    let later = *made + Duration::from_secs((window + 1) * DAY);
    let due = certificates::due(fm, &ca, &tls, later);
    assert_eq!(due.len(), certificates::leaves(fm).len());
    for d in &due {
        assert!(
            matches!(d.reason, Reason::Expires { days_left } if days_left < certificates::RENEW_DAYS as i64 && days_left > 55),
            "{}: {}",
            d.leaf.crt,
            d.reason
        );
    }

    let update = certificates::renew(fm, &ca, &tls, later).unwrap().unwrap();
    assert!(update.remove.is_empty(), "{update:?}");
    assert_eq!(update.why.len(), due.len(), "{:?}", update.why);
    assert!(update.why[0].contains("ends in"), "{:?}", update.why);
    assert!(
        !update.set.contains_key(certificates::CA_CRT),
        "the CA is kept"
    );
    let mut renewed = tls.clone();
    renewed.extend(update.set.clone());
    assert_eq!(certificates::due(fm, &ca, &renewed, later), []);
    let dir = Dir::new("renew");
    let ca_file = dir.write("ca.crt", &ca[certificates::CA_CRT]);
    for leaf in certificates::leaves(fm) {
        assert_ne!(renewed[leaf.key], tls[leaf.key], "{}: a new key", leaf.key);
        let path = dir.write(leaf.crt, &renewed[leaf.crt]);
        let purpose = if leaf.usage == certificates::Usage::Client {
            "sslclient"
        } else {
            "sslserver"
        };
        ok(
            &openssl_verify_at(&ca_file, &path, purpose, Some(&leaf.names[0]), later),
            leaf.crt,
        );
        let (start, _) = validity(&renewed[leaf.crt]);
        assert!(
            start > unix(later) - 3700,
            "{} starts at its renewal",
            leaf.crt
        );
    }
}

/// The hostname is a name of the server and proxy certificates and the client certificate's
/// common name (Candlepin's cert-users.properties names it): a new one is signed into those
/// three, the Service-only certificates are kept.
#[test]
fn a_changed_hostname_is_signed_into_the_certificates_that_carry_it_only() {
    let (_, values, made) = set();
    let (ca, tls) = split(values);
    let mut other = foreman(true);
    other.spec.hostname = Some("foreman.example.org".into());
    let due = certificates::due(&other, &ca, &tls, *made);
    let crts: Vec<&str> = due.iter().map(|d| d.leaf.crt).collect();
    assert_eq!(
        crts,
        [
            certificates::SERVER_CRT,
            certificates::CLIENT_CRT,
            certificates::PROXY_CRT
        ]
    );
    for d in &due {
        assert_eq!(
            d.reason,
            Reason::LacksNames(vec!["foreman.example.org".into()])
        );
    }
}

#[test]
fn leaves_that_are_missing_foreign_or_ecdsa_are_signed_again_and_the_reason_is_said() {
    let (fm, values, made) = set();
    let (ca, tls) = split(values);
    let mut broken = tls.clone();
    broken.remove(certificates::PULP_CONTROL_KEY);
    broken.insert(certificates::CLIENT_KEY.into(), ecdsa_key());
    broken.insert(certificates::PROXY_CRT.into(), "garbage".into());
    broken.insert(
        certificates::CANDLEPIN_KEY.into(),
        tls[certificates::SERVER_KEY].clone(),
    );
    let reasons: Vec<(&str, Reason)> = certificates::due(fm, &ca, &broken, *made)
        .into_iter()
        .map(|d| (d.leaf.crt, d.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (certificates::CLIENT_CRT, Reason::NotRsa),
            (certificates::CANDLEPIN_CRT, Reason::KeyMismatch),
            (certificates::PROXY_CRT, Reason::Unreadable),
            (certificates::PULP_CONTROL_CRT, Reason::Missing),
        ]
    );
    // Another CA: every leaf of this one is foreign to it.
    let other = certificates::new_ca(*made).unwrap();
    let due = certificates::due(fm, &other, &tls, *made);
    assert!(due.iter().all(|d| d.reason == Reason::NotFromCa), "{due:?}");
    assert_eq!(due.len(), 5);
}

#[test]
fn the_ca_key_an_older_operator_kept_with_the_certificates_leaves_them_once_the_ca_secret_has_it() {
    let (fm, values, made) = set();
    let (ca, _) = split(values);
    let older = values.clone(); // ca.key inside the certificate Secret
    assert_eq!(certificates::ca_from_older_tls(&older), Some(ca.clone()));
    let update = certificates::renew(fm, &ca, &older, *made)
        .unwrap()
        .unwrap();
    assert_eq!(update.remove, [certificates::CA_KEY]);
    assert!(update.set.is_empty(), "{update:?}");
    assert!(
        update.why[0].contains("belongs in Secret foreman-ca"),
        "{:?}",
        update.why
    );

    // Not yet copied (the CA Secret holds another CA): the key stays where it is.
    let other = certificates::new_ca(*made).unwrap();
    let update = certificates::renew(fm, &other, &older, *made)
        .unwrap()
        .unwrap();
    assert!(update.remove.is_empty(), "{update:?}");
    assert_eq!(
        update.set[certificates::CA_CRT],
        other[certificates::CA_CRT]
    );
}

#[test]
fn a_ca_secret_that_cannot_sign_is_refused_with_what_to_do() {
    let (fm, values, made) = set();
    let (ca, tls) = split(values);
    let mut no_key = ca.clone();
    no_key.remove(certificates::CA_KEY);
    let mut ec = ca.clone();
    ec.insert(certificates::CA_KEY.into(), ecdsa_key());
    let mut wrong = ca.clone();
    wrong.insert(
        certificates::CA_KEY.into(),
        values[certificates::SERVER_KEY].clone(),
    );
    for (bad, says) in [
        (no_key, "it lacks ca.crt or ca.key"),
        (ec, "ca.key is not an RSA key, and Candlepin reads only RSA"),
        (wrong, "ca.key is not the key of ca.crt"),
    ] {
        let err = certificates::renew(fm, &bad, &tls, *made)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(
            err.contains("help: restore ca.crt and ca.key from the copy foreman-box keeps in /etc/foreman-box/secrets/foreman-ca.yaml"),
            "{err}"
        );
        assert!(!err.contains("PRIVATE KEY"), "a key in an error: {err}");
    }
}
