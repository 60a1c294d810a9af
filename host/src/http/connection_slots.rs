//! At most `--max-connections` client connections open, and which one gives way when full.
//!
//! Refusing every newcomer at the cap would let 1,000 slowloris clients (connections that
//! send part of a head, then nothing) lock out every real client until the header read
//! timeout. So a full table first makes room by closing the oldest connection that has not
//! completed a request head yet (a real client completes its head within a round trip); only
//! when every connection has served a request is the newcomer closed at once. A connection
//! that has completed a request is never evicted: the header read timeout ends it when idle.
//! No crate offers this for hyper, hence this table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How long the accept loop waits for an evicted connection to close (its task is aborted and
/// closes at its next poll: microseconds unless the runtime is starved).
const EVICTION_WAIT: Duration = Duration::from_millis(100);

pub struct ConnectionSlots {
    max_connections: usize,
    table: Mutex<SlotTable>,
    /// Woken whenever a slot is given back: an eviction and the shutdown wait on it.
    released: Notify,
}

#[derive(Default)]
struct SlotTable {
    open: usize,
    next_id: u64,
    /// Connections that have not completed a request head yet, oldest first (ids grow).
    awaiting_first_request: BTreeMap<u64, AbortHandle>,
}

/// One open connection's place; given back when dropped (its task ended or was aborted).
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    id: u64,
    served: AtomicBool,
}

impl ConnectionSlots {
    pub fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections: max_connections.max(1),
            table: Mutex::new(SlotTable::default()),
            released: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, SlotTable> {
        // The table stays consistent through a panic elsewhere: every change is one statement.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn open(&self) -> usize {
        self.table().open
    }

    /// A slot for a new connection: a free one, or one made by closing the oldest connection
    /// that never completed a request head; `None` when every connection has (close the
    /// newcomer at once).
    pub async fn admit(self: &Arc<Self>) -> Option<Arc<ConnectionSlot>> {
        // One eviction per newcomer: if the evicted connection is slow to go, refuse rather
        // than evict another.
        let mut evicted = false;
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before the table is read, so a release in between is not missed.
            released.as_mut().enable();
            {
                let mut table = self.table();
                if table.open < self.max_connections {
                    table.open += 1;
                    table.next_id += 1;
                    metrics::gauge!("http_connections_open").set(table.open as f64);
                    return Some(Arc::new(ConnectionSlot {
                        slots: Arc::clone(self),
                        id: table.next_id,
                        served: AtomicBool::new(false),
                    }));
                }
                if evicted {
                    return None;
                }
                let (_, oldest) = table.awaiting_first_request.pop_first()?;
                oldest.abort();
                evicted = true;
                metrics::counter!("http_connections_evicted_total").increment(1);
            }
            if tokio::time::timeout(EVICTION_WAIT, released).await.is_err() {
                return None;
            }
        }
    }

    /// Waits until every connection is closed, or `limit` passes; whether they all closed.
    pub async fn all_closed_within(&self, limit: Duration) -> bool {
        let all_closed = async {
            loop {
                let released = self.released.notified();
                let mut released = std::pin::pin!(released);
                released.as_mut().enable();
                if self.open() == 0 {
                    return;
                }
                released.await;
            }
        };
        tokio::time::timeout(limit, all_closed).await.is_ok()
    }
}

impl ConnectionSlot {
    /// Makes the connection evictable until its first request head is complete.
    pub fn evictable_through(&self, task: AbortHandle) {
        let mut table = self.slots.table();
        // Read under the lock: `served` is only set under it too.
        if !self.served.load(Ordering::Relaxed) {
            table.awaiting_first_request.insert(self.id, task);
        }
    }

    /// A request head is complete: this connection is a client's, never evicted.
    pub fn mark_served(&self) {
        if self.served.load(Ordering::Relaxed) {
            return;
        }
        let mut table = self.slots.table();
        self.served.store(true, Ordering::Relaxed);
        table.awaiting_first_request.remove(&self.id);
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        {
            let mut table = self.slots.table();
            table.open -= 1;
            table.awaiting_first_request.remove(&self.id);
            metrics::gauge!("http_connections_open").set(table.open as f64);
        }
        self.slots.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task standing for a connection: holds its slot until it is aborted.
    async fn open_connection(
        slots: &Arc<ConnectionSlots>,
        served: bool,
    ) -> tokio::task::JoinHandle<()> {
        let slot = slots.admit().await.expect("a slot");
        if served {
            slot.mark_served();
        }
        let registration = Arc::clone(&slot);
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        registration.evictable_through(task.abort_handle());
        task
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_oldest_connection_without_a_request_then_refuses() {
        let slots = ConnectionSlots::new(3);
        let oldest = open_connection(&slots, false).await;
        let client = open_connection(&slots, true).await;
        let third = open_connection(&slots, false).await;
        assert_eq!(slots.open(), 3);

        let fourth = open_connection(&slots, true).await;
        assert!(
            oldest.is_finished(),
            "the oldest connection without a request gave way"
        );
        assert!(!third.is_finished());
        let fifth = open_connection(&slots, true).await;
        assert!(third.is_finished());
        assert_eq!(slots.open(), 3);
        assert!(
            slots.admit().await.is_none(),
            "every connection has served a request: the newcomer is refused"
        );
        assert!(
            !client.is_finished(),
            "a client's connection is never evicted"
        );

        for task in [client, fourth, fifth] {
            task.abort();
        }
        assert!(slots.all_closed_within(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_connection_served_before_it_was_registered_stays_unevictable() {
        let slots = ConnectionSlots::new(1);
        let slot = slots.admit().await.unwrap();
        let registration = Arc::clone(&slot);
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        registration.mark_served();
        registration.evictable_through(task.abort_handle());
        drop(registration);
        assert!(slots.admit().await.is_none());
        task.abort();
        assert!(slots.all_closed_within(Duration::from_secs(5)).await);
    }
}
