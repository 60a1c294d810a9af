//! Saved connectors created, updated, enabled and deleted, and the live connector swapped
//! with them: the config prepared (masked secrets restored, validated and built by the
//! plugin), the store written, then the pointer swapped, all under the slot's change lock.

use std::path::Path;
use std::sync::Arc;

use crate::plugins::module::PluginInstance;
use arc_swap::ArcSwap;
use plugin_api::{ConfigFieldError, ConnectorError};
use serde_json::Value;

use crate::api_keys::KeyId;
use crate::live::live_connector::{Clear, LiveChange, LiveConnector, LiveSlot, Swap};
use crate::plugins::factory_registry::{Factory, FactoryRegistry};
use crate::secrets::{restore_masked, SecretKeys};
use crate::store::{
    ConnectorRecord, FallbackOutcome, NewConnector, Store, StoreError, UpdateOutcome,
};

/// Why a connector change did not happen. The HTTP edge decides what each one answers.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorChangeError {
    #[error("no loaded plugin provides the connector factory {factory_id:?}")]
    FactoryNotFound { factory_id: String },
    #[error("connector {id:?} does not exist")]
    NotFound { id: String },
    /// The plugin refused the config (a config the client sent, or the saved one it asked
    /// to enable).
    #[error("{}", .0.message)]
    InvalidConfig(ConnectorError),
    #[error("connector {id:?} kept changing while this change was made")]
    ChangedConcurrently { id: String },
    /// The live connector cannot be its own standby.
    #[error("connector {id:?} is the live connector: the fallback must be another connector (a previous one)")]
    FallbackIsLive { id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no randomness: {0}")]
    NoRandomness(String),
}

/// What a connector change needs: the factories, the store, the live slot, and the outbox
/// (to warn when a development connector goes live).
pub struct ConnectorLifecycle<'a> {
    pub factories: &'a ArcSwap<FactoryRegistry>,
    pub store: &'a dyn Store,
    pub live: &'a LiveSlot,
    pub outbox_path: Option<&'a Path>,
    /// The key that asks for the change, named in its log line (`None`: not said).
    pub changed_by: Option<KeyId>,
}

/// A new connector: its factory id, config and metadata as the client sent them.
pub struct NewConnectorRequest {
    pub factory_id: String,
    pub config: Value,
    pub metadata: Value,
}

/// The confidential config keys of a factory (none when it is not loaded).
pub fn secret_keys(factory: Option<&Arc<Factory>>) -> SecretKeys {
    factory
        .map(|factory| SecretKeys::new(factory.plugin.metadata.connector.confidential_keys()))
        .unwrap_or_default()
}

/// Puts stored secrets back where the client sent the mask, then has the plugin validate and
/// build the config. Returns the normalized config and a ready instance.
pub fn prepare_config(
    factory: &Factory,
    submitted: &Value,
    stored: Option<&Value>,
) -> Result<(Value, PluginInstance), ConnectorError> {
    // A saved secret only goes where it went before: with a changed destination, every masked
    // secret must be entered again.
    if let Some(stored) = stored.filter(|_| crate::secrets::contains_mask(submitted)) {
        let moved = crate::secrets::changed_destinations(submitted, stored);
        if !moved.is_empty() {
            let message = format!(
                "the saved secret is not sent to a changed destination ({}): enter it again",
                moved.join(", ")
            );
            return Err(plugin_api::invalid_config_fields(
                crate::secrets::masked_paths(submitted)
                    .into_iter()
                    .map(|field| ConfigFieldError {
                        field,
                        message: message.clone(),
                    })
                    .collect(),
            ));
        }
    }
    let config = restore_masked(submitted, stored).map_err(|field| {
        plugin_api::invalid_config_fields(vec![ConfigFieldError {
            field,
            message:
                "the masked placeholder stands where no secret is saved: send the value itself"
                    .to_owned(),
        }])
    })?;
    // A plugin's refusal may quote a value, a stored secret put back from behind a mask included.
    let redact = |error: ConnectorError| factory.secret_redactor(&config).redact_error(error);
    let normalized = factory
        .plugin
        .module
        .validate_config(&config)
        .map_err(redact)?;
    let normalized = in_submitted_order(normalized, &config);
    let instance = factory
        .plugin
        .module
        .instantiate(&normalized)
        .map_err(redact)?;
    Ok((normalized, instance))
}

