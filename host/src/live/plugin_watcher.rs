//! Watching the plugins folder: inotify through notify-debouncer-full, or polling for network
//! filesystems where inotify sends nothing. Every batch of events (and an event-queue
//! overflow) triggers one reconcile of the whole folder, so a missed or merged event cannot
//! leave the host out of step with the folder.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use notify_debouncer_full::notify::{self, PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    new_debouncer, new_debouncer_opt, DebounceEventResult, Debouncer, RecommendedCache,
};

use crate::live::live_connector::{LiveConnector, LiveSlot, LiveStatus, Swap};
use crate::plugins::config_migration::instantiate_or_migrate;
use crate::plugins::factory_registry::FactoryRegistry;
use crate::plugins::folder::{LiveBuild, LiveUpgrade, PluginFolder};
use crate::plugins::loader::PluginLoader;
use crate::store::{Store, UpdateOutcome};

/// How changes to the plugins folder are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginWatchMode {
    /// The OS's change notifications (inotify).
    Notify,
    /// Listing the folder at this interval.
    Poll(Duration),
}

/// Quiet time before a batch of events is handled: a rename or a finished copy shows up in
/// well under a second.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch running; dropping it stops it.
pub enum PluginWatcher {
    Notify(Debouncer<RecommendedWatcher, RecommendedCache>),
    Poll(Debouncer<PollWatcher, RecommendedCache>),
}

/// A batch of events from the plugins folder (or an overflow): time to reconcile.
pub type FolderChanges = tokio::sync::mpsc::UnboundedReceiver<()>;

/// What a reconcile of the plugins folder touches: the loader, the folder as last seen, the
/// factories and the live slot.
pub struct PluginRescan<'a> {
    pub loader: &'a Arc<PluginLoader>,
    /// Only reconciles touch it.
    pub folder: &'a Arc<Mutex<PluginFolder>>,
    pub factories: &'a ArcSwap<FactoryRegistry>,
    pub live: &'a LiveSlot,
    /// Where a config migrated by a new build is saved.
    pub store: &'a dyn Store,
}

/// Starts watching `dir`; each batch of events is announced on the returned channel, which
/// [`rescan_on_changes`] follows.
pub fn watch_plugin_folder(
    dir: &Path,
    mode: PluginWatchMode,
) -> Result<(PluginWatcher, FolderChanges), String> {
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |result: DebounceEventResult| {
        match result {
            Ok(events) if events.iter().any(|event| event.need_rescan()) => {
                tracing::warn!("the plugins folder's event queue overflowed; rescanning it whole");
            }
            Ok(_) => {}
            Err(errors) => {
                for error in errors {
                    tracing::warn!(%error, "error watching the plugins folder; rescanning it");
                }
            }
        }
        let _ = changes.send(());
    };
    let mut watcher = match mode {
        PluginWatchMode::Notify => PluginWatcher::Notify(
            new_debouncer(DEBOUNCE, None, handler).map_err(|error| error.to_string())?,
        ),
        PluginWatchMode::Poll(interval) => {
            let config = notify::Config::default().with_poll_interval(interval);
            PluginWatcher::Poll(
                new_debouncer_opt::<_, PollWatcher, RecommendedCache>(
                    DEBOUNCE,
                    None,
                    handler,
                    RecommendedCache::new(),
                    config,
                )
                .map_err(|error| error.to_string())?,
            )
        }
    };
    match &mut watcher {
        PluginWatcher::Notify(debouncer) => debouncer.watch(dir, RecursiveMode::NonRecursive),
        PluginWatcher::Poll(debouncer) => debouncer.watch(dir, RecursiveMode::NonRecursive),
    }
    .map_err(|error| format!("cannot watch {}: {error}", dir.display()))?;
    tracing::info!(plugins_dir = %dir.display(), mode = ?mode, "watching the plugins folder");
    Ok((watcher, changed))
}

