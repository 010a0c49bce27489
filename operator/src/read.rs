//! Reading a `Foreman` resource from a file (`foreman-box operator render`): refuse what the
//! API server would refuse (unknown fields, values out of the schema's bounds), and bound the
//! input before parsing it, so hostile YAML costs little.

use crate::crd::Foreman;
use crate::Error;
use serde_json::Value;

/// A Foreman resource is a few hundred bytes; 64 KiB leaves room for comments.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Nesting the resource needs is 4 levels; anything deeper is refused before parsing (YAML
/// parsers spend time and stack on deep nesting).
pub const MAX_NESTING: usize = 16;

/// Reads a `Foreman` resource from YAML, filling defaults (as the API server would).
pub fn read_foreman(path: &str, text: &str) -> Result<Foreman, Error> {
    let invalid = |message: String| Error::Invalid {
        path: path.to_string(),
        message,
    };
    if text.len() > MAX_INPUT_BYTES {
        return Err(invalid(format!(
            "{} bytes is more than the {MAX_INPUT_BYTES} a Foreman resource may have",
            text.len()
        )));
    }
    let depth = nesting(text);
    if depth > MAX_NESTING {
        return Err(invalid(format!(
            "nesting {depth} levels deep is more than the {MAX_NESTING} a Foreman resource may have"
        )));
    }
    let raw: Value = serde_yaml::from_str(text).map_err(|source| Error::Read {
        path: path.to_string(),
        // serde_yaml stops an alias bomb (`*a` naming `*b` naming ...) at its repetition limit.
        help: if source.to_string().contains("repetition limit") {
            "its YAML aliases (`*name`) expand to more than a resource can hold; write the values out instead of aliasing them"
        } else {
            "it must be one YAML document; the cause below names where it stops reading (`foreman-box operator crd` lists the fields)"
        },
        source,
    })?;
    check_schema(&raw).map_err(invalid)?;
    // The path of a field of the wrong type (`spec.dynflow_workers`), which serde alone drops.
    let mut fm: Foreman = serde_path_to_error::deserialize(raw)
        .map_err(|e| invalid(format!("`{}`: {}", e.path(), e.inner())))?;
    // The CRD's x-kubernetes-validations rule, which a schema walk does not evaluate.
    crate::sizing::check_profile(&fm.spec).map_err(invalid)?;
    if fm.metadata.namespace.is_none() {
        fm.metadata.namespace = Some("foreman".into());
    }
    Ok(fm)
}

/// An upper bound of the nesting depth, in one pass: flow brackets open at once, and block
/// nesting is at most one level per column of indentation plus one per `- `/`? ` indicator on a
/// line. Quoted strings and comments are skipped.
fn nesting(text: &str) -> usize {
    let mut max = 0;
    let mut flow = 0usize;
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        let mut rest = line.trim_start_matches([' ', '\t']);
        let mut indicators = 0;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            indicators += 1;
            rest = r.trim_start();
        }
        let mut quote: Option<char> = None;
        for ch in rest.chars() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"') | (None, '\'') => quote = Some(ch),
                (None, '#') => break,
                (None, '[') | (None, '{') => {
                    flow += 1;
                    max = max.max(flow + indent / 2 + indicators);
                }
                (None, ']') | (None, '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        max = max.max(indent / 2 + indicators + flow);
    }
    max
}

/// Unknown fields and bounds, against the schema the CRD carries.
fn check_schema(raw: &Value) -> Result<(), String> {
    let Some(obj) = raw.as_object() else {
        return Err("expected a mapping (a Foreman resource)".into());
    };
    for key in obj.keys() {
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()) {
            return Err(format!("unknown field `{key}`"));
        }
    }
    if obj.get("apiVersion").and_then(Value::as_str) != Some("app.theforeman.org/v1alpha1")
        || obj.get("kind").and_then(Value::as_str) != Some("Foreman")
    {
        return Err("expected apiVersion app.theforeman.org/v1alpha1 and kind Foreman".into());
    }
    // Generated once per process: the schema is the same for every resource read.
    static CRD: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let crd = CRD
        .get_or_init(|| serde_yaml::from_str(&crate::schema::crd_yaml()).expect("the CRD parses"));
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    match obj.get("spec") {
        Some(spec) => walk(schema, spec, "spec"),
        None => Ok(()),
    }
}

fn walk(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, x) in obj {
            let Some(s) = props.get(k) else {
                let known: Vec<&str> = props.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown field `{at}.{k}` (known: {})",
                    known.join(", ")
                ));
            };
            walk(s, x, &format!("{at}.{k}"))?;
        }
    }
    if let Some(n) = v.as_f64() {
        let (min, max) = (schema["minimum"].as_f64(), schema["maximum"].as_f64());
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            return Err(format!(
                "`{at}` is {v}, outside {}..={}",
                min.map_or("".into(), |m| m.to_string()),
                max.map_or("".into(), |m| m.to_string())
            ));
        }
    }
    if let Some(s) = v.as_str() {
        if schema["maxLength"]
            .as_u64()
            .is_some_and(|m| s.len() as u64 > m)
            || schema["minLength"]
                .as_u64()
                .is_some_and(|m| (s.len() as u64) < m)
        {
            return Err(format!("`{at}` has a length outside the schema's bounds"));
        }
        match at {
            "spec.hostname" if !is_dns_name(s) => {
                return Err(format!("`{at}` {s:?} is not a lower-case DNS name"))
            }
            "spec.version" if !is_stream(s) => {
                return Err(format!("`{at}` {s:?} is not a release stream like 3.18"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The CRD's pattern `^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`.
fn is_dns_name(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.starts_with(edge) && s.ends_with(edge) && s.chars().all(|c| edge(c) || c == '-' || c == '.')
}

/// The CRD's pattern `^[0-9]+\.[0-9]+$`.
fn is_stream(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit())
    })
}
