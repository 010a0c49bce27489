//! The Foreman release streams foreman-box moves between, one at a time, and what changes from
//! one to the next. Pure data and functions: the installer's upgrade guard refuses a skipped or
//! backward move and names the manual steps; the operator can order its own work by it.
//!
//! Sources: theforeman/foremanctl tags and their `src/vars/images.yml`:
//! - 2.0.0 (2026-04-15): `container_tag_stream: "3.18"`, `postgresql-13-c9s`, `redis-6-c9s`;
//! - 2.2.0 (2026-05-21) and 2.3.0: `"3.19"`, still `postgresql-13-c9s` and `redis-6-c9s`;
//! - 3.0.0 (2026-08-14): `"5.0"`, `postgresql-16-c10s` (commit ca470b8 "Switch to PostgreSQL
//!   16 image", with the 13 → 16 upgrade in src/roles/postgresql/tasks/upgrade.yaml) and
//!   `valkey-8-c10s` (commit b27acb8 "Switch to Valkey 8", src/roles/valkey/tasks/cleanup_redis.yaml
//!   removes the Redis container: the cache holds nothing that must survive).

use std::fmt;

/// The in-cluster cache and Dynflow's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// quay.io/sclorg/redis-6-c9s
    Redis6,
    /// quay.io/sclorg/valkey-8-c10s
    Valkey8,
}

impl fmt::Display for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cache::Redis6 => "Redis 6",
            Cache::Valkey8 => "Valkey 8",
        })
    }
}

/// One release stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// `spec.version`: the image tag stream.
    pub version: &'static str,
    /// The foremanctl tag that deploys it.
    pub foremanctl: &'static str,
    /// The PostgreSQL major version foremanctl runs it with.
    pub postgres_major: u32,
    pub cache: Cache,
}

/// Every stream, oldest first. Moves go from one entry to the next only.
pub const TABLE: &[Stream] = &[
    Stream {
        version: "3.18",
        foremanctl: "2.0.0",
        postgres_major: 13,
        cache: Cache::Redis6,
    },
    Stream {
        version: "3.19",
        foremanctl: "2.2.0",
        postgres_major: 13,
        cache: Cache::Redis6,
    },
    Stream {
        version: "5.0",
        foremanctl: "3.0.0",
        postgres_major: 16,
        cache: Cache::Valkey8,
    },
];

/// Who does a change of a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The operator, as part of rolling to the new stream.
    Operator,
    /// A person, before the move: the move is refused until it is done.
    Manual,
}

/// One thing that changes between two streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub by: By,
    /// For a manual step: how.
    pub how: Option<String>,
}

/// Why a move is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown { version: String, known: String },
    Backward { from: String, to: String },
    Skips { from: String, to: String, path: Vec<String> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown { version, known } => write!(
                f,
                "stream {version} is not one foreman-box knows (known: {known})"
            ),
            Refusal::Backward { from, to } => write!(
                f,
                "{from} → {to} goes back: migrations that ran cannot be undone (roll forward only)"
            ),
            Refusal::Skips { from, to, path } => write!(
                f,
                "{from} → {to} skips a stream: one stream at a time, {}",
                path.join(" → ")
            ),
        }
    }
}

pub fn find(version: &str) -> Option<&'static Stream> {
    TABLE.iter().find(|s| s.version == version)
}

