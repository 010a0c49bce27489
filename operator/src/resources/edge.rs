//! The edge: the one front door of a Foreman, doing what foremanctl's Apache vhosts do (FC
//! src/roles/httpd/templates/foreman-ssl-vhost.conf.j2 on 443, foreman-vhost.conf.j2 on 80).
//! An nginx Deployment rendered here and run for real in the tests, published on the host's 80
//! and 443 by k3s's service load balancer (a `LoadBalancer` Service).
//!
//! Why our own nginx and not k3s's Traefik: Foreman, Katello and Pulp authenticate hosts and
//! smart proxies by the client certificate the front end verified and passes on in headers
//! (`SSL-CLIENT-S-DN`, `SSL-CLIENT-VERIFY`, `SSL-CLIENT-CERT`, `X-CLIENT-CERT`), and trust
//! `REMOTE-USER`. The front end must verify optionally (hosts without certificates use the same
//! name), pass exactly what it verified, and overwrite or drop whatever a client sent under
//! those names. Traefik's Ingress support cannot be told to do that (its pass-TLS-client-cert
//! middleware has its own header names and formats, none of which Foreman reads), and in TLS
//! passthrough Traefik would only forward bytes: something behind it must still terminate TLS,
//! and every client address would become Traefik's. So k3s runs with `disable: [traefik]` (the
//! installer's k3s config) and this Service takes 80 and 443 through ServiceLB, which binds a
//! port for one Service only. A component we render is also one we can run in the tests
//! (Debian's nginx with this very configuration, in front of stand-ins that echo what they
//! receive) — Traefik cannot be run here.
//!
//! The Service is named `foreman`, the name the server certificate carries next to the
//! hostname (`foreman.<namespace>.svc`), so pods that call Foreman back (the smart proxy) reach
//! it through the edge over verified TLS with a certificate that matches; Foreman's own pods
//! are behind `foreman-web`.

use super::certificates::{CA_CRT, SERVER_CRT, SERVER_KEY, TLS_SECRET};
use super::core::{FOREMAN_PORT, WEB_SERVICE};
use super::nginx::{block, directive, quoted, word, Directive};
use super::pulp::{API_PORT, CONTENT_PORT};
use super::{
    annotate_pods, config_map, config_volume, deployment, dir_mount, empty_volume, file_mount,
    image, metadata, selector, service_port, short_hash, strings, svc, Component, Container,
    Object, Pod, RunAs,
};
use crate::crd::Foreman;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use serde_json::{json, Value};

/// The Service (the server certificate's `foreman.<namespace>.svc`) and the Deployment.
pub const SERVICE: &str = "foreman";
pub use super::EDGE as NAME;
pub const CONFIG_KEY: &str = "default.conf";
/// The ports the host publishes (FC: Apache on 80 and 443).
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;
/// The container's ports: the image runs unprivileged with every capability dropped, so it
/// cannot bind below 1024; the Service maps 80 and 443 onto these.
pub const HTTP_CONTAINER_PORT: u16 = 8080;
pub const HTTPS_CONTAINER_PORT: u16 = 8443;
/// Where the certificates and the public files are mounted.
pub const PKI: &str = "/etc/nginx/pki";
pub const PUB_DIR: &str = "/srv/pub";
/// FC src/roles/httpd/tasks/main.yml "Copy CA certificate to pub directory for client trust".
pub const PUB_CA: &str = "katello-server-ca.crt";
/// The longest certificate passed to Foreman in `SSL-CLIENT-CERT`, in 64-character PEM lines
/// (3 KiB of DER: RSA 4096 leaves with long SAN lists fit; a longer one is passed as absent and
/// Foreman falls back to the subject DN, as it does for any request without the header).
pub const CERT_LINES: usize = 64;

