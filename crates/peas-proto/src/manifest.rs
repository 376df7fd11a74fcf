//! The signed `.peas` manifest and its two encodings (binary file and text ticket).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::geometry::{Geometry, GeometryError};
use crate::ids::{ContentHash, NodeId};
use crate::name::{NameError, SafeName};

/// The magic bytes every `.peas` file starts with.
pub const FILE_MAGIC: [u8; 4] = *b"PEAS";
/// The manifest format version this crate writes and reads (the byte after the magic).
pub const MANIFEST_VERSION: u8 = 1;
/// The largest accepted binary manifest, in bytes (64 KiB). Checked before any parsing.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// The most owners a manifest may name.
pub const MAX_OWNERS: usize = 64;
/// The most socket addresses one owner may have.
pub const MAX_ADDRS_PER_OWNER: usize = 16;
/// The longest accepted relay URL, in bytes.
pub const MAX_RELAY_URL_LEN: usize = 256;
/// The length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The prefix of a text ticket.
pub const TICKET_PREFIX: &str = "peas1";
/// The longest accepted ticket text (prefix + base32 of [`MAX_MANIFEST_LEN`] bytes), not
/// counting surrounding whitespace.
pub const MAX_TICKET_LEN: usize = TICKET_PREFIX.len() + (MAX_MANIFEST_LEN * 8).div_ceil(5);
/// The domain-separation prefix of the signed message: the creator signs
/// `SIGNATURE_DOMAIN ‖ version byte ‖ postcard body`.
pub const SIGNATURE_DOMAIN: &[u8] = b"peas manifest signature\0";

const HEADER_LEN: usize = FILE_MAGIC.len() + 1;

/// Why bytes or text are not a valid manifest. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The input is empty.
    #[error("manifest is empty")]
    Empty,
    /// The input is larger than [`MAX_MANIFEST_LEN`] (or a ticket longer than [`MAX_TICKET_LEN`]).
    #[error("manifest is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input does not start with [`FILE_MAGIC`] (nor is it a ticket).
    #[error("not a peas manifest or ticket (bad magic bytes)")]
    BadMagic,
    /// The version byte is not [`MANIFEST_VERSION`].
    #[error("unsupported manifest version {0}")]
    UnsupportedVersion(u8),
    /// The input ends before the manifest does.
    #[error("manifest is truncated")]
    Truncated,
    /// The body is not a valid postcard encoding of the manifest fields.
    #[error("manifest is malformed: {0}")]
    Malformed(String),
    /// There are bytes after the signature.
    #[error("manifest has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// The body decodes but is not in the canonical (shortest) postcard encoding.
    #[error("manifest encoding is not canonical")]
    NonCanonical,
    /// The creator field is not a valid ed25519 public key.
    #[error("manifest creator is not a valid ed25519 public key")]
    BadCreatorKey,
    /// The signature does not verify against the creator's key.
    #[error("manifest signature does not verify")]
    BadSignature,
    /// The file name is not a [`SafeName`].
    #[error("manifest file name is unsafe: {0}")]
    UnsafeName(#[from] NameError),
    /// The size and partition size do not form a valid [`Geometry`].
    #[error("manifest geometry is invalid: {0}")]
    Geometry(#[from] GeometryError),
    /// More than [`MAX_OWNERS`] owners.
    #[error("manifest has {0} owners, more than the maximum of {MAX_OWNERS}")]
    TooManyOwners(usize),
    /// An owner has more than [`MAX_ADDRS_PER_OWNER`] addresses.
    #[error("owner {owner} has {count} addresses, more than the maximum of {MAX_ADDRS_PER_OWNER}")]
    TooManyAddrs {
        /// The owner's id.
        owner: NodeId,
        /// How many addresses it has.
        count: usize,
    },
    /// An owner's relay URL is longer than [`MAX_RELAY_URL_LEN`].
    #[error("owner {owner} has a relay URL of {len} bytes, more than {MAX_RELAY_URL_LEN}")]
    RelayTooLong {
        /// The owner's id.
        owner: NodeId,
        /// The URL length.
        len: usize,
    },
    /// The same node id appears twice among the owners.
    #[error("owner {0} is listed twice")]
    DuplicateOwner(NodeId),
    /// Ticket text that is not `peas1` + base32.
    #[error("ticket is not valid: {0}")]
    BadTicket(String),
}

/// A node that has the complete content and serves it: its id and how to reach it.
///
/// Invariants (checked when a manifest is signed or decoded): at most [`MAX_ADDRS_PER_OWNER`]
/// addresses, a relay URL of at most [`MAX_RELAY_URL_LEN`] bytes. `relay` is carried verbatim;
/// peas runs without relays by default and does not interpret it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// The owner's node id (iroh `EndpointId`).
    pub id: NodeId,
    /// Direct socket addresses the owner listens on.
    pub addrs: Vec<SocketAddr>,
    /// An optional iroh relay URL.
    pub relay: Option<String>,
}

