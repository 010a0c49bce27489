//! A stand-in for the k3s binary, served by the loopback mirror to the booted Debian host.
//!
//! `k3s server` (the unit's ExecStart) tells systemd it is ready (sd_notify, as k3s does with
//! `Type=notify`), records each start in `/var/lib/k3s-standin/starts`, and after a delay marks
//! the API ready; `k3s kubectl get --raw=/readyz` and `k3s kubectl get nodes` answer as the real
//! ones do once it is. `/etc/k3s-standin.conf` tells it how to behave: `ready_after_secs=N`, or
//! `never_ready=true` for a server that starts and never answers (it says why on stderr, which
//! lands in the journal).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::time::Duration;

const CONF: &str = "/etc/k3s-standin.conf";
const STATE: &str = "/var/lib/k3s-standin";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = Path::new(&args[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let code = match (argv0.as_str(), rest.first().copied()) {
        ("kubectl", _) => kubectl(&rest),
        (_, Some("server")) => server(),
        (_, Some("kubectl")) => kubectl(&rest[1..]),
        (_, Some("--version")) => {
            println!("k3s version v1.33.5+k3s1 (stand-in)");
            0
        }
        _ => {
            eprintln!("k3s stand-in: unsupported arguments {rest:?}");
            2
        }
    };
    std::process::exit(code);
}

fn setting(key: &str) -> Option<String> {
    std::fs::read_to_string(CONF)
        .ok()?
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

fn server() -> i32 {
    let _ = std::fs::create_dir_all(STATE);
    let ready_file = Path::new(STATE).join("ready");
    let _ = std::fs::remove_file(&ready_file);
    let pid = std::process::id();
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(Path::new(STATE).join("starts"))
    {
        let _ = writeln!(f, "{pid}");
    }
    notify_ready();
    if setting("never_ready").as_deref() == Some("true") {
        eprintln!("level=fatal msg=\"k3s stand-in told never to become ready: the API server will not answer\"");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let delay: u64 = setting("ready_after_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    eprintln!("k3s stand-in: server {pid} starting, API ready in {delay}s");
    std::thread::sleep(Duration::from_secs(delay));
    let _ = std::fs::write(&ready_file, pid.to_string());
    eprintln!("k3s stand-in: API ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// READY=1 on $NOTIFY_SOCKET, the sd_notify protocol.
fn notify_ready() {
    let Ok(socket) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    use std::os::unix::net::UnixDatagram;
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let sent = if let Some(abstract_name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .and_then(|addr| sock.send_to_addr(b"READY=1", &addr))
    } else {
        sock.send_to(b"READY=1", &socket)
    };
    if let Err(e) = sent {
        eprintln!("k3s stand-in: sd_notify failed: {e}");
    }
}

/// The API is ready when the server that marked it is still running.
fn api_ready() -> bool {
    std::fs::read_to_string(Path::new(STATE).join("ready"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

fn kubectl(args: &[&str]) -> i32 {
    if !api_ready() {
        eprintln!("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?");
        return 1;
    }
    match args {
        ["get", "--raw=/readyz", ..] => {
            println!("ok");
            0
        }
        ["get", "nodes", ..] => {
            print!("True");
            0
        }
        _ => {
            eprintln!("k3s stand-in: kubectl {args:?} is not implemented");
            1
        }
    }
}
