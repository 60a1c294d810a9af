//! Verification codes and the send log: the parts of the store boundary the sending routes use.
//!
//! Codes are stored as keyed hashes only (see `verification_code`), one per phone and usage
//! type: a new code replaces the previous one. The send log records each send to a recipient
//! so flow control survives a restart.

use crate::store::StoreError;

/// A code to save; it replaces any code for the same phone and type.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub phone: String,
    pub template_type: String,
    pub code_hash: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    Verified,
    NotFound,
    Expired,
    ExceededMaxTry,
    Mismatch { attempts_left: u32 },
}

/// A request to send to a recipient, checked against the limits.
#[derive(Debug, Clone)]
pub struct SendLimitRequest {
    pub phone: String,
    pub template_type: String,
    pub now: i64,
    pub window_ms: i64,
    pub max_sends_per_window: u32,
    /// Refuse when the last send of this phone and type is more recent than this.
    pub cooldown_ms: Option<i64>,
}

/// A slot taken in the send log; released when the send fails, so only successful sends count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendReservation {
    pub id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// Too many sends to this recipient in the window.
    RateLimited { retry_after_secs: u64 },
    /// The last code of this type went out too recently.
    Cooldown { retry_after_secs: u64 },
}

pub trait VerificationCodeStore: Send + Sync {
    fn save_code(&self, code: NewCode) -> Result<(), StoreError>;
    /// Removes the code for the phone and type if it is still this one (a send that failed).
    fn discard_code(
        &self,
        phone: &str,
        template_type: &str,
        code_hash: &[u8],
    ) -> Result<(), StoreError>;
    /// One transaction: refuses an expired code or one past its attempts, counts a wrong
    /// attempt durably, and consumes a right one (a code works once). The hashes are compared
    /// in constant time.
    fn verify_code(
        &self,
        phone: &str,
        template_type: &str,
        presented_hash: &[u8],
        now: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome, StoreError>;
    /// Deletes codes expired before `now`; returns how many.
    fn purge_expired_codes(&self, now: i64) -> Result<usize, StoreError>;
}

pub trait SendLogStore: Send + Sync {
    /// Checks the limits and, when they allow it, takes a slot, in one transaction.
    fn reserve_send(
        &self,
        request: SendLimitRequest,
    ) -> Result<Result<SendReservation, SendRefusal>, StoreError>;
    fn release_send(&self, reservation: SendReservation) -> Result<(), StoreError>;
    /// Deletes send log entries older than `before`; returns how many.
    fn purge_send_log(&self, before: i64) -> Result<usize, StoreError>;
}
