//! Services (systemd) and packages (apt, dnf, zypper), all through the command runner.

use super::{Cmd, CommandRunner, HostError};

pub struct ServiceManager<'a> {
    runner: &'a dyn CommandRunner,
}

impl<'a> ServiceManager<'a> {
    pub fn new(runner: &'a dyn CommandRunner) -> Self {
        ServiceManager { runner }
    }

    /// `systemctl is-active` of the unit: "active", "inactive", "failed", ... or "unknown".
    pub fn state(&self, unit: &str) -> String {
        match self
            .runner
            .output(&Cmd::new("systemctl").args(["is-active", unit]))
        {
            Ok(out) => {
                let s = out.stdout.trim();
                if s.is_empty() {
                    "unknown".into()
                } else {
                    s.to_string()
                }
            }
            Err(_) => "unknown".into(),
        }
    }

    pub fn daemon_reload(&self) -> Result<(), HostError> {
        self.systemctl(&["daemon-reload"])
    }

    pub fn enable_now(&self, unit: &str) -> Result<(), HostError> {
        self.systemctl(&["enable", "--now", unit])
    }

    pub fn restart(&self, unit: &str) -> Result<(), HostError> {
        self.systemctl(&["restart", unit])
    }

    pub fn reload(&self, unit: &str) -> Result<(), HostError> {
        self.systemctl(&["reload", unit])
    }

    /// The unit's status and the last lines its journal holds since `since` (the start we
    /// asked for: lines of earlier runs, even from before an uninstall, would mislead), for
    /// "why did it not come up".
    pub fn diagnose(&self, unit: &str, lines: u32, since: std::time::SystemTime) -> String {
        // Microseconds, as the journal keeps them: a line of the run just before is not "since".
        let at = since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let since = format!("@{}.{:06}", at.as_secs(), at.subsec_micros());
        let status = self
            .runner
            .output(&Cmd::new("systemctl").args(["status", "--no-pager", "--lines=0", unit]))
            .map(|o| o.stdout)
            .unwrap_or_default();
        let journal = self
            .runner
            .output(&Cmd::new("journalctl").args([
                "--no-pager",
                "--unit",
                unit,
                "--lines",
                &lines.to_string(),
                "--since",
                &since,
            ]))
            .map(|o| o.stdout)
            .unwrap_or_default();
        format!(
            "service state: {}\n{}\nlast journal lines since this start:\n{}",
            self.state(unit),
            status.trim_end(),
            journal.trim_end()
        )
    }

    fn systemctl(&self, args: &[&str]) -> Result<(), HostError> {
        self.runner
            .run(&Cmd::new("systemctl").args(args.iter().copied()))
            .map(|_| ())
    }
}

/// The distribution's package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
    Zypper,
}

impl PackageManager {
    pub fn is_installed(&self, runner: &dyn CommandRunner, package: &str) -> bool {
        let cmd = match self {
            PackageManager::Apt => Cmd::new("dpkg-query").args(["-W", "-f=${Status}", package]),
            PackageManager::Dnf | PackageManager::Zypper => Cmd::new("rpm").args(["-q", package]),
        };
        match runner.output(&cmd) {
            Ok(out) if *self == PackageManager::Apt => {
                out.success() && out.stdout.contains("install ok installed")
            }
            Ok(out) => out.success(),
            Err(_) => false,
        }
    }

    pub fn install(&self, runner: &dyn CommandRunner, packages: &[&str]) -> Result<(), HostError> {
        let cmd = match self {
            PackageManager::Apt => {
                // A fresh host may never have fetched its package lists.
                runner.run(&Cmd::new("apt-get").args(["update", "-q"]))?;
                Cmd::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"])
            }
            PackageManager::Dnf => Cmd::new("dnf").args(["install", "-y", "-q"]),
            PackageManager::Zypper => {
                Cmd::new("zypper").args(["--non-interactive", "install", "--no-recommends"])
            }
        };
        runner.run(&cmd.args(packages.iter().copied())).map(|_| ())
    }
}
