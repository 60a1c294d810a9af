//! Keeps this host's live connector in step with a store other hosts change too (PostgreSQL):
//! one connection `LISTEN`s for changes; the host reloads the live connector on each
//! notification and on every (re)connect, and polls the generation every second in case a
//! notification was missed. A reload builds the new connector first and then swaps the
//! pointer, as a local change does, so sends in flight never fail.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::live::live_connector::{Clear, LiveConnector, LiveSlot, Swap};
use crate::plugins::factory_registry::FactoryRegistry;
use crate::store::postgres::PostgresStore;
use crate::store::ConnectorStore;

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// What following the shared store touches.
pub struct StoreFollower<'a> {
    pub store: &'a PostgresStore,
    pub live: &'a LiveSlot,
    pub factories: &'a ArcSwap<FactoryRegistry>,
    /// The connector generation this host serves.
    pub served_generation: &'a AtomicI64,
    /// LISTEN for other hosts' changes (else only the one-second poll).
    pub notifications: bool,
    /// To warn when a development connector goes live.
    pub outbox_path: Option<&'a Path>,
}

/// Runs for as long as the host serves.
pub async fn follow_shared_store(follower: StoreFollower<'_>) {
    let follower = &follower;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = FIRST_RETRY;
    loop {
        // LISTEN before reading, so no change can fall between the read and the listen.
        let listener = if follower.notifications {
            match follower.store.listen_for_changes().await {
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
        reload_live_connector(follower).await;
        match listener {
            Some(mut listener) => loop {
                tokio::select! {
                    received = listener.notifications.recv() => match received {
                        Some(()) => {
                            // One reload covers every change already announced.
                            while listener.notifications.try_recv().is_ok() {}
                            reload_live_connector(follower).await;
                        }
                        None => {
                            tracing::warn!("lost the connection that listens for connector changes; reconnecting");
                            break;
                        }
                    },
                    _ = poll.tick() => catch_up_if_behind(follower).await,
                }
            },
            None if follower.notifications => {
                let deadline = tokio::time::Instant::now() + retry;
                while tokio::time::Instant::now() < deadline {
                    poll.tick().await;
                    catch_up_if_behind(follower).await;
                }
                retry = (retry * 2).min(LONGEST_RETRY);
            }
            None => loop {
                poll.tick().await;
                catch_up_if_behind(follower).await;
            },
        }
    }
}

/// The fallback for missed notifications: reload when the store's generation moved. Also
/// what `store_up` reports.
async fn catch_up_if_behind(follower: &StoreFollower<'_>) {
    let generation = follower.store.generation().await;
    // The one-second check `store_up` follows.
    crate::telemetry::report_store_up(generation.is_ok());
    match generation {
        Ok(generation) if generation != follower.served_generation.load(Ordering::Acquire) => {
            reload_live_connector(follower).await;
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "cannot read the connector generation"),
    }
}

/// Reads the live connector and its generation in one snapshot and, when it differs from what
/// this host serves, builds it and swaps it in. Runs under the connector-change lock, so it
/// never interleaves with a change made through this host.
pub async fn reload_live_connector(follower: &StoreFollower<'_>) {
    let mut change = follower.live.lock_changes().await;
    let snapshot = match follower.store.live_snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%error, "cannot read the live connector from the store");
            return;
        }
    };
    let current = change.current();
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
        let registry = follower.factories.load();
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
        let generation = snapshot.generation;
        match next {
            Some(live) => {
                let (connector_id, factory_id) =
                    (live.connector_id.clone(), live.factory_id.clone());
                change.swap(live, Swap::SharedStoreChanged { generation });
                crate::send::outbox::warn_if_development_connector_is_live(
                    &connector_id,
                    &factory_id,
                    follower.outbox_path,
                );
            }
            None => change.clear(Clear::SharedStoreChanged { generation }),
        }
    }
    // The standby follows the store's fallback mark the same way.
    match follower.store.fallback().await {
        Ok(record) => {
            let registry = follower.factories.load();
            let next =
                LiveConnector::standby_for(record.as_ref(), change.current_standby(), &registry);
            change.set_standby(next);
        }
        Err(crate::store::StoreError::ConfigUnreadable(unreadable)) => {
            change.set_standby(Some(Arc::new(LiveConnector::config_unreadable(
                &unreadable,
            ))));
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the fallback connector from the store; the standby stays as it was");
            // Read again at the next poll.
            return;
        }
    }
    follower
        .served_generation
        .store(snapshot.generation, Ordering::Release);
}
