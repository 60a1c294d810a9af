//! The budget of test messages sent from the console (`POST /api/connectors/{id}/test`).
//!
//! A test goes to the operator's own phone, often several times while a connector is set up.
//! Counted against the per-recipient limit, ten tests blocked that phone for real sign-ins
//! too. So tests have a budget of their own, per host and in memory: it neither takes nor
//! is refused by the recipients' slots, and it is still capped (an admin key that leaked
//! cannot pump messages through it) and every test is still logged as a send.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests allowed per window, across every recipient.
pub const ADMIN_TESTS_PER_WINDOW: u32 = 20;
/// The sliding window the tests are counted over.
pub const ADMIN_TEST_WINDOW: Duration = Duration::from_secs(600);

/// A test's place in the budget; given back when the test fails, so only sent tests count.
#[derive(Debug, PartialEq, Eq)]
pub struct AdminTestSlot {
    id: u64,
}

#[derive(Default)]
struct BudgetState {
    next_id: u64,
    /// (slot id, when), oldest first.
    tests: VecDeque<(u64, Instant)>,
}

pub struct AdminTestBudget {
    max_tests: u32,
    window: Duration,
    state: Mutex<BudgetState>,
}

impl Default for AdminTestBudget {
    fn default() -> Self {
        Self::new(ADMIN_TESTS_PER_WINDOW, ADMIN_TEST_WINDOW)
    }
}

impl AdminTestBudget {
    pub fn new(max_tests: u32, window: Duration) -> Self {
        Self {
            max_tests,
            window,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// Takes a slot for one test, or says in how many seconds one frees.
    pub fn reserve(&self, now: Instant) -> Result<AdminTestSlot, u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while state
            .tests
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= self.window)
        {
            state.tests.pop_front();
        }
        if state.tests.len() >= self.max_tests as usize {
            let oldest = state.tests.front().map_or(now, |(_, at)| *at);
            let wait = (oldest + self.window).saturating_duration_since(now);
            return Err(wait.as_millis().div_ceil(1000).max(1) as u64);
        }
        state.next_id += 1;
        let id = state.next_id;
        state.tests.push_back((id, now));
        Ok(AdminTestSlot { id })
    }

    /// Gives back the slot of a test that was not sent.
    pub fn release(&self, slot: AdminTestSlot) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.tests.retain(|(id, _)| *id != slot.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_tests_in_the_window_and_frees_as_they_leave_it() {
        let budget = AdminTestBudget::new(2, Duration::from_secs(60));
        let start = Instant::now();
        budget.reserve(start).unwrap();
        budget.reserve(start + Duration::from_secs(10)).unwrap();
        assert_eq!(budget.reserve(start + Duration::from_secs(20)), Err(40));
        budget.reserve(start + Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn a_failed_test_gives_its_slot_back() {
        let budget = AdminTestBudget::new(1, Duration::from_secs(60));
        let now = Instant::now();
        let slot = budget.reserve(now).unwrap();
        budget.release(slot);
        assert!(budget.reserve(now).is_ok());
        assert!(budget.reserve(now).is_err());
    }
}
