//! The bounded peer table of one swarm (one content hash).
//!
//! Holds every peer this node has heard of (from the manifest's owners, peer exchange, inbound
//! connections or the persisted table), when it was last seen, and the dial state. Bounded:
//! at most `max_known` entries (the least recently seen unconnected peer is evicted first);
//! entries not seen for the TTL expire. Time is passed in as a [`Duration`] since the driver
//! started, so the table is unit tested without a clock.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    time::Duration,
};

use iroh::EndpointId;

/// Most socket addresses remembered per peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// Where a peer's dial state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialState {
    /// Not connected, may be dialed once `next_dial` has passed.
    Idle,
    /// A dial is in progress.
    Dialing,
    /// A session (swarm or plain iroh-blobs) is up.
    Connected,
}

/// What the table knows about one peer.
#[derive(Debug, Clone)]
pub struct KnownPeer {
    /// Direct addresses to dial, most recently learned first (≤ [`MAX_ADDRS_PER_PEER`]).
    pub addrs: Vec<SocketAddr>,
    /// When the peer was last seen alive (connected, or reported by someone), driver time.
    pub last_seen: Duration,
    /// Dial state.
    pub state: DialState,
    /// Consecutive failed dials (reset on success); drives the backoff.
    pub failures: u32,
    /// Earliest time of the next dial attempt.
    pub next_dial: Duration,
    /// Whether the peer is one of the manifest's owners (never evicted for space).
    pub owner: bool,
}

/// The bounded peer table; see the module docs.
#[derive(Debug)]
pub struct PeerTable {
    me: EndpointId,
    max_known: usize,
    ttl: Duration,
    peers: BTreeMap<EndpointId, KnownPeer>,
    banned: HashSet<EndpointId>,
}

/// First retry delay after a failed dial; doubles per failure up to [`MAX_DIAL_BACKOFF`].
pub const BASE_DIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between dial attempts to the same peer.
pub const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(30);

