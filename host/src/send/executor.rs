//! Performs the HTTP requests connectors describe, and drives a send's steps to the end.
//!
//! The host owns all I/O: one shared client (rustls, keep-alive pool), a timeout per request,
//! a cap on response bodies. It never sends one SMS twice: a request is retried only when it
//! provably never reached the provider (the connection could not be made), never after a
//! timeout or any response. One destination is not the network: [`HOST_OUTBOX_URL`], the
//! host's own outbox for development connectors ([`super::outbox`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use plugin_api::{
    ConnectorError, HttpRequest, HttpResponse, PluginNotes, SendContext, SendReceipt, SmsMessage,
};

use crate::plugins::module::{PluginCallError, PluginInstance};
use crate::secret_redaction::SecretRedactor;
use crate::send::outbox::{HostOutbox, SendOrigin, HOST_OUTBOX_URL, MAX_OUTBOX_BYTES};
use crate::send::provider_networks::{self, ProviderNetworks};

/// Most steps a send may take (a token fetch and a send is two).
const MAX_STEPS: usize = 8;
/// Attempts for a request whose connection could not be made.
const CONNECT_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct SendExecutorConfig {
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    /// The host's outbox file (`<data>/mock-sms-outbox.jsonl`); `None`: development
    /// connectors' messages are refused.
    pub outbox_file: Option<PathBuf>,
    /// `--provider-networks`: which addresses providers may be at.
    pub provider_networks: ProviderNetworks,
}

impl Default for SendExecutorConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            outbox_file: None,
            provider_networks: ProviderNetworks::Any,
        }
    }
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The connector said no (its own error, or its reading of the provider's answer).
    #[error("{0}")]
    Connector(ConnectorError),
    /// The provider does not have the message: the connection, its DNS lookup or its TLS
    /// handshake failed, or a request the connector marked as sending no message (a token
    /// fetch) got no whole answer, before any request that may carry the message. Sending it
    /// again cannot send it twice. The message names the host and port only: URLs can carry
    /// credentials in their query.
    #[error("{0}")]
    Unreachable(String),
    /// The request went out but no whole answer came back (a timeout, a connection broken
    /// after sending): the provider may have accepted the message. Sending it again may send
    /// it twice.
    #[error("{0}")]
    OutcomeUnknown(String),
}

impl DeliveryError {
    /// Whether the provider may have the message: the request went out and no answer said no.
    pub fn provider_may_have_accepted(&self) -> bool {
        matches!(self, DeliveryError::OutcomeUnknown(_))
    }
}

pub struct SendExecutor {
    client: reqwest::Client,
    config: SendExecutorConfig,
    last_destination: DestinationCache,
    outbox: Option<Arc<HostOutbox>>,
}

/// The URL a connector sent to last, parsed and checked: a connector builds the same URL for
/// every message, so the host parses it once per connector (and again only when it changes)
/// instead of once per send. One entry, lock-free: a swap to another connector or a
/// two-step exchange (token, then send) only costs a parse.
#[derive(Default)]
struct DestinationCache {
    last: ArcSwapOption<Destination>,
}

struct Destination {
    text: Box<str>,
    url: reqwest::Url,
}

impl DestinationCache {
    /// The parsed URL, or why the connector's URL is not one the host sends to.
    fn parse(&self, text: &str) -> Result<reqwest::Url, String> {
        if let Some(last) = self.last.load().as_ref() {
            if &*last.text == text {
                return Ok(last.url.clone());
            }
        }
        let url = reqwest::Url::parse(text).map_err(|error| format!("URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", url.scheme()));
        }
        self.last.store(Some(Arc::new(Destination {
            text: text.into(),
            url: url.clone(),
        })));
        Ok(url)
    }
}

impl SendExecutor {
    /// The error is reqwest's: the HTTP client could not be built (its TLS set-up).
    pub fn new(config: SendExecutorConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder();
        let client = provider_networks::configure(client, config.provider_networks)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let outbox = config
            .outbox_file
            .clone()
            .map(|path| Arc::new(HostOutbox::new(path, MAX_OUTBOX_BYTES)));
        Ok(Self {
            client,
            config,
            last_destination: DestinationCache::default(),
            outbox,
        })
    }