/// Every header a client could use to pose as verified or as someone, and which the edge
/// therefore always sets itself or removes (an empty value makes nginx drop the header). The
/// spellings with hyphens are the ones that arrive: nginx drops client headers with underscores
/// (`underscores_in_headers off`, set explicitly), and Puma, which turns both spellings into the
/// same `HTTP_SSL_CLIENT_S_DN`, keeps the hyphen one when both come (Puma 6.4.3/5.6.9). The
/// underscore spellings are removed too, in case someone turns underscores on.
/// FC foreman-ssl-vhost.conf.j2 sets SSL_CLIENT_{S_DN,CERT,VERIFY} and unsets REMOTE-USER and
/// REMOTE-USER-{EMAIL,FIRSTNAME,LASTNAME,GROUPS}; X-RHSM-SSL-CLIENT-CERT is the header Katello
/// 4.20 reads *first* for a host's certificate (app/services/katello/authentication/
/// client_authentication.rb `cert_from_request`) and FC does not remove it: it must never come
/// from a client. Forwarded, X-Forwarded-Ssl and X-Forwarded-Scheme are read by Rack for the
/// scheme (so `request.ssl?`) and are set or removed for the same reason.
const IDENTITY_HEADERS: &[&str] = &[
    "SSL-CLIENT-S-DN",
    "SSL-CLIENT-VERIFY",
    "SSL-CLIENT-CERT",
    "X-CLIENT-CERT",
    "X-RHSM-SSL-CLIENT-CERT",
    "REMOTE-USER",
    "REMOTE-USER-EMAIL",
    "REMOTE-USER-FIRSTNAME",
    "REMOTE-USER-LASTNAME",
    "REMOTE-USER-GROUPS",
];

pub fn objects(fm: &Foreman) -> Vec<Object> {
    let config = config(fm);
    // A changed configuration rolls the pod (it is mounted by subPath, which is not updated).
    let checksum = short_hash(&config);
    vec![
        config_map(fm, NAME, NAME, strings([(CONFIG_KEY, config)])).into(),
        service(fm).into(),
        deployment_object(fm, checksum).into(),
    ]
}

/// A location's backend: a Service and its port, and the path the upstream gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The nginx location (`= /x` exact, otherwise a prefix).
    pub location: &'static str,
    pub service: &'static str,
    pub port: u16,
    /// The URI prefix the backend receives instead of the location's (None: unchanged).
    pub rewrite: Option<&'static str>,
    /// What the backend learns of the client certificate and user.
    pub identity: Identity,
    pub read_timeout: &'static str,
}

/// What a route passes on about who the client is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Identity {
    /// Foreman: the verified certificate's DN, verification result and certificate.
    Foreman,
    /// Pulp's content app: the verified certificate, escaped, in `X-CLIENT-CERT` (certguard
    /// checks it against the content's CA itself).
    ContentCertificate,
    /// Pulp's API: `REMOTE-USER: admin` only for Foreman's certificate, nothing else.
    PulpAdmin,
    /// Nothing: every identity header removed.
    Anonymous,
}

/// The HTTPS routes, in FC foreman-ssl-vhost.conf.j2's terms. /pub is static (below); every
/// other /pulp path answers 404 (FC `ProxyPass /pulp !`); the rest goes to Foreman, /rhsm
/// included, with websockets (FC `ProxyPass / ... timeout=900 upgrade=websocket`).
pub fn https_routes(fm: &Foreman) -> Vec<Route> {
    let mut r = vec![Route {
        location: "/",
        service: WEB_SERVICE,
        port: FOREMAN_PORT,
        rewrite: None,
        identity: Identity::Foreman,
        read_timeout: "900s",
    }];
    if fm.spec.plugins.katello {
        let content = |location, rewrite, identity| Route {
            location,
            service: "pulp-content",
            port: CONTENT_PORT,
            rewrite,
            identity,
            read_timeout: "600s",
        };
        let api = |location, rewrite, identity| Route {
            location,
            service: "pulp-api",
            port: API_PORT,
            rewrite,
            identity,
            read_timeout: "600s",
        };
        r.extend([
            // FC <Location "/pulp/content">: X-CLIENT-CERT from the verified certificate.
            content("/pulp/content", None, Identity::ContentCertificate),
            // Not in FC 2.0.0; FK S/ingress.yaml sends /pulp/isos/* to the content app as
            // /pulp/content/*, with the content headers.
            content(
                "/pulp/isos/",
                Some("/pulp/content/"),
                Identity::ContentCertificate,
            ),
            // FC ProxyPass /pulp/container/ to the content app, nothing added.
            content("/pulp/container/", None, Identity::Anonymous),
            // FC ProxyPass /pulp/assets/ to the API, nothing added.
            api("/pulp/assets/", None, Identity::Anonymous),
            // FC <Location "/pulpcore_registry/v2/">: the API's /v2/ with REMOTE-USER admin when
            // the verified certificate's CN is the Foreman's (Katello's registry calls,
            // app/lib/katello/resources/registry.rb, with Foreman's client certificate).
            api("/pulpcore_registry/v2/", Some("/v2/"), Identity::PulpAdmin),
        ]);
    }
    r
}

