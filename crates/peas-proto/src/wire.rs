//! The peas swarm protocol: messages and their length-prefixed framing.
//!
//! A frame is `len: u32 little-endian ‖ version: u8 ‖ postcard(SwarmMessage)`, where `len`
//! counts the version byte and the body. Peers exchange frames on a bidirectional QUIC stream
//! opened on ALPN [`SWARM_ALPN`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ids::{ContentHash, NodeId};
use crate::partition_set::PartitionSet;

/// The ALPN of the peas swarm protocol.
pub const SWARM_ALPN: &[u8] = b"/peas/swarm/1";
/// The version byte at the start of every frame body. Version 2: have-sets and `Have` count
/// pieces ([`crate::Geometry::pieces`]), not partitions; `Offer` exists.
pub const SWARM_VERSION: u8 = 2;
/// The largest allowed frame (version byte + body), in bytes (64 KiB).
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// The most peer records in one [`SwarmMessage::Peers`].
pub const MAX_PEERS_PER_MESSAGE: usize = 64;
/// The most partition indices in one [`SwarmMessage::Have`].
pub const MAX_HAVE_PARTITIONS: usize = 4096;
/// The most listen addresses in one [`SwarmMessage::Hello`].
pub const MAX_LISTEN_ADDRS: usize = 16;
/// The most addresses in one [`PeerRecord`].
pub const MAX_PEER_ADDRS: usize = 16;

/// A peer learnt by peer exchange.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's node id.
    pub id: NodeId,
    /// Direct socket addresses the peer listens on (at most [`MAX_PEER_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
    /// Seconds since the sender last heard from this peer.
    pub age_secs: u32,
}

/// One message of the swarm protocol. Postcard encodes the variant as its index (a varint):
/// `Hello` = 0, `Have` = 1, `Peers` = 2, `Leave` = 3, `Offer` = 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwarmMessage {
    /// The first message on a stream: which content the sender wants to swap, which pieces
    /// it has verified, where it listens, and whether it serves uploads (`false` = leech mode).
    Hello {
        /// The content the stream is about.
        hash: ContentHash,
        /// The sender's verified pieces (its `len()` should equal the piece count of the
        /// manifest's geometry, [`crate::Geometry::pieces`]).
        have: PartitionSet,
        /// Addresses the sender accepts connections on (at most [`MAX_LISTEN_ADDRS`]).
        listen: Vec<SocketAddr>,
        /// Whether the sender serves data to others.
        uploads: bool,
    },
    /// The sender verified more pieces (at most [`MAX_HAVE_PARTITIONS`] per message).
    Have {
        /// Newly verified piece indices.
        partitions: Vec<u32>,
    },
    /// Peer exchange: other peers of the same swarm (at most [`MAX_PEERS_PER_MESSAGE`]).
    Peers {
        /// The peers.
        peers: Vec<PeerRecord>,
    },
    /// The sender leaves the swarm; the stream will close.
    Leave,
    /// The sender has a free upload slot and something the receiver lacks: the receiver may
    /// request from it now (a hint; ignoring it is fine).
    Offer,
}

/// Why a frame could not be decoded or encoded. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame with length 0.
    #[error("swarm frame is empty")]
    Empty,
    /// A frame longer than [`MAX_FRAME_LEN`].
    #[error("swarm frame of {0} bytes is over the limit of {MAX_FRAME_LEN}")]
    TooLarge(usize),
    /// The version byte is not [`SWARM_VERSION`].
    #[error("unsupported swarm protocol version {0}")]
    UnsupportedVersion(u8),
    /// The body ends early.
    #[error("swarm frame is truncated")]
    Truncated,
    /// The body is not a valid postcard `SwarmMessage`.
    #[error("swarm frame is malformed: {0}")]
    Malformed(String),
    /// Bytes after the message.
    #[error("swarm frame has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// A list is longer than its limit.
    #[error("swarm message has {count} {what}, more than the maximum of {max}")]
    TooMany {
        /// What is counted.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
}