/// The plugin's normalized config with its keys in the order the operator wrote them: a
/// plugin re-serializes its own struct (its field order, or alphabetical), and a config the
/// operator reads back should look as written. Keys the plugin added (defaults) follow the
/// operator's, in the plugin's order; values stay the plugin's.
fn in_submitted_order(normalized: Value, submitted: &Value) -> Value {
    match (normalized, submitted) {
        (Value::Object(mut normalized), Value::Object(submitted)) => {
            let mut ordered = serde_json::Map::with_capacity(normalized.len());
            for (key, submitted_child) in submitted {
                if let Some(child) = normalized.shift_remove(key) {
                    ordered.insert(key.clone(), in_submitted_order(child, submitted_child));
                }
            }
            ordered.extend(normalized);
            Value::Object(ordered)
        }
        (Value::Array(items), Value::Array(submitted)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match submitted.get(index) {
                    Some(submitted_item) => in_submitted_order(item, submitted_item),
                    None => item,
                })
                .collect(),
        ),
        (normalized, _) => normalized,
    }
}

/// Twelve random lowercase letters and digits, like Logto's connector ids.
pub fn new_connector_id() -> Result<String, ConnectorChangeError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|error| ConnectorChangeError::NoRandomness(error.to_string()))?;
    // 256 % 36 != 0 leaves a slight bias, harmless for an identifier.
    Ok(bytes
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect())
}

