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
use crate::plugins::factory_registry::FactoryRegistry;
use crate::plugins::folder::{LiveBuild, PluginFolder};
use crate::plugins::loader::PluginLoader;

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

/// One reconcile per batch of changes, for as long as the watch runs.
pub async fn rescan_on_changes(mut changed: FolderChanges, rescan: PluginRescan<'_>) {
    while changed.recv().await.is_some() {
        // Events that arrived meanwhile are covered by this one reconcile.
        while changed.try_recv().is_ok() {}
        if let Err(error) = rescan.rescan().await {
            tracing::error!(%error, "reconciling the plugins folder failed");
        }
    }
}

impl PluginRescan<'_> {
    /// Reconciles the plugins folder and swaps in the new registry; moves the live connector
    /// to an upgraded build, and revives a live connector that was waiting for its plugin.
    pub async fn rescan(&self) -> Result<(), String> {
        // Serialized with connector changes: the live pointer moves under the same lock.
        let mut change = self.live.lock_changes().await;
        let live = change.current();
        let live_build = live.as_deref().and_then(|live| match &live.status {
            LiveStatus::Ready { factory, .. } => Some(LiveBuild {
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

        let Some(live) = live else { return Ok(()) };
        if let Some((factory, instance)) = outcome.live_upgrade {
            change.swap(
                Arc::new(LiveConnector::ready(
                    &live.connector_id,
                    &live.factory_id,
                    &live.config,
                    factory,
                    instance,
                )),
                Swap::PluginUpgraded,
            );
        } else if matches!(live.status, LiveStatus::Unavailable { .. })
            && registry.get(&live.factory_id).is_some()
        {
            let revived = LiveConnector::build(
                &live.connector_id,
                &live.factory_id,
                &live.config,
                &registry,
            );
            if revived.unavailable_reason().is_none() {
                change.swap(Arc::new(revived), Swap::PluginBack);
            }
        }
        Ok(())
    }
}
