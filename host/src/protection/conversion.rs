//! The `low_conversion` layer's measure: of the codes the host issued, how many were verified
//! per number prefix and per country over a sliding window. A code is decided when it is
//! verified or once it expired unverified; a code replaced by a newer one for the same phone
//! and type is not counted (the newer one decides), so a user who asks again is not held
//! against their prefix.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::bounded::{BoundedMap, WindowCount};

/// Codes awaiting their outcome, and subjects with statistics, at most this many each. At the
/// cap the oldest pending code is forgotten (never counted) and the oldest subject's
/// statistics are dropped; prefixes and countries come from numbering plans, so the cap is
/// reached only by traffic to over 100,000 prefixes within one window.
pub const MAX_PENDING_CODES: usize = 200_000;
pub const MAX_SUBJECTS: usize = 100_000;

/// Issued, verified and unverified (expired) codes of one prefix or country.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConversionStats {
    pub issued: WindowCount,
    pub verified: WindowCount,
    pub unverified: WindowCount,
}

/// The counts of one subject over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversionCounts {
    pub issued: u64,
    pub verified: u64,
    pub unverified: u64,
}

impl ConversionStats {
    pub fn counts(&mut self, now: i64, window_ms: i64) -> ConversionCounts {
        ConversionCounts {
            issued: self.issued.count(now, window_ms),
            verified: self.verified.count(now, window_ms),
            unverified: self.unverified.count(now, window_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCode {
    pub seq: u64,
    pub prefix: String,
    pub country: String,
}

/// (phone, usage type) of a pending code.
pub type CodeKey = (String, String);

pub struct Conversion {
    pending: BoundedMap<CodeKey, PendingCode>,
    /// (expires at, code, seq), in issue order, which is expiry order: one TTL for all codes.
    expiries: VecDeque<(i64, CodeKey, u64)>,
    next_seq: u64,
    pub by_prefix: BoundedMap<String, ConversionStats>,
    pub by_country: BoundedMap<String, ConversionStats>,
}

/// A decided code's subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub prefix: String,
    pub country: String,
    pub verified: bool,
}

impl Default for Conversion {
    fn default() -> Self {
        Self {
            pending: BoundedMap::new(MAX_PENDING_CODES),
            expiries: VecDeque::new(),
            next_seq: 0,
            by_prefix: BoundedMap::new(MAX_SUBJECTS),
            by_country: BoundedMap::new(MAX_SUBJECTS),
        }
    }
}

impl Conversion {
    pub fn issued(
        &mut self,
        code: CodeKey,
        prefix: &str,
        country: &str,
        expires_at: i64,
        now: i64,
        window_ms: i64,
    ) {
        for (map, subject) in [
            (&mut self.by_prefix, prefix),
            (&mut self.by_country, country),
        ] {
            map.entry_or_insert_with(&subject.to_owned(), Default::default)
                .issued
                .add(now, window_ms, 1);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        // Replacing a pending code: the old one's expiry item no longer matches, it is skipped.
        if let Some(pending) = self.pending.get_mut(&code) {
            *pending = PendingCode {
                seq,
                prefix: prefix.to_owned(),
                country: country.to_owned(),
            };
        } else {
            self.pending.entry_or_insert_with(&code, || PendingCode {
                seq,
                prefix: prefix.to_owned(),
                country: country.to_owned(),
            });
        }
        if self.expiries.len() >= MAX_PENDING_CODES {
            // Bounded like the pending codes: the oldest is forgotten, not counted.
            if let Some((_, key, seq)) = self.expiries.pop_front() {
                if self
                    .pending
                    .get(&key)
                    .is_some_and(|pending| pending.seq == seq)
                {
                    self.pending.remove(&key);
                }
            }
        }
        self.expiries.push_back((expires_at, code, seq));
    }

    /// A code was verified: counted for its prefix and country.
    pub fn verified(&mut self, code: &CodeKey, now: i64, window_ms: i64) -> Option<Decided> {
        let pending = self.pending.remove(code)?;
        self.count(&pending, true, now, window_ms);
        Some(Decided {
            prefix: pending.prefix,
            country: pending.country,
            verified: true,
        })
    }

    /// A code that was not sent: it is not counted as decided.
    pub fn discarded(&mut self, code: &CodeKey) {
        self.pending.remove(code);
    }

    /// Codes expired by `now` without being verified: counted as unverified.
    pub fn settle(&mut self, now: i64, window_ms: i64) -> Vec<Decided> {
        let mut decided = Vec::new();
        while self
            .expiries
            .front()
            .is_some_and(|(expires_at, _, _)| *expires_at <= now)
        {
            let Some((_, key, seq)) = self.expiries.pop_front() else {
                break;
            };
            if self
                .pending
                .get(&key)
                .is_none_or(|pending| pending.seq != seq)
            {
                continue;
            }
            if let Some(pending) = self.pending.remove(&key) {
                self.count(&pending, false, now, window_ms);
                decided.push(Decided {
                    prefix: pending.prefix,
                    country: pending.country,
                    verified: false,
                });
            }
        }
        decided
    }

    fn count(&mut self, pending: &PendingCode, verified: bool, now: i64, window_ms: i64) {
        for (map, subject) in [
            (&mut self.by_prefix, &pending.prefix),
            (&mut self.by_country, &pending.country),
        ] {
            let stats = map.entry_or_insert_with(subject, Default::default);
            let outcome = if verified {
                &mut stats.verified
            } else {
                &mut stats.unverified
            };
            outcome.add(now, window_ms, 1);
        }
    }

    /// Forgets subjects with nothing left in the window.
    pub fn purge(&mut self, now: i64, window_ms: i64) {
        for map in [&mut self.by_prefix, &mut self.by_country] {
            map.retain(|_, stats| {
                let counts = stats.counts(now, window_ms);
                counts.issued + counts.verified + counts.unverified > 0
            });
        }
    }

    pub fn pending_codes(&self) -> usize {
        self.pending.len()
    }

    /// What a snapshot keeps: pending codes (with their expiry) in expiry order.
    pub fn pending_for_snapshot(&self) -> Vec<(i64, CodeKey, PendingCode)> {
        self.expiries
            .iter()
            .filter_map(|(expires_at, key, seq)| {
                let pending = self
                    .pending
                    .get(key)
                    .filter(|pending| pending.seq == *seq)?;
                Some((*expires_at, key.clone(), pending.clone()))
            })
            .collect()
    }

    /// Restores pending codes from a snapshot.
    pub fn restore_pending(&mut self, pending: Vec<(i64, CodeKey, PendingCode)>) {
        for (expires_at, key, code) in pending {
            self.next_seq += 1;
            let seq = self.next_seq;
            self.pending.entry_or_insert_with(&key, || PendingCode {
                seq,
                ..code.clone()
            });
            if let Some(stored) = self.pending.get_mut(&key) {
                stored.seq = seq;
            }
            self.expiries.push_back((expires_at, key, seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 86_400_000;

    fn key(phone: &str) -> CodeKey {
        (phone.to_owned(), "SignIn".to_owned())
    }

    #[test]
    fn a_code_counts_as_unverified_only_once_it_expired() {
        let mut conversion = Conversion::default();
        conversion.issued(key("+12015550001"), "+1201555", "US", 600_000, 0, WINDOW);
        assert!(conversion.settle(599_999, WINDOW).is_empty());
        let decided = conversion.settle(600_000, WINDOW);
        assert_eq!(decided.len(), 1);
        assert!(!decided[0].verified);
        let counts = conversion
            .by_prefix
            .get_mut(&"+1201555".to_owned())
            .unwrap()
            .counts(600_000, WINDOW);
        assert_eq!(
            (counts.issued, counts.verified, counts.unverified),
            (1, 0, 1)
        );
    }

    #[test]
    fn a_verified_code_is_never_counted_unverified_and_a_replaced_one_not_at_all() {
        let mut conversion = Conversion::default();
        conversion.issued(key("+12015550001"), "+1201555", "US", 600_000, 0, WINDOW);
        conversion.issued(
            key("+12015550001"),
            "+1201555",
            "US",
            660_000,
            60_000,
            WINDOW,
        );
        assert!(conversion
            .verified(&key("+12015550001"), 70_000, WINDOW)
            .is_some());
        assert!(conversion
            .verified(&key("+12015550001"), 70_000, WINDOW)
            .is_none());
        assert!(conversion.settle(10_000_000, WINDOW).is_empty());
        let counts = conversion
            .by_country
            .get_mut(&"US".to_owned())
            .unwrap()
            .counts(100_000, WINDOW);
        assert_eq!(
            (counts.issued, counts.verified, counts.unverified),
            (2, 1, 0)
        );
        assert_eq!(conversion.pending_codes(), 0);
    }

    #[test]
    fn a_code_that_was_not_sent_decides_nothing() {
        let mut conversion = Conversion::default();
        conversion.issued(key("+12015550001"), "+1201555", "US", 600_000, 0, WINDOW);
        conversion.discarded(&key("+12015550001"));
        assert!(conversion.settle(700_000, WINDOW).is_empty());
        assert!(conversion
            .verified(&key("+12015550001"), 1, WINDOW)
            .is_none());
    }

    #[test]
    fn pending_codes_are_bounded() {
        let mut conversion = Conversion::default();
        for index in 0..(MAX_PENDING_CODES + 10) {
            conversion.issued(key(&format!("+1{index}")), "+1", "US", 600_000, 0, WINDOW);
        }
        assert!(conversion.pending_codes() <= MAX_PENDING_CODES);
        assert!(conversion.expiries.len() <= MAX_PENDING_CODES);
    }
}
