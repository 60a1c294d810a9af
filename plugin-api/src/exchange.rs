//! The sans-IO send protocol: a connector describes HTTP requests, the host performs them.
//!
//! A send is a small state machine. The host calls [`crate::SmsConnector::step`] with
//! [`SendProgress::start`]; the connector answers [`Step::http`] (a request to perform, plus
//! optional state to hand back: [`Step::http_with_state`]) or [`Step::done`]. After each
//! response the host calls `step` again with the state and the response, until done or an
//! error.
//!
//! These types are laid out for the plugin boundary (`#[repr(C)]`, abi_stable's `RString` and
//! `RVec`, private fields): a step built in the plugin is read by the host where it is, and a
//! response built by the host is read by the plugin where it is; nothing is copied or
//! re-encoded on the way. Each buffer is freed by the allocator that made it. Vendors use the
//! builders and accessors; the layout is part of plugin-api 1.x and never changes.

use std::fmt;

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use abi_stable::StableAbi;

/// Headers as they cross the boundary: name and value pairs, in order.
type BoundaryHeaders = RVec<Tuple2<RString, RString>>;

fn header_pairs(headers: &BoundaryHeaders) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .map(|Tuple2(name, value)| (name.as_str(), value.as_str()))
}

/// An HTTP request for the host to perform. The host owns timeouts, TLS and pooling.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    method: RString,
    url: RString,
    headers: BoundaryHeaders,
    body: RVec<u8>,
}

impl HttpRequest {
    /// A request with any method (`GET`, `POST`, `PUT`, ...), no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into().into(),
            url: url.into().into(),
            headers: RVec::new(),
            body: RVec::new(),
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: impl Into<String>, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url)
            .header("Content-Type", content_type)
            .with_body(body)
    }

    /// Adds a header (a repeated name adds another value).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push(Tuple2(name.into().into(), value.into().into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into().into();
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
        header_pairs(&self.headers)
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

    /// The body as text, with invalid UTF-8 replaced (for tests and messages).
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("HttpRequest")
            .field("method", &self.method())
            .field("url", &self.url())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body_text())
            .finish()
    }
}

/// `key=value&...`, form-URL-encoded.
pub fn url_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `text` on one line, control characters removed, cut to `max_chars` characters.
fn one_line(text: &str, max_chars: usize) -> String {
    let text = text
        .split_whitespace()
        .map(|word| word.replace(char::is_control, ""))
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The response the host got for an [`HttpRequest`].
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    status: u16,
    headers: BoundaryHeaders,
    body: RVec<u8>,
}

