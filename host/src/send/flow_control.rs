//! Per-recipient flow control (SMS pumping, OWASP API4): at most N successful sends to a phone
//! per sliding window, and a cooldown between two codes of the same type to the same phone.
//!
//! One host ([`RecipientLimiter`]): kept in memory. The check sits on every send, and a store
//! round trip (an fsync with SQLite's `synchronous=FULL`) per send would cap the host at the
//! disk's commit rate. The cost: the counts start from zero when the host restarts. It
//! remembers at most [`MAX_TRACKED_RECIPIENTS`] numbers, the one first sent to forgotten at the
//! cap: a flood to distinct numbers (which the protection's layers mostly stop before this
//! check) cannot grow it without bound.
//!
//! Several hosts on PostgreSQL ([`SendLimiter::Shared`]): the same window and cooldown kept in
//! the database, one round trip per send, so N hosts do not multiply the cap by N. When the
//! database cannot be reached the send is refused (fail closed), never sent without a decision.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plugin_api::TemplateType;

use crate::protection::bounded::BoundedMap;

/// At most this many recipients in the window (about 330 MB at the cap, `bench -- protection`).
/// A legitimate deployment sends to far fewer in one window; past it, the numbers sent to first
/// start counting again.
pub const MAX_TRACKED_RECIPIENTS: usize = 1_000_000;

/// A slot taken for a send; give it back with [`RecipientLimiter::release`] when the send
/// fails, so only successful sends count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReservation {
    phone: String,
    id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// Too many sends to this recipient in the window.
    RateLimited { retry_after_secs: u64 },
    /// The last code of this type went out too recently.
    Cooldown { retry_after_secs: u64 },
}

struct SentMessage {
    id: u64,
    at: Instant,
    template_type: TemplateType,
}

struct LimiterState {
    next_id: u64,
    sends_by_phone: BoundedMap<String, VecDeque<SentMessage>>,
}

pub struct RecipientLimiter {
    max_sends_per_window: u32,
    window: Duration,
    cooldown: Duration,
    state: Mutex<LimiterState>,
}

fn seconds_until(now: Instant, moment: Instant) -> u64 {
    moment
        .saturating_duration_since(now)
        .as_millis()
        .div_ceil(1000)
        .max(1) as u64
}

impl RecipientLimiter {
    pub fn new(max_sends_per_window: u32, window: Duration, cooldown: Duration) -> Self {
        Self::with_max_recipients(
            max_sends_per_window,
            window,
            cooldown,
            MAX_TRACKED_RECIPIENTS,
        )
    }

    /// [`RecipientLimiter::new`] remembering at most `max_recipients` numbers.
    pub fn with_max_recipients(
        max_sends_per_window: u32,
        window: Duration,
        cooldown: Duration,
        max_recipients: usize,
    ) -> Self {
        Self {
            max_sends_per_window,
            window,
            cooldown,
            state: Mutex::new(LimiterState {
                next_id: 0,
                sends_by_phone: BoundedMap::new(max_recipients),
            }),
        }
    }

    fn retention(&self) -> Duration {
        self.window.max(self.cooldown)
    }

