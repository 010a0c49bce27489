//! A real Debian host (12 bookworm or 13 trixie) with systemd as PID 1, for the scenarios that
//! need an init system.
//!
//! The root filesystem of each release is built once per machine with debootstrap and cached
//! outside the checkout (`/var/cache/foreman-box-tests/debian<N>-<hash of suite and package
//! list>`), rebuilt when the package list changes. Each scenario boots a throwaway copy: an
//! overlay mount (the cached tree as the read-only lower layer, a temp dir as the upper one)
//! booted with `systemd-nspawn --boot`.
//! The container shares the host's network, so the suite's loopback mirror and servers are
//! reachable at 127.0.0.1 from inside; for the same reason only one machine runs at a time
//! ([`Machine::boot`] holds a process-wide lock).
//!
//! Commands run inside through `nsenter` into the namespaces and root of the container's PID 1:
//! `systemd-run --machine` needs the host's machined (this host has no systemd as PID 1), and an
//! agent unit would be one more moving part. The machine is always torn down (Drop): orderly
//! poweroff, then SIGKILL of its PID 1 after a bound, then the overlay is unmounted.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Run;

/// A Debian release the booted-host scenarios run on. Paths and units of its PostgreSQL are asked
/// of the booted machine ([`Machine::postgres_cluster`]), never written down here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Debian {
    /// Debian 12: systemd 252, PostgreSQL 15.
    Bookworm,
    /// Debian 13: systemd 257, PostgreSQL 17.
    Trixie,
}

impl Debian {
    pub fn version(self) -> u32 {
        match self {
            Debian::Bookworm => 12,
            Debian::Trixie => 13,
        }
    }

    /// debootstrap's name for it.
    pub fn suite(self) -> &'static str {
        match self {
            Debian::Bookworm => "bookworm",
            Debian::Trixie => "trixie",
        }
    }

    /// The PostgreSQL major version the release ships (the `postgresql` metapackage's
    /// dependency in its archive): what a local-mode install must run, no other.
    pub fn postgresql_major(self) -> u32 {
        match self {
            Debian::Bookworm => 15,
            Debian::Trixie => 17,
        }
    }
}

/// A PostgreSQL cluster as the machine's `pg_lsclusters` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub major: u32,
    pub name: String,
    pub data_directory: String,
}

impl Cluster {
    /// Its systemd unit (postgresql-common's `postgresql@.service` template).
    pub fn unit(&self) -> String {
        format!("postgresql@{}-{}", self.major, self.name)
    }
}