    /// Where development connectors' messages go.
    pub fn outbox_path(&self) -> Option<&Path> {
        self.outbox.as_deref().map(HostOutbox::path)
    }

    /// Drives one message through a connector until it is done or fails. While the debug log
    /// is on, each step is logged ([`StepLog`]); `redactor` masks the config's secrets there.
    pub async fn send(
        &self,
        origin: SendOrigin<'_>,
        connector: &PluginInstance,
        message: &SmsMessage,
        context: &SendContext,
        redactor: &SecretRedactor,
    ) -> Result<SendReceipt, DeliveryError> {
        let mut log =
            tracing::enabled!(tracing::Level::DEBUG).then(|| StepLog::new(origin, redactor));
        // Plugin calls are pure and take microseconds in-process: no need to leave the async
        // worker (in a worker process they await its pipe). The step is read where the
        // plugin built it (it is laid out for the boundary).
        let mut notes = log.as_ref().map(|_| PluginNotes::new());
        let started = connector.start(message, context, notes.as_mut()).await;
        if let (Some(log), Some(notes)) = (log.as_mut(), notes.as_mut()) {
            log.notes(1, notes);
        }
        let mut step =
            started.map_err(|error| plugin_failure(error, StepKnowledge::NothingSent))?;
        // Whether an earlier request that may carry the message was answered: from then on
        // no failure proves the provider took nothing.
        let mut message_handed_over = false;
        for number in 1..MAX_STEPS {
            let Some(request) = step.request() else {
                break;
            };
            let sends_message = step.may_send_message();
            let started = log.as_ref().map(|log| log.request(number, request));
            let response = self.perform(origin, request).await;
            if let (Some(log), Some(started)) = (&log, started) {
                log.answer(number, &response, started);
            }
            let response = response.map_err(|error| {
                step_failure(error, StepKnowledge::of(sends_message, message_handed_over))
            })?;
            let answered_before = message_handed_over;
            message_handed_over |= sends_message;
            let resumed = connector
                .resume(message, context, &step, &response, notes.as_mut())
                .await;
            if let (Some(log), Some(notes)) = (log.as_mut(), notes.as_mut()) {
                log.notes(number + 1, notes);
            }
            step = resumed.map_err(|error| match error {
                // The connector read this step's answer: its `not_accepted` speaks of this
                // request, and holds only if no earlier one may have carried the message.
                PluginCallError::Connector(error) => step_failure(
                    DeliveryError::Connector(error),
                    StepKnowledge::of(true, answered_before),
                ),
                // Its worker died reading the answer: what the answer said is unknown.
                lost @ PluginCallError::WorkerLost(_) => {
                    plugin_failure(lost, StepKnowledge::of(sends_message, answered_before))
                }
            })?;
        }
        step.into_receipt().ok_or_else(|| {
            DeliveryError::Connector(ConnectorError::general(format!(
                "the connector did not finish the send within {MAX_STEPS} steps"
            )))
        })
    }

    async fn perform(
        &self,
        origin: SendOrigin<'_>,
        request: &HttpRequest,
    ) -> Result<HttpResponse, DeliveryError> {
        if request.url() == HOST_OUTBOX_URL {
            return self.answer_from_outbox(origin, request).await;
        }
        let invalid = |what: String| {
            DeliveryError::Connector(ConnectorError::general(format!(
                "the connector built an invalid request: {what}"
            )))
        };
        let url = self
            .last_destination
            .parse(request.url())
            .map_err(invalid)?;
        let host = url.host_str().unwrap_or("?");
        // Named with its port in errors: one provider host may serve on several ports.
        let address = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        provider_networks::check_literal_host(&url, self.config.provider_networks)
            .map_err(refused_destination)?;
        let method = match request.method() {
            "POST" => reqwest::Method::POST,
            "GET" => reqwest::Method::GET,
            other => reqwest::Method::from_bytes(other.as_bytes())
                .map_err(|_| invalid(format!("method {other:?}")))?,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request.headers() {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("value of header {name}")))?;
            headers.append(name, value);
        }
        // One copy of the body, shared by the attempts (a clone is a reference count).
        let body = bytes::Bytes::copy_from_slice(request.body());