/// One reconcile per batch of changes, for as long as the watch runs; and one when a file
/// that waits for its signature (or a signature for its file) has waited long enough.
pub async fn rescan_on_changes(mut changed: FolderChanges, rescan: PluginRescan<'_>) {
    let mut reconcile_again_in = None;
    loop {
        let waited_out = async {
            match reconcile_again_in {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            change = changed.recv() => if change.is_none() { return },
            () = waited_out => {}
        }
        // Events that arrived meanwhile are covered by this one reconcile.
        while changed.try_recv().is_ok() {}
        reconcile_again_in = match rescan.rescan().await {
            Ok(again_in) => again_in,
            Err(error) => {
                tracing::error!(%error, "reconciling the plugins folder failed");
                None
            }
        };
    }
}

impl PluginRescan<'_> {
    /// Reconciles the plugins folder and swaps in the new registry; moves the live connector
    /// to an upgraded build (saving the config the build migrated, if it did), and revives a
    /// live connector that was waiting for its plugin. Returns when to reconcile again
    /// without a change, if a file waits for its signature.
    pub async fn rescan(&self) -> Result<Option<Duration>, String> {
        // Serialized with connector changes: the live pointer moves under the same lock.
        let mut change = self.live.lock_changes().await;
        let live = change.current();
        let live_build = live.as_deref().and_then(|live| match &live.status {
            LiveStatus::Ready { factory, .. } => Some(LiveBuild {
                connector_id: live.connector_id.clone(),
                factory_id: live.factory_id.clone(),
                sha256: factory.plugin.sha256.clone(),
                config: live.config.clone(),
            }),
            LiveStatus::Unavailable { .. } | LiveStatus::ConfigUnreadable { .. } => None,
        });
        let loader = Arc::clone(self.loader);
        let folder = Arc::clone(self.folder);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut folder = folder
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            folder.reconcile(&loader, live_build.as_ref())
        })
        .await
        .map_err(|error| format!("the reconcile task failed: {error}"))??;
        let registry = Arc::new(outcome.registry);
        self.factories.store(Arc::clone(&registry));

        let again_in = outcome.reconcile_again_in;
        // The standby moves to a new build of its plugin (or comes back with it) too.
        if let Some(standby) = change.current_standby() {
            if standby.is_orphaned(&registry) || standby.unavailable_reason().is_some() {
                let rebuilt = LiveConnector::build_standby(
                    &standby.connector_id,
                    &standby.factory_id,
                    &standby.config,
                    &registry,
                );
                change.set_standby(Some(Arc::new(rebuilt)));
            }
        }
        let Some(live) = live else {
            return Ok(again_in);
        };
        if let Some(LiveUpgrade {
            factory,
            instance,
            migrated_config,
        }) = outcome.live_upgrade
        {
            let config = match migrated_config {
                None => live.config.clone(),
                Some(migrated) => match self.save_migrated_config(&live, migrated).await {
                    Some(saved) => saved,
                    None => return Ok(again_in),
                },
            };
            change.swap(
                Arc::new(LiveConnector::ready(
                    &live.connector_id,
                    &live.factory_id,
                    &config,
                    factory,
                    instance,
                )),
                Swap::PluginUpgraded,
            );
        } else if let (LiveStatus::Unavailable { .. }, Some(factory)) =
            (&live.status, registry.get(&live.factory_id))
        {
            // The build that is back may have to migrate the saved config first.
            let config = match instantiate_or_migrate(&factory.plugin.module, &live.config) {
                Ok((_, Some(migrated))) => match self.save_migrated_config(&live, migrated).await {
                    Some(saved) => saved,
                    None => return Ok(again_in),
                },
                Ok((_, None)) | Err(_) => live.config.clone(),
            };
            let revived =
                LiveConnector::build(&live.connector_id, &live.factory_id, &config, &registry);
            if revived.unavailable_reason().is_none() {
                change.swap(Arc::new(revived), Swap::PluginBack);
            }
        }
        Ok(again_in)
    }

    /// Saves the config a new build migrated the live connector's config to, if the saved
    /// connector still has the config the build was given; returns the saved config. `None`
    /// (logged): not saved, and the live connector stays on the build it runs.
    async fn save_migrated_config(
        &self,
        live: &LiveConnector,
        migrated: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let not_saved = |reason: String| {
            tracing::error!(connector_id = %live.connector_id, %reason, "the config the new plugin build migrated was not saved; the live connector stays on its current build");
        };
        let stored = match self.store.get(&live.connector_id).await {
            Ok(Some(stored)) if stored.config == live.config => stored,
            Ok(_) => {
                not_saved("the saved connector changed meanwhile".to_owned());
                return None;
            }
            Err(error) => {
                not_saved(error.to_string());
                return None;
            }
        };
        let previous_copy_id = match crate::live::lifecycle::new_connector_id() {
            Ok(id) => id,
            Err(error) => {
                not_saved(error.to_string());
                return None;
            }
        };
        match self
            .store
            .save_migrated_config(&stored, migrated, &previous_copy_id)
            .await
        {
            Ok(UpdateOutcome::Updated(record)) => {
                tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, previous_config_kept_as = %previous_copy_id, "the live connector's saved config was migrated by the new plugin build and saved; the config as it was is kept in a retired copy");
                Some(record.config)
            }
            Ok(UpdateOutcome::NotFound | UpdateOutcome::ChangedMeanwhile) => {
                not_saved("the saved connector changed meanwhile".to_owned());
                None
            }
            Err(error) => {
                not_saved(error.to_string());
                None
            }
        }
    }
}
