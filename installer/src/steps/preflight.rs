//! Preflight: is this host fit to run Foreman on k3s? Each check is a small pure function over
//! the gathered facts and the configuration; each failure says what is wrong and how to fix it,
//! and `--ignore-preflight NAME` (or `all`) turns it into a warning.

use crate::config::{Config, PostgresMode};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::facts::{Arch, Facts, SelinuxMode};

const GIB: u64 = 1 << 30;

/// A failed check: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub problem: String,
    pub fix: String,
}

type Check = fn(&Facts, &Config) -> Result<(), (String, String)>;

/// Every check by name, in the order they are reported.
pub const CHECKS: &[(&str, Check)] = &[
    ("arch", check_arch),
    ("os", check_os),
    ("systemd", check_systemd),
    ("cpu", check_cpu),
    ("memory", check_memory),
    ("sizing", check_sizing),
    ("disk", check_disk),
    ("ports", check_ports),
    ("fqdn", check_fqdn),
    ("route", check_route),
    ("cgroup", check_cgroup),
    ("selinux", check_selinux),
    ("firewalld", check_firewalld),
];

/// Runs every check; returns the failures.
pub fn run_checks(facts: &Facts, cfg: &Config) -> Vec<Finding> {
    CHECKS
        .iter()
        .filter_map(|(name, check)| {
            check(facts, cfg).err().map(|(problem, fix)| Finding {
                check: name,
                problem,
                fix,
            })
        })
        .collect()
}

/// Splits findings into (fatal, ignored) by `--ignore-preflight`.
pub fn partition(findings: Vec<Finding>, ignore: &[String]) -> (Vec<Finding>, Vec<Finding>) {
    findings
        .into_iter()
        .partition(|f| !ignore.iter().any(|i| i == "all" || i == f.check))
}

pub fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  ✗ {}: {}\n    fix: {}\n    or pass --ignore-preflight {}",
                f.check, f.problem, f.fix, f.check
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The host and configuration checked; the failures not ignored stop the run, naming each.
/// Plans nothing: preflight only looks.
pub(super) fn check(cx: &Context) -> Result<()> {
    let (fatal, ignored) = partition(
        run_checks(&cx.facts, &cx.config),
        &cx.options.ignore_preflight,
    );
    for f in &ignored {
        cx.reporter.warning(
            "preflight",
            &format!("{}: {} (ignored as asked)", f.check, f.problem),
        );
    }
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(Error::Preflight {
            report: render(&fatal),
        })
    }
}

fn check_arch(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    match &f.arch {
        Arch::Amd64 | Arch::Arm64 => Ok(()),
        Arch::Other(a) => Err((
            format!("architecture {a} is not supported"),
            "use an amd64 (x86_64) or arm64 (aarch64) host".into(),
        )),
    }
}

fn check_os(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    match &f.os {
        None => Err((
            format!(
                "{} is missing, so the distribution is unknown",
                f.os_release_path.display()
            ),
            "run on Debian, Ubuntu, a RHEL-family distribution, Fedora or SUSE".into(),
        )),
        Some(os) if os.family().is_none() => Err((
            format!(
                "{} ({}) is not a supported distribution (read from {})",
                if os.pretty_name.is_empty() {
                    &os.id
                } else {
                    &os.pretty_name
                },
                os.id,
                f.os_release_path.display()
            ),
            "run on Debian, Ubuntu, a RHEL-family distribution, Fedora or SUSE".into(),
        )),
        Some(_) => Ok(()),
    }
}

fn check_cpu(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    if f.cpus >= 4 {
        Ok(())
    } else {
        Err((
            format!("{} CPU cores; Foreman needs 4", f.cpus),
            "give the machine at least 4 cores".into(),
        ))
    }
}

