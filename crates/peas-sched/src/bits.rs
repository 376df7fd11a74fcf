//! A small fixed-size bit set over partition indices.

/// A fixed-size set of partition indices `0..len`, stored as 64-bit words.
///
/// Invariant: bits at indices `>= len` are always zero, so word-wise operations never report an
/// index outside `0..len`.
///
/// Laid out with the length, the count and the first words first, so that a planner scanning
/// its peers' sets for their counts touches one cache line per set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct PartitionBits {
    len: u32,
    /// Number of indices in the set (kept up to date by every mutation).
    ones: u32,
    words: Words,
}

/// Sets of up to this many words (1024 indices) keep them inline: a lookup then needs no
/// second memory access after reaching the set (a planner holds one set per peer, and
/// thousands of planners in the simulator miss the caches on every access).
const INLINE_WORDS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
enum Words {
    Inline([u64; INLINE_WORDS]),
    Heap(Vec<u64>),
}

impl Default for Words {
    fn default() -> Self {
        Words::Inline([0; INLINE_WORDS])
    }
}

impl Words {
    fn zeros(n: usize) -> Self {
        if n <= INLINE_WORDS {
            Words::Inline([0; INLINE_WORDS])
        } else {
            Words::Heap(vec![0; n])
        }
    }

    /// All words, the unused inline ones (always zero) included.
    fn all(&self) -> &[u64] {
        match self {
            Words::Inline(a) => a,
            Words::Heap(v) => v,
        }
    }

    fn all_mut(&mut self) -> &mut [u64] {
        match self {
            Words::Inline(a) => a,
            Words::Heap(v) => v,
        }
    }
}

impl PartitionBits {
    /// An empty set able to hold indices `0..len`.
    pub fn new(len: u32) -> Self {
        Self {
            words: Words::zeros((len as usize).div_ceil(64)),
            len,
            ones: 0,
        }
    }

    /// The full set `0..len`.
    pub fn full(len: u32) -> Self {
        let mut s = Self::new(len);
        for i in 0..len {
            s.insert(i);
        }
        s
    }

    /// How many indices this set can hold.
    pub fn capacity(&self) -> u32 {
        self.len
    }

    /// Whether `i` is in the set (false for indices out of range).
    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.words.all()[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }

    /// Adds `i`; returns true if it was not there. Indices out of range are ignored (false).
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words.all_mut()[(i / 64) as usize];
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        *w |= bit;
        if !was {
            self.ones += 1;
        }
        !was
    }

    /// Removes `i`; returns true if it was there.
    pub fn remove(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words.all_mut()[(i / 64) as usize];
        let bit = 1u64 << (i % 64);
        let was = *w & bit != 0;
        *w &= !bit;
        if was {
            self.ones -= 1;
        }
        was
    }

    /// Removes every index.
    pub fn clear(&mut self) {
        self.words.all_mut().iter_mut().for_each(|w| *w = 0);
        self.ones = 0;
    }

    /// Number of indices in the set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ones == 0
    }

    /// The indices in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words().iter().enumerate().flat_map(|(wi, &w)| {
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

    /// The raw words (bit `i % 64` of word `i / 64` is index `i`).
    pub(crate) fn words(&self) -> &[u64] {
        &self.words.all()[..(self.len as usize).div_ceil(64)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_iter() {
        let mut b = PartitionBits::new(130);
        assert!(b.insert(0));
        assert!(b.insert(129));
        assert!(!b.insert(129));
        assert!(!b.insert(130));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 129]);
        assert_eq!(b.count(), 2);
        assert!(b.remove(0));
        assert!(!b.contains(0));
        assert!(b.contains(129));
        assert_eq!(PartitionBits::full(70).count(), 70);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.count(), 0);
    }
}
