//! `GET /api/plugins`: every plugin file seen and what became of it; `POST
//! /api/plugins/rescan`: reconcile the folder now.

use std::sync::Arc;

use axum::extract::State;

use crate::api_error::{ApiError, Json};
use crate::plugins::factory_registry::PluginFileReport;
use crate::state::AppState;

/// Every plugin file seen in the plugins folder and what became of it, then earlier builds
/// (superseded, removed), newest first.
#[utoipa::path(get, path = "/api/plugins", tag = "plugins",
    responses((status = 200, body = [PluginFileReport]), (status = 401, body = crate::api_error::ErrorBody), (status = 403, body = crate::api_error::ErrorBody)),
    security(("admin_key" = [])))]
pub async fn list_plugin_files(State(state): State<Arc<AppState>>) -> Json<Vec<PluginFileReport>> {
    Json(state.factories.load().files().to_vec())
}

/// Reconciles the plugins folder now (as a change notification would) and reports.
#[utoipa::path(post, path = "/api/plugins/rescan", tag = "plugins",
    responses((status = 200, body = [PluginFileReport]), (status = 401, body = crate::api_error::ErrorBody), (status = 403, body = crate::api_error::ErrorBody),
        (status = 500, description = "The plugins folder cannot be read", body = crate::api_error::ErrorBody)),
    security(("admin_key" = [])))]
pub async fn rescan_plugin_files(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<PluginFileReport>>, ApiError> {
    state
        .plugin_rescan()
        .rescan()
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(state.factories.load().files().to_vec()))
}
