//! The sans-IO send protocol: a connector describes HTTP requests, the host performs them.
//!
//! A send is a small state machine. The host calls [`crate::SmsConnector::step`] with
//! [`SendProgress::start`]; the connector answers [`Step::Http`] (a request to perform plus
//! opaque state to hand back) or [`Step::Done`]. After each response the host calls `step`
//! again with the state and the response, until `Done` or an error.

use serde::{Deserialize, Serialize};

/// An HTTP request for the host to perform. The host owns timeouts, TLS and pooling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(url: impl Into<String>, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".to_owned(),
            url: url.into(),
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `POST` with an `application/x-www-form-urlencoded` body.
    pub fn post_form(url: impl Into<String>, fields: &[(&str, &str)]) -> Self {
        Self::post(url, "application/x-www-form-urlencoded", url_encode(fields))
    }

    /// `POST` with a JSON body.
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self::post(url, "application/json", body.to_string())
    }

    /// `GET` with the query parameters URL-encoded onto `url`.
    pub fn get_with_query(url: &str, query: &[(&str, &str)]) -> Self {
        let separator = if url.contains('?') { '&' } else { '?' };
        Self::get(format!("{url}{separator}{}", url_encode(query)))
    }

    /// Adds HTTP basic authentication.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        use base64::Engine;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("Authorization", format!("Basic {credentials}"))
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every header, in order, repeated names included.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The first header with this name, compared case-insensitively. (Named apart from the
    /// builder [`HttpRequest::header`], which adds one.)
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// `key=value&...`, form-URL-encoded.
pub fn url_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The response the host got for an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response without headers; add them with [`HttpResponse::with_header`].
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body's first `max_chars` characters on one line, for error messages.
    pub fn body_excerpt(&self, max_chars: usize) -> String {
        let text: String = self
            .body_text()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        match text.char_indices().nth(max_chars) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }

    /// The body parsed as JSON; `invalid_response` when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            crate::ConnectorError::invalid_response(format!(
                "the provider answered {} with a body that is not the expected JSON ({error}): {}",
                self.status,
                self.body_excerpt(200)
            ))
        })
    }
}

/// Where a send stands when the host calls `step`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendProgress {
    /// `Null` on the first call; afterwards the state the connector returned with its request.
    pub state: serde_json::Value,
    /// `None` on the first call; afterwards the response to the connector's last request.
    pub last_response: Option<HttpResponse>,
}

impl SendProgress {
    pub fn start() -> Self {
        Self::default()
    }
}

/// What the host should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Perform this request, then call `step` again with `state` and the response.
    Http {
        request: HttpRequest,
        state: serde_json::Value,
    },
    /// The message was handed to the provider.
    Done(SendReceipt),
}

impl Step {
    /// A request that needs no state carried to the next step.
    pub fn http(request: HttpRequest) -> Self {
        Step::Http {
            request,
            state: serde_json::Value::Null,
        }
    }

    /// The request to perform, when the send goes on.
    pub fn request(&self) -> Option<&HttpRequest> {
        match self {
            Step::Http { request, .. } => Some(request),
            Step::Done(_) => None,
        }
    }

    /// The receipt, when the send is done.
    pub fn receipt(&self) -> Option<&SendReceipt> {
        match self {
            Step::Http { .. } => None,
            Step::Done(receipt) => Some(receipt),
        }
    }
}

/// Proof that the provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendReceipt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
}

impl SendReceipt {
    /// The provider's id for the message, when it gave one.
    pub fn provider_message_id(&self) -> Option<&str> {
        self.provider_message_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_read_what_the_builders_wrote() {
        let request =
            HttpRequest::post_json("https://sms.example.com/send", &serde_json::json!({}))
                .header("X-Api-Key", "k");
        assert_eq!(request.method(), "POST");
        assert_eq!(request.url(), "https://sms.example.com/send");
        assert_eq!(
            request.headers().collect::<Vec<_>>(),
            [("Content-Type", "application/json"), ("X-Api-Key", "k")]
        );
        assert_eq!(request.header_value("x-api-key"), Some("k"));
        assert_eq!(request.header_value("Authorization"), None);
        assert_eq!(request.body(), b"{}");

        let response = HttpResponse::new(201, "{}").with_header("Content-Type", "application/json");
        assert_eq!(response.status(), 201);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body, b"{}");

        let step = Step::http(request.clone());
        assert_eq!(step.request(), Some(&request));
        assert_eq!(step.receipt(), None);
        let done = Step::Done(SendReceipt {
            provider_message_id: Some("SM1".to_owned()),
        });
        assert_eq!(done.request(), None);
        assert_eq!(
            done.receipt().and_then(SendReceipt::provider_message_id),
            Some("SM1")
        );
    }
}
