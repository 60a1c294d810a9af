// Shared by the fixtures that export a root module with the host's module name but not its
// layout; the package version (abi_stable's VERSION_STRINGS) is what tells them apart.

use abi_stable::{
    declare_root_module_statics, export_root_module, library::RootModule, package_version_strings,
    prefix_type::PrefixTypeTrait, sabi_types::VersionStrings, std_types::RString, StableAbi,
};

#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SmsConnectorModuleRef)))]
pub struct SmsConnectorModule {
    pub metadata_json: extern "C" fn(u64) -> RString,
    #[sabi(last_prefix_field)]
    pub something_else: extern "C" fn() -> u32,
}

impl RootModule for SmsConnectorModuleRef {
    declare_root_module_statics! {SmsConnectorModuleRef}
    const BASE_NAME: &'static str = "sms_connector";
    const NAME: &'static str = "sms_connector";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

extern "C" fn metadata_json(_: u64) -> RString {
    RString::new()
}

extern "C" fn something_else() -> u32 {
    7
}

#[export_root_module]
fn root_module() -> SmsConnectorModuleRef {
    SmsConnectorModule {
        metadata_json,
        something_else,
    }
    .leak_into_prefix()
}
