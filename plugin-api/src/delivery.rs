//! Delivery reports: the provider's word, after the send, on whether a message arrived.
//!
//! The host gives every send an id of its own and a URL for the provider's reports on it
//! ([`SendContext`], read through [`crate::SendProgress::message_id`] and
//! [`crate::SendProgress::delivery_report_url`]): a connector that supports reports puts the
//! URL in its request (Twilio's `StatusCallback`, Vonage's `callback`, Kannel's `dlr-url`).
//! When a report arrives there, the host hands it to the connector as an [`InboundReport`];
//! [`crate::SmsConnector::parse_delivery_report`] checks its signature with the connector's own
//! secret and reads it into [`DeliveryReport`]s in the unified [`DeliveryStatus`].
//!
//! The URL carries the host's own token for the message, checked before the connector sees
//! the report: a provider that signs nothing (Kannel) is covered by it, and one that signs
//! (Twilio) is checked twice.

use std::fmt;

use abi_stable::std_types::{RString, RVec, Tuple2};
use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

/// What the host knows about a send that the message does not say. Laid out for the
/// boundary: the plugin reads the host's copy in place.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Default)]
pub struct SendContext {
    message_id: RString,
    /// Empty: the host takes no delivery reports (no `--public-url`).
    delivery_report_url: RString,
}

impl SendContext {
    pub fn new(message_id: impl Into<String>, delivery_report_url: Option<String>) -> Self {
        Self {
            message_id: message_id.into().into(),
            delivery_report_url: delivery_report_url.unwrap_or_default().into(),
        }
    }

    /// The host's id for this message (a UUIDv7), the same in its API and its log.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Where the provider should send its delivery reports for this message; `None` when
    /// the host takes none.
    pub fn delivery_report_url(&self) -> Option<&str> {
        Some(self.delivery_report_url.as_str()).filter(|url| !url.is_empty())
    }
}

impl fmt::Debug for SendContext {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SendContext")
            .field("message_id", &self.message_id())
            .field("delivery_report_url", &self.delivery_report_url())
            .finish()
    }
}

/// A delivery report as the host received it: the method, the URL the provider called (the
/// host's public URL, as the provider signed it), the headers and the body. Laid out for the
/// boundary.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct InboundReport {
    method: RString,
    url: RString,
    headers: RVec<Tuple2<RString, RString>>,
    body: RVec<u8>,
}

impl InboundReport {
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into().into(),
            url: url.into().into(),
            headers: RVec::new(),
            body: RVec::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push(Tuple2(name.into().into(), value.into().into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into().into();
        self
    }

    /// `GET` or `POST`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The full URL the provider called, query included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|Tuple2(header, _)| header.as_str().eq_ignore_ascii_case(name))
            .map(|Tuple2(_, value)| value.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Every header, name and value, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|Tuple2(name, value)| (name.as_str(), value.as_str()))
    }

    /// The URL's query parameters, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let query = self.url.split_once('?').map_or("", |(_, query)| query);
        let query = query.split_once('#').map_or(query, |(query, _)| query);
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    /// The body's parameters when it is a form (`application/x-www-form-urlencoded`), in
    /// order; empty otherwise.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        let is_form = self.header("content-type").is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if !is_form {
            return Vec::new();
        }
        form_urlencoded::parse(&self.body)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    /// A report's parameters wherever the provider put them: the form body's, then the
    /// query's (a GET report has only these).
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.form_pairs()
            .into_iter()
            .chain(self.query_pairs())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

impl fmt::Debug for InboundReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("InboundReport")
            .field("method", &self.method())
            .field("url", &self.url())
            .field("body", &String::from_utf8_lossy(self.body()))
            .finish()
    }
}

