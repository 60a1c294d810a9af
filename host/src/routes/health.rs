//! `GET /health`: the process is up and serving, and the store answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api_error::Json;
use crate::state::AppState;

/// Liveness and readiness: `200` when the host can serve, `503` (`ready: false`) when its
/// shared store cannot be reached (`store: "unavailable"`) or it cannot open the live
/// connector's saved config (`live.configReadable: false`, the reason in `live.reason`);
/// sends are refused meanwhile. Needs no key.
#[utoipa::path(get, path = "/health", tag = "meta", responses(
    (status = 200, description = "`{status, store, storeKind, generation, live, factories, limits}`", body = Object,
        example = json!({"status": "ok", "store": "ok", "storeKind": "sqlite", "generation": 0,
            "ready": true,
            "live": {"connectorId": "6wb24mwyos70", "factoryId": "mock-short-message-service", "ready": true, "reason": null, "configReadable": true},
            "factories": 5,
            "limits": {"sending": {"maxSendsPerRecipient": 10, "windowSeconds": 600, "resendCooldownSeconds": 60, "allowedCountries": null},
                "verificationCodes": {"timeToLiveSeconds": 600, "maxAttempts": 10}}})),
    (status = 503, description = "The shared store cannot be reached (`store: \"unavailable\"`), or this host cannot open the live connector's saved config (`live.configReadable: false`)", body = Object,
        example = json!({"status": "unavailable", "ready": false, "store": "unavailable", "storeKind": "postgres", "generation": 12,
            "live": null, "factories": 5, "limits": {}}))))]
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
    // A host that cannot open the live connector's saved config (left out of a key rotation,
    // or the row was not written by a host) cannot send: not ready, so a load balancer takes
    // it out.
    let config_unreadable = live
        .as_ref()
        .is_some_and(|live| live["configReadable"] == json!(false));
    let healthy = store_status == "ok" && !config_unreadable;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if healthy { "ok" } else { "unavailable" },
            "ready": healthy,
            "store": store_status,
            "storeKind": store_kind,
            "generation": state.served_generation.load(Ordering::Acquire),
            "live": live,
            "factories": factory_count,
            "limits": {
                "sending": state.config.send_limits,
                "verificationCodes": state.config.code_policy,
            },
        })),
    )
}
