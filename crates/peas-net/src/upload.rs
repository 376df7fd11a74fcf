//! The serving side: hooks into iroh-blobs' provider events to decide, limit and count uploads.
//!
//! iroh-blobs serves verified ranges straight from the store (partial blobs included). We get
//! its events through an [`EventSender`]:
//! - `ClientConnectedNotify` / `ConnectionClosed`: map connection ids to peer ids;
//! - `GetRequestReceived` (intercepted): refused in leech mode; otherwise handed to the swarm
//!   driver of that content, whose planner answers Accept or Refuse (upload slots,
//!   super-seeding); requests for content without a running swarm are served directly;
//! - `Throttle` (before each 16 KiB chunk group is sent): counts uploaded bytes per peer and
//!   waits on the node's shared upload token bucket.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{Arc, Mutex},
};

use iroh::EndpointId;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode,
    RequestUpdate, ThrottleMode,
};

use crate::{
    driver::{DriverMsg, UploadRequest},
    rate::RateLimiter,
    swarm::Drivers,
};

/// Bytes uploaded, per peer and in total; shared by the node and its reports.
#[derive(Debug, Default, Clone)]
pub struct UploadCounters {
    inner: Arc<Mutex<HashMap<EndpointId, u64>>>,
}

impl UploadCounters {
    /// Adds `n` bytes sent to `peer`.
    pub fn add(&self, peer: EndpointId, n: u64) {
        *self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(peer)
            .or_default() += n;
    }

    /// Total bytes uploaded.
    pub fn total(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Bytes uploaded per peer.
    pub fn per_peer(&self) -> Vec<(EndpointId, u64)> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }
}

/// The byte range of the root blob a get request asks for (first to last requested chunk,
/// clipped to nothing if empty); `None` for hash-sequence requests or empty ones.
pub(crate) fn requested_byte_range(req: &iroh_blobs::protocol::GetRequest) -> Option<Range<u64>> {
    let (offset, ranges) = req.ranges.as_single()?;
    if offset != 0 {
        return None;
    }
    let b = ranges.boundaries();
    let start = b.first()?.0.saturating_mul(1024);
    let end = if b.len() % 2 == 0 {
        b.last()?.0.saturating_mul(1024)
    } else {
        u64::MAX
    };
    Some(start..end)
}

