//! A value that never prints: Debug and Display are redacted, so a secret cannot reach a log
//! line, an error message or `plan` output by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the few places that must hand it on (stdin, a 0600 file, a client).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// A fresh random value: 32 characters from [A-Za-z0-9], about 190 bits from the OS RNG.
    pub(crate) fn generate() -> Self {
        use rand::{Rng, TryRngCore};
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let s = (0..32)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Mode repairs for a secrets directory (0700) and its files (0600): one planned action per
/// path whose mode lets others read it, each with a warning for the reporter, so a secret left
/// at 0644 (or a folder at 0755) is noticed and repaired by `apply`, never silently. `dir` and
/// `files` are host paths (`/etc/foreman-box/secrets/...`); missing ones are skipped. The
/// PostgreSQL step calls this in its plan.
pub(crate) fn mode_repairs(
    cx: &crate::steps::Context,
    dir: &str,
    files: &[String],
) -> crate::Result<Vec<(crate::steps::Action, String)>> {
    let fs = cx.host.fs();
    let mut out = Vec::new();
    let wanted =
        std::iter::once((dir.to_string(), 0o700)).chain(files.iter().map(|f| (f.clone(), 0o600)));
    for (path, want) in wanted {
        let Some(found) = fs.mode(&cx.host.path(&path))? else {
            continue;
        };
        if found & 0o077 == 0 {
            continue;
        }
        let warning =
            format!("{path} is readable by others (mode {found:04o}); setting it to {want:04o}");
        let target = path.clone();
        let action = crate::steps::Action::sync(
            format!("chmod {want:04o} {path}"),
            format!("mode is {found:04o}: others could read a secret"),
            move |cx| Ok(cx.host.fs().set_mode(&cx.host.path(&target), want)?),
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
        let cx = crate::steps::Context::new(host, facts, config, Default::default(), None);
        let files = ["a", "b", "missing"].map(|f| format!("/etc/foreman-box/secrets/{f}"));
        let repairs = mode_repairs(&cx, "/etc/foreman-box/secrets", &files).unwrap();
        let whats: Vec<_> = repairs.iter().map(|(a, _)| a.change.what.clone()).collect();
        assert_eq!(
            whats,
            [
                "chmod 0700 /etc/foreman-box/secrets",
                "chmod 0600 /etc/foreman-box/secrets/a"
            ]
        );
        assert!(repairs[1].1.contains("mode 0644"), "{}", repairs[1].1);
        crate::steps::run_all(&cx, repairs.into_iter().map(|(a, _)| a).collect())
            .await
            .unwrap();
        let mode = |p: &std::path::Path| cx.host.fs().mode(p).unwrap().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a")), 0o600);
        assert!(mode_repairs(&cx, "/etc/foreman-box/secrets", &files)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("swordfish");
        assert!(!format!("{s} {s:?}").contains("swordfish"));
        assert_eq!(s.expose(), "swordfish");
    }

    #[test]
    fn generated_secrets_are_distinct_and_alphanumeric() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 32);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