impl PeerTable {
    /// A table for node `me` (never added to its own table) holding ≤ `max_known` peers that
    /// expire after `ttl` without being seen.
    pub fn new(me: EndpointId, max_known: usize, ttl: Duration) -> Self {
        Self {
            me,
            max_known: max_known.max(1),
            ttl,
            peers: BTreeMap::new(),
            banned: HashSet::new(),
        }
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The entry of one peer.
    pub fn get(&self, id: &EndpointId) -> Option<&KnownPeer> {
        self.peers.get(id)
    }

    /// Whether `id` was banned (it is then never added or dialed again).
    pub fn is_banned(&self, id: &EndpointId) -> bool {
        self.banned.contains(id)
    }

    /// Number of peers in the `Connected` state.
    pub fn connected_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == DialState::Connected)
            .count()
    }

    /// Number of peers in the `Dialing` state.
    pub fn dialing_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.state == DialState::Dialing)
            .count()
    }

    /// Adds or refreshes a peer seen at `seen_at` with addresses `addrs` (merged, newest
    /// first). Returns false if the peer is ourselves, banned, or the table is full of peers
    /// that may not be evicted.
    pub fn observe(
        &mut self,
        id: EndpointId,
        addrs: &[SocketAddr],
        seen_at: Duration,
        owner: bool,
    ) -> bool {
        if id == self.me || self.banned.contains(&id) {
            return false;
        }
        if let Some(p) = self.peers.get_mut(&id) {
            merge_addrs(&mut p.addrs, addrs);
            p.last_seen = p.last_seen.max(seen_at);
            p.owner |= owner;
            return true;
        }
        if self.peers.len() >= self.max_known && !self.evict_one() {
            return false;
        }
        let mut a = Vec::new();
        merge_addrs(&mut a, addrs);
        self.peers.insert(
            id,
            KnownPeer {
                addrs: a,
                last_seen: seen_at,
                state: DialState::Idle,
                failures: 0,
                next_dial: Duration::ZERO,
                owner,
            },
        );
        true
    }

    /// Evicts the least recently seen idle non-owner peer; false if there is none.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == DialState::Idle && !p.owner)
            .min_by_key(|(_, p)| p.last_seen)
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.peers.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Removes idle non-owner peers not seen since `now - ttl`; returns how many expired.
    pub fn expire(&mut self, now: Duration) -> usize {
        let Some(cutoff) = now.checked_sub(self.ttl) else {
            return 0;
        };
        let before = self.peers.len();
        self.peers
            .retain(|_, p| p.owner || p.state != DialState::Idle || p.last_seen >= cutoff);
        before - self.peers.len()
    }

    /// Up to `limit` idle peers whose backoff has passed, most recently seen first (owners
    /// first among equals).
    pub fn dial_candidates(&self, now: Duration, limit: usize) -> Vec<EndpointId> {
        let mut c: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state == DialState::Idle && p.next_dial <= now)
            .map(|(id, p)| (*id, p.owner, p.last_seen))
            .collect();
        c.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        c.into_iter().take(limit).map(|(id, _, _)| id).collect()
    }

    /// The earliest time an idle peer becomes dialable, if any is waiting on backoff.
    pub fn next_dial_time(&self) -> Option<Duration> {
        self.peers
            .values()
            .filter(|p| p.state == DialState::Idle)
            .map(|p| p.next_dial)
            .min()
    }

    /// Marks a dial as started.
    pub fn mark_dialing(&mut self, id: &EndpointId) {
        if let Some(p) = self.peers.get_mut(id) {
            p.state = DialState::Dialing;
        }
    }

    /// Marks a peer connected at `now` (adding it if unknown and not banned). Returns false if
    /// the peer may not be added.
    pub fn mark_connected(&mut self, id: EndpointId, addrs: &[SocketAddr], now: Duration) -> bool {
        if !self.observe(id, addrs, now, false) {
            return false;
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.state = DialState::Connected;
            p.failures = 0;
            p.last_seen = now;
        }
        true
    }

    /// Marks a dial as failed at `now`: the peer waits an exponential backoff before the next
    /// attempt.
    pub fn mark_dial_failed(&mut self, id: &EndpointId, now: Duration) {
        if let Some(p) = self.peers.get_mut(id) {
            p.state = DialState::Idle;
            p.failures = p.failures.saturating_add(1);
            let shift = p.failures.saturating_sub(1).min(16);
            let backoff = BASE_DIAL_BACKOFF
                .saturating_mul(1u32 << shift)
                .min(MAX_DIAL_BACKOFF);
            p.next_dial = now + backoff;
        }
    }

    /// Marks a session as ended at `now`; the peer may be redialed after `redial_after`.
    pub fn mark_disconnected(&mut self, id: &EndpointId, now: Duration, redial_after: Duration) {
        if let Some(p) = self.peers.get_mut(id) {
            p.state = DialState::Idle;
            p.last_seen = p.last_seen.max(now);
            p.next_dial = now + redial_after;
        }
    }

    /// Bans a peer: removed now and never added again.
    pub fn ban(&mut self, id: EndpointId) {
        self.peers.remove(&id);
        self.banned.insert(id);
    }

    /// Up to `limit` peers to tell others about (peer exchange): connected ones first, then the
    /// most recently seen, excluding `exclude`; each with its addresses and age at `now`.
    pub fn exchange_sample(
        &self,
        now: Duration,
        limit: usize,
        exclude: &EndpointId,
    ) -> Vec<(EndpointId, Vec<SocketAddr>, Duration)> {
        let mut c: Vec<_> = self
            .peers
            .iter()
            .filter(|(id, p)| *id != exclude && !p.addrs.is_empty())
            .map(|(id, p)| {
                let seen = if p.state == DialState::Connected {
                    now
                } else {
                    p.last_seen
                };
                (*id, p.addrs.clone(), now.saturating_sub(seen))
            })
            .collect();
        c.sort_by_key(|(_, _, age)| *age);
        c.truncate(limit);
        c
    }

    /// Every known peer with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (&EndpointId, &KnownPeer)> {
        self.peers.iter()
    }
}

