//! `POST /api/messages`: the raw send through the live connector, for callers that manage
//! their own codes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use plugin_api::{SmsMessage, TemplateType};
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, Json};
use crate::send::metrics::SendPurpose;
use crate::send::SendTarget;
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"to": "12015550123", "type": "SignIn", "payload": {"code": "123456", "locale": "en", "uiLocales": "en de", "application": {"id": "my-app", "name": "My app"}}, "ip": "203.0.113.7"}))]
pub struct SendMessageBody {
    /// The recipient.
    #[schema(value_type = crate::phone::PhoneNumber)]
    pub to: String,
    /// Picks the template; `Generic` when left out.
    #[serde(rename = "type", default = "generic")]
    #[schema(value_type = crate::api_contract::UsageType)]
    pub template_type: TemplateType,
    /// Template placeholders: `code`, `locale` (picks a per-locale template), anything else,
    /// nested objects included (Logto's `uiLocales`, `application`, `organization`, `user`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: serde_json::Map<String, serde_json::Value>,
    /// The end user's IP address, when the sender knows it (Logto's HTTP SMS connector
    /// passes it on interactive flows): the `ip_velocity` protection layer counts sends per
    /// address (IPv6 per /64). A malformed one is refused.
    #[serde(
        default,
        deserialize_with = "crate::request_fields::ip_address_when_present"
    )]
    #[schema(value_type = crate::api_contract::ClientIp)]
    pub ip: Option<IpAddr>,
}

fn generic() -> TemplateType {
    TemplateType::Generic
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"connectorId": "6wb24mwyos70", "factoryId": "twilio-short-message-service", "providerMessageId": "SM3f0c5d2f1b5e4b6c9a8d7e6f5a4b3c2d", "messageId": "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b"}))]
pub struct SendMessageResponse {
    /// The live connector that sent it.
    pub connector_id: String,
    pub factory_id: String,
    /// The provider's id for the message, when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The host's id for the message (a UUIDv7): `GET /api/messages/{id}` follows it to
    /// delivered or not.
    pub message_id: String,
}

/// Sends one message through the live connector.
#[utoipa::path(post, path = "/api/messages", tag = "messages", request_body = SendMessageBody,
    responses((status = 200, description = "Sent", body = SendMessageResponse)),
    security(("send_key" = []), ("admin_key" = [])))]
pub async fn send_message(
    State(state): State<Arc<AppState>>,
    Json(body): Json<SendMessageBody>,
) -> Result<Json<SendMessageResponse>, ApiError> {
    let phone = state
        .config
        .phone_validation
        .parse(&body.to)
        .map_err(ApiError::InvalidPhoneNumber)?;
    // Held to the end of the send: a swap meanwhile does not touch this connector.
    let live = state.live.current_live_connector()?;
    let target = SendTarget::live(&live)?;
    let message = SmsMessage::new(phone.e164(), body.template_type, body.payload);
    let sent = state
        .sender
        .send_with_flow_control(target, &phone, message, SendPurpose::Message, body.ip)
        .await?;
    Ok(Json(SendMessageResponse {
        connector_id: live.connector_id.clone(),
        factory_id: live.factory_id.clone(),
        provider_message_id: sent.receipt.provider_message_id().map(str::to_owned),
        message_id: sent.message_id,
    }))
}