/// The HTTP routes (FC foreman-vhost.conf.j2): Foreman (which redirects to HTTPS itself, except
/// what hosts fetch over HTTP such as provisioning templates) and /pulp/content (hosts' yum
/// over http), nothing about certificates; /pub static; other /pulp paths 404.
pub fn http_routes(fm: &Foreman) -> Vec<Route> {
    https_routes(fm)
        .into_iter()
        .filter(|r| r.location == "/" || r.location == "/pulp/content")
        .map(|r| Route {
            identity: Identity::Anonymous,
            ..r
        })
        .collect()
}

/// The nginx configuration (an `http`-context file, as the image's nginx.conf includes
/// conf.d/*.conf), through the structured builder in [`super::nginx`].
pub fn config(fm: &Foreman) -> String {
    let mut conf = maps(fm);
    conf.push(server(fm, false));
    conf.push(server(fm, true));
    // The hostname is checked against the CRD's DNS pattern where the resource is read and the
    // namespace is a DNS label: every value here is a DNS name, a constant or a regex of one.
    super::nginx::render(&conf).expect("the edge configuration has only DNS names and constants")
}

/// Variables the locations use. Each passes something only for a certificate nginx verified
/// against the CA (`$ssl_client_verify` is `SUCCESS`); with `ssl_verify_client optional` a
/// certificate that fails is refused with 400 before any location runs, so this is a second
/// lock, not the only one.
fn maps(fm: &Foreman) -> Vec<Directive> {
    let verified = |var: &str, value: &str| {
        block(
            "map",
            vec![word("$ssl_client_verify"), word(var)],
            vec![
                directive("default", vec![quoted("")]),
                directive("SUCCESS", vec![word(value)]),
            ],
        )
    };
    vec![
        // FC `upgrade=websocket`: the Upgrade handshake is passed on.
        block(
            "map",
            vec![word("$http_upgrade"), word("$edge_connection")],
            // (nginx tries no regex on an empty value: the default is the empty case.)
            vec![
                directive("default", vec![quoted("")]),
                directive("~.", vec![word("upgrade")]),
            ],
        ),
        verified("$edge_client_s_dn", "$ssl_client_s_dn"),
        // Foreman (app/services/certificate_extract.rb) and Katello (app/services/cert/
        // rhsm_client.rb) strip the PEM armour and whitespace and base64-decode the rest.
        // Puma refuses folded header lines (nginx's `$ssl_client_cert`) and neither decodes
        // percent-escapes (`$ssl_client_escaped_cert`), so the base64 body is passed on one
        // line, joined by a regex over the PEM.
        block(
            "map",
            vec![word("$ssl_client_raw_cert"), word("$edge_cert_body")],
            vec![
                directive("default", vec![quoted("")]),
                directive(pem_body_regex(), vec![word(pem_body_value())]),
            ],
        ),
        verified("$edge_client_cert", "$edge_cert_body"),
        // pulp_certguard (pulp_certguard/app/models.py) unquotes X-CLIENT-CERT: the escaped PEM.
        verified("$edge_client_escaped_cert", "$ssl_client_escaped_cert"),
        // FC: REMOTE-USER admin iff the verified certificate's CN is the Foreman's.
        block(
            "map",
            vec![word("$edge_client_s_dn"), word("$edge_pulp_admin")],
            vec![
                directive("default", vec![quoted("")]),
                directive(super::pulp::cn_pattern(fm), vec![word("admin")]),
            ],
        ),
    ]
}

/// `~^-----BEGIN CERTIFICATE-----\n(?<c01>B)\n(?:(?<c02>B)\n)?...-----END CERTIFICATE-----\n?$`
/// with B the base64 alphabet: the lines of a PEM certificate, each captured.
fn pem_body_regex() -> String {
    let line = "[A-Za-z0-9+/=]+";
    let mut r = format!("~^-----BEGIN\\x20CERTIFICATE-----\\n(?<c01>{line})\\n");
    for i in 2..=CERT_LINES {
        r.push_str(&format!("(?:(?<c{i:02}>{line})\\n)?"));
    }
    r.push_str("-----END\\x20CERTIFICATE-----\\n?$");
    r
}

fn pem_body_value() -> String {
    (1..=CERT_LINES).map(|i| format!("$c{i:02}")).collect()
}