        let mut attempt = 1;
        let response = loop {
            let sent = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => break response,
                Err(error) => {
                    // Refused by --provider-networks: no retry, and the reason as it is.
                    if let Some(refusal) = provider_networks::refusal_in(&error) {
                        return Err(refused_destination(refusal));
                    }
                    // Nothing reached the provider: trying again cannot send the SMS twice.
                    if error.is_connect() && attempt < CONNECT_ATTEMPTS {
                        tracing::debug!(%host, attempt, "could not connect to the provider; retrying");
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                        attempt += 1;
                        continue;
                    }
                    let reason =
                        describe_transport_error(&address, &error, self.config.request_timeout);
                    // A connect error (DNS, TCP, TLS) means no byte of the request left; any
                    // other error came after it was (at least partly) sent.
                    return Err(if error.is_connect() {
                        DeliveryError::Unreachable(reason)
                    } else {
                        DeliveryError::OutcomeUnknown(reason)
                    });
                }
            }
        };
        self.read_response(&address, response).await
    }

    /// The host's outbox answers instead of a provider (see [`super::outbox`]).
    async fn answer_from_outbox(
        &self,
        origin: SendOrigin<'_>,
        request: &HttpRequest,
    ) -> Result<HttpResponse, DeliveryError> {
        match &self.outbox {
            Some(outbox) => outbox
                .answer(origin, request)
                .await
                .map_err(DeliveryError::Connector),
            None => Err(DeliveryError::Connector(ConnectorError::general(
                "this host has no outbox for development connectors",
            ))),
        }
    }

    async fn read_response(
        &self,
        host: &str,
        mut response: reqwest::Response,
    ) -> Result<HttpResponse, DeliveryError> {
        let status = response.status().as_u16();
        // Taken, not copied: the body is read after.
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::with_capacity(
            usize::try_from(response.content_length().unwrap_or(0))
                .unwrap_or(0)
                .min(self.config.max_response_bytes),
        );
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.config.max_response_bytes {
                        return Err(DeliveryError::Connector(ConnectorError::invalid_response(
                            format!(
                                "the provider at {host} answered with a body over {} bytes",
                                self.config.max_response_bytes
                            ),
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                // The provider answered (a status line) and the body broke off: it may have
                // accepted the message.
                Err(error) => {
                    return Err(DeliveryError::OutcomeUnknown(describe_transport_error(
                        host,
                        &error,
                        self.config.request_timeout,
                    )))
                }
            }
        }
        // Laid out for the boundary: the plugin reads it where it is.
        Ok(headers.iter().fold(
            HttpResponse::new(status, body),
            |response, (name, value)| {
                response.with_header(
                    name.as_str(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            },
        ))
    }
}

/// What the host knows of a failed step, for [`step_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKnowledge {
    /// No request so far may have carried the message, and this one cannot
    /// ([`plugin_api::Step::sends_no_message`]): however it failed, the provider does not
    /// have the message.
    NothingSent,
    /// This request may carry the message; none before it did.
    ThisStepMaySend,
    /// An earlier request that may carry the message was answered.
    EarlierStepMaySend,
}

impl StepKnowledge {
    fn of(this_step_may_send: bool, earlier_step_may_have_sent: bool) -> Self {
        match (this_step_may_send, earlier_step_may_have_sent) {
            (_, true) => StepKnowledge::EarlierStepMaySend,
            (true, false) => StepKnowledge::ThisStepMaySend,
            (false, false) => StepKnowledge::NothingSent,
        }
    }
}

/// A step's failure as the send's: what the failure proves about the message depends on
/// which requests may have carried it.
/// - Before any request that may carry it, even a timeout proves nothing was sent (the
///   standby may send it).
/// - After one was answered, nothing proves it was not: an unreachable status endpoint is an
///   unknown outcome, and a `not_accepted` mark loses its meaning.
fn step_failure(error: DeliveryError, knowledge: StepKnowledge) -> DeliveryError {
    match (knowledge, error) {
        (StepKnowledge::NothingSent, DeliveryError::OutcomeUnknown(reason)) => {
            DeliveryError::Unreachable(format!(
                "{reason} (a request that sends no message: the provider does not have it)"
            ))
        }
        (StepKnowledge::EarlierStepMaySend, DeliveryError::Unreachable(reason)) => {
            DeliveryError::OutcomeUnknown(format!(
                "{reason}, after an earlier request of this send may have handed over the message"
            ))
        }
        (StepKnowledge::EarlierStepMaySend, DeliveryError::Connector(mut error))
            if error.is_not_accepted() =>
        {
            if let Some(serde_json::Value::Object(data)) = error.data.as_mut() {
                data.remove(plugin_api::PROVIDER_ACCEPTED_DATA_KEY);
            }
            DeliveryError::Connector(error)
        }
        (_, error) => error,
    }
}

/// A plugin call's failure as the send's. A worker that died twice on a step
/// (`--plugin-isolation process`) leaves the step unanswered: before any request that may
/// carry the message, nothing was sent (the standby may send it); after one, the provider may
/// have it.
fn plugin_failure(error: PluginCallError, knowledge: StepKnowledge) -> DeliveryError {
    match (error, knowledge) {
        (PluginCallError::Connector(error), _) => DeliveryError::Connector(error),
        (PluginCallError::WorkerLost(reason), StepKnowledge::NothingSent) => {
            DeliveryError::Connector(
                ConnectorError::general(format!(
                    "the plugin's worker process failed, and again on a fresh worker: {reason}"
                ))
                .not_accepted(),
            )
        }
        (PluginCallError::WorkerLost(reason), _) => DeliveryError::OutcomeUnknown(format!(
            "the plugin's worker process failed reading the provider's answer, and again on a fresh worker: {reason}; the provider may have the message"
        )),
    }
}

/// A send's steps in the debug log, one line each: the request (method, URL without query
/// values), its answer (status) or why there was none, and the plugin's notes. Headers and
/// bodies are never logged: they carry credentials and the message.
struct StepLog<'a> {
    /// `(config under test)` when the config is not saved.
    connector_id: &'a str,
    factory_id: &'a str,
    redactor: &'a SecretRedactor,
}

impl<'a> StepLog<'a> {
    fn new(origin: SendOrigin<'a>, redactor: &'a SecretRedactor) -> Self {
        Self {
            connector_id: origin.connector_id.unwrap_or("(config under test)"),
            factory_id: origin.factory_id,
            redactor,
        }
    }

    /// Runs a plugin call that may write notes, then logs them.
    /// Logs the notes a plugin call wrote, and empties them.
    fn notes(&mut self, step: usize, notes: &mut PluginNotes) {
        let (connector_id, factory_id) = (self.connector_id, self.factory_id);
        for note in notes.drain() {
            let note = self.redactor.redact(&note).into_owned();
            tracing::debug!(connector_id, factory_id, step, note = %note, "plugin note");
        }
    }

    /// Logs a request about to be performed; returns when.
    fn request(&self, step: usize, request: &HttpRequest) -> Instant {
        let url = self
            .redactor
            .redact(&url_for_log(request.url()))
            .into_owned();
        tracing::debug!(connector_id = self.connector_id, factory_id = self.factory_id, step, method = request.method(), url = %url, body_bytes = request.body().len(), "step request");
        Instant::now()
    }

    fn answer(
        &self,
        step: usize,
        response: &Result<HttpResponse, DeliveryError>,
        started: Instant,
    ) {
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (connector_id, factory_id) = (self.connector_id, self.factory_id);
        match response {
            Ok(response) => {
                tracing::debug!(
                    connector_id,
                    factory_id,
                    step,
                    status = response.status(),
                    latency_ms,
                    body_bytes = response.body().len(),
                    "step response"
                )
            }
            Err(error) => {
                tracing::debug!(connector_id, factory_id, step, latency_ms, reason = %self.redactor.redact(&error.to_string()), "step failed")
            }
        }
    }
}

/// A URL for the debug log: scheme, host, port and path, with each query value replaced by
/// `…` (Kannel and others put credentials there). Text that is not a URL is left out whole.
fn url_for_log(text: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(text) else {
        return "(not a URL)".to_owned();
    };
    let _ = url.set_password(None);
    let _ = url.set_username("");
    let names: Vec<String> = url
        .query_pairs()
        .map(|(name, _)| name.into_owned())
        .collect();
    if names.is_empty() {
        url.set_query(None);
    } else {
        url.set_query(Some(
            &names
                .iter()
                .map(|name| format!("{name}=…"))
                .collect::<Vec<_>>()
                .join("&"),
        ));
    }
    url.set_fragment(None);
    url.to_string()
}

/// A destination `--provider-networks` does not allow: the config names it, so the config is
/// what is wrong.
fn refused_destination(reason: String) -> DeliveryError {
    DeliveryError::Connector(ConnectorError::invalid_config(reason))
}

/// A one-line reason without the URL (which may carry credentials in its query); `host` is
/// `host:port`.
fn describe_transport_error(host: &str, error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() && error.is_connect() {
        return format!(
            "could not connect to the SMS provider at {host} within {} s",
            timeout.min(Duration::from_secs(5)).as_secs_f32()
        );
    }
    if error.is_timeout() {
        return format!(
            "the SMS provider at {host} did not answer within {} s; it may have accepted the message",
            timeout.as_secs_f32()
        );
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let cause = causes
        .last()
        .cloned()
        .unwrap_or_else(|| "unknown transport error".to_owned());
    if error.is_connect() {
        format!("could not connect to the SMS provider at {host}: {cause}")
    } else {
        format!("the exchange with the SMS provider at {host} broke off after the request was sent ({cause}); it may have accepted the message")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_accepted() -> DeliveryError {
        DeliveryError::Connector(ConnectorError::rate_limit_exceeded("429").not_accepted())
    }

    fn is_unreachable(error: &DeliveryError) -> bool {
        matches!(error, DeliveryError::Unreachable(_))
    }

    #[test]
    fn a_failure_proves_nothing_was_sent_only_before_any_request_that_may_carry_the_message() {
        let timeout = || DeliveryError::OutcomeUnknown("no answer within 1 s".to_owned());
        let refused = || DeliveryError::Unreachable("127.0.0.1:9 refused".to_owned());

        // A token fetch that timed out: nothing carried the message.
        let token_timeout = step_failure(timeout(), StepKnowledge::of(false, false));
        assert!(is_unreachable(&token_timeout), "{token_timeout:?}");
        assert!(token_timeout.to_string().contains("sends no message"));
        // The message step itself: a timeout may have sent it; a refused connection did not.
        assert!(
            step_failure(timeout(), StepKnowledge::of(true, false)).provider_may_have_accepted()
        );
        assert!(is_unreachable(&step_failure(
            refused(),
            StepKnowledge::of(true, false)
        )));
        match step_failure(not_accepted(), StepKnowledge::of(true, false)) {
            DeliveryError::Connector(error) => assert!(error.is_not_accepted()),
            other => panic!("{other:?}"),
        }

        // After the message step was answered (a status poll, say), nothing proves it.
        for this_step_may_send in [true, false] {
            let knowledge = StepKnowledge::of(this_step_may_send, true);
            assert!(step_failure(refused(), knowledge).provider_may_have_accepted());
            assert!(step_failure(timeout(), knowledge).provider_may_have_accepted());
            match step_failure(not_accepted(), knowledge) {
                DeliveryError::Connector(error) => {
                    assert!(!error.is_not_accepted(), "{error:?}");
                    assert_eq!(
                        error.code,
                        plugin_api::ConnectorErrorCode::RateLimitExceeded
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
