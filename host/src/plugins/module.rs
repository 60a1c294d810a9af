//! A loaded plugin build as the host calls it, wherever it runs: in the host process
//! (plugin-api's [`ConnectorModule`]) or in worker processes ([`WorkerPool`],
//! `--plugin-isolation process`). Everything above the loader calls these types, never the
//! two kinds apart.

use std::sync::Arc;

use plugin_api::{
    ConnectorError, ConnectorInstance, ConnectorModule, DeliveryReport, DeliveryReportError,
    HttpResponse, InboundReport, PluginNotes, SendContext, SmsMessage, Step,
};
use serde_json::Value;

use crate::isolation::pool::{run_blocking, PoolHealth, WorkerLost, WorkerPool};
use crate::isolation::protocol::{
    Answer, Call, WireContext, WireMessage, WireReport, WireResponse,
};
use crate::isolation::PluginIsolation;

#[derive(Clone)]
pub enum PluginModule {
    InProcess(ConnectorModule),
    Worker {
        pool: Arc<WorkerPool>,
        abi_version: Arc<str>,
    },
}

/// Why a call into a plugin got no answer of the plugin's own.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginCallError {
    /// The plugin answered with an error.
    Connector(ConnectorError),
    /// Its worker died or missed the deadline, twice (`--plugin-isolation process`).
    WorkerLost(String),
}

impl From<ConnectorError> for PluginCallError {
    fn from(error: ConnectorError) -> Self {
        PluginCallError::Connector(error)
    }
}

impl From<WorkerLost> for PluginCallError {
    fn from(lost: WorkerLost) -> Self {
        PluginCallError::WorkerLost(lost.reason)
    }
}

impl PluginCallError {
    /// As a connector error, for calls whose callers know only those (config checks,
    /// building a connector): a lost worker is a `general` error naming why.
    pub fn into_connector_error(self) -> ConnectorError {
        match self {
            PluginCallError::Connector(error) => error,
            PluginCallError::WorkerLost(reason) => {
                ConnectorError::general(format!("the plugin's worker process failed: {reason}"))
            }
        }
    }
}

fn unexpected(answer: &Answer) -> PluginCallError {
    PluginCallError::WorkerLost(format!("the worker answered out of turn: {answer:?}"))
}

fn parse_json(text: &str) -> Result<Value, ConnectorError> {
    serde_json::from_str(text).map_err(|error| {
        ConnectorError::general(format!(
            "the plugin returned a config that is not JSON: {error}"
        ))
    })
}

impl PluginModule {
    /// The plugin-api layout the build was opened through (`1.2`, `1.1`, `1.0`).
    pub fn abi_version(&self) -> &str {
        match self {
            PluginModule::InProcess(module) => module.abi_version(),
            PluginModule::Worker { abi_version, .. } => abi_version,
        }
    }

    /// `in-process` or `process`.
    pub fn isolation(&self) -> &'static str {
        match self {
            PluginModule::InProcess(_) => PluginIsolation::InProcess.label(),
            PluginModule::Worker { .. } => PluginIsolation::Process.label(),
        }
    }

    /// The worker pool's health, when the build runs in workers.
    pub fn worker_health(&self) -> Option<PoolHealth> {
        match self {
            PluginModule::InProcess(_) => None,
            PluginModule::Worker { pool, .. } => Some(pool.health()),
        }
    }

    fn call_blocking(pool: &Arc<WorkerPool>, call: Call) -> Result<Answer, PluginCallError> {
        run_blocking(pool.call(&call))
            .map_err(PluginCallError::WorkerLost)?
            .map_err(PluginCallError::from)
    }

    /// Validates a config; returns it normalized.
    pub fn validate_config(&self, config: &Value) -> Result<Value, ConnectorError> {
        match self {
            PluginModule::InProcess(module) => module.validate_config(config),
            PluginModule::Worker { pool, .. } => {
                let answer = Self::call_blocking(
                    pool,
                    Call::ValidateConfig {
                        config_json: config.to_string(),
                    },
                )
                .map_err(PluginCallError::into_connector_error)?;
                match answer {
                    Answer::Config(result) => parse_json(&result.map_err(ConnectorError::from)?),
                    other => Err(unexpected(&other).into_connector_error()),
                }
            }
        }
    }

    /// A config saved for an older build, migrated for this one (`None`: no migration).
    pub fn migrate_config(&self, saved: &Value) -> Result<Option<Value>, ConnectorError> {
        match self {
            PluginModule::InProcess(module) => module.migrate_config(saved),
            PluginModule::Worker { pool, .. } => {
                let answer = Self::call_blocking(
                    pool,
                    Call::MigrateConfig {
                        config_json: saved.to_string(),
                    },
                )
                .map_err(PluginCallError::into_connector_error)?;
                match answer {
                    Answer::Migrated(result) => result
                        .map_err(ConnectorError::from)?
                        .map(|config| parse_json(&config))
                        .transpose(),
                    other => Err(unexpected(&other).into_connector_error()),
                }
            }
        }
    }

    /// Builds a ready connector from a config (validating it again).
    pub fn instantiate(&self, config: &Value) -> Result<PluginInstance, ConnectorError> {
        match self {
            PluginModule::InProcess(module) => {
                module.instantiate(config).map(PluginInstance::InProcess)
            }
            PluginModule::Worker { pool, .. } => {
                let key = pool.new_instance_key();
                let config_json: Arc<str> = config.to_string().into();
                let answer = Self::call_blocking(
                    pool,
                    Call::Instantiate {
                        instance: key,
                        config_json: config_json.to_string(),
                    },
                )
                .map_err(PluginCallError::into_connector_error)?;
                match answer {
                    Answer::Instantiated(result) => {
                        result.map_err(ConnectorError::from)?;
                        Ok(PluginInstance::Worker(WorkerInstance {
                            pool: Arc::clone(pool),
                            key,
                            config_json,
                        }))
                    }
                    other => Err(unexpected(&other).into_connector_error()),
                }
            }
        }
    }
}

