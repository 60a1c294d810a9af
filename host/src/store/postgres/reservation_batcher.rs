//! Reservations from concurrent sends of one host, gathered into one `reserve_sends` round
//! trip (one transaction) instead of one each.
//!
//! No timer: a batch takes what is waiting when a batch may start (at most
//! [`MAX_BATCH`], a few batches in flight at once). An idle host therefore sends each
//! reservation alone and at once; a busy one sends what queued while its batches were out.
//! Each send still gets its own decision, in the order the sends asked; an error fails every
//! reservation of its batch (closed, as one reservation failing does).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use plugin_api::TemplateType;

use super::{SharedReservation, StoreError};

/// At most this many reservations in one round trip.
pub const MAX_BATCH: usize = 64;
/// At most this many batches out at once (the pool serves the other operations too).
pub const BATCHES_IN_FLIGHT: usize = 4;

/// One send's request for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub phone: String,
    pub template_type: TemplateType,
    pub with_cooldown: bool,
}

/// The limits a reservation is checked against (one set per host; a batch has one set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub max_sends: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

/// Where batches go: the database, or a test's stand-in.
pub trait ReservationExecutor: Send + Sync + 'static {
    /// One decision per request, in the requests' order; an error is the whole batch's.
    fn reserve_batch(
        &self,
        limits: SendLimits,
        requests: Vec<ReservationRequest>,
    ) -> impl Future<Output = Result<Vec<SharedReservation>, StoreError>> + Send;

    /// Gives back a slot nobody waits for any more (its send timed out meanwhile).
    fn release(&self, reservation_id: i64) -> impl Future<Output = ()> + Send;
}

type Answer = oneshot::Sender<Result<SharedReservation, StoreError>>;

struct Pending {
    request: ReservationRequest,
    limits: SendLimits,
    answer: Answer,
}

/// The handle sends reserve through; the batching task ends when every handle is gone.
#[derive(Clone)]
pub struct ReservationBatcher {
    pending: mpsc::UnboundedSender<Pending>,
}

impl ReservationBatcher {
    /// Starts the batching task on the current runtime.
    pub fn start(executor: impl ReservationExecutor) -> Self {
        let (pending, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(receiver, Arc::new(executor)));
        Self { pending }
    }

    /// Waits for this request's decision (the caller bounds the wait).
    pub async fn reserve(
        &self,
        request: ReservationRequest,
        limits: SendLimits,
    ) -> Result<SharedReservation, StoreError> {
        let (answer, decision) = oneshot::channel();
        self.pending
            .send(Pending {
                request,
                limits,
                answer,
            })
            .map_err(|_| StoreError::Unavailable("the reservation batcher stopped".to_owned()))?;
        decision.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the reservation batch ended without an answer".to_owned(),
            ))
        })
    }
}

async fn run_batches(
    mut receiver: mpsc::UnboundedReceiver<Pending>,
    executor: Arc<impl ReservationExecutor>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    // A request with other limits than the batch being gathered starts the next batch.
    let mut held_back: Option<Pending> = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match held_back.take() {
            Some(pending) => pending,
            None => match receiver.recv().await {
                Some(pending) => pending,
                None => return,
            },
        };
        let limits = first.limits;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) if next.limits == limits => batch.push(next),
                Ok(next) => {
                    held_back = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        let executor = executor.clone();
        tokio::spawn(async move {
            answer_batch(&*executor, limits, batch).await;
            drop(permit);
        });
    }
}

async fn answer_batch(
    executor: &impl ReservationExecutor,
    limits: SendLimits,
    batch: Vec<Pending>,
) {
    let (requests, answers): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.request, pending.answer))
        .unzip();
    let count = requests.len();
    let outcomes = match executor.reserve_batch(limits, requests).await {
        Ok(outcomes) if outcomes.len() == count => outcomes,
        Ok(outcomes) => {
            // Not one decision per request: no decision for anyone (slots taken stay taken,
            // the strict side).
            let error = StoreError::Failed(format!(
                "reserve_sends answered {} rows for {count} requests",
                outcomes.len()
            ));
            fail_all(answers, &error);
            return;
        }
        Err(error) => {
            fail_all(answers, &error);
            return;
        }
    };
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        if answer.send(Ok(outcome)).is_err() {
            if let SharedReservation::Reserved { id } = outcome {
                executor.release(id).await;
            }
        }
    }
}

fn fail_all(answers: Vec<Answer>, error: &StoreError) {
    for answer in answers {
        let _ = answer.send(Err(same_error(error)));
    }
}

