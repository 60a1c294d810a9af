//! The one live SMS connector, ready to send, and the [`LiveSlot`] that holds it.
//!
//! The slot holds it behind an atomic pointer: a send loads the current `Arc` and keeps it to
//! the end, so a swap never blocks or fails a send in flight; new sends see the new
//! connector. Only a [`LiveChange`], taken from the slot's change lock, can swap it, so the
//! pointer always matches the last committed change.

use std::sync::Arc;

use crate::plugins::module::PluginInstance;
use arc_swap::ArcSwapOption;

use crate::plugins::factory_registry::{Factory, FactoryRegistry};
use crate::secret_redaction::SecretRedactor;
use crate::send::metrics::SendMetrics;

/// The live connector's one home: the atomic pointer, the lock that serializes changes to
/// it, and the swap's metric and log line.
#[derive(Default)]
pub struct LiveSlot {
    live: ArcSwapOption<LiveConnector>,
    /// The standby (fallback) connector, built and ready like the live one; swapped under the
    /// same change lock.
    standby: ArcSwapOption<LiveConnector>,
    /// Serializes connector changes (store write + swap) so the pointer always matches the
    /// last committed change. Sends never take it.
    changes: tokio::sync::Mutex<()>,
}

/// No connector is live: `POST /api/connectors` makes one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no SMS connector is live: create one with POST /api/connectors")]
pub struct NoLiveConnector;

impl LiveSlot {
    /// A slot holding the connector restored at start-up, if any.
    pub fn new(live: Option<Arc<LiveConnector>>) -> Self {
        report_live_connector(live.as_deref());
        Self {
            live: ArcSwapOption::new(live),
            standby: ArcSwapOption::empty(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// A slot holding the live connector and the standby restored at start-up.
    pub fn with_standby(
        live: Option<Arc<LiveConnector>>,
        standby: Option<Arc<LiveConnector>>,
    ) -> Self {
        let slot = Self::new(live);
        if let Some(standby) = &standby {
            tracing::info!(connector_id = %standby.connector_id, factory_id = %standby.factory_id, ready = standby.unavailable_reason().is_none(), "standby connector restored");
        }
        report_standby(standby.as_deref());
        slot.standby.store(standby);
        slot
    }

    /// The standby connector now, if one is marked; never blocks.
    pub fn current_standby(&self) -> Option<Arc<LiveConnector>> {
        self.standby.load_full()
    }

    /// The live connector now, if any; never blocks. A send keeps the `Arc` until it is done,
    /// so a swap meanwhile does not touch it.
    pub fn current(&self) -> Option<Arc<LiveConnector>> {
        self.live.load_full()
    }

    /// The live connector, or why there is none.
    pub fn current_live_connector(&self) -> Result<Arc<LiveConnector>, NoLiveConnector> {
        self.current().ok_or(NoLiveConnector)
    }

    /// Waits for the change lock: the one way to swap the live connector.
    pub async fn lock_changes(&self) -> LiveChange<'_> {
        LiveChange {
            _lock: self.changes.lock().await,
            slot: self,
        }
    }
}

/// Holds the slot's change lock: the store write and the swap that follows it happen while
/// no other change can.
pub struct LiveChange<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
    slot: &'a LiveSlot,
}

/// Why a connector becomes the live one, for the swap's log line.
pub enum Swap {
    /// Created, enabled, or its config replaced through this host.
    Changed,
    /// Moved to a new build of its plugin that accepted its config.
    PluginUpgraded,
    /// Its plugin is back; it can send again.
    PluginBack,
    /// Another host changed the shared store, to this generation.
    SharedStoreChanged { generation: i64 },
}

/// Why no connector is live any more, for the swap's log line.
pub enum Clear {
    /// The live connector was deleted through this host.
    Deleted { connector_id: String },
    /// Another host left none live in the shared store, at this generation.
    SharedStoreChanged { generation: i64 },
}

impl LiveChange<'_> {
    /// The live connector now.
    pub fn current(&self) -> Option<Arc<LiveConnector>> {
        self.slot.current()
    }

