//! Checks of single configuration values, run where configuration is read (`config.rs`), so a
//! value that reaches a generated file, a path we chown or a pg_hba line has been checked even
//! when every preflight check is ignored. Each check returns the problem and a `help:` fix.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

/// What is wrong with a value, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub problem: String,
    pub help: String,
}

fn invalid<T>(problem: impl Into<String>, help: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        problem: problem.into(),
        help: help.into(),
    })
}

/// A value as it is shown in an error: quoted, with newlines, quotes and control characters
/// escaped so the message shows exactly what was given and stays on one line.
pub(crate) fn shown(value: &str) -> String {
    format!("`{}`", value.escape_debug())
}

/// The FQDN Foreman is served on: it goes into k3s's TLS SANs, an Ingress host and Foreman's
/// settings, so it must be a lowercase DNS name (RFC 1123) with at least two labels.
pub(crate) fn hostname(raw: &str) -> Result<String, Invalid> {
    let v = shown(raw);
    let help = "give this host's fully qualified name in lowercase, e.g. foreman.example.com";
    if raw.is_empty() {
        return invalid("the hostname is empty", help);
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return invalid(
            format!("{v} contains a space, quote or control character"),
            help,
        );
    }
    if raw.len() > 253 {
        return invalid(
            format!(
                "{v} is {} characters long; a DNS name has at most 253",
                raw.len()
            ),
            help,
        );
    }
    let lower = raw.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower.starts_with("localhost.") {
        return invalid(
            format!("{v} names the loopback host, which clients elsewhere cannot reach"),
            help,
        );
    }
    if !raw.contains('.') {
        return invalid(
            format!("{v} is a short name, not a fully qualified one"),
            format!("add the domain, e.g. {raw}.example.com, and make it resolve to this host"),
        );
    }
    if raw.contains('_') {
        return invalid(
            format!("{v} contains `_`, which DNS host names and certificates do not allow"),
            format!("use `-` instead: {}", raw.replace('_', "-")),
        );
    }
    if raw.chars().any(|c| c.is_ascii_uppercase()) {
        return invalid(
            format!("{v} contains upper-case letters; Kubernetes host names are lowercase"),
            format!("use {lower}"),
        );
    }
    for label in raw.split('.') {
        if label.is_empty() {
            return invalid(
                format!("{v} has an empty label (`..` or a dot at an end)"),
                help,
            );
        }
        if label.len() > 63 {
            return invalid(
                format!(
                    "label `{label}` of {v} is {} characters long; at most 63",
                    label.len()
                ),
                help,
            );
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return invalid(
                format!(
                    "label `{}` of {v} has characters other than a-z, 0-9 and `-`",
                    label.escape_debug()
                ),
                help,
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return invalid(
                format!("label `{label}` of {v} starts or ends with `-`"),
                help,
            );
        }
    }
    if raw
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return invalid(format!("{v} is an IP address, not a host name"), help);
    }
    Ok(raw.to_string())
}

/// Directories that must never be the Pulp directory itself: we chown it to Pulp's user and
/// chmod it 0750.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/local",
    "/usr/lib",
    "/usr/share",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/var/cache",
    "/var/spool",
    "/var/mail",
];
/// Trees nothing of Pulp's may live in: pseudo-filesystems, volatile or configuration trees, and
/// the data of the other components we install.
const FORBIDDEN_TREES: &[&str] = &[
    "/boot",
    "/dev",
    "/etc",
    "/proc",
    "/run",
    "/sys",
    "/tmp",
    "/var/tmp",
    "/var/lib/postgresql",
    "/var/lib/rancher",
    "/var/lib/foreman-box",
];

/// The Pulp content directory: absolute, normalized, not a system directory.
pub(crate) fn pulp_dir(raw: &str) -> Result<PathBuf, Invalid> {
    let v = shown(raw);
    let help = "use a directory of its own, such as /var/lib/pulp or /srv/pulp";
    let path = Path::new(raw);
    if raw.is_empty() || !path.is_absolute() {
        return invalid(format!("{v} is not an absolute path"), help);
    }
    if raw.chars().any(char::is_control) {
        return invalid(format!("{v} contains a control character"), help);
    }
    let mut normal = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => normal.push(n),
            Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                return invalid(
                    format!("{v} contains `..` or `.`, which could lead anywhere"),
                    "write the path without `..` or `.` components",
                )
            }
        }
    }
    let normal_str = normal.to_string_lossy();
    if normal_str != raw {
        return invalid(
            format!("{v} is not in normal form"),
            format!("write it as {normal_str}"),
        );
    }
    if SYSTEM_DIRS.contains(&raw) {
        return invalid(
            format!("{v} is a system directory; it would be chowned to Pulp's user"),
            help,
        );
    }
    if let Some(tree) = FORBIDDEN_TREES
        .iter()
        .find(|t| normal.starts_with(t) && **t != "/")
    {
        return invalid(
            format!("{v} is inside {tree}, which Pulp's content must stay out of"),
            help,
        );
    }
    Ok(normal)
}

