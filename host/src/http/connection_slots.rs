//! At most `--max-connections` client connections open, and which one gives way when full.
//!
//! Refusing every newcomer at the cap would let a few hostile clients lock out every real
//! client: slowloris ones (part of a head, then nothing), slow readers (requests pipelined for
//! large responses, never read), or clients that send one cheap request just under the idle
//! timeout. So a full table makes room by closing the connection that has been waiting on
//! its client longest: since accept or its last response for one that has not sent a whole
//! request head (slowloris, idle keep-alive), since the last byte the client took for one
//! whose response is blocked (slow reader). A connection whose request the host is working
//! on is never evicted (its client waits on the host, and the work is bounded by the request
//! deadlines); when every connection is such, the newcomer is closed at once. A real
//! newcomer completes its head within a round trip, so it has waited on its client less than
//! any attacker and is the last to go. No crate offers this for hyper, hence this table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How long the accept loop waits for an evicted connection to close (its task is aborted and
/// closes at its next poll: microseconds unless the runtime is starved).
const EVICTION_WAIT: Duration = Duration::from_millis(100);

/// [`ClientWait`] value while the host works on the connection's request.
const HOST_WORKING: u64 = 0;

pub struct ConnectionSlots {
    max_connections: usize,
    table: Mutex<SlotTable>,
    /// Woken whenever a slot is given back: an eviction and the shutdown wait on it.
    released: Notify,
    /// The origin of [`ClientWait`]'s clock.
    started: Instant,
}

#[derive(Default)]
struct SlotTable {
    open: usize,
    next_id: u64,
    /// Every registered connection: how to close it and since when it waits on its client.
    /// Ids grow, so among equal waits the oldest connection comes first.
    connections: BTreeMap<u64, (AbortHandle, Arc<ClientWait>)>,
}

/// Since when a connection has been waiting on its client (microseconds since
/// [`ConnectionSlots::started`], plus one), or [`HOST_WORKING`].
struct ClientWait(AtomicU64);

/// One open connection's place; given back when dropped (its task ended or was aborted).
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    id: u64,
    client_wait: Arc<ClientWait>,
}

