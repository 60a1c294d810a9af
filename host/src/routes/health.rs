//! `GET /health`: the process is up and serving, and the store answers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api_error::Json;
use crate::server::AppState;

/// Liveness and readiness: `200` when the host can serve, `503` when its shared store cannot
/// be reached (`store: "unavailable"`; sends are refused meanwhile). Needs no key.
#[utoipa::path(get, path = "/health", tag = "meta", responses(
    (status = 200, description = "`{status, store, storeKind, generation, live, factories, limits}`", body = Object,
        example = json!({"status": "ok", "store": "ok", "storeKind": "sqlite", "generation": 0,
            "live": {"connectorId": "6wb24mwyos70", "factoryId": "mock-short-message-service", "ready": true, "reason": null},
            "factories": 5,
            "limits": {"sending": {"maxSendsPerRecipient": 10, "windowSeconds": 600, "resendCooldownSeconds": 60, "allowedCountries": null},
                "verificationCodes": {"timeToLiveSeconds": 600, "maxAttempts": 10}}})),
    (status = 503, description = "The shared store cannot be reached: `store: \"unavailable\"`", body = Object,
        example = json!({"status": "unavailable", "store": "unavailable", "storeKind": "postgres", "generation": 12,
            "live": null, "factories": 5, "limits": {}}))))]
pub async fn get_health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let factory_count = state.factories.load().factories().count();
    let (store_kind, store_status) = match &state.shared_store {
        None => ("sqlite", "ok"),
        Some(postgres) => match postgres.ping().await {
            Ok(()) => ("postgres", "ok"),
            Err(_) => ("postgres", "unavailable"),
        },
    };
    let live = state.live.load();
    let live = live.as_deref().map(|live| {
        json!({
            "connectorId": live.connector_id,
            "factoryId": live.factory_id,
            "ready": live.unavailable_reason().is_none(),
            "reason": live.unavailable_reason(),
        })
    });
    let healthy = store_status == "ok";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if healthy { "ok" } else { "unavailable" },
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