/// A connector built in worker processes: the pool, its key there, and the config any
/// worker builds it from.
pub struct WorkerInstance {
    pool: Arc<WorkerPool>,
    key: u64,
    config_json: Arc<str>,
}

/// A configured connector, wherever it runs.
pub enum PluginInstance {
    InProcess(ConnectorInstance),
    Worker(WorkerInstance),
}

/// Why a delivery report was not read.
#[derive(Debug)]
pub enum ReportReadError {
    Report(DeliveryReportError),
    WorkerLost(String),
}

impl PluginInstance {
    /// The instance in this process, when it is one (tests and benchmarks drive it directly).
    pub fn in_process(&self) -> Option<&ConnectorInstance> {
        match self {
            PluginInstance::InProcess(instance) => Some(instance),
            PluginInstance::Worker(_) => None,
        }
    }

    /// The first step of a send.
    pub async fn start(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, PluginCallError> {
        match self {
            PluginInstance::InProcess(instance) => {
                Ok(instance.start_in_context(message, context, notes)?)
            }
            PluginInstance::Worker(instance) => instance.step(message, context, None, notes).await,
        }
    }

    /// The next step of a send, after `previous`'s request was answered with `response`.
    pub async fn resume(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        previous: &Step,
        response: &HttpResponse,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, PluginCallError> {
        match self {
            PluginInstance::InProcess(instance) => {
                Ok(instance.resume_in_context(message, context, previous, response, notes)?)
            }
            PluginInstance::Worker(instance) => {
                instance
                    .step(
                        message,
                        context,
                        Some((previous.boundary_state_json(), response)),
                        notes,
                    )
                    .await
            }
        }
    }

    pub async fn parse_delivery_report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<DeliveryReport>, ReportReadError> {
        match self {
            PluginInstance::InProcess(instance) => instance
                .parse_delivery_report(report)
                .map_err(ReportReadError::Report),
            PluginInstance::Worker(instance) => {
                let call = Call::ParseReport {
                    instance: instance.key,
                    config_json: instance.config_json.to_string(),
                    report: WireReport::from(report),
                };
                match instance.pool.call(&call).await {
                    Ok(Answer::Reports(Ok(json))) => serde_json::from_str(&json).map_err(|error| {
                        ReportReadError::Report(DeliveryReportError::Malformed(format!(
                            "the plugin read the report into something that is not a list of reports: {error}"
                        )))
                    }),
                    Ok(Answer::Reports(Err((code, message)))) => Err(ReportReadError::Report(
                        DeliveryReportError::from_code(&code, message),
                    )),
                    Ok(other) => Err(ReportReadError::WorkerLost(format!(
                        "the worker answered out of turn: {other:?}"
                    ))),
                    Err(lost) => Err(ReportReadError::WorkerLost(lost.reason)),
                }
            }
        }
    }
}

impl WorkerInstance {
    async fn step(
        &self,
        message: &SmsMessage,
        context: &SendContext,
        previous: Option<(&str, &HttpResponse)>,
        notes: Option<&mut PluginNotes>,
    ) -> Result<Step, PluginCallError> {
        let call = Call::Step {
            instance: self.key,
            config_json: self.config_json.to_string(),
            message: WireMessage::from(message),
            context: WireContext::from(context),
            previous: previous.map(|(state_json, response)| {
                (state_json.to_owned(), WireResponse::from(response))
            }),
            notes_wanted: notes.is_some(),
        };
        match self.pool.call(&call).await? {
            Answer::Step {
                step,
                notes: written,
            } => {
                if let Some(notes) = notes {
                    for note in written {
                        notes.push(note);
                    }
                }
                Ok(step.map_err(ConnectorError::from)?.into())
            }
            other => Err(unexpected(&other)),
        }
    }
}
