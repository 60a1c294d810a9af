//! The plugin side of the boundary: the generic entry points that [`crate::export_sms_connector!`]
//! instantiates for a vendor's connector type. Every entry point runs the vendor's code inside
//! `catch_unwind`: an unwinding panic must never cross the `extern "C"` boundary, where it
//! would abort the whole host.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec},
};

use crate::ffi::{
    FfiConnector, FfiConnectorBox, FfiConnector_TO, FfiError, SmsConnectorModule,
    SmsConnectorModuleRef,
};
use crate::{
    ConnectorError, DeliveryReportError, HttpResponse, InboundReport, PluginMetadata, SendContext,
    SendProgress, SmsConnector, SmsMessage, Step, StepNotes,
};

/// Runs plugin code, turning a panic into a `general` error that names where it happened.
pub fn guarded<T>(
    entry_point: &str,
    run: impl FnOnce() -> Result<T, ConnectorError>,
) -> Result<T, ConnectorError> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic_payload) => {
            let reason = panic_payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic_payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(ConnectorError::general(format!(
                "the plugin panicked in {entry_point}: {reason}"
            )))
        }
    }
}

fn to_ffi_result<T, U: From<T>>(result: Result<T, ConnectorError>) -> RResult<U, FfiError> {
    match result {
        Ok(value) => RResult::ROk(value.into()),
        Err(error) => RResult::RErr(error.into()),
    }
}

fn parse_config_json(config_json: RStr<'_>) -> Result<serde_json::Value, ConnectorError> {
    serde_json::from_str(config_json.as_str()).map_err(|error| {
        ConnectorError::invalid_config(format!("config is not valid JSON: {error}"))
    })
}

pub fn export_metadata<Connector: SmsConnector>(
    plugin_version: &str,
) -> RResult<RString, FfiError> {
    to_ffi_result(guarded("metadata", || {
        let metadata = PluginMetadata {
            connector: Connector::metadata(),
            plugin_version: plugin_version.to_owned(),
            plugin_api_version: crate::PLUGIN_API_VERSION.to_owned(),
            delivery_reports: Connector::delivery_reports(),
        };
        serde_json::to_string(&metadata).map_err(|error| {
            ConnectorError::general(format!("metadata does not serialize: {error}"))
        })
    }))
}

pub extern "C" fn export_validate_config<Connector: SmsConnector>(
    config_json: RStr<'_>,
) -> RResult<RString, FfiError> {
    to_ffi_result(guarded("validate_config", || {
        let (normalized, _connector) =
            crate::validate_config::<Connector>(parse_config_json(config_json)?)?;
        Ok(normalized.to_string())
    }))
}

pub extern "C" fn export_instantiate<Connector: SmsConnector>(
    config_json: RStr<'_>,
) -> RResult<FfiConnectorBox, FfiError> {
    let result = guarded("instantiate", || {
        let (_normalized, connector) =
            crate::validate_config::<Connector>(parse_config_json(config_json)?)?;
        Ok(FfiConnector_TO::from_value(
            ExportedConnector(connector),
            TD_Opaque,
        ))
    });
    match result {
        Ok(instance) => RResult::ROk(instance),
        Err(error) => RResult::RErr(error.into()),
    }
}

pub extern "C" fn export_migrate_config<Connector: SmsConnector>(
    saved_config_json: RStr<'_>,
) -> RResult<ROption<RString>, FfiError> {
    to_ffi_result(guarded("migrate_config", || {
        let migrated = Connector::migrate_config(parse_config_json(saved_config_json)?)?;
        Ok(ROption::from(
            migrated.map(|config| RString::from(config.to_string())),
        ))
    }))
}

/// Builds the root module; the macro's loader function calls this once per process.
pub fn root_module<Connector: SmsConnector>(
    metadata_json: extern "C" fn() -> RResult<RString, FfiError>,
) -> SmsConnectorModuleRef {
    SmsConnectorModule {
        metadata_json,
        validate_config: export_validate_config::<Connector>,
        instantiate: export_instantiate::<Connector>,
        migrate_config: export_migrate_config::<Connector>,
    }
    .leak_into_prefix()
}

struct ExportedConnector<Connector>(Connector);

