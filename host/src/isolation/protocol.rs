//! What the host and a plugin worker say to each other over the worker's stdin and stdout:
//! frames of a 4-byte little-endian length and a postcard body. Plugin-api's rich types cross
//! as the JSON the plugin boundary already uses for them (metadata, configs, error data,
//! delivery reports); the per-send types (message, request, response) as plain fields.
//!
//! The conversation: the host sends [`Hello`]; the worker loads and checks the library, locks
//! itself down and answers [`Ready`]; then one [`Call`] and one [`Answer`] at a time, until
//! the host closes stdin (the worker exits) or kills it.

use std::io::{Read, Write};

use plugin_api::{
    ConnectorError, ConnectorErrorCode, HttpRequest, HttpResponse, InboundReport, SendContext,
    SendReceipt, SmsMessage, Step, TemplateType,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plugins::load_error::LoadError;

/// Raised when a frame's layout changes; the handshake refuses another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The worker's command-line arguments after `plugin-worker`: its address-space budget and
/// the host's pid (for the parent-death check).
pub const MEMORY_LIMIT_ARGUMENT: &str = "--memory-limit-bytes";
pub const PARENT_ARGUMENT: &str = "--parent-pid";

/// A frame larger than this is a broken peer (a response body is capped at 1 MiB by the
/// executor; a config or a report is far smaller).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// The private, content-addressed copy to load.
    pub library: String,
    /// The build's hex SHA-256: the worker checks the file it loads has it.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Ready {
    Loaded {
        /// The checked metadata, as JSON.
        metadata_json: String,
        abi_version: String,
    },
    Refused(WireLoadError),
}

