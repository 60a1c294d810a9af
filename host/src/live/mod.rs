//! Everything that changes which connector is live, in one room.
//!
//! # Layout
//! - [`live_connector`]: the live connector and the [`live_connector::LiveSlot`] that owns
//!   the atomic pointer, the change lock, the swap metric and the swap log line.
//! - [`lifecycle`]: saved connectors created, updated, enabled and deleted, and the live one
//!   swapped with them.
//! - [`plugin_watcher`]: notices plugins-folder changes and reconciles; moves the live
//!   connector to an upgraded build, revives one whose plugin is back.
//! - [`store_follower`]: with a store several hosts share, keeps the live connector in step
//!   with other hosts' changes.

pub mod lifecycle;
pub mod live_connector;
pub mod plugin_watcher;
pub mod store_follower;
