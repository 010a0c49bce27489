//! The managed block at the top of pg_hba.conf: loopback and the pod network for our databases,
//! everyone else rejected for them; the rest of the file stays the user's.

use super::connection::Session;
use super::{Op, ADMIN_ROLE, DATABASES};
use crate::action::Planned;
use crate::config::PostgresMode;
use crate::context::Context;
use crate::error::Result;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const HBA_BEGIN: &str =
    "# BEGIN foreman-box: managed block, replaced on every `foreman-box install`";
const HBA_END: &str = "# END foreman-box";

/// The managed pg_hba.conf block: loopback and the pod network for our databases, nothing else.
pub(crate) fn hba_block(cx: &Context) -> String {
    let pods = cx.config.k3s.cluster_cidr.to_string();
    let mut lines = vec![HBA_BEGIN.to_string()];
    if cx.config.postgres.mode == PostgresMode::Local {
        lines.push(format!(
            "host    postgres    {ADMIN_ROLE:<17} 127.0.0.1/32    scram-sha-256"
        ));
    }
    for db in DATABASES {
        for net in ["127.0.0.1/32", "::1/128", pods.as_str()] {
            lines.push(format!("host    {db:<11} {db:<17} {net:<15} scram-sha-256"));
        }
    }
    let all = DATABASES.join(",");
    // The admin role reaches our databases from this host only: backup dumps them, restore
    // rebuilds them and health counts Foreman's tasks, all as the admin. Its name is ours in
    // local mode; external mode's comes from admin_url, whose parser allows only letters,
    // digits, `_`, `-` and `.` (nothing pg_hba.conf would read as syntax).
    let admin = match (&cx.config.postgres.mode, &cx.config.postgres.admin_url) {
        (PostgresMode::Local, _) => Some(ADMIN_ROLE.to_string()),
        (_, Some(url)) => Some(url.user.clone()),
        (_, None) => None,
    };
    if let Some(admin) = admin {
        for net in ["127.0.0.1/32", "::1/128"] {
            lines.push(format!("host    {all} {admin} {net} scram-sha-256"));
        }
    }
    lines.push(format!("host    {all} all 0.0.0.0/0 reject"));
    lines.push(format!("host    {all} all ::/0 reject"));
    lines.push(HBA_END.to_string());
    lines.join("\n") + "\n"
}

/// Puts the block first (first match wins), replacing an earlier copy in place.
pub(crate) fn with_hba_block(current: &str, block: &str) -> String {
    if let (Some(start), Some(end)) = (current.find(HBA_BEGIN), current.find(HBA_END)) {
        if start < end {
            let after = &current[end + HBA_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            return format!("{}{}{}", &current[..start], block, after);
        }
    }
    format!("{block}{current}")
}

/// The block's write when the file lacks the block, and whether it changes (the caller adds the
/// one reload that makes it count, with the settings').
pub(super) async fn plan(cx: &Context, db: &Arc<Session>) -> Result<(Vec<Planned<Op>>, bool)> {
    let path: String = db
        .query_one(
            "SELECT setting FROM pg_settings WHERE name = 'hba_file'",
            &[],
            "finding pg_hba.conf",
        )
        .await?
        .get(0);
    // The server reports its own path: on this host, and not under --root.
    let path = PathBuf::from(path);
    let fs = cx.host.fs();
    let mut out = Vec::new();
    let temps = crate::action::remove_stale_temps(&cx.host, std::slice::from_ref(&path));
    out.extend(crate::action::wrap(temps, Op::Host));
    let current = fs.read_string(&path)?.unwrap_or_default();
    let desired = with_hba_block(&current, &hba_block(cx));
    if desired == current {
        return Ok((out, false));
    }
    let why = if current.contains(HBA_BEGIN) {
        "block differs"
    } else {
        "block missing"
    };
    let mode = fs.mode(&path)?.unwrap_or(0o640);
    let op = Op::WriteHba {
        path,
        content: desired,
        mode,
    };
    out.push(Planned::new(op, why));
    Ok((out, true))
}

/// The content pg_hba.conf at `path` should have, if it differs from what is there.
pub(super) fn desired_content(cx: &Context, path: &Path, block: &str) -> Result<Option<String>> {
    let current = cx.host.fs().read_string(path)?.unwrap_or_default();
    let desired = with_hba_block(&current, block);
    Ok((desired != current).then_some(desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_block_is_replaced_in_place_never_duplicated() {
        let block = "# BEGIN foreman-box: managed block, replaced on every `foreman-box install`\nhost a\n# END foreman-box\n";
        let original = "local all all peer\n";
        let once = with_hba_block(original, block);
        assert!(once.starts_with(block));
        assert!(once.ends_with(original));
        let newer = block.replace("host a", "host b");
        let twice = with_hba_block(&once, &newer);
        assert_eq!(twice.matches("# BEGIN foreman-box").count(), 1);
        assert!(twice.contains("host b") && !twice.contains("host a"));
        assert_eq!(with_hba_block(&twice, &newer), twice);
    }
}
