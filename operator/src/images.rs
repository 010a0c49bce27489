//! The images the operator renders: one table per release stream, each entry
//! `repository:tag@sha256:<digest>` with its source, kept as data in `operator/images.json`.
//!
//! Digests are data, not code: `scripts/pin-images.sh` fills them on a connected machine
//! (`skopeo inspect --raw` of each tag, hashed) and writes the file through `jq`. An entry
//! whose digest is not known yet (`"digest": null`) renders by tag alone; `foreman-box images`
//! says so, and `foreman-box bundle create` refuses it unless told to take what the tag points
//! at when the bundle is made.
//!
//! A digest pins what the tag named when it was recorded: for an image built for several
//! platforms it is the digest of the image index, so one reference serves every node
//! architecture and the bundle keeps the index beside the one platform it carries.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// The table shipped with this release.
pub const TABLE_JSON: &str = include_str!("../images.json");
/// Where the table lives in the source tree (for messages).
pub const TABLE_PATH: &str = "operator/images.json";

/// A part of the deployment that runs an image of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Foreman,
    #[serde(rename = "foreman_proxy")]
    Proxy,
    Candlepin,
    Pulp,
    Redis,
    PulpControl,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Foreman,
        Component::Proxy,
        Component::Candlepin,
        Component::Pulp,
        Component::Redis,
        Component::PulpControl,
    ];

    /// The table's name for it (`foreman_proxy`), the same as the `spec.images` key.
    pub fn name(self) -> &'static str {
        match self {
            Component::Foreman => "foreman",
            Component::Proxy => "foreman_proxy",
            Component::Candlepin => "candlepin",
            Component::Pulp => "pulp",
            Component::Redis => "redis",
            Component::PulpControl => "pulp_control",
        }
    }

    /// Which plugin brings it into the render.
    pub fn needed_by(self) -> Needed {
        match self {
            // The nginx image serves pulp-control (Katello) and also the edge Deployment
            // that every render has (resources/edge.rs), so it is always rendered.
            Component::Foreman | Component::Redis | Component::PulpControl => Needed::Always,
            Component::Candlepin | Component::Pulp => Needed::Katello,
            Component::Proxy => Needed::RemoteExecution,
        }
    }
}

/// When a component's image is part of the render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Needed {
    Always,
    Katello,
    RemoteExecution,
}

impl Needed {
    pub fn with(self, katello: bool, remote_execution: bool) -> bool {
        match self {
            Needed::Always => true,
            Needed::Katello => katello,
            Needed::RemoteExecution => remote_execution,
        }
    }
}

/// A fully qualified image reference: `registry/path[:tag][@sha256:hex]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    /// `quay.io`, `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// `foreman/foreman`.
    pub path: String,
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference and refuses what a registry would not take: no registry part, upper
    /// case in the path, a malformed tag or digest, neither tag nor digest.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (text, None),
        };
        if let Some(d) = digest {
            check_digest(d)?;
        }
        // A tag is after the last `:` that follows the last `/` (a port's colon comes before).
        let slash = rest.rfind('/').ok_or_else(|| {
            format!(
                "`{text}` names no registry (write it in full, e.g. quay.io/foreman/foreman:3.18)"
            )
        })?;
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(|why| format!("`{text}`: {why}"))?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(format!("`{text}` has neither a tag nor a digest"));
        }
        let (registry, path) = name.split_once('/').expect("a slash was found");
        let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !host_like
            || !registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        {
            return Err(format!(
                "`{text}` names no registry host before its first `/` (write it in full, e.g. docker.io/library/nginx:1.28)"
            ));
        }
        for component in path.split('/') {
            check_path_component(component).map_err(|why| format!("`{text}`: {why}"))?;
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            path: path.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/path`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    /// `registry/path:tag`, when there is a tag.
    pub fn tag_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `registry/path@sha256:...`, when there is a digest: what containerd's CRI looks up for a
    /// reference with a digest (a tag beside a digest is dropped when it resolves one).
    pub fn digest_name(&self) -> Option<String> {
        self.digest.as_ref().map(|d| format!("{}@{d}", self.name()))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest this project writes or accepts.
pub fn check_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "`{d}` is not a digest (sha256: and 64 lowercase hex digits)"
        )),
    }
}

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{t}` is not a tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
        ))
    }
}

