//! Facts about the host, gathered once and passed to every step as a plain value.
//!
//! Gathering reads the kernel's view (/proc, /sys) of the real machine and the distribution's
//! files (/etc/os-release) under the host root; checks are pure functions over the result, so
//! tests feed facts directly.

use crate::config::Config;
use crate::host::{Cmd, Host, PackageManager};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arch {
    Amd64,
    Arm64,
    Other(String),
}

impl Arch {
    pub(crate) fn from_uname(machine: &str) -> Self {
        match machine {
            "x86_64" | "amd64" => Arch::Amd64,
            "aarch64" | "arm64" => Arch::Arm64,
            other => Arch::Other(other.to_string()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: String,
    pub pretty_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OsFamily {
    Debian,
    RedHat,
    Suse,
}

impl OsRelease {
    pub(crate) fn parse(text: &str) -> Self {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => os.id = v,
                "ID_LIKE" => os.id_like = v.split_whitespace().map(str::to_string).collect(),
                "VERSION_ID" => os.version_id = v,
                "PRETTY_NAME" => os.pretty_name = v,
                _ => {}
            }
        }
        os
    }

    pub(crate) fn family(&self) -> Option<OsFamily> {
        let ids = std::iter::once(self.id.as_str()).chain(self.id_like.iter().map(String::as_str));
        for id in ids {
            match id {
                "debian" | "ubuntu" => return Some(OsFamily::Debian),
                "rhel" | "centos" | "fedora" | "rocky" | "almalinux" => {
                    return Some(OsFamily::RedHat)
                }
                "suse" | "sles" | "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => {
                    return Some(OsFamily::Suse)
                }
                _ => {}
            }
        }
        None
    }

    pub(crate) fn package_manager(&self) -> Option<PackageManager> {
        self.family().map(|f| match f {
            OsFamily::Debian => PackageManager::Apt,
            OsFamily::RedHat => PackageManager::Dnf,
            OsFamily::Suse => PackageManager::Zypper,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelinuxMode {
    Enforcing,
    Permissive,
    Disabled,
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub(crate) arch: Arch,
    pub(crate) os: Option<OsRelease>,
    /// Where `os` was read: /etc/os-release under the host root (`<root>/etc/os-release` with
    /// --root), so a message about it names the file that was looked at.
    pub(crate) os_release_path: PathBuf,
    pub(crate) cpus: usize,
    pub(crate) memory_bytes: u64,
    /// The FQDN we will serve Foreman on, and whether it resolves.
    pub(crate) fqdn: String,
    /// The node's name in Kubernetes: k3s takes the host name, lowercased.
    pub(crate) node_name: String,
    /// The addresses the FQDN resolves to (none: it does not resolve).
    pub(crate) fqdn_addrs: Vec<IpAddr>,
    /// Whether systemd runs as PID 1 (`/run/systemd/system` exists, as sd_booted(3) asks), and
    /// PID 1's name; `None` when nothing will be started (--root, --skip-start).
    pub(crate) systemd: Option<(bool, String)>,
    pub(crate) default_route_iface: Option<String>,
    pub(crate) node_ip: Option<IpAddr>,
    pub(crate) memory_cgroup: bool,
    pub(crate) selinux: SelinuxMode,
    pub(crate) firewalld_running: bool,
    pub(crate) listening_ports: BTreeSet<u16>,
    /// Free bytes for each directory we will fill, by host path.
    pub(crate) free_disk: BTreeMap<PathBuf, u64>,
    /// True when k3s already runs here (its ports in use are then ours, not a conflict).
    pub k3s_active: bool,
    /// True when the distribution's PostgreSQL service runs here.
    pub(crate) postgres_active: bool,
}

impl Facts {
    /// What this host is; `starts` says whether the run starts services (not --skip-start).
    pub(crate) fn gather(host: &Host, cfg: &Config, starts: bool) -> Facts {
        let os_release_path = host.path("/etc/os-release");
        let os = host
            .fs()
            .read_string(&os_release_path)
            .ok()
            .flatten()
            .map(|t| OsRelease::parse(&t));
        let uname = nix::sys::utsname::uname().ok();
        let machine = uname
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        let fqdn = fqdn_of(host, cfg);
        let mut fqdn_addrs: Vec<IpAddr> = (fqdn.as_str(), 0)
            .to_socket_addrs()
            .map(|a| a.map(|a| a.ip()).collect())
            .unwrap_or_default();
        fqdn_addrs.sort();
        fqdn_addrs.dedup();
        let systemd = (starts && host.is_real_root()).then(|| {
            (
                std::path::Path::new("/run/systemd/system").is_dir(),
                read_proc("/proc/1/comm")
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default(),
            )
        });
        let default_route_iface = read_proc("/proc/net/route").and_then(|t| default_route(&t));
        let node_ip = cfg
            .node_ip
            .or_else(|| default_route_iface.as_deref().and_then(iface_ipv4));
        let listening_ports = crate::host::listening_tcp_ports();
        let mut free_disk = BTreeMap::new();
        for dir in ["/var/lib/rancher", "/var/lib/postgresql", "/var/lib/pgsql"]
            .into_iter()
            .map(PathBuf::from)
            .chain([cfg.storage.pulp_dir.clone()])
        {
            if let Ok(free) = host.fs().free_bytes(&host.path(&dir)) {
                free_disk.insert(dir, free);
            }
        }
        let runner = host.runner();
        let systemctl = host.is_real_root() && runner.has_program("systemctl");
        let active = |unit: &str| {
            systemctl
                && runner
                    .output(&Cmd::new("systemctl").args(["is-active", "--quiet", unit]))
                    .is_ok_and(|o| o.success())
        };
        let (cpus, memory_bytes) = host_size_override().unwrap_or_else(|| {
            (
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                read_proc("/proc/meminfo")
                    .and_then(|t| mem_total(&t))
                    .unwrap_or(0),
            )
        });
        let node_name = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Facts {
            node_name,
            arch: Arch::from_uname(&machine),
            os,
            os_release_path,
            cpus,
            memory_bytes,
            fqdn,
            fqdn_addrs,
            systemd,
            default_route_iface,
            node_ip,
            memory_cgroup: memory_cgroup(),
            selinux: selinux(),
            firewalld_running: active("firewalld"),
            listening_ports,
            free_disk,
            k3s_active: active("k3s"),
            postgres_active: active("postgresql"),
        }
    }
}

/// The test seam for the host's size: with `TEST_FOREMAN_BOX_HOST_SIZE="CORES MEMORY_BYTES"` a
/// debug build reports that many cores and that much memory instead of the machine's, so the
/// end-to-end tests can size hosts the test machine is not. Release builds compile it to
/// nothing.
#[cfg(debug_assertions)]
fn host_size_override() -> Option<(usize, u64)> {
    let v = std::env::var("TEST_FOREMAN_BOX_HOST_SIZE").ok()?;
    let (cores, memory) = v.trim().split_once(' ')?;
    Some((cores.parse().ok()?, memory.trim().parse().ok()?))
}

#[cfg(not(debug_assertions))]
fn host_size_override() -> Option<(usize, u64)> {
    None
}

fn read_proc(path: &str) -> Option<String> {
    crate::host::read_kernel_file(path)
}

/// The hostname Foreman is served on: the configured one, else this host's FQDN (as install's
/// facts have it).
pub(crate) fn fqdn_of(host: &Host, cfg: &Config) -> String {
    cfg.hostname.clone().unwrap_or_else(|| system_fqdn(host))
}

fn system_fqdn(host: &Host) -> String {
    let short = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    if short.contains('.') {
        return short;
    }
    // The canonical name from /etc/hosts, as `hostname -f` would find it.
    // Under --root, the root's /etc/hosts: it is a host file like any other.
    host.fs()
        .read_string(&host.path("/etc/hosts"))
        .ok()
        .flatten()
        .and_then(|hosts| {
            hosts.lines().find_map(|l| {
                let fields: Vec<&str> = l.split('#').next()?.split_whitespace().collect();
                (fields.len() > 2
                    && fields[1..].contains(&short.as_str())
                    && fields[1].contains('.'))
                .then(|| fields[1].to_string())
            })
        })
        .unwrap_or(short)
}

pub(crate) fn mem_total(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// The interface of the default IPv4 route in /proc/net/route.
pub(crate) fn default_route(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })
}

fn iface_ipv4(iface: &str) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != iface {
            return None;
        }
        let sin = a.address?.as_sockaddr_in().copied()?;
        Some(IpAddr::V4(sin.ip()))
    })
}

fn memory_cgroup() -> bool {
    if let Some(c) = read_proc("/sys/fs/cgroup/cgroup.controllers") {
        return c.split_whitespace().any(|w| w == "memory");
    }
    read_proc("/proc/cgroups").is_some_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"memory") && f.last() == Some(&"1")
        })
    })
}

fn selinux() -> SelinuxMode {
    match read_proc("/sys/fs/selinux/enforce")
        .as_deref()
        .map(str::trim)
    {
        Some("1") => SelinuxMode::Enforcing,
        Some("0") => SelinuxMode::Permissive,
        _ => SelinuxMode::Disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_maps_to_family() {
        let rocky =
            OsRelease::parse("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n");
        assert_eq!(rocky.family(), Some(OsFamily::RedHat));
        let ubuntu = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\n");
        assert_eq!(ubuntu.package_manager(), Some(PackageManager::Apt));
        assert_eq!(OsRelease::parse("ID=alpine\n").family(), None);
    }

    #[test]
    fn proc_tables_parse() {
        let route =
            "Iface\tDestination\tGateway\nlo\t0000007F\t00000000\neth0\t00000000\t0101A8C0\n";
        assert_eq!(default_route(route).as_deref(), Some("eth0"));
        assert_eq!(mem_total("MemTotal:       16384 kB\n"), Some(16384 * 1024));
    }
}
