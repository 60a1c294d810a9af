//! Logto's verification-code routes: `POST /api/verification-codes` sends a code through the
//! live connector; `POST /api/verification-codes/verify` checks it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use plugin_api::TemplateType;
use serde::Deserialize;

use crate::api_error::{ApiError, Json};
use crate::state::AppState;

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
    /// The end user's IP address, when the caller knows it: the `ip_velocity` protection
    /// layer counts sends per address (IPv6 per /64). A malformed one is refused.
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
    state
        .verification_codes()
        .issue(&phone, body.template_type, body.locale, body.ip)
        .await?;
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
    state
        .verification_codes()
        .verify(&phone, body.template_type, &body.verification_code)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
