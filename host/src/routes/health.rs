//! `GET /health`: the process is up (liveness), and how its store is; `GET /ready`: whether a
//! load balancer should send it traffic (readiness, [`crate::readiness`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api_error::Json;
use crate::readiness::{FailedCheck, ReadinessChecks};
use crate::state::AppState;

/// Liveness: `200` whenever the process serves, with the store's state (`store: "ok"` or
/// `"unavailable"`), the live connector and whether this host is ready (`ready`, as
/// `GET /ready` decides). A monitor alerts on `store`; a load balancer checks `/ready`. Needs
/// no key.
#[utoipa::path(get, path = "/health", tag = "meta", responses(
    (status = 200, description = "`{status, ready, store, storeKind, generation, live, factories, fallback, limits}` (`fallback`: the standby connector and this host's breaker, `null` when none is marked); always 200 while the process serves (while it starts: `{status: \"starting\", ready: false, store, message}`)", body = Object,
        example = json!({"status": "ok", "store": "ok", "storeKind": "sqlite", "generation": 0,
            "ready": true,
            "live": {"connectorId": "6wb24mwyos70", "factoryId": "mock-short-message-service", "ready": true, "reason": null, "configReadable": true},
            "factories": 5,
            "fallback": {"connectorId": "9x2k4mwyos71", "factoryId": "http-sms", "ready": true, "reason": null,
                "breaker": {"state": "closed", "watching": "6wb24mwyos70", "consecutiveFailures": 0, "lastError": null, "openForSeconds": null,
                    "opensAfterFailures": 3, "coolOffSeconds": 30}},
            "limits": {"sending": {"maxSendsPerRecipient": 10, "windowSeconds": 600, "resendCooldownSeconds": 60, "allowedCountries": null},
                "verificationCodes": {"timeToLiveSeconds": 600, "maxAttempts": 10}}}))))]
pub async fn get_health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let factory_count = state.factories.load().factories().count();
    let store_kind = state.store_backend.kind();
    let store_status = match state.store_backend.shared() {
        None => "ok",
        Some(postgres) => match postgres.ping().await {
            Ok(()) => "ok",
            Err(_) => "unavailable",
        },
    };
    let live = state.live.current();
    let live = live.as_deref().map(|live| {
        json!({
            "connectorId": live.connector_id,
            "factoryId": live.factory_id,
            "ready": live.unavailable_reason().is_none(),
            "reason": live.unavailable_reason(),
            "configReadable": live.unreadable_config_reason().is_none(),
        })
    });
    // The standby and this host's breaker: what an on-call engineer asks first in an outage.
    let fallback = state.live.current_standby().map(|standby| {
        let breaker = state
            .sender
            .fallback_breaker
            .view(std::time::Instant::now());
        let settings = state.sender.fallback_breaker.settings();
        json!({
            "connectorId": standby.connector_id,
            "factoryId": standby.factory_id,
            "ready": standby.unavailable_reason().is_none(),
            "reason": standby.unavailable_reason(),
            "breaker": {
                "state": breaker.state.label(),
                "watching": breaker.connector_id,
                "consecutiveFailures": breaker.consecutive_failures,
                "lastError": breaker.last_error,
                "openForSeconds": breaker.open_for.map(|open| open.as_secs()),
                "opensAfterFailures": settings.failures_to_open,
                "coolOffSeconds": settings.cool_off.as_secs(),
            },
        })
    });
    let ready = ReadinessChecks::assess(&state.readiness, state.live.current().as_deref())
        .failed()
        .is_none();
    (
        StatusCode::OK,
        Json(json!({
            "status": "ok",
            "ready": ready,
            "store": store_status,
            "storeKind": store_kind,
            "generation": state.served_generation.load(Ordering::Acquire),
            "live": live,
            "factories": factory_count,
            "fallback": fallback,
            "limits": {
                "sending": state.config.send_limits,
                "verificationCodes": state.config.code_policy,
            },
        })),
    )
}

/// `/health` while the host starts (waiting for its database): the process is up.
pub async fn get_health_starting() -> Json<Value> {
    Json(json!({
        "status": "starting",
        "ready": false,
        "store": "unavailable",
        "message": FailedCheck::Starting.message(),
    }))
}

/// `/ready` while the host starts: `503` with `failed: "starting"`.
pub async fn get_ready_starting() -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "starting",
            "ready": false,
            "failed": FailedCheck::Starting,
            "message": FailedCheck::Starting.message(),
        })),
    )
}

/// Readiness for a load balancer (`option httpchk GET /ready`): `200` when this host can
/// serve; `503` with the check that failed (`failed`: `starting` while start-up waits for
/// the database, `draining` after SIGTERM,
/// `liveConfigUnreadable`, `liveConnectorUnavailable`). A database outage does not fail it:
/// every host shares the database, so each keeps answering `503 store.unavailable` in JSON
/// itself (rather than all leaving the balancer at once) and recovers when the database is
/// back. Needs no key.
#[utoipa::path(get, path = "/ready", tag = "meta", responses(
    (status = 200, description = "Ready: `{status: \"ready\", ready: true, checks}`", body = Object,
        example = json!({"status": "ready", "ready": true, "failed": null, "message": null,
            "checks": {"draining": false, "pluginsScanned": true, "liveConnector": "ready", "liveConfigReadable": true}})),
    (status = 503, description = "Not ready: `failed` names the check (`starting`, `draining`, `liveConfigUnreadable`, `liveConnectorUnavailable`), `message` says it in words", body = Object,
        example = json!({"status": "unavailable", "ready": false, "failed": "draining",
            "message": "this host is shutting down (draining): send traffic to another host",
            "checks": {"draining": true, "pluginsScanned": true, "liveConnector": "ready", "liveConfigReadable": true}}))))]
pub async fn get_ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let live = state.live.current();
    let checks = ReadinessChecks::assess(&state.readiness, live.as_deref());
    let failed = checks.failed();
    let status = match failed {
        None => StatusCode::OK,
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        Json(json!({
            "status": if failed.is_none() { "ready" } else { "unavailable" },
            "ready": failed.is_none(),
            "failed": failed,
            "message": failed.map(|failed| failed.message()),
            "checks": checks,
            "live": live.as_deref().map(|live| json!({
                "connectorId": live.connector_id,
                "reason": live.unavailable_reason(),
            })),
        })),
    )
}
