//! The one live SMS connector, ready to send.
//!
//! The host holds it behind an atomic pointer (`ArcSwapOption` in `AppState`): a send loads
//! the current `Arc` and keeps it to the end, so a swap never blocks or fails a send in
//! flight; new sends see the new connector.

use std::sync::Arc;

use plugin_api::ConnectorInstance;

use crate::factory_registry::{Factory, FactoryRegistry};
use crate::store::ConnectorRecord;

pub struct LiveConnector {
    pub connector_id: String,
    pub factory_id: String,
    pub status: LiveStatus,
}

pub enum LiveStatus {
    Ready {
        factory: Arc<Factory>,
        instance: ConnectorInstance,
    },
    /// Saved as live, but it cannot send; the reason says why (plugin missing, config
    /// rejected by the loaded build).
    Unavailable { reason: String },
}

impl LiveConnector {
    /// Builds the live connector for a saved record. Never fails: a connector that cannot be
    /// built is reported, not dropped.
    pub fn build(record: &ConnectorRecord, registry: &FactoryRegistry) -> Self {
        let status = match registry.get(&record.factory_id) {
            None => LiveStatus::Unavailable {
                reason: format!(
                    "no loaded plugin provides the factory {:?}",
                    record.factory_id
                ),
            },
            Some(factory) => match factory.plugin.module.instantiate(&record.config) {
                Ok(instance) => LiveStatus::Ready {
                    factory: Arc::clone(factory),
                    instance,
                },
                Err(error) => LiveStatus::Unavailable {
                    reason: format!(
                        "the loaded plugin rejects the saved config: {}",
                        error.message
                    ),
                },
            },
        };
        if let LiveStatus::Unavailable { reason } = &status {
            tracing::warn!(connector_id = %record.id, factory_id = %record.factory_id, %reason, "the live connector cannot send");
        }
        Self {
            connector_id: record.id.clone(),
            factory_id: record.factory_id.clone(),
            status,
        }
    }

    pub fn unavailable_reason(&self) -> Option<&str> {
        match &self.status {
            LiveStatus::Ready { .. } => None,
            LiveStatus::Unavailable { reason } => Some(reason),
        }
    }
}