    /// Makes `next` the live connector; counted in `live_connector_swaps_total` and logged.
    pub fn swap(&mut self, next: Arc<LiveConnector>, swap: Swap) {
        let live = &next;
        match swap {
            Swap::Changed => {
                tracing::info!(connector_id = %live.connector_id, factory_id = %live.factory_id, "live connector swapped");
            }
            Swap::PluginUpgraded => {
                if let LiveStatus::Ready { factory, .. } = &live.status {
                    tracing::info!(
                        connector_id = %live.connector_id,
                        factory_id = %live.factory_id,
                        plugin_version = %factory.plugin.metadata.plugin_version,
                        sha256 = %factory.plugin.sha256,
                        "live connector moved to the new plugin build"
                    );
                }
            }
            Swap::PluginBack => {
                tracing::info!(connector_id = %live.connector_id, "the live connector's plugin is back; it can send again");
            }
            Swap::SharedStoreChanged { generation } => {
                tracing::info!(
                    connector_id = %live.connector_id,
                    factory_id = %live.factory_id,
                    ready = live.unavailable_reason().is_none(),
                    generation,
                    "live connector changed in the shared store; swapped"
                );
            }
        }
        self.store(Some(next));
    }

    /// Leaves no connector live; counted in `live_connector_swaps_total` and logged.
    pub fn clear(&mut self, clear: Clear) {
        match clear {
            Clear::Deleted { connector_id } => {
                tracing::info!(connector_id = %connector_id, "the live connector was deleted; no SMS connector is live");
            }
            Clear::SharedStoreChanged { generation } => {
                tracing::info!(generation, "no SMS connector is live in the shared store");
            }
        }
        self.store(None);
    }

    /// The standby now: the marked fallback connector, or none.
    pub fn current_standby(&self) -> Option<Arc<LiveConnector>> {
        self.slot.current_standby()
    }

    /// Makes `next` the standby connector (or none); logged when it changes.
    pub fn set_standby(&mut self, next: Option<Arc<LiveConnector>>) {
        let previous = self.slot.standby.load();
        let changed = previous.as_ref().map(|standby| &standby.connector_id)
            != next.as_ref().map(|standby| &standby.connector_id);
        if changed {
            match &next {
                Some(standby) => tracing::info!(
                    connector_id = %standby.connector_id,
                    factory_id = %standby.factory_id,
                    ready = standby.unavailable_reason().is_none(),
                    "standby connector set: sends fail over to it when the live connector's provider takes nothing"
                ),
                None => tracing::info!("no standby connector"),
            }
        }
        report_standby(next.as_deref());
        self.slot.standby.store(next);
    }

    fn store(&mut self, next: Option<Arc<LiveConnector>>) {
        report_live_connector(next.as_deref());
        self.slot.live.store(next);
        metrics::counter!("live_connector_swaps_total").increment(1);
    }
}

/// `sms_fallback_connector_ready`: a standby is marked and can send here.
fn report_standby(standby: Option<&LiveConnector>) {
    let ready = standby.is_some_and(|standby| standby.unavailable_reason().is_none());
    metrics::gauge!("sms_fallback_connector_ready").set(f64::from(u8::from(ready)));
}

