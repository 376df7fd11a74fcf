//! A small ordered map for the planner's per-peer state: keys and values in two sorted
//! vectors. At a few dozen peers a lookup is a binary search over a few cache lines of keys,
//! where a `BTreeMap` walks nodes that also hold the (large) values.

use crate::prefetch_all;

/// An ordered map over two sorted vectors (iteration in key order, like `BTreeMap`).
#[derive(Debug, Clone)]
pub(crate) struct SortedMap<K, V> {
    keys: Vec<K>,
    vals: Vec<V>,
}

impl<K: Ord + Copy, V> SortedMap<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            keys: Vec::new(),
            vals: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.search(k).ok().map(|i| &self.vals[i])
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.search(k).ok().map(|i| &mut self.vals[i])
    }

    /// The position of `k` among the keys (in key order), if present.
    pub(crate) fn index_of(&self, k: &K) -> Option<usize> {
        self.search(k).ok()
    }

    /// A binary search that first asks for every cache line of the keys at once: the probes
    /// depend on each other, and when the keys are not cached (a planner among thousands, in
    /// the simulator) each would otherwise wait for its own line in turn.
    fn search(&self, k: &K) -> Result<usize, usize> {
        if self.keys.len() * std::mem::size_of::<K>() > 64 {
            prefetch_all(&self.keys);
        }
        self.keys.binary_search(k)
    }

    /// Asks for every cache line of the keys and values (a hint: reads nothing).
    pub(crate) fn prefetch(&self) {
        prefetch_all(&self.keys);
        prefetch_all(&self.vals);
    }

    /// Inserts or replaces; returns the old value.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.keys.binary_search(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.vals[i], v)),
            Err(i) => {
                self.keys.insert(i, k);
                self.vals.insert(i, v);
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.keys.binary_search(k).ok()?;
        self.keys.remove(i);
        Some(self.vals.remove(i))
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.keys.binary_search(k).is_ok()
    }

    /// Keeps the entries for which `keep` returns true (in key order).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut i = 0;
        while i < self.keys.len() {
            if keep(&self.keys[i], &mut self.vals[i]) {
                i += 1;
            } else {
                self.keys.remove(i);
                self.vals.remove(i);
            }
        }
    }

    /// The keys, ascending.
    pub(crate) fn keys(&self) -> &[K] {
        &self.keys
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.keys.iter().zip(self.vals.iter())
    }

    pub(crate) fn values(&self) -> std::slice::Iter<'_, V> {
        self.vals.iter()
    }

    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, V> {
        self.vals.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut m = SortedMap::new();
        assert!(m.is_empty());
        assert_eq!(m.insert(5, "e"), None);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(3, "c"), None);
        assert_eq!(m.insert(3, "C"), Some("c"));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&3), Some(&"C"));
        assert_eq!(m.get(&4), None);
        *m.get_mut(&1).unwrap() = "A";
        let order: Vec<(i32, &str)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(order, vec![(1, "A"), (3, "C"), (5, "e")]);
        assert_eq!(m.remove(&3), Some("C"));
        assert_eq!(m.remove(&3), None);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec!["A", "e"]);
        assert!(m.contains_key(&5));
        m.retain(|k, _| *k != 5);
        assert!(!m.contains_key(&5));
        assert_eq!(m.len(), 1);
    }
}
