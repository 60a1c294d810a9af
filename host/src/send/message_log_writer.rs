//! The send path's message-log writes, off the send path: a send queues its message and its
//! outcome and goes on; one task writes what is queued, many sends in one transaction
//! (`MessageLog::record_writes`). Two store jobs per send cost about as much CPU as the send
//! itself on a fast connector; one job per batch costs a fraction of it.
//!
//! Order is kept: writes reach the store in the order they were queued, so a message is
//! written before its outcome. A reader that must see every write queued so far (a delivery
//! report, `GET /api/messages/{id}` right after a send) calls [`MessageLogWriter::flush`]
//! first. What is still queued when the process dies is lost; a drain flushes it.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::message_log::{MessageLog, MessageWrite};

/// Writes waiting for the task. Bounded: past it a send waits for room (memory stays in
/// proportion to this, and a store that cannot keep up slows sends instead of losing writes).
const QUEUED_WRITES_CAPACITY: usize = 8192;

/// At most this many writes share one transaction.
const MAX_WRITES_PER_BATCH: usize = 512;

enum Queued {
    Write(MessageWrite),
    /// Answered once everything queued before it is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// The queue's sending side. The task ends when the last handle is dropped, after writing
/// what is queued.
#[derive(Clone)]
pub struct MessageLogWriter {
    queue: mpsc::Sender<Queued>,
}

impl MessageLogWriter {
    /// Starts the writing task on the current tokio runtime.
    pub fn spawn(log: Arc<dyn MessageLog>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUED_WRITES_CAPACITY);
        tokio::spawn(write_until_closed(log, receiver));
        Self { queue }
    }

    /// Queues a write; waits only when the queue is full.
    pub async fn queue(&self, write: MessageWrite) {
        if self.queue.send(Queued::Write(write)).await.is_err() {
            tracing::warn!("the message log's writer has stopped; a write is lost");
        }
    }

    /// Returns once every write queued before this call is in the store (or failed, which
    /// the task logs).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            // An error: the task stopped, and nothing more will be written.
            let _ = written.await;
        }
    }
}

async fn write_until_closed(log: Arc<dyn MessageLog>, mut receiver: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_WRITES_PER_BATCH);
    while receiver.recv_many(&mut queued, MAX_WRITES_PER_BATCH).await > 0 {
        let mut writes = Vec::with_capacity(queued.len());
        let mut flushes = Vec::new();
        for item in queued.drain(..) {
            match item {
                Queued::Write(write) => writes.push(write),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        if !writes.is_empty() {
            let count = writes.len();
            if let Err(error) = log.record_writes(writes).await {
                // The sends went out; their log entries are what is lost, and a report for one
                // of them is then counted as unmatched.
                tracing::warn!(%error, writes = count, "the message log did not record a batch of sends");
                metrics::counter!("sms_message_log_writes_lost_total").increment(count as u64);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use plugin_api::DeliveryStatus;

    use super::*;
    use crate::store::message_log::test_writes::{event, message};
    use crate::store::message_log::{EventOutcome, MessageEvent, MessageFilter, MessageRecord};
    use crate::store::StoreError;

    /// Records each batch it is given.
    #[derive(Default)]
    struct BatchRecorder {
        batches: Mutex<Vec<Vec<MessageWrite>>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl MessageLog for BatchRecorder {
        async fn record_event(&self, _: &str, _: MessageEvent) -> Result<EventOutcome, StoreError> {
            unreachable!("the writer writes in batches")
        }
        async fn message(
            &self,
            _: &str,
        ) -> Result<Option<(MessageRecord, Vec<MessageEvent>)>, StoreError> {
            Ok(None)
        }
        async fn messages(&self, _: MessageFilter) -> Result<Vec<MessageRecord>, StoreError> {
            Ok(Vec::new())
        }
        async fn purge_messages(&self, _: i64) -> Result<usize, StoreError> {
            Ok(0)
        }
        async fn delivery_summary(
            &self,
            _: i64,
        ) -> Result<Vec<crate::store::message_log::ConnectorDeliverySummary>, StoreError> {
            Ok(Vec::new())
        }
        async fn record_writes(&self, writes: Vec<MessageWrite>) -> Result<(), StoreError> {
            self.batches
                .lock()
                .map_err(|_| StoreError::Failed("poisoned".into()))?
                .push(writes);
            if self.fail {
                return Err(StoreError::Failed("the disk is full".into()));
            }
            Ok(())
        }
    }

    fn outcome(id: &str) -> MessageWrite {
        event(id, DeliveryStatus::Queued)
    }

    fn written(recorder: &BatchRecorder) -> Vec<Vec<MessageWrite>> {
        recorder
            .batches
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn queued_writes_are_written_together_in_order_before_a_flush_returns() {
        let recorder = Arc::new(BatchRecorder::default());
        let writer = MessageLogWriter::spawn(recorder.clone());
        // On a current-thread runtime the task runs only when this one waits: all four are
        // queued before it looks.
        for id in ["a", "b"] {
            writer.queue(message(id)).await;
            writer.queue(outcome(id)).await;
        }
        writer.flush().await;
        assert_eq!(
            written(&recorder),
            vec![vec![message("a"), outcome("a"), message("b"), outcome("b")]]
        );
        writer.queue(message("c")).await;
        writer.flush().await;
        assert_eq!(
            written(&recorder).len(),
            2,
            "a later write is a later batch"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_batch_is_logged_and_the_writer_goes_on() {
        let recorder = Arc::new(BatchRecorder {
            fail: true,
            ..BatchRecorder::default()
        });
        let writer = MessageLogWriter::spawn(recorder.clone());
        writer.queue(message("a")).await;
        writer.flush().await;
        writer.queue(message("b")).await;
        writer.flush().await;
        assert_eq!(
            written(&recorder),
            vec![vec![message("a")], vec![message("b")]]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_with_nothing_queued_returns() {
        let writer = MessageLogWriter::spawn(Arc::new(BatchRecorder::default()));
        writer.flush().await;
    }
}
