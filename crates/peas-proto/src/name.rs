//! File names that are safe to use as one path component.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest accepted name, in bytes (the usual file-system limit for one component).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name is not a [`SafeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is {0} bytes long, more than {MAX_NAME_LEN}")]
    TooLong(usize),
    /// The name contains a path separator, so it is not a single component.
    #[error("name {0:?} contains a path separator")]
    Separator(String),
    /// The name is `.` or `..` or starts with `..`.
    #[error("name {0:?} is or starts with a relative path component")]
    Dots(String),
    /// The name contains NUL or another control character.
    #[error("name {0:?} contains a control character")]
    Control(String),
    /// The name contains `:` (a Windows drive or stream separator).
    #[error("name {0:?} contains ':'")]
    Colon(String),
}

/// A file name that can be joined to a directory without escaping it.
///
/// Invariants: non-empty, at most [`MAX_NAME_LEN`] bytes, no `/`, `\`, `:`, NUL or other
/// control characters, not `.`, not `..`, does not start with `..`. So it is never absolute and
/// never a multi-component path on Unix or Windows. Serialized as a string; deserializing
/// re-checks the invariants.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SafeName(String);

impl SafeName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(name.len()));
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::Control(name));
        }
        if name.contains(['/', '\\']) {
            return Err(NameError::Separator(name));
        }
        if name == "." || name.starts_with("..") {
            return Err(NameError::Dots(name));
        }
        if name.contains(':') {
            return Err(NameError::Colon(name));
        }
        Ok(Self(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SafeName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::new(s)
    }
}

impl From<SafeName> for String {
    fn from(n: SafeName) -> String {
        n.0
    }
}

impl fmt::Display for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SafeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for SafeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "/etc/passwd",
            "a/b",
            "C:\\x",
            "C:",
            "a\\b",
            "a\0b",
            "a\nb",
            "..hidden",
            "x\u{7f}",
        ] {
            assert!(SafeName::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(SafeName::new("x".repeat(256)), Err(NameError::TooLong(256)));
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for good in [
            "big.bin",
            ".hidden",
            "a.b.c",
            "ünïcode ✓.tar.gz",
            "x".repeat(255).as_str(),
        ] {
            assert_eq!(SafeName::new(good).unwrap().as_str(), good);
        }
    }
}