impl HttpResponse {
    /// A response with no headers (add them with [`HttpResponse::with_header`]).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: RVec::new(),
            body: body.into().into(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .push(Tuple2(name.into().into(), value.into().into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header, in order, repeated names included.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        header_pairs(&self.headers)
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The provider's `Retry-After`: delta-seconds (`120`) or an HTTP date, for
    /// [`crate::ConnectorError::with_retry_after`]. `None` when absent or unreadable; a date in
    /// the past is a wait of zero.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(std::time::Duration::from_secs(seconds));
        }
        let date = httpdate::parse_http_date(value).ok()?;
        Some(
            date.duration_since(std::time::SystemTime::now())
                .unwrap_or_default(),
        )
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body's first `max_chars` characters on one line, control characters removed. For
    /// an error answer prefer [`HttpResponse::error_summary`]: a provider's error page may
    /// echo the credential it was sent.
    pub fn body_excerpt(&self, max_chars: usize) -> String {
        one_line(&self.body_text(), max_chars)
    }

    /// What an error answer says, for a connector's error message, without echoing the body:
    /// a JSON body gives only its error code and message fields (`code`, `message`, `error`,
    /// `error_description`, `detail`, `title`, ... at the top level, under `error` or in the
    /// first of `errors`), each cut to 120 characters; any other body a one-line excerpt of
    /// at most 100 characters. Control characters are removed. Providers' error pages may
    /// quote the credential they were sent; the host also redacts configured secrets from
    /// errors, but a connector should not hand them over in the first place.
    pub fn error_summary(&self) -> String {
        const MAX_FIELD_CHARS: usize = 120;
        const MAX_EXCERPT_CHARS: usize = 100;
        const FIELDS: [&str; 14] = [
            "code",
            "error_code",
            "errorCode",
            "status_code",
            "type",
            "message",
            "error",
            "error_description",
            "errorMessage",
            "error-text",
            "error_text",
            "detail",
            "title",
            "description",
        ];
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&self.body) else {
            if self.looks_like_html() {
                // An error page: its title, never its text (where echoed credentials sit).
                return match self.html_title() {
                    Some(title) => format!(
                        "an HTML page titled {:?}",
                        one_line(&title, MAX_FIELD_CHARS)
                    ),
                    None => "an HTML page".to_owned(),
                };
            }
            let excerpt = self.body_excerpt(MAX_EXCERPT_CHARS);
            return if excerpt.is_empty() {
                "(empty body)".to_owned()
            } else {
                excerpt
            };
        };
        let places = [
            Some(&body),
            body.get("error").filter(|error| error.is_object()),
            body.get("errors").and_then(|errors| errors.get(0)),
        ];
        let mut parts: Vec<String> = Vec::new();
        for place in places.into_iter().flatten() {
            for field in FIELDS {
                let text = match place.get(field) {
                    Some(serde_json::Value::String(text)) => text.clone(),
                    Some(serde_json::Value::Number(number)) => number.to_string(),
                    _ => continue,
                };
                parts.push(format!("{field}={}", one_line(&text, MAX_FIELD_CHARS)));
            }
        }
        if parts.is_empty() {
            "(a JSON body without an error code or message)".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn looks_like_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|value| value.to_ascii_lowercase().contains("html"))
            || self.body_text().trim_start().starts_with('<')
    }

    fn html_title(&self) -> Option<String> {
        let text = self.body_text();
        // ASCII lower-casing keeps every byte offset.
        let lower = text.to_ascii_lowercase();
        let open = lower.find("<title")?;
        let start = open + lower[open..].find('>')? + 1;
        let end = start + lower[start..].find("</title")?;
        Some(text[start..end].to_owned())
    }

    /// The body parsed as JSON; `invalid_response` when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, crate::ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            crate::ConnectorError::invalid_response(format!(
                "the provider answered {} with a body that is not the expected JSON ({error}): {}",
                self.status,
                self.error_summary()
            ))
        })
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body", &self.body_text())
            .finish()
    }
}

/// Where a send stands when the host calls `step`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendProgress<'response> {
    state: serde_json::Value,
    last_response: Option<&'response HttpResponse>,
    notes: NoteSink<'response>,
    context: Option<&'response crate::SendContext>,
}

/// A step's notes on what it did, for the operator's debug log (see [`SendProgress::note`]).
/// The host collects them only while its debug log is on for plugins; a test collects them
/// with [`SendProgress::with_notes`].
#[derive(Debug, Default)]
pub struct StepNotes {
    collected: std::sync::Mutex<CollectedNotes>,
}

#[derive(Debug, Default)]
struct CollectedNotes {
    notes: Vec<String>,
    left_out: usize,
}

impl StepNotes {
    /// Most notes one step keeps; later ones are counted, not kept.
    pub const MAX_NOTES: usize = 16;
    /// Longest note kept, in characters; longer ones are cut.
    pub const MAX_NOTE_CHARS: usize = 500;

    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, text: String) {
        // A poisoned lock only means a panic elsewhere in this step; the notes are still text.
        let mut collected = self
            .collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if collected.notes.len() >= Self::MAX_NOTES {
            collected.left_out += 1;
            return;
        }
        collected.notes.push(one_line(&text, Self::MAX_NOTE_CHARS));
    }

    /// The notes so far, taken out; a last note says how many were left out over the cap.
    pub fn take(&self) -> Vec<String> {
        let mut collected = self
            .collected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut notes = std::mem::take(&mut collected.notes);
        let left_out = std::mem::take(&mut collected.left_out);
        if left_out > 0 {
            notes.push(format!(
                "{left_out} more notes left out (at most {} a step)",
                Self::MAX_NOTES
            ));
        }
        notes
    }
}

