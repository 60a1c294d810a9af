//! How one host's protection state survives a restart without a write per send: the state is
//! saved whole as a [`ProtectionSnapshot`] through a [`SnapshotStore`] (the SQLite store's
//! `protection_state` table, through its writer thread, so a save is one job in a group
//! commit): at once when a block appeared or was lifted, else at most every
//! [`PERIODIC_SAVE`] while something changed, and at shutdown. A kill -9 loses at most the
//! last period's counts, never a block decision older than a second.
//!
//! Several hosts on PostgreSQL do not save snapshots: they share the state itself through the
//! database ([`super::shared_state`]).

use std::time::Duration;

use super::{Protection, ProtectionSnapshot};

/// Where a host's snapshot is kept. Errors are one line for the log.
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync {
    async fn load_snapshot(&self) -> Result<Option<String>, String>;
    async fn save_snapshot(&self, snapshot: String) -> Result<(), String>;
}

/// How often changed counts are saved when no block changed.
pub const PERIODIC_SAVE: Duration = Duration::from_secs(10);
/// How often the flush task looks for a block that changed.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Restores the saved snapshot, if any; an unreadable one is logged and ignored (the host
/// starts with empty protection state rather than not at all).
pub async fn restore(protection: &Protection, store: &dyn SnapshotStore) -> Result<(), String> {
    let Some(text) = store.load_snapshot().await? else {
        return Ok(());
    };
    match serde_json::from_str::<ProtectionSnapshot>(&text) {
        Ok(snapshot) => {
            let blocks = snapshot.blocks.len();
            protection.restore(snapshot);
            tracing::info!(blocks, "protection state restored");
        }
        Err(error) => {
            tracing::warn!(%error, "the saved protection state is unreadable; starting without it")
        }
    }
    Ok(())
}

/// Saves the snapshot when something changed (`force`: whatever changed).
pub async fn save(protection: &Protection, store: &dyn SnapshotStore, force: bool) {
    let Some((snapshot, _)) = protection.take_snapshot(force) else {
        return;
    };
    let text = match serde_json::to_string(&snapshot) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(%error, "cannot serialize the protection state");
            return;
        }
    };
    if let Err(error) = store.save_snapshot(text).await {
        tracing::warn!(%error, "saving the protection state failed; it is saved again at the next change");
        protection.mark_dirty();
    }
}

/// Runs for the host's life: saves at once after a block changed, else every
/// [`PERIODIC_SAVE`] while something changed.
pub async fn save_periodically(protection: &Protection, store: &dyn SnapshotStore) {
    let mut interval = tokio::time::interval(CHECK_EVERY);
    let mut since_save = Duration::ZERO;
    loop {
        interval.tick().await;
        since_save += CHECK_EVERY;
        if protection.blocks_changed() || since_save >= PERIODIC_SAVE {
            save(protection, store, false).await;
            since_save = Duration::ZERO;
        }
    }
}
