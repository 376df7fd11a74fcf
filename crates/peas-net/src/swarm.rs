//! The peas swarm protocol on the wire: reading and writing [`SwarmMessage`] frames on a QUIC
//! stream, and the protocol handler that accepts swarm streams and hands them to the driver of
//! the content named in the opening `Hello`.
//!
//! A swarm session is one bidirectional stream per (content, peer) pair, opened by the dialer
//! on a connection with ALPN [`SWARM_ALPN`](peas_proto::SWARM_ALPN). Both sides start with `Hello`; after that either
//! side sends `Have`, `Peers` and finally `Leave` in any order.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use iroh::{
    EndpointId,
    endpoint::{Connection, RecvStream, SendStream},
    protocol::{AcceptError, ProtocolHandler},
};
use peas_proto::{MAX_FRAME_LEN, SwarmMessage, WireError, decode_frame_body, frame_len};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::driver::{DriverMsg, InboundSession};

/// How long the accepting side waits for the opening `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors reading or writing swarm frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("swarm stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that does not decode.
    #[error("peer sent a bad swarm frame: {0}")]
    Wire(#[from] WireError),
}

/// Reads one frame. `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<SwarmMessage>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Wire(WireError::Truncated));
        }
        got += n;
    }
    let len = frame_len(header)?;
    debug_assert!(len <= MAX_FRAME_LEN);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Wire(WireError::Truncated)
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(decode_frame_body(&body)?))
}

/// Writes one frame (checking the message and frame limits first).
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &SwarmMessage,
) -> Result<(), FrameError> {
    msg.check_limits()?;
    let frame = peas_proto::encode_frame(msg);
    if frame.len() - 4 > MAX_FRAME_LEN {
        return Err(FrameError::Wire(WireError::TooLarge(frame.len() - 4)));
    }
    w.write_all(&frame).await?;
    Ok(())
}

/// Registry of running swarm drivers by content hash, shared with the protocol handler.
pub(crate) type Drivers =
    Arc<std::sync::Mutex<HashMap<iroh_blobs::Hash, tokio::sync::mpsc::Sender<DriverMsg>>>>;

/// The protocol handler for [`peas_proto::SWARM_ALPN`].
#[derive(Debug, Clone)]
pub(crate) struct SwarmProtocol {
    pub(crate) drivers: Drivers,
}

impl SwarmProtocol {
    async fn handle_stream(
        &self,
        conn: Connection,
        peer: EndpointId,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_message(&mut recv)).await {
            Ok(Ok(Some(m @ SwarmMessage::Hello { .. }))) => m,
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                tracing::debug!(%peer, "swarm stream without a valid Hello");
                return;
            }
        };
        let SwarmMessage::Hello {
            hash,
            have,
            listen,
            uploads,
        } = hello
        else {
            return;
        };
        let key = iroh_blobs::Hash::from_bytes(hash.0);
        let driver = self
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let Some(driver) = driver else {
            // not in this swarm: say so and close
            write_message(&mut send, &SwarmMessage::Leave).await.ok();
            send.finish().ok();
            return;
        };
        let observed = observed_addr(&conn);
        let session = InboundSession {
            peer,
            conn,
            send,
            recv,
            have,
            listen,
            observed,
            uploads,
        };
        driver
            .send(DriverMsg::Inbound(Box::new(session)))
            .await
            .ok();
    }
}

/// The remote IP address of a connection's selected path, if it is a direct one.
pub(crate) fn observed_addr(conn: &Connection) -> Option<SocketAddr> {
    let paths = conn.paths();
    let mut best = None;
    for p in paths.iter() {
        if let iroh::TransportAddr::Ip(a) = p.remote_addr() {
            if p.is_selected() {
                return Some(*a);
            }
            best = Some(*a);
        }
    }
    best
}

impl ProtocolHandler for SwarmProtocol {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = conn.remote_id();
        // Each content swapped with this peer gets its own stream; bounded per connection.
        let mut streams = 0usize;
        while let Ok((send, recv)) = conn.accept_bi().await {
            streams += 1;
            if streams > 1024 {
                break;
            }
            let this = self.clone();
            let conn = conn.clone();
            tokio::spawn(async move { this.handle_stream(conn, peer, send, recv).await });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peas_proto::{ContentHash, NodeId, PartitionSet, PeerRecord};

    fn sample() -> Vec<SwarmMessage> {
        let mut have = PartitionSet::new(100);
        have.insert(3);
        have.insert(99);
        vec![
            SwarmMessage::Hello {
                hash: ContentHash([7; 32]),
                have,
                listen: vec!["127.0.0.1:7117".parse().expect("addr")],
                uploads: true,
            },
            SwarmMessage::Have {
                partitions: vec![1, 2, 3],
            },
            SwarmMessage::Peers {
                peers: vec![PeerRecord {
                    id: NodeId([1; 32]),
                    addrs: vec!["10.0.0.1:1".parse().expect("addr")],
                    age_secs: 5,
                }],
            },
            SwarmMessage::Leave,
        ]
    }

    #[tokio::test]
    async fn frames_round_trip_over_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msgs = sample();
        let sent = msgs.clone();
        let writer = tokio::spawn(async move {
            for m in &sent {
                write_message(&mut a, m).await.expect("write");
            }
        });
        let mut got = Vec::new();
        while got.len() < msgs.len() {
            got.push(read_message(&mut b).await.expect("read").expect("frame"));
        }
        writer.await.expect("join");
        assert_eq!(got, msgs);
        // the writer was dropped: clean end of stream
        assert!(read_message(&mut b).await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let frame = peas_proto::encode_frame(&SwarmMessage::Leave);
        for cut in 1..frame.len() {
            let mut r = &frame[..cut];
            assert!(read_message(&mut r).await.is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn oversized_length_is_rejected_before_allocating() {
        let mut bytes = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 3]);
        let mut r = &bytes[..];
        assert!(matches!(
            read_message(&mut r).await,
            Err(FrameError::Wire(WireError::TooLarge(_)))
        ));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut r: &[u8] = &[5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        assert!(read_message(&mut r).await.is_err());
        let mut r: &[u8] = &[2, 0, 0, 0, 9, 3];
        assert!(matches!(
            read_message(&mut r).await,
            Err(FrameError::Wire(WireError::UnsupportedVersion(9)))
        ));
    }
}
