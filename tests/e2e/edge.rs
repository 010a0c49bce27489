//! The edge and pulp-control, run for real (`foreman_box_tests::nginx`): the rendered nginx
//! configurations with certificates from `certificates::generate`, in front of Puma standing in
//! for Foreman (so the headers are read as Foreman's server reads them) and echo servers
//! standing in for Pulp's content app and API. Hosts are curl with a certificate the CA signed,
//! one another CA signed, or none.

use foreman_box_tests::nginx::{self, curl, free_port, localize, Echo, Nginx, Puma};
use foreman_operator::crd::Foreman;
use foreman_operator::read::read_foreman;
use foreman_operator::resources::{certificates, edge, pulp};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HOST: &str = "foreman.example.com";

pub fn default_resource() -> Foreman {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../operator/tests/golden/default.cr.yaml"
    ))
    .unwrap();
    read_foreman("default", &text).unwrap()
}

/// The operator's certificates (and another CA's, whose leaves must not pass) as files.
fn certificate_files(fm: &Foreman, dir: &Path) -> BTreeMap<String, PathBuf> {
    use certificates::*;
    let ours = generate(fm).unwrap();
    let theirs = generate(fm).unwrap();
    let mut files = nginx::write_files(
        dir,
        &[
            ("ca.crt", &ours[CA_CRT]),
            ("tls.crt", &ours[SERVER_CRT]),
            ("tls.key", &ours[SERVER_KEY]),
            ("pulp-control.crt", &ours[PULP_CONTROL_CRT]),
            ("pulp-control.key", &ours[PULP_CONTROL_KEY]),
            // Foreman's client certificate (CN = the hostname).
            ("foreman.crt", &ours[CLIENT_CRT]),
            ("foreman.key", &ours[CLIENT_KEY]),
            // A host the CA signed: the smart proxy's certificate (clientAuth, its SANs).
            ("host.crt", &ours[PROXY_CRT]),
            ("host.key", &ours[PROXY_KEY]),
            // The same names, signed by another CA.
            ("stranger.crt", &theirs[PROXY_CRT]),
            ("stranger.key", &theirs[PROXY_KEY]),
            ("pub/katello-server-ca.crt", &ours[CA_CRT]),
        ],
    );
    // And one that signed itself, under the proxy's name (an issuer nginx does not know at all,
    // where the stranger's CA has the same name as ours and fails on its signature).
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=foreman-proxy.foreman.svc"])
        .args(["-addext", "extendedKeyUsage=clientAuth"])
        .arg("-keyout")
        .arg(dir.join("self.key"))
        .arg("-out")
        .arg(dir.join("self.crt"))
        .output()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    files.insert("self.crt".into(), dir.join("self.crt"));
    files.insert("self.key".into(), dir.join("self.key"));
    files
}

pub struct Edge {
    _nginx: Nginx,
    foreman: Puma,
    content: Echo,
    api: Echo,
    http: u16,
    https: u16,
    files: BTreeMap<String, PathBuf>,
    _dir: tempfile::TempDir,
}

impl Edge {
    fn start(fm: &Foreman) -> Edge {
        Edge::start_with(fm, &edge::config(fm), None)
    }