/// A path component: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn check_path_component(c: &str) -> Result<(), String> {
    let bad = || {
        Err(format!("`{c}` is not a repository path component (lowercase letters, digits and . _ - between them)"))
    };
    if c.is_empty() || !c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit()) {
        return bad();
    }
    if !c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit()) {
        return bad();
    }
    let mut prev_sep = String::new();
    for ch in c.chars() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            if !(prev_sep.is_empty()
                || prev_sep == "."
                || prev_sep == "_"
                || prev_sep == "__"
                || prev_sep.chars().all(|s| s == '-'))
            {
                return bad();
            }
            prev_sep.clear();
        } else if "._-".contains(ch) {
            prev_sep.push(ch);
        } else {
            return bad();
        }
    }
    Ok(())
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub component: Component,
    /// `registry/path`.
    pub repository: String,
    pub tag: String,
    /// `sha256:...` of what the tag named when it was recorded; None: not known yet.
    pub digest: Option<String>,
    /// Where the tag (and digest) come from.
    pub source: String,
}

impl Pin {
    /// `repository:tag@digest`, or `repository:tag` while the digest is unknown.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}:{}@{d}", self.repository, self.tag),
            None => format!("{}:{}", self.repository, self.tag),
        }
    }

    pub fn image_ref(&self) -> ImageRef {
        ImageRef::parse(&self.reference()).expect("table entries are checked when read")
    }

    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }
}

/// Images per release stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub streams: BTreeMap<String, Vec<Pin>>,
}

/// Why a table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not a usable image table: {problem}\nhelp: the format is that of {TABLE_PATH}: {{\"streams\": {{\"3.18\": [{{\"component\", \"repository\", \"tag\", \"digest\", \"source\"}}, ...]}}}}, one entry per component and stream")]
pub struct TableError {
    pub what: String,
    pub problem: String,
}

impl Table {
    /// Reads and checks a table: every stream `X.Y` has each component once, every reference
    /// parses, every digest is a sha256 digest.
    pub fn parse(what: &str, text: &str) -> Result<Table, TableError> {
        let err = |problem: String| TableError {
            what: what.to_string(),
            problem,
        };
        let table: Table = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        if table.streams.is_empty() {
            return Err(err("it has no stream".into()));
        }
        for (stream, pins) in &table.streams {
            let stream_ok = stream.split_once('.').is_some_and(|(a, b)| {
                [a, b]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
            });
            if !stream_ok {
                return Err(err(format!("stream `{stream}` is not MAJOR.MINOR")));
            }
            for c in Component::ALL {
                let n = pins.iter().filter(|p| p.component == c).count();
                if n != 1 {
                    return Err(err(format!(
                        "stream {stream} has {n} entries for {}, not one",
                        c.name()
                    )));
                }
            }
            for p in pins {
                let r = ImageRef::parse(&p.reference()).map_err(|why| {
                    err(format!("stream {stream}, {}: {why}", p.component.name()))
                })?;
                if r.name() != p.repository || r.tag.as_deref() != Some(p.tag.as_str()) {
                    return Err(err(format!(
                        "stream {stream}, {}: `{}` is not a repository (no tag or digest in it)",
                        p.component.name(),
                        p.repository
                    )));
                }
                if p.source.trim().is_empty() {
                    return Err(err(format!(
                        "stream {stream}, {}: every entry names its source",
                        p.component.name()
                    )));
                }
            }
        }
        Ok(table)
    }

    /// The table shipped with this release (checked by a test, so it always parses).
    pub fn builtin() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| {
            Table::parse(TABLE_PATH, TABLE_JSON).expect("operator/images.json is checked by a test")
        })
    }

    pub fn pin(&self, stream: &str, component: Component) -> Option<&Pin> {
        self.streams
            .get(stream)?
            .iter()
            .find(|p| p.component == component)
    }
}

/// The image a component runs when the resource overrides nothing: the stream's table entry;
/// for a stream the table does not know, the tag the Foreman project's scheme gives it, unpinned.
pub fn default_reference(stream: &str, component: Component) -> String {
    if let Some(p) = Table::builtin().pin(stream, component) {
        return p.reference();
    }
    let newest = Table::builtin()
        .streams
        .iter()
        .max_by_key(|(s, _)| stream_key(s))
        .map(|(_, pins)| pins)
        .expect("the table has a stream");
    let like = newest
        .iter()
        .find(|p| p.component == component)
        .expect("every stream has every component");
    match component {
        // FC src/vars/images.yml: foreman and foreman-proxy "<stream>", candlepin and pulp
        // "foreman-<stream>".
        Component::Foreman | Component::Proxy => format!("{}:{stream}", like.repository),
        Component::Candlepin | Component::Pulp => format!("{}:foreman-{stream}", like.repository),
        // Not per stream: the newest stream's.
        Component::Redis | Component::PulpControl => like.reference(),
    }
}

