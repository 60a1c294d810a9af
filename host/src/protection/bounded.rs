//! Bounded, expiring state for the protection layers: every map keyed by something a client
//! chooses (an IP, a prefix, a phone) holds at most a fixed number of entries, and a count
//! over a window takes a fixed number of buckets whatever the rate.
//!
//! At the cap a [`BoundedMap`] evicts its oldest entry (the one inserted first). For a
//! velocity counter that means an attacker who rotates through more keys than the cap within
//! a window makes the oldest keys start counting again; the caps are far above what a window
//! of legitimate traffic holds, and the prefix and country layers (whose keys a number's
//! numbering plan bounds) still see every send.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// A map that holds at most `cap` entries, evicting the oldest inserted at the cap.
pub struct BoundedMap<K, V> {
    cap: usize,
    entries: HashMap<K, (u64, V)>,
    /// Insertion order: (key, the entry's generation). An item whose generation no longer
    /// matches (the key was removed, then inserted again) is skipped.
    order: VecDeque<(K, u64)>,
    next_generation: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(_, value)| value)
    }

    /// The entry for `key`, inserted with `make` when absent (evicting the oldest at the cap).
    pub fn entry_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(key) {
            while self.entries.len() >= self.cap {
                if !self.evict_oldest() {
                    break;
                }
            }
            self.next_generation += 1;
            self.order.push_back((key.clone(), self.next_generation));
            self.entries
                .insert(key.clone(), (self.next_generation, make()));
            self.compact_order();
        }
        &mut self
            .entries
            .get_mut(key)
            .expect("the entry was just inserted")
            .1
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.entries.remove(key).map(|(_, value)| value);
        self.compact_order();
        removed
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain(|key, (_, value)| keep(key, value));
        let entries = &self.entries;
        self.order.retain(|(key, generation)| {
            entries
                .get(key)
                .is_some_and(|(current, _)| current == generation)
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, (_, value))| (key, value))
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, generation)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|(current, _)| *current == generation)
            {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }

    /// Stale order items (removed keys) never outnumber the entries: the order stays O(cap).
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order.retain(|(key, generation)| {
                entries
                    .get(key)
                    .is_some_and(|(current, _)| current == generation)
            });
        }
    }
}

/// How many buckets a window is cut into: a count is exact to a tenth of its window (it may
/// count a send up to a tenth of a window longer, never shorter).
const BUCKETS_PER_WINDOW: i64 = 10;

/// Events over a sliding window, in at most `BUCKETS_PER_WINDOW + 1` buckets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowCount {
    /// (bucket start in ms, events), oldest first.
    buckets: VecDeque<(i64, u64)>,
}

impl WindowCount {
    fn bucket_width(window_ms: i64) -> i64 {
        (window_ms / BUCKETS_PER_WINDOW).max(1)
    }

    /// Drops the buckets wholly out of the window ending at `now`.
    fn expire(&mut self, now: i64, window_ms: i64) {
        let width = Self::bucket_width(window_ms);
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| start + width <= now - window_ms)
        {
            self.buckets.pop_front();
        }
    }

    /// Events in the window ending at `now`.
    pub fn count(&mut self, now: i64, window_ms: i64) -> u64 {
        self.expire(now, window_ms);
        self.buckets.iter().map(|(_, events)| events).sum()
    }

    pub fn add(&mut self, now: i64, window_ms: i64, events: u64) {
        self.expire(now, window_ms);
        let width = Self::bucket_width(window_ms);
        let start = now - now.rem_euclid(width);
        match self.buckets.back_mut() {
            // An event older than the last bucket (another host's, heard of late) counts in
            // the last one: later, never shorter.
            Some((last, count)) if *last >= start => *count += events,
            _ => self.buckets.push_back((start, events)),
        }
        // A clock that went back adds to the last bucket instead of growing the list.
        while self.buckets.len() > BUCKETS_PER_WINDOW as usize + 1 {
            if let Some((_, dropped)) = self.buckets.pop_front() {
                if let Some((_, first)) = self.buckets.front_mut() {
                    *first += dropped;
                }
            }
        }
    }

    /// Milliseconds until the count drops below `max` (at least 1 s), given it is at `max`.
    pub fn ms_until_below(&self, max: u64, now: i64, window_ms: i64) -> i64 {
        let width = Self::bucket_width(window_ms);
        let total: u64 = self.buckets.iter().map(|(_, events)| events).sum();
        let mut remaining = total;
        for (start, events) in &self.buckets {
            remaining -= events;
            if remaining < max {
                return (start + width + window_ms - now).max(1000);
            }
        }
        window_ms.max(1000)
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_never_holds_more_than_its_cap_and_evicts_the_oldest() {
        let mut map = BoundedMap::new(3);
        for key in 0..10 {
            *map.entry_or_insert_with(&key, || 0) += 1;
            assert!(map.len() <= 3);
        }
        assert_eq!(map.len(), 3);
        assert!(map.get(&6).is_none() && map.get(&7).is_some() && map.get(&9).is_some());
        map.remove(&8);
        map.entry_or_insert_with(&8, || 5);
        map.entry_or_insert_with(&10, || 0);
        // 7 was the oldest left; 8 was inserted again after 9.
        assert!(map.get(&7).is_none() && map.get(&9).is_some() && map.get(&8) == Some(&5));
        // Removals and insertions over and over keep the order list bounded.
        for round in 0..10_000 {
            map.remove(&(round % 3));
            map.entry_or_insert_with(&(round % 3), || 0);
        }
        assert!(map.order.len() <= 2 * map.len() + 16);
    }

    #[test]
    fn a_window_count_forgets_what_left_the_window() {
        let window = 10_000;
        let mut count = WindowCount::default();
        for at in 0..10 {
            count.add(at * 1000, window, 1);
        }
        assert_eq!(count.count(9_999, window), 10);
        assert_eq!(count.count(10_999, window), 10);
        assert_eq!(count.count(11_000, window), 9);
        assert_eq!(count.count(30_000, window), 0);
        assert!(count.is_empty());
        // Bounded whatever the rate.
        for at in 0..100_000 {
            count.add(at, window, 1);
        }
        assert!(count.buckets.len() <= BUCKETS_PER_WINDOW as usize + 1);
        // Conservative: the bucket the window starts inside counts whole.
        assert_eq!(count.count(99_999, window), 11_000);
    }
}