impl Owner {
    fn check(&self) -> Result<(), ManifestError> {
        if self.addrs.len() > MAX_ADDRS_PER_OWNER {
            return Err(ManifestError::TooManyAddrs {
                owner: self.id,
                count: self.addrs.len(),
            });
        }
        if let Some(r) = &self.relay
            && r.len() > MAX_RELAY_URL_LEN
        {
            return Err(ManifestError::RelayTooLong {
                owner: self.id,
                len: r.len(),
            });
        }
        Ok(())
    }
}

/// The postcard body of a manifest. Field order is the wire format (see docs/manifest.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Body {
    hash: ContentHash,
    size: u64,
    name: String,
    partition_size: u64,
    created_at: u64,
    owners: Vec<Owner>,
    creator: NodeId,
}

/// The unsigned contents of a manifest; [`ManifestDraft::sign`] turns it into a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDraft {
    /// BLAKE3 root hash of the content.
    pub hash: ContentHash,
    /// Content size in bytes.
    pub size: u64,
    /// The file name to install the content as.
    pub name: SafeName,
    /// Partition size in bytes (see [`crate::default_partition_size`]).
    pub partition_size: u64,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Nodes that have the complete content.
    pub owners: Vec<Owner>,
}

/// The node id (ed25519 public key) that belongs to a 32-byte ed25519 secret key.
///
/// Equal to iroh's `SecretKey::from_bytes(secret).public()`.
pub fn node_id_from_secret(secret_key: &[u8; 32]) -> NodeId {
    NodeId(
        SigningKey::from_bytes(secret_key)
            .verifying_key()
            .to_bytes(),
    )
}

impl ManifestDraft {
    /// Checks the draft (geometry, owner bounds, encoded size) and signs it with the creator's
    /// ed25519 secret key; the creator is the key's public half.
    pub fn sign(self, secret_key: &[u8; 32]) -> Result<Manifest, ManifestError> {
        let key = SigningKey::from_bytes(secret_key);
        let body = Body {
            hash: self.hash,
            size: self.size,
            name: self.name.as_str().to_owned(),
            partition_size: self.partition_size,
            created_at: self.created_at,
            owners: self.owners,
            creator: NodeId(key.verifying_key().to_bytes()),
        };
        let geometry = check_body(&body)?;
        let body_bytes = encode_body(&body);
        let len = HEADER_LEN + body_bytes.len() + SIGNATURE_LEN;
        if len > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge {
                len,
                max: MAX_MANIFEST_LEN,
            });
        }
        let signature = key.sign(&signed_message(MANIFEST_VERSION, &body_bytes));
        Ok(Manifest {
            version: MANIFEST_VERSION,
            name: self.name,
            geometry,
            body,
            signature: signature.to_bytes(),
        })
    }
}

/// A signed manifest whose signature, name, geometry and owner list have been checked.
///
/// Only obtainable from [`ManifestDraft::sign`] or the decoders, so every `Manifest` value is
/// valid. Encodings: [`Manifest::to_file_bytes`] (binary `.peas` file) and
/// [`Manifest::to_ticket`] (`peas1…` text); see `docs/manifest.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    version: u8,
    name: SafeName,
    geometry: Geometry,
    body: Body,
    signature: [u8; SIGNATURE_LEN],
}

fn encode_body(body: &Body) -> Vec<u8> {
    // Serializing plain structs, strings and vectors into a growable Vec cannot fail.
    postcard::to_stdvec(body).expect("postcard encoding into a Vec is infallible")
}

fn signed_message(version: u8, body_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + body_bytes.len());
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.push(version);
    m.extend_from_slice(body_bytes);
    m
}

/// Semantic checks shared by signing and decoding.
fn check_body(body: &Body) -> Result<Geometry, ManifestError> {
    SafeName::new(body.name.clone())?;
    let geometry = Geometry::new(body.size, body.partition_size)?;
    if body.owners.len() > MAX_OWNERS {
        return Err(ManifestError::TooManyOwners(body.owners.len()));
    }
    let mut seen = BTreeSet::new();
    for o in &body.owners {
        o.check()?;
        if !seen.insert(o.id) {
            return Err(ManifestError::DuplicateOwner(o.id));
        }
    }
    Ok(geometry)
}

fn map_postcard(e: postcard::Error) -> ManifestError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => ManifestError::Truncated,
        other => ManifestError::Malformed(other.to_string()),
    }
}