/// Where [`SendProgress::note`] writes: nowhere, or a [`StepNotes`]. Not part of a progress's
/// identity: two progresses with the same state and response are equal.
#[derive(Debug, Clone, Copy, Default)]
struct NoteSink<'notes>(Option<&'notes StepNotes>);

impl PartialEq for NoteSink<'_> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<'response> SendProgress<'response> {
    /// The first call of a send.
    pub fn start() -> Self {
        Self::default()
    }

    /// A later call: the state the connector returned with its request, and the response.
    pub fn after(state: serde_json::Value, response: &'response HttpResponse) -> Self {
        Self {
            state,
            last_response: Some(response),
            notes: NoteSink::default(),
            context: None,
        }
    }

    /// The same progress, with the host's context for the send (test drivers; the host does
    /// this itself).
    pub fn with_context(self, context: &'response crate::SendContext) -> Self {
        Self {
            context: Some(context),
            ..self
        }
    }

    /// The host's id for this message (1.2 hosts; `None` from older hosts and test drivers
    /// that give no context).
    pub fn message_id(&self) -> Option<&'response str> {
        self.context.map(crate::SendContext::message_id)
    }

    /// Where the provider should send delivery reports for this message: put it in the
    /// request (Twilio's `StatusCallback`, Vonage's `callback`, Kannel's `dlr-url`). `None`
    /// when the host takes none (no `--public-url`) or is older than 1.2.
    pub fn delivery_report_url(&self) -> Option<&'response str> {
        self.context
            .and_then(|context| context.delivery_report_url())
    }

    /// The same progress, with its notes collected in `notes` (test drivers; the host does
    /// this itself while its debug log is on).
    pub fn with_notes(self, notes: &'response StepNotes) -> Self {
        Self {
            notes: NoteSink(Some(notes)),
            ..self
        }
    }

    /// Whether notes are collected now: build an expensive note only when this is true.
    pub fn notes_wanted(&self) -> bool {
        self.notes.0.is_some()
    }

    /// A note on what this step did ("fetched a token for region eu", "the provider answered
    /// queued"), logged by the host at debug level with the connector's id; a plugin cannot
    /// share the host's log, so this is its channel. Never put a secret, a full phone number
    /// or the message text in a note: the host masks the config's secret values, but nothing
    /// else. One line each, at most [`StepNotes::MAX_NOTE_CHARS`] characters and
    /// [`StepNotes::MAX_NOTES`] notes a step. Does nothing when notes are not collected.
    pub fn note(&self, text: impl Into<String>) {
        if let Some(notes) = self.notes.0 {
            notes.push(text.into());
        }
    }

    /// `Null` on the first call; afterwards the state the connector returned with its request.
    pub fn state(&self) -> &serde_json::Value {
        &self.state
    }

    /// `None` on the first call; afterwards the response to the connector's last request.
    pub fn last_response(&self) -> Option<&'response HttpResponse> {
        self.last_response
    }
}

/// What the host should do next: perform a request, or nothing (the send is done).
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq)]
pub struct Step {
    kind: StepKind,
}

#[repr(u8)]
#[derive(StableAbi, Clone, PartialEq)]
enum StepKind {
    /// Perform the request, then call `step` again with the state and the response. The state
    /// crosses as JSON text, empty for `Null`, so single-step connectors never pay for JSON.
    Http {
        request: HttpRequest,
        state_json: RString,
    },
    /// The message was handed to the provider.
    Done { receipt: SendReceipt },
}

impl Step {
    /// Perform this request; no state is carried to the next step.
    pub fn http(request: HttpRequest) -> Self {
        Self {
            kind: StepKind::Http {
                request,
                state_json: RString::new(),
            },
        }
    }

    /// Perform this request; `state` comes back in [`SendProgress::state`] with the response.
    pub fn http_with_state(request: HttpRequest, state: serde_json::Value) -> Self {
        let state_json = if state.is_null() {
            RString::new()
        } else {
            state.to_string().into()
        };
        Self {
            kind: StepKind::Http {
                request,
                state_json,
            },
        }
    }

