//! End-to-end harness: a loopback release mirror with fault injection, a throwaway PostgreSQL
//! cluster from the machine's own binaries, and the built `foreman-box` binary.

pub mod apiserver;
pub mod containerd;
pub mod loopback;
pub mod mirror;
pub mod nginx;
pub mod nspawn;
pub mod pg;
pub mod pulp;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `foreman-box` binary of this workspace, built once per test process.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FOREMAN_BOX_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // Benchmarks measure the release build; tests use the debug one.
        let release = std::env::var("FOREMAN_BOX_BENCH").is_ok();
        // The test process's CARGO_MANIFEST_DIR would reach build scripts that track it (ring)
        // and rebuild half the tree on every run; a plain `cargo build` has none.
        let out = Command::new(cargo)
            .env_remove("CARGO_MANIFEST_DIR")
            .args([
                "build",
                "--quiet",
                "-p",
                "foreman-box",
                "--message-format=json",
            ])
            .args(release.then_some("--release"))
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "building foreman-box failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| {
                (v["reason"] == "compiler-artifact"
                    && v["target"]["name"] == "foreman-box"
                    && v["target"]["kind"][0] == "bin")
                    .then(|| v["executable"].as_str().map(PathBuf::from))
                    .flatten()
            })
            .expect("cargo reports the foreman-box executable")
    })
}

/// The README's static binary (`scripts/build.sh`: release, +crt-static), built once per test
/// process. The operator step makes its image from the running executable and refuses a
/// dynamically linked one, so tests that run it use this binary: the one users run.
pub fn static_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("FOREMAN_BOX_STATIC_BIN") {
            return PathBuf::from(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build.sh");
        let out = Command::new("sh")
            .arg(&script)
            .output()
            .expect("sh runs scripts/build.sh");
        assert!(
            out.status.success(),
            "scripts/build.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.is_file(),
            "scripts/build.sh printed {}",
            path.display()
        );
        path
    })
}

/// Like [`foreman_box`], running the given executable.
pub fn foreman_box_at(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("FOREMAN_BOX_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("FOREMAN_BOX_LOG", "info").args(args);
    cmd
}

/// A `foreman-box` command with a clean environment: no FOREMAN_BOX_* from the caller.
pub fn foreman_box(args: &[&str]) -> Command {
    foreman_box_at(binary(), args)
}

/// `foreman-box VERB` of the k3s step alone under ROOT against the release mirror at URL, as the
/// k3s scenarios run it: `--only preflight,k3s` with every check ignored (this build machine is
/// no Foreman host: the checks still run and report, as warnings) and a `.test` hostname.
/// Callers add their own flags.
pub fn k3s_only(verb: &str, root: &Path, url: &str) -> Command {
    let mut cmd = foreman_box(&[verb, "--root", root.to_str().unwrap()]);
    cmd.args(K3S_ONLY).args(["--k3s-release-url", url]);
    cmd
}

/// The flags of [`k3s_only`] after `--root`: the k3s step alone, every check ignored, a `.test`
/// hostname.
pub const K3S_ONLY: [&str; 6] = [
    "--only",
    "preflight,k3s",
    "--ignore-preflight",
    "all",
    "--hostname",
    "foreman.example.test",
];

/// Output with both streams as text, for assertions.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn run(cmd: &mut Command) -> Run {
    cmd.output().expect("foreman-box runs").into()
}

/// A temp dir standing in for a Debian host's root: just its /etc/os-release.
pub fn debian_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::create_dir_all(root.path().join("var/log")).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n",
    )
    .unwrap();
    root
}

/// What every run leaves that is not a change to the host's state: its log
/// (`var/log/foreman-box`) and the lock file of one-run-at-a-time (`run/foreman-box.lock`).
pub fn is_run_record(rel: &Path) -> bool {
    rel.starts_with("var/log/foreman-box") || rel.starts_with("run")
}

/// Every file and symlink under `root` with its mtime (nanoseconds), sorted by path. `var/log`
/// and the run's lock are left out (see [`is_run_record`]).
pub fn tree_mtimes(root: &Path) -> Vec<(PathBuf, i128)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let logs = root.join("var/log");
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.path().starts_with(&logs) || is_run_record(e.path().strip_prefix(root).unwrap()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            let mtime = meta
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i128;
            out.push((e.path().strip_prefix(root).unwrap().to_path_buf(), mtime));
        }
    }
    out.sort();
    out
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Bytes that do not compress and differ per seed: a stand-in release artifact.
pub fn artifact(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Runs `kubernetes-validate --strict` for the pinned k3s's Kubernetes minor on each file.
pub fn kubernetes_validate(files: &[PathBuf]) -> Run {
    let mut cmd = Command::new("kubernetes-validate");
    cmd.args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files);
    match cmd.output() {
        Ok(o) => o.into(),
        Err(e) => panic!(
            "kubernetes-validate is not installed ({e}); scripts/test.sh installs it with pip"
        ),
    }
}

/// The Kubernetes version of the pinned k3s release (v1.33.x).
pub const KUBERNETES_VERSION: &str = "1.33.0";
