//! At most `--max-vendor-concurrency` sends in progress through one connector, so a stalled
//! provider holds that many requests at most and the rest of the host (another connector,
//! codes being verified, the management API) keeps its share of `--max-in-flight`.
//!
//! Counted per connector (factory and connector id): two connectors of one factory may point
//! at different providers, and a config under test is its own. Nothing waits for a slot: a
//! send past the limit is refused at once (`503 connector.busy`). The table holds only the
//! connectors with a send in progress.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

pub struct VendorConcurrency {
    max_sends_per_connector: u32,
    sends_in_progress: Mutex<HashMap<String, u32>>,
}

/// A send's place in its connector's count; given back when dropped.
pub struct VendorSlot<'a> {
    limits: &'a VendorConcurrency,
    connector: String,
}

impl VendorConcurrency {
    pub fn new(max_sends_per_connector: u32) -> Self {
        Self {
            max_sends_per_connector: max_sends_per_connector.max(1),
            sends_in_progress: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_sends_per_connector(&self) -> u32 {
        self.max_sends_per_connector
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        // Every change is one statement: a panic elsewhere cannot leave it half-done.
        self.sends_in_progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for one send through this connector, or `None` when it is at its limit.
    pub fn try_acquire(&self, factory_id: &str, connector_id: &str) -> Option<VendorSlot<'_>> {
        let connector = format!("{factory_id}\u{0}{connector_id}");
        let mut table = self.table();
        let count = table.entry(connector.clone()).or_insert(0);
        if *count >= self.max_sends_per_connector {
            return None;
        }
        *count += 1;
        drop(table);
        Some(VendorSlot {
            limits: self,
            connector,
        })
    }

    /// Sends in progress through one connector.
    pub fn in_progress(&self, factory_id: &str, connector_id: &str) -> u32 {
        self.table()
            .get(&format!("{factory_id}\u{0}{connector_id}"))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for VendorSlot<'_> {
    fn drop(&mut self) {
        let mut table = self.limits.table();
        if let Some(count) = table.get_mut(&self.connector) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.connector);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connector_has_its_own_limit_and_the_table_empties() {
        let limits = VendorConcurrency::new(2);
        let first = limits.try_acquire("http-sms", "stalled").unwrap();
        let second = limits.try_acquire("http-sms", "stalled").unwrap();
        assert!(limits.try_acquire("http-sms", "stalled").is_none());
        assert!(limits.try_acquire("http-sms", "healthy").is_some());
        assert!(limits.try_acquire("other", "stalled").is_some());
        drop(first);
        let third = limits.try_acquire("http-sms", "stalled").unwrap();
        assert_eq!(limits.in_progress("http-sms", "stalled"), 2);
        drop((second, third));
        assert_eq!(limits.in_progress("http-sms", "stalled"), 0);
        assert!(limits.table().is_empty());
    }
}
