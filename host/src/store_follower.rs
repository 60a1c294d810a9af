//! Keeps this host's live connector in step with a store other hosts change too (PostgreSQL):
//! one connection `LISTEN`s for changes; the host reloads the live connector on each
//! notification and on every (re)connect, and polls the generation every second in case a
//! notification was missed. A reload builds the new connector first and then swaps the
//! pointer, as a local change does, so sends in flight never fail.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::live_connector::LiveConnector;
use crate::state::AppState;
use crate::store::postgres::PostgresStore;

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Runs for as long as the host serves.
pub async fn follow_shared_store(state: Arc<AppState>) {
    let Some(store) = state.shared_store.clone() else {
        return;
    };
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = FIRST_RETRY;
    loop {
        // LISTEN before reading, so no change can fall between the read and the listen.
        let listener = if state.config.store_notifications {
            match store.listen_for_changes().await {
                Ok(listener) => {
                    retry = FIRST_RETRY;
                    Some(listener)
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "cannot listen for connector changes; polling meanwhile");
                    None
                }
            }
        } else {
            None
        };
        reload_live_connector(&state, &store).await;
        match listener {
            Some(mut listener) => loop {
                tokio::select! {
                    received = listener.notifications.recv() => match received {
                        Some(()) => {
                            // One reload covers every change already announced.
                            while listener.notifications.try_recv().is_ok() {}
                            reload_live_connector(&state, &store).await;
                        }
                        None => {
                            tracing::warn!("lost the connection that listens for connector changes; reconnecting");
                            break;
                        }
                    },
                    _ = poll.tick() => catch_up_if_behind(&state, &store).await,
                }
            },
            None if state.config.store_notifications => {
                let deadline = tokio::time::Instant::now() + retry;
                while tokio::time::Instant::now() < deadline {
                    poll.tick().await;
                    catch_up_if_behind(&state, &store).await;
                }
                retry = (retry * 2).min(LONGEST_RETRY);
            }
            None => loop {
                poll.tick().await;
                catch_up_if_behind(&state, &store).await;
            },
        }
    }
}

/// The fallback for missed notifications: reload when the store's generation moved.
async fn catch_up_if_behind(state: &AppState, store: &PostgresStore) {
    match store.generation().await {
        Ok(generation) if generation != state.served_generation.load(Ordering::Acquire) => {
            reload_live_connector(state, store).await;
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "cannot read the connector generation"),
    }
}

/// Reads the live connector and its generation in one snapshot and, when it differs from what
/// this host serves, builds it and swaps it in. Runs under the connector-change lock, so it
/// never interleaves with a change made through this host.
pub async fn reload_live_connector(state: &AppState, store: &PostgresStore) {
    let _change = state.connector_changes.lock().await;
    let snapshot = match store.live_snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%error, "cannot read the live connector from the store");
            return;
        }
    };
    let current = state.live.load();
    let unchanged = match (current.as_deref(), &snapshot.live) {
        (Some(serving), Some(Ok(record))) => {
            serving.connector_id == record.id
                && serving.factory_id == record.factory_id
                && serving.unreadable_config_reason().is_none()
                && serving.config == record.config
        }
        (Some(serving), Some(Err(unreadable))) => {
            serving.connector_id == unreadable.connector_id
                && serving.unreadable_config_reason() == Some(unreadable.reason.as_str())
        }
        (None, None) => true,
        _ => false,
    };
    if !unchanged {
        let registry = state.factories.load();
        // A config this host cannot open (sealed under a key it lacks, after a rotation it
        // was left out of) replaces the one it served: it never goes on sending with the old
        // endpoint and credential.
        let next = snapshot.live.as_ref().map(|record| {
            Arc::new(match record {
                Ok(record) => {
                    LiveConnector::build(&record.id, &record.factory_id, &record.config, &registry)
                }
                Err(unreadable) => LiveConnector::config_unreadable(unreadable),
            })
        });
        match next.as_deref() {
            Some(live) => {
                tracing::info!(
                    connector_id = %live.connector_id,
                    factory_id = %live.factory_id,
                    ready = live.unavailable_reason().is_none(),
                    generation = snapshot.generation,
                    "live connector changed in the shared store; swapped"
                );
                crate::send::outbox::warn_if_development_connector_is_live(
                    &live.connector_id,
                    &live.factory_id,
                    state.send_executor.outbox_path(),
                );
            }
            None => tracing::info!(
                generation = snapshot.generation,
                "no SMS connector is live in the shared store"
            ),
        }
        state.live.store(next);
        metrics::counter!("live_connector_swaps_total").increment(1);
    }
    state
        .served_generation
        .store(snapshot.generation, Ordering::Release);
}
