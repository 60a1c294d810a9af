//! `POST /api/messages`: the raw send through the live connector, for callers that manage
//! their own codes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use plugin_api::{SmsMessage, TemplateType};
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, Json, Path, Query};
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
    /// The connector that sent it: the live one, or the standby (see `fallbackReason`).
    pub connector_id: String,
    pub factory_id: String,
    /// The provider's id for the message, when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    /// The host's id for the message (a UUIDv7): `GET /api/messages/{id}` follows it to
    /// delivered or not.
    pub message_id: String,
    /// Why the standby connector sent it, when it did: `unreachable` or `not_accepted` (the
    /// live connector's provider took nothing), `breaker_open` (the live connector was
    /// skipped after repeated such failures), `live_unavailable` (the live connector cannot
    /// send on this host: its plugin is missing or refuses its config, or its saved config
    /// cannot be opened).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "not_accepted")]
    pub fallback_reason: Option<&'static str>,
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
    let standby = state.live.current_standby();
    let target = SendTarget::live_or_standby(&live, standby.as_deref())?;
    let message = SmsMessage::new(phone.e164(), body.template_type, body.payload);
    let sent = state
        .sender
        .send_with_flow_control(target, &phone, message, SendPurpose::Message, body.ip)
        .await?;
    Ok(Json(SendMessageResponse {
        connector_id: sent.connector_id,
        factory_id: sent.factory_id,
        provider_message_id: sent.receipt.provider_message_id().map(str::to_owned),
        message_id: sent.message_id,
        fallback_reason: sent.fallback.map(|reason| reason.label()),
    }))
}

/// The largest `since`: the largest integer JSON clients hold exactly (2^53 - 1).
const LATEST_SINCE: i64 = 9_007_199_254_740_991;

/// A `since` the message routes take: milliseconds since the epoch, as JSON holds them.
fn check_since(since: Option<i64>) -> Result<(), ApiError> {
    if since.is_some_and(|since| !(0..=LATEST_SINCE).contains(&since)) {
        return Err(ApiError::InvalidRequestBody(format!(
            "since is a time in milliseconds since the epoch: 0 to {LATEST_SINCE}"
        )));
    }
    Ok(())
}

/// Which messages `GET /api/messages` lists, newest first.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct MessageListQuery {
    /// Only the messages at this status: `queued`, `sent`, `delivered`, `undelivered`,
    /// `failed` or `unknown`.
    #[param(pattern = "^(queued|sent|delivered|undelivered|failed|unknown)$")]
    pub status: Option<String>,
    /// Only the messages sent through this connector (its id).
    pub connector_id: Option<String>,
    /// Only the messages created at or after this time (milliseconds since the epoch).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub since: Option<i64>,

    /// The next page: the `nextBefore` of the previous answer.
    pub before: Option<String>,
    /// How many at most (1 to 200; 50 when left out).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A message as the message log has it; the phone by its last four digits only.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b", "connectorId": "6wb24mwyos70", "factoryId": "twilio-short-message-service", "purpose": "verification_code", "phone": "***0123", "status": "delivered", "providerMessageId": "SM3f0c5d2f1b5e4b6c9a8d7e6f5a4b3c2d", "createdAt": 1796583600000_i64, "updatedAt": 1796583604210_i64}))]
pub struct MessageResponse {
    pub id: String,
    /// Empty for a console test of an unsaved config.
    pub connector_id: String,
    pub factory_id: String,
    /// `message`, `verification_code` or `config_test`.
    pub purpose: String,
    pub phone: String,
    /// `queued` (the provider accepted it), `sent`, `delivered`, `undelivered`, `failed` or
    /// `unknown`; `null` while the send is in progress.
    #[schema(nullable)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The timeline, oldest first (`GET /api/messages/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<MessageEventResponse>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEventResponse {
    pub at: i64,
    pub status: String,
    /// The provider's own word for it, as it came (empty for the host's own events).
    pub provider_status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    /// `send` (what the send's answer said) or `report` (a delivery report).
    pub source: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageListResponse {
    pub messages: Vec<MessageResponse>,
    /// Pass as `before` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

fn message_response(
    record: crate::store::message_log::MessageRecord,
    events: Option<Vec<crate::store::message_log::MessageEvent>>,
) -> MessageResponse {
    MessageResponse {
        phone: format!("***{}", record.phone_tail),
        id: record.id,
        connector_id: record.connector_id,
        factory_id: record.factory_id,
        purpose: record.purpose,
        status: record.status.map(|status| status.as_str().to_owned()),
        provider_message_id: record.provider_message_id,
        created_at: record.created_at,
        updated_at: record.updated_at,
        events: events.map(|events| {
            events
                .into_iter()
                .map(|event| MessageEventResponse {
                    at: event.at,
                    status: event.status.as_str().to_owned(),
                    provider_status: event.provider_status,
                    error_code: event.error_code,
                    source: event.source.as_str().to_owned(),
                })
                .collect()
        }),
    }
}

/// One message with its current status and its timeline.
#[utoipa::path(get, path = "/api/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The `messageId` a send answered", example = "0193a5b2-7c4e-7d4f-9a1b-2c3d4e5f6a7b")),
    responses((status = 200, description = "The message", body = MessageResponse)),
    security(("admin_key" = [])))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, ApiError> {
    let (record, events) = state
        .sender
        .tracking
        .message(&id)
        .await?
        .ok_or(ApiError::NotFound {
            entity: "message",
            id,
        })?;
    Ok(Json(message_response(record, Some(events))))
}

/// Recent messages, newest first, by status, connector and time; paged with `before`.
#[utoipa::path(get, path = "/api/messages", tag = "messages", params(MessageListQuery),
    responses((status = 200, description = "Messages, newest first", body = MessageListResponse)),
    security(("admin_key" = [])))]
