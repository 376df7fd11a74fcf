//! A compact bit set over a blob's partitions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::geometry::MAX_PARTITIONS;

/// A set of partition indices in `0..len`, one bit per partition.
///
/// Invariants: `len <= MAX_PARTITIONS`; bits at or above `len` are always zero. Out-of-range
/// indices are never members: `insert`/`remove` ignore them and return `false`.
///
/// Serialized as `(len: u32, bits: bytes)` where `bits` has exactly `ceil(len / 8)` bytes and
/// partition `i` is bit `i % 8` (least significant first) of byte `i / 8`. Deserializing checks
/// the length bound, the byte count and that padding bits are zero, so a decoded set is as
/// valid as a constructed one and at most 8 KiB.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPartitionSet", into = "RawPartitionSet")]
pub struct PartitionSet {
    len: u32,
    words: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct RawPartitionSet {
    len: u32,
    bits: Vec<u8>,
}

/// Why serialized bytes are not a valid [`PartitionSet`].
#[derive(Debug, thiserror::Error)]
enum PartitionSetError {
    #[error("partition set of {0} partitions is larger than the maximum")]
    TooLong(u32),
    #[error("partition set has {got} bytes of bits, expected {expected}")]
    BadByteCount { got: usize, expected: usize },
    #[error("partition set has bits set past its length")]
    Padding,
}

impl TryFrom<RawPartitionSet> for PartitionSet {
    type Error = PartitionSetError;
    fn try_from(raw: RawPartitionSet) -> Result<Self, Self::Error> {
        if raw.len > MAX_PARTITIONS {
            return Err(PartitionSetError::TooLong(raw.len));
        }
        let expected = (raw.len as usize).div_ceil(8);
        if raw.bits.len() != expected {
            return Err(PartitionSetError::BadByteCount {
                got: raw.bits.len(),
                expected,
            });
        }
        let mut set = PartitionSet::new(raw.len);
        for (i, b) in raw.bits.iter().enumerate() {
            set.words[i / 8] |= u64::from(*b) << ((i % 8) * 8);
        }
        let mut masked = set.words.clone();
        mask_tail(raw.len, &mut masked);
        if masked != set.words {
            return Err(PartitionSetError::Padding);
        }
        Ok(set)
    }
}

impl From<PartitionSet> for RawPartitionSet {
    fn from(set: PartitionSet) -> Self {
        let n = (set.len as usize).div_ceil(8);
        let bits = (0..n)
            .map(|i| (set.words[i / 8] >> ((i % 8) * 8)) as u8)
            .collect();
        RawPartitionSet { len: set.len, bits }
    }
}

fn mask_tail(len: u32, words: &mut [u64]) {
    let rem = len % 64;
    if rem != 0
        && let Some(last) = words.last_mut()
    {
        *last &= (1u64 << rem) - 1;
    }
}

impl PartitionSet {
    /// An empty set over `len` partitions; `len` is clamped to [`MAX_PARTITIONS`].
    pub fn new(len: u32) -> Self {
        let len = len.min(MAX_PARTITIONS);
        Self {
            len,
            words: vec![0; (len as usize).div_ceil(64)],
        }
    }

    /// The set of all `len` partitions; `len` is clamped to [`MAX_PARTITIONS`].
    pub fn full(len: u32) -> Self {
        let mut s = Self::new(len);
        s.words.iter_mut().for_each(|w| *w = u64::MAX);
        mask_tail(s.len, &mut s.words);
        s
    }

    /// The number of partitions the set ranges over (not the number of members).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True if the set has no members.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Adds partition `i`; returns true if it was not a member before. Out of range: false.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let (w, b) = ((i / 64) as usize, i % 64);
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !was
    }

    /// Removes partition `i`; returns true if it was a member.
    pub fn remove(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let (w, b) = ((i / 64) as usize, i % 64);
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] &= !(1 << b);
        was
    }

    /// True if partition `i` is a member.
    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// The number of members.
    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// True if every partition in `0..len` is a member (also true for `len == 0`).
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(wi as u32 * 64 + b)
            })
        })
    }

    /// The partitions in `0..len` that are not members, in increasing order.
    pub fn iter_missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|i| !self.contains(*i))
    }

    /// Adds every member of `other` that is in range of `self` (members of `other` at or past
    /// `self.len()` are ignored).
    pub fn union_with(&mut self, other: &PartitionSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
        mask_tail(self.len, &mut self.words);
    }
}

impl fmt::Debug for PartitionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionSet({}/{})", self.count(), self.len)
    }
}

impl<'a> IntoIterator for &'a PartitionSet {
    type Item = u32;
    type IntoIter = Box<dyn Iterator<Item = u32> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn basics() {
        let mut s = PartitionSet::new(70);
        assert!(s.is_empty() && !s.is_full());
        assert!(s.insert(0) && s.insert(69) && !s.insert(69));
        assert!(!s.insert(70), "out of range is ignored");
        assert!(s.contains(69) && !s.contains(70) && !s.contains(u32::MAX));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 69]);
        assert_eq!(s.count(), 2);
        assert!(s.remove(0) && !s.remove(0) && !s.remove(1000));
        let f = PartitionSet::full(70);
        assert!(f.is_full() && f.count() == 70);
        s.union_with(&f);
        assert!(s.is_full());
        assert!(PartitionSet::new(0).is_full());
        assert_eq!(PartitionSet::new(u32::MAX).len(), MAX_PARTITIONS);
        let mut short = PartitionSet::new(3);
        short.union_with(&PartitionSet::full(100));
        assert_eq!(short.count(), 3);
    }

    #[test]
    fn serde_rejects_invalid() {
        let raw =
            |len: u32, bits: Vec<u8>| postcard::to_stdvec(&RawPartitionSet { len, bits }).unwrap();
        let de = |b: &[u8]| postcard::from_bytes::<PartitionSet>(b);
        assert!(de(&raw(9, vec![0xff, 0x01])).is_ok());
        assert!(de(&raw(9, vec![0xff, 0x02])).is_err(), "padding bit set");
        assert!(de(&raw(9, vec![0xff])).is_err(), "too few bytes");
        assert!(de(&raw(9, vec![0xff, 0, 0])).is_err(), "too many bytes");
        assert!(
            de(&raw(
                MAX_PARTITIONS + 1,
                vec![0; (MAX_PARTITIONS as usize + 8) / 8]
            ))
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreeset(len in 0u32..300, ops in proptest::collection::vec((any::<bool>(), 0u32..320), 0..200)) {
            let mut s = PartitionSet::new(len);
            let mut model = BTreeSet::new();
            for (ins, i) in ops {
                if ins {
                    prop_assert_eq!(s.insert(i), i < len && model.insert(i));
                } else {
                    prop_assert_eq!(s.remove(i), model.remove(&i));
                }
            }
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(s.count() as usize, model.len());
            prop_assert_eq!(s.is_full(), model.len() == len as usize);
            prop_assert_eq!(s.iter_missing().count() as u32 + s.count(), len);
            let bytes = postcard::to_stdvec(&s).unwrap();
            prop_assert!(bytes.len() <= 3 + 2 + (len as usize).div_ceil(8));
            prop_assert_eq!(postcard::from_bytes::<PartitionSet>(&bytes).unwrap(), s);
        }
    }
}
