//! A config tested before it is saved: validated by its factory's plugin (masked secrets
//! taken from a saved connector), then a verification code sent through it. Nothing is saved.

use std::sync::Arc;

use plugin_api::TemplateType;
use serde_json::Value;

use crate::live::lifecycle::{prepare_config, ConnectorChangeError, ConnectorLifecycle};
use crate::phone::PhoneNumber;
use crate::plugins::factory_registry::Factory;
use crate::send::metrics::SendMetrics;
use crate::send::{SendError, SendTarget, Sender};
use crate::store::StoreError;

/// One config to test.
pub struct ConfigTest {
    pub factory: Arc<Factory>,
    pub phone: PhoneNumber,
    /// The unsaved config, possibly with masked secrets.
    pub config: Value,
    /// Picks a per-locale template.
    pub locale: Option<String>,
    /// The saved connector whose secrets stand behind the masks; without it, the live
    /// connector of this factory, else the one saved last.
    pub saved_connector_id: Option<String>,
}

/// Why a config test sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigTestError {
    #[error(transparent)]
    Connector(#[from] ConnectorChangeError),
    #[error("`savedConnectorId` {saved_connector_id:?} belongs to the factory {saved_factory_id:?}, not {factory_id:?}")]
    SavedConnectorOfAnotherFactory {
        saved_connector_id: String,
        saved_factory_id: String,
        factory_id: String,
    },
    #[error(transparent)]
    Send(#[from] SendError),
}

impl From<StoreError> for ConfigTestError {
    fn from(error: StoreError) -> Self {
        ConfigTestError::Connector(ConnectorChangeError::Store(error))
    }
}

/// Validates the config and sends a code with the Generic template through it.
pub async fn send_test_code(
    sender: &Sender,
    connectors: &ConnectorLifecycle<'_>,
    test: ConfigTest,
) -> Result<(), ConfigTestError> {
    let factory_id = test.factory.id();
    let stored_config = match test.saved_connector_id {
        Some(saved_connector_id) => {
            let saved = connectors.find_connector(&saved_connector_id).await?;
            if saved.factory_id != factory_id {
                return Err(ConfigTestError::SavedConnectorOfAnotherFactory {
                    saved_connector_id,
                    saved_factory_id: saved.factory_id,
                    factory_id: factory_id.to_owned(),
                });
            }
            Some(saved.config)
        }
        None if crate::secrets::contains_mask(&test.config) => {
            let mut candidates = connectors.store.list(None).await?;
            candidates.retain(|record| record.factory_id == factory_id);
            candidates.sort_by_key(|record| (record.enabled, record.updated_at));
            candidates.pop().map(|record| record.config)
        }
        None => None,
    };
    let (normalized, instance) =
        prepare_config(&test.factory, &test.config, stored_config.as_ref())
            .map_err(ConnectorChangeError::InvalidConfig)?;
    // The unsaved config's secrets are kept out of the answer and the log as a saved one's are.
    let redactor = test.factory.secret_redactor(&normalized);
    let code = crate::verification_code::generate_code()
        .map_err(|error| SendError::CodeNotGenerated(error.to_string()))?;
    let message = crate::verification_code::code_message(
        &test.phone,
        TemplateType::Generic,
        code,
        test.locale,
    );
    let send_metrics = SendMetrics::for_factory(factory_id);
    let target = SendTarget {
        standby: None,
        connector_id: "(unsaved config)",
        factory_id,
        instance: &instance,
        metrics: &send_metrics,
        redactor: &redactor,
        instead_of_live: None,
    };
    sender
        .send_config_test(target, &test.phone, message)
        .await?;
    tracing::info!(%factory_id, "test message sent");
    Ok(())
}