    /// Checks the limits for one send and, when they allow it, takes a slot. `with_cooldown`
    /// applies the resend cooldown (verification codes).
    pub fn reserve(
        &self,
        phone: &str,
        template_type: TemplateType,
        with_cooldown: bool,
        now: Instant,
    ) -> Result<SendReservation, SendRefusal> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let retention = self.retention();
        let LimiterState {
            next_id,
            sends_by_phone,
        } = &mut *state;
        let sends = sends_by_phone.entry_or_insert_with(&phone.to_owned(), VecDeque::new);
        while sends
            .front()
            .is_some_and(|sent| now.saturating_duration_since(sent.at) >= retention)
        {
            sends.pop_front();
        }
        if with_cooldown && !self.cooldown.is_zero() {
            let last_of_type = sends
                .iter()
                .rev()
                .find(|sent| sent.template_type == template_type);
            if let Some(last) =
                last_of_type.filter(|last| now.saturating_duration_since(last.at) < self.cooldown)
            {
                return Err(SendRefusal::Cooldown {
                    retry_after_secs: seconds_until(now, last.at + self.cooldown),
                });
            }
        }
        // Oldest first, so the sends inside the window are a suffix: O(log n) to count.
        let first_in_window =
            sends.partition_point(|sent| now.saturating_duration_since(sent.at) >= self.window);
        let in_window = sends.len() - first_in_window;
        let max_sends = self.max_sends_per_window as usize;
        if in_window >= max_sends {
            // A slot frees when enough of the oldest sends leave the window.
            let freeing = &sends[sends.len() - max_sends];
            return Err(SendRefusal::RateLimited {
                retry_after_secs: seconds_until(now, freeing.at + self.window),
            });
        }
        *next_id += 1;
        sends.push_back(SentMessage {
            id: *next_id,
            at: now,
            template_type,
        });
        Ok(SendReservation {
            phone: phone.to_owned(),
            id: *next_id,
        })
    }

    /// Gives back the slot of a send that failed.
    pub fn release(&self, reservation: SendReservation) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sends) = state.sends_by_phone.get_mut(&reservation.phone) {
            sends.retain(|sent| sent.id != reservation.id);
        }
    }

    /// Forgets recipients with nothing left in the window; returns how many remain.
    pub fn purge(&self, now: Instant) -> usize {
        let retention = self.retention();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.sends_by_phone.retain(|_, sends| {
            sends.retain(|sent| now.saturating_duration_since(sent.at) < retention);
            !sends.is_empty()
        });
        state.sends_by_phone.len()
    }
}

/// The flow control a host applies: its own memory, or the store shared by every host.
pub enum SendLimiter {
    Local(RecipientLimiter),
    Shared {
        // Boxed: the pool handle is large, and a limiter is made once per host.
        store: Box<crate::store::postgres::PostgresStore>,
        max_sends_per_window: u32,
        window: Duration,
        cooldown: Duration,
    },
}

/// A slot taken by [`SendLimiter::reserve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendSlot {
    Local(SendReservation),
    Shared(i64),
    /// A console test: counted by its own budget (`admin_test_budget`), not by the
    /// recipients' limits; nothing to give back here.
    Unmetered,
}

/// Why a send may not go out now.
#[derive(Debug)]
pub enum LimitError {
    Refused(SendRefusal),
    /// No decision could be made: the send is refused.
    StoreUnavailable(crate::store::StoreError),
}

fn whole_seconds(milliseconds: i64) -> u64 {
    u64::try_from(milliseconds)
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1)
}

impl SendLimiter {
    pub async fn reserve(
        &self,
        phone: &str,
        template_type: TemplateType,
        with_cooldown: bool,
    ) -> Result<SendSlot, LimitError> {
        match self {
            SendLimiter::Local(limiter) => limiter
                .reserve(phone, template_type, with_cooldown, Instant::now())
                .map(SendSlot::Local)
                .map_err(LimitError::Refused),
            SendLimiter::Shared {
                store,
                max_sends_per_window,
                window,
                cooldown,
            } => {
                use crate::store::postgres::SharedReservation;
                let outcome = store
                    .reserve_send(
                        phone,
                        template_type,
                        with_cooldown,
                        *max_sends_per_window,
                        *window,
                        *cooldown,
                    )
                    .await
                    .map_err(LimitError::StoreUnavailable)?;
                match outcome {
                    SharedReservation::Reserved { id } => Ok(SendSlot::Shared(id)),
                    SharedReservation::Cooldown { retry_after_ms } => {
                        Err(LimitError::Refused(SendRefusal::Cooldown {
                            retry_after_secs: whole_seconds(retry_after_ms),
                        }))
                    }
                    SharedReservation::RateLimited { retry_after_ms } => {
                        Err(LimitError::Refused(SendRefusal::RateLimited {
                            retry_after_secs: whole_seconds(retry_after_ms),
                        }))
                    }
                }
            }
        }
    }

