//! The stable ABI between host and plugin, on abi_stable. Hidden from vendors: they see the
//! [`crate::SmsConnector`] trait and the [`crate::export_sms_connector!`] macro, never these types.
//!
//! Everything crossing the boundary is an abi_stable type with a checked layout. Rich,
//! rarely-called data (metadata, configs) crosses as JSON text. On the per-send path the
//! message is itself laid out for the boundary ([`crate::SmsMessage`], read in place by the
//! plugin), and the step comes back as plain `#[repr(C)]` structs: a send pays for a few
//! string copies of the request, not a JSON round trip.
//!
//! The root module is a prefix type: functions may be appended after `instantiate` in later
//! versions (older plugins then report them missing) but never inserted, removed or reordered.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec, Tuple2},
    StableAbi,
};

use crate::{
    ConnectorError, ConnectorErrorCode, HttpRequest, HttpResponse, SendReceipt, SmsMessage, Step,
};

/// The root module every connector plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SmsConnectorModuleRef)))]
pub struct SmsConnectorModule {
    /// [`crate::PluginMetadata`] as JSON.
    pub metadata_json: extern "C" fn() -> RResult<RString, FfiError>,
    /// Config JSON in, normalized config JSON out.
    pub validate_config: extern "C" fn(config_json: RStr<'_>) -> RResult<RString, FfiError>,
    /// Config JSON in, a ready connector out.
    #[sabi(last_prefix_field)]
    pub instantiate: extern "C" fn(config_json: RStr<'_>) -> RResult<FfiConnectorBox, FfiError>,
}

impl RootModule for SmsConnectorModuleRef {
    declare_root_module_statics! {SmsConnectorModuleRef}
    const BASE_NAME: &'static str = "sms_connector";
    const NAME: &'static str = "sms_connector";
    // The plugin-api version: abi_stable refuses a plugin built against an incompatible one
    // (for 0.x versions, a different minor version).
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A configured connector instance living in the plugin.
#[sabi_trait]
pub trait FfiConnector: Send + Sync {
    #[sabi(last_prefix_field)]
    fn step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&FfiHttpResponse>,
    ) -> RResult<FfiStep, FfiError>;
}

pub type FfiConnectorBox = FfiConnector_TO<'static, RBox<()>>;

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    /// A [`ConnectorErrorCode`] string; unknown codes are read as `general`.
    pub code: RString,
    pub message: RString,
    /// JSON text, or empty for none.
    pub data_json: RString,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpRequest {
    pub method: RString,
    pub url: RString,
    pub headers: RVec<Tuple2<RString, RString>>,
    pub body: RVec<u8>,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiHttpResponse {
    pub status: u16,
    pub headers: RVec<Tuple2<RString, RString>>,
    pub body: RVec<u8>,
}

#[repr(u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum FfiStep {
    Http {
        request: FfiHttpRequest,
        state_json: RString,
    },
    Done {
        provider_message_id: ROption<RString>,
    },
}

// ---- conversions, used on both sides ----

impl From<ConnectorError> for FfiError {
    fn from(error: ConnectorError) -> Self {
        FfiError {
            code: error.code.as_str().into(),
            message: error.message.into(),
            data_json: error
                .data
                .map(|data| data.to_string())
                .unwrap_or_default()
                .into(),
        }
    }
}

impl From<FfiError> for ConnectorError {
    fn from(error: FfiError) -> Self {
        let data = Some(error.data_json.as_str())
            .filter(|text| !text.is_empty())
            .and_then(|text| serde_json::from_str(text).ok());
        let (code, message) = match ConnectorErrorCode::parse(&error.code) {
            Some(code) => (code, error.message.into_string()),
            None => (
                ConnectorErrorCode::General,
                format!("[{}] {}", error.code, error.message),
            ),
        };
        ConnectorError {
            code,
            message,
            data,
        }
    }
}

fn headers_to_ffi(headers: Vec<(String, String)>) -> RVec<Tuple2<RString, RString>> {
    headers
        .into_iter()
        .map(|(name, value)| Tuple2(name.into(), value.into()))
        .collect()
}

fn headers_from_ffi(headers: &RVec<Tuple2<RString, RString>>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|Tuple2(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

impl From<HttpRequest> for FfiHttpRequest {
    fn from(request: HttpRequest) -> Self {
        FfiHttpRequest {
            method: request.method.into(),
            url: request.url.into(),
            headers: headers_to_ffi(request.headers),
            body: request.body.into(),
        }
    }
}

impl From<FfiHttpRequest> for HttpRequest {
    fn from(request: FfiHttpRequest) -> Self {
        HttpRequest {
            method: request.method.into_string(),
            url: request.url.into_string(),
            headers: headers_from_ffi(&request.headers),
            body: request.body.into_vec(),
        }
    }
}

impl From<HttpResponse> for FfiHttpResponse {
    fn from(response: HttpResponse) -> Self {
        FfiHttpResponse {
            status: response.status,
            headers: headers_to_ffi(response.headers),
            body: response.body.into(),
        }
    }
}

impl From<&FfiHttpResponse> for HttpResponse {
    fn from(response: &FfiHttpResponse) -> Self {
        HttpResponse {
            status: response.status,
            headers: headers_from_ffi(&response.headers),
            body: response.body.to_vec(),
        }
    }
}

impl From<Step> for FfiStep {
    fn from(step: Step) -> Self {
        match step {
            Step::Http { request, state } => FfiStep::Http {
                request: request.into(),
                state_json: if state.is_null() {
                    RString::new()
                } else {
                    state.to_string().into()
                },
            },
            Step::Done(receipt) => FfiStep::Done {
                provider_message_id: receipt.provider_message_id.map(RString::from).into(),
            },
        }
    }
}

impl TryFrom<FfiStep> for Step {
    type Error = ConnectorError;

    fn try_from(step: FfiStep) -> Result<Self, ConnectorError> {
        Ok(match step {
            FfiStep::Http {
                request,
                state_json,
            } => Step::Http {
                request: request.into(),
                state: state_from_json(&state_json)?,
            },
            FfiStep::Done {
                provider_message_id,
            } => Step::Done(SendReceipt {
                provider_message_id: provider_message_id.into_option().map(RString::into_string),
            }),
        })
    }
}

/// Empty text is the `Null` state, so single-step connectors never pay for JSON.
pub(crate) fn state_from_json(state_json: &str) -> Result<serde_json::Value, ConnectorError> {
    if state_json.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(state_json)
        .map_err(|error| ConnectorError::general(format!("send state is not valid JSON: {error}")))
}