    /// Since 1.3: this step's request cannot hand the message to the provider (a token fetch,
    /// a lookup, a balance check made before the message step). When it fails in any way,
    /// even by a timeout after the request went out, the provider provably does not have the
    /// message, and the host may send it through its standby connector. Mark only requests
    /// that never carry the message; without the mark the host assumes any request may send
    /// it. No effect on [`Step::done`].
    ///
    /// The mark travels inside the step's state text (no layout change), so a plugin that
    /// uses it loads on any 1.x host; a host before 1.3 hands it back unread.
    pub fn sends_no_message(self) -> Self {
        match self.kind {
            StepKind::Http {
                request,
                state_json,
            } => {
                let state = parse_state(&state_json).unwrap_or(serde_json::Value::Null);
                let mut envelope = serde_json::Map::new();
                envelope.insert(
                    STEP_MARKS_KEY.to_owned(),
                    serde_json::json!({ "sendsNoMessage": true }),
                );
                envelope.insert("state".to_owned(), state);
                Self {
                    kind: StepKind::Http {
                        request,
                        state_json: serde_json::Value::Object(envelope).to_string().into(),
                    },
                }
            }
            done @ StepKind::Done { .. } => Self { kind: done },
        }
    }

    /// Whether this step's request may hand the message to the provider: true unless the
    /// connector marked it [`Step::sends_no_message`] (and for a done step, which has no
    /// request, false).
    pub fn may_send_message(&self) -> bool {
        match &self.kind {
            StepKind::Http { state_json, .. } => !marks_sends_no_message(state_json),
            StepKind::Done { .. } => false,
        }
    }

    /// The message was handed to the provider.
    pub fn done(receipt: SendReceipt) -> Self {
        Self {
            kind: StepKind::Done { receipt },
        }
    }

    /// The request to perform, when the send goes on.
    pub fn request(&self) -> Option<&HttpRequest> {
        match &self.kind {
            StepKind::Http { request, .. } => Some(request),
            StepKind::Done { .. } => None,
        }
    }

    /// The receipt, when the send is done.
    pub fn receipt(&self) -> Option<&SendReceipt> {
        match &self.kind {
            StepKind::Http { .. } => None,
            StepKind::Done { receipt } => Some(receipt),
        }
    }

    /// The state to hand back with the response, as the connector gave it.
    pub fn state(&self) -> Result<serde_json::Value, crate::ConnectorError> {
        state_from_json(self.state_json())
    }

    /// The state as JSON text (empty for `Null`): what the host hands back, unparsed.
    pub(crate) fn state_json(&self) -> &str {
        match &self.kind {
            StepKind::Http { state_json, .. } => state_json,
            StepKind::Done { .. } => "",
        }
    }

    /// The state text exactly as it crosses the boundary (empty for `Null`; a marked step's
    /// envelope included): for a host that relays steps through another process. Not for
    /// vendors.
    #[doc(hidden)]
    pub fn boundary_state_json(&self) -> &str {
        self.state_json()
    }

    /// A request step rebuilt from its boundary parts ([`Step::boundary_state_json`]): for a
    /// host that relays steps through another process. Not for vendors.
    #[doc(hidden)]
    pub fn from_boundary_parts(request: HttpRequest, state_json: String) -> Self {
        Self {
            kind: StepKind::Http {
                request,
                state_json: state_json.into(),
            },
        }
    }

    /// The receipt, taken out, when the send is done.
    pub fn into_receipt(self) -> Option<SendReceipt> {
        match self.kind {
            StepKind::Http { .. } => None,
            StepKind::Done { receipt } => Some(receipt),
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StepKind::Http {
                request,
                state_json,
            } => formatter
                .debug_struct("Step::Http")
                .field("request", request)
                .field("state", &state_json.as_str())
                .finish(),
            StepKind::Done { receipt } => {
                formatter.debug_tuple("Step::Done").field(receipt).finish()
            }
        }
    }
}

/// The key of the envelope [`Step::sends_no_message`] wraps a step's state in:
/// `{"plugin-api/step": {"sendsNoMessage": true}, "state": <the connector's state>}`. Reserved:
/// a connector's own state never takes this shape.
const STEP_MARKS_KEY: &str = "plugin-api/step";

/// Whether the state text is the envelope with the "sends no message" mark. Cheap for
/// unmarked steps: their text does not start with the envelope.
fn marks_sends_no_message(state_json: &str) -> bool {
    state_json.starts_with(STEP_ENVELOPE_START)
        && serde_json::from_str::<serde_json::Value>(state_json)
            .ok()
            .and_then(|value| value.get(STEP_MARKS_KEY)?.get("sendsNoMessage")?.as_bool())
            == Some(true)
}

