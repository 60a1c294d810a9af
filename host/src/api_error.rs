//! The one error type at the HTTP edge. Every failure answers JSON `{code, message, data?}`
//! with Logto's codes where Logto has them; a client mistake is never a 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plugin_api::{ConnectorError, ConnectorErrorCode};
use serde_json::json;

use crate::http::request_log::ErrorReport;
use crate::live::lifecycle::ConnectorChangeError;
use crate::live::live_connector::NoLiveConnector;
use crate::send::config_test::ConfigTestError;
use crate::send::executor::DeliveryError;
use crate::send::flow_control::SendRefusal;
use crate::send::verification_codes::VerifyError;
use crate::send::SendError;
use crate::store::{StoreError, VerifyOutcome};

/// Every error body: a stable `code`, a human `message`, and optional details.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{entity} {id:?} does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error("no loaded plugin provides the connector factory {factory_id:?}")]
    FactoryNotFound { factory_id: String },
    #[error("{0}")]
    InvalidRequestBody(String),
    #[error("the request body is over the {limit_bytes}-byte limit")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("{0}")]
    InvalidPhoneNumber(String),
    /// The connector (validating a config, or sending) refused. `during_test` decides whether a
    /// config problem is the client's (a config under test) or the operator's (the saved one).
    #[error("{}", .error.message)]
    Connector {
        error: ConnectorError,
        during_test: bool,
    },
    /// The provider could not be reached: nothing was sent.
    #[error("{0}")]
    Upstream(String),
    /// The request reached the provider and no whole answer came back: the message may have
    /// been accepted, so a client must not simply send it again.
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    NoLiveConnector(String),
    #[error("phone numbers of region {region} are not allowed")]
    CountryNotAllowed { region: String },
    #[error("too many messages to this recipient; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("a code of this type was just sent to this recipient; wait {retry_after_secs} s before asking for another")]
    ResendCooldown { retry_after_secs: u64 },
    /// The console's tests have a budget of their own (send/admin_test_budget.rs).
    #[error("too many test messages from the console (at most {} per {} minutes on this host); retry in {retry_after_secs} s", crate::send::admin_test_budget::ADMIN_TESTS_PER_WINDOW, crate::send::admin_test_budget::ADMIN_TEST_WINDOW.as_secs() / 60)]
    ConsoleTestsLimited { retry_after_secs: u64 },
    /// A protection layer (SMS pumping) refused the send: `data.reason` says which.
    #[error("{message}")]
    Blocked {
        reason: &'static str,
        retry_after_secs: Option<u64>,
        block_id: String,
        message: String,
    },
    #[error("{}", verification_failure_message(.0))]
    Verification(VerifyOutcome),
    #[error("a valid API key is required: send `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("this API key may only call the sending routes")]
    Forbidden,
    #[error("route {method} {path} does not exist")]
    RouteNotFound { method: String, path: String },
    #[error("{path} does not accept {method}")]
    MethodNotAllowed { method: String, path: String },
    #[error("connector {id:?} kept changing while this change was made; read it again and retry")]
    ChangedConcurrently { id: String },
    #[error("connector {id:?} is the live connector: mark a previous connector as the fallback")]
    FallbackIsLive { id: String },
    /// The shared store cannot be reached: fail closed, never send without a decision.
    /// The reason (which names the database's address) goes to the log, not to the client.
    #[error("the store is unavailable; try again shortly")]
    StoreUnavailable(String),
    /// A saved config this host cannot open (sealed under a key its key file lacks, or not
    /// sealed by a host): nothing is sent through it, with an old config or a planted one.
    #[error("connector {connector_id:?} cannot be used on this host: {reason}")]
    ConnectorUnavailable {
        connector_id: String,
        reason: String,
    },
    /// More API requests in progress than `--max-in-flight`: refused at once, never queued.
    #[error("the host has {max_in_flight} requests in progress, its limit; retry shortly")]
    Overloaded { max_in_flight: u32 },
    /// The connector has `--max-vendor-concurrency` sends in progress: its provider is slow.
    #[error("connector {connector_id:?} has {limit} sends in progress, its limit (its provider is slow); retry shortly")]
    ConnectorBusy { connector_id: String, limit: u32 },
    /// The client did not send the body within `--body-read-timeout-secs`.
    #[error("the request body did not arrive within {limit_secs} s")]
    BodyReadTimedOut { limit_secs: u64 },
    /// No answer within `--api-request-timeout-secs`; the work goes on to its end.
    #[error("no answer within {limit_secs} s; the request goes on and its outcome is logged (a message may still be delivered: check before sending it again)")]
    RequestTimedOut { limit_secs: u64 },
    /// A delivery report refused (see `send::delivery_reports`).
    #[error("{0}")]
    ReportRefused(crate::send::delivery_reports::ReportRefusal),
    /// More delivery reports a second than the host takes.
    #[error("too many delivery reports; retry shortly")]
    ReportsOverLimit,
    /// The host has no `--public-url`: it asked for no delivery reports.
    #[error("this host takes no delivery reports (it has no --public-url)")]
    NoDeliveryReports,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::FactoryNotFound { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidRequestBody(_)
            | ApiError::InvalidPhoneNumber(_)
            | ApiError::CountryNotAllowed { .. }
            | ApiError::Verification(_) => StatusCode::BAD_REQUEST,
            ApiError::RateLimited { .. }
            | ApiError::ResendCooldown { .. }
            | ApiError::ConsoleTestsLimited { .. }
            | ApiError::Blocked { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Connector { error, during_test } => {
                connector_error_status(error.code, *during_test)
            }
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::NoLiveConnector(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::StoreUnavailable(_)
            | ApiError::ConnectorUnavailable { .. }
            | ApiError::Overloaded { .. }
            | ApiError::ConnectorBusy { .. }
            | ApiError::RequestTimedOut { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyReadTimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::ChangedConcurrently { .. } => StatusCode::CONFLICT,
            ApiError::FallbackIsLive { .. } => StatusCode::CONFLICT,
            ApiError::ReportRefused(refusal) => {
                use crate::send::delivery_reports::ReportRefusal;
                match refusal {
                    ReportRefusal::UnknownConnector(_) | ReportRefusal::Unsupported(_) => {
                        StatusCode::NOT_FOUND
                    }
                    ReportRefusal::BadToken(_) | ReportRefusal::BadSignature(_) => {
                        StatusCode::FORBIDDEN
                    }
                    ReportRefusal::Malformed(_) => StatusCode::BAD_REQUEST,
                    ReportRefusal::Unavailable { .. } | ReportRefusal::Store(_) => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }
            ApiError::ReportsOverLimit => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NoDeliveryReports => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> String {
        match self {
            ApiError::NotFound { .. } => "entity.not_found".to_owned(),
            ApiError::FactoryNotFound { .. } => "connector.not_found_with_connector_id".to_owned(),
            ApiError::InvalidRequestBody(_) => "guard.invalid_input".to_owned(),
            ApiError::PayloadTooLarge { .. } => "guard.payload_too_large".to_owned(),
            ApiError::InvalidPhoneNumber(_) => "guard.invalid_phone_number".to_owned(),
            ApiError::CountryNotAllowed { .. } => "guard.phone_country_not_allowed".to_owned(),
            ApiError::RateLimited { .. } => "request.message_rate_limited".to_owned(),
            ApiError::ResendCooldown { .. } => "verification_code.resend_cooldown".to_owned(),
            ApiError::ConsoleTestsLimited { .. } => "request.console_test_rate_limited".to_owned(),
            ApiError::Blocked { .. } => "sms.blocked".to_owned(),
            ApiError::Verification(outcome) => match outcome {
                VerifyOutcome::NotFound | VerifyOutcome::Verified => "verification_code.not_found",
                VerifyOutcome::Expired => "verification_code.expired",
                VerifyOutcome::ExceededMaxTry => "verification_code.exceed_max_try",
                VerifyOutcome::Mismatch { .. } => "verification_code.code_mismatch",
            }
            .to_owned(),
            ApiError::Connector { error, .. } => format!("connector.{}", error.code),
            ApiError::Upstream(_) => "connector.general".to_owned(),
            ApiError::OutcomeUnknown(_) => "connector.outcome_unknown".to_owned(),
            ApiError::NoLiveConnector(_) => "connector.not_found".to_owned(),
            ApiError::Unauthorized => "auth.unauthorized".to_owned(),
            ApiError::Forbidden => "auth.forbidden".to_owned(),
            ApiError::RouteNotFound { .. } => "request.route_not_found".to_owned(),
            ApiError::MethodNotAllowed { .. } => "request.method_not_allowed".to_owned(),
            ApiError::StoreUnavailable(_) => "store.unavailable".to_owned(),
            ApiError::ConnectorUnavailable { .. } => "connector.unavailable".to_owned(),
            ApiError::ChangedConcurrently { .. } => "connector.changed_concurrently".to_owned(),
            ApiError::FallbackIsLive { .. } => "connector.fallback_is_live".to_owned(),
            ApiError::Overloaded { .. } => "server.overloaded".to_owned(),
            ApiError::ConnectorBusy { .. } => "connector.busy".to_owned(),
            ApiError::BodyReadTimedOut { .. } => "request.timeout".to_owned(),
            ApiError::RequestTimedOut { .. } => "server.timeout".to_owned(),
            ApiError::ReportRefused(refusal) => {
                use crate::send::delivery_reports::ReportRefusal;
                match refusal {
                    ReportRefusal::UnknownConnector(_) => "entity.not_found",
                    ReportRefusal::Unsupported(_) => "delivery_report.unsupported",
                    ReportRefusal::BadToken(_) | ReportRefusal::BadSignature(_) => {
                        "delivery_report.forbidden"
                    }
                    ReportRefusal::Malformed(_) => "delivery_report.invalid",
                    ReportRefusal::Unavailable { .. } => "delivery_report.unavailable",
                    ReportRefusal::Store(_) => "store.unavailable",
                }
                .to_owned()
            }
            ApiError::ReportsOverLimit => "delivery_report.rate_limited".to_owned(),
            ApiError::NoDeliveryReports => "delivery_report.not_taken".to_owned(),
            ApiError::Internal(_) => "unknown".to_owned(),
        }
    }

    /// Every code an error answer can have, for `http_refusals_total`'s series at zero.
    pub fn all_codes() -> Vec<String> {
        let mut codes: Vec<String> = [
            "entity.not_found",
            "connector.not_found_with_connector_id",
            "guard.invalid_input",
            "guard.payload_too_large",
            "guard.invalid_phone_number",
            "guard.phone_country_not_allowed",
            "request.message_rate_limited",
            "verification_code.resend_cooldown",
            "request.console_test_rate_limited",
            "sms.blocked",
            "verification_code.not_found",
            "verification_code.expired",
            "verification_code.exceed_max_try",
            "verification_code.code_mismatch",
            "connector.general",
            "connector.outcome_unknown",
            "connector.not_found",
            "auth.unauthorized",
            "auth.forbidden",
            "request.route_not_found",
            "request.method_not_allowed",
            "store.unavailable",
            "connector.unavailable",
            "connector.changed_concurrently",
            "connector.fallback_is_live",
            "server.overloaded",
            "connector.busy",
            "request.timeout",
            "server.timeout",
            "delivery_report.unsupported",
            "delivery_report.forbidden",
            "delivery_report.invalid",
            "delivery_report.unavailable",
            "delivery_report.rate_limited",
            "delivery_report.not_taken",
            "unknown",
        ]
        .map(str::to_owned)
        .into();
        codes.extend(
            ConnectorErrorCode::ALL
                .iter()
                .map(|code| format!("connector.{code}")),
        );
        codes.sort();
        codes.dedup();
        codes
    }

    /// A connector error from validating or sending a config the client supplied.
    pub fn from_config_under_test(error: ConnectorError) -> Self {
        ApiError::Connector {
            error,
            during_test: true,
        }
    }

    /// `data` of a `429 sms.blocked`: the reason, and when they apply the seconds to wait and
    /// the stored block that refused.
    pub fn blocked_data(&self) -> serde_json::Value {
        let ApiError::Blocked {
            reason,
            retry_after_secs,
            block_id,
            ..
        } = self
        else {
            return serde_json::Value::Null;
        };
        let mut data = json!({ "reason": reason });
        if let Some(seconds) = retry_after_secs {
            data["retryAfterSeconds"] = json!(seconds);
        }
        if !block_id.is_empty() {
            data["blockId"] = json!(block_id);
        }
        data
    }

    fn from_delivery(error: DeliveryError, during_test: bool) -> Self {
        match error {
            DeliveryError::Connector(error) => ApiError::Connector { error, during_test },
            DeliveryError::Unreachable(message) => ApiError::Upstream(message),
            DeliveryError::OutcomeUnknown(message) => ApiError::OutcomeUnknown(message),
        }
    }
}

fn connector_error_status(code: ConnectorErrorCode, during_test: bool) -> StatusCode {
    match code {
        ConnectorErrorCode::RateLimitExceeded | ConnectorErrorCode::UsageLimitExceeded => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ConnectorErrorCode::TemplateNotFound
        | ConnectorErrorCode::InvalidRequestParameters
        | ConnectorErrorCode::InsufficientRequestParameters => StatusCode::BAD_REQUEST,
        // A config sent for testing is the client's; the saved live config is the operator's.
        ConnectorErrorCode::InvalidConfig if during_test => StatusCode::BAD_REQUEST,
        ConnectorErrorCode::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The store or a connector unavailable is logged by the request log around the
        // router, once per few seconds: during an outage every request fails alike.
        let logged_reason = match &self {
            ApiError::Internal(reason) => {
                tracing::error!(%reason, "internal error");
                None
            }
            ApiError::StoreUnavailable(reason) => Some(reason.clone()),
            ApiError::ConnectorUnavailable {
                connector_id,
                reason,
            } => Some(format!("connector {connector_id:?}: {reason}")),
            _ => None,
        };
        let code = self.code();
        metrics::counter!("http_refusals_total", "code" => code.clone()).increment(1);
        let mut body = json!({ "code": code, "message": self.to_string() });
        let mut retry_after = None;
        match &self {
            ApiError::Connector { error, .. } => {
                if let Some(data) = &error.data {
                    body["data"] = data.clone();
                }
                // The provider's own Retry-After, as the connector read it.
                retry_after = error.retry_after().map(|wait| wait.as_secs().to_string());
            }
            // Whether the provider was reached, for clients deciding whether to send again.
            ApiError::Upstream(_) => body["data"] = json!({ "providerContacted": false }),
            ApiError::OutcomeUnknown(_) => body["data"] = json!({ "providerContacted": true }),
            ApiError::RateLimited { retry_after_secs }
            | ApiError::ResendCooldown { retry_after_secs }
            | ApiError::ConsoleTestsLimited { retry_after_secs } => {
                body["data"] = json!({ "retryAfterSeconds": retry_after_secs });
                retry_after = Some(retry_after_secs.to_string());
            }
            ApiError::Verification(VerifyOutcome::Mismatch { attempts_left }) => {
                body["data"] = json!({ "attemptsLeft": attempts_left });
            }
            ApiError::Blocked { .. } => {
                body["data"] = self.blocked_data();
                if let ApiError::Blocked {
                    retry_after_secs: Some(seconds),
                    ..
                } = &self
                {
                    retry_after = Some(seconds.to_string());
                }
            }
            // The follower and the pool reconnect within a second or two.
            ApiError::StoreUnavailable(_) => retry_after = Some("1".to_owned()),
            // Slots free up as requests finish, which takes a provider round trip.
            ApiError::Overloaded { .. }
            | ApiError::ConnectorBusy { .. }
            | ApiError::ReportsOverLimit => retry_after = Some("1".to_owned()),
            // A plugin that comes back, or a store that answers again: a minute is plenty.
            ApiError::ReportRefused(
                crate::send::delivery_reports::ReportRefusal::Unavailable { .. },
            ) => retry_after = Some("60".to_owned()),
            _ => {}
        }
        let mut response = (self.status(), axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorReport {
            code,
            logged_reason,
        });
        if let Some(seconds) = retry_after.and_then(|seconds| seconds.parse().ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds);
        }
        if matches!(self, ApiError::BodyReadTimedOut { .. }) {
            // The rest of the body may still be on its way: the connection cannot be reused.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge {
                limit_bytes: crate::http::limits::MAX_REQUEST_BODY_BYTES,
            };
        }
        ApiError::InvalidRequestBody(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidRequestBody(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidRequestBody(rejection.body_text())
    }
}

fn verification_failure_message(outcome: &VerifyOutcome) -> String {
    match outcome {
        VerifyOutcome::NotFound | VerifyOutcome::Verified => {
            "no verification code is pending for this phone and type".to_owned()
        }
        VerifyOutcome::Expired => "the verification code has expired; ask for a new one".to_owned(),
        VerifyOutcome::ExceededMaxTry => "too many wrong attempts; ask for a new code".to_owned(),
        VerifyOutcome::Mismatch { attempts_left } => {
            format!("the verification code is wrong; {attempts_left} attempts left")
        }
    }
}

impl From<SendRefusal> for ApiError {
    fn from(refusal: SendRefusal) -> Self {
        match refusal {
            SendRefusal::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            SendRefusal::Cooldown { retry_after_secs } => {
                ApiError::ResendCooldown { retry_after_secs }
            }
        }
    }
}

impl From<NoLiveConnector> for ApiError {
    fn from(error: NoLiveConnector) -> Self {
        ApiError::NoLiveConnector(error.to_string())
    }
}

impl From<SendError> for ApiError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::NoLiveConnector(error) => ApiError::from(error),
            SendError::LiveConnectorUnavailable { .. } => {
                ApiError::NoLiveConnector(error.to_string())
            }
            SendError::ConfigUnreadable {
                connector_id,
                reason,
            } => ApiError::ConnectorUnavailable {
                connector_id,
                reason,
            },
            SendError::CountryNotAllowed { region } => ApiError::CountryNotAllowed { region },
            SendError::ConsoleTestsLimited { retry_after_secs } => {
                ApiError::ConsoleTestsLimited { retry_after_secs }
            }
            SendError::Refused(refusal) => ApiError::from(refusal),
            SendError::Blocked(blocked) => ApiError::Blocked {
                reason: blocked.reason.label(),
                retry_after_secs: blocked.retry_after_secs,
                block_id: blocked.block_id,
                message: blocked.message,
            },
            SendError::Store(error) => ApiError::from(error),
            SendError::ConnectorBusy {
                connector_id,
                limit,
            } => ApiError::ConnectorBusy {
                connector_id,
                limit,
            },
            SendError::Delivery { error, during_test } => {
                ApiError::from_delivery(error, during_test)
            }
            SendError::CodeNotGenerated(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<ConfigTestError> for ApiError {
    fn from(error: ConfigTestError) -> Self {
        match error {
            ConfigTestError::Connector(error) => ApiError::from(error),
            ConfigTestError::SavedConnectorOfAnotherFactory { .. } => {
                ApiError::InvalidRequestBody(error.to_string())
            }
            ConfigTestError::Send(error) => ApiError::from(error),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Rejected(outcome) => ApiError::Verification(outcome),
            VerifyError::Store(error) => ApiError::from(error),
        }
    }
}

impl From<ConnectorChangeError> for ApiError {
    fn from(error: ConnectorChangeError) -> Self {
        match error {
            ConnectorChangeError::FactoryNotFound { factory_id } => {
                ApiError::FactoryNotFound { factory_id }
            }
            ConnectorChangeError::NotFound { id } => ApiError::NotFound {
                entity: "connector",
                id,
            },
            ConnectorChangeError::InvalidConfig(error) => ApiError::from_config_under_test(error),
            ConnectorChangeError::ChangedConcurrently { id } => {
                ApiError::ChangedConcurrently { id }
            }
            ConnectorChangeError::FallbackIsLive { id } => ApiError::FallbackIsLive { id },
            ConnectorChangeError::Store(error) => ApiError::from(error),
            ConnectorChangeError::NoRandomness(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(reason) => ApiError::StoreUnavailable(reason),
            StoreError::Failed(_) => ApiError::Internal(error.to_string()),
            StoreError::ConfigUnreadable(unreadable) => ApiError::ConnectorUnavailable {
                connector_id: unreadable.connector_id,
                reason: unreadable.reason,
            },
        }
    }
}

/// `axum::Json`, but its rejections answer in the shape of [`ApiError`], and the body must be
/// a JSON object: serde's derive would otherwise read a struct from an array, by position.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|media_type| {
                let media_type = media_type.trim().to_ascii_lowercase();
                media_type == "application/json"
                    || (media_type.starts_with("application/") && media_type.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::InvalidRequestBody(
                "Expected request with `Content-Type: application/json`".to_owned(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit_bytes: crate::http::limits::MAX_REQUEST_BODY_BYTES,
                    }
                } else {
                    ApiError::InvalidRequestBody(rejection.body_text())
                }
            })?;
        match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(_) => {
                return Err(ApiError::InvalidRequestBody(
                    "the request body must be a JSON object".to_owned(),
                ))
            }
            None => {
                return Err(ApiError::InvalidRequestBody(
                    "the request body is empty: send a JSON object".to_owned(),
                ))
            }
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Json(value))
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with rejections in the shape of [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` with rejections in the shape of [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<crate::send::delivery_reports::ReportRefusal> for ApiError {
    fn from(refusal: crate::send::delivery_reports::ReportRefusal) -> Self {
        match refusal {
            crate::send::delivery_reports::ReportRefusal::Store(error) => ApiError::from(error),
            refusal => ApiError::ReportRefused(refusal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant, so a new one without its code in `all_codes` (and so without its
    /// series at zero) fails here: the match below must list every variant.
    fn one_of_each() -> Vec<ApiError> {
        let text = || "x".to_owned();
        let mut errors = vec![
            ApiError::NotFound {
                entity: "connector",
                id: text(),
            },
            ApiError::FactoryNotFound { factory_id: text() },
            ApiError::InvalidRequestBody(text()),
            ApiError::PayloadTooLarge { limit_bytes: 1 },
            ApiError::InvalidPhoneNumber(text()),
            ApiError::Upstream(text()),
            ApiError::OutcomeUnknown(text()),
            ApiError::NoLiveConnector(text()),
            ApiError::CountryNotAllowed { region: text() },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::ResendCooldown {
                retry_after_secs: 1,
            },
            ApiError::ConsoleTestsLimited {
                retry_after_secs: 1,
            },
            ApiError::Blocked {
                reason: "budget",
                retry_after_secs: None,
                block_id: text(),
                message: text(),
            },
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::RouteNotFound {
                method: text(),
                path: text(),
            },
            ApiError::MethodNotAllowed {
                method: text(),
                path: text(),
            },
            ApiError::ChangedConcurrently { id: text() },
            ApiError::FallbackIsLive { id: text() },
            ApiError::StoreUnavailable(text()),
            ApiError::ConnectorUnavailable {
                connector_id: text(),
                reason: text(),
            },
            ApiError::Overloaded { max_in_flight: 1 },
            ApiError::ConnectorBusy {
                connector_id: text(),
                limit: 1,
            },
            ApiError::BodyReadTimedOut { limit_secs: 1 },
            ApiError::RequestTimedOut { limit_secs: 1 },
            ApiError::ReportsOverLimit,
            ApiError::NoDeliveryReports,
            ApiError::Internal(text()),
        ];
        {
            use crate::send::delivery_reports::ReportRefusal;
            errors.extend([
                ApiError::ReportRefused(ReportRefusal::UnknownConnector(text())),
                ApiError::ReportRefused(ReportRefusal::BadToken(text())),
                ApiError::ReportRefused(ReportRefusal::Unavailable {
                    connector_id: text(),
                    reason: text(),
                }),
                ApiError::ReportRefused(ReportRefusal::Unsupported(text())),
                ApiError::ReportRefused(ReportRefusal::BadSignature(text())),
                ApiError::ReportRefused(ReportRefusal::Malformed(text())),
            ]);
        }
        errors.extend(
            [
                VerifyOutcome::NotFound,
                VerifyOutcome::Expired,
                VerifyOutcome::ExceededMaxTry,
                VerifyOutcome::Mismatch { attempts_left: 1 },
            ]
            .map(ApiError::Verification),
        );
        errors.extend(ConnectorErrorCode::ALL.map(|code| ApiError::Connector {
            error: ConnectorError::new(code, "x"),
            during_test: false,
        }));
        for error in &errors {
            // Exhaustive on purpose: a new variant must be added above.
            match error {
                ApiError::NotFound { .. }
                | ApiError::FactoryNotFound { .. }
                | ApiError::InvalidRequestBody(_)
                | ApiError::PayloadTooLarge { .. }
                | ApiError::InvalidPhoneNumber(_)
                | ApiError::Connector { .. }
                | ApiError::Upstream(_)
                | ApiError::OutcomeUnknown(_)
                | ApiError::NoLiveConnector(_)
                | ApiError::CountryNotAllowed { .. }
                | ApiError::RateLimited { .. }
                | ApiError::ResendCooldown { .. }
                | ApiError::ConsoleTestsLimited { .. }
                | ApiError::Blocked { .. }
                | ApiError::Verification(_)
                | ApiError::Unauthorized
                | ApiError::Forbidden
                | ApiError::RouteNotFound { .. }
                | ApiError::MethodNotAllowed { .. }
                | ApiError::ChangedConcurrently { .. }
                | ApiError::FallbackIsLive { .. }
                | ApiError::StoreUnavailable(_)
                | ApiError::ConnectorUnavailable { .. }
                | ApiError::Overloaded { .. }
                | ApiError::ConnectorBusy { .. }
                | ApiError::BodyReadTimedOut { .. }
                | ApiError::RequestTimedOut { .. }
                | ApiError::ReportRefused(_)
                | ApiError::ReportsOverLimit
                | ApiError::NoDeliveryReports
                | ApiError::Internal(_) => {}
            }
        }
        errors
    }

    #[test]
    fn every_code_is_among_all_codes() {
        let all = ApiError::all_codes();
        let errors = one_of_each();
        for error in &errors {
            assert!(all.contains(&error.code()), "{} is missing", error.code());
        }
        let produced: std::collections::BTreeSet<String> =
            errors.iter().map(ApiError::code).collect();
        assert_eq!(produced.len(), all.len(), "a code no error produces");
    }
}