impl<Connector: SmsConnector> ExportedConnector<Connector> {
    /// One step: the progress built from what crossed, with the host's context when it gave
    /// one, and the notes collected only when it asked for them (so `notes_wanted` is true
    /// only then).
    fn run_step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        context: Option<&SendContext>,
        notes: Option<&mut RVec<RString>>,
    ) -> RResult<Step, FfiError> {
        let step_notes = StepNotes::new();
        let notes_wanted = notes.is_some();
        let result = guarded("step", || {
            let state = crate::exchange::state_from_json(state_json.as_str())?;
            let mut progress = match last_response.into_option() {
                Some(response) => SendProgress::after(state, response),
                None => SendProgress::start(),
            };
            if notes_wanted {
                progress = progress.with_notes(&step_notes);
            }
            if let Some(context) = context {
                progress = progress.with_context(context);
            }
            self.0.step(message, progress)
        });
        // Notes written before an error or a panic still tell what the step did.
        if let Some(notes) = notes {
            notes.extend(step_notes.take().into_iter().map(RString::from));
        }
        to_ffi_result(result)
    }
}

impl<Connector: SmsConnector> FfiConnector for ExportedConnector<Connector> {
    fn step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
    ) -> RResult<Step, FfiError> {
        self.run_step(message, state_json, last_response, None, None)
    }

    fn step_with_notes(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        notes: &mut RVec<RString>,
    ) -> RResult<Step, FfiError> {
        self.run_step(message, state_json, last_response, None, Some(notes))
    }

    fn step_in_context(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        notes: ROption<&mut RVec<RString>>,
    ) -> RResult<Step, FfiError> {
        self.run_step(
            message,
            state_json,
            last_response,
            Some(context),
            notes.into_option(),
        )
    }

    fn parse_delivery_report(&self, report: &InboundReport) -> RResult<RString, FfiError> {
        let parsed = catch_unwind(AssertUnwindSafe(|| self.0.parse_delivery_report(report)));
        let error = match parsed {
            Ok(Ok(reports)) => match serde_json::to_string(&reports) {
                Ok(json) => return RResult::ROk(json.into()),
                Err(error) => {
                    DeliveryReportError::Malformed(format!("the reports do not serialize: {error}"))
                }
            },
            Ok(Err(error)) => error,
            Err(_) => DeliveryReportError::Malformed(
                "the plugin panicked in parse_delivery_report".to_owned(),
            ),
        };
        RResult::RErr(FfiError {
            code: error.code().into(),
            message: error.message().into(),
            data_json: RString::new(),
        })
    }
}

/// Exports a connector type from a `cdylib`. Invoke it once, at the crate root:
///
/// ```ignore
/// plugin_api::export_sms_connector!(MyConnector);
/// ```
///
/// It generates the abi_stable root module and its loader; the vendor writes no `unsafe` and
/// sees no abi_stable type. The plugin's version is the vendor crate's `CARGO_PKG_VERSION`.
#[macro_export]
macro_rules! export_sms_connector {
    ($connector:ty) => {
        const _: () = {
            extern "C" fn __connector_host_metadata_json(
            ) -> $crate::__private::RResult<$crate::__private::RString, $crate::__private::FfiError> {
                $crate::__private::export_metadata::<$connector>(env!("CARGO_PKG_VERSION"))
            }

            fn __connector_host_root_module() -> $crate::__private::SmsConnectorModuleRef {
                $crate::__private::root_module::<$connector>(__connector_host_metadata_json)
            }

            extern "C" fn __connector_host_erased_root_module() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(__connector_host_root_module)
            }

            // What `#[abi_stable::export_root_module]` generates, spelled out because that
            // attribute names `::abi_stable` directly and vendors do not depend on it. The
            // symbol name is abi_stable's ROOT_MODULE_LOADER_NAME (checked by a test).
            // SAFETY: `from_constructor::<M>` needs the constructor's erased module to be an
            // `M` (here `SmsConnectorModuleRef`): `__call_root_module_loader` erases exactly the
            // `SmsConnectorModuleRef` that `__connector_host_root_module` returns. The layout
            // check stays on, so a host built against another layout refuses the file.
            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            static __CONNECTOR_HOST_LIB_HEADER: $crate::__private::abi_stable::library::LibHeader = unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<$crate::__private::SmsConnectorModuleRef>(
                    __connector_host_erased_root_module,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            };
        };
    };
}