impl ConnectorLifecycle<'_> {
    /// The same lifecycle, its changes logged as made by `key`.
    pub fn changed_by(self, key: Option<KeyId>) -> Self {
        Self {
            changed_by: key,
            ..self
        }
    }

    /// The key id for a log line, `-` when not known.
    fn key_id(&self) -> String {
        self.changed_by
            .map_or_else(|| "-".to_owned(), |key| key.to_string())
    }

    /// The loaded factory with this id.
    pub fn find_factory(&self, factory_id: &str) -> Result<Arc<Factory>, ConnectorChangeError> {
        self.factories
            .load()
            .get(factory_id)
            .cloned()
            .ok_or_else(|| ConnectorChangeError::FactoryNotFound {
                factory_id: factory_id.to_owned(),
            })
    }

    /// The saved connector with this id.
    pub async fn find_connector(&self, id: &str) -> Result<ConnectorRecord, ConnectorChangeError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| ConnectorChangeError::NotFound { id: id.to_owned() })
    }

    /// Creates a connector and makes it the live one; the store retires the previous live
    /// connector in the same transaction, its config kept.
    pub async fn create(
        &self,
        request: NewConnectorRequest,
    ) -> Result<ConnectorRecord, ConnectorChangeError> {
        // The factory first, as Logto: an unknown one is refused whatever the config.
        let factory = self.find_factory(&request.factory_id)?;
        let (config, instance) = prepare_config(&factory, &request.config, None)
            .map_err(ConnectorChangeError::InvalidConfig)?;
        let new_connector = NewConnector {
            id: new_connector_id()?,
            factory_id: request.factory_id,
            config,
            metadata: request.metadata,
        };
        let mut change = self.live.lock_changes().await;
        let record = self.store.insert_live(new_connector).await?;
        tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, key_id = %self.key_id(), "connector created; it is the live one");
        self.make_live(&mut change, &record, factory, instance);
        Ok(record)
    }

    /// Replaces config (masked secrets kept) and/or metadata (`None`: kept); a change to the
    /// live connector swaps it.
    pub async fn update(
        &self,
        id: &str,
        new_config: Option<Value>,
        new_metadata: Option<Value>,
    ) -> Result<ConnectorRecord, ConnectorChangeError> {
        let mut change = self.live.lock_changes().await;
        // Read, validate, then write only if nothing changed in between (another host may have):
        // masked secrets are restored from exactly the config that is replaced.
        for _attempt in 0..3 {
            let stored = self.find_connector(id).await?;
            let factory = self.find_factory(&stored.factory_id)?;
            let submitted = new_config.as_ref().unwrap_or(&stored.config);
            let (config, instance) = prepare_config(&factory, submitted, Some(&stored.config))
                .map_err(ConnectorChangeError::InvalidConfig)?;
            let metadata = new_metadata
                .clone()
                .unwrap_or_else(|| stored.metadata.clone());
            match self.store.update(&stored, config, metadata).await? {
                UpdateOutcome::Updated(record) => {
                    tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, live = record.enabled, config_replaced = new_config.is_some(), key_id = %self.key_id(), "connector updated");
                    if record.enabled {
                        self.make_live(&mut change, &record, factory, instance);
                    } else if record.fallback {
                        change.set_standby(Some(built(&record, factory, instance)));
                    }
                    return Ok(record);
                }
                UpdateOutcome::NotFound => {
                    return Err(ConnectorChangeError::NotFound { id: id.to_owned() })
                }
                UpdateOutcome::ChangedMeanwhile => continue,
            }
        }
        Err(ConnectorChangeError::ChangedConcurrently { id: id.to_owned() })
    }

    /// Makes a saved connector live again, retiring the current one. Refused (and the
    /// current one kept) when its plugin is not loaded or rejects its config.
    pub async fn enable(&self, id: &str) -> Result<ConnectorRecord, ConnectorChangeError> {
        let mut change = self.live.lock_changes().await;
        let stored = self.find_connector(id).await?;
        let factory = self.find_factory(&stored.factory_id)?;
        // A config saved for an older build (a standby, a previous connector, across a plugin
        // upgrade) is migrated by the loaded build and saved, the config as it was kept in a
        // retired copy, as the plugin watcher does for the live connector.
        let (instance, migrated) = crate::plugins::config_migration::instantiate_or_migrate(
            &factory.plugin.module,
            &stored.config,
        )
        .map_err(ConnectorChangeError::InvalidConfig)?;
        if let Some(migrated) = migrated {
            let previous_copy_id = new_connector_id()?;
            match self
                .store
                .save_migrated_config(&stored, migrated, &previous_copy_id)
                .await?
            {
                UpdateOutcome::Updated(record) => {
                    tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, previous_config_kept_as = %previous_copy_id, "the connector's saved config was migrated by the loaded plugin build and saved before it went live; the config as it was is kept in a retired copy");
                }
                UpdateOutcome::NotFound => {
                    return Err(ConnectorChangeError::NotFound { id: id.to_owned() })
                }
                UpdateOutcome::ChangedMeanwhile => {
                    return Err(ConnectorChangeError::ChangedConcurrently { id: id.to_owned() })
                }
            }
        }
        let record =
            self.store
                .enable(id)
                .await?
                .ok_or_else(|| ConnectorChangeError::NotFound {
                    id: stored.id.clone(),
                })?;
        tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, key_id = %self.key_id(), "connector enabled; it is the live one");
        self.make_live(&mut change, &record, factory, instance);
        // The store cleared its fallback mark: the standby going live is no longer the standby.
        if change
            .current_standby()
            .is_some_and(|standby| standby.connector_id == record.id)
        {
            change.set_standby(None);
        }
        Ok(record)
    }

    /// Marks a previous connector as the standby (fallback), in place of any other. Refused
    /// for the live connector, and when its plugin is not loaded or rejects its config.
    pub async fn set_fallback(&self, id: &str) -> Result<ConnectorRecord, ConnectorChangeError> {
        let mut change = self.live.lock_changes().await;
        let stored = self.find_connector(id).await?;
        if stored.enabled {
            return Err(ConnectorChangeError::FallbackIsLive { id: id.to_owned() });
        }
        let factory = self.find_factory(&stored.factory_id)?;
        // A config saved for an older build is migrated in memory (see
        // `LiveConnector::build_standby`).
        let (instance, _) = crate::plugins::config_migration::instantiate_or_migrate(
            &factory.plugin.module,
            &stored.config,
        )
        .map_err(ConnectorChangeError::InvalidConfig)?;
        let record = match self.store.set_fallback(id).await? {
            FallbackOutcome::Set(record) => record,
            FallbackOutcome::NotFound => {
                return Err(ConnectorChangeError::NotFound { id: id.to_owned() })
            }
            FallbackOutcome::IsLive => {
                return Err(ConnectorChangeError::FallbackIsLive { id: id.to_owned() })
            }
        };
        tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, key_id = %self.key_id(), "connector marked as the fallback");
        change.set_standby(Some(built(&record, factory, instance)));
        Ok(record)
    }

    /// Clears a connector's fallback mark (nothing happens to one that has none).
    pub async fn clear_fallback(&self, id: &str) -> Result<ConnectorRecord, ConnectorChangeError> {
        let mut change = self.live.lock_changes().await;
        let record = self
            .store
            .clear_fallback(id)
            .await?
            .ok_or_else(|| ConnectorChangeError::NotFound { id: id.to_owned() })?;
        if change
            .current_standby()
            .is_some_and(|standby| standby.connector_id == id)
        {
            tracing::info!(connector_id = %id, key_id = %self.key_id(), "fallback mark cleared");
            change.set_standby(None);
        }
        Ok(record)
    }

    /// Deletes a live or retired connector; deleting the live one leaves none live.
    pub async fn delete(&self, id: &str) -> Result<(), ConnectorChangeError> {
        let mut change = self.live.lock_changes().await;
        if !self.store.delete(id).await? {
            return Err(ConnectorChangeError::NotFound { id: id.to_owned() });
        }
        let was_live = change.current().is_some_and(|live| live.connector_id == id);
        tracing::info!(connector_id = %id, was_live, key_id = %self.key_id(), "connector deleted");
        if was_live {
            change.clear(Clear::Deleted {
                connector_id: id.to_owned(),
            });
        }
        if change
            .current_standby()
            .is_some_and(|standby| standby.connector_id == id)
        {
            change.set_standby(None);
        }
        Ok(())
    }

    fn make_live(
        &self,
        change: &mut LiveChange<'_>,
        record: &ConnectorRecord,
        factory: Arc<Factory>,
        instance: PluginInstance,
    ) {
        change.swap(built(record, factory, instance), Swap::Changed);
        crate::send::outbox::warn_if_development_connector_is_live(
            &record.id,
            &record.factory_id,
            self.outbox_path,
        );
    }
}

