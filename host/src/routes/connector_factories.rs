//! Logto's `GET /api/connector-factories` and `GET /api/connector-factories/:id`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::api_error::{ApiError, Json, Path};
use crate::plugins::factory_registry::Factory;
use crate::state::AppState;
use plugin_api::PluginMetadata;

/// Logto's connector types; every factory and connector here is an SMS one.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub enum ConnectorType {
    Sms,
}

/// A factory as Logto returns it: `{type, isDemo, ...metadata}`, plus the plugin's versions.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "Sms", "isDemo": true, "platform": null,
    "id": "mock-short-message-service", "target": "mock-sms",
    "name": {"en": "Mock SMS Service"},
    "description": {"en": "Writes each message to the host's outbox file instead of sending it. For development only."},
    "readme": "# Mock SMS connector", "configTemplate": "{\"templates\": []}",
    "formItems": [{"key": "templates", "label": "Templates", "type": "Json", "required": true, "isConfidential": false}],
    "pluginVersion": "0.1.0", "pluginApiVersion": "0.2.0"
}))]
pub struct FactoryResponse {
    #[serde(rename = "type")]
    pub connector_type: ConnectorType,
    /// A development connector: it sends nothing (the mock writes to the host's outbox).
    pub is_demo: bool,
    /// Always `null`: Logto gives a platform to social connectors only.
    #[schema(value_type = Option<String>)]
    pub platform: Option<()>,
    #[serde(flatten)]
    #[schema(value_type = FactoryMetadata)]
    pub metadata: PluginMetadata,
}

/// Logto's `ConnectorMetadata` as a plugin declares it, plus the plugin's versions: the
/// serialized `plugin_api::PluginMetadata` (plugin-api knows nothing of utoipa, so its shape
/// is written out here; the contract test holds it to what the host sends).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct FactoryMetadata {
    /// The factory id (`connectorId` when creating a connector).
    #[schema(min_length = 1)]
    id: String,
    target: String,
    /// By locale (`en` always present).
    name: std::collections::BTreeMap<String, String>,
    description: std::collections::BTreeMap<String, String>,
    /// Markdown.
    readme: String,
    /// SVG or a data URI.
    logo: Option<String>,
    logo_dark: Option<String>,
    /// A JSON text: the config a new connector starts from.
    config_template: String,
    /// The config form: `{key, label, type, required, isConfidential, ...}` per field.
    #[schema(value_type = Vec<Object>)]
    form_items: Vec<()>,
    plugin_version: String,
    /// The plugin-api version the plugin was built against.
    plugin_api_version: String,
}

impl FactoryResponse {
    pub fn new(factory: &Factory) -> Self {
        Self {
            connector_type: ConnectorType::Sms,
            is_demo: crate::send::outbox::is_development_factory(
                &factory.plugin.metadata.connector.id,
            ),
            platform: None,
            metadata: PluginMetadata::clone(&factory.plugin.metadata),
        }
    }
}

/// Every factory the loaded plugins provide.
#[utoipa::path(get, path = "/api/connector-factories", tag = "connector factories",
    responses((status = 200, body = [FactoryResponse])), security(("admin_key" = [])))]
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
#[utoipa::path(get, path = "/api/connector-factories/{id}", tag = "connector factories",
    params(("id" = String, Path, description = "Factory id", min_length = 1, example = "mock-short-message-service")),
    responses((status = 200, body = FactoryResponse)), security(("admin_key" = [])))]
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
#[utoipa::path(get, path = "/api/connector-factories/{id}/readme.html", tag = "connector factories",
    params(("id" = String, Path, description = "Factory id", min_length = 1, example = "mock-short-message-service")),
    responses((status = 200, description = "Sanitized HTML", content_type = "text/html",
        example = "<h1>Mock SMS connector</h1>\n<p>A connector for development and tests.</p>\n")),
    security(("admin_key" = [])))]
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
