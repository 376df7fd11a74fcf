//! The planner's per-peer-slot table: who is in each slot, what that peer has, and how many
//! of our partitions it lacks, laid out so that an announcement touches few cache lines.

use crate::PeerId;

/// What an announcement and an offer round read of one slot, together (16 bytes).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Meta {
    /// The peer in the slot (meaningful while `count != FREE`).
    peer: u64,
    /// Indices the peer has, or [`PeerSlots::SEED`], or [`PeerSlots::FREE`].
    count: u32,
    /// Partitions we have that the peer lacks (0 for a seed), kept up to date by the planner.
    lacking: u32,
}

/// Per peer slot (`0..slots`): the peer in it, its set of partitions `0..len` (one flat
/// array of bit words: slot `s` owns words `s * words .. (s + 1) * words`), its count, and
/// the planner's count of our partitions it lacks. A slot holding a complete seed keeps no
/// bits. Reading a peer's bit for a partition is one access at a computed address.
#[derive(Clone, Debug)]
pub(crate) struct PeerSlots {
    /// Words per set.
    words: usize,
    /// Indices per set.
    len: u32,
    bits: Vec<u64>,
    meta: Vec<Meta>,
}

impl PeerSlots {
    /// The count of a slot that holds a complete seed.
    const SEED: u32 = u32::MAX;
    /// The count of a free slot.
    const FREE: u32 = u32::MAX - 1;

    /// `slots` free slots, for sets over indices `0..len` (`len` below `u32::MAX - 1`).
    pub(crate) fn new(slots: usize, len: u32) -> Self {
        let words = (len as usize).div_ceil(64);
        Self {
            words,
            len,
            bits: vec![0; slots * words],
            meta: vec![
                Meta {
                    peer: 0,
                    count: Self::FREE,
                    lacking: 0,
                };
                slots
            ],
        }
    }

    fn range(&self, slot: u32) -> std::ops::Range<usize> {
        slot as usize * self.words..(slot as usize + 1) * self.words
    }

    /// Puts `peer` in the lowest free slot, with an empty set; returns that slot.
    ///
    /// # Panics
    /// If no slot is free (the planner connects at most as many peers as it has slots).
    pub(crate) fn occupy(&mut self, peer: PeerId) -> u32 {
        let slot = (self.meta.iter())
            .position(|m| m.count == Self::FREE)
            .expect("a free peer slot below max_connected_peers");
        self.meta[slot] = Meta {
            peer: peer.0,
            count: 0,
            lacking: 0,
        };
        slot as u32
    }

    /// Frees `slot` (its set emptied).
    pub(crate) fn vacate(&mut self, slot: u32) {
        self.clear(slot);
        self.meta[slot as usize].count = Self::FREE;
    }

    /// Whether `slot` exists and holds `peer`.
    pub(crate) fn holds(&self, slot: u32, peer: PeerId) -> bool {
        self.meta
            .get(slot as usize)
            .is_some_and(|m| m.count != Self::FREE && m.peer == peer.0)
    }

    /// The words of `slot`'s set (`None`: a complete seed).
    pub(crate) fn words(&self, slot: u32) -> Option<&[u64]> {
        (self.meta[slot as usize].count != Self::SEED).then(|| &self.bits[self.range(slot)])
    }

    /// Whether `slot`'s peer has `i` (a seed has everything).
    pub(crate) fn contains(&self, slot: u32, i: u32) -> bool {
        if self.meta[slot as usize].count == Self::SEED {
            return true;
        }
        i < self.len
            && self.bits[slot as usize * self.words + (i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// How many indices `slot`'s peer has (`len` for a seed).
    pub(crate) fn count(&self, slot: u32) -> u32 {
        match self.meta[slot as usize].count {
            Self::SEED => self.len,
            n => n,
        }
    }

    /// The slot's count and the word of its set that holds `i`, mixed (0 out of range): what
    /// [`PeerSlots::insert`] reads, read ahead of it.
    pub(crate) fn word_of(&self, slot: u32, i: u32) -> u64 {
        let count = self.meta.get(slot as usize).map_or(0, |m| m.count);
        let word = (self.bits)
            .get(slot as usize * self.words + (i / 64) as usize)
            .map_or(0, |w| *w);
        u64::from(count) ^ word
    }

    /// Adds `i` to `slot`'s set; true if it was not there (false for a seed or `i` out of
    /// range).
    pub(crate) fn insert(&mut self, slot: u32, i: u32) -> bool {
        let n = &mut self.meta[slot as usize].count;
        if *n >= Self::FREE || i >= self.len {
            return false;
        }
        let w = &mut self.bits[slot as usize * self.words + (i / 64) as usize];
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        *w |= bit;
        if !was {
            *n += 1;
        }
        !was
    }

    /// Makes `slot` hold a complete seed.
    pub(crate) fn set_seed(&mut self, slot: u32) {
        self.clear(slot);
        self.meta[slot as usize].count = Self::SEED;
    }

    /// Empties `slot`'s set (a seed becomes a peer with nothing), lacking reset to 0.
    pub(crate) fn clear(&mut self, slot: u32) {
        let r = self.range(slot);
        self.bits[r].iter_mut().for_each(|w| *w = 0);
        let m = &mut self.meta[slot as usize];
        m.count = 0;
        m.lacking = 0;
    }

    /// An occupied slot's peer, count and lacking, read together (one cache line).
    pub(crate) fn entry(&self, slot: u32) -> (PeerId, u32, u32) {
        let m = &self.meta[slot as usize];
        debug_assert_ne!(m.count, Self::FREE, "slot {slot} is free");
        (PeerId(m.peer), m.count, m.lacking)
    }

    /// Asks for every cache line of the slot table (see [`crate::prefetch_all`]).
    pub(crate) fn prefetch_table(&self) {
        crate::prefetch_all(&self.meta);
    }

    /// The planner's count of our partitions that `slot`'s peer lacks, to update.
    pub(crate) fn lacking_mut(&mut self, slot: u32) -> &mut u32 {
        &mut self.meta[slot as usize].lacking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_their_sets_apart() {
        let mut s = PeerSlots::new(3, 130);
        assert!(!s.holds(0, PeerId(7)) && !s.holds(3, PeerId(7)));
        assert_eq!(s.occupy(PeerId(7)), 0);
        assert_eq!(s.occupy(PeerId(8)), 1);
        assert_eq!(s.occupy(PeerId(9)), 2);
        assert!(s.holds(0, PeerId(7)) && !s.holds(0, PeerId(8)));
        assert!(s.insert(0, 129));
        assert!(!s.insert(0, 129));
        assert!(!s.insert(0, 130));
        assert!(s.insert(2, 5));
        assert!(s.contains(0, 129) && !s.contains(1, 129) && !s.contains(2, 129));
        assert_eq!((s.count(0), s.count(1), s.count(2)), (1, 0, 1));
        s.set_seed(1);
        assert!(s.contains(1, 7) && s.words(1).is_none() && !s.insert(1, 7));
        assert_eq!(s.count(1), 130);
        assert_eq!(s.words(2).map(|w| w[0]), Some(1 << 5));
        *s.lacking_mut(2) = 4;
        assert_eq!(s.entry(2), (PeerId(9), 1, 4));
        s.vacate(2);
        assert!(!s.holds(2, PeerId(9)) && !s.insert(2, 6));
        assert_eq!(s.occupy(PeerId(10)), 2);
        assert_eq!(
            (s.entry(2), s.words(2).map(|w| w[0])),
            ((PeerId(10), 0, 0), Some(0))
        );
    }
}