impl SwarmMessage {
    /// Checks the per-message limits ([`MAX_LISTEN_ADDRS`], [`MAX_HAVE_PARTITIONS`],
    /// [`MAX_PEERS_PER_MESSAGE`], [`MAX_PEER_ADDRS`]).
    pub fn check_limits(&self) -> Result<(), WireError> {
        let too_many = |what, count, max| {
            if count > max {
                Err(WireError::TooMany { what, count, max })
            } else {
                Ok(())
            }
        };
        match self {
            SwarmMessage::Hello { listen, .. } => {
                too_many("listen addresses", listen.len(), MAX_LISTEN_ADDRS)
            }
            SwarmMessage::Have { partitions } => {
                too_many("partitions", partitions.len(), MAX_HAVE_PARTITIONS)
            }
            SwarmMessage::Peers { peers } => {
                too_many("peers", peers.len(), MAX_PEERS_PER_MESSAGE)?;
                for p in peers {
                    too_many("addresses for one peer", p.addrs.len(), MAX_PEER_ADDRS)?;
                }
                Ok(())
            }
            SwarmMessage::Leave | SwarmMessage::Offer => Ok(()),
        }
    }
}

/// Encodes a message as a full frame (length prefix, version, body) without checking limits;
/// a message over the limits is rejected by the receiver. See [`try_encode_frame`].
pub fn encode_frame(msg: &SwarmMessage) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    out.push(SWARM_VERSION);
    // Serializing into a growable Vec cannot fail for these types.
    let mut out =
        postcard::to_extend(msg, out).expect("postcard encoding into a Vec is infallible");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// Encodes a message as a full frame after checking the message and frame limits.
pub fn try_encode_frame(msg: &SwarmMessage) -> Result<Vec<u8>, WireError> {
    msg.check_limits()?;
    let frame = encode_frame(msg);
    if frame.len() - 4 > MAX_FRAME_LEN {
        return Err(WireError::TooLarge(frame.len() - 4));
    }
    Ok(frame)
}

/// Reads the length prefix of a frame: the number of bytes (version + body) that follow.
/// Rejects 0 and anything over [`MAX_FRAME_LEN`], so the caller can allocate safely.
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(header) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes the bytes after the length prefix (version byte + postcard body) and checks the
/// message limits. Total: never panics.
pub fn decode_frame_body(body: &[u8]) -> Result<SwarmMessage, WireError> {
    let (&version, rest) = body.split_first().ok_or(WireError::Empty)?;
    if body.len() > MAX_FRAME_LEN {
        return Err(WireError::TooLarge(body.len()));
    }
    if version != SWARM_VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let (msg, trailing) = postcard::take_from_bytes::<SwarmMessage>(rest).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => WireError::Truncated,
        other => WireError::Malformed(other.to_string()),
    })?;
    if !trailing.is_empty() {
        return Err(WireError::TrailingBytes(trailing.len()));
    }
    msg.check_limits()?;
    Ok(msg)
}