/// The batch's error, for each of its reservations.
fn same_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        StoreError::Failed(message) => StoreError::Failed(message.clone()),
        StoreError::ConfigUnreadable(unreadable) => {
            StoreError::ConfigUnreadable(unreadable.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const LIMITS: SendLimits = SendLimits {
        max_sends: 2,
        window: Duration::from_secs(60),
        cooldown: Duration::ZERO,
    };

    /// Decides like the database would for a cap of `max_sends` per phone, in the given order,
    /// and records the batches and the releases.
    #[derive(Default)]
    struct Recording {
        batches: Mutex<Vec<(SendLimits, Vec<String>)>>,
        taken: Mutex<Vec<String>>,
        released: Mutex<Vec<i64>>,
        fail_with: Option<fn() -> StoreError>,
        drop_last_row: bool,
    }

    impl ReservationExecutor for Arc<Recording> {
        fn reserve_batch(
            &self,
            limits: SendLimits,
            requests: Vec<ReservationRequest>,
        ) -> impl Future<Output = Result<Vec<SharedReservation>, StoreError>> + Send {
            let phones: Vec<String> = requests.iter().map(|r| r.phone.clone()).collect();
            self.batches.lock().unwrap().push((limits, phones.clone()));
            let outcome = match self.fail_with {
                Some(error) => Err(error()),
                None => {
                    let mut taken = self.taken.lock().unwrap();
                    let mut outcomes: Vec<_> = phones
                        .into_iter()
                        .map(|phone| {
                            let sent = taken.iter().filter(|p| **p == phone).count();
                            if sent as u32 >= limits.max_sends {
                                SharedReservation::RateLimited {
                                    retry_after_ms: 1000,
                                }
                            } else {
                                taken.push(phone);
                                SharedReservation::Reserved {
                                    id: taken.len() as i64,
                                }
                            }
                        })
                        .collect();
                    if self.drop_last_row {
                        outcomes.pop();
                    }
                    Ok(outcomes)
                }
            };
            async move { outcome }
        }

        fn release(&self, reservation_id: i64) -> impl Future<Output = ()> + Send {
            self.released.lock().unwrap().push(reservation_id);
            async {}
        }
    }

    fn request(phone: &str) -> ReservationRequest {
        ReservationRequest {
            phone: phone.to_owned(),
            template_type: TemplateType::Generic,
            with_cooldown: false,
        }
    }

    /// Queues every request before the batching task runs (one thread), so they are waiting
    /// together as under load; returns each request's answer.
    async fn reserve_all(
        recording: &Arc<Recording>,
        requests: Vec<(&str, SendLimits)>,
    ) -> Vec<Result<SharedReservation, StoreError>> {
        let batcher = ReservationBatcher::start(recording.clone());
        let waiting: Vec<_> = requests
            .into_iter()
            .map(|(phone, limits)| {
                let batcher = batcher.clone();
                let request = request(phone);
                tokio::spawn(async move { batcher.reserve(request, limits).await })
            })
            .collect();
        let mut answers = Vec::new();
        for answer in waiting {
            answers.push(answer.await.unwrap());
        }
        answers
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_requests_go_in_one_batch_in_their_order_and_each_gets_its_own_answer() {
        let recording = Arc::new(Recording::default());
        let phones = ["+1201", "+1202", "+1201", "+1201", "+1203"];
        let answers = reserve_all(&recording, phones.iter().map(|p| (*p, LIMITS)).collect()).await;
        let batches = recording.batches.lock().unwrap().clone();
        assert_eq!(batches, vec![(LIMITS, phones.map(str::to_owned).to_vec())]);
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            answers,
            vec![
                SharedReservation::Reserved { id: 1 },
                SharedReservation::Reserved { id: 2 },
                SharedReservation::Reserved { id: 3 },
                SharedReservation::RateLimited {
                    retry_after_ms: 1000
                },
                SharedReservation::Reserved { id: 4 },
            ],
            "the third request for +1201 is the one over the cap of 2"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_holds_at_most_max_batch_and_one_set_of_limits() {
        let recording = Arc::new(Recording::default());
        let other = SendLimits {
            max_sends: 5,
            ..LIMITS
        };
        let mut requests: Vec<(&str, SendLimits)> = vec![("+1201", LIMITS); MAX_BATCH + 1];
        requests.push(("+1202", other));
        requests.push(("+1203", LIMITS));
        let answers = reserve_all(&recording, requests).await;
        assert!(answers.iter().all(Result::is_ok));
        let sizes: Vec<_> = recording
            .batches
            .lock()
            .unwrap()
            .iter()
            .map(|(limits, phones)| (limits.max_sends, phones.len()))
            .collect();
        assert_eq!(sizes, vec![(2, MAX_BATCH), (2, 1), (5, 1), (2, 1)]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_error_fails_every_reservation_of_the_batch_closed() {
        let recording = Arc::new(Recording {
            fail_with: Some(|| StoreError::Unavailable("connection lost".to_owned())),
            ..Recording::default()
        });
        let answers = reserve_all(&recording, vec![("+1201", LIMITS), ("+1202", LIMITS)]).await;
        assert_eq!(recording.batches.lock().unwrap().len(), 1);
        assert_eq!(answers.len(), 2);
        for answer in answers {
            assert!(
                matches!(&answer, Err(StoreError::Unavailable(message)) if message == "connection lost"),
                "{answer:?}"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_answered_with_a_row_missing_fails_every_reservation() {
        let recording = Arc::new(Recording {
            drop_last_row: true,
            ..Recording::default()
        });
        let answers = reserve_all(&recording, vec![("+1201", LIMITS), ("+1202", LIMITS)]).await;
        assert_eq!(answers.len(), 2);
        assert!(answers
            .iter()
            .all(|answer| matches!(answer, Err(StoreError::Failed(_)))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slot_nobody_waits_for_is_given_back() {
        let recording = Arc::new(Recording::default());
        let batcher = ReservationBatcher::start(recording.clone());
        // This send gives up (its deadline passed) before the batch is answered.
        let abandoned = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.reserve(request("+1201"), LIMITS).await }
        });
        abandoned.abort();
        let kept = batcher.reserve(request("+1202"), LIMITS).await.unwrap();
        assert_eq!(kept, SharedReservation::Reserved { id: 1 });
        assert!(recording.released.lock().unwrap().is_empty());
        // Abandoned after queuing: reserved in the batch, then released.
        let (answer, decision) = oneshot::channel();
        drop(decision);
        batcher
            .pending
            .send(Pending {
                request: request("+1203"),
                limits: LIMITS,
                answer,
            })
            .unwrap();
        let after = batcher.reserve(request("+1204"), LIMITS).await.unwrap();
        assert_eq!(after, SharedReservation::Reserved { id: 3 });
        assert_eq!(*recording.released.lock().unwrap(), vec![2]);
    }
}
