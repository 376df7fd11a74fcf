//! Fixed-size identifiers: node ids (ed25519 public keys) and content hashes (BLAKE3).

use std::fmt;
use std::str::FromStr;

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use serde::{Deserialize, Serialize};

/// Why a hex identifier could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    /// The string does not have exactly 64 characters.
    #[error("expected 64 hex characters, got {0}")]
    BadLength(usize),
    /// The string has a character that is not a hex digit.
    #[error("not a hex string")]
    NotHex,
}

fn parse_hex32(s: &str) -> Result<[u8; 32], IdParseError> {
    if s.len() != 64 {
        return Err(IdParseError::BadLength(s.chars().count()));
    }
    let mut out = [0u8; 32];
    HEXLOWER_PERMISSIVE
        .decode_mut(s.as_bytes(), &mut out)
        .map_err(|_| IdParseError::NotHex)?;
    Ok(out)
}

/// A node's identity: an ed25519 public key, the same 32 bytes as iroh's `EndpointId`.
///
/// Displayed and parsed as 64 lowercase hex characters (parsing also accepts upper case).
/// Serialized (postcard) as 32 raw bytes. Holding a `NodeId` does not prove that the bytes are a
/// valid curve point; signature verification checks that.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

/// The BLAKE3 root hash of a blob's content, exactly as `b3sum` prints it (lowercase hex).
///
/// This is also iroh-blobs' `Hash` for the same bytes: chunk groups do not change the root.
/// Serialized (postcard) as 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The BLAKE3 hash of `data` (for small in-memory data; files are hashed by peas-store).
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl NodeId {
    /// The raw 32 bytes of the public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 10 hex characters, for logs.
    pub fn fmt_short(&self) -> String {
        HEXLOWER.encode(&self.0[..5])
    }
}

macro_rules! hex_id_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&HEXLOWER.encode(&self.0))
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self)
            }
        }
        impl FromStr for $t {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }
        impl From<&$t> for $t {
            fn from(v: &$t) -> Self {
                *v
            }
        }
        impl From<[u8; 32]> for $t {
            fn from(b: [u8; 32]) -> Self {
                Self(b)
            }
        }
    };
}
hex_id_impls!(NodeId);
hex_id_impls!(ContentHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_matches_b3sum_format() {
        // b3sum of the empty input.
        let h = ContentHash::of(b"");
        assert_eq!(
            h.to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(h.to_string().parse::<ContentHash>().unwrap(), h);
        assert_eq!(
            h.to_string().to_uppercase().parse::<ContentHash>().unwrap(),
            h
        );
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert_eq!("ab".parse::<NodeId>(), Err(IdParseError::BadLength(2)));
        let s = "g".repeat(64);
        assert_eq!(s.parse::<NodeId>(), Err(IdParseError::NotHex));
        let s = "é".repeat(32); // 64 bytes, 32 chars
        assert!(s.parse::<NodeId>().is_err());
    }
}