/// Which network a CIDR is for; the bounds differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// Pods: k3s gives every node a /24 (IPv4) or /64 (IPv6) of it.
    Cluster,
    /// Services: the API server refuses a range of more than 20 bits (/12 for IPv4).
    Service,
}

/// An IP network, its address with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// As it is written: `10.42.0.0/16`.
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Cidr {
    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(prefix: u8, width: u8) -> u128 {
        if prefix == 0 {
            0
        } else {
            let all = if width == 128 {
                u128::MAX
            } else {
                (1u128 << width) - 1
            };
            all & !((1u128 << (width - prefix)) - 1)
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (net, width) = Self::bits(self.addr);
        let (x, _) = Self::bits(ip);
        x & Self::mask(self.prefix, width) == net
    }

    pub(crate) fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

/// A pod or service network. The widest accepted is /8 (IPv4) or /48 (IPv6) for pods and /12 or
/// /108 for services: pg_hba trusts the pod network, and a wider one (0.0.0.0/0 above all) would
/// let hosts outside the cluster in; 10.0.0.0/8 is the largest private block. The narrowest is
/// what still holds one node (/24, /64) or a useful number of services (/28, /120).
pub(crate) fn cidr(raw: &str, network: Network) -> Result<Cidr, Invalid> {
    let v = shown(raw);
    let example = match network {
        Network::Cluster => "10.42.0.0/16",
        Network::Service => "10.43.0.0/16",
    };
    if raw.contains(',') {
        return invalid(
            format!("{v} lists several networks; dual-stack is not supported"),
            format!("give one network, e.g. {example}"),
        );
    }
    let Some((ip, len)) = raw
        .split_once('/')
        .and_then(|(ip, len)| Some((ip.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?)))
    else {
        return invalid(
            format!("{v} is not a CIDR"),
            format!("write it as ADDRESS/PREFIX, e.g. {example}"),
        );
    };
    let (bits, width) = Cidr::bits(ip);
    if len > width {
        return invalid(
            format!("{v} has a prefix longer than {width} bits"),
            format!("write it as ADDRESS/PREFIX, e.g. {example}"),
        );
    }
    let (min, max) = match (network, ip.is_ipv4()) {
        (Network::Cluster, true) => (8, 24),
        (Network::Cluster, false) => (48, 64),
        (Network::Service, true) => (12, 28),
        (Network::Service, false) => (108, 120),
    };
    if len < min {
        return invalid(
            format!("{v} is wider than /{min}; it would cover networks outside the cluster"),
            format!("use a private network of /{min} to /{max}, e.g. {example}"),
        );
    }
    if len > max {
        return invalid(
            format!("{v} is narrower than /{max}"),
            format!("use a private network of /{min} to /{max}, e.g. {example}"),
        );
    }
    let net_bits = bits & Cidr::mask(len, width);
    let net = match ip {
        IpAddr::V4(_) => IpAddr::V4((net_bits as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(net_bits.into()),
    };
    if net != ip {
        return invalid(
            format!("{v} has host bits set"),
            format!("write the network address: {net}/{len}"),
        );
    }
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() {
        return invalid(
            format!("{v} is a loopback, multicast or unspecified range"),
            format!("use a private network, e.g. {example}"),
        );
    }
    Ok(Cidr {
        addr: ip,
        prefix: len,
    })
}

/// This host's address for pods to reach.
pub(crate) fn node_ip(raw: &str) -> Result<IpAddr, Invalid> {
    let v = shown(raw);
    let help = "give this host's address on its main network, e.g. 192.168.1.10";
    let Ok(ip) = raw.parse::<IpAddr>() else {
        return invalid(format!("{v} is not an IP address"), help);
    };
    let broadcast = matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast {
        return invalid(
            format!("{v} is a loopback, multicast, broadcast or unspecified address"),
            help,
        );
    }
    Ok(ip)
}

/// An http(s) URL without credentials, query or fragment. A URL with a password in it is never
/// echoed: the password is replaced by `***`.
pub(crate) fn http_url(raw: &str) -> Result<String, Invalid> {
    let trimmed = raw.trim_end_matches('/');
    let help = "give a full URL such as https://mirror.example.com/k3s";
    let Ok(url) = reqwest::Url::parse(trimmed) else {
        return invalid(format!("{} is not a URL", shown(&redact_url(raw))), help);
    };
    if !url.username().is_empty() || url.password().is_some() {
        return invalid(
            format!(
                "{} carries credentials, which would show in logs and process lists",
                shown(&redact_url(raw))
            ),
            "use a mirror that needs no credentials (e.g. on your network), or airgap assets",
        );
    }
    let v = shown(trimmed);
    if !matches!(url.scheme(), "http" | "https") {
        return invalid(
            format!(
                "{v} uses `{}:`; only https and http are supported",
                url.scheme()
            ),
            help,
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return invalid(format!("{v} names no host"), help);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return invalid(
            format!("{v} has a query or fragment; asset names are appended to its path"),
            help,
        );
    }
    Ok(trimmed.to_string())
}

/// A URL for a log line or an error: any password is replaced by `***`.
pub(crate) fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => raw.to_string(),
        // Not a URL: hide whatever sits between `://` and `@`.
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &raw[..s + 3], &raw[at..]),
            _ => raw.to_string(),
        },
    }
}

/// A k3s release tag: `v1.33.5+k3s1`.
pub(crate) fn k3s_version(raw: &str) -> Result<String, Invalid> {
    let ok = raw.len() <= 64
        && raw.strip_prefix('v').is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_digit())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        });
    if ok {
        Ok(raw.to_string())
    } else {
        invalid(
            format!("{} is not a k3s release tag", shown(raw)),
            "use a tag of the form v<major>.<minor>.<patch>+k3s<n>; `foreman-box install --help` shows the pinned one".to_string(),
        )
    }
}

