//! Connector errors: Logto's `ConnectorErrorCodes`, with a message and optional JSON data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in Logto's vocabulary (`@logto/connector-kit` `ConnectorErrorCodes`).
///
/// The code crosses the plugin boundary as its snake_case string, so a host built against
/// an older plugin-api still understands a newer plugin: unknown codes arrive as
/// [`ConnectorErrorCode::General`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectorErrorCode {
    General,
    InvalidConfig,
    InvalidRequestParameters,
    InsufficientRequestParameters,
    InvalidResponse,
    TemplateNotFound,
    RateLimitExceeded,
    UsageLimitExceeded,
    NotImplemented,
}

impl ConnectorErrorCode {
    pub const ALL: [ConnectorErrorCode; 9] = [
        Self::General,
        Self::InvalidConfig,
        Self::InvalidRequestParameters,
        Self::InsufficientRequestParameters,
        Self::InvalidResponse,
        Self::TemplateNotFound,
        Self::RateLimitExceeded,
        Self::UsageLimitExceeded,
        Self::NotImplemented,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::InvalidConfig => "invalid_config",
            Self::InvalidRequestParameters => "invalid_request_parameters",
            Self::InsufficientRequestParameters => "insufficient_request_parameters",
            Self::InvalidResponse => "invalid_response",
            Self::TemplateNotFound => "template_not_found",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::UsageLimitExceeded => "usage_limit_exceeded",
            Self::NotImplemented => "not_implemented",
        }
    }

    /// Parses a code string; `None` for a code this build does not know.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.as_str() == code)
    }
}

impl fmt::Display for ConnectorErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The error a connector returns: a code, a human message, and optional structured data
/// (for example the field errors of an invalid config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorError {
    pub code: ConnectorErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl ConnectorError {
    pub fn new(code: ConnectorErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::General, message)
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::InvalidConfig, message)
    }

    pub fn invalid_response(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::InvalidResponse, message)
    }

    pub fn invalid_request_parameters(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::InvalidRequestParameters, message)
    }

    pub fn rate_limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::RateLimitExceeded, message)
    }

    pub fn usage_limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::UsageLimitExceeded, message)
    }

    pub fn template_not_found(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::TemplateNotFound, message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ConnectorErrorCode::NotImplemented, message)
    }

    /// How long the provider asked callers to wait (its `Retry-After`, see
    /// [`crate::HttpResponse::retry_after`]). The host's answer then carries `Retry-After` and
    /// `data.retryAfterSeconds`. Kept in `data` under [`RETRY_AFTER_DATA_KEY`], so it crosses
    /// the boundary to any 1.x host; non-object data is kept under `data.details`. Capped at a
    /// day: a provider's answer is not trusted to block callers longer.
    pub fn with_retry_after(self, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs().min(MAX_RETRY_AFTER_SECONDS);
        self.with_data_field(RETRY_AFTER_DATA_KEY, seconds.into())
    }

    /// Says the provider provably did not take the message: it refused the request as a
    /// whole before accepting anything (credentials refused, 429, 503 "try later", a
    /// throttling status), so sending it through another connector cannot deliver it twice.
    /// The host fails over to its standby connector only on such errors (and on a provider it
    /// could not reach). Never for a refusal of the message itself (a bad number), nor when
    /// the provider may have accepted it. Kept in `data` under [`PROVIDER_ACCEPTED_DATA_KEY`]
    /// (`false`), so it crosses the boundary to any 1.x host.
    pub fn not_accepted(self) -> Self {
        self.with_data_field(PROVIDER_ACCEPTED_DATA_KEY, false.into())
    }

    /// Whether [`ConnectorError::not_accepted`] marks it.
    pub fn is_not_accepted(&self) -> bool {
        self.data
            .as_ref()
            .and_then(|data| data.get(PROVIDER_ACCEPTED_DATA_KEY))
            .and_then(serde_json::Value::as_bool)
            == Some(false)
    }

    /// Adds a field to `data`, which becomes an object; non-object data is kept under
    /// `data.details`.
    fn with_data_field(mut self, key: &str, value: serde_json::Value) -> Self {
        let mut data = match self.data.take() {
            Some(serde_json::Value::Object(fields)) => fields,
            Some(other) => serde_json::Map::from_iter([("details".to_owned(), other)]),
            None => serde_json::Map::new(),
        };
        data.insert(key.to_owned(), value);
        self.data = Some(serde_json::Value::Object(data));
        self
    }

    /// [`ConnectorError::with_retry_after`] with the wait the provider's answer asks for, when
    /// it has a readable `Retry-After`; the error as it is otherwise.
    pub fn with_retry_after_from(self, response: &crate::HttpResponse) -> Self {
        match response.retry_after() {
            Some(wait) => self.with_retry_after(wait),
            None => self,
        }
    }

    /// The wait set by [`ConnectorError::with_retry_after`], if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.data
            .as_ref()?
            .get(RETRY_AFTER_DATA_KEY)?
            .as_u64()
            .map(|seconds| std::time::Duration::from_secs(seconds.min(MAX_RETRY_AFTER_SECONDS)))
    }
}

