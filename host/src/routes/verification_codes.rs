//! Logto's verification-code routes: `POST /api/verification-codes` sends a code through the
//! live connector; `POST /api/verification-codes/verify` checks it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plugin_api::TemplateType;
use serde::{Deserialize, Serialize};

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

/// The host's id for the message that carried a code, in every answer of
/// `POST /api/verification-codes`.
pub const MESSAGE_ID_HEADER: &str = "x-message-id";

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"messageId": "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b"}))]
pub struct IssueCodeResponse {
    /// The host's id for the message that carried the code (a UUIDv7): `GET
    /// /api/messages/{id}` follows it to delivered or not.
    pub message_id: String,
}

/// Sends a new code; it replaces any code pending for the same phone and type.
///
/// Answers 204, as Logto's route does, with the message's id in `X-Message-Id`; a caller
/// that sends `Prefer: return=representation` (RFC 7240) gets 201 with `{"messageId"}`.
#[utoipa::path(post, path = "/api/verification-codes", tag = "verification codes", request_body = IssueCodeBody,
    responses(
        (status = 204, description = "The code was sent",
            headers(("X-Message-Id" = String, description = "The host's id for the message (a UUIDv7)"))),
        (status = 201, description = "The code was sent (with `Prefer: return=representation`)", body = IssueCodeResponse,
            headers(("X-Message-Id" = String, description = "The host's id for the message (a UUIDv7)"))),
    ),
    security(("send_key" = []), ("admin_key" = [])))]
pub async fn issue_code(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(body): Json<IssueCodeBody>,
) -> Result<Response, ApiError> {
    let phone = state
        .config
        .phone_validation
        .parse(&body.phone)
        .map_err(ApiError::InvalidPhoneNumber)?;
    let sent = state
        .verification_codes()
        .issue(&phone, body.template_type, body.locale, body.ip)
        .await?;
    let mut response = if prefers_representation(&headers) {
        (
            StatusCode::CREATED,
            Json(IssueCodeResponse {
                message_id: sent.message_id.clone(),
            }),
        )
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    // A UUID is always a valid header value; were it not, the answer goes without it.
    if let Ok(value) = HeaderValue::from_str(&sent.message_id) {
        response.headers_mut().insert(MESSAGE_ID_HEADER, value);
    }
    Ok(response)
}

/// `Prefer: return=representation`, among other preferences or not.
fn prefers_representation(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            let preference = preference.split(';').next().unwrap_or_default();
            let mut parts = preference.splitn(2, '=');
            let name = parts.next().unwrap_or_default().trim();
            let value = parts.next().unwrap_or_default().trim().trim_matches('"');
            name.eq_ignore_ascii_case("return") && value.eq_ignore_ascii_case("representation")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_prefer(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn return_representation_is_read_among_other_preferences() {
        assert!(prefers_representation(&with_prefer(&[
            "return=representation"
        ])));
        assert!(prefers_representation(&with_prefer(&[
            "respond-async, Return = \"representation\"; x=1"
        ])));
        assert!(prefers_representation(&with_prefer(&[
            "wait=5",
            "return=representation"
        ])));
        assert!(!prefers_representation(&with_prefer(&["return=minimal"])));
        assert!(!prefers_representation(&with_prefer(&["representation"])));
        assert!(!prefers_representation(&HeaderMap::new()));
    }
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
