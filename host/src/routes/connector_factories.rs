//! Logto's `GET /api/connector-factories` and `GET /api/connector-factories/:id`.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Serialize;

use crate::api_error::{ApiError, Json};
use crate::factory_registry::Factory;
use crate::server::AppState;
use plugin_api::PluginMetadata;

/// A factory as Logto returns it: `{type, isDemo, ...metadata}`, plus the plugin's versions.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FactoryResponse {
    #[serde(rename = "type")]
    pub connector_type: &'static str,
    pub is_demo: bool,
    pub platform: Option<()>,
    #[serde(flatten)]
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
