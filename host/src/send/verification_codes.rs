//! Verification codes: one issued (flow control, generated, stored, sent through the live
//! connector) and one checked.

use plugin_api::TemplateType;
use std::net::IpAddr;

use crate::live::live_connector::LiveSlot;
use crate::phone::PhoneNumber;
use crate::send::metrics::SendPurpose;
use crate::send::{masked_phone, SendError, SendTarget, Sender};
use crate::store::{now_millis, NewCode, Store, StoreError, VerifyOutcome};
use crate::verification_code::{CodeHasher, CodePolicy};

/// What issuing and checking codes needs.
pub struct VerificationCodes<'a> {
    /// Codes go through the live connector.
    pub live: &'a LiveSlot,
    pub sender: &'a Sender,
    pub store: &'a dyn Store,
    pub hasher: &'a CodeHasher,
    pub policy: &'a CodePolicy,
}

/// Why a code was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not verified: no code pending, expired, too many attempts, or wrong.
    #[error("the code was not verified: {0:?}")]
    Rejected(VerifyOutcome),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VerificationCodes<'_> {
    /// Sends a new code through the live connector; it replaces any code pending for the same
    /// phone and type. The answer carries the host's message id.
    pub async fn issue(
        &self,
        phone: &PhoneNumber,
        template_type: TemplateType,
        locale: Option<String>,
        client_ip: Option<IpAddr>,
    ) -> Result<super::Sent, SendError> {
        let live = self.live.current_live_connector()?;
        let standby = self.live.current_standby();
        let target = SendTarget::live_or_standby(&live, standby.as_deref())?;
        let code = crate::verification_code::generate_code()
            .map_err(|error| SendError::CodeNotGenerated(error.to_string()))?;
        let code_hash = self.hasher.hash(phone.e164(), template_type, &code);
        let now = now_millis();
        let expires_at =
            now + i64::try_from(self.policy.time_to_live.as_millis()).unwrap_or(i64::MAX);
        let new_code = NewCode {
            phone: phone.e164().to_owned(),
            template_type,
            code_hash: code_hash.clone(),
            created_at: now,
            expires_at,
        };
        // Flow control first: a refused request leaves the pending code in place.
        let reservation = self
            .sender
            .reserve_send(
                phone,
                template_type,
                SendPurpose::VerificationCode,
                client_ip,
            )
            .await?;
        let message = crate::verification_code::code_message(phone, template_type, code, locale);
        // Saved before sending: the code must verify as soon as the SMS can arrive.
        self.store.save_code(new_code).await?;
        // Low conversion: the code is verified, or counts as unverified once it expired.
        // Recorded before the send, so a verify that beats the provider's answer counts.
        self.sender.protection.code_issued(
            phone.e164(),
            phone.region(),
            template_type.as_str(),
            expires_at,
            now,
        );
        let sent = match self
            .sender
            .send_reserved(
                reservation,
                target,
                phone,
                message,
                SendPurpose::VerificationCode,
            )
            .await
        {
            Ok(sent) => sent,
            Err(error) => {
                // The provider may have the message: the code may arrive, so it stays valid (and
                // counts for its prefix) until it expires or is used.
                if let SendError::Delivery {
                    error: delivery, ..
                } = &error
                {
                    if delivery.provider_may_have_accepted() {
                        return Err(error);
                    }
                }
                // Not delivered: the code must not stay valid, nor count for its prefix.
                self.sender
                    .protection
                    .code_discarded(phone.e164(), template_type.as_str());
                self.store
                    .discard_code(phone.e164(), template_type, &code_hash)
                    .await?;
                return Err(error);
            }
        };
        metrics::counter!("verification_codes_issued_total").increment(1);
        Ok(sent)
    }

    /// Checks a code. It works once; wrong attempts are counted and capped.
    pub async fn verify(
        &self,
        phone: &PhoneNumber,
        template_type: TemplateType,
        verification_code: &str,
    ) -> Result<(), VerifyError> {
        let presented_hashes = self
            .hasher
            .hashes(phone.e164(), template_type, verification_code);
        let outcome = self
            .store
            .verify_code(
                phone.e164(),
                template_type,
                &presented_hashes,
                now_millis(),
                self.policy.max_attempts,
            )
            .await
            .inspect_err(|_| {
                metrics::counter!("verification_code_checks_total", "result" => "store_error")
                    .increment(1);
            })?;
        // Words an operator reads on a dashboard (brute force shows as `wrong`, then
        // `too_many_attempts`); `verification_codes_failed_total` keeps Logto's.
        let result = match outcome {
            VerifyOutcome::Verified => "verified",
            VerifyOutcome::NotFound => "not_found",
            VerifyOutcome::Expired => "expired",
            VerifyOutcome::ExceededMaxTry => "too_many_attempts",
            VerifyOutcome::Mismatch { .. } => "wrong",
        };
        metrics::counter!("verification_code_checks_total", "result" => result).increment(1);
        let outcome_label = match outcome {
            VerifyOutcome::Verified => "verified",
            VerifyOutcome::NotFound => "not_found",
            VerifyOutcome::Expired => "expired",
            VerifyOutcome::ExceededMaxTry => "exceed_max_try",
            VerifyOutcome::Mismatch { .. } => "code_mismatch",
        };
        tracing::info!(phone = %masked_phone(phone.e164()), template_type = %template_type, outcome = outcome_label, "verification");
        if outcome == VerifyOutcome::Verified {
            metrics::counter!("verification_codes_verified_total").increment(1);
            self.sender.protection.code_verified(
                phone.e164(),
                phone.region(),
                template_type.as_str(),
                now_millis(),
            );
            Ok(())
        } else {
            metrics::counter!("verification_codes_failed_total", "reason" => outcome_label)
                .increment(1);
            Err(VerifyError::Rejected(outcome))
        }
    }
}