const STEP_ENVELOPE_START: &str = "{\"plugin-api/step\":";

fn parse_state(state_json: &str) -> Result<serde_json::Value, serde_json::Error> {
    if state_json.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(state_json)
}

/// Empty text is the `Null` state; a marked step's envelope is opened to the connector's own
/// state.
pub(crate) fn state_from_json(
    state_json: &str,
) -> Result<serde_json::Value, crate::ConnectorError> {
    let state = parse_state(state_json).map_err(|error| {
        crate::ConnectorError::general(format!("send state is not valid JSON: {error}"))
    })?;
    if !state_json.starts_with(STEP_ENVELOPE_START) {
        return Ok(state);
    }
    match state {
        serde_json::Value::Object(mut envelope) if envelope.contains_key(STEP_MARKS_KEY) => {
            Ok(envelope.remove("state").unwrap_or(serde_json::Value::Null))
        }
        other => Ok(other),
    }
}

/// Proof that the provider accepted the message.
#[repr(C)]
#[derive(StableAbi, Clone, PartialEq, Eq, Default)]
pub struct SendReceipt {
    provider_message_id: ROption<RString>,
}

impl SendReceipt {
    /// A receipt without a provider id.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receipt carrying the provider's id for the message.
    pub fn with_provider_message_id(id: impl Into<String>) -> Self {
        Self {
            provider_message_id: ROption::RSome(id.into().into()),
        }
    }

    /// A receipt carrying the provider's id, when its answer had one.
    pub fn with_optional_provider_message_id(id: Option<String>) -> Self {
        Self {
            provider_message_id: id.map(RString::from).into(),
        }
    }

    /// The provider's id for the message, when it gave one.
    pub fn provider_message_id(&self) -> Option<&str> {
        self.provider_message_id
            .as_ref()
            .into_option()
            .map(RString::as_str)
    }
}

