//! Secrets: read from the env var or file the document names, and kept in memory in a wrapper
//! whose `Debug` and `Display` never print the value, so a stray `{:?}` in a log line cannot leak
//! a client secret or a token.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret named by env var or file; `Ok(None)` when neither is named.
pub fn read_secret(
    env: Option<&str>,
    file: Option<&str>,
    what: &str,
) -> Result<Option<String>, String> {
    match (env, file) {
        (Some(var), _) => std::env::var(var)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|_| format!("{what}: environment variable {var} is not set")),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| format!("{what}: cannot read {path}: {e}")),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret([redacted]) [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }
}