/// A saved connector with the instance its plugin built from its config, ready to send.
fn built(
    record: &ConnectorRecord,
    factory: Arc<Factory>,
    instance: PluginInstance,
) -> Arc<LiveConnector> {
    Arc::new(LiveConnector::ready(
        &record.id,
        &record.factory_id,
        &record.config,
        factory,
        instance,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::in_submitted_order;

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        value
            .as_object()
            .map(|map| map.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn keys_come_back_in_the_order_written_with_added_ones_after() {
        let submitted: serde_json::Value = serde_json::from_str(
            r#"{"templates":[{"usageType":"SignIn","locale":"en","content":"{{code}}"}],"apiKey":"k"}"#,
        )
        .expect("JSON");
        // As a plugin normalizes: alphabetical, a default added, a value rewritten.
        let normalized = json!({
            "apiKey": "k",
            "region": "eu",
            "templates": [{"content": "{{code}}", "locale": "en", "usageType": "SignIn"}],
        });
        let ordered = in_submitted_order(normalized.clone(), &submitted);
        assert_eq!(keys(&ordered), ["templates", "apiKey", "region"]);
        assert_eq!(
            keys(&ordered["templates"][0]),
            ["usageType", "locale", "content"]
        );
        assert_eq!(ordered, normalized, "only the order changes");
    }
}