fn server(fm: &Foreman, tls: bool) -> Directive {
    let mut body = if tls {
        vec![
            directive(
                "listen",
                vec![word(HTTPS_CONTAINER_PORT.to_string()), word("ssl")],
            ),
            // FC SSLCertificateFile/KeyFile: the server certificate for the hostname.
            directive("ssl_certificate", vec![word(format!("{PKI}/{SERVER_CRT}"))]),
            directive(
                "ssl_certificate_key",
                vec![word(format!("{PKI}/{SERVER_KEY}"))],
            ),
            // FC SSLVerifyClient optional, SSLVerifyDepth 3, SSLCACertificateFile (the CA).
            directive(
                "ssl_client_certificate",
                vec![word(format!("{PKI}/{CA_CRT}"))],
            ),
            directive("ssl_verify_client", vec![word("optional")]),
            directive("ssl_verify_depth", vec![word("3")]),
            directive("ssl_protocols", vec![word("TLSv1.2"), word("TLSv1.3")]),
        ]
    } else {
        vec![directive(
            "listen",
            vec![word(HTTP_CONTAINER_PORT.to_string())],
        )]
    };
    body.extend([
        directive("server_name", vec![word("_")]),
        directive("server_tokens", vec![word("off")]),
        // Uploads (content, manifests) go through unbounded, as through Apache.
        directive("client_max_body_size", vec![word("0")]),
        // Client headers with underscores never reach a backend (the default, made explicit:
        // the identity headers rely on it, see IDENTITY_HEADERS).
        directive("underscores_in_headers", vec![word("off")]),
        directive("ignore_invalid_headers", vec![word("on")]),
        // FC Alias /pub with Indexes: the CA hosts trust, readable by anyone.
        block(
            "location",
            vec![word("/pub/")],
            vec![
                directive("alias", vec![word(format!("{PUB_DIR}/"))]),
                directive("autoindex", vec![word("on")]),
            ],
        ),
    ]);
    if fm.spec.maintenance {
        // Every writer is stopped: one page says why, instead of a 502 from each backend; the
        // CA under /pub stays.
        body.push(block(
            "location",
            vec![word("/")],
            vec![
                directive("default_type", vec![word("text/html")]),
                directive(
                    "add_header",
                    vec![word("Retry-After"), word("300"), word("always")],
                ),
                directive("return", vec![word("503"), quoted(MAINTENANCE_PAGE)]),
            ],
        ));
        return block("server", vec![], body);
    }
    let routes = if tls {
        https_routes(fm)
    } else {
        http_routes(fm)
    };
    for r in &routes {
        body.push(location(fm, r, tls));
    }
    // FC `ProxyPass /pulp !`: no other /pulp path reaches Foreman.
    body.push(block(
        "location",
        vec![word("/pulp/")],
        vec![directive("return", vec![word("404")])],
    ));
    block("server", vec![], body)
}

/// What the edge answers (503) while the resource is in maintenance.
pub const MAINTENANCE_PAGE: &str = "<!DOCTYPE html><html><head><title>Foreman: maintenance</title></head><body><h1>Foreman is in maintenance</h1><p>A backup, restore or upgrade is running. Foreman is back when it ends; try again in a few minutes.</p></body></html>";

fn location(fm: &Foreman, r: &Route, tls: bool) -> Directive {
    let header = |name: &str, value: Value| {
        let arg = match value.as_str() {
            Some("") | None => quoted(""),
            Some(v) => word(v),
        };
        directive("proxy_set_header", vec![word(name), arg])
    };
    let mut body = vec![
        directive("proxy_http_version", vec![word("1.1")]),
        directive("proxy_request_buffering", vec![word("off")]),
        directive("proxy_read_timeout", vec![word(r.read_timeout)]),
        // FC ProxyPreserveHost On, ProxyAddHeaders On.
        header("Host", json!("$host")),
        header("X-Forwarded-For", json!("$proxy_add_x_forwarded_for")),
        header("X-Real-IP", json!("$remote_addr")),
        header("X-Forwarded-Host", json!("$host")),
        // FC RequestHeader set X-Forwarded-Proto https (http on 80); the public port, not the
        // container's, so Foreman builds URLs without :8443.
        header(
            "X-Forwarded-Proto",
            json!(if tls { "https" } else { "http" }),
        ),
        header(
            "X-Forwarded-Port",
            json!(if tls { HTTPS_PORT } else { HTTP_PORT }.to_string()),
        ),
        header("Forwarded", json!("")),
        header("X-Forwarded-Ssl", json!("")),
        header("X-Forwarded-Scheme", json!("")),
    ];
    if r.service == WEB_SERVICE {
        body.extend([
            header("Upgrade", json!("$http_upgrade")),
            header("Connection", json!("$edge_connection")),
        ]);
    } else {
        body.push(header("Connection", json!("")));
    }
    for name in IDENTITY_HEADERS {
        let value = match (tls, r.identity, *name) {
            (true, Identity::Foreman, "SSL-CLIENT-S-DN") => "$edge_client_s_dn",
            // NONE without a certificate, SUCCESS for a verified one (as Apache's).
            (true, Identity::Foreman, "SSL-CLIENT-VERIFY") => "$ssl_client_verify",
            (true, Identity::Foreman, "SSL-CLIENT-CERT") => "$edge_client_cert",
            (true, Identity::ContentCertificate, "X-CLIENT-CERT") => "$edge_client_escaped_cert",
            (true, Identity::PulpAdmin, "REMOTE-USER") => "$edge_pulp_admin",
            _ => "",
        };
        body.push(header(name, json!(value)));
        let underscored = name.replace('-', "_");
        body.push(header(&underscored, json!("")));
    }
    let upstream = format!("http://{}:{}", svc(fm, r.service), r.port);
    body.push(directive(
        "proxy_pass",
        vec![word(match r.rewrite {
            Some(path) => format!("{upstream}{path}"),
            None => upstream,
        })],
    ));
    block("location", vec![word(r.location)], body)
}

