//! The host side of the boundary: a safe, std-typed view of a connector root module, whether
//! it came from a `.so` (the host's loader) or was built in-process (vendors' tests, benchmarks).

use abi_stable::library::{LibHeader, LibraryError};
use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};

use crate::ffi::{v1_0, v1_1, FfiConnectorBox, FfiError, SmsConnectorModuleRef};
use crate::{
    ConnectorError, DeliveryReport, DeliveryReportError, HttpResponse, InboundReport,
    PluginMetadata, SendContext, SendProgress, SmsConnector, SmsMessage, Step,
};

/// A connector plugin's root module.
#[derive(Clone, Copy)]
pub struct ConnectorModule {
    root: RootModule,
}

/// The root module, through the layouts of the plugin-api version the plugin was built
/// against (see [`crate::ffi::v1_0`] for why there are several).
#[derive(Clone, Copy)]
enum RootModule {
    /// 1.2 or later.
    Current(SmsConnectorModuleRef),
    V1_1(v1_1::SmsConnectorModuleRef),
    V1_0(v1_0::SmsConnectorModuleRef),
}

impl ConnectorModule {
    pub fn from_root_module(root: SmsConnectorModuleRef) -> Self {
        Self {
            root: RootModule::Current(root),
        }
    }

    /// A module built against plugin-api 1.0.
    pub fn from_root_module_1_0(root: v1_0::SmsConnectorModuleRef) -> Self {
        Self {
            root: RootModule::V1_0(root),
        }
    }

    /// Opens a library's root module: through this version's layouts, or when the plugin was
    /// built against an older 1.x (whose root module or vtable has fewer functions), through
    /// that version's frozen ones. The error is the check against this version's layouts
    /// when no version fits.
    pub fn from_library(header: &'static LibHeader) -> Result<Self, LibraryError> {
        let current_error = match header.init_root_module::<SmsConnectorModuleRef>() {
            Ok(root) => return Ok(Self::from_root_module(root)),
            Err(error @ LibraryError::AbiInstability(_)) => error,
            Err(other) => return Err(other),
        };
        // Newest first: a 1.1 plugin's layout also has all of 1.0's.
        if let Ok(root) = header.init_root_module::<v1_1::SmsConnectorModuleRef>() {
            return Ok(Self {
                root: RootModule::V1_1(root),
            });
        }
        header
            .init_root_module::<v1_0::SmsConnectorModuleRef>()
            .map(Self::from_root_module_1_0)
            .map_err(|_| current_error)
    }

    /// The plugin-api ABI the module was opened through: `1.2` (this version's layout: 1.3
    /// added no layout, its step mark travels in the state text), `1.1` or `1.0`.
    pub fn abi_version(&self) -> &'static str {
        match self.root {
            RootModule::Current(_) => "1.2",
            RootModule::V1_1(_) => "1.1",
            RootModule::V1_0(_) => "1.0",
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
        let json = into_result(match self.root {
            RootModule::Current(root) => (root.metadata_json())(),
            RootModule::V1_1(root) => (root.metadata_json())(),
            RootModule::V1_0(root) => (root.metadata_json())(),
        })
        .map_err(MetadataError::Unavailable)?;
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
        let config_json = config.to_string();
        let normalized = into_result(match self.root {
            RootModule::Current(root) => (root.validate_config())(config_json.as_str().into()),
            RootModule::V1_1(root) => (root.validate_config())(config_json.as_str().into()),
            RootModule::V1_0(root) => (root.validate_config())(config_json.as_str().into()),
        })?;
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
            RootModule::V1_1(root) => root.migrate_config(),
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
        let config_json = config.to_string();
        let instance = match self.root {
            RootModule::Current(root) => Instance::Current(into_result((root.instantiate())(
                config_json.as_str().into(),
            ))?),
            RootModule::V1_1(root) => Instance::V1_1(into_result((root.instantiate())(
                config_json.as_str().into(),
            ))?),
            RootModule::V1_0(root) => Instance::V1_0(into_result((root.instantiate())(
                config_json.as_str().into(),
            ))?),
        };
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
    instance: Instance,
}

enum Instance {
    Current(FfiConnectorBox),
    V1_1(v1_1::FfiConnectorBox),
    V1_0(v1_0::FfiConnectorBox),
}

/// What a step is given besides the message, the state and the response.
#[derive(Default)]
struct StepExtras<'a> {
    /// Read by 1.2 plugins.
    context: Option<&'a SendContext>,
    /// Written by 1.1 plugins and later.
    notes: Option<&'a mut RVec<RString>>,
}

