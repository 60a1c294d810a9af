//! Repeated identical log lines collapsed: the first of a kind is written at once, then at
//! most one per interval, saying how many were left out ("… repeated 1,100 times in 11 s").
//! During a database outage every failed request would otherwise log its own line (about a
//! thousand in ten seconds per host), and a 401 or 429 flood one per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many distinct kinds are remembered at most: past it the oldest quiet ones are
/// forgotten (a flood of distinct clients must not grow it without bound).
const MAX_KINDS: usize = 4096;

/// Lines of each kind (a key chosen by the caller: the error's code and text, the code and
/// the client) written at most once per interval.
pub struct LogDedup {
    interval: Duration,
    kinds: Mutex<HashMap<String, Repeats>>,
}

struct Repeats {
    /// When the last line of this kind was written.
    written_at: Instant,
    /// Left out since then.
    left_out: u64,
}

/// What to write with a line that is let through: how many like it were left out since the
/// last one, and over how long. Displays as `repeated 1,100 times in 11 s` (empty when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    pub count: u64,
    pub over: Duration,
}

impl LeftOut {
    pub fn is_none(&self) -> bool {
        self.count == 0
    }

    /// `; repeated 1,100 times in 11 s` to end a collapsed line; empty for the first one.
    pub fn suffix(&self) -> String {
        if self.is_none() {
            String::new()
        } else {
            format!("; {self}")
        }
    }
}

impl fmt::Display for LeftOut {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(
            formatter,
            "repeated {} times in {} s",
            thousands(self.count),
            self.over.as_secs().max(1)
        )
    }
}

/// `1100` as `1,100`.
fn thousands(count: u64) -> String {
    let digits = count.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

impl LogDedup {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to write a line of this kind now: `Some` (with what was left out before it)
    /// for the first one and once per interval, `None` in between (the line is counted).
    pub fn admit(&self, kind: &str, now: Instant) -> Option<LeftOut> {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(repeats) = kinds.get_mut(kind) {
            let since = now.saturating_duration_since(repeats.written_at);
            if since < self.interval {
                repeats.left_out += 1;
                return None;
            }
            let left_out = LeftOut {
                count: repeats.left_out,
                over: since,
            };
            repeats.written_at = now;
            repeats.left_out = 0;
            return Some(left_out);
        }
        if kinds.len() >= MAX_KINDS {
            let interval = self.interval;
            kinds.retain(|_, repeats| now.saturating_duration_since(repeats.written_at) < interval);
            if kinds.len() >= MAX_KINDS {
                // Every kind is recent: a flood of distinct ones. Start over rather than grow.
                kinds.clear();
            }
        }
        kinds.insert(
            kind.to_owned(),
            Repeats {
                written_at: now,
                left_out: 0,
            },
        );
        Some(LeftOut {
            count: 0,
            over: Duration::ZERO,
        })
    }

    /// The kinds whose last line is over an interval old and that had lines left out since:
    /// forgotten, with what was left out, so the end of a flood is said too.
    pub fn take_quiet(&self, now: Instant) -> Vec<(String, LeftOut)> {
        let mut kinds = self
            .kinds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut quiet = Vec::new();
        kinds.retain(|kind, repeats| {
            let since = now.saturating_duration_since(repeats.written_at);
            if since < self.interval {
                return true;
            }
            if repeats.left_out > 0 {
                quiet.push((
                    kind.clone(),
                    LeftOut {
                        count: repeats.left_out,
                        over: since,
                    },
                ));
            }
            false
        });
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_per_interval_with_the_count_left_out() {
        let dedup = LogDedup::new(Duration::from_secs(5));
        let start = Instant::now();
        assert_eq!(dedup.admit("store.unavailable", start).unwrap().count, 0);
        for millis in 1..=1100 {
            let now = start + Duration::from_millis(millis * 4);
            assert_eq!(dedup.admit("store.unavailable", now), None, "at {millis}");
        }
        // Another kind is not held back by the first.
        assert!(dedup.admit("auth.unauthorized 10.0.0.1", start).is_some());
        let later = start + Duration::from_secs(11);
        let left_out = dedup.admit("store.unavailable", later).unwrap();
        assert_eq!(left_out.count, 1100);
        assert_eq!(left_out.to_string(), "repeated 1,100 times in 11 s");
        assert_eq!(dedup.admit("store.unavailable", later), None);
        // The end of the flood: the one left out is said once, then forgotten.
        let quiet = dedup.take_quiet(later + Duration::from_secs(6));
        assert_eq!(
            quiet,
            vec![(
                "store.unavailable".to_owned(),
                LeftOut {
                    count: 1,
                    over: Duration::from_secs(6)
                }
            )]
        );
        assert!(dedup.take_quiet(later + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
