//! The conformance kit: one call from a vendor's unit tests checks a connector against the
//! rules the host and operators rely on.
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     plugin_api::conformance::assert_conforms::<MySms>(&serde_json::json!({
//!         "baseUrl": "https://api.example.com", "apiKey": "k", "apiSecret": "s",
//!         "templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}]
//!     }));
//! }
//! ```
//!
//! [`check`] returns a [`ConformanceReport`] listing every failed rule; [`assert_conforms`]
//! panics with that report. [`Conformance`] takes vendor-specific samples first, such as the
//! provider's real success answer:
//!
//! ```ignore
//! Conformance::new(&sample_config)
//!     .success_response(202, r#"{"messages": [{"status": "0", "id": "m1"}]}"#)
//!     .assert_conforms::<MySms>();
//! ```
//!
//! The kit drives the connector the way the host does: configs are validated and connectors
//! built through [`ConnectorModule::in_process`] (the plugin boundary's conversions and panic
//! containment, without dlopen) and sends are driven step by step with [`run_send`], the
//! kit answering each request. Only the panic sweep ([`Rule::NoPanics`]) calls the connector
//! directly, inside `catch_unwind`, so that a panic is seen as one. Nothing does I/O.
//!
//! While it calls the connector, the kit keeps that thread's panic messages (and backtraces)
//! out of the test output and reports each panic itself, with its location: it installs, once
//! per process, a panic hook that stays silent on a thread inside the kit and hands every other
//! panic to the hook it found.
//!
//! Every rule has a stable name ([`Rule::name`]); every failure names its rule and the fix.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use serde_json::{json, Map, Value};

use crate::{
    run_send, validate_config, ConnectorError, ConnectorErrorCode, ConnectorInstance,
    ConnectorMetadata, ConnectorModule, HttpRequest, HttpResponse, SendProgress, SendReceipt,
    SmsConnector, SmsMessage, Step, TemplateType,
};

/// Checks `Connector` against every rule with `sample_config` (a config the connector
/// accepts, with fake credentials) and the default samples (a success answer of `200 {}`).
pub fn check<Connector: SmsConnector>(sample_config: &Value) -> Result<(), ConformanceReport> {
    Conformance::new(sample_config).check::<Connector>()
}

/// [`check`], panicking with the whole report (every failed rule, its problem and its fix).
#[track_caller]
pub fn assert_conforms<Connector: SmsConnector>(sample_config: &Value) {
    Conformance::new(sample_config).assert_conforms::<Connector>()
}

/// The rules. Names are stable: match on them, or on [`Rule::name`] in test output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rule {
    MetadataValid,
    ConfigTemplateValid,
    SampleConfigValid,
    FormKeysAreConfigKeys,
    RequiredKeysHaveFormItems,
    SecretsAreConfidential,
    ReadmeMentionsConfigKeys,
    UsageTypesFallBackToGeneric,
    MissingTemplateIsTemplateNotFound,
    FirstRequestTargetsConfigUrl,
    SuccessGivesReceipt,
    AuthErrorsAreInvalidConfig,
    RateLimitIsRateLimitExceeded,
    FailuresAreErrors,
    NoPanics,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::MetadataValid,
        Rule::ConfigTemplateValid,
        Rule::SampleConfigValid,
        Rule::FormKeysAreConfigKeys,
        Rule::RequiredKeysHaveFormItems,
        Rule::SecretsAreConfidential,
        Rule::ReadmeMentionsConfigKeys,
        Rule::UsageTypesFallBackToGeneric,
        Rule::MissingTemplateIsTemplateNotFound,
        Rule::FirstRequestTargetsConfigUrl,
        Rule::SuccessGivesReceipt,
        Rule::AuthErrorsAreInvalidConfig,
        Rule::RateLimitIsRateLimitExceeded,
        Rule::FailuresAreErrors,
        Rule::NoPanics,
    ];

    /// The stable snake_case name, as printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rule::MetadataValid => "metadata_valid",
            Rule::ConfigTemplateValid => "config_template_valid",
            Rule::SampleConfigValid => "sample_config_valid",
            Rule::FormKeysAreConfigKeys => "form_keys_are_config_keys",
            Rule::RequiredKeysHaveFormItems => "required_keys_have_form_items",
            Rule::SecretsAreConfidential => "secrets_are_confidential",
            Rule::ReadmeMentionsConfigKeys => "readme_mentions_config_keys",
            Rule::UsageTypesFallBackToGeneric => "usage_types_fall_back_to_generic",
            Rule::MissingTemplateIsTemplateNotFound => "missing_template_is_template_not_found",
            Rule::FirstRequestTargetsConfigUrl => "first_request_targets_config_url",
            Rule::SuccessGivesReceipt => "success_gives_receipt",
            Rule::AuthErrorsAreInvalidConfig => "auth_errors_are_invalid_config",
            Rule::RateLimitIsRateLimitExceeded => "rate_limit_is_rate_limit_exceeded",
            Rule::FailuresAreErrors => "failures_are_errors",
            Rule::NoPanics => "no_panics",
        }
    }

    /// What the rule requires, in one sentence.
    pub fn description(self) -> &'static str {
        match self {
            Rule::MetadataValid => {
                "the metadata passes the checks the host applies when it loads the plugin"
            }
            Rule::ConfigTemplateValid => {
                "configTemplate is a JSON object that the connector's own validation accepts"
            }
            Rule::SampleConfigValid => {
                "the sample config given to the kit validates and builds a connector"
            }
            Rule::FormKeysAreConfigKeys => "every form item's key is a config key",
            Rule::RequiredKeysHaveFormItems => {
                "every config key the connector cannot do without has a form item"
            }
            Rule::SecretsAreConfidential => {
                "config keys named like secrets (…Key, …Secret, …Token, …Password, authorization) \
                 are confidential form items"
            }
            Rule::ReadmeMentionsConfigKeys => "the README is not empty and mentions every config key",
            Rule::UsageTypesFallBackToGeneric => {
                "with only a Generic template, a send of every usage type starts with an HTTP request"
            }
            Rule::MissingTemplateIsTemplateNotFound => {
                "with a template for neither the usage type nor Generic, a send fails with \
                 template_not_found"
            }
            Rule::FirstRequestTargetsConfigUrl => {
                "the first request goes to a URL of the config (or an https vendor URL), with \
                 GET, POST or PUT"
            }
            Rule::SuccessGivesReceipt => "the provider's success answer finishes the send with a receipt",
            Rule::AuthErrorsAreInvalidConfig => "HTTP 401 and 403 give invalid_config",
            Rule::RateLimitIsRateLimitExceeded => "HTTP 429 gives rate_limit_exceeded",
            Rule::FailuresAreErrors => {
                "every answer outside 2xx, and a 2xx with an empty, non-JSON or binary body, gives \
                 an error"
            }
            Rule::NoPanics => "no step panics, whatever the status and body of the answer",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Rule::MetadataValid => {
                "fix `metadata()`: the host refuses to load a plugin whose metadata has this problem"
            }
            Rule::ConfigTemplateValid => {
                "make configTemplate a JSON object your connector accepts: operators start from it"
            }
            Rule::SampleConfigValid => {
                "give the kit a config your connector accepts (what an operator would save), or \
                 fix the validation"
            }
            Rule::FormKeysAreConfigKeys => {
                "name the form item after the config field's JSON key (mind serde's \
                 `rename_all`), or show the key in the configTemplate"
            }
            Rule::RequiredKeysHaveFormItems => {
                "add a `FormItem` for the key, marked `.required()`: the console's form cannot \
                 set a key that has none"
            }
            Rule::SecretsAreConfidential => {
                "give the key a form item marked `.confidential()`, so the host masks its value \
                 in every response and log line; if it is not a secret, tell the kit with \
                 `Conformance::not_secret(key)`"
            }
            Rule::ReadmeMentionsConfigKeys => {
                "document every config key in the README: operators read it next to the form"
            }
            Rule::UsageTypesFallBackToGeneric => {
                "pick the template with `find_template_for(&templates, message)`: the usage \
                 type, then Generic"
            }
            Rule::MissingTemplateIsTemplateNotFound => {
                "return `find_template_for`'s error (template_not_found) before building any \
                 request"
            }
            Rule::FirstRequestTargetsConfigUrl => {
                "build request URLs from the config's URL field (`require_http_url`), and send \
                 with GET, POST or PUT"
            }
            Rule::SuccessGivesReceipt => {
                "finish with `Step::Done(receipt)` on the provider's success answer; if the \
                 kit's sample answer (200 `{}`) is not what your provider sends, give the real \
                 one with `Conformance::success_response(status, body)`"
            }
            Rule::AuthErrorsAreInvalidConfig => {
                "map HTTP 401 and 403 to `ConnectorError::invalid_config`: the saved \
                 credentials are wrong, and that code tells the operator to fix the config"
            }
            Rule::RateLimitIsRateLimitExceeded => {
                "map HTTP 429 to `ConnectorError::rate_limit_exceeded` (the host then answers \
                 its caller 429)"
            }
            Rule::FailuresAreErrors => {
                "return an error for every answer outside 2xx, and for a 2xx whose body is not \
                 the success you expect (`response.json()` gives invalid_response); if your \
                 provider's protocol takes any 2xx as accepted whatever the body, say so with \
                 `Conformance::accepts_any_2xx_body()`"
            }
            Rule::NoPanics => {
                "never unwrap, index or slice a response: read it with `response.json()` \
                 (invalid_response on bad JSON), `error_summary()`, `body_text()` or \
                 `body_excerpt(n)`, and return errors"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One broken rule: what the kit saw, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub rule: Rule,
    pub problem: String,
    pub fix: String,
}

/// A rule the kit could not apply (for example the template rules for a connector without
/// templates), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub rule: Rule,
    pub text: String,
}

