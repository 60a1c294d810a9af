//! `GET /health`: the process is up and serving.

use std::sync::Arc;

use axum::extract::State;
use serde_json::{json, Value};

use crate::api_error::Json;
use crate::server::AppState;

/// Liveness: the process is up and serving. Needs no key.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, description = "`{status, factories, limits}`")))]
pub async fn get_health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let factory_count = state.factories.load().factories().count();
    Json(json!({
        "status": "ok",
        "factories": factory_count,
        "limits": {
            "sending": state.config.send_limits,
            "verificationCodes": state.config.code_policy,
        },
    }))
}