/// Where a message stands, in one vocabulary for every provider. Ordered: a report never
/// moves a message back (`queued < sent < delivered | undelivered | failed`); `unknown` is
/// a report the connector could not place, kept but never over a known status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Accepted by the provider, not yet handed on.
    Queued,
    /// Handed to the carrier.
    Sent,
    /// The handset received it.
    Delivered,
    /// The carrier gave up: a wrong or unreachable number, expired.
    Undelivered,
    /// The provider or carrier refused it.
    Failed,
    Unknown,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 6] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the message can move on from here (`delivered`, `undelivered` and `failed`
    /// are final).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Undelivered | Self::Failed)
    }

    /// Whether a message at `self` may move to `next`: only forward, never out of a final
    /// status, and `unknown` never over a known one.
    pub fn may_become(self, next: DeliveryStatus) -> bool {
        fn rank(status: DeliveryStatus) -> u8 {
            match status {
                DeliveryStatus::Unknown => 0,
                DeliveryStatus::Queued => 1,
                DeliveryStatus::Sent => 2,
                DeliveryStatus::Delivered
                | DeliveryStatus::Undelivered
                | DeliveryStatus::Failed => 3,
            }
        }
        !self.is_final() && rank(next) > rank(self)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One status a delivery report gives for one message (Vonage reports each part of a long
/// message on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    /// The provider's id for the message or part, as its send answer gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    pub status: DeliveryStatus,
    /// The provider's own word for it (`delivered`, `DELIVRD`, `1`), kept as it came.
    pub provider_status: String,
    /// The provider's or carrier's error code, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl DeliveryReport {
    pub fn new(status: DeliveryStatus, provider_status: impl Into<String>) -> Self {
        Self {
            provider_message_id: None,
            status,
            provider_status: provider_status.into(),
            error_code: None,
        }
    }

    pub fn with_provider_message_id(mut self, id: impl Into<String>) -> Self {
        self.provider_message_id = Some(id.into()).filter(|id: &String| !id.is_empty());
        self
    }

    pub fn with_error_code(mut self, code: impl Into<String>) -> Self {
        self.error_code = Some(code.into()).filter(|code: &String| !code.is_empty());
        self
    }
}

/// Why a report was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryReportError {
    /// The connector takes no delivery reports (the default).
    Unsupported,
    /// The signature is missing or wrong: the host answers 403.
    BadSignature(String),
    /// Not a report this connector understands: the host answers 400.
    Malformed(String),
}

impl DeliveryReportError {
    /// The code the error crosses the boundary with.
    #[doc(hidden)]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported => "not_implemented",
            Self::BadSignature(_) => "invalid_signature",
            Self::Malformed(_) => "invalid_request_parameters",
        }
    }

    #[doc(hidden)]
    pub fn from_code(code: &str, message: String) -> Self {
        match code {
            "not_implemented" => Self::Unsupported,
            "invalid_signature" => Self::BadSignature(message),
            _ => Self::Malformed(message),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Unsupported => "this connector takes no delivery reports",
            Self::BadSignature(message) | Self::Malformed(message) => message,
        }
    }
}

impl fmt::Display for DeliveryReportError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for DeliveryReportError {}

/// A connector's delivery reports, for operators (the factory's metadata,
/// `deliveryReports`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReportSupport {
    /// How the connector authenticates a report beyond the host's token: for example
    /// `X-Twilio-Signature (HMAC-SHA1 with the auth token)`, or `none` for a provider that
    /// signs nothing.
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_only_moves_forward() {
        use DeliveryStatus::*;
        assert!(Queued.may_become(Sent));
        assert!(Sent.may_become(Delivered));
        assert!(Queued.may_become(Undelivered));
        assert!(Unknown.may_become(Queued));
        assert!(!Sent.may_become(Queued), "no downgrade");
        assert!(!Delivered.may_become(Failed), "final");
        assert!(!Failed.may_become(Delivered), "final");
        assert!(
            !Sent.may_become(Unknown),
            "unknown never over a known status"
        );
        assert!(!Sent.may_become(Sent), "the same status is no change");
        for status in DeliveryStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.as_str());
        }
    }

    #[test]
    fn parameters_come_from_the_form_body_or_the_query() {
        let form = InboundReport::new("POST", "https://hosts.example/dlr/abc?m=1&t=x%20y")
            .with_header(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .with_body("MessageSid=SM1&MessageStatus=delivered");
        assert_eq!(
            form.parameter("MessageStatus").as_deref(),
            Some("delivered")
        );
        assert_eq!(form.parameter("t").as_deref(), Some("x y"));
        assert_eq!(form.query_pairs().len(), 2);
        let json = InboundReport::new("POST", "https://hosts.example/dlr/abc")
            .with_header("Content-Type", "application/json")
            .with_body("MessageSid=SM1");
        assert!(json.form_pairs().is_empty(), "not a form");
        assert_eq!(json.parameter("MessageSid"), None);
    }

    #[test]
    fn errors_cross_as_codes() {
        for error in [
            DeliveryReportError::Unsupported,
            DeliveryReportError::BadSignature("wrong".to_owned()),
            DeliveryReportError::Malformed("no status".to_owned()),
        ] {
            let crossed = DeliveryReportError::from_code(error.code(), error.message().to_owned());
            assert_eq!(crossed, error);
        }
    }
}