/// What the kit found. Its `Display` (and `Debug`, so `check(..).unwrap()` reads well) lists
/// every failure with its rule and fix, then the notes.
#[derive(Clone, PartialEq, Eq)]
pub struct ConformanceReport {
    connector: String,
    failures: Vec<Failure>,
    notes: Vec<Note>,
}

impl ConformanceReport {
    /// The factory id, or the type name when the metadata could not be read.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// The rules with at least one failure, each once, in [`Rule::ALL`] order.
    pub fn failed_rules(&self) -> Vec<Rule> {
        let failed: BTreeSet<Rule> = self.failures.iter().map(|failure| failure.rule).collect();
        failed.into_iter().collect()
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            write!(
                formatter,
                "connector `{}` passes every conformance rule",
                self.connector
            )?;
        } else {
            let rules = self.failed_rules();
            write!(
                formatter,
                "connector `{}` breaks {} conformance rule{} ({}):",
                self.connector,
                rules.len(),
                if rules.len() == 1 { "" } else { "s" },
                rules
                    .iter()
                    .map(|rule| rule.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            for failure in &self.failures {
                write!(
                    formatter,
                    "\n\n[{}] {}\n    fix: {}",
                    failure.rule, failure.problem, failure.fix
                )?;
            }
        }
        if !self.notes.is_empty() {
            write!(formatter, "\n\nnotes:")?;
            for note in &self.notes {
                write!(formatter, "\n  [{}] {}", note.rule, note.text)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ConformanceReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl std::error::Error for ConformanceReport {}

/// The kit with vendor-specific samples. Build it with [`Conformance::new`], add what your
/// provider needs, then [`check`](Conformance::check) or
/// [`assert_conforms`](Conformance::assert_conforms).
#[derive(Debug, Clone)]
pub struct Conformance {
    sample_config: Value,
    /// Status and body of the provider's success answer to each request.
    success_responses: Vec<(u16, Vec<u8>)>,
    sends_without_http: bool,
    accepts_any_2xx_body: bool,
    not_secret: BTreeSet<String>,
}

impl Conformance {
    /// `sample_config`: a config the connector accepts, as an operator would save it (fake
    /// credentials; URLs are never contacted).
    pub fn new(sample_config: &Value) -> Self {
        Self {
            sample_config: sample_config.clone(),
            success_responses: Vec::new(),
            sends_without_http: false,
            accepts_any_2xx_body: false,
            not_secret: BTreeSet::new(),
        }
    }

    /// The provider's answer to a successful request (default: `200` with `{}`). A send that
    /// takes several requests (a token, then the message) calls this once per request, in
    /// order; the last answer also serves any later request. `Content-Type` is set from the
    /// body: JSON, text or binary.
    pub fn success_response(mut self, status: u16, body: impl Into<Vec<u8>>) -> Self {
        self.success_responses.push((status, body.into()));
        self
    }

    /// The connector may finish a send without any HTTP request (a development connector
    /// writing to a file, like the bundled mock). The request and answer rules are then
    /// skipped with a note for sends that make none.
    pub fn sends_without_http(mut self) -> Self {
        self.sends_without_http = true;
        self
    }

    /// The provider's protocol takes any 2xx as accepted, whatever the body (Logto's HTTP SMS
    /// connector): a 2xx with an empty, non-JSON or binary body is then not required to be
    /// an error. Answers outside 2xx still are.
    pub fn accepts_any_2xx_body(mut self) -> Self {
        self.accepts_any_2xx_body = true;
        self
    }

    /// `key` is named like a secret but is not one (a public site key, a sort key): it need
    /// not be confidential.
    pub fn not_secret(mut self, key: impl Into<String>) -> Self {
        self.not_secret.insert(key.into());
        self
    }

    /// Applies every rule; the report holds the failures and the notes.
    pub fn run<Connector: SmsConnector>(&self) -> ConformanceReport {
        Checker::<Connector>::new(self).run()
    }

    /// `Err` with the report when any rule fails.
    pub fn check<Connector: SmsConnector>(&self) -> Result<(), ConformanceReport> {
        let report = self.run::<Connector>();
        if report.passed() {
            Ok(())
        } else {
            Err(report)
        }
    }

    /// Panics with the report when any rule fails.
    #[track_caller]
    pub fn assert_conforms<Connector: SmsConnector>(&self) {
        if let Err(report) = self.check::<Connector>() {
            panic!("{report}");
        }
    }

    /// Status and body of the success answer to request `index`.
    fn success_sample(&self, index: usize) -> (u16, &[u8]) {
        self.success_responses
            .get(index)
            .or(self.success_responses.last())
            .map_or((200, b"{}".as_slice()), |(status, body)| (*status, body))
    }

    fn success_answer(&self, index: usize) -> HttpResponse {
        let (status, body) = self.success_sample(index);
        sniffed(status, body.to_vec())
    }
}

/// Steps a send may take, as in the host's send executor.
const MAX_STEPS: usize = 8;
/// The host's cap on a response body: the largest body a connector is ever handed.
const HUGE_BODY_BYTES: usize = 1024 * 1024;
const RECIPIENT: &str = "+12015550123";
const CODE: &str = "123456";
/// What the kit accepts for a request. The host never retries a request that reached the
/// provider (after a timeout or any answer), whatever its method; these three are the ones
/// that mean "send this message" in providers' APIs (POST to create it, PUT to create it
/// under a client id, GET for query-string gateways such as Kannel). Anything else (DELETE,
/// PATCH, HEAD, OPTIONS, TRACE, CONNECT, custom methods) is no send, and the kit refuses it.
const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
/// Statuses the panic sweep answers with: 1xx to 5xx, including those connectors rarely
/// expect (the host follows no redirects, so 3xx reach the connector).
const SWEEP_STATUSES: [u16; 19] = [
    100, 200, 201, 202, 204, 301, 302, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 599,
];
/// Statuses outside 2xx that must give an error.
const FAILURE_STATUSES: [u16; 15] = [
    100, 301, 302, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 599,
];

/// A sample body the kit answers with.
#[derive(Clone)]
struct SampleBody {
    description: &'static str,
    bytes: Vec<u8>,
    content_type: Option<&'static str>,
}

impl SampleBody {
    fn new(
        description: &'static str,
        bytes: impl Into<Vec<u8>>,
        content_type: &'static str,
    ) -> Self {
        Self {
            description,
            bytes: bytes.into(),
            content_type: Some(content_type),
        }
    }

    fn empty() -> Self {
        Self {
            description: "an empty body",
            bytes: Vec::new(),
            content_type: None,
        }
    }

    fn empty_object() -> Self {
        Self::new("the body `{}`", "{}", "application/json")
    }

    fn text() -> Self {
        Self::new(
            "a plain-text body",
            "Request refused",
            "text/plain; charset=utf-8",
        )
    }

    fn html() -> Self {
        Self::new(
            "an HTML page",
            "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>",
            "text/html",
        )
    }

    fn truncated_json() -> Self {
        Self::new(
            "truncated JSON",
            r#"{"status": "0", "id": "SM0123456789", "messages": [{"status": "0", "message-id": "0A00"#,
            "application/json",
        )
    }

    /// Pseudo-random bytes, the same every run; never valid UTF-8 (they start with 0xFF).
    fn binary() -> Self {
        let mut state: u32 = 0x9E37_79B9;
        let mut bytes = vec![0xFF, 0x00, 0xFE];
        bytes.extend((0..509).map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        }));
        Self::new("random binary bytes", bytes, "application/octet-stream")
    }

    const HUGE: &'static str = "a 1 MiB JSON body";

    /// A JSON object of exactly the host's body cap.
    fn huge() -> Self {
        let (start, end) = (r#"{"message": ""#, r#""}"#);
        let filler = "x".repeat(HUGE_BODY_BYTES - start.len() - end.len());
        Self::new(
            Self::HUGE,
            format!("{start}{filler}{end}"),
            "application/json",
        )
    }

    fn success(body: &[u8]) -> Self {
        Self {
            description: "your success body",
            bytes: body.to_vec(),
            content_type: None,
        }
    }

    fn answer(&self, status: u16) -> HttpResponse {
        let response = HttpResponse::new(status, self.bytes.clone());
        match self.content_type {
            Some(content_type) => response.with_header("Content-Type", content_type),
            None => response,
        }
    }
}

/// A response whose `Content-Type` matches its body.
fn sniffed(status: u16, body: Vec<u8>) -> HttpResponse {
    let content_type = if body.is_empty() {
        None
    } else if serde_json::from_slice::<Value>(&body).is_ok() {
        Some("application/json")
    } else if std::str::from_utf8(&body).is_ok() {
        Some("text/plain; charset=utf-8")
    } else {
        Some("application/octet-stream")
    };
    let response = HttpResponse::new(status, body);
    match content_type {
        Some(content_type) => response.with_header("Content-Type", content_type),
        None => response,
    }
}

/// A connector instance seen through the plugin boundary, as the host sees it, wearing the
/// `SmsConnector` trait so that [`run_send`] drives it exactly as it drives a vendor's type.
/// Only `step` is used; the kit builds it from a [`ConnectorInstance`], never `from_config`.
struct ThroughBoundary<Connector> {
    instance: ConnectorInstance,
    connector: PhantomData<fn() -> Connector>,
}

impl<Connector: SmsConnector> SmsConnector for ThroughBoundary<Connector> {
    type Config = Connector::Config;

    fn metadata() -> ConnectorMetadata {
        Connector::metadata()
    }

    fn from_config(_config: Self::Config) -> Result<Self, ConnectorError> {
        Err(ConnectorError::not_implemented(
            "the conformance kit builds instances through ConnectorModule::instantiate",
        ))
    }

    fn step(&self, message: &SmsMessage, progress: SendProgress) -> Result<Step, ConnectorError> {
        self.instance.step(message, progress)
    }
}

/// One send: the requests the connector made, and how it ended.
struct Trace {
    requests: Vec<HttpRequest>,
    outcome: Result<SendReceipt, ConnectorError>,
}

/// Drives one send to its end, answering request `i` with `answer(i)`.
fn drive<Connector: SmsConnector>(
    connector: &Connector,
    message: &SmsMessage,
    answer: impl Fn(usize) -> HttpResponse,
) -> Trace {
    let mut requests = Vec::new();
    let outcome = catching(|| {
        run_send(
            connector,
            message,
            |request| {
                requests.push(request.clone());
                answer(requests.len() - 1)
            },
            MAX_STEPS,
        )
    });
    Trace { requests, outcome }
}

thread_local! {
    /// This thread is inside the kit, calling connector code.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic silenced on this thread happened.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs connector code with this thread's panics silenced (see the module documentation).
fn catching<T>(run: impl FnOnce() -> T) -> T {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while the thread's locals are torn down is not the kit's.
            if CATCHING.try_with(Cell::get).unwrap_or(false) {
                let location = info.location().map(ToString::to_string);
                let _ = PANIC_LOCATION.try_with(|slot| slot.replace(location));
            } else {
                previous(info);
            }
        }));
    });
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CATCHING.with(|catching| catching.set(self.0));
        }
    }
    let _restore = Restore(CATCHING.with(|catching| catching.replace(true)));
    run()
}