pub async fn list_messages(
    State(state): State<Arc<AppState>>,
    Query(query): Query<MessageListQuery>,
) -> Result<Json<MessageListResponse>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|text| {
            plugin_api::DeliveryStatus::ALL
                .into_iter()
                .find(|status| status.as_str() == text)
                .ok_or_else(|| {
                    ApiError::InvalidRequestBody(format!(
                        "status {text:?} is none of queued, sent, delivered, undelivered, failed, unknown"
                    ))
                })
        })
        .transpose()?;
    check_since(query.since)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidRequestBody("limit is 1 to 200".to_owned()));
    }
    let records = state
        .sender
        .tracking
        .messages(crate::store::message_log::MessageFilter {
            status,
            connector_id: query.connector_id,
            since: query.since,
            before_id: query.before,
            limit,
        })
        .await?;
    let next_before = (records.len() == limit as usize)
        .then(|| records.last().map(|record| record.id.clone()))
        .flatten();
    Ok(Json(MessageListResponse {
        messages: records
            .into_iter()
            .map(|record| message_response(record, None))
            .collect(),
        next_before,
    }))
}

/// The window `GET /api/messages/summary` counts when no `since` is given: the last 24 hours.
const DEFAULT_SUMMARY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Which messages `GET /api/messages/summary` counts.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummaryQuery {
    /// Count the messages created at or after this time (milliseconds since the epoch); the
    /// last 24 hours when left out.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub since: Option<i64>,
}

/// One connector's messages since `since`, by their current status.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"connectorId": "6wb24mwyos70", "factoryId": "twilio-short-message-service", "total": 50, "delivered": 46, "undelivered": 3, "failed": 1, "sent": 0, "queued": 0, "unknown": 0, "pending": 0, "deliveredRate": 0.92}))]
pub struct ConnectorDeliveryResponse {
    pub connector_id: String,
    pub factory_id: String,
    /// Every message, whatever its status.
    pub total: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub failed: u64,
    pub sent: u64,
    pub queued: u64,
    pub unknown: u64,
    /// No status yet: the send is in progress.
    pub pending: u64,
    /// `delivered / (delivered + undelivered + failed)`: of the messages whose fate is known,
    /// the share that arrived; `null` while none is known. Messages whose provider never
    /// reports (still `queued`, `sent` or `unknown`) are not counted as failures.
    #[schema(nullable)]
    pub delivered_rate: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummaryResponse {
    /// The start of the counted window (milliseconds since the epoch).
    pub since: i64,
    /// Whether this host writes the message log (`--message-log`): when `false`, nothing new
    /// is counted (what the log still holds from before is).
    pub message_log: bool,
    /// Whether this host asks providers for delivery reports (the message log on and
    /// `--public-url` set): when `false`, no status moves past what the send's answer said.
    pub delivery_reports: bool,
    /// One entry per connector that sent in the window, by connector id.
    pub connectors: Vec<ConnectorDeliveryResponse>,
}

/// Each connector's messages since a time by their current status, and its delivered rate.
#[utoipa::path(get, path = "/api/messages/summary", tag = "messages", params(MessageSummaryQuery),
    responses((status = 200, description = "Messages per connector by status", body = MessageSummaryResponse)),
    security(("admin_key" = [])))]
pub async fn get_message_summary(
    State(state): State<Arc<AppState>>,
    Query(query): Query<MessageSummaryQuery>,
) -> Result<Json<MessageSummaryResponse>, ApiError> {
    check_since(query.since)?;
    let since = query
        .since
        .unwrap_or_else(|| crate::store::now_millis() - DEFAULT_SUMMARY_WINDOW_MS);
    let summaries = state.sender.tracking.delivery_summary(since).await?;
    Ok(Json(MessageSummaryResponse {
        since,
        message_log: state.config.delivery_reports.message_log,
        delivery_reports: state.config.delivery_reports.message_log
            && state.config.delivery_reports.public_url.is_some(),
        connectors: summaries
            .into_iter()
            .map(|summary| {
                let decided = summary.delivered + summary.undelivered + summary.failed;
                ConnectorDeliveryResponse {
                    delivered_rate: (decided > 0)
                        .then(|| summary.delivered as f64 / decided as f64),
                    connector_id: summary.connector_id,
                    factory_id: summary.factory_id,
                    total: summary.total,
                    delivered: summary.delivered,
                    undelivered: summary.undelivered,
                    failed: summary.failed,
                    sent: summary.sent,
                    queued: summary.queued,
                    unknown: summary.unknown,
                    pending: summary.pending,
                }
            })
            .collect(),
    }))
}
