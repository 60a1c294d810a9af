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
}

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
    fn every_code_round_trips_through_its_string() {
        for code in ConnectorErrorCode::ALL {
            assert_eq!(ConnectorErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
        assert_eq!(ConnectorErrorCode::parse("something_new"), None);
    }
}
