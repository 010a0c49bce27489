//! The operator's nginx front ends run for real: Debian's nginx (scripts/test.sh installs
//! nginx-light) with a rendered `default.conf`, moved to loopback ports and a temporary
//! directory, in front of stand-in upstreams; `curl` as the client (as hosts and Katello are).
//! Only what [`localize`] names is changed, and it refuses to change what is not there, so a
//! test notices when the render moves.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long nginx, Puma and each request may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
pub const REQUEST_TIMEOUT_SECS: &str = "10";

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// `conf` with each `(from, to)` replaced; panics if a `from` is not in it.
pub fn localize(conf: &str, swaps: &[(&str, String)]) -> String {
    let mut out = conf.to_string();
    for (from, to) in swaps {
        assert!(
            out.contains(from),
            "the rendered configuration no longer contains {from:?}:\n{conf}"
        );
        out = out.replace(from, to);
    }
    out
}

/// A running nginx; killed when dropped.
pub struct Nginx {
    child: Child,
    pub dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Writes `default.conf` into `dir` inside a minimal main configuration (as the image's
    /// nginx.conf includes conf.d/*.conf in its `http` block), has `nginx -t` accept it, starts
    /// nginx and waits until every port in `ports` accepts connections.
    pub fn start(dir: &Path, default_conf: &str, ports: &[u16]) -> Nginx {
        std::fs::write(dir.join("default.conf"), default_conf).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/default.conf;\n}}\n"
            ),
        )
        .unwrap();
        let args = |c: &mut Command| {
            c.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .stdin(Stdio::null());
        };
        let mut check = Command::new("nginx");
        args(&mut check);
        let check = check
            .arg("-t")
            .output()
            .expect("nginx runs (scripts/test.sh installs nginx-light)");
        assert!(
            check.status.success(),
            "nginx -t refuses the rendered configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new("nginx");
        args(&mut cmd);
        let child = cmd.spawn().expect("nginx starts");
        let n = Nginx {
            child,
            dir: dir.to_path_buf(),
        };
        for port in ports {
            wait_for_port(*port, "nginx", || n.error_log());
        }
        n
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

fn wait_for_port(port: u16, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET /path HTTP/1.1`
    pub line: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// The values of a header (any spelling given is matched lowercased, exactly).
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// A stand-in upstream on loopback: answers `200 ok` to every request and keeps what it got.
pub struct Echo {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Echo {
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Echo { port, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received since the call before.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((n, v)) = h.trim_end().split_once(':') {
                let n = n.trim().to_ascii_lowercase();
                let v = v.trim().to_string();
                if n == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((n, v));
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        log.lock().unwrap().push(Seen {
            line: line.trim_end().to_string(),
            headers,
        });
        let mut s = &stream;
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// Puma (Debian's, the server of Foreman's image) with a Rack app standing in for Foreman: it
/// answers with the `HTTP_*` environment Puma made of the request and, when there is an
/// `HTTP_SSL_CLIENT_CERT`, the certificate read from it the way Foreman's
/// `CertificateExtract` and Katello's `Cert::RhsmClient` read it (PEM armour and whitespace
/// removed, the rest base64-decoded, parsed by Ruby's OpenSSL).
pub struct Puma {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for Puma {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RACK_APP: &str = r#"require 'json'
require 'openssl'
require 'base64'
run lambda { |env|
  seen = env.select { |k, _| k.start_with?('HTTP_') }
  cert = env['HTTP_SSL_CLIENT_CERT'].to_s
  read = nil
  unless cert.empty?
    der = Base64.decode64(cert.gsub('-----BEGIN CERTIFICATE-----', '').gsub('-----END CERTIFICATE-----', '').gsub(/\s+/, ''))
    c = OpenSSL::X509::Certificate.new(der)
    san = c.extensions.find { |e| e.oid == 'subjectAltName' }
    read = { 'subject' => c.subject.to_s, 'san' => san ? san.value : '', 'der_sha256' => OpenSSL::Digest::SHA256.hexdigest(c.to_der) }
  end
  [200, { 'content-type' => 'application/json' }, [JSON.generate('path' => env['PATH_INFO'], 'env' => seen, 'certificate' => read)]]
}
"#;

impl Puma {
    pub fn start(dir: &Path) -> Puma {
        let port = free_port();
        let app = dir.join("config.ru");
        std::fs::write(&app, RACK_APP).unwrap();
        let log = dir.join("puma.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("puma")
            .args(["--environment", "production", "--threads", "1:4", "--bind"])
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg(&app)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("puma runs (scripts/test.sh installs Debian's puma)");
        let p = Puma { child, port, log };
        wait_for_port(port, "puma", || p.log());
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// curl `url` (whose host is resolved to 127.0.0.1), trusting `ca` when given, with the client
/// certificate `cert` (certificate and key files) when given, and extra arguments.
pub fn curl(url: &str, ca: Option<&Path>, cert: Option<(&Path, &Path)>, extra: &[&str]) -> Answer {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time"])
        .arg(REQUEST_TIMEOUT_SECS)
        .args(["--resolve", &format!("{host_port}:127.0.0.1")]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = cmd
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&body[nl..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(nl);
    assert!(
        code != 0,
        "curl {url} got no HTTP answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Answer { code, body }
}

/// Writes the named PEM files (name, content) into `dir`; returns their paths by name.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) -> BTreeMap<String, PathBuf> {
    files
        .iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            (name.to_string(), p)
        })
        .collect()
}
