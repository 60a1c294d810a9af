//! Watching the plugins folder: inotify through notify-debouncer-full, or polling for network
//! filesystems where inotify sends nothing. Every batch of events (and an event-queue
//! overflow) triggers one reconcile of the whole folder, so a missed or merged event cannot
//! leave the host out of step with the folder.

use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{self, PollWatcher, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    new_debouncer, new_debouncer_opt, DebounceEventResult, Debouncer, RecommendedCache,
};

use crate::live_connector::{LiveConnector, LiveStatus};
use crate::plugins::folder::LiveBuild;
use crate::state::AppState;

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

/// Starts watching; each batch of events reconciles the folder on the async runtime.
pub fn watch_plugin_folder(state: Arc<AppState>) -> Result<PluginWatcher, String> {
    let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel::<()>();
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
    let dir = state.config.plugins_dir.clone();
    let mut watcher = match state.config.plugin_watch {
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
        PluginWatcher::Notify(debouncer) => debouncer.watch(&dir, RecursiveMode::NonRecursive),
        PluginWatcher::Poll(debouncer) => debouncer.watch(&dir, RecursiveMode::NonRecursive),
    }
    .map_err(|error| format!("cannot watch {}: {error}", dir.display()))?;
    tracing::info!(plugins_dir = %dir.display(), mode = ?state.config.plugin_watch, "watching the plugins folder");

    tokio::spawn(async move {
        while changed.recv().await.is_some() {
            // Events that arrived meanwhile are covered by this one reconcile.
            while changed.try_recv().is_ok() {}
            if let Err(error) = rescan_plugin_folder(&state).await {
                tracing::error!(%error, "reconciling the plugins folder failed");
            }
        }
    });
    Ok(watcher)
}

/// Reconciles the plugins folder and swaps in the new registry; moves the live connector to
/// an upgraded build, and revives a live connector that was waiting for its plugin.
pub async fn rescan_plugin_folder(state: &Arc<AppState>) -> Result<(), String> {
    // Serialized with connector changes: the live pointer moves under the same lock.
    let _change = state.connector_changes.lock().await;
    let live = state.live.load_full();
    let live_build = live.as_deref().and_then(|live| match &live.status {
        LiveStatus::Ready { factory, .. } => Some(LiveBuild {
            factory_id: live.factory_id.clone(),
            sha256: factory.plugin.sha256.clone(),
            config: live.config.clone(),
        }),
        LiveStatus::Unavailable { .. } | LiveStatus::ConfigUnreadable { .. } => None,
    });
    let reconciling = Arc::clone(state);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut folder = reconciling
            .plugin_folder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        folder.reconcile(&reconciling.loader, live_build.as_ref())
    })
    .await
    .map_err(|error| format!("the reconcile task failed: {error}"))??;
    let registry = Arc::new(outcome.registry);
    state.factories.store(Arc::clone(&registry));

    let Some(live) = live else { return Ok(()) };
    if let Some((factory, instance)) = outcome.live_upgrade {
        tracing::info!(
            connector_id = %live.connector_id,
            factory_id = %live.factory_id,
            plugin_version = %factory.plugin.metadata.plugin_version,
            sha256 = %factory.plugin.sha256,
            "live connector moved to the new plugin build"
        );
        state.live.store(Some(Arc::new(LiveConnector::ready(
            &live.connector_id,
            &live.factory_id,
            &live.config,
            factory,
            instance,
        ))));
        metrics::counter!("live_connector_swaps_total").increment(1);
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
            tracing::info!(connector_id = %live.connector_id, "the live connector's plugin is back; it can send again");
            state.live.store(Some(Arc::new(revived)));
        }
    }
    Ok(())
}