impl Instance {
    /// One step through whichever vtable the plugin has: a 1.1 plugin reads no context, a
    /// 1.0 plugin writes no notes either.
    fn step(
        &self,
        message: &SmsMessage,
        state_json: RStr<'_>,
        last_response: ROption<&HttpResponse>,
        extras: StepExtras<'_>,
    ) -> RResult<Step, FfiError> {
        match (self, extras) {
            (
                Instance::Current(instance),
                StepExtras {
                    context: Some(context),
                    notes,
                },
            ) => {
                instance.step_in_context(message, context, state_json, last_response, notes.into())
            }
            (
                Instance::Current(instance),
                StepExtras {
                    context: None,
                    notes: Some(notes),
                },
            ) => instance.step_with_notes(message, state_json, last_response, notes),
            (Instance::Current(instance), _) => instance.step(message, state_json, last_response),
            (
                Instance::V1_1(instance),
                StepExtras {
                    notes: Some(notes), ..
                },
            ) => instance.step_with_notes(message, state_json, last_response, notes),
            (Instance::V1_1(instance), _) => instance.step(message, state_json, last_response),
            (Instance::V1_0(instance), _) => instance.step(message, state_json, last_response),
        }
    }
}

impl ConnectorInstance {
    /// The first step of a send. The plugin reads `message` in place, and the host reads the
    /// step it returns in place: both are laid out for the boundary.
    pub fn start(&self, message: &SmsMessage) -> Result<Step, ConnectorError> {
        into_result(
            self.instance
                .step(message, "".into(), ROption::RNone, StepExtras::default()),
        )
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
            StepExtras::default(),
        ))
    }

    /// [`ConnectorInstance::start`], with the plugin's notes appended to `notes` (a 1.0
    /// plugin writes none).
    pub fn start_with_notes(
        &self,
        message: &SmsMessage,
        notes: &mut PluginNotes,
    ) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(
            message,
            "".into(),
            ROption::RNone,
            StepExtras {
                context: None,
                notes: Some(&mut notes.notes),
            },
        ))
    }

    /// [`ConnectorInstance::resume`], with the plugin's notes appended to `notes`.
    pub fn resume_with_notes(
        &self,
        message: &SmsMessage,
        previous: &Step,
        response: &HttpResponse,
        notes: &mut PluginNotes,
    ) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(
            message,
            previous.state_json().into(),
            ROption::RSome(response),
            StepExtras {
                context: None,
                notes: Some(&mut notes.notes),
            },
        ))
    }

    /// The first step of a send, with the host's context for it (a 1.2 plugin reads it) and,
    /// when given, a place for the plugin's notes.
    pub fn start_in_context(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(
            message,
            "".into(),
            ROption::RNone,
            StepExtras {
                context: Some(context),
                notes: notes.map(|notes| &mut notes.notes),
            },
        ))
    }

    /// The next step of a send, with the host's context for it.
    pub fn resume_in_context(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        previous: &Step,
        response: &HttpResponse,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, ConnectorError> {
        self.resume_from_state_json(message, context, previous.state_json(), response, notes)
    }

    /// [`ConnectorInstance::resume_in_context`] with the previous step's state text as it
    /// crossed the boundary ([`Step::boundary_state_json`]): for a host that relays steps
    /// through another process. Not for vendors.
    #[doc(hidden)]
    pub fn resume_from_state_json(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        state_json: &str,
        response: &HttpResponse,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, ConnectorError> {
        into_result(self.instance.step(
            message,
            state_json.into(),
            ROption::RSome(response),
            StepExtras {
                context: Some(context),
                notes: notes.map(|notes| &mut notes.notes),
            },
        ))
    }

    /// A delivery report read by the connector: its statuses, or why not (a plugin older
    /// than 1.2 takes none: `Unsupported`).
    pub fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, DeliveryReportError> {
        let Instance::Current(instance) = &self.instance else {
            return Err(DeliveryReportError::Unsupported);
        };
        let json = instance
            .parse_delivery_report(report)
            .into_result()
            .map_err(|error| {
                DeliveryReportError::from_code(&error.code, error.message.into_string())
            })?;
        serde_json::from_str(&json).map_err(|error| {
            DeliveryReportError::Malformed(format!(
                "the plugin read the report into something that is not a list of reports: {error}"
            ))
        })
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
            StepExtras::default(),
        ))
    }
}

