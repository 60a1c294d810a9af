//! `GET /api/plugins`: every plugin file seen, and what became of it.

use std::sync::Arc;

use axum::extract::State;

use crate::api_error::Json;
use crate::factory_registry::PluginFileReport;
use crate::server::AppState;

/// Every plugin file seen in the plugins folder and what became of it.
#[utoipa::path(get, path = "/api/plugins", tag = "plugins",
    responses((status = 200, body = [PluginFileReport]), (status = 401, body = crate::api_doc::ErrorBody), (status = 403, body = crate::api_doc::ErrorBody)), security(("admin_key" = [])))]
pub async fn list_plugin_files(State(state): State<Arc<AppState>>) -> Json<Vec<PluginFileReport>> {
    Json(state.factories.load().files().to_vec())
}