/// Where [`ConnectorError::with_retry_after`] keeps its seconds in `data`: the same key the
/// host's own 429 answers use.
pub const RETRY_AFTER_DATA_KEY: &str = "retryAfterSeconds";

/// Where [`ConnectorError::not_accepted`] keeps its mark in `data`.
pub const PROVIDER_ACCEPTED_DATA_KEY: &str = "providerAccepted";

/// The longest wait a connector error may ask for: one day.
pub const MAX_RETRY_AFTER_SECONDS: u64 = 24 * 60 * 60;

impl fmt::Display for ConnectorError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ConnectorError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_accepted_is_a_data_mark_beside_the_wait_and_other_data() {
        let plain = ConnectorError::general("busy");
        assert!(!plain.is_not_accepted());
        let marked = ConnectorError::rate_limit_exceeded("slow down")
            .with_retry_after(std::time::Duration::from_secs(7))
            .not_accepted();
        assert!(marked.is_not_accepted());
        assert_eq!(
            marked.retry_after(),
            Some(std::time::Duration::from_secs(7))
        );
        let mut with_text_data = ConnectorError::general("x");
        with_text_data.data = Some(serde_json::json!("raw"));
        let kept = with_text_data.not_accepted();
        assert!(kept.is_not_accepted());
        assert_eq!(kept.data.as_ref().unwrap()["details"], "raw");
    }

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ConnectorErrorCode::ALL {
            assert_eq!(ConnectorErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
        assert_eq!(ConnectorErrorCode::parse("something_new"), None);
    }

    #[test]
    fn a_retry_after_lives_in_data_beside_what_was_there() {
        let plain = ConnectorError::rate_limit_exceeded("slow down")
            .with_retry_after(std::time::Duration::from_secs(30));
        assert_eq!(
            plain.data,
            Some(serde_json::json!({ "retryAfterSeconds": 30 }))
        );
        assert_eq!(
            plain.retry_after(),
            Some(std::time::Duration::from_secs(30))
        );

        let with_fields = ConnectorError::rate_limit_exceeded("slow down")
            .with_data(serde_json::json!({ "providerCode": 20429 }))
            .with_retry_after(std::time::Duration::from_secs(5));
        assert_eq!(
            with_fields.data,
            Some(serde_json::json!({ "providerCode": 20429, "retryAfterSeconds": 5 }))
        );

        let with_list = ConnectorError::general("x")
            .with_data(serde_json::json!([1, 2]))
            .with_retry_after(std::time::Duration::from_secs(1));
        assert_eq!(
            with_list.data,
            Some(serde_json::json!({ "details": [1, 2], "retryAfterSeconds": 1 }))
        );

        let capped = ConnectorError::general("x")
            .with_retry_after(std::time::Duration::from_secs(10 * MAX_RETRY_AFTER_SECONDS));
        assert_eq!(
            capped.retry_after(),
            Some(std::time::Duration::from_secs(MAX_RETRY_AFTER_SECONDS))
        );
        assert_eq!(ConnectorError::general("x").retry_after(), None);
    }

    #[test]
    fn a_retry_after_crosses_the_boundary() {
        let error = ConnectorError::rate_limit_exceeded("slow down")
            .with_retry_after(std::time::Duration::from_secs(12));
        let crossed = ConnectorError::from(crate::ffi::FfiError::from(error.clone()));
        assert_eq!(crossed, error);
        assert_eq!(
            crossed.retry_after(),
            Some(std::time::Duration::from_secs(12))
        );
    }
}