/// Builds the event sender for the blobs protocol and spawns the task answering its events.
pub(crate) fn spawn_upload_hooks(
    no_upload: bool,
    limiter: RateLimiter,
    counters: UploadCounters,
    drivers: Drivers,
) -> (EventSender, tokio::task::JoinHandle<()>) {
    let mask = EventMask {
        connected: ConnectMode::Notify,
        get: if no_upload {
            RequestMode::Disabled
        } else {
            RequestMode::InterceptLog
        },
        get_many: RequestMode::Disabled,
        push: RequestMode::Disabled,
        observe: if no_upload {
            ObserveMode::Intercept
        } else {
            ObserveMode::None
        },
        throttle: ThrottleMode::Intercept,
    };
    let (tx, mut rx) = EventSender::channel(256, mask);
    let task = tokio::spawn(async move {
        let mut conns: HashMap<u64, EndpointId> = HashMap::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                ProviderMessage::ClientConnectedNotify(msg) => {
                    if let Some(id) = msg.endpoint_id {
                        conns.insert(msg.connection_id, id);
                    }
                }
                ProviderMessage::ClientConnected(msg) => {
                    if let Some(id) = msg.endpoint_id {
                        conns.insert(msg.connection_id, id);
                    }
                    msg.tx.send(Ok(())).await.ok();
                }
                ProviderMessage::ConnectionClosed(msg) => {
                    conns.remove(&msg.connection_id);
                }
                ProviderMessage::ObserveRequestReceived(msg) => {
                    // only intercepted in leech mode: we serve nothing, so we show nothing
                    msg.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::GetRequestReceived(msg) => {
                    let peer = conns.get(&msg.connection_id).copied();
                    let range = requested_byte_range(&msg.request);
                    let driver = drivers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&msg.request.hash)
                        .cloned();
                    let hash = msg.request.hash;
                    let tx = msg.tx;
                    let mut updates = msg.rx;
                    match (no_upload, peer, range, driver) {
                        (true, ..) => {
                            tx.send(Err(AbortReason::Permission)).await.ok();
                        }
                        (false, Some(peer), Some(range), Some(driver)) => {
                            let (decide, decided) = tokio::sync::oneshot::channel::<bool>();
                            let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
                            let req = UploadRequest {
                                peer,
                                range,
                                decide,
                                ended,
                            };
                            if driver.try_send(DriverMsg::Upload(Box::new(req))).is_err() {
                                // the driver is gone or swamped: refuse, the peer retries
                                tx.send(Err(AbortReason::RateLimited)).await.ok();
                                continue;
                            }
                            // answer when the planner decides, then watch the transfer end
                            tokio::spawn(async move {
                                let ok = decided.await.unwrap_or(false);
                                let answer = if ok {
                                    Ok(())
                                } else {
                                    Err(AbortReason::RateLimited)
                                };
                                tx.send(answer).await.ok();
                                if ok {
                                    loop {
                                        match updates.recv().await {
                                            Ok(Some(RequestUpdate::Completed(_)))
                                            | Ok(Some(RequestUpdate::Aborted(_)))
                                            | Ok(None)
                                            | Err(_) => break,
                                            Ok(Some(_)) => {}
                                        }
                                    }
                                }
                                ended_tx.send(()).ok();
                            });
                        }
                        (false, _, Some(_), None) => {
                            // content without a running swarm: serve what the store has
                            tracing::debug!(%hash, "serving without swarm");
                            tx.send(Ok(())).await.ok();
                        }
                        _ => {
                            tx.send(Err(AbortReason::Permission)).await.ok();
                        }
                    }
                }
                ProviderMessage::Throttle(msg) => {
                    if let Some(peer) = conns.get(&msg.connection_id) {
                        counters.add(*peer, msg.size);
                    }
                    let wait = limiter.reserve(msg.size);
                    if wait.is_zero() {
                        msg.tx.send(Ok(())).await.ok();
                    } else {
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            msg.tx.send(Ok(())).await.ok();
                        });
                    }
                }
                _ => {}
            }
        }
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_blobs::{
        Hash,
        protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
    };

    #[test]
    fn byte_range_of_get_requests() {
        let h = Hash::new(b"x");
        let r = GetRequest::blob_ranges(h, ChunkRanges::bytes(16 * 1024..48 * 1024));
        assert_eq!(requested_byte_range(&r), Some(16 * 1024..48 * 1024));
        // unaligned ends are rounded out to whole 1 KiB chunks
        let r = GetRequest::blob_ranges(h, ChunkRanges::bytes(0..1000));
        assert_eq!(requested_byte_range(&r), Some(0..1024));
        // open-ended: everything from the start
        let r = GetRequest::blob(h);
        assert_eq!(requested_byte_range(&r), Some(0..u64::MAX));
        // hash sequences are not blob range requests
        let r = GetRequest::all(h);
        assert_eq!(requested_byte_range(&r), None);
    }

    #[test]
    fn counters_add_up_per_peer() {
        let c = UploadCounters::default();
        let a = iroh::SecretKey::from_bytes(&[1; 32]).public();
        let b = iroh::SecretKey::from_bytes(&[2; 32]).public();
        c.add(a, 10);
        c.add(b, 5);
        c.add(a, 1);
        assert_eq!(c.total(), 16);
        let per = c.per_peer();
        assert_eq!(per.len(), 2);
        assert!(per.contains(&(a, 11)) && per.contains(&(b, 5)));
    }
}