/// `, at file:line:column` for the last panic silenced on this thread.
fn panic_location() -> String {
    PANIC_LOCATION
        .with(|slot| slot.borrow_mut().take())
        .map(|location| format!(", at {location}"))
        .unwrap_or_default()
}

fn describe_outcome(outcome: &Result<SendReceipt, ConnectorError>) -> String {
    match outcome {
        Ok(receipt) => match receipt.provider_message_id() {
            Some(id) => format!("a receipt (provider message id {id:?})"),
            None => "a receipt".to_owned(),
        },
        Err(error) => describe_error(error),
    }
}

fn describe_error(error: &ConnectorError) -> String {
    if error.message.is_empty() {
        return error.code.to_string();
    }
    let message: String = error.message.chars().take(200).collect();
    let ellipsis = if error.message.chars().count() > 200 {
        "…"
    } else {
        ""
    };
    format!("{}: {message}{ellipsis}", error.code)
}

/// The boundary turns a panic into this `general` error (see `export::guarded`).
fn is_boundary_panic(error: &ConnectorError) -> bool {
    error.code == ConnectorErrorCode::General
        && error.message.starts_with("the plugin panicked in ")
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

/// "the first request", "request 2", ...
fn nth_request(index: usize) -> String {
    if index == 0 {
        "the first request".to_owned()
    } else {
        format!("request {}", index + 1)
    }
}

/// A URL without its query and fragment, which can carry credentials.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `url` is `base` or below it (a path, query or fragment follows, not more host name).
fn is_under(url: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    let starts_with_base = url
        .get(..base.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(base));
    if !starts_with_base {
        return false;
    }
    match url[base.len()..].chars().next() {
        None | Some('/' | '?' | '#') => true,
        Some('&') => base.contains('?'),
        Some(_) => false,
    }
}

fn is_http_url(text: &str) -> bool {
    let lower = text.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Every string of the config that is an http(s) URL (templates aside).
fn config_urls(config: &Value, urls: &mut BTreeSet<String>) {
    match config {
        Value::String(text) if is_http_url(text) => {
            urls.insert(text.trim().to_owned());
        }
        Value::Object(map) => {
            for (key, value) in map {
                if key != "templates" {
                    config_urls(value, urls);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| config_urls(item, urls)),
        _ => {}
    }
}

/// Named like a secret: ends in key, secret, token or password, or is `authorization`.
fn is_secret_name(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    lower == "authorization"
        || ["key", "secret", "token", "password"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
}

/// `key` appears in `text` as a word of its own (not inside a longer identifier).
fn mentions(text: &str, key: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(key).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + key.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

fn message(template_type: TemplateType, locale: Option<&str>) -> SmsMessage {
    let mut payload = Map::new();
    payload.insert("code".to_owned(), json!(CODE));
    if let Some(locale) = locale {
        payload.insert("locale".to_owned(), json!(locale));
    }
    SmsMessage::new(RECIPIENT, template_type, payload)
}

fn join(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    items
        .into_iter()
        .map(|item| item.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn backticked(keys: &[&str]) -> String {
    join(keys.iter().map(|key| format!("`{key}`")))
}

struct Checker<'a, Connector> {
    options: &'a Conformance,
    module: ConnectorModule,
    failures: Vec<Failure>,
    notes: Vec<Note>,
    connector: PhantomData<fn() -> Connector>,
}

impl<'a, Connector: SmsConnector> Checker<'a, Connector> {
    fn new(options: &'a Conformance) -> Self {
        Self {
            options,
            module: ConnectorModule::in_process::<Connector>(),
            failures: Vec::new(),
            notes: Vec::new(),
            connector: PhantomData,
        }
    }

    fn fail(&mut self, rule: Rule, problem: impl Into<String>) {
        self.fail_with_fix(rule, problem, rule.fix());
    }

    fn fail_with_fix(&mut self, rule: Rule, problem: impl Into<String>, fix: impl Into<String>) {
        let failure = Failure {
            rule,
            problem: problem.into(),
            fix: fix.into(),
        };
        if !self.failures.contains(&failure) {
            self.failures.push(failure);
        }
    }

    fn note(&mut self, rule: Rule, text: impl Into<String>) {
        self.notes.push(Note {
            rule,
            text: text.into(),
        });
    }

    fn skip(&mut self, rules: &[Rule], reason: &str) {
        for &rule in rules {
            self.note(rule, format!("not checked: {reason}"));
        }
    }

    /// A send through the boundary; a panic the boundary caught is also a `no_panics` failure.
    fn send(
        &mut self,
        instance: &ThroughBoundary<Connector>,
        message: &SmsMessage,
        answer: impl Fn(usize) -> HttpResponse,
        context: impl FnOnce() -> String,
    ) -> Trace {
        let trace = drive(instance, message, answer);
        if let Err(error) = &trace.outcome {
            if is_boundary_panic(error) {
                let location = panic_location();
                self.fail(
                    Rule::NoPanics,
                    format!("{}: {}{location}", context(), error.message),
                );
            }
        }
        trace
    }

    fn instantiate(&self, config: &Value) -> Result<ThroughBoundary<Connector>, ConnectorError> {
        catching(|| self.module.instantiate(config)).map(|instance| ThroughBoundary {
            instance,
            connector: PhantomData,
        })
    }

    fn validate(&self, config: &Value) -> Result<Value, ConnectorError> {
        catching(|| self.module.validate_config(config))
    }

    fn run(mut self) -> ConformanceReport {
        let metadata = self.check_metadata();
        let connector = metadata
            .as_ref()
            .map(|metadata| metadata.id.clone())
            .unwrap_or_else(|| std::any::type_name::<Connector>().to_owned());
        let template = metadata
            .as_ref()
            .and_then(|metadata| self.check_config_template(metadata));
        let sample = self.check_sample_config();

        let mut config_keys = BTreeSet::new();
        for config in [
            template.as_ref().map(|(raw, _)| raw),
            template
                .as_ref()
                .and_then(|(_, normalized)| normalized.as_ref()),
            Some(&self.options.sample_config),
            sample.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(map) = config.as_object() {
                config_keys.extend(map.keys().cloned());
            }
        }

        match &metadata {
            Some(metadata) => {
                self.check_form_keys(metadata, &config_keys);
                self.check_required_keys(metadata, sample.is_some());
                self.check_secrets(metadata, &config_keys);
                self.check_readme(metadata, &config_keys);
            }
            None => self.skip(
                &[
                    Rule::FormKeysAreConfigKeys,
                    Rule::RequiredKeysHaveFormItems,
                    Rule::SecretsAreConfidential,
                    Rule::ReadmeMentionsConfigKeys,
                ],
                "the metadata could not be read",
            ),
        }

        match sample {
            Some(normalized) => self.check_sends(&normalized),
            None => self.skip(
                &[
                    Rule::UsageTypesFallBackToGeneric,
                    Rule::MissingTemplateIsTemplateNotFound,
                    Rule::FirstRequestTargetsConfigUrl,
                    Rule::SuccessGivesReceipt,
                    Rule::AuthErrorsAreInvalidConfig,
                    Rule::RateLimitIsRateLimitExceeded,
                    Rule::FailuresAreErrors,
                    Rule::NoPanics,
                ],
                "the sample config does not validate",
            ),
        }

        self.failures.sort_by_key(|failure| failure.rule);
        self.notes.sort_by_key(|note| note.rule);
        ConformanceReport {
            connector,
            failures: self.failures,
            notes: self.notes,
        }
    }

    fn check_metadata(&mut self) -> Option<ConnectorMetadata> {
        let metadata = match catching(|| catch_unwind(Connector::metadata)) {
            Ok(metadata) => metadata,
            Err(payload) => {
                self.fail(
                    Rule::MetadataValid,
                    format!(
                        "`metadata()` panicked: {}{}",
                        panic_text(payload.as_ref()),
                        panic_location()
                    ),
                );
                return None;
            }
        };
        let problems = metadata.problems();
        for problem in &problems {
            self.fail(Rule::MetadataValid, problem.clone());
        }
        if problems.is_empty() {
            if let Err(error) = catching(|| self.module.metadata()) {
                self.fail(
                    Rule::MetadataValid,
                    format!("through the plugin boundary: {error}"),
                );
            }
        }
        Some(metadata)
    }

    /// The template, and its normalized form when it validates.
    fn check_config_template(
        &mut self,
        metadata: &ConnectorMetadata,
    ) -> Option<(Value, Option<Value>)> {
        let template = match serde_json::from_str::<Value>(&metadata.config_template) {
            Ok(template) => template,
            Err(error) => {
                self.fail(
                    Rule::ConfigTemplateValid,
                    format!("configTemplate is not JSON: {error}"),
                );
                return None;
            }
        };
        if !template.is_object() {
            self.fail(
                Rule::ConfigTemplateValid,
                "configTemplate is not a JSON object",
            );
            return Some((template, None));
        }
        match self.validate(&template) {
            Ok(normalized) => Some((template, Some(normalized))),
            Err(error) => {
                self.fail(
                    Rule::ConfigTemplateValid,
                    format!(
                        "the connector refuses its own configTemplate: {}",
                        describe_error(&error)
                    ),
                );
                Some((template, None))
            }
        }
    }

    /// The sample, normalized, when it validates and builds a connector.
    fn check_sample_config(&mut self) -> Option<Value> {
        let sample = &self.options.sample_config;
        if !sample.is_object() {
            self.fail(
                Rule::SampleConfigValid,
                "the sample config is not a JSON object",
            );
            return None;
        }
        let normalized = match self.validate(sample) {
            Ok(normalized) => normalized,
            Err(error) => {
                self.fail(
                    Rule::SampleConfigValid,
                    format!(
                        "the sample config does not validate: {}",
                        describe_error(&error)
                    ),
                );
                return None;
            }
        };
        if let Err(error) = self.instantiate(sample) {
            self.fail(
                Rule::SampleConfigValid,
                format!(
                    "the sample config validates, but building a connector from it fails: {}",
                    describe_error(&error)
                ),
            );
            return None;
        }
        Some(normalized)
    }

    fn check_form_keys(&mut self, metadata: &ConnectorMetadata, config_keys: &BTreeSet<String>) {
        for item in &metadata.form_items {
            if !item.key.is_empty() && !config_keys.contains(&item.key) {
                self.fail(
                    Rule::FormKeysAreConfigKeys,
                    format!(
                        "form item `{}` is no config key: neither the configTemplate, the sample \
                         config nor their normalized forms have it (config keys: {})",
                        item.key,
                        backticked(&config_keys.iter().map(String::as_str).collect::<Vec<_>>())
                    ),
                );
            }
        }
    }

    /// A key of the sample config is required when the config without it does not validate.
    fn check_required_keys(&mut self, metadata: &ConnectorMetadata, sample_is_valid: bool) {
        if metadata.form_items.is_empty() {
            self.note(
                Rule::RequiredKeysHaveFormItems,
                "not checked: the connector has no form items (operators edit the JSON config)",
            );
            return;
        }
        if !sample_is_valid {
            self.skip(
                &[Rule::RequiredKeysHaveFormItems],
                "the sample config does not validate",
            );
            return;
        }
        let Some(sample) = self.options.sample_config.as_object() else {
            return;
        };
        for key in sample.keys() {
            if metadata.form_items.iter().any(|item| &item.key == key) {
                continue;
            }
            let mut without = sample.clone();
            without.remove(key);
            if let Err(error) = self.validate(&Value::Object(without)) {
                self.fail(
                    Rule::RequiredKeysHaveFormItems,
                    format!(
                        "config key `{key}` is required (without it: {}) but has no form item",
                        describe_error(&error)
                    ),
                );
            }
        }
    }

    fn check_secrets(&mut self, metadata: &ConnectorMetadata, config_keys: &BTreeSet<String>) {
        let mut keys: BTreeSet<&str> = config_keys.iter().map(String::as_str).collect();
        keys.extend(metadata.form_items.iter().map(|item| item.key.as_str()));
        for key in keys {
            if !is_secret_name(key) || self.options.not_secret.contains(key) {
                continue;
            }
            match metadata.form_items.iter().find(|item| item.key == key) {
                Some(item) if item.is_confidential => {}
                Some(_) => self.fail(
                    Rule::SecretsAreConfidential,
                    format!(
                        "`{key}` is named like a secret, but its form item is not confidential"
                    ),
                ),
                None => self.fail(
                    Rule::SecretsAreConfidential,
                    format!(
                        "`{key}` is named like a secret, but has no form item, so nothing marks \
                         it confidential"
                    ),
                ),
            }
        }
    }

    fn check_readme(&mut self, metadata: &ConnectorMetadata, config_keys: &BTreeSet<String>) {
        if metadata.readme.trim().is_empty() {
            self.fail(Rule::ReadmeMentionsConfigKeys, "the README is empty");
            return;
        }
        let missing: Vec<&str> = config_keys
            .iter()
            .map(String::as_str)
            .filter(|key| !mentions(&metadata.readme, key))
            .collect();
        if !missing.is_empty() {
            self.fail(
                Rule::ReadmeMentionsConfigKeys,
                format!(
                    "the README does not mention config key{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    backticked(&missing)
                ),
            );
        }
    }

    fn check_sends(&mut self, normalized: &Value) {
        let sample = self.options.sample_config.clone();
        let instance = match self.instantiate(&sample) {
            Ok(instance) => instance,
            // Already reported under sample_config_valid.
            Err(_) => return,
        };
        let templates = sample.get("templates").and_then(Value::as_array).cloned();
        // A message the sample's own templates serve: the first one's usage type and locale.
        let first_template = templates.as_ref().and_then(|templates| templates.first());
        let template_type = first_template
            .and_then(|template| template.get("usageType")?.as_str()?.parse().ok())
            .unwrap_or(TemplateType::SignIn);
        let locale = first_template.and_then(|template| template.get("locale")?.as_str());
        let message = message(template_type, locale);

        match &templates {
            Some(templates) => self.check_templates(&sample, templates),
            None => self.skip(
                &[
                    Rule::UsageTypesFallBackToGeneric,
                    Rule::MissingTemplateIsTemplateNotFound,
                ],
                "the config has no `templates` array (the connector renders no text of its own)",
            ),
        }

        let options = self.options;
        let happy = self.send(
            &instance,
            &message,
            |index| options.success_answer(index),
            || "a send answered with your success responses".to_owned(),
        );
        self.check_requests(&happy, normalized);
        if let (Err(error), true) = (&happy.outcome, happy.requests.is_empty()) {
            self.fail(
                Rule::SuccessGivesReceipt,
                format!(
                    "the send failed before its first request: {}",
                    describe_error(error)
                ),
            );
        } else if let Err(error) = &happy.outcome {
            let answers = join(
                (0..happy.requests.len().max(1))
                    .map(|index| options.success_answer(index))
                    .map(|answer| format!("{} {}", answer.status(), answer.body_excerpt(80))),
            );
            self.fail(
                Rule::SuccessGivesReceipt,
                format!(
                    "answered with the success response{} ({answers}), the send ended with {}",
                    if happy.requests.len() > 1 { "s" } else { "" },
                    describe_error(error)
                ),
            );
        }

        let depth = happy.requests.len();
        if depth == 0 {
            self.skip(
                &[
                    Rule::AuthErrorsAreInvalidConfig,
                    Rule::RateLimitIsRateLimitExceeded,
                    Rule::FailuresAreErrors,
                    Rule::NoPanics,
                ],
                "the send made no HTTP request, so there is no answer to vary",
            );
            return;
        }
        self.check_status_mapping(
            &instance,
            &message,
            depth,
            &[401, 403],
            ConnectorErrorCode::InvalidConfig,
            Rule::AuthErrorsAreInvalidConfig,
        );
        self.check_status_mapping(
            &instance,
            &message,
            depth,
            &[429],
            ConnectorErrorCode::RateLimitExceeded,
            Rule::RateLimitIsRateLimitExceeded,
        );
        self.check_failures_are_errors(&instance, &message, depth);
        self.check_no_panics(&message, depth);
    }

    fn check_templates(&mut self, sample: &Value, templates: &[Value]) {
        // Templates built from the sample's own (its Generic one, else its first), so that a
        // connector with extra template fields still accepts them; without a locale, which
        // would restrict it to messages in that locale.
        let base = templates
            .iter()
            .find(|template| template.get("usageType") == Some(&json!("Generic")))
            .or(templates.first())
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(|| {
                json!({"content": "Your verification code is {{code}}."})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            });
        let config_with = |usage_type: TemplateType| {
            let mut template = base.clone();
            template.remove("locale");
            template.insert("usageType".to_owned(), json!(usage_type.as_str()));
            let mut config = sample.clone();
            config["templates"] = json!([template]);
            config
        };
        let options = self.options;

        match self.instantiate(&config_with(TemplateType::Generic)) {
            Err(error) => self.fail(
                Rule::UsageTypesFallBackToGeneric,
                format!(
                    "the sample config with only a Generic template is refused: {}",
                    describe_error(&error)
                ),
            ),
            Ok(instance) => {
                let mut wrong = Vec::new();
                for usage_type in TemplateType::ALL {
                    let trace = self.send(
                        &instance,
                        &message(usage_type, None),
                        |index| options.success_answer(index),
                        || format!("the first step of a {usage_type} message"),
                    );
                    match (trace.requests.is_empty(), &trace.outcome) {
                        (false, _) => {}
                        (true, Ok(_)) if options.sends_without_http => {}
                        (true, Ok(_)) => {
                            wrong.push(format!("{usage_type} (finished without any HTTP request)"))
                        }
                        (true, Err(error)) => {
                            wrong.push(format!("{usage_type} ({})", describe_error(error)))
                        }
                    }
                }
                if !wrong.is_empty() {
                    self.fail(
                        Rule::UsageTypesFallBackToGeneric,
                        format!(
                            "with only a Generic template, these usage types do not start with \
                             an HTTP request: {}",
                            wrong.join("; ")
                        ),
                    );
                }
            }
        }

        let mut wrong = Vec::new();
        let mut refused = Vec::new();
        for (only, usage_types) in [
            (
                TemplateType::Register,
                TemplateType::ALL
                    .iter()
                    .copied()
                    .filter(|&t| t != TemplateType::Register && t != TemplateType::Generic)
                    .collect::<Vec<_>>(),
            ),
            (TemplateType::SignIn, vec![TemplateType::Register]),
        ] {
            let instance = match self.instantiate(&config_with(only)) {
                Ok(instance) => instance,
                Err(error) => {
                    refused.push(format!("only {only}: {}", describe_error(&error)));
                    continue;
                }
            };
            for usage_type in usage_types {
                let trace = self.send(
                    &instance,
                    &message(usage_type, None),
                    |index| options.success_answer(index),
                    || format!("a {usage_type} message without its template"),
                );
                match (&trace.outcome, trace.requests.first()) {
                    (Err(error), None) if error.code == ConnectorErrorCode::TemplateNotFound => {}
                    (outcome, None) => wrong.push(format!(
                        "{usage_type} with a template for {only} only gave {}",
                        describe_outcome(outcome)
                    )),
                    (_, Some(request)) => wrong.push(format!(
                        "{usage_type} with a template for {only} only sent a {} request to {}",
                        request.method(),
                        without_query(request.url())
                    )),
                }
            }
        }
        if !refused.is_empty() {
            self.note(
                Rule::MissingTemplateIsTemplateNotFound,
                format!(
                    "the connector refuses configs without a Generic template ({}), so a missing \
                     template is caught when the config is saved",
                    refused.join("; ")
                ),
            );
        }
        if !wrong.is_empty() {
            self.fail(
                Rule::MissingTemplateIsTemplateNotFound,
                format!(
                    "without a template for the usage type or Generic: {}",
                    wrong.join("; ")
                ),
            );
        }
    }

    fn check_requests(&mut self, happy: &Trace, normalized: &Value) {
        let Some(first) = happy.requests.first() else {
            match &happy.outcome {
                Ok(_) if self.options.sends_without_http => self.note(
                    Rule::FirstRequestTargetsConfigUrl,
                    "not checked: the send finished without an HTTP request (sends_without_http)",
                ),
                Ok(_) => self.fail_with_fix(
                    Rule::FirstRequestTargetsConfigUrl,
                    "the first step is Done: the send made no HTTP request",
                    "describe the provider's request with `Step::http(request)`: the host \
                     performs it; a development connector that sends nothing says so with \
                     `Conformance::sends_without_http()`",
                ),
                Err(error) => self.fail(
                    Rule::FirstRequestTargetsConfigUrl,
                    format!(
                        "the first step is an error, not an HTTP request: {}",
                        describe_error(error)
                    ),
                ),
            }
            return;
        };
        let mut urls = BTreeSet::new();
        config_urls(&self.options.sample_config, &mut urls);
        config_urls(normalized, &mut urls);
        let url = first.url();
        if urls.is_empty() {
            if !url.to_ascii_lowercase().starts_with("https://") {
                self.fail(
                    Rule::FirstRequestTargetsConfigUrl,
                    format!(
                        "the config has no URL, so the first request must go to the provider's \
                         fixed https URL, but it goes to {}",
                        without_query(url)
                    ),
                );
            }
        } else if !urls.iter().any(|base| is_under(url, base)) {
            self.fail(
                Rule::FirstRequestTargetsConfigUrl,
                format!(
                    "the first request goes to {}, which is under none of the config's URLs ({})",
                    without_query(url),
                    join(urls.iter().map(|url| without_query(url)))
                ),
            );
        }
        for (index, request) in happy.requests.iter().enumerate() {
            if !METHODS.contains(&request.method()) {
                self.fail(
                    Rule::FirstRequestTargetsConfigUrl,
                    format!(
                        "{} uses the method {:?}; the kit accepts {}",
                        nth_request(index),
                        request.method(),
                        join(METHODS)
                    ),
                );
            }
        }
    }

    fn check_status_mapping(
        &mut self,
        instance: &ThroughBoundary<Connector>,
        message: &SmsMessage,
        depth: usize,
        statuses: &[u16],
        expected: ConnectorErrorCode,
        rule: Rule,
    ) {
        let options = self.options;
        for failing in 0..depth {
            for &status in statuses {
                let mut wrong = Vec::new();
                for body in [
                    SampleBody::empty(),
                    SampleBody::empty_object(),
                    SampleBody::text(),
                ] {
                    let answer = body.answer(status);
                    let trace = self.send(
                        instance,
                        message,
                        |index| match index < failing {
                            true => options.success_answer(index),
                            false => answer.clone(),
                        },
                        || {
                            format!(
                                "{} answered {status} with {}",
                                nth_request(failing),
                                body.description
                            )
                        },
                    );
                    match &trace.outcome {
                        Err(error) if error.code == expected => {}
                        outcome => wrong.push(format!(
                            "with {}, the send ended with {}",
                            body.description,
                            describe_outcome(outcome)
                        )),
                    }
                }
                if !wrong.is_empty() {
                    self.fail(
                        rule,
                        format!(
                            "{} answered {status} (expected {expected}): {}",
                            nth_request(failing),
                            wrong.join("; ")
                        ),
                    );
                }
            }
        }
    }

    fn check_failures_are_errors(
        &mut self,
        instance: &ThroughBoundary<Connector>,
        message: &SmsMessage,
        depth: usize,
    ) {
        let options = self.options;
        for failing in 0..depth {
            let (success_status, success_body) = options.success_sample(failing);
            let mut bodies = vec![
                SampleBody::empty(),
                SampleBody::empty_object(),
                SampleBody::text(),
                SampleBody::html(),
                SampleBody::binary(),
                SampleBody::truncated_json(),
            ];
            bodies.push(SampleBody::success(success_body));

            let mut receipts = Vec::new();
            for status in FAILURE_STATUSES {
                let accepted: Vec<&str> = bodies
                    .iter()
                    .filter(|body| {
                        let answer = body.answer(status);
                        let trace = drive(instance, message, |index| match index < failing {
                            true => options.success_answer(index),
                            false => answer.clone(),
                        });
                        trace.outcome.is_ok()
                    })
                    .map(|body| body.description)
                    .collect();
                if accepted.len() == bodies.len() {
                    receipts.push(format!("{status} (any body)"));
                } else if !accepted.is_empty() {
                    receipts.push(format!("{status} with {}", join(accepted)));
                }
            }
            if !receipts.is_empty() {
                self.fail(
                    Rule::FailuresAreErrors,
                    format!(
                        "{} answered outside 2xx and the send finished with a receipt: {}",
                        nth_request(failing),
                        receipts.join("; ")
                    ),
                );
            }

            if options.accepts_any_2xx_body || !(200..300).contains(&success_status) {
                continue;
            }
            let garbage: Vec<&str> = [
                SampleBody::empty(),
                SampleBody::text(),
                SampleBody::html(),
                SampleBody::binary(),
                SampleBody::truncated_json(),
            ]
            .iter()
            .filter(|body| body.bytes != success_body)
            .filter(|body| {
                let answer = body.answer(success_status);
                let trace = drive(instance, message, |index| match index < failing {
                    true => options.success_answer(index),
                    false => answer.clone(),
                });
                trace.outcome.is_ok()
            })
            .map(|body| body.description)
            .collect();
            if !garbage.is_empty() {
                self.fail(
                    Rule::FailuresAreErrors,
                    format!(
                        "{} answered {} with {}, and the send finished with a receipt",
                        nth_request(failing),
                        success_status,
                        join(garbage)
                    ),
                );
            }
        }
        if options.accepts_any_2xx_body {
            self.note(
                Rule::FailuresAreErrors,
                "a 2xx with an empty, non-JSON or binary body may succeed (accepts_any_2xx_body)",
            );
        }
    }

    /// The sweep: every sampled status with every awkward body, at every request of the
    /// send, on the connector itself inside `catch_unwind`.
    fn check_no_panics(&mut self, message: &SmsMessage, depth: usize) {
        let sample = self.options.sample_config.clone();
        let connector = match catching(|| {
            catch_unwind(AssertUnwindSafe(|| validate_config::<Connector>(sample)))
        }) {
            Ok(Ok((_, connector))) => connector,
            // Refused: already reported under sample_config_valid.
            Ok(Err(_)) => return,
            Err(payload) => {
                self.fail(
                    Rule::NoPanics,
                    format!(
                        "building the connector from the sample config panicked: {}{}",
                        panic_text(payload.as_ref()),
                        panic_location()
                    ),
                );
                return;
            }
        };
        let options = self.options;
        let bodies = [
            SampleBody::empty(),
            SampleBody::binary(),
            SampleBody::truncated_json(),
            SampleBody::html(),
            SampleBody::huge(),
        ];
        for failing in 0..depth {
            // Per body kind: the statuses it panicked at, and the first panic's message.
            let mut panics: Vec<(&str, Vec<u16>, String)> = Vec::new();
            // The 1 MiB body costs a second or more per status in a debug build: one status
            // of each kind (success, auth, rate limit, server error) is enough for it.
            let huge_statuses = [options.success_sample(failing).0, 401, 429, 500];
            for body in &bodies {
                let statuses = match body.description == SampleBody::HUGE {
                    true => &huge_statuses[..],
                    false => &SWEEP_STATUSES[..],
                };
                for &status in statuses {
                    let answer = body.answer(status);
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        drive(&connector, message, |index| match index < failing {
                            true => options.success_answer(index),
                            false => answer.clone(),
                        })
                    }));
                    if let Err(payload) = result {
                        let text = format!("{}{}", panic_text(payload.as_ref()), panic_location());
                        match panics
                            .iter_mut()
                            .find(|(kind, ..)| *kind == body.description)
                        {
                            Some((_, statuses, _)) => statuses.push(status),
                            None => panics.push((body.description, vec![status], text)),
                        }
                    }
                }
            }
            for (kind, statuses, first_panic) in panics {
                self.fail(
                    Rule::NoPanics,
                    format!(
                        "`step` panicked when {} was answered with {kind}, at status{} {} \
                         (first panic: {first_panic})",
                        nth_request(failing),
                        if statuses.len() == 1 { "" } else { "es" },
                        join(statuses.iter().map(u16::to_string))
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_matched_at_a_boundary() {
        assert!(is_under(
            "https://api.example.com/send",
            "https://api.example.com"
        ));
        assert!(is_under(
            "https://api.example.com/send",
            "https://api.example.com/"
        ));
        assert!(is_under(
            "https://api.example.com",
            "https://api.example.com/"
        ));
        assert!(is_under(
            "https://api.example.com?x=1",
            "https://api.example.com"
        ));
        assert!(is_under(
            "https://h/send?key=1&to=2",
            "https://h/send?key=1"
        ));
        assert!(!is_under(
            "https://api.example.com.evil.org/send",
            "https://api.example.com"
        ));
        assert!(!is_under(
            "https://api.example.com:8443/",
            "https://api.example.com"
        ));
        assert!(!is_under("http://other/", "https://api.example.com"));
    }

    #[test]
    fn secret_names_and_mentions() {
        for secret in [
            "apiKey",
            "API_KEY",
            "authToken",
            "apiSecret",
            "password",
            "Authorization",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for plain in ["username", "accountSID", "baseUrl", "from", "keyId"] {
            assert!(!is_secret_name(plain), "{plain}");
        }
        assert!(mentions("| `from` | the sender |", "from"));
        assert!(!mentions("fromMessagingServiceSID only", "from"));
        assert!(mentions("set baseUrl.", "baseUrl"));
    }

    #[test]
    fn sample_bodies_are_what_they_say() {
        assert!(std::str::from_utf8(&SampleBody::binary().bytes).is_err());
        assert!(serde_json::from_slice::<Value>(&SampleBody::truncated_json().bytes).is_err());
        let huge = SampleBody::huge();
        assert_eq!(huge.bytes.len(), HUGE_BODY_BYTES);
        assert!(serde_json::from_slice::<Value>(&huge.bytes).is_ok());
    }
}