/// `3.18` as (3, 18), for ordering streams by number.
pub fn stream_key(stream: &str) -> (u32, u32) {
    let (a, b) = stream.split_once('.').unwrap_or((stream, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_has_every_rendered_stream() {
        let t = Table::parse(TABLE_PATH, TABLE_JSON).unwrap();
        for s in crate::resources::STREAMS {
            assert!(t.streams.contains_key(*s), "stream {s} missing");
        }
    }

    #[test]
    fn shipped_table_is_written_as_jq_writes_it() {
        // pin-images.sh rewrites the file with `jq`; the same layout keeps its diffs to the
        // changed lines.
        let t = Table::parse(TABLE_PATH, TABLE_JSON).unwrap();
        let pretty = serde_json::to_string_pretty(&t).unwrap() + "\n";
        assert_eq!(TABLE_JSON, pretty);
    }

    #[test]
    fn redis_is_pinned_at_a_dated_tag_never_latest() {
        for (stream, pins) in &Table::builtin().streams {
            for p in pins {
                assert_ne!(p.tag, "latest", "{stream} {}", p.component.name());
            }
            let redis = Table::builtin().pin(stream, Component::Redis).unwrap();
            assert!(redis.is_pinned(), "{stream}");
        }
    }

    #[test]
    fn references_parse_and_print_back() {
        for text in [
            "quay.io/foreman/foreman:3.18",
            "quay.io/sclorg/redis-6-c9s:20250108@sha256:b33dedfeb245199a03122505d35d9c75ae01d77ffe39e0950ed98b0d02ecdf64",
            "127.0.0.1:5000/foreman/pulp:foreman-3.18",
            "localhost/a__b/c-d:x",
            "docker.io/library/nginx@sha256:b33dedfeb245199a03122505d35d9c75ae01d77ffe39e0950ed98b0d02ecdf64",
        ] {
            let r = ImageRef::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r = ImageRef::parse("127.0.0.1:5000/foreman/pulp:foreman-3.18").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "foreman/pulp", Some("foreman-3.18"))
        );
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for (text, why) in [
            ("foreman/foreman:3.18", "names no registry host"),
            ("nginx:1.28", "names no registry"),
            (
                "quay.io/Foreman/foreman:3.18",
                "not a repository path component",
            ),
            ("quay.io/foreman/foreman", "neither a tag nor a digest"),
            ("quay.io/foreman/foreman:-x", "not a tag"),
            ("quay.io/foreman/foreman:3.18@sha256:ABC", "not a digest"),
            ("quay.io/foreman/foreman:3.18@md5:00", "not a digest"),
            (
                "quay.io/foreman//foreman:3.18",
                "not a repository path component",
            ),
            ("quay.io/foreman/foreman:3.18\n", "not a tag"),
        ] {
            let e = ImageRef::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn tables_missing_a_component_or_with_a_bad_digest_are_refused() {
        let mut t = Table::builtin().clone();
        t.streams.get_mut("3.18").unwrap().pop();
        let e = Table::parse("t.json", &serde_json::to_string(&t).unwrap()).unwrap_err();
        assert!(e.problem.contains("0 entries for pulp_control"), "{e}");

        let mut t = Table::builtin().clone();
        t.streams.get_mut("3.18").unwrap()[0].digest = Some("sha256:1234".into());
        let e = Table::parse("t.json", &serde_json::to_string(&t).unwrap()).unwrap_err();
        assert!(e.problem.contains("not a digest"), "{e}");

        let mut t = Table::builtin().clone();
        t.streams.get_mut("3.18").unwrap()[0].repository = "quay.io/foreman/foreman:3.18".into();
        let e = Table::parse("t.json", &serde_json::to_string(&t).unwrap()).unwrap_err();
        assert!(e.to_string().contains("help:"), "{e}");

        let e = Table::parse("t.json", "{\"streams\": {}, \"extra\": 1}").unwrap_err();
        assert!(e.problem.contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_streams_follow_the_tag_scheme_unpinned() {
        assert_eq!(
            default_reference("9.9", Component::Foreman),
            "quay.io/foreman/foreman:9.9"
        );
        assert_eq!(
            default_reference("9.9", Component::Pulp),
            "quay.io/foreman/pulp:foreman-9.9"
        );
        assert_eq!(
            default_reference("9.9", Component::Redis),
            Table::builtin()
                .pin("5.0", Component::Redis)
                .unwrap()
                .reference()
        );
    }
}
