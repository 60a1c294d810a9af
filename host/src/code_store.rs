//! Verification codes: the part of the store boundary the code routes use.
//!
//! Codes are stored as keyed hashes only (see `verification_code`), one per phone and usage
//! type: a new code replaces the previous one.

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
