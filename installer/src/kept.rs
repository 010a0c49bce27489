//! The kept secrets: one directory on the host, `/etc/foreman-box/secrets` (0700), and its
//! rules. It holds the PostgreSQL role passwords (`postgres-<role>`, one line, 0600) and a copy of
//! every Secret the installer generates for the cluster (`<name>.yaml`, 0600), so a lost cluster
//! or a restore gets the same values back. Everything that reads or writes there goes through
//! this module: the steps, backup and restore, status, health and the support bundle (which
//! leaves the directory out).

use crate::action::{HostOp, Planned};
use crate::context::Context;
use crate::error::Result;
use crate::host::Host;
use crate::secret::Secret;
use std::path::PathBuf;

/// The kept-secrets directory (a host path).
pub const SECRETS_DIR: &str = "/etc/foreman-box/secrets";

/// Where the copy of Secret `name` is kept (a host path).
pub fn copy_path(name: &str) -> String {
    format!("{SECRETS_DIR}/{name}.yaml")
}

/// Where the password of PostgreSQL role `name` is kept.
pub fn role_password_path(name: &str) -> String {
    format!("{SECRETS_DIR}/postgres-{name}")
}

/// The kept-secrets directory under the host root, refused when it is a symbolic link (or,
/// under `--root`, leads out of the root): every secret would follow it.
pub fn dir(host: &Host) -> Result<PathBuf> {
    Ok(host.owned(SECRETS_DIR)?)
}

/// A kept file (a host path in [`SECRETS_DIR`]) under the host root, refused as [`dir`] is, and
/// when the file itself is a symbolic link.
pub fn path(host: &Host, host_path: &str) -> Result<PathBuf> {
    dir(host)?;
    Ok(host.owned(host_path)?)
}

/// The text of a kept file, or None when there is none.
pub fn read(host: &Host, host_path: &str) -> Result<Option<String>> {
    Ok(host.fs().read_string(&path(host, host_path)?)?)
}

/// The kept password of role `name`, if there is one.
pub fn read_role_password(host: &Host, name: &str) -> Result<Option<Secret>> {
    Ok(read(host, &role_password_path(name))?
        .map(|s| Secret::new(s.lines().next().unwrap_or("").to_string()))
        .filter(|s| !s.expose().is_empty()))
}

/// Stores a password (0600, in the 0700 secrets folder).
pub fn write_role_password(host: &Host, name: &str, password: &Secret) -> Result<()> {
    host.fs().ensure_dir(&dir(host)?, 0o700)?;
    host.fs().write_atomic(
        &path(host, &role_password_path(name))?,
        format!("{}\n", password.expose()).as_bytes(),
        0o600,
    )?;
    Ok(())
}

/// Mode repairs for a secrets directory (0700) and its files (0600): one planned action per
/// path whose mode lets others read it, each with a warning for the reporter, so a secret left
/// at 0644 (or a folder at 0755) is noticed and repaired by `apply`, never silently. `dir` and
/// `files` are host paths (`/etc/foreman-box/secrets/...`); missing ones are skipped. The
/// PostgreSQL step calls this in its plan.
pub fn mode_repairs(
    cx: &Context,
    dir: &str,
    files: &[String],
) -> Result<Vec<(Planned<HostOp>, String)>> {
    let fs = cx.host.fs();
    let mut out = Vec::new();
    let wanted =
        std::iter::once((dir.to_string(), 0o700)).chain(files.iter().map(|f| (f.clone(), 0o600)));
    for (path, want) in wanted {
        let Some(found) = fs.mode(&cx.host.owned(&path)?)? else {
            continue;
        };
        if found & 0o077 == 0 {
            continue;
        }
        let warning =
            format!("{path} is readable by others (mode {found:04o}); setting it to {want:04o}");
        let action = Planned::new(
            HostOp::SetMode {
                path: path.into(),
                mode: want,
            },
            format!("mode is {found:04o}: others could read a secret"),
        );
        out.push((action, warning));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loose_secret_modes_are_planned_for_repair_and_repaired() {
        use crate::host::{Host, RecordingRunner};
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path(), std::sync::Arc::new(RecordingRunner::new()));
        let fs = *host.fs();
        let dir = root.path().join("etc/foreman-box/secrets");
        fs.ensure_dir(&dir, 0o755).unwrap();
        fs.write_atomic(&dir.join("a"), b"x", 0o644).unwrap();
        fs.write_atomic(&dir.join("b"), b"x", 0o600).unwrap();
        let config = crate::config::Layers::new().resolve().unwrap();
        let facts = crate::steps::preflight::tests::good_facts();
        let cx = Context::new(host, facts, config, Default::default(), None);
        let files = ["a", "b", "missing"].map(|f| format!("/etc/foreman-box/secrets/{f}"));
        let repairs = mode_repairs(&cx, "/etc/foreman-box/secrets", &files).unwrap();
        let ops: Vec<_> = repairs.iter().map(|(a, _)| a.op.clone()).collect();
        let set = |path: &str, mode| HostOp::SetMode {
            path: path.into(),
            mode,
        };
        assert_eq!(
            ops,
            [
                set("/etc/foreman-box/secrets", 0o700),
                set("/etc/foreman-box/secrets/a", 0o600)
            ]
        );
        assert!(repairs[1].1.contains("mode 0644"), "{}", repairs[1].1);
        for (repair, _) in repairs {
            repair.op.run(&cx.host).unwrap();
        }
        let mode = |p: &std::path::Path| cx.host.fs().mode(p).unwrap().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a")), 0o600);
        assert!(mode_repairs(&cx, "/etc/foreman-box/secrets", &files)
            .unwrap()
            .is_empty());
    }
}