/// `live_connector_configured` and `live_connector_ready`: whether a connector is live, and
/// whether it can send (its plugin loaded and its config accepted and readable here).
fn report_live_connector(live: Option<&LiveConnector>) {
    let configured = live.is_some();
    let ready = live.is_some_and(|live| live.unavailable_reason().is_none());
    metrics::gauge!("live_connector_configured").set(f64::from(u8::from(configured)));
    metrics::gauge!("live_connector_ready").set(f64::from(u8::from(ready)));
}

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
        instance: PluginInstance,
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
            .map(|factory| factory.secret_redactor(config))
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

    /// Builds the standby for a saved connector, like [`LiveConnector::build`], except that a
    /// saved config the loaded build can only read after its `migrate_config` is migrated in
    /// memory: the standby sends on a plugin upgrade without a store write, and the config
    /// stays saved as it was (it is migrated and saved when the connector goes live).
    pub fn build_standby(
        connector_id: &str,
        factory_id: &str,
        config: &serde_json::Value,
        registry: &FactoryRegistry,
    ) -> Self {
        let Some(factory) = registry.get(factory_id) else {
            return Self::build(connector_id, factory_id, config, registry);
        };
        match crate::plugins::config_migration::instantiate_or_migrate(
            &factory.plugin.module,
            config,
        ) {
            Ok((instance, migrated)) => {
                if migrated.is_some() {
                    tracing::info!(%connector_id, %factory_id, "the standby connector's saved config was migrated in memory for the loaded build");
                }
                Self::ready(
                    connector_id,
                    factory_id,
                    config,
                    Arc::clone(factory),
                    instance,
                )
            }
            Err(_) => Self::build(connector_id, factory_id, config, registry),
        }
    }

    /// A connector whose instance is already built (a create, an enable, a plugin upgrade).
    pub fn ready(
        connector_id: &str,
        factory_id: &str,
        config: &serde_json::Value,
        factory: Arc<Factory>,
        instance: PluginInstance,
    ) -> Self {
        Self {
            connector_id: connector_id.to_owned(),
            factory_id: factory_id.to_owned(),
            config: config.clone(),
            redactor: factory.secret_redactor(config),
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

    /// The standby to serve for the store's fallback connector: this one when it is the same
    /// connector, config and build, else built anew (`None`: no fallback is marked).
    pub fn standby_for(
        record: Option<&crate::store::ConnectorRecord>,
        current: Option<Arc<LiveConnector>>,
        registry: &FactoryRegistry,
    ) -> Option<Arc<LiveConnector>> {
        let record = record?;
        let same = current.filter(|current| {
            current.connector_id == record.id
                && current.factory_id == record.factory_id
                && current.config == record.config
                && current.unavailable_reason().is_none()
                && !current.is_orphaned(registry)
        });
        Some(same.unwrap_or_else(|| {
            Arc::new(LiveConnector::build_standby(
                &record.id,
                &record.factory_id,
                &record.config,
                registry,
            ))
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn unavailable(connector_id: &str) -> Arc<LiveConnector> {
        Arc::new(LiveConnector::build(
            connector_id,
            "no-such-factory",
            &serde_json::json!({}),
            &FactoryRegistry::default(),
        ))
    }

    fn swaps_counted(rendered: &str) -> u64 {
        rendered
            .lines()
            .find_map(|line| line.strip_prefix("live_connector_swaps_total "))
            .map_or(0, |value| value.trim().parse().unwrap())
    }

    #[tokio::test]
    async fn every_swap_and_clear_moves_the_pointer_and_is_counted() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let slot = LiveSlot::new(None);
        assert!(slot.current_live_connector().is_err());
        let swaps = [
            Swap::Changed,
            Swap::PluginUpgraded,
            Swap::PluginBack,
            Swap::SharedStoreChanged { generation: 7 },
        ];
        for (count, swap) in (1..).zip(swaps) {
            let id = format!("connector{count}");
            let mut change = slot.lock_changes().await;
            metrics::with_local_recorder(&recorder, || change.swap(unavailable(&id), swap));
            drop(change);
            assert_eq!(slot.current().unwrap().connector_id, id);
            assert_eq!(swaps_counted(&handle.render()), count);
        }
        for (count, clear) in (5..).zip([
            Clear::Deleted {
                connector_id: "connector4".to_owned(),
            },
            Clear::SharedStoreChanged { generation: 8 },
        ]) {
            let mut change = slot.lock_changes().await;
            metrics::with_local_recorder(&recorder, || change.clear(clear));
            drop(change);
            assert!(slot.current().is_none());
            assert_eq!(swaps_counted(&handle.render()), count);
        }
    }

    #[tokio::test]
    async fn a_reader_never_waits_for_the_change_lock() {
        let slot = LiveSlot::new(Some(unavailable("held")));
        let change = slot.lock_changes().await;
        // The lock is held: a send still reads the live connector.
        assert_eq!(slot.current().unwrap().connector_id, "held");
        assert_eq!(change.current().unwrap().connector_id, "held");
    }
}