impl fmt::Debug for SendReceipt {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SendReceipt")
            .field("provider_message_id", &self.provider_message_id())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn an_error_summary_gives_structured_fields_not_the_body() {
        let twilio = HttpResponse::new(
            401,
            r#"{"code": 20003, "message": "Authenticate", "more_info": "https://x", "echo": "Basic QUM6c2VjcmV0"}"#,
        );
        assert_eq!(twilio.error_summary(), "code=20003, message=Authenticate");
        let nested = HttpResponse::new(
            400,
            r#"{"error": {"code": "bad_number", "message": "no\u001b[2Jpe"}, "request": {"key": "k"}}"#,
        );
        assert_eq!(nested.error_summary(), "code=bad_number, message=no[2Jpe");
        let listed = HttpResponse::new(422, r#"{"errors": [{"detail": "too long"}]}"#);
        assert_eq!(listed.error_summary(), "detail=too long");
        let opaque = HttpResponse::new(401, r#"{"apiKey": "sk_live_123"}"#);
        assert_eq!(
            opaque.error_summary(),
            "(a JSON body without an error code or message)"
        );
        let page = "<html><TITLE>401\x1b]0;owned\x07 Unauthorized</title>key sk_live_1</html>";
        assert_eq!(
            HttpResponse::new(401, page).error_summary(),
            r#"an HTML page titled "401]0;owned Unauthorized""#
        );
        let text = "Authorization failed \x1b]0;owned\x07 ".to_owned() + &"x".repeat(500);
        let summary = HttpResponse::new(403, text).error_summary();
        assert!(summary.chars().count() <= 101, "{summary}");
        assert!(
            summary.starts_with("Authorization failed ]0;owned xxx"),
            "{summary}"
        );
        assert_eq!(HttpResponse::new(500, "").error_summary(), "(empty body)");
        let with_escape = HttpResponse::new(500, "a\u{1b}[31mb\u{7}c");
        assert_eq!(with_escape.body_excerpt(10), "a[31mbc");
    }

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
        assert_eq!(response.body(), b"{}");

        let step = Step::http(request.clone());
        assert_eq!(step.request(), Some(&request));
        assert_eq!(step.receipt(), None);
        let done = Step::done(SendReceipt::with_provider_message_id("SM1"));
        assert_eq!(done.request(), None);
        assert_eq!(
            done.receipt().and_then(SendReceipt::provider_message_id),
            Some("SM1")
        );
        assert_eq!(SendReceipt::new().provider_message_id(), None);

        let stateful = Step::http_with_state(request, serde_json::json!({"token": "t"}));
        assert_eq!(stateful.state().unwrap(), serde_json::json!({"token": "t"}));
        assert_eq!(step.state().unwrap(), serde_json::Value::Null);
        assert_eq!(step.state_json(), "");
        assert_eq!(
            done.into_receipt(),
            Some(SendReceipt::with_provider_message_id("SM1"))
        );
    }

    #[test]
    fn a_step_marked_as_sending_no_message_keeps_its_state_for_the_connector() {
        let request = HttpRequest::post_form("https://id.example.com/token", &[("a", "b")]);
        let plain = Step::http_with_state(request.clone(), json!({"attempt": 1}));
        assert!(plain.may_send_message());

        let marked = plain.clone().sends_no_message();
        assert!(!marked.may_send_message());
        assert_eq!(marked.request(), plain.request());
        assert_eq!(marked.state().unwrap(), json!({"attempt": 1}));
        assert_eq!(
            state_from_json(marked.state_json()).unwrap(),
            json!({"attempt": 1}),
            "the connector is handed back its own state"
        );

        let without_state = Step::http(request).sends_no_message();
        assert!(!without_state.may_send_message());
        assert_eq!(without_state.state().unwrap(), Value::Null);

        // A connector's own state that merely looks alike carries no mark.
        let look_alike = Step::http_with_state(
            HttpRequest::get("https://sms.example.com/send"),
            json!({"plugin-api/step": {"sendsNoMessage": false}, "state": 3}),
        );
        assert!(look_alike.may_send_message());
        let done = Step::done(SendReceipt::new()).sends_no_message();
        assert!(done.receipt().is_some());
        assert!(!done.may_send_message(), "a done step performs no request");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let seconds = HttpResponse::new(429, Vec::new()).with_header("Retry-After", " 120 ");
        assert_eq!(
            seconds.retry_after(),
            Some(std::time::Duration::from_secs(120))
        );
        let past = HttpResponse::new(429, Vec::new())
            .with_header("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(past.retry_after(), Some(std::time::Duration::ZERO));
        let future_date = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        );
        let future = HttpResponse::new(503, Vec::new()).with_header("Retry-After", future_date);
        let wait = future.retry_after().unwrap();
        assert!(
            wait > std::time::Duration::from_secs(3500)
                && wait <= std::time::Duration::from_secs(3600),
            "{wait:?}"
        );
        assert_eq!(HttpResponse::new(429, Vec::new()).retry_after(), None);
        assert_eq!(
            HttpResponse::new(429, Vec::new())
                .with_header("Retry-After", "soon")
                .retry_after(),
            None
        );
    }

    #[test]
    fn notes_are_kept_only_when_wanted_and_capped() {
        let progress = SendProgress::start();
        assert!(!progress.notes_wanted());
        progress.note("goes nowhere");

        let notes = StepNotes::new();
        let progress = SendProgress::start().with_notes(&notes);
        assert!(progress.notes_wanted());
        assert_eq!(
            progress,
            SendProgress::start(),
            "notes are not part of the progress"
        );
        progress.note("line one\nline two");
        progress.note("x".repeat(StepNotes::MAX_NOTE_CHARS + 10));
        for _ in 0..StepNotes::MAX_NOTES + 3 {
            progress.note("again");
        }
        let taken = notes.take();
        assert_eq!(taken[0], "line one line two");
        assert_eq!(
            taken[1].chars().count(),
            StepNotes::MAX_NOTE_CHARS + 1,
            "cut with an ellipsis"
        );
        assert_eq!(taken.len(), StepNotes::MAX_NOTES + 1);
        assert_eq!(
            taken.last().unwrap(),
            "5 more notes left out (at most 16 a step)"
        );
        assert!(notes.take().is_empty(), "taken out");
    }
}
