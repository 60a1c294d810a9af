//! # plugin-api
//!
//! The one crate an SMS connector plugin for connector-host depends on. A vendor implements
//! [`SmsConnector`] in plain Rust and exports it with [`export_sms_connector!`]; the crate owns
//! the stable ABI (abi_stable), the conversions and the panic containment.
//!
//! ```ignore
//! use plugin_api::*;
//!
//! pub struct MySms { /* parsed config */ }
//! impl SmsConnector for MySms { /* metadata, from_config, step */ }
//! plugin_api::export_sms_connector!(MySms);
//! ```
//!
//! # Layout
//! - [`connector`]: the [`SmsConnector`] trait, config parsing with field-level errors, and a
//!   test driver ([`run_send`]).
//! - [`message`]: [`SmsMessage`] and [`TemplateType`].
//! - [`exchange`]: the sans-IO send protocol: [`HttpRequest`], [`HttpResponse`], [`Step`].
//! - [`template`]: choosing a template (usage type, Generic fallback, locale) and rendering it.
//! - [`metadata`]: [`ConnectorMetadata`] and form items, with the checks the host applies.
//! - [`error`]: [`ConnectorError`] with Logto's codes.
//! - [`delivery`]: delivery reports: the host's [`SendContext`] for a send, an
//!   [`InboundReport`] read into [`DeliveryReport`]s.
//! - `ffi`, `export` (hidden): the ABI types and the plugin-side entry points.
//! - [`module`]: the host-side view of a root module ([`ConnectorModule`]).
//! - [`conformance`]: the conformance kit, for vendors' unit tests:
//!   `plugin_api::conformance::assert_conforms::<MySms>(&sample_config)`.
//!
//! This crate knows nothing of tokio, HTTP clients or the host: it must stay usable from a
//! plugin that does no I/O.

pub mod conformance;
pub mod connector;
pub mod delivery;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod export;
#[doc(hidden)]
pub mod ffi;
pub mod message;
pub mod metadata;
pub mod module;
pub mod template;

pub use connector::{
    invalid_config_fields, parse_config, require_http_url, require_non_empty, run_send,
    validate_config, ConfigFieldError, SmsConnector,
};
pub use delivery::{
    DeliveryReport, DeliveryReportError, DeliveryReportSupport, DeliveryStatus, InboundReport,
    SendContext,
};
pub use error::{
    ConnectorError, ConnectorErrorCode, MAX_RETRY_AFTER_SECONDS, PROVIDER_ACCEPTED_DATA_KEY,
    RETRY_AFTER_DATA_KEY,
};
pub use exchange::{
    url_encode, HttpRequest, HttpResponse, SendProgress, SendReceipt, Step, StepNotes,
};
pub use message::{Payload, SmsMessage, TemplateType, UnknownTemplateType};
pub use metadata::{
    english, ConnectorMetadata, FormItem, FormItemType, I18nText, PluginMetadata, SelectItem,
};
pub use module::{ConnectorInstance, ConnectorModule, MetadataError, PluginNotes};
pub use template::{find_template, find_template_for, render_template, SmsTemplate};

/// The version of plugin-api a plugin was built against; reported in its metadata.
pub const PLUGIN_API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the export macro needs; not for vendors.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{export_metadata, root_module};
    pub use crate::ffi::{FfiError, SmsConnectorModuleRef};
    pub use abi_stable;
    pub use abi_stable::std_types::{RResult, RString};
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_macro_uses_abi_stables_root_module_symbol() {
        let macro_source = include_str!("export.rs");
        let expected = format!(
            "#[unsafe(export_name = \"{}\")]",
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
        assert!(
            macro_source.contains(&expected),
            "export macro must use {expected}"
        );
    }
}
