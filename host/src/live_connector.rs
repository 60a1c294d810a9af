//! The one live SMS connector, ready to send.
//!
//! The host holds it behind an atomic pointer (`ArcSwapOption` in `AppState`): a send loads
//! the current `Arc` and keeps it to the end, so a swap never blocks or fails a send in
//! flight; new sends see the new connector.

use std::sync::Arc;

use plugin_api::ConnectorInstance;

use crate::plugins::factory_registry::{Factory, FactoryRegistry};
use crate::secret_redaction::SecretRedactor;
use crate::send::SendMetrics;

pub struct LiveConnector {
    pub connector_id: String,
    pub factory_id: String,
    /// The saved config, kept to rebuild the connector on a plugin upgrade.
    pub config: serde_json::Value,
    pub status: LiveStatus,
    /// Registered once here, not on every send.
    pub send_metrics: SendMetrics,
    /// The config's secrets, kept out of its errors, receipts and log lines; computed once
    /// here, not on every send.
    pub redactor: SecretRedactor,
}

pub enum LiveStatus {
    Ready {
        /// The build it runs on, which stays loaded even if its file is removed.
        factory: Arc<Factory>,
        instance: ConnectorInstance,
    },
    /// Saved as live, but it cannot send; the reason says why (plugin missing, config
    /// rejected by the loaded build).
    Unavailable { reason: String },
    /// Saved as live, but this host cannot open its saved config (sealed under a key its key
    /// file lacks, or not sealed by a host at all): it never sends, with an old config or
    /// with one it did not seal. The host is not ready (`/health` 503).
    ConfigUnreadable { reason: String },
}

impl LiveConnector {
    /// Builds the live connector for a saved connector. Never fails: a connector that cannot
    /// be built is reported, not dropped.
    pub fn build(
        connector_id: &str,
        factory_id: &str,
        config: &serde_json::Value,
        registry: &FactoryRegistry,
    ) -> Self {
        let redactor = registry
            .get(factory_id)
            .map(|factory| SecretRedactor::for_factory(factory, config))
            .unwrap_or_default();
        let status = match registry.get(factory_id) {
            None => LiveStatus::Unavailable {
                reason: format!("no loaded plugin provides the factory {factory_id:?}"),
            },
            Some(factory) => match factory.plugin.module.instantiate(config) {
                Ok(instance) => LiveStatus::Ready {
                    factory: Arc::clone(factory),
                    instance,
                },
                Err(error) => LiveStatus::Unavailable {
                    reason: format!(
                        "the loaded plugin rejects the saved config: {}",
                        redactor.redact(&error.message)
                    ),
                },
            },
        };
        if let LiveStatus::Unavailable { reason } = &status {
            tracing::warn!(%connector_id, %factory_id, %reason, "the live connector cannot send");
        }
        Self {
            connector_id: connector_id.to_owned(),
            factory_id: factory_id.to_owned(),
            config: config.clone(),
            status,
            send_metrics: SendMetrics::for_factory(factory_id),
            redactor,
        }
    }

    /// A connector whose instance is already built (a create, an enable, a plugin upgrade).
    pub fn ready(
        connector_id: &str,
        factory_id: &str,
        config: &serde_json::Value,
        factory: Arc<Factory>,
        instance: ConnectorInstance,
    ) -> Self {
        Self {
            connector_id: connector_id.to_owned(),
            factory_id: factory_id.to_owned(),
            config: config.clone(),
            redactor: SecretRedactor::for_factory(&factory, config),
            status: LiveStatus::Ready { factory, instance },
            send_metrics: SendMetrics::for_factory(factory_id),
        }
    }

    /// The live connector whose saved config this host cannot open.
    pub fn config_unreadable(unreadable: &crate::store::UnreadableConfig) -> Self {
        tracing::error!(connector_id = %unreadable.connector_id, factory_id = %unreadable.factory_id, reason = %unreadable.reason, "the live connector cannot send: its saved config cannot be read here");
        Self {
            connector_id: unreadable.connector_id.clone(),
            factory_id: unreadable.factory_id.clone(),
            config: serde_json::Value::Null,
            // Nothing is sent through it, and its secrets are not known here.
            redactor: SecretRedactor::default(),
            status: LiveStatus::ConfigUnreadable {
                reason: unreadable.reason.clone(),
            },
            send_metrics: SendMetrics::for_factory(&unreadable.factory_id),
        }
    }

    pub fn unavailable_reason(&self) -> Option<&str> {
        match &self.status {
            LiveStatus::Ready { .. } => None,
            LiveStatus::Unavailable { reason } | LiveStatus::ConfigUnreadable { reason } => {
                Some(reason)
            }
        }
    }

    /// Why this host cannot read the live connector's saved config, if it cannot.
    pub fn unreadable_config_reason(&self) -> Option<&str> {
        match &self.status {
            LiveStatus::ConfigUnreadable { reason } => Some(reason),
            _ => None,
        }
    }

    /// The build it sends with, when it can send.
    pub fn running_factory(&self) -> Option<&Arc<Factory>> {
        match &self.status {
            LiveStatus::Ready { factory, .. } => Some(factory),
            LiveStatus::Unavailable { .. } | LiveStatus::ConfigUnreadable { .. } => None,
        }
    }

    /// Running on a build that is no longer the factory's in the registry (its file was
    /// removed, or another build took the factory id).
    pub fn is_orphaned(&self, registry: &FactoryRegistry) -> bool {
        match &self.status {
            LiveStatus::Ready { factory, .. } => registry
                .get(&self.factory_id)
                .is_none_or(|current| current.plugin.sha256 != factory.plugin.sha256),
            LiveStatus::Unavailable { .. } | LiveStatus::ConfigUnreadable { .. } => false,
        }
    }
}
