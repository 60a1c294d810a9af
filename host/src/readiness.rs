//! Readiness apart from liveness: whether a load balancer should send this host traffic
//! (`GET /ready`), and the drain that takes it out before it stops.
//!
//! A database outage is not a readiness failure: every host shares the database, so failing
//! `/ready` on it would take every host out of the balancer at once, and clients would get
//! the balancer's own error page instead of this host's `503 store.unavailable` in JSON. Each
//! host keeps answering (fail closed) and recovers by itself when the database is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::live::live_connector::LiveConnector;

/// The drain on SIGTERM or SIGINT (`--drain-grace-secs`, `--shutdown-timeout-secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// How long the listener keeps accepting after `/ready` turned 503, so a load balancer's
    /// next checks see it and stop sending here first.
    pub drain_grace: Duration,
    /// The bound on the whole shutdown after the grace: requests in flight finish within it.
    pub timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_grace: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        }
    }
}

/// This host's own state as readiness sees it; set once at the drain, read by every `/ready`.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// `/ready` answers 503 `draining` from now on. Returns whether it was already draining.
    pub fn start_draining(&self) -> bool {
        self.draining.swap(true, Ordering::AcqRel)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Which readiness check failed first, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailedCheck {
    /// Start-up is not done (the host waits for its database): nothing but `/health` and
    /// `/ready` is served yet.
    Starting,
    /// SIGTERM or SIGINT: the host is going away.
    Draining,
    /// The live connector's saved config cannot be opened on this host (key file).
    LiveConfigUnreadable,
    /// A live connector is configured but cannot send (its plugin is missing, or the loaded
    /// build refuses its config).
    LiveConnectorUnavailable,
}

impl FailedCheck {
    pub fn message(self) -> &'static str {
        match self {
            FailedCheck::Starting => {
                "this host is starting (waiting for its database): send traffic to another host"
            }
            FailedCheck::Draining => {
                "this host is shutting down (draining): send traffic to another host"
            }
            FailedCheck::LiveConfigUnreadable => {
                "this host cannot open the live connector's saved config (see live.reason)"
            }
            FailedCheck::LiveConnectorUnavailable => {
                "the live connector is configured but cannot send on this host (see live.reason)"
            }
        }
    }
}

/// The checks `/ready` reports; `failed` is `None` when the host can serve.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessChecks {
    pub draining: bool,
    /// The plugins folder was read at start-up (a folder that could not be read leaves the
    /// host with no factories, reported by `/api/plugins`, and is not a failure here).
    pub plugins_scanned: bool,
    /// `none`, `ready` or `unavailable`.
    pub live_connector: &'static str,
    pub live_config_readable: bool,
}

impl ReadinessChecks {
    pub fn assess(readiness: &Readiness, live: Option<&LiveConnector>) -> Self {
        Self {
            draining: readiness.is_draining(),
            plugins_scanned: true,
            live_connector: match live {
                None => "none",
                Some(live) if live.unavailable_reason().is_none() => "ready",
                Some(_) => "unavailable",
            },
            live_config_readable: live.is_none_or(|live| live.unreadable_config_reason().is_none()),
        }
    }

    /// The first check that fails, if any.
    pub fn failed(&self) -> Option<FailedCheck> {
        if self.draining {
            Some(FailedCheck::Draining)
        } else if !self.live_config_readable {
            Some(FailedCheck::LiveConfigUnreadable)
        } else if self.live_connector == "unavailable" {
            Some(FailedCheck::LiveConnectorUnavailable)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_fails_readiness_before_anything_else() {
        let readiness = Readiness::default();
        let checks = ReadinessChecks::assess(&readiness, None);
        assert_eq!(checks.failed(), None);
        assert!(!readiness.start_draining());
        assert!(readiness.start_draining());
        let checks = ReadinessChecks::assess(&readiness, None);
        assert_eq!(checks.failed(), Some(FailedCheck::Draining));
        assert_eq!(
            serde_json::to_value(checks.failed()).unwrap(),
            serde_json::json!("draining")
        );
    }
}
