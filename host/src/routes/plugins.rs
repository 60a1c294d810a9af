//! `GET /api/plugins`: every plugin file seen and what became of it; `POST
//! /api/plugins/rescan`: reconcile the folder now.

use std::sync::Arc;

use axum::extract::State;

use crate::api_error::{ApiError, Json};
use crate::plugins::factory_registry::PluginFileReport;
use crate::state::AppState;

/// Every plugin file seen in the plugins folder and what became of it, then earlier builds
/// (superseded, removed), newest first.
///
/// A file whose current content was refused (or is `pending`) while an earlier build of it
/// still serves its factory has two rows: the content's (`rejected` or `pending`, with its
/// `error`, and its `pluginVersion` and `sha256` when the refused build could be read), then
/// the serving build's (`loaded`). `pending`: with `--trusted-plugin-key`, the file and its
/// `.minisig` do not match yet and one arrived less than 2 s ago; it becomes `loaded` when the
/// other arrives, or `rejected` after the 2 s. Only the 3 most recent `superseded` builds of
/// each factory are listed.
#[utoipa::path(get, path = "/api/plugins", tag = "plugins",
    responses((status = 200, body = [PluginFileReport]), (status = 401, body = crate::api_error::ErrorBody), (status = 403, body = crate::api_error::ErrorBody)),
    security(("admin_key" = [])))]
pub async fn list_plugin_files(State(state): State<Arc<AppState>>) -> Json<Vec<PluginFileReport>> {
    Json(state.factories.load().files_with_workers())
}

/// Reconciles the plugins folder now (as a change notification would) and reports.
#[utoipa::path(post, path = "/api/plugins/rescan", tag = "plugins",
    responses((status = 200, body = [PluginFileReport]), (status = 401, body = crate::api_error::ErrorBody), (status = 403, body = crate::api_error::ErrorBody),
        (status = 500, description = "The plugins folder cannot be read", body = crate::api_error::ErrorBody)),
    security(("admin_key" = [])))]
pub async fn rescan_plugin_files(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<PluginFileReport>>, ApiError> {
    let reconcile_again_in = state
        .plugin_rescan()
        .rescan()
        .await
        .map_err(ApiError::Internal)?;
    if let Some(delay) = reconcile_again_in {
        // A file waits for its signature: it is reported once the grace is over, even when
        // no folder watch runs (or the watch saw nothing to wake it).
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut next = Some(delay);
            while let Some(delay) = next {
                tokio::time::sleep(delay).await;
                next = match state.plugin_rescan().rescan().await {
                    Ok(again_in) => again_in,
                    Err(error) => {
                        tracing::error!(%error, "reconciling the plugins folder failed");
                        None
                    }
                };
            }
        });
    }
    Ok(Json(state.factories.load().files_with_workers()))
}