fn merge_addrs(into: &mut Vec<SocketAddr>, new: &[SocketAddr]) {
    for a in new.iter().rev() {
        into.retain(|x| x != a);
        into.insert(0, *a);
    }
    into.truncate(MAX_ADDRS_PER_PEER);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u8) -> EndpointId {
        iroh::SecretKey::from_bytes(&[i; 32]).public()
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn never_adds_self_or_banned() {
        let mut t = PeerTable::new(id(0), 10, 60 * S);
        assert!(!t.observe(id(0), &[addr(1)], S, false));
        t.ban(id(1));
        assert!(!t.observe(id(1), &[addr(1)], S, false));
        assert!(!t.mark_connected(id(1), &[], S));
        assert!(t.is_empty());
    }

    #[test]
    fn bounded_evicts_oldest_idle_non_owner() {
        let mut t = PeerTable::new(id(0), 3, 600 * S);
        assert!(t.observe(id(1), &[addr(1)], S, true));
        assert!(t.observe(id(2), &[addr(2)], 2 * S, false));
        assert!(t.observe(id(3), &[addr(3)], 3 * S, false));
        assert!(t.observe(id(4), &[addr(4)], 4 * S, false));
        assert_eq!(t.len(), 3);
        assert!(t.get(&id(1)).is_some(), "owner kept");
        assert!(t.get(&id(2)).is_none(), "oldest evicted");
        // connected peers are not evicted either
        t.mark_connected(id(3), &[], 5 * S);
        t.mark_connected(id(4), &[], 5 * S);
        assert!(!t.observe(id(5), &[addr(5)], 6 * S, false));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ttl_expires_idle_peers_only() {
        let mut t = PeerTable::new(id(0), 10, 10 * S);
        t.observe(id(1), &[addr(1)], S, false);
        t.observe(id(2), &[addr(2)], S, false);
        t.mark_connected(id(2), &[], S);
        t.observe(id(3), &[addr(3)], 8 * S, false);
        assert_eq!(t.expire(15 * S), 1);
        assert!(t.get(&id(1)).is_none());
        assert!(t.get(&id(2)).is_some());
        assert!(t.get(&id(3)).is_some());
    }

    #[test]
    fn dial_backoff_grows_and_resets() {
        let mut t = PeerTable::new(id(0), 10, 600 * S);
        t.observe(id(1), &[addr(1)], S, false);
        assert_eq!(t.dial_candidates(S, 5), vec![id(1)]);
        t.mark_dialing(&id(1));
        assert!(t.dial_candidates(S, 5).is_empty());
        t.mark_dial_failed(&id(1), S);
        assert!(t.dial_candidates(S, 5).is_empty());
        assert_eq!(t.next_dial_time(), Some(S + BASE_DIAL_BACKOFF));
        t.mark_dialing(&id(1));
        t.mark_dial_failed(&id(1), 2 * S);
        assert_eq!(t.next_dial_time(), Some(2 * S + 2 * BASE_DIAL_BACKOFF));
        for _ in 0..40 {
            t.mark_dial_failed(&id(1), 2 * S);
        }
        assert_eq!(t.next_dial_time(), Some(2 * S + MAX_DIAL_BACKOFF));
        t.mark_connected(id(1), &[], 3 * S);
        assert_eq!(t.get(&id(1)).map(|p| p.failures), Some(0));
        assert_eq!(t.connected_count(), 1);
    }

    #[test]
    fn candidates_prefer_owners_then_recent() {
        let mut t = PeerTable::new(id(0), 10, 600 * S);
        t.observe(id(1), &[addr(1)], S, false);
        t.observe(id(2), &[addr(2)], 5 * S, false);
        t.observe(id(3), &[addr(3)], Duration::ZERO, true);
        assert_eq!(t.dial_candidates(6 * S, 2), vec![id(3), id(2)]);
    }

    #[test]
    fn exchange_sample_is_bounded_and_fresh_first() {
        let mut t = PeerTable::new(id(0), 100, 600 * S);
        for i in 1..50u8 {
            t.observe(id(i), &[addr(i as u16)], u32::from(i) * S, false);
        }
        t.mark_connected(id(1), &[], 10 * S);
        let s = t.exchange_sample(60 * S, 8, &id(2));
        assert_eq!(s.len(), 8);
        assert_eq!(s[0].0, id(1));
        assert_eq!(s[0].2, Duration::ZERO);
        assert!(s.iter().all(|(i, _, _)| *i != id(2)));
        assert!(s.windows(2).all(|w| w[0].2 <= w[1].2));
    }

    #[test]
    fn addrs_are_merged_and_bounded() {
        let mut t = PeerTable::new(id(0), 10, 600 * S);
        for p in 0..20 {
            t.observe(id(1), &[addr(p)], S, false);
        }
        let a = &t.get(&id(1)).map(|p| p.addrs.clone()).unwrap_or_default();
        assert_eq!(a.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(a[0], addr(19));
    }
}
