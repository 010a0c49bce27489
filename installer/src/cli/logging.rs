//! Logging: the run log every host command leaves behind, and what of tracing reaches the
//! display.
//!
//! The run log is `/var/log/foreman-box/<UTC time>-<pid>-<command>.log` under the host root,
//! 0600 in a 0700 directory, with timestamps and our crates at debug level whatever the terminal
//! shows; the last [`KEEP`] runs are kept. Other crates log only warnings into it: their debug
//! lines (a database client's query text, say) are where secrets would leak.

use super::display::{Display, REPORT_TARGET};
use crate::host::{Host, HostError};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use crate::report::LOG_DIR;
/// Run logs kept, the new one included.
pub const KEEP: usize = 10;

/// Our crates: detail in the log; everything else: warnings only.
const OURS: [&str; 3] = ["foreman_box", "foreman_operator", "foreman_box_bundle"];

/// A freshly created run log.
pub struct RunLog {
    /// Where it is, as the user can open it (under `--root` when given).
    pub path: PathBuf,
    file: std::fs::File,
}

/// Creates this run's log under the host root and prunes the old ones.
pub fn open_run_log(host: &Host, command: &str) -> Result<RunLog, HostError> {
    let fs = host.fs();
    // A link here would take the log, the chmod and the pruning of old logs with it.
    let dir = host.owned(LOG_DIR)?;
    fs.ensure_dir(&dir, 0o700)?;
    let name = format!(
        "{}-{}-{command}.log",
        utc_stamp(SystemTime::now()),
        std::process::id()
    );
    let path = dir.join(name);
    let file = fs.open_truncate(&path, 0o600)?;
    fs.set_mode(&path, 0o600)?;
    let mut logs: Vec<String> = fs
        .list_dir(&dir)?
        .into_iter()
        .filter(|n| is_run_log(n))
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(KEEP);
    for old in &logs[..excess] {
        fs.remove_file(&dir.join(old))?;
    }
    Ok(RunLog { path, file })
}

fn is_run_log(name: &str) -> bool {
    name.ends_with(".log") && name.len() > 17 && name.as_bytes()[..8].iter().all(u8::is_ascii_digit)
}

/// Installs the tracing subscriber: the run log (when there is one) and the display.
///
/// On the display: warnings always (under the running step), `-v` adds our info lines, `-vv`
/// debug, `-vvv` trace; `FOREMAN_BOX_LOG` (an EnvFilter) replaces that choice.
pub fn init(display: &Display, verbose: u8, log: Option<RunLog>) {
    let ours = |level: &str| {
        let mut d = "warn".to_string();
        for c in OURS {
            let _ = write!(d, ",{c}={level}");
        }
        d
    };
    let file_level = if verbose >= 2 { "trace" } else { "debug" };
    let file = log.map(|l| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(l.file))
            .with_filter(EnvFilter::new(ours(file_level)))
    });
    let shown = match verbose {
        0 => "warn".to_string(),
        1 => ours("info"),
        2 => ours("debug"),
        _ => ours("trace"),
    };
    let filter = capped(
        EnvFilter::try_from_env("FOREMAN_BOX_LOG").unwrap_or_else(|_| EnvFilter::new(shown)),
    )
    // kube's HTTP layer logs every refused connection as an error; our own error, or the note
    // of a wait, says it better on the screen. The run log keeps them.
    .add_directive(
        "kube_client::client::builder=off"
            .parse()
            .expect("a valid directive"),
    );
    let screen = ToDisplay {
        display: display.clone(),
    }
    .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(file)
        .with(screen)
        .try_init();
}

/// tokio-postgres logs every statement at debug level, and `ALTER ROLE ... PASSWORD` carries a
/// SCRAM verifier: its debug and trace lines are never shown, whatever FOREMAN_BOX_LOG says.
fn capped(filter: EnvFilter) -> EnvFilter {
    filter.add_directive("tokio_postgres=info".parse().expect("a valid directive"))
}

/// Logging for commands without a host (the operator in its pod, render): plain tracing on
/// stderr, as a container's log expects.
pub fn init_stderr(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = capped(
        EnvFilter::try_from_env("FOREMAN_BOX_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .init();
}

/// Hands tracing events to the display, except the display's own (they are in the log already).
struct ToDisplay {
    display: Display,
}

impl<S: tracing::Subscriber> Layer<S> for ToDisplay {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target() == REPORT_TARGET {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        self.display.event(*event.metadata().level(), &text.0);
    }
}

/// `message key=value key=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

/// `20261123T100754Z`: sorts by time, safe in a file name.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn stamp_is_utc_and_sortable() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_428_474); // 2026-11-23T10:07:54Z
        assert_eq!(utc_stamp(t), "20261123T100754Z");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&utc_stamp(leap)[..8], "20000229");
    }

    #[test]
    fn run_log_is_private_and_old_ones_are_pruned() {
        let root = tempfile::tempdir().unwrap();
        let host = Host::new(root.path(), Arc::new(crate::host::RecordingRunner::new()));
        let dir = host.path(LOG_DIR);
        host.fs().create_dir_all(&dir).unwrap();
        for i in 0..12 {
            let old = dir.join(format!("2020010{}T000000Z-{i}-install.log", i % 10));
            host.fs().write_atomic(&old, b"old", 0o600).unwrap();
        }
        host.fs()
            .write_atomic(&dir.join("notes.txt"), b"kept", 0o644)
            .unwrap();
        let log = open_run_log(&host, "install").unwrap();
        let mode = |p: &std::path::Path| host.fs().mode(p).unwrap().unwrap() & 0o777;
        assert_eq!(mode(&log.path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let names = host.fs().list_dir(&dir).unwrap();
        let logs: Vec<_> = names.iter().filter(|n| is_run_log(n)).collect();
        assert_eq!(logs.len(), KEEP, "{names:?}");
        assert!(
            names.contains(&"notes.txt".to_string()),
            "only run logs are pruned"
        );
        let newest = log.path.file_name().unwrap().to_str().unwrap();
        assert!(logs.iter().any(|n| n.as_str() == newest));
        assert!(
            !names.iter().any(|n| n.starts_with("20200100")),
            "oldest went first: {names:?}"
        );
    }
}