    /// `conf` (a rendered edge configuration) in front of Puma, an echo content app, and the
    /// Pulp API on `pulp_api` (an echo server when None).
    pub fn start_with(fm: &Foreman, conf: &str, pulp_api: Option<u16>) -> Edge {
        let dir = tempfile::Builder::new()
            .prefix("fb-edge-")
            .tempdir()
            .unwrap();
        let files = certificate_files(fm, dir.path());
        let foreman = Puma::start(dir.path());
        let (content, api) = (Echo::start(), Echo::start());
        let (http, https) = (free_port(), free_port());
        let d = dir.path().display();
        let api_port = pulp_api.unwrap_or(api.port);
        let conf = localize(
            conf,
            &[
                ("listen 8080;", format!("listen 127.0.0.1:{http};")),
                ("listen 8443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
                ("/etc/nginx/pki/", format!("{d}/")),
                ("/srv/pub/", format!("{d}/pub/")),
                (
                    "http://foreman-web.foreman.svc:3000",
                    format!("http://127.0.0.1:{}", foreman.port),
                ),
                (
                    "http://pulp-content.foreman.svc:24816",
                    format!("http://127.0.0.1:{}", content.port),
                ),
                (
                    "http://pulp-api.foreman.svc:24817",
                    format!("http://127.0.0.1:{api_port}"),
                ),
            ],
        );
        let n = Nginx::start(dir.path(), &conf, &[http, https]);
        Edge {
            _nginx: n,
            foreman,
            content,
            api,
            http,
            https,
            files,
            _dir: dir,
        }
    }

    /// A request to the edge over HTTPS as a host makes it, with the named certificate.
    pub fn https(&self, path: &str, cert: Option<&str>, extra: &[&str]) -> nginx::Answer {
        let c = cert.map(|n| {
            (
                self.files[&format!("{n}.crt")].as_path(),
                self.files[&format!("{n}.key")].as_path(),
            )
        });
        curl(
            &format!("https://{HOST}:{}{path}", self.https),
            Some(&self.files["ca.crt"]),
            c,
            extra,
        )
    }

    fn http(&self, path: &str, extra: &[&str]) -> nginx::Answer {
        curl(
            &format!("http://{HOST}:{}{path}", self.http),
            None,
            None,
            extra,
        )
    }

    /// Foreman's view of a request: Puma's answer (the env it made), asserting 200.
    fn foreman_env(&self, a: nginx::Answer) -> Value {
        assert_eq!(a.code, 200, "{}\n{}", a.text(), self.foreman.log());
        a.json()
    }
}

/// What a client sends to pose as a verified smart proxy and as the Pulp admin, in both
/// spellings, plus the headers Rack reads for the scheme.
const SPOOFED: &[&str] = &[
    "-H",
    "SSL-CLIENT-S-DN: CN=foreman-proxy.foreman.svc",
    "-H",
    "SSL_CLIENT_S_DN: CN=foreman-proxy.foreman.svc",
    "-H",
    "SSL-CLIENT-VERIFY: SUCCESS",
    "-H",
    "SSL_CLIENT_VERIFY: SUCCESS",
    "-H",
    "SSL-CLIENT-CERT: MIIBforged",
    "-H",
    "X-CLIENT-CERT: MIIBforged",
    "-H",
    "X-RHSM-SSL-CLIENT-CERT: MIIBforged",
    "-H",
    "REMOTE-USER: admin",
    "-H",
    "REMOTE_USER: admin",
    "-H",
    "REMOTE-USER-GROUPS: admins",
    "-H",
    "Forwarded: proto=https;for=192.0.2.1",
    "-H",
    "X-Forwarded-Ssl: on",
];

/// No header that says who the client is reached Foreman, except SSL_CLIENT_VERIFY when `verify`.
fn assert_no_identity(env: &Value, verify: Option<&str>) {
    let e = &env["env"];
    for var in [
        "HTTP_SSL_CLIENT_S_DN",
        "HTTP_SSL_CLIENT_CERT",
        "HTTP_X_CLIENT_CERT",
        "HTTP_X_RHSM_SSL_CLIENT_CERT",
        "HTTP_REMOTE_USER",
        "HTTP_REMOTE_USER_GROUPS",
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_SSL",
    ] {
        assert!(
            e[var].is_null() || e[var] == "",
            "{var} reached Foreman: {}",
            e[var]
        );
    }
    assert_eq!(e["HTTP_SSL_CLIENT_VERIFY"].as_str(), verify, "{e}");
    assert!(env["certificate"].is_null(), "{env}");
}

#[test]
fn edge_passes_a_verified_host_certificate_to_foreman_as_foreman_reads_it() {
    let fm = default_resource();
    let edge = Edge::start(&fm);
    // The host's own headers are replaced by what nginx verified.
    let env = edge.foreman_env(edge.https("/rhsm/consumers", Some("host"), SPOOFED));
    let e = &env["env"];
    assert_eq!(env["path"], "/rhsm/consumers");
    assert_eq!(
        e["HTTP_SSL_CLIENT_S_DN"], "CN=foreman-proxy.foreman.svc",
        "{env}"
    );
    assert_eq!(e["HTTP_SSL_CLIENT_VERIFY"], "SUCCESS");
    // Foreman's and Katello's reading of SSL-CLIENT-CERT gives back the host's certificate.
    let cert = &env["certificate"];
    assert_eq!(cert["subject"], "/CN=foreman-proxy.foreman.svc", "{env}");
    assert!(
        cert["san"]
            .as_str()
            .unwrap()
            .contains("DNS:foreman-proxy.foreman.svc"),
        "{env}"
    );
    for var in [
        "HTTP_X_RHSM_SSL_CLIENT_CERT",
        "HTTP_REMOTE_USER",
        "HTTP_X_CLIENT_CERT",
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_SSL",
    ] {
        assert!(e[var].is_null(), "{var} reached Foreman: {env}");
    }
    assert_eq!(e["HTTP_X_FORWARDED_PROTO"], "https");
    assert_eq!(e["HTTP_X_FORWARDED_PORT"], "443");
    assert_eq!(e["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
    assert_eq!(e["HTTP_HOST"], HOST);
    // Not a websocket: no upgrade asked of Foreman.
    assert_ne!(e["HTTP_CONNECTION"], "upgrade", "{env}");
}

#[test]
fn edge_blanks_identity_headers_a_client_sends_without_a_certificate() {
    let fm = default_resource();
    let edge = Edge::start(&fm);
    let env = edge.foreman_env(edge.https("/rhsm/consumers", None, SPOOFED));
    assert_no_identity(&env, Some("NONE"));
    // Over HTTP (FC foreman-vhost.conf.j2) nothing about certificates reaches Foreman at all.
    let env = edge.foreman_env(edge.http("/unattended/provision", SPOOFED));
    assert_no_identity(&env, None);
    assert_eq!(env["env"]["HTTP_X_FORWARDED_PROTO"], "http");
    // The content app and the API get no client certificate and no user either.
    for path in [
        "/pulp/content/x",
        "/pulp/assets/y",
        "/pulpcore_registry/v2/",
    ] {
        assert_eq!(edge.https(path, None, SPOOFED).code, 200, "{path}");
    }
    for seen in edge.content.take().iter().chain(&edge.api.take()) {
        for h in [
            "x-client-cert",
            "remote-user",
            "remote_user",
            "ssl-client-verify",
        ] {
            assert_eq!(seen.get(h), None, "{} passed {h}: {seen:?}", seen.line);
        }
    }
}

#[test]
fn edge_refuses_a_certificate_from_another_ca() {
    let fm = default_resource();
    let edge = Edge::start(&fm);
    // ssl_verify_client optional: a certificate that does not verify is answered 400 and
    // nothing reaches Foreman (Apache's SSLVerifyClient optional fails the handshake).
    for cert in ["stranger", "self"] {
        let a = edge.https("/rhsm/consumers", Some(cert), SPOOFED);
        assert_eq!(a.code, 400, "{cert}: {}", a.text());
    }
    let a = edge.https("/pulpcore_registry/v2/", Some("stranger"), &[]);
    assert_eq!(a.code, 400, "{}", a.text());
    assert!(edge.api.seen().is_empty());
    assert!(
        !edge.foreman.log().contains("/rhsm"),
        "{}",
        edge.foreman.log()
    );
}

#[test]
fn edge_routes_each_path_to_its_upstream() {
    let fm = default_resource();
    let edge = Edge::start(&fm);
    // Foreman: everything not Pulp, with the websocket handshake passed on.
    let env = edge.foreman_env(edge.https(
        "/notifications/cable",
        None,
        &["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"],
    ));
    assert_eq!(env["path"], "/notifications/cable");
    assert_eq!(env["env"]["HTTP_UPGRADE"], "websocket", "{env}");
    assert_eq!(env["env"]["HTTP_CONNECTION"], "upgrade", "{env}");
    // Pulp's content app and API, with the path each expects.
    for (path, upstream, want) in [
        (
            "/pulp/content/org/lib/repo/a.rpm",
            "content",
            "/pulp/content/org/lib/repo/a.rpm",
        ),
        (
            "/pulp/isos/org/lib/x.iso",
            "content",
            "/pulp/content/org/lib/x.iso",
        ),
        (
            "/pulp/container/org/img/blobs/sha256:1",
            "content",
            "/pulp/container/org/img/blobs/sha256:1",
        ),
        (
            "/pulp/assets/rest_framework/css/a.css",
            "api",
            "/pulp/assets/rest_framework/css/a.css",
        ),
        (
            "/pulpcore_registry/v2/org/img/manifests/1",
            "api",
            "/v2/org/img/manifests/1",
        ),
    ] {
        let a = edge.https(path, Some("host"), &[]);
        assert_eq!(a.code, 200, "{path}: {}", a.text());
        let e = if upstream == "content" {
            &edge.content
        } else {
            &edge.api
        };
        let seen = e.take();
        assert_eq!(
            seen.len(),
            1,
            "{path} reached {upstream} {} times",
            seen.len()
        );
        assert_eq!(seen[0].path(), want, "{path}");
        assert_eq!(seen[0].get("x-forwarded-proto"), Some("https"));
    }
    // No other Pulp path is public (FC `ProxyPass /pulp !`), the API included.
    for path in ["/pulp/api/v3/status/", "/pulp/api/v3/users/"] {
        assert_eq!(edge.https(path, Some("foreman"), &[]).code, 404, "{path}");
    }
    // /pub serves the CA, over both schemes.
    let ca = std::fs::read(&edge.files["ca.crt"]).unwrap();
    let a = edge.https("/pub/katello-server-ca.crt", None, &[]);
    assert_eq!((a.code, &a.body), (200, &ca));
    let a = edge.http("/pub/katello-server-ca.crt", &[]);
    assert_eq!((a.code, &a.body), (200, &ca));
    // Over HTTP: Foreman and the content app only.
    assert_eq!(edge.http("/pulp/content/org/a.rpm", &[]).code, 200);
    assert_eq!(
        edge.content.take()[0].get("x-forwarded-proto"),
        Some("http")
    );
    assert_eq!(edge.http("/pulpcore_registry/v2/", &[]).code, 200);
    assert!(
        edge.api.take().is_empty(),
        "/pulpcore_registry reached the API over HTTP"
    );
}

#[test]
fn edge_passes_content_the_verified_certificate_and_the_registry_the_admin_only_for_foreman() {
    let fm = default_resource();
    let edge = Edge::start(&fm);
    // Certguard reads X-CLIENT-CERT percent-decoded (pulp_certguard app/models.py unquote).
    edge.https("/pulp/content/org/lib/repo/a.rpm", Some("host"), &[]);
    let seen = edge.content.take();
    let got = seen[0].get("x-client-cert").expect("X-CLIENT-CERT passed");
    let pem = std::fs::read_to_string(&edge.files["host.crt"]).unwrap();
    assert_eq!(percent_decode(got).trim(), pem.trim());
    // FC: REMOTE-USER admin only for the certificate whose CN is Foreman's (Katello's
    // registry calls); any other verified certificate gets none.
    edge.https(
        "/pulpcore_registry/v2/",
        Some("foreman"),
        &["-H", "REMOTE-USER: intruder"],
    );
    edge.https(
        "/pulpcore_registry/v2/",
        Some("host"),
        &["-H", "REMOTE-USER: admin"],
    );
    let seen = edge.api.take();
    assert_eq!(seen[0].all("remote-user"), ["admin"], "{seen:?}");
    assert_eq!(seen[1].all("remote-user"), Vec::<&str>::new(), "{seen:?}");
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// pulp-control with an echo server as pulp-api; `tests/e2e/pulp.rs` replays Katello's calls
/// against it in front of the real pulpcore.
pub struct Control {
    _nginx: Nginx,
    pub port: u16,
    pub files: BTreeMap<String, PathBuf>,
    _dir: tempfile::TempDir,
}

impl Control {
    /// The rendered pulp-control configuration, its upstream moved to `api_port`.
    pub fn start(fm: &Foreman, control_conf: &str, api_port: u16) -> Control {
        let dir = tempfile::Builder::new()
            .prefix("fb-pulp-control-")
            .tempdir()
            .unwrap();
        let files = certificate_files(fm, dir.path());
        std::fs::copy(&files["pulp-control.crt"], dir.path().join("tls.crt")).unwrap();
        std::fs::copy(&files["pulp-control.key"], dir.path().join("tls.key")).unwrap();
        let port = free_port();
        let conf = localize(
            control_conf,
            &[
                ("listen 8443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
                (
                    "server pulp-api.foreman.svc:24817;",
                    format!("server 127.0.0.1:{api_port};"),
                ),
                ("/etc/nginx/pki/", format!("{}/", dir.path().display())),
            ],
        );
        let n = Nginx::start(dir.path(), &conf, &[port]);
        Control {
            _nginx: n,
            port,
            files,
            _dir: dir,
        }
    }

    /// A request as Katello makes it: `https://pulp-control.foreman.svc/<path>` with the CA
    /// file, and Foreman's client certificate when `cert` is `foreman` (or another's).
    pub fn call(&self, path: &str, cert: Option<&str>, extra: &[&str]) -> nginx::Answer {
        let c = cert.map(|n| {
            (
                self.files[&format!("{n}.crt")].as_path(),
                self.files[&format!("{n}.key")].as_path(),
            )
        });
        curl(
            &format!("https://pulp-control.foreman.svc:{}{path}", self.port),
            Some(&self.files["ca.crt"]),
            c,
            extra,
        )
    }
}

#[test]
fn pulp_control_lets_the_status_ping_in_without_a_certificate_and_only_foreman_in_as_admin() {
    let fm = default_resource();
    let api = Echo::start();
    let control = Control::start(&fm, &pulp::control_config(&fm), api.port);
    // Katello's ping: no client certificate; a REMOTE-USER it might carry is removed.
    let a = control.call(pulp::STATUS_PATH, None, &["-H", "REMOTE-USER: admin"]);
    assert_eq!(a.code, 200, "{}", a.text());
    // Foreman's certificate: the admin, whatever it claims itself.
    let a = control.call(
        "/pulp/api/v3/repositories/",
        Some("foreman"),
        &["-H", "REMOTE-USER: intruder"],
    );
    assert_eq!(a.code, 200, "{}", a.text());
    // Anyone else: 403 (signed by the CA, another name) or 400 (another CA); without a
    // certificate 403, a REMOTE-USER header notwithstanding.
    for (cert, code) in [
        (Some("host"), 403),
        (Some("stranger"), 400),
        (Some("self"), 400),
        (None, 403),
    ] {
        let a = control.call(
            "/pulp/api/v3/repositories/",
            cert,
            &["-H", "REMOTE-USER: admin", "-H", "REMOTE_USER: admin"],
        );
        assert_eq!(a.code, code, "{cert:?}: {}", a.text());
    }
    let seen = api.seen();
    assert_eq!(
        seen.len(),
        2,
        "only the ping and Foreman's call reached Pulp: {seen:?}"
    );
    assert_eq!(seen[0].path(), "/pulp/api/v3/status/");
    assert!(seen[0].all("remote-user").is_empty(), "{seen:?}");
    assert_eq!(seen[1].all("remote-user"), ["admin"], "{seen:?}");
    assert!(!seen[1].headers.iter().any(|(_, v)| v.contains("intruder")));
}

/// The DNS names in a PEM certificate's subjectAltName, as openssl prints them.
fn sans(pem: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.pem");
    std::fs::write(&f, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&f)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split([',', '\n'])
        .filter_map(|s| s.trim().strip_prefix("DNS:").map(str::to_string))
        .collect()
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap();
    host_port.split(':').next().unwrap().to_string()
}

#[test]
fn every_name_a_server_is_called_by_is_in_its_certificate() {
    use foreman_operator::resources::proxy;
    let fm = default_resource();
    let certs = certificates::generate(&fm).unwrap();
    let edge_sans = sans(&certs[certificates::SERVER_CRT]);
    // Hosts call the edge by the hostname, pods (the proxy's callbacks) by its Service.
    for name in edge::names(&fm)
        .into_iter()
        .chain([host_of(&edge::internal_url(&fm))])
    {
        assert!(
            edge_sans.contains(&name),
            "edge: {name} not in {edge_sans:?}"
        );
    }
    // Foreman calls the proxy at its registered URL, and admits its callbacks when a name of
    // its certificate is that URL's host (smart_proxy_auth.rb).
    let proxy_sans = sans(&certs[certificates::PROXY_CRT]);
    let registered = host_of(&proxy::registered_url(&fm));
    assert!(
        proxy_sans.contains(&registered),
        "proxy: {registered} not in {proxy_sans:?}"
    );
    assert_eq!(proxy::registered_name(&fm), registered);
    // Katello calls pulp-control at the Pulp smart proxy's pulp_url.
    let control_sans = sans(&certs[certificates::PULP_CONTROL_CRT]);
    let control = host_of(&pulp::control_url(&fm));
    assert!(
        control_sans.contains(&control),
        "pulp-control: {control} not in {control_sans:?}"
    );
}

/// In maintenance (`spec.maintenance`, set by backup, restore and upgrade) the edge answers
/// every path but /pub with 503, a page that says so and Retry-After, on both ports; hosts can
/// still fetch the CA. nginx runs the rendered configuration; no backend runs at all.
#[test]
fn in_maintenance_the_edge_answers_503_with_a_page_saying_so_and_still_serves_the_ca() {
    let mut fm = default_resource();
    fm.spec.maintenance = true;
    let dir = tempfile::Builder::new()
        .prefix("fb-edge-maint-")
        .tempdir()
        .unwrap();
    let files = certificate_files(&fm, dir.path());
    let (http, https) = (free_port(), free_port());
    let d = dir.path().display();
    let conf = localize(
        &edge::config(&fm),
        &[
            ("listen 8080;", format!("listen 127.0.0.1:{http};")),
            ("listen 8443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
            ("/etc/nginx/pki/", format!("{d}/")),
            ("/srv/pub/", format!("{d}/pub/")),
        ],
    );
    assert!(
        !conf.contains("proxy_pass"),
        "nothing is passed on in maintenance:\n{conf}"
    );
    let _nginx = Nginx::start(dir.path(), &conf, &[http, https]);
    for path in ["/", "/users/login", "/rhsm/consumers", "/pulp/content/x/"] {
        for url in [
            format!("https://{HOST}:{https}{path}"),
            format!("http://{HOST}:{http}{path}"),
        ] {
            let a = curl(&url, Some(&files["ca.crt"]), None, &["-D", "-"]);
            assert_eq!(a.code, 503, "{url}: {}", a.text());
            let text = a.text();
            assert!(text.contains("Foreman is in maintenance"), "{url}: {text}");
            assert!(
                text.to_ascii_lowercase().contains("retry-after: 300"),
                "{url}: {text}"
            );
        }
    }
    let ca = curl(
        &format!("https://{HOST}:{https}/pub/katello-server-ca.crt"),
        Some(&files["ca.crt"]),
        None,
        &[],
    );
    assert_eq!(ca.code, 200);
    assert!(ca.text().starts_with("-----BEGIN CERTIFICATE-----"));

    // Out of maintenance the same paths reach the backends' routes again.
    fm.spec.maintenance = false;
    assert!(edge::config(&fm).contains("proxy_pass"));
    assert!(!edge::config(&fm).contains("return 503"));
}
