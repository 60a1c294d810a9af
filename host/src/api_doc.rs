//! The OpenAPI description of the HTTP API, generated from the handlers and types (utoipa) and
//! served at `GET /api/openapi.json`.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::http::api_doc::LimitResponses;
use crate::routes;

/// Every error body: a stable `code`, a human `message`, and optional details.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "connector-host", description = "SMS connector plugins behind Logto's connector API."),
    paths(
        routes::health::get_health,
        routes::connector_factories::list_connector_factories,
        routes::connector_factories::get_connector_factory,
        routes::connector_factories::get_connector_factory_readme,
        routes::connectors::list_connectors,
        routes::connectors::create_connector,
        routes::connectors::get_connector,
        routes::connectors::update_connector,
        routes::connectors::delete_connector,
        routes::connectors::enable_connector,
        routes::connectors::test_connector_config,
        routes::messages::send_message,
        routes::verification_codes::issue_code,
        routes::verification_codes::verify_code,
        routes::metrics::get_metrics,
        routes::plugins::list_plugin_files,
        routes::plugins::rescan_plugin_files,
        get_openapi_document,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys, &StoreUnavailable, &LimitResponses),
)]
pub struct ApiDoc;

/// Every `/api` route may answer `503 store.unavailable` when a shared store cannot be
/// reached (PostgreSQL), and every route with a body `413` past the body limit; documented
/// once here rather than on each handler.
struct StoreUnavailable;

impl Modify for StoreUnavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") || path == "/api/openapi.json" {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.request_body.is_some() {
                    operation
                        .responses
                        .responses
                        .entry("413".to_owned())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(
                                        "`guard.payload_too_large`: the body is over 64 KiB",
                                    )
                                    .content(
                                        "application/json",
                                        utoipa::openapi::ContentBuilder::new()
                                            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                                "ErrorBody",
                                            )))
                                            .build(),
                                    )
                                    .build(),
                            )
                        });
                }
                operation.responses.responses.entry("503".to_owned()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("`store.unavailable`: the shared store cannot be reached now; retry shortly (`Retry-After`)")
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .build(),
                    )
                });
            }
        }
    }
}

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

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document"), (status = 401, body = ErrorBody)),
    security(("admin_key" = [])))]
pub async fn get_openapi_document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
