//! The host side of the boundary: a safe, std-typed view of a connector root module, whether
//! it came from a `.so` (the host's loader) or was built in-process (vendors' tests, benchmarks).

use abi_stable::std_types::{ROption, RResult, RStr, RString};

use crate::ffi::{v1_0, FfiConnectorBox, FfiError, SmsConnectorModuleRef};
use crate::{
    ConnectorError, HttpResponse, PluginMetadata, SendProgress, SmsConnector, SmsMessage, Step,
};

/// A connector plugin's root module.
#[derive(Clone, Copy)]
pub struct ConnectorModule {
    root: RootModule,
}

/// The root module in the layout the plugin was checked against.
#[derive(Clone, Copy)]
enum RootModule {
    Current(SmsConnectorModuleRef),
    /// A plugin built against plugin-api 1.0: the functions appended since are absent.
    V1_0(v1_0::SmsConnectorModuleRef),
}

type MetadataJsonFn = extern "C" fn() -> RResult<RString, FfiError>;
type ValidateConfigFn = extern "C" fn(RStr<'_>) -> RResult<RString, FfiError>;
type InstantiateFn = extern "C" fn(RStr<'_>) -> RResult<FfiConnectorBox, FfiError>;

impl RootModule {
    fn metadata_json(self) -> MetadataJsonFn {
        match self {
            RootModule::Current(root) => root.metadata_json(),
            RootModule::V1_0(root) => root.metadata_json(),
        }
    }

    fn validate_config(self) -> ValidateConfigFn {
        match self {
            RootModule::Current(root) => root.validate_config(),
            RootModule::V1_0(root) => root.validate_config(),
        }
    }

    fn instantiate(self) -> InstantiateFn {
        match self {
            RootModule::Current(root) => root.instantiate(),
            RootModule::V1_0(root) => root.instantiate(),
        }
    }
}

impl ConnectorModule {
    pub fn from_root_module(root: SmsConnectorModuleRef) -> Self {
        Self {
            root: RootModule::Current(root),
        }
    }

    /// A plugin's root module checked against the 1.0 layout (see [`v1_0`]).
    pub fn from_root_module_1_0(root: v1_0::SmsConnectorModuleRef) -> Self {
        Self {
            root: RootModule::V1_0(root),
        }
    }

    /// The same root module a `.so` exports, built in this process without dlopen: the whole
    /// boundary (conversions, `catch_unwind`) runs, only the dynamic loading is skipped. Its
    /// metadata reports the plugin version `in-process`.
    pub fn in_process<Connector: SmsConnector>() -> Self {
        extern "C" fn metadata_json_in_process<Connector: SmsConnector>(
        ) -> RResult<RString, FfiError> {
            crate::export::export_metadata::<Connector>("in-process")
        }
        Self::from_root_module(crate::export::root_module::<Connector>(
            metadata_json_in_process::<Connector>,
        ))
    }

    /// The metadata, parsed and checked.
    pub fn metadata(&self) -> Result<PluginMetadata, MetadataError> {
        let json =
            into_result((self.root.metadata_json())()).map_err(MetadataError::Unavailable)?;
        let metadata: PluginMetadata = serde_json::from_str(&json)
            .map_err(|error| MetadataError::Invalid(error.to_string()))?;
        match metadata.connector.problems().into_iter().next() {
            Some(problem) => Err(MetadataError::Invalid(problem)),
            None => Ok(metadata),
        }
    }

    /// Validates a config; returns it normalized.
    pub fn validate_config(
        &self,
        config: &serde_json::Value,
    ) -> Result<serde_json::Value, ConnectorError> {
        let normalized = into_result((self.root.validate_config())(
            config.to_string().as_str().into(),
        ))?;
        serde_json::from_str(&normalized).map_err(|error| {
            ConnectorError::general(format!(
                "plugin returned a config that is not JSON: {error}"
            ))
        })
    }

    /// A config saved for an older build, migrated for this one; `Ok(None)` when the plugin
    /// has no migration for it, or predates `migrate_config` (a 1.0 plugin).
    pub fn migrate_config(
        &self,
        saved: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        let migrate_config = match self.root {
            RootModule::Current(root) => root.migrate_config(),
            RootModule::V1_0(_) => None,
        };
        let Some(migrate_config) = migrate_config else {
            return Ok(None);
        };
        let migrated = into_result(migrate_config(saved.to_string().as_str().into()))?;
        migrated
            .into_option()
            .map(|config| {
                serde_json::from_str(&config).map_err(|error| {
                    ConnectorError::general(format!(
                        "plugin migrated the config to something that is not JSON: {error}"
                    ))
                })
            })
            .transpose()
    }

    /// Builds a ready connector from a config (validating it again).
    pub fn instantiate(
        &self,
        config: &serde_json::Value,
    ) -> Result<ConnectorInstance, ConnectorError> {
        let instance = into_result((self.root.instantiate())(
            config.to_string().as_str().into(),
        ))?;
        Ok(ConnectorInstance { instance })
    }
}

fn into_result<T>(result: RResult<T, FfiError>) -> Result<T, ConnectorError> {
    result.into_result().map_err(ConnectorError::from)
}

/// Why a module's metadata cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataError {
    /// The plugin returned an error or panicked while producing its metadata.
    Unavailable(ConnectorError),
    /// The metadata does not parse or breaks a rule (no `en` name, duplicate form keys, ...).
    Invalid(String),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataError::Unavailable(error) => write!(
                formatter,
                "the plugin could not produce its metadata: {}",
                error.message
            ),
            MetadataError::Invalid(problem) => write!(formatter, "invalid metadata: {problem}"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// A configured connector living in a plugin. Cheap to share: `step` takes `&self`.
pub struct ConnectorInstance {
    instance: FfiConnectorBox,
}

impl ConnectorInstance {
    /// The first step of a send. The plugin reads `message` in place, and the host reads the
    /// step it returns in place: both are laid out for the boundary.
    pub fn start(&self, message: &SmsMessage) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(message, "".into(), ROption::RNone))
    }

    /// The next step, after the host performed `previous`'s request and got `response`. The
    /// state crosses back as the text the plugin wrote, never parsed by the host.
    pub fn resume(
        &self,
        message: &SmsMessage,
        previous: &Step,
        response: &HttpResponse,
    ) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(
            message,
            previous.state_json().into(),
            ROption::RSome(response),
        ))
    }

    /// A step from a [`SendProgress`], as a connector's own `step` takes it (test drivers).
    pub fn step(
        &self,
        message: &SmsMessage,
        progress: SendProgress<'_>,
    ) -> Result<Step, ConnectorError> {
        let state_json = if progress.state().is_null() {
            String::new()
        } else {
            progress.state().to_string()
        };
        into_result(self.instance.step(
            message,
            state_json.as_str().into(),
            progress.last_response().into(),
        ))
    }
}