/// A k3s channel name: `stable`, `latest`, `v1.33`.
pub(crate) fn k3s_channel(raw: &str) -> Result<String, Invalid> {
    let ok = raw.len() <= 32
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
    if ok {
        Ok(raw.to_string())
    } else {
        invalid(
            format!("{} is not a k3s channel name", shown(raw)),
            "use stable, latest, testing or a minor version such as v1.33",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_lowercase_fqdn_rules() {
        assert!(hostname("foreman.example.com").is_ok());
        assert!(hostname("a-1.b.c").is_ok());
        for bad in [
            "",
            "foreman",
            "localhost",
            "localhost.localdomain",
            "foreman_1.example.com",
            "Foreman.example.com",
            "foreman.example.com\"\nx: y",
            "fore man.example.com",
            "-a.example.com",
            "a..example.com",
            "10.0.0.1",
        ] {
            assert!(hostname(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}.example.com", "a".repeat(64));
        assert!(hostname(&long).is_err());
        let err = hostname("a\"\nb.c").unwrap_err();
        assert!(err.problem.contains(r#"a\"\nb.c"#), "{err:?}");
    }

    #[test]
    fn pulp_dir_refuses_system_directories_and_dot_dot() {
        assert_eq!(
            pulp_dir("/var/lib/pulp").unwrap(),
            PathBuf::from("/var/lib/pulp")
        );
        assert!(pulp_dir("/srv/pulp").is_ok());
        for bad in [
            "/",
            "/etc",
            "/usr",
            "/var",
            "/var/lib",
            "/home",
            "/root",
            "/boot",
            "/proc/x",
            "/sys",
            "/dev",
            "/run/pulp",
            "/tmp",
            "/etc/pulp",
            "var/lib/pulp",
            "/var/lib/pulp/../../../etc",
            "/var/lib//pulp",
            "/var/lib/pulp/",
            "/var/./pulp",
            "/var/lib/postgresql/pulp",
            "",
        ] {
            assert!(pulp_dir(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cidrs_are_bounded_and_networks_compare() {
        assert!(cidr("10.42.0.0/16", Network::Cluster).is_ok());
        assert!(cidr("10.0.0.0/8", Network::Cluster).is_ok());
        for bad in [
            "0.0.0.0/0",
            "10.0.0.0/7",
            "10.42.0.1/16",
            "10.42.0.0",
            "10.42.0.0/33",
            "x/16",
            "10.42.0.0/16,fd00::/48",
            "127.0.0.0/8",
        ] {
            assert!(cidr(bad, Network::Cluster).is_err(), "{bad:?} was accepted");
        }
        assert!(cidr("10.0.0.0/11", Network::Service).is_err());
        let a = cidr("10.42.0.0/16", Network::Cluster).unwrap();
        let b = cidr("10.42.128.0/17", Network::Cluster).unwrap();
        let c = cidr("10.43.0.0/16", Network::Service).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains("10.42.3.4".parse().unwrap()));
        assert!(!a.contains("10.43.3.4".parse().unwrap()));
    }

    #[test]
    fn urls_with_credentials_are_refused_and_never_echoed() {
        assert!(http_url("https://mirror.example.com/k3s/").is_ok());
        let err = http_url("https://user:hunter2@mirror.example.com/k3s").unwrap_err();
        assert!(!err.problem.contains("hunter2"), "{err:?}");
        assert!(err.problem.contains("***"), "{err:?}");
        assert!(http_url("ftp://mirror.example.com").is_err());
        assert!(http_url("https://mirror.example.com/?a=b").is_err());
        assert!(http_url("file:///etc/passwd").is_err());
        assert_eq!(redact_url("not a url://u:p@x"), "not a url://***@x");
    }

    #[test]
    fn versions_and_channels_have_a_charset() {
        assert!(k3s_version("v1.33.5+k3s1").is_ok());
        assert!(k3s_version("v1.33.5-rc1+k3s1").is_ok());
        for bad in ["1.33.5", "v1.33/../x", "v1 33", "v", "v1.33\n"] {
            assert!(k3s_version(bad).is_err(), "{bad:?}");
        }
        assert!(k3s_channel("stable").is_ok());
        assert!(k3s_channel("v1.33").is_ok());
        assert!(k3s_channel("../x").is_err());
        assert!(k3s_channel("a?b").is_err());
    }
}
