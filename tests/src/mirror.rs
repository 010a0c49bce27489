//! A loopback HTTP/1.1 server standing in for the k3s release host and channel service: serves
//! files with Range support, answers redirects, and misbehaves on request (5xx, a cut
//! connection, a slow stream) so the downloader's recovery is tested for real.

use crate::loopback::Loopback;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    redirects: HashMap<String, String>,
    /// Answer 503 this many more times.
    failures: HashMap<String, u32>,
    /// Close the connection after this many body bytes, once.
    cuts: HashMap<String, usize>,
    /// Pause this long after each 64 KiB.
    slow: HashMap<String, Duration>,
    log: Vec<Request>,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

#[derive(Clone)]
pub struct Mirror {
    server: Loopback,
    state: Arc<Mutex<State>>,
}

impl Mirror {
    /// Starts serving on 127.0.0.1 on a free port, on its own runtime thread.
    pub fn start() -> Mirror {
        let state = Arc::new(Mutex::new(State::default()));
        Mirror {
            server: Loopback::start(2, state.clone(), serve),
            state,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Serves `bytes` at `path` (as it appears on the wire, e.g. `/v1.2.3%2Bk3s1/k3s`).
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), Arc::new(bytes));
    }

    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path.to_string(), location.to_string());
    }

    pub fn fail_next(&self, path: &str, times: u32) {
        self.state
            .lock()
            .unwrap()
            .failures
            .insert(path.to_string(), times);
    }

    pub fn cut_next(&self, path: &str, after: usize) {
        self.state
            .lock()
            .unwrap()
            .cuts
            .insert(path.to_string(), after);
    }

    pub fn slow(&self, path: &str, pause_per_64k: Duration) {
        self.state
            .lock()
            .unwrap()
            .slow
            .insert(path.to_string(), pause_per_64k);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requests_for(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn serve(mut sock: TcpStream, st: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.trim().to_string());

    enum Reply {
        Status(u16),
        Redirect(String),
        Body {
            data: Arc<Vec<u8>>,
            start: usize,
            cut: Option<usize>,
            slow: Option<Duration>,
        },
    }
    let reply = {
        let mut s = st.lock().unwrap();
        let reply = if let Some(n) = s.failures.get_mut(&path).filter(|n| **n > 0) {
            *n -= 1;
            Reply::Status(503)
        } else if let Some(loc) = s.redirects.get(&path) {
            Reply::Redirect(loc.clone())
        } else if let Some(data) = s.files.get(&path).cloned() {
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if start > 0 && start >= data.len() {
                Reply::Status(416)
            } else {
                let cut = s.cuts.remove(&path);
                let slow = s.slow.get(&path).copied();
                Reply::Body {
                    data,
                    start,
                    cut,
                    slow,
                }
            }
        } else {
            Reply::Status(404)
        };
        let status = match &reply {
            Reply::Status(c) => *c,
            Reply::Redirect(_) => 302,
            Reply::Body { start, .. } => {
                if *start > 0 {
                    206
                } else {
                    200
                }
            }
        };
        s.log.push(Request {
            path: path.clone(),
            range: range.clone(),
            status,
        });
        reply
    };
    match reply {
        Reply::Status(code) => {
            let msg =
                format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(msg.as_bytes()).await?;
        }
        Reply::Redirect(loc) => {
            let msg = format!("HTTP/1.1 302 Found\r\nlocation: {loc}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(msg.as_bytes()).await?;
        }
        Reply::Body {
            data,
            start,
            cut,
            slow,
        } => {
            let total = data.len();
            let head = if start > 0 {
                format!("HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{total}\r\naccept-ranges: bytes\r\nconnection: close\r\n\r\n", total - start, total - 1)
            } else {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\naccept-ranges: bytes\r\nconnection: close\r\n\r\n")
            };
            sock.write_all(head.as_bytes()).await?;
            let end = cut.map(|c| (start + c).min(total)).unwrap_or(total);
            let step = if slow.is_some() { 64 << 10 } else { 1 << 20 };
            let mut at = start;
            while at < end {
                let next = (at + step).min(end);
                sock.write_all(&data[at..next]).await?;
                at = next;
                if let Some(d) = slow {
                    tokio::time::sleep(d).await;
                }
            }
            sock.flush().await?;
            if cut.is_some() {
                // Drop the connection mid-body.
                return Ok(());
            }
        }
    }
    sock.shutdown().await
}