/// ServiceLB (klipper-lb) binds 80 and 443 on the node for it. `Local` keeps the client's
/// address where the load balancer can (one node: nothing is lost).
fn service(fm: &Foreman) -> Service {
    Service {
        metadata: metadata(fm, SERVICE, NAME),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            selector: selector(fm, NAME).match_labels,
            ports: Some(vec![
                service_port("http", HTTP_PORT, HTTP_CONTAINER_PORT),
                service_port("https", HTTPS_PORT, HTTPS_CONTAINER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The same pod shape as pulp-control (FK S/pulp-control-proxy.yaml): the image's own
/// entrypoint, read-only root, /tmp an emptyDir, TCP probes, the configuration by subPath.
fn deployment_object(fm: &Foreman, config_checksum: String) -> Deployment {
    let mut c = Container::new("nginx", image(fm, Component::PulpControl), &[]);
    c.ports = vec![
        ("http", HTTP_CONTAINER_PORT),
        ("https", HTTPS_CONTAINER_PORT),
    ];
    c.mounts = vec![
        file_mount("config", "/etc/nginx/conf.d/default.conf", CONFIG_KEY),
        dir_mount("certificates", PKI, true),
        dir_mount("pub", PUB_DIR, true),
        dir_mount("temporary", "/tmp", false),
    ];
    c.resources = Some(crate::profile::resources(
        &fm.spec,
        crate::profile::Sized::Nginx,
    ));
    c.probes = super::nginx_probes();
    // FK: the image's own entrypoint and command; a read-only root filesystem.
    c.read_only_root = true;
    let pod = Pod {
        // nginx-unprivileged's USER 101 (group 101).
        run_as: RunAs {
            user: Some(101),
            fs_group: 101,
            image_root: false,
        },
        init: vec![],
        containers: vec![c],
        volumes: vec![
            config_volume("config", NAME),
            super::secret_volume(
                "certificates",
                TLS_SECRET,
                &[
                    (CA_CRT, CA_CRT),
                    (SERVER_CRT, SERVER_CRT),
                    (SERVER_KEY, SERVER_KEY),
                ],
            ),
            super::secret_volume("pub", TLS_SECRET, &[(CA_CRT, PUB_CA)]),
            empty_volume("temporary", false),
        ],
        restart: "Always",
        grace_seconds: None,
    };
    let mut d = deployment(fm, NAME, 1, false, pod.render());
    annotate_pods(&mut d, strings([("checksum/config", config_checksum)]));
    d
}

/// The names a client reaches the edge by: the hostname (hosts) and the Service (pods). The
/// server certificate carries both ([`super::certificates::generate`]).
pub fn names(fm: &Foreman) -> Vec<String> {
    let mut n: Vec<String> = fm.spec.hostname.iter().cloned().collect();
    n.push(svc(fm, SERVICE));
    n
}

/// The URL pods call Foreman back on: through the edge, by the Service name the server
/// certificate carries, so the caller's client certificate is verified and passed on.
pub fn internal_url(fm: &Foreman) -> String {
    format!("https://{}", svc(fm, SERVICE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_regex_has_one_capture_per_line_and_the_value_joins_them() {
        assert_eq!(pem_body_regex().matches("(?<c").count(), CERT_LINES);
        assert!(pem_body_value().starts_with("$c01$c02"));
        assert!(pem_body_value().ends_with(&format!("$c{CERT_LINES}")));
    }
}
