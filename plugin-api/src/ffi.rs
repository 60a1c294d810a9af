//! The stable ABI between host and plugin, on abi_stable. Hidden from vendors: they see the
//! [`crate::SmsConnector`] trait and the [`crate::export_sms_connector!`] macro, never these types.
//!
//! Everything crossing the boundary is an abi_stable type with a checked layout. Rich,
//! rarely-called data (metadata, configs) crosses as JSON text. On the per-send path every
//! type is itself laid out for the boundary and read in place: the message
//! ([`crate::SmsMessage`]) and the response ([`crate::HttpResponse`]) by the plugin, the step
//! with its request or receipt ([`crate::Step`]) by the host. Nothing is copied or re-encoded;
//! each buffer is freed through the vtable of the allocator that made it.
//!
//! The root module and the connector's vtable are prefix types: functions may be appended in
//! later versions, never inserted, removed or reordered. A plugin built against a newer 1.x
//! loads as it is (its extra functions unused). A plugin built against an older 1.x has fewer
//! functions than these types, which abi_stable's layout check refuses: the host opens it
//! through that version's frozen layouts instead ([`v1_0`]).
//!
//! Added in 1.1: [`FfiConnector::step_with_notes`], `SmsConnectorModule::migrate_config`
//! (frozen in [`v1_1`]). Added in 1.2: [`FfiConnector::step_in_context`],
//! [`FfiConnector::parse_delivery_report`]. 1.3 added no layout: its
//! [`crate::Step::sends_no_message`] mark crosses inside the step's state text.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::{
    ConnectorError, ConnectorErrorCode, HttpResponse, InboundReport, SendContext, SmsMessage, Step,
};

pub mod v1_0;
pub mod v1_1;

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
    // Appended in 1.1, after the last prefix field: a 1.0 plugin lacks it and its accessor
    // answers `None` (`#[sabi(last_prefix_field)]` stays on `instantiate` for good).
    /// A config saved for an older build in, the config for this build out, or `RNone` for
    /// "no migration".
    pub migrate_config:
        extern "C" fn(saved_config_json: RStr<'_>) -> RResult<ROption<RString>, FfiError>,
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
        last_response: ROption<&HttpResponse>,
    ) -> RResult<Step, FfiError>;

    /// Since 1.1: `step`, with the plugin's notes on what it did appended to `notes`. A 1.0
    /// plugin's vtable has no such entry: the default body runs, a plain `step` without notes.
    fn step_with_notes(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        notes: &mut RVec<RString>,
    ) -> RResult<Step, FfiError> {
        let _ = notes;
        self.step(message, state_json, last_response)
    }

    /// Since 1.2: a step with the host's context for the send (its message id and
    /// delivery-report URL), and the plugin's notes appended to `notes` when the host wants
    /// them (`RNone`: it does not, and the plugin need not write any).
    fn step_in_context(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        notes: ROption<&mut RVec<RString>>,
    ) -> RResult<Step, FfiError> {
        let _ = context;
        match notes.into_option() {
            Some(notes) => self.step_with_notes(message, state_json, last_response, notes),
            None => self.step(message, state_json, last_response),
        }
    }

    /// Since 1.2: a delivery report read into `[DeliveryReport]` JSON, or why not (the
    /// codes of [`crate::DeliveryReportError`]).
    fn parse_delivery_report(&self, report: &InboundReport) -> RResult<RString, FfiError> {
        let _ = report;
        RResult::RErr(FfiError {
            code: "not_implemented".into(),
            message: "this connector takes no delivery reports".into(),
            data_json: RString::new(),
        })
    }
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
