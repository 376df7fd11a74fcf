//! The simulator's event queue: a monotone bucket queue (a radix heap) keyed on time, which
//! pops in exactly the order of a binary heap over `(time, sequence)` but touches far less
//! memory per operation. Monotone: nothing is pushed earlier than the last popped time.

use std::collections::VecDeque;

/// The longest bucket [`EventQueue::peek_hint`] scans.
const HINT_SCAN: usize = 16;

/// A pending item: (time, sequence, payload).
type Item<T> = (u64, u64, T);

/// Pending items ordered by `(time, seq)`; `seq` must be unique (pushes in growing `seq`
/// order are the fast path).
pub(crate) struct EventQueue<T> {
    /// Time of the last popped item (every pending item is at or after it).
    last: u64,
    /// Items at exactly `last`, in `seq` order.
    now: VecDeque<Item<T>>,
    /// Bucket `i` (1..=64) holds items whose time first differs from `last` at bit `i - 1`
    /// (counting from the least significant), with the smallest time in it.
    buckets: Vec<(Vec<Item<T>>, u64)>,
    /// Bit `i - 1` is set when bucket `i` holds items: the first non-empty bucket without a
    /// scan of the 64.
    nonempty: u64,
    /// Scratch space of `pop` (kept for its capacity).
    here: Vec<Item<T>>,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            last: 0,
            now: VecDeque::new(),
            buckets: (0..65).map(|_| (Vec::new(), u64::MAX)).collect(),
            nonempty: 0,
            here: Vec::new(),
        }
    }

    fn bucket_of(&self, t: u64) -> usize {
        (64 - (t ^ self.last).leading_zeros()) as usize
    }

    /// The first non-empty bucket (1..=64), if any.
    fn first_bucket(&self) -> Option<usize> {
        (self.nonempty != 0).then(|| self.nonempty.trailing_zeros() as usize + 1)
    }

    /// Adds an item; `t` must not be before the last popped time (it is clamped to it).
    pub(crate) fn push(&mut self, t: u64, seq: u64, item: T) {
        let t = t.max(self.last);
        let b = self.bucket_of(t);
        if b == 0 {
            if self.now.back().is_none_or(|x| x.1 < seq) {
                self.now.push_back((t, seq, item));
            } else {
                let i = self.now.partition_point(|x| x.1 < seq);
                self.now.insert(i, (t, seq, item));
            }
        } else {
            let (v, min) = &mut self.buckets[b];
            v.push((t, seq, item));
            *min = (*min).min(t);
            self.nonempty |= 1 << (b - 1);
        }
    }

    /// The time of the next item, without removing it.
    pub(crate) fn peek_time(&self) -> Option<u64> {
        if !self.now.is_empty() {
            return Some(self.last);
        }
        self.first_bucket().map(|i| self.buckets[i].1)
    }

    /// Most likely the item [`EventQueue::pop`] returns next (unless an earlier one is pushed
    /// first): a hint for reading its data ahead, cheap to compute (`None` when finding it
    /// would take a long scan). Ties in time are not broken by sequence.
    pub(crate) fn peek_hint(&self) -> Option<&T> {
        if let Some(x) = self.now.front() {
            return Some(&x.2);
        }
        let (v, min) = &self.buckets[self.first_bucket()?];
        if v.len() > HINT_SCAN {
            return None;
        }
        v.iter().find(|x| x.0 == *min).map(|x| &x.2)
    }

    /// Removes the item with the smallest `(time, seq)`.
    pub(crate) fn pop(&mut self) -> Option<Item<T>> {
        if self.now.is_empty() {
            let i = self.first_bucket()?;
            // Every item of bucket `i` moves to a lower bucket (or to `now`) once `last` is
            // its smallest time, so the emptied vector goes back to bucket `i` with its
            // capacity: no allocation in the steady state.
            let mut items = std::mem::take(&mut self.buckets[i].0);
            self.last = std::mem::replace(&mut self.buckets[i].1, u64::MAX);
            self.nonempty &= !(1 << (i - 1));
            let mut here = std::mem::take(&mut self.here);
            for it in items.drain(..) {
                let b = self.bucket_of(it.0);
                if b == 0 {
                    here.push(it);
                } else {
                    let (v, m) = &mut self.buckets[b];
                    *m = (*m).min(it.0);
                    v.push(it);
                    self.nonempty |= 1 << (b - 1);
                }
            }
            self.buckets[i].0 = items;
            here.sort_unstable_by_key(|it| it.1);
            self.now.extend(here.drain(..));
            self.here = here;
        }
        self.now.pop_front()
    }

    /// Number of pending items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.now.len() + self.buckets.iter().map(|(v, _)| v.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Same pops as a binary heap over (time, seq), for random monotone workloads; the hint
    /// names an item at the time popped next.
    #[test]
    fn pops_like_a_binary_heap() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut q = EventQueue::new();
        let mut h = BinaryHeap::new();
        let (mut seq, mut now) = (0u64, 0u64);
        for _ in 0..20_000 {
            for _ in 0..(rnd() % 4) {
                let t = now
                    + match rnd() % 4 {
                        0 => 0,
                        1 => rnd() % 10,
                        2 => rnd() % 100_000,
                        _ => rnd() % 10_000_000_000,
                    };
                // Unique, and not growing with every push.
                seq += 1;
                let key = (rnd() % 64) << 40 | seq;
                q.push(t, key, (t, key));
                h.push(Reverse((t, key)));
            }
            assert_eq!(q.peek_time(), h.peek().map(|Reverse((t, _))| *t));
            // The hint, if any, is an item at the time popped next (no push in between).
            let hint = q.peek_hint().copied();
            let a = q.pop().map(|(t, s, _)| (t, s));
            if let Some((t, _)) = hint {
                assert_eq!(Some(t), a.map(|(t, _)| t));
            }
            let b = h.pop().map(|Reverse(p)| p);
            assert_eq!(a, b);
            if let Some((t, _)) = a {
                now = t;
            }
            assert_eq!(q.len(), h.len());
        }
    }
}
