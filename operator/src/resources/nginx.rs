//! A small structured builder for nginx configuration: directives and blocks are values, and
//! every parameter is checked when the text is made, so no interpolated value can end a
//! directive, open or close a block, start a comment or break out of quotes.

use std::fmt::Write;

/// One parameter of a directive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Written as is: no whitespace, `;`, `{`, `}`, quotes or `#`.
    Word(String),
    /// Written in double quotes: no `"`, `\`, `$` or control characters.
    Quoted(String),
}

pub fn word(s: impl Into<String>) -> Arg {
    Arg::Word(s.into())
}

pub fn quoted(s: impl Into<String>) -> Arg {
    Arg::Quoted(s.into())
}

/// A directive (`name args;`) or a block (`name args { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<Arg>,
    pub block: Option<Vec<Directive>>,
}

pub fn directive(name: impl Into<String>, args: Vec<Arg>) -> Directive {
    Directive {
        name: name.into(),
        args,
        block: None,
    }
}

pub fn block(name: impl Into<String>, args: Vec<Arg>, body: Vec<Directive>) -> Directive {
    Directive {
        name: name.into(),
        args,
        block: Some(body),
    }
}

/// A value that cannot be written safely, and where.
/// (Not an error type of its own: the crate has one error enum; the operator's inputs are
/// validated where they are read, so this is only ever reached by a bug.)
#[derive(Debug, Clone, PartialEq)]
pub struct Unsafe {
    pub directive: String,
    pub what: &'static str,
    pub value: String,
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, ';' | '{' | '}' | '"' | '\'' | '#')
        })
}

fn quoted_ok(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() && !matches!(c, '"' | '\\' | '$'))
}

/// The configuration text, or the first value that could not be written safely.
pub fn render(directives: &[Directive]) -> Result<String, Unsafe> {
    let mut out = String::new();
    write_all(&mut out, directives, 0)?;
    Ok(out)
}

fn write_all(out: &mut String, ds: &[Directive], depth: usize) -> Result<(), Unsafe> {
    for d in ds {
        let bad = |what, value: &str| Unsafe {
            directive: d.name.clone(),
            what,
            value: value.to_string(),
        };
        if !word_ok(&d.name) {
            return Err(bad("name", &d.name));
        }
        let indent = "  ".repeat(depth);
        let _ = write!(out, "{indent}{}", d.name);
        for a in &d.args {
            match a {
                Arg::Word(w) if word_ok(w) => {
                    let _ = write!(out, " {w}");
                }
                Arg::Quoted(q) if quoted_ok(q) => {
                    let _ = write!(out, " \"{q}\"");
                }
                Arg::Word(w) => return Err(bad("parameter", w)),
                Arg::Quoted(q) => return Err(bad("quoted parameter", q)),
            }
        }
        match &d.block {
            None => out.push_str(";\n"),
            Some(body) => {
                out.push_str(" {\n");
                write_all(out, body, depth + 1)?;
                let _ = writeln!(out, "{indent}}}");
            }
        }
    }
    Ok(())
}

/// `s` as a PCRE literal: every character that is not a letter, digit or `-` is escaped.
pub fn regex_literal(s: &str) -> String {
    let mut r = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric() || c == '-') {
            r.push('\\');
        }
        r.push(c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_quotes_are_written_as_nginx_reads_them() {
        let text = render(&[block(
            "map",
            vec![word("$a"), word("$b")],
            vec![directive("default", vec![quoted("")])],
        )])
        .unwrap();
        assert_eq!(text, "map $a $b {\n  default \"\";\n}\n");
    }

    #[test]
    fn values_that_would_change_the_structure_are_refused() {
        for bad in ["a;b", "a b", "a{", "}", "a\"", "#x", "a\nb", ""] {
            let e = render(&[directive("server_name", vec![word(bad)])]).unwrap_err();
            assert_eq!(e.value, bad);
        }
        for bad in ["a\"b", "a\\", "$x", "a\nb"] {
            assert!(render(&[directive("add_header", vec![quoted(bad)])]).is_err());
        }
        assert!(render(&[directive("a b", vec![])]).is_err());
    }

    #[test]
    fn regex_literal_escapes_dots() {
        assert_eq!(
            regex_literal("foreman.example-1.com"),
            "foreman\\.example-1\\.com"
        );
    }
}
