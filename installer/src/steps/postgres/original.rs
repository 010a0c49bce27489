//! What a PostgreSQL server was like before foreman-box first changed it, so that
//! `foreman-box-uninstall.sh --purge` can put it back: either "foreman-box installed it from
//! packages" (purge then removes it with its data), or the server was found and these were its
//! tuned settings (purge puts them back in `postgresql.auto.conf`, where ALTER SYSTEM keeps them).
//!
//! Written once, before the first change, through the TOML serializer, 0600, and never
//! rewritten: a later run, even with other settings, finds it and leaves it. It lives in
//! /etc/foreman-box, which uninstall keeps without --purge, so a purge after a plain uninstall
//! (and a reinstall in between) still finds the state from before the first install.

use super::connection::Session;
use super::Op;
use crate::action::Planned;
use crate::context::Context;
use crate::error::Result;
use crate::host::{Host, PackageManager};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Read by scripts/uninstall.sh (`toml_get`): keep the keys in step with it.
pub(crate) const RECORD: &str = "/etc/foreman-box/postgres-original.toml";

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Origin {
    /// foreman-box installed the server from packages on a host that had none.
    Installed,
    /// The server was there; foreman-box tuned it.
    Found,
}

#[derive(Debug, Serialize)]
struct Record {
    server: Origin,
    /// How the server was installed, when foreman-box installed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    package_manager: Option<&'static str>,
    /// `pg_control_system()`'s identifier of the cluster the settings belong to: uninstall
    /// puts them back only into the same one.
    #[serde(skip_serializing_if = "Option::is_none")]
    system_identifier: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    settings: BTreeMap<String, Setting>,
}

#[derive(Debug, Serialize)]
struct Setting {
    /// In force before (`current_setting`), for the person reading the file.
    was: String,
    /// Whether postgresql.auto.conf set it: uninstall sets it back to `auto_conf`, or, when it
    /// did not, resets it (what postgresql.conf or the default says applies again).
    in_auto_conf: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_conf: Option<String>,
}

const HEADER: &str =
    "# What this PostgreSQL server was like before foreman-box first changed it. Written once,\n\
# never rewritten; `foreman-box-uninstall.sh --purge` puts the server back from it.\n";

pub(super) fn exists(host: &Host) -> bool {
    host.fs().exists(&host.path(RECORD))
}

/// Before installing the server from packages: purge is to remove it again, with its data.
pub(super) fn record_installed(pm: PackageManager) -> Planned<Op> {
    let record = Record {
        server: Origin::Installed,
        package_manager: Some(match pm {
            PackageManager::Apt => "apt",
            PackageManager::Dnf => "dnf",
            PackageManager::Zypper => "zypper",
        }),
        system_identifier: None,
        settings: BTreeMap::new(),
    };
    write_action(
        record,
        "foreman-box installs the server: purge removes it again",
    )
}

/// Before the first change to a server foreman-box did not install: the settings it tunes, as
/// the server has them now. Nothing when the record is there already.
pub(super) async fn plan_found(
    cx: &Context,
    db: &Arc<Session>,
    tuned: &[&str],
) -> Result<Option<Planned<Op>>> {
    if exists(&cx.host) {
        return Ok(None);
    }
    let rows = db
        .query(
            "SELECT s.name, current_setting(s.name), \
                    (SELECT f.setting FROM pg_file_settings f \
                      WHERE f.name = s.name \
                        AND f.sourcefile = current_setting('data_directory') || '/postgresql.auto.conf' \
                      ORDER BY f.seqno DESC LIMIT 1) \
             FROM pg_settings s WHERE s.name = ANY($1)",
            &[&tuned],
            "reading the settings to record before changing them",
        )
        .await?;
    let settings = rows
        .into_iter()
        .map(|row| {
            let auto_conf: Option<String> = row.get(2);
            (
                row.get::<_, String>(0),
                Setting {
                    was: row.get(1),
                    in_auto_conf: auto_conf.is_some(),
                    auto_conf,
                },
            )
        })
        .collect();
    let system_identifier: String = db
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
            "reading the server's system identifier",
        )
        .await?
        .get(0);
    let record = Record {
        server: Origin::Found,
        package_manager: None,
        system_identifier: Some(system_identifier),
        settings,
    };
    Ok(Some(write_action(
        record,
        "before the first change: uninstall --purge puts these back",
    )))
}

fn write_action(record: Record, why: &str) -> Planned<Op> {
    let record = format!(
        "{HEADER}{}",
        toml::to_string(&record).expect("a record of strings and booleans serializes")
    );
    Planned::new(Op::RecordOriginal { record }, why)
}

/// Never rewritten: the first record is the state before foreman-box.
pub(super) fn write(host: &Host, record: &str) -> Result<()> {
    if !exists(host) {
        host.fs()
            .write_atomic(&host.path(RECORD), record.as_bytes(), 0o600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_server_is_recorded_with_each_setting_and_whether_auto_conf_set_it() {
        let record = Record {
            server: Origin::Found,
            package_manager: None,
            system_identifier: Some("7312345678901234567".into()),
            settings: BTreeMap::from([
                (
                    "listen_addresses".to_string(),
                    Setting {
                        was: "localhost".into(),
                        in_auto_conf: false,
                        auto_conf: None,
                    },
                ),
                (
                    "max_connections".to_string(),
                    Setting {
                        was: "120".into(),
                        in_auto_conf: true,
                        auto_conf: Some("120".into()),
                    },
                ),
            ]),
        };
        let text = toml::to_string(&record).unwrap();
        let back: toml::Table = text.parse().unwrap();
        assert_eq!(back["server"].as_str(), Some("found"));
        assert_eq!(
            back["system_identifier"].as_str(),
            Some("7312345678901234567")
        );
        let listen = &back["settings"]["listen_addresses"];
        assert_eq!(listen["in_auto_conf"].as_bool(), Some(false));
        assert!(listen.get("auto_conf").is_none());
        assert_eq!(
            back["settings"]["max_connections"]["auto_conf"].as_str(),
            Some("120")
        );
        // One `[settings.NAME]` table per setting: the shape uninstall.sh's reader takes.
        assert!(text.contains("[settings.max_connections]\n"), "{text}");
    }
}