fn check_memory(f: &Facts, cfg: &Config) -> Result<(), (String, String)> {
    let (need, what) = if cfg.foreman.katello {
        (20 * GIB, "Foreman with Katello")
    } else {
        (4 * GIB, "Foreman")
    };
    // Firmware and the kernel keep some memory back: allow 5% under the nominal size.
    if f.memory_bytes >= need / 100 * 95 {
        Ok(())
    } else {
        Err((
            format!(
                "{:.1} GiB of memory; {what} needs {} GiB",
                f.memory_bytes as f64 / GIB as f64,
                need / GIB
            ),
            if cfg.foreman.katello {
                "add memory, or set foreman.katello = false".into()
            } else {
                "add memory".into()
            },
        ))
    }
}

/// What the deployment asks the scheduler for (the operator's sum of its pods' requests, at the
/// configured tuning profile and worker count), with PostgreSQL (when it runs here) and k3s
/// beside it, against this host's cores and memory. The scheduler counts every core and all
/// memory as allocatable (k3s reserves none), so a deployment that passes here gets scheduled.
fn check_sizing(f: &Facts, cfg: &Config) -> Result<(), (String, String)> {
    use foreman_operator::sizing::{self, cores, gib};
    let fm = crate::steps::foreman::resource(cfg, None);
    let spec = &fm.spec;
    let local_postgres = postgres_here(cfg);
    let (host_cpu, host_memory) = (f.cpus as u64 * 1000, f.memory_bytes);
    let need = |spec: &foreman_operator::ForemanSpec| {
        let r = sizing::requirements(spec);
        let pg = if local_postgres {
            r.postgres_memory_bytes
        } else {
            0
        };
        (r, pg, r.memory_bytes() - r.postgres_memory_bytes + pg)
    };
    let what = format!(
        "{} with {} Dynflow workers (tuning {})",
        sizing::describe(&spec.plugins),
        spec.dynflow_workers,
        spec.tuning.name()
    );
    // The resource's own bound (the CRD's rule): the API server would refuse it.
    let fits_profile =
        |s: &foreman_operator::ForemanSpec| sizing::profile_bound(s) >= s.dynflow_workers;
    let profiles_that_fit = |host_fits: &dyn Fn(&foreman_operator::ForemanSpec) -> bool| {
        foreman_operator::profile::PROFILES
            .iter()
            .filter(|p| p.tuning != spec.tuning)
            .filter(|p| {
                let mut s = spec.clone();
                s.tuning = p.tuning;
                fits_profile(&s) && host_fits(&s)
            })
            .map(|p| p.tuning.name())
            .collect::<Vec<_>>()
    };
    if !fits_profile(spec) {
        let p = foreman_operator::profile::Profile::of(spec.tuning);
        let bound = sizing::profile_bound(spec);
        let mut fixes = Vec::new();
        if bound > 0 {
            fixes.push(format!("lower foreman.dynflow_workers to at most {bound}"));
        }
        let others = profiles_that_fit(&|_| true);
        if !others.is_empty() {
            fixes.push(format!("set foreman.tuning to {}", others.join(" or ")));
        }
        return Err((
            format!(
                "{what} is more than the {} tuning profile's host ({} cores, {}) schedules next to PostgreSQL and k3s, so the Foreman resource would be refused",
                spec.tuning.name(),
                p.cpu_cores,
                gib(p.memory_mib * foreman_operator::profile::MIB),
            ),
            fixes.join(", or "),
        ));
    }
    let (r, pg, memory) = need(spec);
    let short_memory = memory > host_memory;
    let short_cpu = r.cpu_millis() > host_cpu;
    if !short_memory && !short_cpu {
        return Ok(());
    }
    let beside = if local_postgres {
        format!(
            "PostgreSQL ({}) and k3s ({})",
            gib(pg),
            gib(r.k3s_memory_bytes)
        )
    } else {
        format!("k3s ({})", gib(r.k3s_memory_bytes))
    };
    let problem = format!(
        "{what} requests {} of memory and {} CPU; this host has {} and {} cores: {} after {beside}, {} cores after k3s's system pods ({})",
        gib(r.pods_memory_bytes),
        cores(r.pods_cpu_millis),
        gib(host_memory),
        f.cpus,
        gib(host_memory.saturating_sub(memory - r.pods_memory_bytes)),
        cores(host_cpu.saturating_sub(r.k3s_cpu_millis)),
        cores(r.k3s_cpu_millis),
    );
    let mut fixes = Vec::new();
    let most = sizing::max_dynflow_workers(spec, host_cpu, host_memory, local_postgres);
    if most > 0 {
        fixes.push(format!(
            "lower foreman.dynflow_workers (at most {most} fit this host)"
        ));
    }
    // Other profiles, each with the most workers both its own host and this one hold.
    let others: Vec<String> = foreman_operator::profile::PROFILES
        .iter()
        .filter(|p| p.tuning != spec.tuning)
        .filter_map(|p| {
            let mut s = spec.clone();
            s.tuning = p.tuning;
            let n = sizing::profile_bound(&s).min(sizing::max_dynflow_workers(
                &s,
                host_cpu,
                host_memory,
                local_postgres,
            ));
            match n {
                0 => None,
                n if n >= spec.dynflow_workers => Some(p.tuning.name().to_string()),
                n => Some(format!("{} with at most {n} workers", p.tuning.name())),
            }
        })
        .collect();
    if !others.is_empty() {
        fixes.push(format!(
            "set foreman.tuning to a profile that fits ({})",
            others.join(", ")
        ));
    }
    fixes.push(format!(
        "give the machine more {}",
        match (short_memory, short_cpu) {
            (true, true) => "memory and cores",
            (true, false) => "memory",
            _ => "cores",
        }
    ));
    Err((problem, fixes.join(", or ")))
}

