//! Logto's verification-code routes: `POST /api/verification-codes` sends a code through the
//! live connector; `POST /api/verification-codes/verify` checks it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use plugin_api::TemplateType;
use serde::Deserialize;

use crate::api_error::{ApiError, Json};
use crate::send::{
    current_live_connector, masked_phone, reserve_send, send_reserved, SendPurpose, SendTarget,
};
use crate::state::AppState;
use crate::store::now_millis;
use crate::store::{NewCode, VerifyOutcome};

fn generic() -> TemplateType {
    TemplateType::Generic
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"phone": "+12015550123", "type": "SignIn", "locale": "en", "ip": "203.0.113.7"}))]
pub struct IssueCodeBody {
    /// The recipient.
    #[schema(value_type = crate::phone::PhoneNumber)]
    pub phone: String,
    /// Picks the template and scopes the code; `Generic` when left out (Logto sends only
    /// Generic codes through this route).
    #[serde(rename = "type", default = "generic")]
    #[schema(value_type = crate::api_contract::UsageType)]
    pub template_type: TemplateType,
    /// Picks a per-locale template (`payload.locale`).
    pub locale: Option<String>,
    /// The end user's IP address, when the caller knows it.
    #[serde(
        default,
        deserialize_with = "crate::request_fields::ip_address_when_present"
    )]
    #[schema(value_type = crate::api_contract::ClientIp)]
    pub ip: Option<IpAddr>,
}

/// Sends a new code; it replaces any code pending for the same phone and type.
#[utoipa::path(post, path = "/api/verification-codes", tag = "verification codes", request_body = IssueCodeBody,
    responses((status = 204, description = "The code was sent")),
    security(("send_key" = []), ("admin_key" = [])))]
pub async fn issue_code(
    State(state): State<Arc<AppState>>,
    Json(body): Json<IssueCodeBody>,
) -> Result<StatusCode, ApiError> {
    let phone = state
        .config
        .phone_validation
        .parse(&body.phone)
        .map_err(ApiError::InvalidPhoneNumber)?;
    let live = current_live_connector(&state)?;
    let target = SendTarget::live(&live)?;
    let code = crate::verification_code::generate_code()
        .map_err(|error| ApiError::Internal(format!("cannot generate a code: {error}")))?;
    let template_type = body.template_type;
    let code_hash = state.code_hasher.hash(phone.e164(), template_type, &code);
    let now = now_millis();
    let new_code = NewCode {
        phone: phone.e164().to_owned(),
        template_type,
        code_hash: code_hash.clone(),
        created_at: now,
        expires_at: now
            + i64::try_from(state.config.code_policy.time_to_live.as_millis()).unwrap_or(i64::MAX),
    };
    // Flow control first: a refused request leaves the pending code in place.
    let reservation = reserve_send(
        &state,
        &phone,
        body.template_type,
        SendPurpose::VerificationCode,
        body.ip,
    )
    .await?;
    let message =
        crate::verification_code::code_message(&phone, body.template_type, code, body.locale);
    // Saved before sending: the code must verify as soon as the SMS can arrive.
    state.store.save_code(new_code).await?;
    if let Err(error) = send_reserved(
        &state,
        reservation,
        target,
        &phone,
        message,
        SendPurpose::VerificationCode,
    )
    .await
    {
        // Not delivered: the code must not stay valid.
        state
            .store
            .discard_code(phone.e164(), template_type, &code_hash)
            .await?;
        return Err(error);
    }
    metrics::counter!("verification_codes_issued_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"phone": "+12015550123", "verificationCode": "123456", "type": "SignIn"}))]
pub struct VerifyCodeBody {
    /// The phone the code was sent to.
    #[schema(value_type = crate::phone::PhoneNumber)]
    pub phone: String,
    /// The six digits that were sent (Logto takes any non-empty text and answers
    /// `code_mismatch`; here anything else is refused as malformed, counting no attempt).
    #[serde(deserialize_with = "crate::request_fields::six_digit_code")]
    #[schema(pattern = "^[0-9]{6}$")]
    pub verification_code: String,
    /// The type the code was issued for; `Generic` when left out.
    #[serde(rename = "type", default = "generic")]
    #[schema(value_type = crate::api_contract::UsageType)]
    pub template_type: TemplateType,
}

/// Checks a code. It works once; wrong attempts are counted and capped.
#[utoipa::path(post, path = "/api/verification-codes/verify", tag = "verification codes", request_body = VerifyCodeBody,
    responses((status = 204, description = "The code is right; it is used up")),
    security(("send_key" = []), ("admin_key" = [])))]
pub async fn verify_code(
    State(state): State<Arc<AppState>>,
    Json(body): Json<VerifyCodeBody>,
) -> Result<StatusCode, ApiError> {
    let phone = state
        .config
        .phone_validation
        .parse(&body.phone)
        .map_err(ApiError::InvalidPhoneNumber)?;
    let template_type = body.template_type;
    let presented_hashes =
        state
            .code_hasher
            .hashes(phone.e164(), template_type, &body.verification_code);
    let max_attempts = state.config.code_policy.max_attempts;
    let outcome = state
        .store
        .verify_code(
            phone.e164(),
            template_type,
            &presented_hashes,
            now_millis(),
            max_attempts,
        )
        .await?;
    let outcome_label = match outcome {
        VerifyOutcome::Verified => "verified",
        VerifyOutcome::NotFound => "not_found",
        VerifyOutcome::Expired => "expired",
        VerifyOutcome::ExceededMaxTry => "exceed_max_try",
        VerifyOutcome::Mismatch { .. } => "code_mismatch",
    };
    tracing::info!(phone = %masked_phone(phone.e164()), template_type = %body.template_type, outcome = outcome_label, "verification");
    if outcome == VerifyOutcome::Verified {
        metrics::counter!("verification_codes_verified_total").increment(1);
        Ok(StatusCode::NO_CONTENT)
    } else {
        metrics::counter!("verification_codes_failed_total", "reason" => outcome_label)
            .increment(1);
        Err(ApiError::Verification(outcome))
    }
}