/// One request to the plugin. Connector instances are built in the worker once per config
/// and kept under `instance` (the host's key for that config); a worker that has not seen
/// the key (a fresh one) builds it from `config`, which every call carries.
#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    ValidateConfig {
        config_json: String,
    },
    MigrateConfig {
        config_json: String,
    },
    Instantiate {
        instance: u64,
        config_json: String,
    },
    Step {
        instance: u64,
        config_json: String,
        message: WireMessage,
        context: WireContext,
        /// `None` for the first step; the previous step's state text with its answer after.
        previous: Option<(String, WireResponse)>,
        notes_wanted: bool,
    },
    ParseReport {
        instance: u64,
        config_json: String,
        report: WireReport,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Config(Result<String, WireError>),
    Migrated(Result<Option<String>, WireError>),
    Instantiated(Result<(), WireError>),
    Step {
        step: Result<WireStep, WireError>,
        notes: Vec<String>,
    },
    /// `[DeliveryReport]` as JSON, or the report error's code and message.
    Reports(Result<String, (String, String)>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub code: String,
    pub message: String,
    /// JSON text, empty for none.
    pub data_json: String,
}

impl From<&ConnectorError> for WireError {
    fn from(error: &ConnectorError) -> Self {
        WireError {
            code: error.code.as_str().to_owned(),
            message: error.message.clone(),
            data_json: error
                .data
                .as_ref()
                .map(serde_json::Value::to_string)
                .unwrap_or_default(),
        }
    }
}

impl From<WireError> for ConnectorError {
    fn from(error: WireError) -> Self {
        let code = ConnectorErrorCode::parse(&error.code).unwrap_or(ConnectorErrorCode::General);
        let mut connector_error = ConnectorError::new(code, error.message);
        if !error.data_json.is_empty() {
            if let Ok(data) = serde_json::from_str(&error.data_json) {
                connector_error = connector_error.with_data(data);
            }
        }
        connector_error
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireMessage {
    pub to: String,
    pub template_type: String,
    /// The payload object as JSON.
    pub payload_json: String,
}

impl From<&SmsMessage> for WireMessage {
    fn from(message: &SmsMessage) -> Self {
        WireMessage {
            to: message.to().to_owned(),
            template_type: message.template_type().as_str().to_owned(),
            payload_json: serde_json::Value::Object(message.payload().to_json_map()).to_string(),
        }
    }
}

impl WireMessage {
    pub fn to_message(&self) -> Result<SmsMessage, String> {
        let template_type: TemplateType = self
            .template_type
            .parse()
            .map_err(|_| format!("unknown template type {:?}", self.template_type))?;
        let payload: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.payload_json)
                .map_err(|error| format!("payload: {error}"))?;
        Ok(SmsMessage::new(self.to.clone(), template_type, payload))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireContext {
    pub message_id: String,
    pub delivery_report_url: Option<String>,
}

impl From<&SendContext> for WireContext {
    fn from(context: &SendContext) -> Self {
        WireContext {
            message_id: context.message_id().to_owned(),
            delivery_report_url: context.delivery_report_url().map(str::to_owned),
        }
    }
}

impl From<&WireContext> for SendContext {
    fn from(context: &WireContext) -> Self {
        SendContext::new(
            context.message_id.clone(),
            context.delivery_report_url.clone(),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<&HttpResponse> for WireResponse {
    fn from(response: &HttpResponse) -> Self {
        WireResponse {
            status: response.status(),
            headers: response
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            body: response.body().to_vec(),
        }
    }
}

impl From<WireResponse> for HttpResponse {
    fn from(response: WireResponse) -> Self {
        response.headers.into_iter().fold(
            HttpResponse::new(response.status, response.body),
            |built, (name, value)| built.with_header(name, value),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireStep {
    Http {
        request: WireRequest,
        /// The state text as it crosses the plugin boundary (a marked step's envelope too).
        state_json: String,
    },
    Done {
        provider_message_id: Option<String>,
    },
}

impl From<&Step> for WireStep {
    fn from(step: &Step) -> Self {
        match (step.request(), step.receipt()) {
            (Some(request), _) => WireStep::Http {
                request: WireRequest {
                    method: request.method().to_owned(),
                    url: request.url().to_owned(),
                    headers: request
                        .headers()
                        .map(|(name, value)| (name.to_owned(), value.to_owned()))
                        .collect(),
                    body: request.body().to_vec(),
                },
                state_json: step.boundary_state_json().to_owned(),
            },
            (None, receipt) => WireStep::Done {
                provider_message_id: receipt
                    .and_then(SendReceipt::provider_message_id)
                    .map(str::to_owned),
            },
        }
    }
}

impl From<WireStep> for Step {
    fn from(step: WireStep) -> Self {
        match step {
            WireStep::Http {
                request,
                state_json,
            } => {
                let built = request.headers.into_iter().fold(
                    HttpRequest::new(request.method, request.url),
                    |built, (name, value)| built.header(name, value),
                );
                Step::from_boundary_parts(built.with_body(request.body), state_json)
            }
            WireStep::Done {
                provider_message_id,
            } => Step::done(SendReceipt::with_optional_provider_message_id(
                provider_message_id,
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireReport {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<&InboundReport> for WireReport {
    fn from(report: &InboundReport) -> Self {
        WireReport {
            method: report.method().to_owned(),
            url: report.url().to_owned(),
            headers: report
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            body: report.body().to_vec(),
        }
    }
}

impl From<WireReport> for InboundReport {
    fn from(report: WireReport) -> Self {
        report
            .headers
            .into_iter()
            .fold(
                InboundReport::new(report.method, report.url),
                |built, (name, value)| built.with_header(name, value),
            )
            .with_body(report.body)
    }
}

/// The ways loading a library in a worker can fail: the subset of [`LoadError`] that
/// loading and reading metadata produce.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireLoadError {
    NotSharedObject {
        reason: String,
    },
    NotConnectorPlugin,
    IncompatiblePluginApiVersion {
        plugin_version: String,
        host_version: String,
    },
    IncompatibleAbi {
        summary: String,
        full_report: String,
    },
    PanickedWhileLoading {
        reason: String,
    },
    MetadataUnavailable {
        reason: String,
    },
    InvalidMetadata {
        reason: String,
    },
    PluginFailed {
        reason: String,
    },
}

impl From<LoadError> for WireLoadError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::NotSharedObject { reason } => WireLoadError::NotSharedObject { reason },
            LoadError::NotConnectorPlugin => WireLoadError::NotConnectorPlugin,
            LoadError::IncompatiblePluginApiVersion {
                plugin_version,
                host_version,
            } => WireLoadError::IncompatiblePluginApiVersion {
                plugin_version,
                host_version,
            },
            LoadError::IncompatibleAbi {
                summary,
                full_report,
            } => WireLoadError::IncompatibleAbi {
                summary,
                full_report,
            },
            LoadError::PanickedWhileLoading { reason } => {
                WireLoadError::PanickedWhileLoading { reason }
            }
            LoadError::MetadataUnavailable { reason } => {
                WireLoadError::MetadataUnavailable { reason }
            }
            LoadError::InvalidMetadata { reason } => WireLoadError::InvalidMetadata { reason },
            other => WireLoadError::PluginFailed {
                reason: other.to_string(),
            },
        }
    }
}

impl From<WireLoadError> for LoadError {
    fn from(error: WireLoadError) -> Self {
        match error {
            WireLoadError::NotSharedObject { reason } => LoadError::NotSharedObject { reason },
            WireLoadError::NotConnectorPlugin => LoadError::NotConnectorPlugin,
            WireLoadError::IncompatiblePluginApiVersion {
                plugin_version,
                host_version,
            } => LoadError::IncompatiblePluginApiVersion {
                plugin_version,
                host_version,
            },
            WireLoadError::IncompatibleAbi {
                summary,
                full_report,
            } => LoadError::IncompatibleAbi {
                summary,
                full_report,
            },
            WireLoadError::PanickedWhileLoading { reason } => {
                LoadError::PanickedWhileLoading { reason }
            }
            WireLoadError::MetadataUnavailable { reason } => {
                LoadError::MetadataUnavailable { reason }
            }
            WireLoadError::InvalidMetadata { reason } => LoadError::InvalidMetadata { reason },
            WireLoadError::PluginFailed { reason } => LoadError::PluginFailed { reason },
        }
    }
}

/// Encodes one frame: the length, then the body.
pub fn encode_frame(message: &impl Serialize) -> Result<Vec<u8>, String> {
    // The body is encoded after a placeholder for its length: one buffer, no copy.
    let mut frame = postcard::to_extend(message, vec![0u8; 4])
        .map_err(|error| format!("cannot encode a frame: {error}"))?;
    let body_length = frame.len() - 4;
    if body_length > MAX_FRAME_BYTES {
        return Err(format!("a frame of {body_length} bytes is over the limit"));
    }
    let length = u32::try_from(body_length).map_err(|_| "frame too large".to_owned())?;
    frame[..4].copy_from_slice(&length.to_le_bytes());
    Ok(frame)
}

pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|error| format!("cannot decode a frame: {error}"))
}

/// A frame's length from its 4-byte prefix, checked against the limit.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, String> {
    let length = u32::from_le_bytes(prefix) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(format!("a frame of {length} bytes is over the limit"));
    }
    Ok(length)
}

/// Reads one frame (blocking; the worker's side). `Ok(None)`: the peer closed the stream
/// between frames.
pub fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> Result<Option<T>, String> {
    let mut prefix = [0u8; 4];
    match input.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(format!("cannot read a frame: {error}")),
    }
    let mut body = vec![0u8; frame_length(prefix)?];
    input
        .read_exact(&mut body)
        .map_err(|error| format!("cannot read a frame: {error}"))?;
    decode_body(&body).map(Some)
}

/// Writes one frame and flushes it (blocking; the worker's side).
pub fn write_frame(output: &mut impl Write, message: &impl Serialize) -> Result<(), String> {
    let frame = encode_frame(message)?;
    output
        .write_all(&frame)
        .and_then(|()| output.flush())
        .map_err(|error| format!("cannot write a frame: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_step_and_its_parts_survive_the_trip() {
        let request = HttpRequest::post_json("https://api.example.com/send", &json!({"to": "+1"}))
            .header("Authorization", "Bearer x");
        let step = Step::http_with_state(request, json!({"n": 1})).sends_no_message();
        let wire: WireStep = (&step).into();
        let frame = encode_frame(&wire).unwrap();
        let decoded: WireStep = decode_body(&frame[4..]).unwrap();
        let rebuilt: Step = decoded.into();
        assert_eq!(rebuilt.request(), step.request());
        assert_eq!(rebuilt.boundary_state_json(), step.boundary_state_json());
        assert!(!rebuilt.may_send_message());

        let done: Step =
            WireStep::from(&Step::done(SendReceipt::with_provider_message_id("SM1"))).into();
        assert_eq!(done.receipt().unwrap().provider_message_id(), Some("SM1"));

        let message = SmsMessage::new(
            "+12015550123",
            TemplateType::SignIn,
            json!({"code": "123456"}),
        );
        assert_eq!(WireMessage::from(&message).to_message().unwrap(), message);

        let error = ConnectorError::rate_limit_exceeded("slow").not_accepted();
        let back: ConnectorError = WireError::from(&error).into();
        assert_eq!(back, error);
    }

    #[test]
    fn an_oversized_or_truncated_frame_is_an_error_not_a_panic() {
        assert!(frame_length((MAX_FRAME_BYTES as u32 + 1).to_le_bytes()).is_err());
        let frame = encode_frame(&Call::ValidateConfig {
            config_json: "{}".into(),
        })
        .unwrap();
        let mut truncated = &frame[..frame.len() - 1];
        assert!(read_frame::<Call>(&mut truncated).is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame::<Call>(&mut empty).unwrap().is_none());
    }
}