impl Manifest {
    /// The manifest format version (the byte after the magic).
    pub fn version(&self) -> u8 {
        self.version
    }
    /// BLAKE3 root hash of the content.
    pub fn hash(&self) -> ContentHash {
        self.body.hash
    }
    /// Content size in bytes.
    pub fn size(&self) -> u64 {
        self.body.size
    }
    /// The file name to install the content as.
    pub fn name(&self) -> &SafeName {
        &self.name
    }
    /// The content's partition geometry (size + partition size, already validated).
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
    /// Partition size in bytes.
    pub fn partition_size(&self) -> u64 {
        self.body.partition_size
    }
    /// Creation time in unix seconds, as claimed by the creator.
    pub fn created_at(&self) -> u64 {
        self.body.created_at
    }
    /// Nodes that have the complete content.
    pub fn owners(&self) -> &[Owner] {
        &self.body.owners
    }
    /// The node whose key signed the manifest.
    pub fn creator(&self) -> NodeId {
        self.body.creator
    }
    /// The ed25519 signature over `SIGNATURE_DOMAIN ‖ version ‖ body`.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The binary `.peas` encoding: `FILE_MAGIC ‖ version ‖ postcard body ‖ signature`.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let body = encode_body(&self.body);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + SIGNATURE_LEN);
        out.extend_from_slice(&FILE_MAGIC);
        out.push(self.version);
        out.extend_from_slice(&body);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes and fully checks a binary `.peas` file (bounded, total: never panics).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.is_empty() {
            return Err(ManifestError::Empty);
        }
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge {
                len: bytes.len(),
                max: MAX_MANIFEST_LEN,
            });
        }
        let magic_len = bytes.len().min(FILE_MAGIC.len());
        if bytes[..magic_len] != FILE_MAGIC[..magic_len] {
            return Err(ManifestError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(ManifestError::Truncated);
        }
        let version = bytes[FILE_MAGIC.len()];
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        let after_header = &bytes[HEADER_LEN..];
        let (body, rest) = postcard::take_from_bytes::<Body>(after_header).map_err(map_postcard)?;
        let body_bytes = &after_header[..after_header.len() - rest.len()];
        if rest.len() < SIGNATURE_LEN {
            return Err(ManifestError::Truncated);
        }
        if rest.len() > SIGNATURE_LEN {
            return Err(ManifestError::TrailingBytes(rest.len() - SIGNATURE_LEN));
        }
        if encode_body(&body) != body_bytes {
            return Err(ManifestError::NonCanonical);
        }
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(rest);
        let key =
            VerifyingKey::from_bytes(&body.creator.0).map_err(|_| ManifestError::BadCreatorKey)?;
        key.verify_strict(
            &signed_message(version, body_bytes),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| ManifestError::BadSignature)?;
        let geometry = check_body(&body)?;
        let name = SafeName::new(body.name.clone())?;
        Ok(Manifest {
            version,
            name,
            geometry,
            body,
            signature,
        })
    }

    /// The text ticket: `peas1` followed by the lowercase RFC 4648 base32 (no padding) of
    /// [`Manifest::to_file_bytes`].
    pub fn to_ticket(&self) -> String {
        let mut s = String::from(TICKET_PREFIX);
        s.push_str(
            &BASE32_NOPAD
                .encode(&self.to_file_bytes())
                .to_ascii_lowercase(),
        );
        s
    }

    /// Decodes and fully checks a ticket. Surrounding whitespace is ignored; the prefix and the
    /// base32 text are accepted in either case.
    pub fn from_ticket(text: &str) -> Result<Self, ManifestError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(ManifestError::Empty);
        }
        if t.len() > MAX_TICKET_LEN {
            return Err(ManifestError::TooLarge {
                len: t.len(),
                max: MAX_TICKET_LEN,
            });
        }
        let prefix_ok = t
            .get(..TICKET_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(TICKET_PREFIX));
        if !prefix_ok {
            return Err(ManifestError::BadTicket(format!(
                "does not start with {TICKET_PREFIX:?}"
            )));
        }
        let b32 = t[TICKET_PREFIX.len()..].to_ascii_uppercase();
        let bytes = BASE32_NOPAD
            .decode(b32.as_bytes())
            .map_err(|e| ManifestError::BadTicket(format!("bad base32: {e}")))?;
        Self::from_file_bytes(&bytes)
    }

    /// Decodes either encoding: ticket text (optionally surrounded by whitespace) or binary
    /// file bytes. Bounded and total like the specific decoders.
    pub fn decode_any(input: &[u8]) -> Result<Self, ManifestError> {
        // A ticket is checked first: an upper-case ticket starts with "PEAS1", which also
        // begins with the file magic (a file has the version byte 0x01 there, not '1').
        if input.len() <= MAX_TICKET_LEN + 4096
            && let Ok(text) = std::str::from_utf8(input)
        {
            let t = text.trim_start();
            if t.get(..TICKET_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(TICKET_PREFIX))
            {
                return Self::from_ticket(text);
            }
            if t.is_empty() {
                return Err(ManifestError::Empty);
            }
        }
        Self::from_file_bytes(input)
    }
}

#[cfg(test)]
mod tests;
