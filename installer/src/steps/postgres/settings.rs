//! Server settings sized for Foreman on this host: connections for its pools, the tuning
//! profile's shared buffers, listening where pods reach it. Only raised, never lowered.

use super::connection::Session;
use super::Op;
use crate::action::Planned;
use crate::config::PostgresMode;
use crate::context::Context;
use crate::error::Result;
use std::sync::Arc;

/// The settings this module tunes (what uninstall --purge puts back).
pub(super) const TUNED: [&str; 3] = ["listen_addresses", "max_connections", "shared_buffers"];

/// Settings wanted for this host: (name, value, at least this many kB or connections).
fn desired_settings(cx: &Context) -> Vec<(&'static str, String)> {
    let workers = u64::from(cx.config.foreman.dynflow_workers);
    // Foreman's puma and dynflow pools, plus Candlepin's and Pulp's when Katello is on.
    let katello = if cx.config.foreman.katello { 150 } else { 0 };
    let max_connections = (100 + 30 * workers + katello).max(100);
    // The tuning profile's (FC src/vars/tuning/*.yml postgresql_shared_buffers), which the
    // preflight's sizing check counts against the host beside the pods.
    let shared_mb = foreman_operator::profile::Profile::of(cx.config.foreman.tuning)
        .postgres_shared_buffers_mib;
    let mut listen = vec!["localhost".to_string()];
    if let Some(ip) = cx.facts.node_ip.filter(|ip| !ip.is_loopback()) {
        listen.push(ip.to_string());
    }
    TUNED
        .into_iter()
        .zip([
            listen.join(","),
            max_connections.to_string(),
            format!("{shared_mb}MB"),
        ])
        .collect()
}

/// A memory setting in kB ("128MB", "1GB", or plain 8 kB blocks for shared_buffers).
fn memory_kb(value: &str, unit_kb: u64) -> Option<u64> {
    let v = value.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    Some(match unit.trim() {
        "" => n * unit_kb,
        "kB" => n,
        "MB" => n * 1024,
        "GB" => n * 1024 * 1024,
        "TB" => n * 1024 * 1024 * 1024,
        _ => return None,
    })
}

/// `hba_changed`: pg_hba.conf is being rewritten too, so the one reload covers both.
pub(super) async fn plan(
    cx: &Context,
    db: &Arc<Session>,
    hba_changed: bool,
) -> Result<Vec<Planned<Op>>> {
    let mut out = Vec::new();
    let wanted = desired_settings(cx);
    let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
    // What will be in force after a restart: the last file setting (its error says "could not
    // be applied" while a restart is pending), else the running value.
    let rows = db
        .query(
            "SELECT s.name, coalesce((SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name ORDER BY f.seqno DESC LIMIT 1), s.setting), s.pending_restart \
             FROM pg_settings s WHERE s.name = ANY($1)",
            &[&names],
            "reading server settings",
        )
        .await?;
    let mut pending = false;
    let mut restart_for = Vec::new();
    for row in rows {
        let (name, current, pending_restart): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        pending |= pending_restart;
        let Some((name, want)) = wanted.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let enough = match *name {
            "listen_addresses" => {
                let have: Vec<&str> = current.split(',').map(str::trim).collect();
                have.contains(&"*") || want.split(',').all(|w| have.contains(&w))
            }
            "max_connections" => {
                current.parse::<u64>().unwrap_or(0) >= want.parse::<u64>().unwrap_or(0)
            }
            _ => memory_kb(&current, 8).unwrap_or(0) >= memory_kb(want, 8).unwrap_or(0),
        };
        if !enough {
            restart_for.push(*name);
            let op = Op::Set {
                name: name.to_string(),
                value: want.clone(),
            };
            out.push(Planned::new(op, format!("now '{current}'")));
        }
    }
    let why = match (hba_changed, !out.is_empty()) {
        (true, true) => Some("pg_hba.conf and settings changed"),
        (true, false) => Some("pg_hba.conf changed"),
        (false, true) => Some("settings changed"),
        (false, false) => None,
    };
    if let Some(why) = why {
        out.push(Planned::new(Op::Reload, why));
    }
    if !restart_for.is_empty() || pending {
        if cx.config.postgres.mode == PostgresMode::Local && !cx.options.skip_start {
            out.push(Planned::new(
                Op::Restart,
                "settings that take effect on restart changed",
            ));
        } else {
            cx.reporter.warning(
                "postgres",
                &format!(
                    "PostgreSQL at {} has settings that take effect only after it restarts: restart it when convenient",
                    db.target.server()
                ),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_settings_compare_in_kb() {
        assert_eq!(memory_kb("128MB", 8), Some(128 * 1024));
        assert_eq!(memory_kb("16384", 8), Some(16384 * 8));
        assert_eq!(memory_kb("'1GB'", 8), Some(1024 * 1024));
        assert_eq!(memory_kb("lots", 8), None);
    }
}
