//! Pulp's mTLS front end, run for real: Debian's nginx (scripts/test.sh installs nginx-light and
//! curl) with the rendered `default.conf`, certificates from `certificates::generate`, and a
//! loopback upstream standing in for pulp-api that records the headers it receives. Only the
//! listen address, the upstream address and the certificate directory are changed to loopback
//! and a temporary directory.

use foreman_operator::resources::{certificates, pulp, read_foreman};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Nginx(Child);
impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in for pulp-api: answers 200 and keeps each request's header block.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            log.lock().unwrap().push(head);
            let mut s: TcpStream = stream;
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, seen)
}

fn curl(dir: &Path, port: u16, cert: Option<&str>, extra: &[&str]) -> String {
    let host = "pulp-control.foreman.svc";
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ])
    .arg("--cacert")
    .arg(dir.join("ca.crt"))
    .args(["--resolve", &format!("{host}:{port}:127.0.0.1")]);
    if let Some(name) = cert {
        cmd.arg("--cert")
            .arg(dir.join(format!("{name}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{name}.key")));
    }
    cmd.args(extra)
        .arg(format!("https://{host}:{port}/pulp/api/v3/status/"));
    let out = cmd
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn front_end_maps_only_the_foreman_client_certificate_to_the_pulp_admin() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/default.cr.yaml"
    ))
    .unwrap();
    let fm = read_foreman("default", &text).unwrap();
    let certs = certificates::generate(&fm).unwrap();
    let dir = std::env::temp_dir().join(format!("fb-pulp-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, key) in [
        ("ca.crt", certificates::CA_CRT),
        ("tls.crt", certificates::PULP_CONTROL_CRT),
        ("tls.key", certificates::PULP_CONTROL_KEY),
        ("foreman.crt", certificates::CLIENT_CRT),
        ("foreman.key", certificates::CLIENT_KEY),
        // Signed by the same CA, for another name: must not become the admin.
        ("other.crt", certificates::CANDLEPIN_CRT),
        ("other.key", certificates::CANDLEPIN_KEY),
    ] {
        std::fs::write(dir.join(file), &certs[key]).unwrap();
    }
    let (up, seen) = upstream();
    let port = free_port();
    let conf = pulp::control_config(&fm);
    for needle in [
        "listen 8443 ssl;",
        "server pulp-api.foreman.svc:24817;",
        "/etc/nginx/pki/",
    ] {
        assert!(conf.contains(needle), "rendered config lacks {needle:?}");
    }
    let conf = conf
        .replace("listen 8443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace(
            "server pulp-api.foreman.svc:24817;",
            &format!("server 127.0.0.1:{up};"),
        )
        .replace("/etc/nginx/pki/", &format!("{}/", dir.display()));
    std::fs::write(dir.join("default.conf"), conf).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/default.conf;\n}}\n"
        ),
    )
    .unwrap();
    let check = Command::new("nginx")
        .arg("-t")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .output()
        .expect("nginx runs (scripts/test.sh installs nginx-light)");
    assert!(
        check.status.success(),
        "nginx -t refuses the rendered config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Foreman's client certificate: proxied, as the admin, even when it sends its own header.
    assert_eq!(
        curl(
            &dir,
            port,
            Some("foreman"),
            &["-H", "REMOTE-USER: intruder"]
        ),
        "200"
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("remote-user: admin\r\n"), "{}", heads[0]);
    assert!(!heads[0].contains("intruder"), "{}", heads[0]);
    assert!(
        heads[0].contains("x-forwarded-proto: https\r\n"),
        "{}",
        heads[0]
    );

    // Another certificate from the same CA: 403, nothing reaches Pulp.
    assert_eq!(
        curl(&dir, port, Some("other"), &["-H", "REMOTE-USER: admin"]),
        "403"
    );
    // No certificate: nginx refuses (400, "No required SSL certificate was sent").
    assert_eq!(curl(&dir, port, None, &["-H", "REMOTE-USER: admin"]), "400");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only Foreman's request reached Pulp"
    );
    drop(_nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
