//! `GET /api/plugins`: every plugin file seen, and what became of it.

use std::sync::Arc;

use axum::extract::State;

use crate::api_error::Json;
use crate::factory_registry::PluginFileReport;
use crate::server::AppState;

pub async fn list_plugin_files(State(state): State<Arc<AppState>>) -> Json<Vec<PluginFileReport>> {
    Json(state.factories.load().files().to_vec())
}
