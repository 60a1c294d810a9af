//! What a verify of a code decides, written once for both stores: each store reads the code
//! (locked, in its transaction), asks [`decide_verification`], and writes what the outcome
//! says ([`VerifyOutcome::code_write`]) in the same transaction.

use super::{hash_matches_any, VerifyOutcome};

/// A saved code as a verify reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub code_hash: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
    pub failed_attempts: u32,
}

/// What a verify writes back to the saved code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeWrite {
    /// Nothing to write: no code, or one refused before it was compared.
    Nothing,
    /// A right code works once: it is deleted.
    Consume,
    /// A wrong attempt counts, durably.
    CountWrongAttempt,
}

/// The decision, in this order: no code; expired (`expires_at` at or before `now`); locked
/// (`max_attempts` wrong attempts already); right (one of `presented_hashes`, the presented
/// code under each code-hash key, is the stored hash, compared in constant time); else wrong,
/// with the attempts left after this one.
pub fn decide_verification(
    stored: Option<&StoredCode>,
    presented_hashes: &[Vec<u8>],
    now: i64,
    max_attempts: u32,
) -> VerifyOutcome {
    match stored {
        None => VerifyOutcome::NotFound,
        Some(code) if code.expires_at <= now => VerifyOutcome::Expired,
        Some(code) if code.failed_attempts >= max_attempts => VerifyOutcome::ExceededMaxTry,
        Some(code) if hash_matches_any(&code.code_hash, presented_hashes) => {
            VerifyOutcome::Verified
        }
        Some(code) => VerifyOutcome::Mismatch {
            attempts_left: max_attempts.saturating_sub(code.failed_attempts + 1),
        },
    }
}

impl VerifyOutcome {
    /// What the store writes for this outcome.
    pub fn code_write(self) -> CodeWrite {
        match self {
            VerifyOutcome::Verified => CodeWrite::Consume,
            VerifyOutcome::Mismatch { .. } => CodeWrite::CountWrongAttempt,
            VerifyOutcome::NotFound | VerifyOutcome::Expired | VerifyOutcome::ExceededMaxTry => {
                CodeWrite::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn code(failed_attempts: u32, expires_at: i64) -> StoredCode {
        StoredCode {
            code_hash: b"right".to_vec(),
            expires_at,
            failed_attempts,
        }
    }

    fn decide(stored: Option<&StoredCode>, presented: &[&[u8]]) -> VerifyOutcome {
        let presented: Vec<Vec<u8>> = presented.iter().map(|hash| hash.to_vec()).collect();
        decide_verification(stored, &presented, NOW, 3)
    }

    #[test]
    fn each_outcome_and_what_it_writes() {
        let live = code(0, NOW + 1);
        assert_eq!(decide(None, &[b"right"]), VerifyOutcome::NotFound);
        assert_eq!(decide(Some(&live), &[b"right"]), VerifyOutcome::Verified);
        assert_eq!(
            decide(Some(&live), &[b"wrong"]),
            VerifyOutcome::Mismatch { attempts_left: 2 }
        );
        assert_eq!(
            decide(Some(&code(2, NOW + 1)), &[b"wrong"]),
            VerifyOutcome::Mismatch { attempts_left: 0 }
        );
        // Any presented hash may match (a key rotation: one hash per key).
        assert_eq!(
            decide(Some(&live), &[b"old-key", b"right"]),
            VerifyOutcome::Verified
        );
        assert_eq!(
            decide(Some(&live), &[]),
            VerifyOutcome::Mismatch { attempts_left: 2 }
        );
        assert_eq!(VerifyOutcome::Verified.code_write(), CodeWrite::Consume);
        assert_eq!(
            VerifyOutcome::Mismatch { attempts_left: 0 }.code_write(),
            CodeWrite::CountWrongAttempt
        );
        for refused in [
            VerifyOutcome::NotFound,
            VerifyOutcome::Expired,
            VerifyOutcome::ExceededMaxTry,
        ] {
            assert_eq!(refused.code_write(), CodeWrite::Nothing);
        }
    }

    #[test]
    fn expiry_comes_first_then_the_lock_even_for_the_right_code() {
        // Expiring at `now` is expired.
        assert_eq!(
            decide(Some(&code(0, NOW)), &[b"right"]),
            VerifyOutcome::Expired
        );
        assert_eq!(
            decide(Some(&code(5, NOW - 1)), &[b"right"]),
            VerifyOutcome::Expired
        );
        assert_eq!(
            decide(Some(&code(3, NOW + 1)), &[b"right"]),
            VerifyOutcome::ExceededMaxTry
        );
        assert_eq!(
            decide(Some(&code(4, NOW + 1)), &[b"wrong"]),
            VerifyOutcome::ExceededMaxTry
        );
    }
}
