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

    /// A fresh random value: 32 characters from [A-Za-z0-9], about 190 bits from the OS RNG
    /// (the operator's token generator, so both make their values one way).
    pub(crate) fn generate() -> Self {
        Secret(foreman_operator::secrets::token(32))
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

#[cfg(test)]
mod tests {
    use super::*;

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