impl ConnectionSlots {
    pub fn new(max_connections: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections: max_connections.max(1),
            table: Mutex::new(SlotTable::default()),
            released: Notify::new(),
            started: Instant::now(),
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

    /// Now on [`ClientWait`]'s clock: never [`HOST_WORKING`].
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A slot for a new connection: a free one, or one made by closing the connection that
    /// has waited on its client longest; `None` when the host is working on a request of
    /// every connection (close the newcomer at once).
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
                        client_wait: Arc::new(ClientWait(AtomicU64::new(self.now()))),
                    }));
                }
                if evicted {
                    return None;
                }
                let longest_waiting = table
                    .connections
                    .iter()
                    .filter_map(|(id, (_, wait))| {
                        let since = wait.0.load(Ordering::Relaxed);
                        (since != HOST_WORKING).then_some((since, *id))
                    })
                    .min()?;
                if let Some((task, _)) = table.connections.remove(&longest_waiting.1) {
                    task.abort();
                }
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
    /// Makes the connection evictable (whenever it waits on its client) through its task.
    pub fn evictable_through(&self, task: AbortHandle) {
        self.slots
            .table()
            .connections
            .insert(self.id, (task, Arc::clone(&self.client_wait)));
    }

    /// A request head is complete and the host works on it: not evictable until answered.
    pub fn request_started(&self) {
        self.client_wait.0.store(HOST_WORKING, Ordering::Relaxed);
    }

    /// The request is answered: from now on the connection waits on its client (to take the
    /// response, then to send the next request).
    pub fn request_answered(&self) {
        self.client_wait
            .0
            .store(self.slots.now(), Ordering::Relaxed);
    }

    /// The client took bytes of a response: it is reading, its wait starts over (unless the
    /// host already works on its next request).
    pub fn client_took_bytes(&self) {
        let now = self.slots.now();
        let _ = self
            .client_wait
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |since| {
                (since != HOST_WORKING).then_some(now)
            });
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        {
            let mut table = self.slots.table();
            table.open -= 1;
            table.connections.remove(&self.id);
            metrics::gauge!("http_connections_open").set(table.open as f64);
        }
        self.slots.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Weak;

    /// A task standing for a connection: holds its slot until it is aborted. The slot is
    /// reached through a weak reference, so an aborted task gives it back.
    async fn open_connection(
        slots: &Arc<ConnectionSlots>,
    ) -> (tokio::task::JoinHandle<()>, Weak<ConnectionSlot>) {
        let slot = slots.admit().await.expect("a slot");
        let registration = Arc::clone(&slot);
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        registration.evictable_through(task.abort_handle());
        (task, Arc::downgrade(&registration))
    }

    fn on(slot: &Weak<ConnectionSlot>, change: impl FnOnce(&ConnectionSlot)) {
        change(&slot.upgrade().expect("an open connection"));
    }

    /// Lets the clock move on, so waits that start one after the other differ.
    async fn tick() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_connection_waiting_on_its_client_longest_then_refuses() {
        let slots = ConnectionSlots::new(3);
        // A connection that never completes a head (slowloris), one the host works on, and
        // one answered and idle (or blocked writing its response).
        let (slowloris, slowloris_slot) = open_connection(&slots).await;
        tick().await;
        let (working, working_slot) = open_connection(&slots).await;
        on(&working_slot, ConnectionSlot::request_started);
        let (idle, idle_slot) = open_connection(&slots).await;
        on(&idle_slot, ConnectionSlot::request_started);
        tick().await;
        on(&idle_slot, ConnectionSlot::request_answered);
        tick().await;
        assert_eq!(slots.open(), 3);

        let (newcomer, _) = open_connection(&slots).await;
        assert!(
            slowloris.is_finished(),
            "the connection waiting on its client since accept gave way"
        );
        assert!(!idle.is_finished());
        tick().await;

        // Bytes taken by the client start its wait over (the newcomer has not sent a whole
        // head since); the host's work is never evicted.
        on(&idle_slot, ConnectionSlot::client_took_bytes);
        on(&working_slot, ConnectionSlot::client_took_bytes);
        let (second, second_slot) = open_connection(&slots).await;
        assert!(
            newcomer.is_finished(),
            "the newcomer still without a head gave way"
        );
        assert!(!idle.is_finished() && !working.is_finished());
        on(&second_slot, ConnectionSlot::request_started);
        let (third, third_slot) = open_connection(&slots).await;
        assert!(idle.is_finished(), "the idle connection gave way");
        on(&third_slot, ConnectionSlot::request_started);
        assert!(slowloris_slot.upgrade().is_none() && idle_slot.upgrade().is_none());
        assert_eq!(slots.open(), 3);
        assert!(
            slots.admit().await.is_none(),
            "the host works on a request of every connection: the newcomer is refused"
        );
        assert!(!working.is_finished() && !second.is_finished() && !third.is_finished());

        // Once answered, a connection waits on its client again and is evictable.
        on(&working_slot, ConnectionSlot::request_answered);
        let (fourth, _) = open_connection(&slots).await;
        assert!(working.is_finished());

        for task in [second, third, fourth] {
            task.abort();
        }
        assert!(slots.all_closed_within(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_connection_at_work_before_it_was_registered_stays_unevictable() {
        let slots = ConnectionSlots::new(1);
        let slot = slots.admit().await.unwrap();
        let registration = Arc::clone(&slot);
        let task = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        registration.request_started();
        registration.evictable_through(task.abort_handle());
        drop(registration);
        assert!(slots.admit().await.is_none());
        task.abort();
        assert!(slots.all_closed_within(Duration::from_secs(5)).await);
    }
}