fn index(version: &str) -> Result<usize, Refusal> {
    TABLE
        .iter()
        .position(|s| s.version == version)
        .ok_or_else(|| Refusal::Unknown {
            version: version.to_string(),
            known: TABLE
                .iter()
                .map(|s| s.version)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The stream after `version`, if any.
pub fn next(version: &str) -> Option<&'static Stream> {
    let i = index(version).ok()?;
    TABLE.get(i + 1)
}

/// The changes of moving `from` → `to`: empty when the same; refused unless `to` is the next
/// stream. `postgres_major` is the server the data lives on, when known: older than the target
/// stream's makes its upgrade a manual step (foreman-box's PostgreSQL is the host's, not a
/// container it could upgrade in place as foremanctl does).
pub fn plan(from: &str, to: &str, postgres_major: Option<u32>) -> Result<Vec<Change>, Refusal> {
    let (i, j) = (index(from)?, index(to)?);
    if j < i {
        return Err(Refusal::Backward {
            from: from.into(),
            to: to.into(),
        });
    }
    if j > i + 1 {
        return Err(Refusal::Skips {
            from: from.into(),
            to: to.into(),
            path: TABLE[i..=j].iter().map(|s| s.version.to_string()).collect(),
        });
    }
    let mut out = Vec::new();
    if i == j {
        return Ok(out);
    }
    let (a, b) = (&TABLE[i], &TABLE[j]);
    out.push(Change {
        what: format!(
            "images to the {} stream (foremanctl {}); the migrations (Foreman, Candlepin, Pulp) run before any Deployment rolls",
            b.version, b.foremanctl
        ),
        by: By::Operator,
        how: None,
    });
    if a.cache != b.cache {
        out.push(Change {
            what: format!("{} replaced by {} (it holds nothing that must survive)", a.cache, b.cache),
            by: By::Operator,
            how: None,
        });
    }
    if b.postgres_major > a.postgres_major {
        match postgres_major {
            Some(have) if have >= b.postgres_major => {}
            have => out.push(Change {
                what: format!(
                    "PostgreSQL {} or newer for the {} stream (the server here is {})",
                    b.postgres_major,
                    b.version,
                    have.map(|h| h.to_string()).unwrap_or_else(|| "of unknown version".into())
                ),
                by: By::Manual,
                how: Some(format!(
                    "upgrade the server that holds the databases to PostgreSQL {} (Debian/Ubuntu: install postgresql-{} and run `pg_upgradecluster`; RHEL: `dnf module switch-to postgresql:{}` and `postgresql-setup --upgrade`), then run this again",
                    b.postgres_major, b.postgres_major, b.postgres_major
                )),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_at_a_time_forward_only() {
        assert_eq!(plan("3.18", "3.18", None), Ok(vec![]));
        let step = plan("3.18", "3.19", Some(15)).unwrap();
        assert_eq!(step.len(), 1);
        assert_eq!(step[0].by, By::Operator);
        assert_eq!(
            plan("3.18", "5.0", Some(16)).unwrap_err().to_string(),
            "3.18 → 5.0 skips a stream: one stream at a time, 3.18 → 3.19 → 5.0"
        );
        assert!(matches!(
            plan("3.19", "3.18", None),
            Err(Refusal::Backward { .. })
        ));
        assert!(matches!(plan("4.0", "5.0", None), Err(Refusal::Unknown { .. })));
        assert_eq!(next("3.18").map(|s| s.version), Some("3.19"));
        assert_eq!(next("5.0"), None);
    }

    #[test]
    fn the_move_to_5_0_names_valkey_and_an_old_postgres_as_a_manual_step() {
        let changes = plan("3.19", "5.0", Some(15)).unwrap();
        assert!(changes
            .iter()
            .any(|c| c.by == By::Operator && c.what.starts_with("Redis 6 replaced by Valkey 8")));
        let manual: Vec<_> = changes.iter().filter(|c| c.by == By::Manual).collect();
        assert_eq!(manual.len(), 1);
        assert!(manual[0].what.contains("PostgreSQL 16"), "{}", manual[0].what);
        assert!(manual[0].what.contains("the server here is 15"));
        assert!(plan("3.19", "5.0", Some(16))
            .unwrap()
            .iter()
            .all(|c| c.by == By::Operator));
    }

    #[test]
    fn the_table_matches_the_streams_the_operator_renders() {
        let versions: Vec<_> = TABLE.iter().map(|s| s.version).collect();
        assert_eq!(versions, crate::resources::STREAMS);
    }
}
