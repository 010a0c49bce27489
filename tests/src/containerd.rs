//! A throwaway containerd from the machine's own binaries (Debian's `containerd` and `runc`, which
//! scripts/test.sh installs): its own root, state directory, socket and config in a temp dir, the
//! CRI plugin off (nothing here is Kubernetes). Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long containerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The containerd namespace the tests use (k3s uses `k8s.io`).
pub const NAMESPACE: &str = "foreman-box-test";

pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` answers; the error says why it did not.
    pub fn start() -> Result<Containerd, String> {
        let dir = tempfile::Builder::new()
            .prefix("containerd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        let log = dir.path().join("containerd.log");
        // containerd 1.6 (Debian 12) reads config version 2.
        let text = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\n[grpc]\naddress = {sock:?}\n\n[ttrpc]\naddress = {ttrpc:?}\n",
            root = dir.path().join("root").display().to_string(),
            state = dir.path().join("state").display().to_string(),
            sock = socket.display().to_string(),
            ttrpc = dir.path().join("containerd.sock.ttrpc").display().to_string(),
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                format!("cannot start containerd ({e}); scripts/test.sh installs Debian's containerd and runc")
            })?;
        let mut me = Containerd { child, dir, socket };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!(
                    "containerd exited with {status} before answering on {}:\n{}",
                    me.socket.display(),
                    me.log()
                ));
            }
            if me.socket.exists() {
                let v = me.ctr(&["version"]);
                if v.status.success() {
                    return Ok(me);
                }
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "containerd did not answer `ctr version` on {} within {}s:\n{}",
                    me.socket.display(),
                    START_TIMEOUT.as_secs(),
                    me.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr --address SOCKET --namespace foreman-box-test ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr runs (scripts/test.sh installs containerd)")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What containerd logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