/// The notes a plugin wrote during steps ([`SendProgress::note`]), as the host receives them.
#[derive(Debug, Default)]
pub struct PluginNotes {
    notes: RVec<RString>,
}

impl PluginNotes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a note received another way (a host relaying steps through another process).
    #[doc(hidden)]
    pub fn push(&mut self, note: String) {
        self.notes.push(note.into());
    }

    /// The notes received so far, taken out in the order written.
    pub fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        self.notes.drain(..).map(RString::into_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectorMetadata, HttpRequest, TemplateType};

    struct Noting;

    impl SmsConnector for Noting {
        type Config = serde_json::Value;

        fn metadata() -> ConnectorMetadata {
            ConnectorMetadata {
                id: "noting".to_owned(),
                target: "noting".to_owned(),
                name: crate::english("Noting"),
                description: crate::english("Writes notes."),
                readme: String::new(),
                logo: None,
                logo_dark: None,
                config_template: "{}".to_owned(),
                form_items: Vec::new(),
            }
        }

        fn from_config(_config: Self::Config) -> Result<Self, ConnectorError> {
            Ok(Noting)
        }

        fn step(
            &self,
            _message: &SmsMessage,
            progress: SendProgress<'_>,
        ) -> Result<Step, ConnectorError> {
            match progress.last_response() {
                None => {
                    progress.note("built the request");
                    // What the step was given, where the test can read it.
                    Ok(Step::http(HttpRequest::new(
                        "POST",
                        format!(
                            "https://sms.example/send?notes_wanted={}&message={}&report={}",
                            progress.notes_wanted(),
                            progress.message_id().unwrap_or("none"),
                            progress.delivery_report_url().unwrap_or("none")
                        ),
                    )))
                }
                Some(response) if response.status() == 429 => {
                    progress.note(format!("the provider answered {}", response.status()));
                    Err(ConnectorError::rate_limit_exceeded("throttled")
                        .with_retry_after(response.retry_after().unwrap_or_default()))
                }
                Some(_) => {
                    progress.note("about to panic");
                    panic!("boom")
                }
            }
        }
    }

    #[test]
    fn notes_cross_the_boundary_with_the_step_and_survive_errors_and_panics() {
        let module = ConnectorModule::in_process::<Noting>();
        let instance = module.instantiate(&serde_json::json!({})).unwrap();
        let message = SmsMessage::new(
            "+15550100",
            TemplateType::Generic,
            crate::Payload::default(),
        );
        let mut notes = PluginNotes::new();

        let step = instance.start_with_notes(&message, &mut notes).unwrap();
        assert_eq!(notes.drain().collect::<Vec<_>>(), ["built the request"]);
        assert_eq!(
            step.request().unwrap().url(),
            "https://sms.example/send?notes_wanted=true&message=none&report=none"
        );
        assert_eq!(
            instance.start(&message).unwrap().request().unwrap().url(),
            "https://sms.example/send?notes_wanted=false&message=none&report=none",
            "a plain step collects no notes"
        );
        let context = SendContext::new(
            "m-1",
            Some("https://hosts.example/dlr/c?m=m-1&t=x".to_owned()),
        );
        let in_context = instance.start_in_context(&message, &context, None).unwrap();
        assert_eq!(
            in_context.request().unwrap().url(),
            "https://sms.example/send?notes_wanted=false&message=m-1&report=https://hosts.example/dlr/c?m=m-1&t=x",
            "the context reaches the plugin; notes are not wanted"
        );
        let noted = instance
            .start_in_context(&message, &context, Some(&mut notes))
            .unwrap();
        assert!(noted.request().unwrap().url().contains("notes_wanted=true"));
        assert_eq!(notes.drain().collect::<Vec<_>>(), ["built the request"]);

        let throttled = HttpResponse::new(429, Vec::new()).with_header("Retry-After", "7");
        let error = instance
            .resume_with_notes(&message, &step, &throttled, &mut notes)
            .unwrap_err();
        assert_eq!(error.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert_eq!(
            notes.drain().collect::<Vec<_>>(),
            ["the provider answered 429"]
        );

        let ok = HttpResponse::new(200, Vec::new());
        let panicked = instance
            .resume_with_notes(&message, &step, &ok, &mut notes)
            .unwrap_err();
        assert!(panicked.message.contains("panicked in step"), "{panicked}");
        assert_eq!(notes.drain().collect::<Vec<_>>(), ["about to panic"]);
    }
}
