//! The flow table's index: open addressing with linear probing over one
//! array of 8-byte buckets, each holding a 32-bit hash tag and a 32-bit slot
//! number. A probe reads one bucket line and, on a tag match, the entry: one
//! dependent cache miss fewer than a control-byte table with a separate
//! data array. Sized once (at most half full), never grows; removal shifts
//! later buckets back (no tombstones), so probe lengths stay short under
//! churn.

const EMPTY: u64 = u32::MAX as u64;

/// Fixed-capacity slot index (see the module docs).
pub(crate) struct FlowIndex {
    buckets: Vec<u64>,
    mask: usize,
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl FlowIndex {
    /// An index for up to `max_entries` slots, at most half full.
    pub(crate) fn with_capacity(max_entries: usize) -> FlowIndex {
        let buckets = (max_entries.saturating_mul(2)).max(16).next_power_of_two();
        FlowIndex {
            buckets: vec![EMPTY; buckets],
            mask: buckets - 1,
        }
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// The slot whose entry `eq` accepts among those stored under `hash`.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut i = self.home(tag);
        loop {
            let bucket = self.buckets[i];
            if bucket == EMPTY {
                return None;
            }
            if (bucket >> 32) as u32 == tag && eq(bucket as u32) {
                return Some(bucket as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first bucket probed for `hash` (read to pull its line into the
    /// cache ahead of a batch of lookups).
    #[inline]
    pub(crate) fn home_bucket(&self, hash: u64) -> u64 {
        self.buckets[self.home(tag_of(hash))]
    }

    /// Adds `slot` under `hash` (the caller knows it is absent).
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        let tag = tag_of(hash);
        let mut i = self.home(tag);
        while self.buckets[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = (tag as u64) << 32 | slot as u64;
    }

    /// Removes `slot`, stored under `hash`; returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let tag = tag_of(hash);
        let mut hole = self.home(tag);
        loop {
            let bucket = self.buckets[hole];
            if bucket == EMPTY {
                return false;
            }
            if bucket as u32 == slot {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        // Backward-shift deletion: pull later members of the probe run into
        // the hole when the hole lies on their probe path.
        let mut next = (hole + 1) & self.mask;
        loop {
            let bucket = self.buckets[next];
            if bucket == EMPTY {
                break;
            }
            let home = self.home((bucket >> 32) as u32);
            let distance_to_next = next.wrapping_sub(home) & self.mask;
            let distance_to_hole = hole.wrapping_sub(home) & self.mask;
            if distance_to_hole <= distance_to_next {
                self.buckets[hole] = bucket;
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.buckets[hole] = EMPTY;
        true
    }

    pub(crate) fn allocation_size(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Against a HashMap, with hashes squeezed into few home buckets so
        /// probe runs collide, wrap around and get shifted on removal.
        #[test]
        fn agrees_with_hashmap(ops in prop::collection::vec((0u32..24, 0u64..40, any::<bool>()), 1..200)) {
            let mut index = FlowIndex::with_capacity(12);
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (slot, h, add) in ops {
                // Tags 0..40 over 32 buckets: many share a home; some wrap.
                let hash = h << 32;
                if add && !model.contains_key(&slot) && model.len() < 12 {
                    index.insert(hash, slot);
                    model.insert(slot, hash);
                } else if let Some(old) = model.remove(&slot) {
                    prop_assert!(index.remove(old, slot));
                }
                for (&s, &hs) in &model {
                    prop_assert_eq!(index.find(hs, |x| x == s), Some(s));
                }
                prop_assert_eq!(index.find(hash, |x| x == 99), None);
            }
        }
    }
}
