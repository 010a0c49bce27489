//! `SHA256SUMS` (the format `sha256sum -c` reads: `HEX  NAME` per line) and the checks a backup
//! passes before anything is restored from it.

use super::{DayTwoError, Metadata, FILES_OPTIONAL, METADATA, SUMS};
use crate::error::Result;
use crate::host::Host;
use std::collections::BTreeSet;
use std::path::Path;

/// Writes `SHA256SUMS` over `names` (files of `dir`), sorted, 0600. Written last: a backup
/// without it is incomplete.
pub fn write_sums(host: &Host, dir: &Path, names: &[String]) -> Result<()> {
    let mut lines = String::new();
    let mut sorted = names.to_vec();
    sorted.sort();
    for name in &sorted {
        let hash = host
            .fs()
            .sha256(&dir.join(name))?
            .ok_or_else(|| DayTwoError::BadBackup {
                path: dir.join(name),
                problem: "the file vanished while the backup was written".into(),
                help: "run the backup again".into(),
            })?;
        lines.push_str(&format!("{hash}  {name}\n"));
    }
    let path = dir.join(SUMS);
    let mut f = host.fs().create_new(&path, 0o600)?;
    use std::io::Write;
    f.write_all(lines.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| crate::host::HostError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
    host.fs().sync_dir(dir)?;
    Ok(())
}

/// The lines of a `SHA256SUMS`: (hash, file name). File names are plain names in the backup's
/// directory; anything else is refused.
pub fn parse_sums(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some((hash, name)) = line.split_once("  ") else {
            return Err(format!("line {n} is not `HASH  NAME`"));
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {n} has no SHA-256 hash"));
        }
        if name.is_empty()
            || name.contains('/')
            || name.starts_with('.')
            || name.chars().any(char::is_control)
        {
            return Err(format!("line {n} names {name:?}, not a file of the backup"));
        }
        if out.iter().any(|(_, seen)| seen == name) {
            return Err(format!("line {n} names {name} a second time"));
        }
        out.push((hash.to_ascii_lowercase(), name.to_string()));
    }
    if out.is_empty() {
        return Err("it lists no file".into());
    }
    Ok(out)
}

/// Checks the files of the backup in `dir` against its `SHA256SUMS` (every file listed, every
/// listed file there and unchanged) and reads its metadata. Writes nothing.
pub fn check(host: &Host, dir: &Path) -> Result<Metadata> {
    let listed = check_sums(host, dir)?;
    read_metadata(host, dir, &listed)
}

fn bad(dir: &Path, problem: String, help: &str) -> DayTwoError {
    DayTwoError::BadBackup {
        path: dir.to_path_buf(),
        problem,
        help: help.into(),
    }
}

/// Every file in the directory is listed in SHA256SUMS and matches it; returns the names listed.
fn check_sums(host: &Host, dir: &Path) -> Result<BTreeSet<String>> {
    let bad = |problem: String, help: &str| bad(dir, problem, help);
    if !host.fs().is_dir(dir) {
        return Err(bad(
            "it is not a directory".into(),
            "give the directory `foreman-box backup` wrote, or its .tar.zst",
        )
        .into());
    }
    let Some(text) = host.fs().read_string(&dir.join(SUMS))? else {
        return Err(bad(
            format!("it has no {SUMS}, which a backup writes last: it is incomplete"),
            "use a complete backup",
        )
        .into());
    };
    let sums = parse_sums(&text).map_err(|p| bad(format!("{SUMS}: {p}"), "use another backup"))?;
    let listed: BTreeSet<String> = sums.iter().map(|(_, n)| n.clone()).collect();
    let present: BTreeSet<String> = host
        .fs()
        .list_dir(dir)?
        .into_iter()
        .filter(|n| n != SUMS)
        .collect();
    if let Some(extra) = present.iter().find(|n| !listed.contains(*n)) {
        return Err(bad(
            format!("{extra} is not listed in {SUMS}: it was added after the backup was made"),
            "remove what does not belong to the backup, or use another backup",
        )
        .into());
    }
    for (hash, name) in &sums {
        let actual = host.fs().sha256(&dir.join(name))?;
        match actual {
            None => {
                return Err(bad(
                    format!("{name} is listed in {SUMS} but missing"),
                    "use a complete backup",
                )
                .into())
            }
            Some(a) if &a != hash => {
                return Err(DayTwoError::Tampered {
                    dir: dir.to_path_buf(),
                    file: name.clone(),
                    expected: hash.clone(),
                    actual: a,
                }
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(listed)
}

/// `metadata.json`, of a format this release reads, naming no file the backup lacks.
fn read_metadata(host: &Host, dir: &Path, listed: &BTreeSet<String>) -> Result<Metadata> {
    let bad = |problem: String, help: &str| bad(dir, problem, help);
    let text = host
        .fs()
        .read_string(&dir.join(METADATA))?
        .ok_or_else(|| bad(format!("{METADATA} is missing"), "use a complete backup"))?;
    let metadata: Metadata = serde_json::from_str(&text).map_err(|e| {
        bad(
            format!(
                "{METADATA} does not read (line {}, column {})",
                e.line(),
                e.column()
            ),
            "use a backup made by foreman-box",
        )
    })?;
    if metadata.format != super::FORMAT {
        return Err(bad(
            format!(
                "its format is {}, this foreman-box reads format {}",
                metadata.format,
                super::FORMAT
            ),
            "restore it with the foreman-box release that made it",
        )
        .into());
    }
    for required in metadata.required_files() {
        if !listed.contains(&required) && !FILES_OPTIONAL.contains(&required.as_str()) {
            return Err(bad(format!("{required} is missing"), "use a complete backup").into());
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_parse_as_sha256sum_writes_them_and_refuse_paths() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_sums(&format!("{h}  foreman.dump\n")).unwrap(),
            vec![(h.clone(), "foreman.dump".to_string())]
        );
        for bad in [
            format!("{h}  ../etc/passwd"),
            format!("{h}  /etc/passwd"),
            format!("{h} one-space"),
            "abc  x".to_string(),
            format!("{h}  a\n{h}  a"),
            String::new(),
        ] {
            assert!(parse_sums(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}