/// Mirror of the cached root filesystems.
const MIRROR: &str = "http://deb.debian.org/debian";
/// Installed in the root filesystem: an init system and what a person's minimal host has.
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "curl",
    "ca-certificates",
    "iproute2",
    "procps",
];
/// Downloaded into apt's cache but not installed, so the scenarios install them through apt for
/// real without depending on the mirror's speed.
const CACHED_DEBS: &[&str] = &["postgresql"];
/// Bumped when the way the tree is prepared changes.
const RECIPE: &str = "3";
const CACHE: &str = "/var/cache/foreman-box-tests";
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(20);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cached root filesystem, built when missing. Fails with the reason when this host cannot
/// build it (not root, no debootstrap, no mirror).
#[allow(clippy::print_stderr)] // the one-time build is worth a line in the test log
pub fn rootfs(release: Debian) -> Result<PathBuf, String> {
    static BUILD: Mutex<()> = Mutex::new(());
    let _serial = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let suite = release.suite();
    let name = format!("debian{}", release.version());
    let key = {
        let mut spec = format!("{suite} {MIRROR} {RECIPE}\n");
        spec.push_str(&PACKAGES.join(" "));
        spec.push('\n');
        spec.push_str(&CACHED_DEBS.join(" "));
        crate::sha256_hex(spec.as_bytes())[..12].to_string()
    };
    let dir = PathBuf::from(CACHE).join(format!("{name}-{key}"));
    if dir.join("etc/os-release").exists() {
        return Ok(dir);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("booting a Debian host needs root (debootstrap, mount, systemd-nspawn)".into());
    }
    for tool in ["debootstrap", "systemd-nspawn", "nsenter"] {
        if which(tool).is_none() {
            return Err(format!(
                "`{tool}` is not installed; scripts/test.sh installs debootstrap and systemd-container"
            ));
        }
    }
    fs::create_dir_all(CACHE).map_err(|e| format!("cannot create {CACHE}: {e}"))?;
    let building = PathBuf::from(CACHE).join(format!(".{name}-{key}.building"));
    let _ = fs::remove_dir_all(&building);
    let started = Instant::now();
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={}", PACKAGES.join(",")),
        ])
        .arg(suite)
        .arg(&building)
        .arg(MIRROR)
        .output()
        .map_err(|e| format!("cannot run debootstrap: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "debootstrap of {suite} failed:\n{}",
            tail(&String::from_utf8_lossy(&out.stdout), 20)
        ));
    }
    // apt's lists and the cached packages, inside the new tree.
    let chroot = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("chroot")
            .arg(&building)
            .args([
                "/usr/bin/env",
                "-i",
                &format!("PATH={PATH}"),
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run chroot: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` in the new root failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    chroot(&["apt-get", "update", "-q"])?;
    let mut download = vec![
        "apt-get",
        "install",
        "-y",
        "-q",
        "--download-only",
        "--no-install-recommends",
    ];
    download.extend_from_slice(CACHED_DEBS);
    chroot(&download)?;
    // A host with a name of its own and no console login waiting on a terminal.
    fs::write(building.join("etc/hostname"), "foreman.example.test\n")
        .map_err(|e| e.to_string())?;
    let _ =
        fs::remove_file(building.join("etc/systemd/system/getty.target.wants/getty@tty1.service"));
    fs::rename(&building, &dir).map_err(|e| format!("cannot move the new root into place: {e}"))?;
    eprintln!(
        "nspawn: built {} in {:.0}s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// A booted throwaway copy of the root filesystem.
pub struct Machine {
    _serial: MutexGuard<'static, ()>,
    release: Debian,
    name: String,
    /// When it started booting: the test log says how long each scenario held the machine.
    up: Instant,
    nspawn: Child,
    /// PID (in our namespace) of the container's PID 1.
    init: u32,
    scratch: tempfile::TempDir,
    merged: PathBuf,
}

impl Machine {
    /// Boots a fresh machine of `release` and waits until systemd reports it running.
    pub fn boot(release: Debian, name: &str) -> Result<Machine, String> {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let lower = rootfs(release)?;
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::Builder::new()
            .prefix("foreman-box-nspawn-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let (upper, work, merged) = (
            scratch.path().join("upper"),
            scratch.path().join("work"),
            scratch.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let mount = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !mount.status.success() {
            return Err(format!(
                "cannot mount the overlay for the machine: {}",
                String::from_utf8_lossy(&mount.stderr)
            ));
        }
        let console =
            fs::File::create(scratch.path().join("console.log")).map_err(|e| e.to_string())?;
        let spawn = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--boot",
                "--console=read-only",
            ])
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(&merged)
            .stdin(Stdio::null())
            .stdout(console.try_clone().map_err(|e| e.to_string())?)
            .stderr(console)
            .spawn();
        let nspawn = match spawn {
            Ok(c) => c,
            Err(e) => {
                let _ = Command::new("umount").arg("-l").arg(&merged).status();
                return Err(format!("cannot run systemd-nspawn: {e}"));
            }
        };
        let mut machine = Machine {
            _serial: serial,
            release,
            name: name.to_string(),
            up: Instant::now(),
            nspawn,
            init: 0,
            scratch,
            merged,
        };
        machine.wait_for_boot()?;
        Ok(machine)
    }

    fn wait_for_boot(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < BOOT_TIMEOUT {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                return Err(format!(
                    "systemd-nspawn exited ({status}) before the machine booted:\n{}",
                    self.console_tail(30)
                ));
            }
            if self.init == 0 {
                self.init = find_init(self.nspawn.id()).unwrap_or(0);
            }
            if self.init != 0 {
                let state = self.sh("systemctl is-system-running 2>/dev/null || true");
                let state = state.stdout.trim();
                if state == "running" || state == "degraded" {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "the machine did not finish booting within {}s (waited for `systemctl is-system-running` to say running or degraded):\n{}",
            BOOT_TIMEOUT.as_secs(),
            self.console_tail(30)
        ))
    }

    pub fn release(&self) -> Debian {
        self.release
    }

    /// The one PostgreSQL cluster on the machine, from `pg_lsclusters` (postgresql-common).
    pub fn postgres_cluster(&self) -> Cluster {
        let out = self.ok("pg_lsclusters --no-header");
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| !r.is_empty())
            .collect();
        assert_eq!(rows.len(), 1, "not exactly one cluster:\n{out}");
        let row = &rows[0];
        assert!(row.len() >= 6, "unexpected pg_lsclusters line: {out}");
        Cluster {
            major: row[0]
                .parse()
                .unwrap_or_else(|_| panic!("pg_lsclusters version: {out}")),
            name: row[1].to_string(),
            data_directory: row[5].to_string(),
        }
    }

    /// Whether dpkg has `package` installed.
    pub fn has_package(&self, package: &str) -> bool {
        self.sh(&format!("dpkg-query -W -f='${{Status}}' {package}"))
            .stdout
            .trim()
            == "install ok installed"
    }

    /// A path inside the machine, seen from the host (for copying files in and reading them).
    pub fn path(&self, inside: &str) -> PathBuf {
        self.merged.join(inside.trim_start_matches('/'))
    }

    /// Copies a host file into the machine with a mode.
    pub fn install_file(&self, from: &Path, inside: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let to = self.path(inside);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("copy {} into the machine: {e}", from.display()));
        fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Runs argv inside the machine as root, with a clean environment plus `env`.
    pub fn exec(&self, argv: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.init.to_string())
            .args([
                "-m",
                "-u",
                "-i",
                "-p",
                "-r",
                "-w",
                "--",
                "/usr/bin/env",
                "-i",
            ])
            .arg(format!("PATH={PATH}"))
            .args(["HOME=/root", "LANG=C.UTF-8", "TERM=dumb"])
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .args(argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("nsenter runs");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().expect("nsenter finishes").into()
    }

    /// Runs a shell command line inside the machine.
    pub fn sh(&self, script: &str) -> Run {
        self.exec(&["/bin/sh", "-c", script], &[], None)
    }

    /// Like [`Machine::sh`], and fails the test with the output when it does not exit 0.
    pub fn ok(&self, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(r.code, 0, "`{script}` failed in the machine:\n{}", r.all());
        r.stdout
    }

    /// The last lines the machine printed on its console (boot messages).
    pub fn console_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.scratch.path().join("console.log")).unwrap_or_default();
        tail(&text, lines)
    }
}

impl Drop for Machine {
    #[allow(clippy::print_stderr)] // the time a scenario took on each release, for the CI budget
    fn drop(&mut self) {
        eprintln!(
            "nspawn: {} (Debian {}) was up {:.0}s",
            self.name,
            self.release.version(),
            self.up.elapsed().as_secs_f64()
        );
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // nspawn answers SIGTERM with an orderly poweroff of the container.
        let _ = kill(Pid::from_raw(self.nspawn.id() as i32), Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < POWEROFF_TIMEOUT {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.nspawn.try_wait(), Ok(Some(_))) {
            // Killing PID 1 of the container kills its whole PID namespace.
            if self.init != 0 {
                let _ = kill(Pid::from_raw(self.init as i32), Signal::SIGKILL);
            }
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

/// The container's PID 1: the process below `nspawn` whose innermost PID is 1.
fn find_init(nspawn: u32) -> Option<u32> {
    let mut stack = vec![nspawn];
    while let Some(pid) = stack.pop() {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        if pid != nspawn {
            if let Some(line) = status.lines().find(|l| l.starts_with("NSpid:")) {
                if line.split_whitespace().last() == Some("1") {
                    return Some(pid);
                }
            }
        }
        for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_else(|_| PATH.into())
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