/// Decodes a complete frame (length prefix included); the prefix must match the rest exactly.
pub fn decode_frame(frame: &[u8]) -> Result<SwarmMessage, WireError> {
    let Some((header, body)) = frame.split_first_chunk::<4>() else {
        return Err(WireError::Truncated);
    };
    let len = frame_len(*header)?;
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(WireError::Truncated),
        std::cmp::Ordering::Greater => Err(WireError::TrailingBytes(body.len() - len)),
        std::cmp::Ordering::Equal => decode_frame_body(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)))
    }

    fn arb_msg() -> impl Strategy<Value = SwarmMessage> {
        prop_oneof![
            (
                any::<[u8; 32]>(),
                0u32..5000,
                proptest::collection::vec(0u32..5000, 0..100),
                proptest::collection::vec(addr(), 0..=MAX_LISTEN_ADDRS),
                any::<bool>()
            )
                .prop_map(|(h, len, members, listen, uploads)| {
                    let mut have = PartitionSet::new(len);
                    members.into_iter().for_each(|i| {
                        have.insert(i);
                    });
                    SwarmMessage::Hello {
                        hash: ContentHash(h),
                        have,
                        listen,
                        uploads,
                    }
                }),
            proptest::collection::vec(any::<u32>(), 0..=MAX_HAVE_PARTITIONS)
                .prop_map(|partitions| SwarmMessage::Have { partitions }),
            proptest::collection::vec(
                (
                    any::<[u8; 32]>(),
                    proptest::collection::vec(addr(), 0..=MAX_PEER_ADDRS),
                    any::<u32>()
                )
                    .prop_map(|(id, addrs, age_secs)| PeerRecord {
                        id: NodeId(id),
                        addrs,
                        age_secs
                    }),
                0..=MAX_PEERS_PER_MESSAGE
            )
            .prop_map(|peers| SwarmMessage::Peers { peers }),
            Just(SwarmMessage::Leave),
            Just(SwarmMessage::Offer),
        ]
    }

    #[test]
    fn alpn_and_leave_layout() {
        assert_eq!(SWARM_ALPN, b"/peas/swarm/1");
        assert_eq!(encode_frame(&SwarmMessage::Leave), vec![2, 0, 0, 0, 2, 3]);
        assert_eq!(encode_frame(&SwarmMessage::Offer), vec![2, 0, 0, 0, 2, 4]);
        assert_eq!(
            encode_frame(&SwarmMessage::Have {
                partitions: vec![1, 300]
            }),
            vec![6, 0, 0, 0, 2, 1, 2, 1, 0xac, 0x02]
        );
    }

    #[test]
    fn limits() {
        assert_eq!(frame_len([0, 0, 0, 0]), Err(WireError::Empty));
        assert_eq!(
            frame_len(((MAX_FRAME_LEN + 1) as u32).to_le_bytes()),
            Err(WireError::TooLarge(MAX_FRAME_LEN + 1))
        );
        assert_eq!(
            frame_len(u32::MAX.to_le_bytes()),
            Err(WireError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(
            frame_len((MAX_FRAME_LEN as u32).to_le_bytes()),
            Ok(MAX_FRAME_LEN)
        );
        let big = SwarmMessage::Have {
            partitions: vec![0; MAX_HAVE_PARTITIONS + 1],
        };
        assert!(matches!(
            try_encode_frame(&big),
            Err(WireError::TooMany { .. })
        ));
        let f = encode_frame(&big);
        assert!(matches!(
            decode_frame_body(&f[4..]),
            Err(WireError::TooMany { .. })
        ));
        let peers = SwarmMessage::Peers {
            peers: vec![
                PeerRecord {
                    id: NodeId([0; 32]),
                    addrs: vec![],
                    age_secs: 0
                };
                65
            ],
        };
        assert!(matches!(
            decode_frame(&encode_frame(&peers)),
            Err(WireError::TooMany { what: "peers", .. })
        ));
        assert_eq!(
            decode_frame_body(&[1, 3]),
            Err(WireError::UnsupportedVersion(1))
        );
        assert_eq!(decode_frame_body(&[]), Err(WireError::Empty));
        assert_eq!(
            decode_frame_body(&[2, 3, 0]),
            Err(WireError::TrailingBytes(1))
        );
        assert!(matches!(
            decode_frame_body(&[2, 9]),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(decode_frame_body(&[2]), Err(WireError::Truncated));
        // The biggest legal messages fit in a frame.
        let hello = SwarmMessage::Hello {
            hash: ContentHash([0xff; 32]),
            have: PartitionSet::full(crate::MAX_PARTITIONS),
            listen: vec!["[ffff::1]:65535".parse().unwrap(); MAX_LISTEN_ADDRS],
            uploads: true,
        };
        assert!(try_encode_frame(&hello).is_ok());
        let peers = SwarmMessage::Peers {
            peers: vec![
                PeerRecord {
                    id: NodeId([0xff; 32]),
                    addrs: vec!["[ffff::1]:65535".parse().unwrap(); MAX_PEER_ADDRS],
                    age_secs: u32::MAX,
                };
                MAX_PEERS_PER_MESSAGE
            ],
        };
        assert!(try_encode_frame(&peers).is_ok());
        let have = SwarmMessage::Have {
            partitions: vec![u32::MAX; MAX_HAVE_PARTITIONS],
        };
        assert!(try_encode_frame(&have).is_ok());
    }

    proptest! {
        #[test]
        fn roundtrip(msg in arb_msg()) {
            let f = try_encode_frame(&msg).unwrap();
            let len = frame_len(f[..4].try_into().unwrap()).unwrap();
            prop_assert_eq!(len, f.len() - 4);
            prop_assert_eq!(&decode_frame_body(&f[4..]).unwrap(), &msg);
            prop_assert_eq!(&decode_frame(&f).unwrap(), &msg);
            // Truncations of the body fail (a sample of cut points, to keep the test fast).
            let n = f.len() - 4;
            for cut in [0, 1, n / 3, n / 2, n.saturating_sub(2), n - 1] {
                prop_assert!(decode_frame_body(&f[4..4 + cut]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode_frame_body(&bytes);
            let _ = decode_frame(&bytes);
            let mut b = vec![SWARM_VERSION];
            b.extend_from_slice(&bytes);
            let _ = decode_frame_body(&b);
        }
    }
}
