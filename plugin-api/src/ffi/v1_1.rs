//! The plugin-api 1.1 ABI, frozen: what every plugin built against 1.1 exports. The host
//! opens such a plugin through these types (see [`super::v1_0`] for why a released layout is
//! kept). Nothing here may change: the names, fields and their order are 1.1's.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::ffi::FfiError;
use crate::{HttpResponse, SmsMessage, Step};

/// The root module of a 1.1 plugin.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SmsConnectorModuleRef)))]
pub struct SmsConnectorModule {
    pub metadata_json: extern "C" fn() -> RResult<RString, FfiError>,
    pub validate_config: extern "C" fn(config_json: RStr<'_>) -> RResult<RString, FfiError>,
    #[sabi(last_prefix_field)]
    pub instantiate: extern "C" fn(config_json: RStr<'_>) -> RResult<FfiConnectorBox, FfiError>,
    pub migrate_config:
        extern "C" fn(saved_config_json: RStr<'_>) -> RResult<ROption<RString>, FfiError>,
}

impl RootModule for SmsConnectorModuleRef {
    declare_root_module_statics! {SmsConnectorModuleRef}
    const BASE_NAME: &'static str = "sms_connector";
    const NAME: &'static str = "sms_connector";
    // Only the major version is compared for 1.x (abi_stable's `check_version`).
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.1.0");
}

/// A configured connector instance living in a 1.1 plugin.
#[sabi_trait]
pub trait FfiConnector: Send + Sync {
    #[sabi(last_prefix_field)]
    fn step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
    ) -> RResult<Step, FfiError>;

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
}

pub type FfiConnectorBox = FfiConnector_TO<'static, RBox<()>>;
