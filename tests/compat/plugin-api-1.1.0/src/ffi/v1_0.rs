//! The plugin-api 1.0 ABI, frozen: what every plugin built against 1.0 exports. The host
//! loads such a plugin through these types.
//!
//! Why a copy: abi_stable lets a plugin's prefix types (the root module, the connector's
//! vtable) have *more* fields than the host expects, never fewer: its layout check refuses a
//! host whose root module or vtable grew since the plugin was built ("too many fields"). So a
//! host that adds a function keeps the older layouts as they were, names and all, and opens
//! an older plugin through them (see [`crate::module::ConnectorModule`]). Nothing here may
//! change: the names, fields and their order are what 1.0 plugins were built with
//! (`tests/compat/plugin-api-1.0.0/src/ffi.rs`; a test compares them).

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString},
    StableAbi,
};

use crate::ffi::FfiError;
use crate::{HttpResponse, SmsMessage, Step};

/// The root module of a 1.0 plugin.
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
    // Only the major version is compared for 1.x (abi_stable's `check_version`).
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}

/// A configured connector instance living in a 1.0 plugin.
#[sabi_trait]
pub trait FfiConnector: Send + Sync {
    #[sabi(last_prefix_field)]
    fn step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
    ) -> RResult<Step, FfiError>;
}

pub type FfiConnectorBox = FfiConnector_TO<'static, RBox<()>>;
