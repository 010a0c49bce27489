//! The operator's resident memory (target: idle RSS under 30 MiB), run as
//! `cargo bench -p foreman-box-tests --bench operator`.
//!
//! The release `foreman-box operator` runs against a stand-in API server on loopback that serves
//! one default Foreman resource and its database Secrets, accepts every write, and holds every
//! watch open, as an idle cluster does. After the first reconcile has settled, VmRSS is read from
//! /proc several times; the median is reported, with the peak (VmHWM).

#![allow(clippy::print_stdout, clippy::print_stderr)] // benchmarks and tests report to the terminal

use foreman_box_tests::foreman_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FOREMAN: &str = r#"{"apiVersion":"app.theforeman.org/v1alpha1","kind":"Foreman","metadata":{"name":"foreman","namespace":"foreman","uid":"u-1","generation":1,"resourceVersion":"1"},"spec":{"hostname":"foreman.example.com","dynflow_workers":2,"plugins":{"katello":true,"remote_execution":true}}}"#;
const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"foreman"},"data":{"host":"eA==","port":"eA==","name":"eA==","user":"eA==","password":"eA=="}}"#;

async fn serve(
    mut sock: tokio::net::TcpStream,
    writes: Arc<Mutex<u32>>,
    generated: Arc<Mutex<bool>>,
) -> std::io::Result<()> {
    loop {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buf.len() < header_end + len {
            let n = sock.read(&mut chunk).await?;
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[header_end..header_end + len]).into_owned();
        let mut first = head.lines().next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("").to_string();
        let path = target.split('?').next().unwrap().to_string();
        if target.contains("watch=true") || target.contains("watch=1") {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n").await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        let (code, reply) = match method.as_str() {
            "GET" if path.ends_with("/foremans") => (200, format!(r#"{{"apiVersion":"v1","kind":"List","metadata":{{"resourceVersion":"1"}},"items":[{FOREMAN}]}}"#)),
            "GET" if path.ends_with("/secrets/foreman-generated") && !*generated.lock().unwrap() => (404, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#.to_string()),
            "GET" if path.contains("/secrets/") => (200, SECRET.to_string()),
            "GET" => (200, r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"},"items":[]}"#.to_string()),
            "POST" => {
                *generated.lock().unwrap() = true;
                (201, body)
            }
            "PATCH" if path.ends_with("/status") => {
                *writes.lock().unwrap() += 1;
                (200, FOREMAN.to_string())
            }
            _ => {
                *writes.lock().unwrap() += 1;
                (200, body)
            }
        };
        let msg = format!("HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}", reply.len());
        sock.write_all(msg.as_bytes()).await?;
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    // SAFETY: set before any thread that reads the environment is started.
    unsafe { std::env::set_var("FOREMAN_BOX_BENCH", "1") };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let writes = Arc::new(Mutex::new(0));
    let generated = Arc::new(Mutex::new(false));
    {
        let (writes, generated) = (writes.clone(), generated.clone());
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, writes.clone(), generated.clone()));
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: u\n  user: {{token: bench}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u, namespace: foreman}}\ncurrent-context: c\n")).unwrap();
    let mut child = foreman_box(&["operator", "run"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "foreman")
        .env("FOREMAN_BOX_LOG", "warn")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let pid = child.id();
    let mut samples: Vec<u64> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            status_kib(pid, "VmRSS:")
        })
        .collect();
    samples.sort();
    let hwm = status_kib(pid, "VmHWM:");
    let writes = *writes.lock().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        writes > 0,
        "the operator never reconciled against the stand-in API server"
    );
    println!(
        "operator idle RSS after one reconcile ({writes} writes): median {:.1} MiB, peak {:.1} MiB",
        samples[2] as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
