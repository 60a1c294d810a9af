//! Logto's `GET /api/connector-factories` and `GET /api/connector-factories/:id`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::api_error::{ApiError, Json};
use crate::factory_registry::Factory;
use crate::server::AppState;
use plugin_api::PluginMetadata;

/// A factory as Logto returns it: `{type, isDemo, ...metadata}`, plus the plugin's versions.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FactoryResponse {
    #[serde(rename = "type")]
    pub connector_type: &'static str,
    pub is_demo: bool,
    #[schema(value_type = Option<String>)]
    pub platform: Option<()>,
    /// Logto's ConnectorMetadata fields plus `pluginVersion` and `pluginApiVersion`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub metadata: PluginMetadata,
}

impl FactoryResponse {
    pub fn new(factory: &Factory) -> Self {
        Self {
            connector_type: "Sms",
            is_demo: false,
            platform: None,
            metadata: PluginMetadata::clone(&factory.plugin.metadata),
        }
    }
}

/// Every factory the loaded plugins provide.
#[utoipa::path(get, path = "/api/connector-factories", tag = "connector factories",
    responses((status = 200, body = [FactoryResponse]), (status = 401, body = crate::api_doc::ErrorBody), (status = 403, body = crate::api_doc::ErrorBody)), security(("admin_key" = [])))]
pub async fn list_connector_factories(
    State(state): State<Arc<AppState>>,
) -> Json<Vec<FactoryResponse>> {
    let registry = state.factories.load();
    Json(
        registry
            .factories()
            .map(|factory| FactoryResponse::new(factory))
            .collect(),
    )
}

/// One factory.
#[utoipa::path(get, path = "/api/connector-factories/{id}", tag = "connector factories", params(("id" = String, Path, description = "Factory id")),
    responses((status = 200, body = FactoryResponse), (status = 404, body = crate::api_doc::ErrorBody), (status = 401, body = crate::api_doc::ErrorBody), (status = 403, body = crate::api_doc::ErrorBody)), security(("admin_key" = [])))]
pub async fn get_connector_factory(
    State(state): State<Arc<AppState>>,
    Path(factory_id): Path<String>,
) -> Result<Json<FactoryResponse>, ApiError> {
    let registry = state.factories.load();
    let factory = registry.get(&factory_id).ok_or(ApiError::NotFound {
        entity: "connector factory",
        id: factory_id,
    })?;
    Ok(Json(FactoryResponse::new(factory)))
}

/// The factory's README rendered to HTML and sanitized (no script, no event handlers, no
/// `javascript:` or foreign URLs), for the console to show beside the configuration form.
#[utoipa::path(get, path = "/api/connector-factories/{id}/readme.html", tag = "connector factories", params(("id" = String, Path, description = "Factory id")),
    responses((status = 200, description = "Sanitized HTML", content_type = "text/html"), (status = 404, body = crate::api_doc::ErrorBody), (status = 401, body = crate::api_doc::ErrorBody), (status = 403, body = crate::api_doc::ErrorBody)), security(("admin_key" = [])))]
pub async fn get_connector_factory_readme(
    State(state): State<Arc<AppState>>,
    Path(factory_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let registry = state.factories.load();
    let factory = registry.get(&factory_id).ok_or(ApiError::NotFound {
        entity: "connector factory",
        id: factory_id,
    })?;
    let html =
        crate::console::readme::render_readme_html(&factory.plugin.metadata.connector.readme);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Opened on its own, the fragment may not run anything or load anything.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src data:; sandbox",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    ))
}