    /// Gives back the slot of a send that failed. A shared store that cannot be reached keeps
    /// the slot: the recipient's cap errs on the strict side.
    pub async fn release(&self, slot: SendSlot) {
        match (self, slot) {
            (SendLimiter::Local(limiter), SendSlot::Local(reservation)) => {
                limiter.release(reservation)
            }
            (SendLimiter::Shared { store, .. }, SendSlot::Shared(id)) => {
                if let Err(error) = store.release_send(id).await {
                    tracing::warn!(%error, "could not give a failed send's slot back");
                }
            }
            _ => {}
        }
    }

    /// Forgets what no longer counts; returns how many recipients (local) or rows (shared).
    pub async fn purge(&self) -> Result<u64, crate::store::StoreError> {
        match self {
            SendLimiter::Local(limiter) => Ok(limiter.purge(Instant::now()) as u64),
            SendLimiter::Shared {
                store,
                window,
                cooldown,
                ..
            } => store.purge_sends((*window).max(*cooldown)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = "+12015550123";

    #[test]
    fn the_window_slides_and_failed_sends_give_their_slot_back() {
        let limiter = RecipientLimiter::new(2, Duration::from_secs(10), Duration::ZERO);
        let start = Instant::now();
        let first = limiter
            .reserve(PHONE, TemplateType::SignIn, false, start)
            .unwrap();
        limiter
            .reserve(
                PHONE,
                TemplateType::SignIn,
                false,
                start + Duration::from_secs(1),
            )
            .unwrap();
        assert_eq!(
            limiter.reserve(
                PHONE,
                TemplateType::SignIn,
                false,
                start + Duration::from_secs(2)
            ),
            Err(SendRefusal::RateLimited {
                retry_after_secs: 8
            })
        );
        assert!(
            limiter
                .reserve("+12015550124", TemplateType::SignIn, false, start)
                .is_ok(),
            "other recipients are not affected"
        );
        limiter.release(first);
        limiter
            .reserve(
                PHONE,
                TemplateType::SignIn,
                false,
                start + Duration::from_secs(2),
            )
            .unwrap();
        assert!(
            limiter
                .reserve(
                    PHONE,
                    TemplateType::SignIn,
                    false,
                    start + Duration::from_millis(11_500)
                )
                .is_ok(),
            "the window slid"
        );
        assert_eq!(limiter.purge(start + Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_flood_to_distinct_numbers_keeps_at_most_the_cap() {
        let limiter =
            RecipientLimiter::with_max_recipients(1, Duration::from_secs(600), Duration::ZERO, 100);
        let start = Instant::now();
        for index in 0..1000 {
            let phone = format!("+1201555{index:04}");
            assert!(limiter
                .reserve(&phone, TemplateType::SignIn, false, start)
                .is_ok());
        }
        assert_eq!(limiter.purge(start), 100);
        // The newest are still limited; the first ones were forgotten.
        assert!(limiter
            .reserve("+12015550999", TemplateType::SignIn, false, start)
            .is_err());
        assert!(limiter
            .reserve("+12015550000", TemplateType::SignIn, false, start)
            .is_ok());
    }

    #[test]
    fn the_cooldown_is_per_type_and_only_when_asked() {
        let limiter = RecipientLimiter::new(10, Duration::from_secs(600), Duration::from_secs(60));
        let start = Instant::now();
        limiter
            .reserve(PHONE, TemplateType::SignIn, true, start)
            .unwrap();
        assert_eq!(
            limiter.reserve(
                PHONE,
                TemplateType::SignIn,
                true,
                start + Duration::from_secs(15)
            ),
            Err(SendRefusal::Cooldown {
                retry_after_secs: 45
            })
        );
        assert!(limiter
            .reserve(
                PHONE,
                TemplateType::Register,
                true,
                start + Duration::from_secs(15)
            )
            .is_ok());
        assert!(
            limiter
                .reserve(
                    PHONE,
                    TemplateType::SignIn,
                    false,
                    start + Duration::from_secs(15)
                )
                .is_ok(),
            "raw sends have no cooldown"
        );
        assert!(limiter
            .reserve(
                PHONE,
                TemplateType::SignIn,
                true,
                start + Duration::from_secs(76)
            )
            .is_ok());
    }
}