/// Whether PostgreSQL runs on this host: local mode, or an external server on loopback.
fn postgres_here(cfg: &Config) -> bool {
    cfg.postgres.mode == PostgresMode::Local
        || cfg.postgres.admin_url.as_ref().is_some_and(|u| {
            u.host == "localhost"
                || u.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Free space each data directory needs.
pub fn disk_needs(cfg: &Config) -> Vec<(std::path::PathBuf, u64)> {
    let mut needs = vec![("/var/lib/rancher".into(), 10 * GIB)];
    if cfg.postgres.mode == PostgresMode::Local {
        needs.push(("/var/lib/postgresql".into(), 5 * GIB));
    }
    if cfg.foreman.katello {
        needs.push((cfg.storage.pulp_dir.clone(), 20 * GIB));
    }
    needs
}

fn check_disk(f: &Facts, cfg: &Config) -> Result<(), (String, String)> {
    let short: Vec<String> = disk_needs(cfg)
        .into_iter()
        .filter_map(|(dir, need)| {
            let free = *f.free_disk.get(&dir)?;
            (free < need).then(|| {
                format!(
                    "{} has {:.1} GiB free, needs {} GiB",
                    dir.display(),
                    free as f64 / GIB as f64,
                    need / GIB
                )
            })
        })
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        Err((
            short.join("; "),
            "free space or mount a larger disk there".into(),
        ))
    }
}

fn check_ports(f: &Facts, cfg: &Config) -> Result<(), (String, String)> {
    let mut ports = Vec::new();
    if !f.k3s_active {
        // A running k3s holds these itself (80 and 443 through its ingress).
        ports.extend([
            (6443, "Kubernetes API"),
            (10250, "kubelet"),
            (80, "HTTP ingress"),
            (443, "HTTPS ingress"),
        ]);
    }
    if cfg.postgres.mode == PostgresMode::Local && !f.postgres_active {
        // The distribution's PostgreSQL, once running, is the one local mode uses.
        ports.push((5432, "PostgreSQL"));
    }
    let busy: Vec<String> = ports
        .into_iter()
        .filter(|(p, _)| f.listening_ports.contains(p))
        .map(|(p, what)| format!("{p} ({what})"))
        .collect();
    if busy.is_empty() {
        Ok(())
    } else {
        Err((
            format!("ports already in use: {}", busy.join(", ")),
            "stop the service listening there (`ss -ltnp` shows which)".into(),
        ))
    }
}

fn check_fqdn(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    let name = &f.fqdn;
    let problem = if name.is_empty() {
        Some("the host has no name".to_string())
    } else if name != &name.to_ascii_lowercase() {
        Some(format!("`{name}` has upper-case letters"))
    } else if !name.contains('.') {
        Some(format!("`{name}` is not fully qualified (no dot)"))
    } else if name == "localhost" || name.starts_with("localhost.") {
        Some(format!("`{name}` is localhost"))
    } else if name.contains('_') {
        Some(format!(
            "`{name}` has an underscore, which certificates do not allow"
        ))
    } else if f.fqdn_addrs.is_empty() {
        Some(format!("`{name}` does not resolve"))
    } else if f.fqdn_addrs.iter().all(|a| a.is_loopback()) {
        let addrs: Vec<String> = f.fqdn_addrs.iter().map(|a| a.to_string()).collect();
        let node = f
            .node_ip
            .map_or("the node's address".to_string(), |ip| ip.to_string());
        return Err((
            format!(
                "`{name}` resolves only to loopback ({}): the pods, k3s and the hosts Foreman manages need the node's address",
                addrs.join(", ")
            ),
            format!("make `{name}` resolve to {node} (in /etc/hosts, replace the 127.0.1.1 line; or in DNS), or pass --hostname"),
        ));
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err((p, "set a lowercase FQDN that resolves (hostnamectl set-hostname foreman.example.com, and /etc/hosts or DNS), or pass --hostname".into())),
    }
}

fn check_systemd(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    match &f.systemd {
        Some((false, pid1)) => Err((
            format!(
                "systemd is not running as PID 1 (PID 1 is `{}`): k3s and PostgreSQL run as systemd services",
                if pid1.is_empty() { "unknown" } else { pid1 }
            ),
            "boot the host with systemd (a VM, or a container started with systemd-nspawn --boot); or pass --skip-start to write everything and start nothing".into(),
        )),
        _ => Ok(()),
    }
}

fn check_route(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    if f.default_route_iface.is_some() && f.node_ip.is_some() {
        Ok(())
    } else if f.default_route_iface.is_none() {
        Err((
            "there is no default IPv4 route, which k3s needs to pick the node address".into(),
            "add a default route (a dummy one on air-gapped hosts: ip route add default dev eth0)"
                .into(),
        ))
    } else {
        Err((
            "the default route's interface has no IPv4 address".into(),
            "give it an address, or pass --node-ip".into(),
        ))
    }
}

fn check_cgroup(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    if f.memory_cgroup {
        Ok(())
    } else {
        Err((
            "the memory cgroup controller is not enabled".into(),
            "add cgroup_memory=1 cgroup_enable=memory to the kernel command line and reboot".into(),
        ))
    }
}

fn check_selinux(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    match (f.selinux, f.os.as_ref().and_then(|o| o.family())) {
        (SelinuxMode::Enforcing, Some(crate::facts::OsFamily::Debian)) => Err((
            "SELinux is enforcing on a Debian-family host, where k3s ships no policy".into(),
            "set SELinux to permissive, or use a RHEL-family host with k3s-selinux".into(),
        )),
        _ => Ok(()),
    }
}

fn check_firewalld(f: &Facts, _: &Config) -> Result<(), (String, String)> {
    if f.firewalld_running {
        Err((
            "firewalld is running; k3s's networking does not work with it by default".into(),
            "stop it (systemctl disable --now firewalld), or trust the pod and service CIDRs (firewall-cmd --permanent --zone=trusted --add-source=10.42.0.0/16 --add-source=10.43.0.0/16) and pass --ignore-preflight firewalld".into(),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Layers;
    use crate::facts::OsRelease;
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::IpAddr;

    pub(crate) fn good_facts() -> Facts {
        Facts {
            arch: Arch::Amd64,
            os: Some(OsRelease::parse("ID=debian\nVERSION_ID=12\n")),
            os_release_path: "/etc/os-release".into(),
            cpus: 4,
            memory_bytes: 24 * GIB,
            fqdn: "foreman.example.com".into(),
            node_name: "foreman".into(),
            fqdn_addrs: vec![IpAddr::from([192, 168, 1, 10])],
            systemd: Some((true, "systemd".into())),
            default_route_iface: Some("eth0".into()),
            node_ip: Some(IpAddr::from([192, 168, 1, 10])),
            memory_cgroup: true,
            selinux: SelinuxMode::Disabled,
            firewalld_running: false,
            listening_ports: BTreeSet::from([22]),
            free_disk: BTreeMap::from([
                ("/var/lib/rancher".into(), 100 * GIB),
                ("/var/lib/pulp".into(), 100 * GIB),
            ]),
            k3s_active: false,
            postgres_active: false,
        }
    }

    fn failures(f: &Facts) -> Vec<&'static str> {
        run_checks(f, &Layers::new().resolve().unwrap())
            .iter()
            .map(|f| f.check)
            .collect()
    }

    #[test]
    fn a_fit_host_passes_every_check() {
        assert!(failures(&good_facts()).is_empty());
    }

    /// A check's name and how to spoil the facts for it.
    type Spoil = (&'static str, Box<dyn Fn(&mut Facts)>);

    #[test]
    fn each_unfit_fact_fails_its_own_check() {
        let cases: Vec<Spoil> = vec![
            ("arch", Box::new(|f| f.arch = Arch::Other("riscv64".into()))),
            (
                "os",
                Box::new(|f| f.os = Some(OsRelease::parse("ID=alpine\n"))),
            ),
            ("cpu", Box::new(|f| f.cpus = 2)),
            ("memory", Box::new(|f| f.memory_bytes = 8 * GIB)),
            (
                "disk",
                Box::new(|f| {
                    f.free_disk.insert("/var/lib/pulp".into(), GIB);
                }),
            ),
            (
                "ports",
                Box::new(|f| {
                    f.listening_ports.insert(6443);
                }),
            ),
            ("fqdn", Box::new(|f| f.fqdn = "Foreman.Example.com".into())),
            ("fqdn", Box::new(|f| f.fqdn = "foreman".into())),
            (
                "fqdn",
                Box::new(|f| f.fqdn = "foreman_1.example.com".into()),
            ),
            ("fqdn", Box::new(|f| f.fqdn_addrs.clear())),
            (
                "fqdn",
                Box::new(|f| f.fqdn_addrs = vec![IpAddr::from([127, 0, 1, 1])]),
            ),
            (
                "systemd",
                Box::new(|f| f.systemd = Some((false, "sh".into()))),
            ),
            ("route", Box::new(|f| f.default_route_iface = None)),
            ("cgroup", Box::new(|f| f.memory_cgroup = false)),
            ("selinux", Box::new(|f| f.selinux = SelinuxMode::Enforcing)),
            ("firewalld", Box::new(|f| f.firewalld_running = true)),
        ];
        for (check, spoil) in cases {
            let mut f = good_facts();
            spoil(&mut f);
            // Fewer cores or less memory than FC's minimum is also too little for the pods.
            let want = match check {
                "cpu" | "memory" => vec![check, "sizing"],
                _ => vec![check],
            };
            assert_eq!(failures(&f), want, "spoiling {check}");
        }
    }

    fn config(args: &[(&str, &str)]) -> Config {
        Layers::new()
            .with_env(
                args.iter()
                    .map(|(k, v)| (crate::config::env_name(k), v.to_string())),
            )
            .unwrap()
            .resolve()
            .unwrap()
    }

    #[test]
    fn sizing_refuses_more_workers_than_the_host_holds_naming_the_numbers() {
        let f = good_facts(); // 4 cores, 24 GiB
        assert_eq!(check_sizing(&f, &config(&[])), Ok(()));
        let (problem, fix) = check_sizing(
            &f,
            &config(&[
                ("foreman.dynflow_workers", "32"),
                ("foreman.tuning", "large"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            problem,
            "Foreman with Katello and Remote Execution with 32 Dynflow workers (tuning large) requests 50.4 GiB of memory and 10.8 CPU; this host has 24.0 GiB and 4 cores: 13.4 GiB after PostgreSQL (9.0 GiB) and k3s (1.6 GiB), 3.8 cores after k3s's system pods (0.2)"
        );
        assert_eq!(
            fix,
            "set foreman.tuning to a profile that fits (default with at most 6 workers), or give the machine more memory and cores"
        );
    }

    #[test]
    fn sizing_refuses_a_resource_its_tuning_profile_cannot_hold() {
        // 8 workers fit this 24 GiB host but not the default profile's 20 GiB one, so the API
        // server would refuse the resource: preflight says so first.
        let (problem, fix) =
            check_sizing(&good_facts(), &config(&[("foreman.dynflow_workers", "8")])).unwrap_err();
        assert_eq!(
            problem,
            "Foreman with Katello and Remote Execution with 8 Dynflow workers (tuning default) is more than the default tuning profile's host (4 cores, 20.0 GiB) schedules next to PostgreSQL and k3s, so the Foreman resource would be refused"
        );
        assert_eq!(
            fix,
            "lower foreman.dynflow_workers to at most 6, or set foreman.tuning to medium or large or extra-large or extra-extra-large"
        );
    }

    #[test]
    fn sizing_leaves_an_external_postgresql_out_and_names_profiles_that_fit() {
        let mut f = good_facts();
        f.memory_bytes = 14 * GIB;
        let local = config(&[]);
        let (problem, fix) = check_sizing(&f, &local).unwrap_err();
        assert!(
            problem.contains("after PostgreSQL (1.5 GiB) and k3s"),
            "{problem}"
        );
        assert!(
            fix.starts_with("lower foreman.dynflow_workers (at most "),
            "{fix}"
        );
        let external = config(&[
            ("postgres.mode", "external"),
            (
                "postgres.admin_url",
                "postgres://admin@db.example.com:5432/postgres",
            ),
        ]);
        // 14 GiB holds the pods and k3s once PostgreSQL is elsewhere.
        assert_eq!(check_sizing(&f, &external), Ok(()));
        // A large profile on this host: the smaller ones that fit are named.
        let large = config(&[("foreman.tuning", "large")]);
        let (_, fix) = check_sizing(&good_facts(), &large).unwrap_err();
        assert!(
            fix.contains("set foreman.tuning to a profile that fits (default)"),
            "{fix}"
        );
    }

    #[test]
    fn os_messages_name_the_os_release_file_that_was_read() {
        let cfg = Layers::new().resolve().unwrap();
        let mut f = good_facts();
        f.os_release_path = "/tmp/root/etc/os-release".into();
        f.os = None;
        let (missing, _) = check_os(&f, &cfg).unwrap_err();
        assert_eq!(
            missing,
            "/tmp/root/etc/os-release is missing, so the distribution is unknown"
        );
        f.os = Some(OsRelease::parse(
            "ID=alpine\nPRETTY_NAME=\"Alpine Linux\"\n",
        ));
        let (other, _) = check_os(&f, &cfg).unwrap_err();
        assert_eq!(
            other,
            "Alpine Linux (alpine) is not a supported distribution (read from /tmp/root/etc/os-release)"
        );
    }

    #[test]
    fn running_k3s_holds_its_own_ports() {
        let mut f = good_facts();
        f.listening_ports.extend([6443, 10250, 80, 443]);
        f.k3s_active = true;
        assert!(failures(&f).is_empty());
    }

    #[test]
    fn ignore_turns_named_failures_into_warnings() {
        let mut f = good_facts();
        f.cpus = 1;
        f.firewalld_running = true;
        let cfg = Layers::new().resolve().unwrap();
        let (fatal, ignored) = partition(run_checks(&f, &cfg), &["cpu".into(), "sizing".into()]);
        assert_eq!(
            fatal.iter().map(|f| f.check).collect::<Vec<_>>(),
            vec!["firewalld"]
        );
        assert_eq!(ignored.len(), 2);
        let (fatal, _) = partition(run_checks(&f, &cfg), &["all".into()]);
        assert!(fatal.is_empty());
        assert!(render(&run_checks(&f, &cfg)).contains("--ignore-preflight cpu"));
    }
}
