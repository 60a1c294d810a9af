//! The OpenAPI description of the HTTP API, generated from the handlers and types (utoipa) and
//! served at `GET /api/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api_contract::DocumentedErrors;
use crate::api_error::ErrorBody;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "connector-host", description = "SMS connector plugins behind Logto's connector API."),
    paths(
        routes::health::get_health,
        routes::health::get_ready,
        routes::connector_factories::list_connector_factories,
        routes::connector_factories::get_connector_factory,
        routes::connector_factories::get_connector_factory_readme,
        routes::connectors::list_connectors,
        routes::connectors::create_connector,
        routes::connectors::get_connector,
        routes::connectors::update_connector,
        routes::connectors::delete_connector,
        routes::connectors::enable_connector,
        routes::connectors::set_fallback,
        routes::connectors::clear_fallback,
        routes::connectors::test_connector_config,
        routes::messages::send_message,
        routes::messages::list_messages,
        routes::messages::get_message,
        routes::messages::get_message_summary,
        routes::verification_codes::issue_code,
        routes::verification_codes::verify_code,
        routes::metrics::get_metrics,
        routes::plugins::list_plugin_files,
        routes::plugins::rescan_plugin_files,
        routes::protection::get_protection,
        routes::protection::lift_block,
        routes::protection::allow_country,
        get_openapi_document,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys, &DocumentedErrors),
)]
pub struct ApiDoc;

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["admin_key", "send_key"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// This document, as the running host applies it (`--phone-validation` decides what a phone
/// number looks like).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
    security(("admin_key" = [])))]
pub async fn get_openapi_document(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<crate::state::AppState>>,
) -> Result<crate::api_error::Json<serde_json::Value>, crate::api_error::ApiError> {
    document_for(state.config.phone_validation)
        .map(crate::api_error::Json)
        .map_err(crate::api_error::ApiError::Internal)
}

/// The document a host with this phone validation serves.
pub fn document_for(
    phone_validation: crate::phone::PhoneValidation,
) -> Result<serde_json::Value, String> {
    let mut document = ApiDoc::openapi();
    document
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .insert(
            "PhoneNumber".to_owned(),
            phone_validation.document_schema().into(),
        );
    let mut document = serde_json::to_value(document)
        .map_err(|error| format!("cannot serialize the OpenAPI document: {error}"))?;
    crate::api_contract::add_operation_links(&mut document);
    Ok(document)
}
