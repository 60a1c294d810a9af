//! Logto's connector management routes, with retired connectors kept for switching back:
//! `GET|POST /api/connectors`, `GET|PATCH|DELETE /api/connectors/{id}`,
//! `POST /api/connectors/{id}/enable` and `POST /api/connectors/{factoryId}/test`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use plugin_api::PluginMetadata;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api_error::{ApiError, Json, Path, Query};
use crate::live::lifecycle::{secret_keys, NewConnectorRequest};
use crate::routes::RequestKey;
use crate::send::config_test::{send_test_code, ConfigTest};
use crate::state::AppState;
use crate::store::ConnectorRecord;

/// A connector as Logto returns it: the saved connector plus its factory's metadata.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "6wb24mwyos70", "connectorId": "mock-short-message-service", "type": "Sms",
    "isDemo": true, "enabled": true, "loaded": true, "orphaned": false,
    "config": {"templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}], "outbox": false},
    "metadata": {}, "createdAt": 1795767771508_i64, "updatedAt": 1795767771508_i64,
    "target": "mock-sms", "name": {"en": "Mock SMS Service"}, "pluginVersion": "0.1.0"
}))]
pub struct ConnectorResponse {
    /// The connector's own id (12 lowercase letters and digits).
    pub id: String,
    /// Its factory's id.
    pub connector_id: String,
    #[serde(rename = "type")]
    pub connector_type: crate::routes::connector_factories::ConnectorType,
    /// A development connector (its factory sends nothing: the mock writes to the host's
    /// outbox).
    pub is_demo: bool,
    /// Whether it is the live connector (`false`: retired, kept to switch back to).
    pub enabled: bool,
    /// Whether it is the standby: a previous connector that sends when the live one's
    /// provider provably took nothing (`POST /api/connectors/{id}/fallback`).
    pub fallback: bool,
    /// Whether a loaded plugin provides this connector (and, for the live one, whether it
    /// accepted the saved config).
    pub loaded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
    /// The live connector runs on a build whose file was removed or replaced by a build that
    /// was not taken up; it keeps working until changed.
    pub orphaned: bool,
    /// Secrets masked.
    #[schema(value_type = Object)]
    pub config: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// The factory's metadata fields (name, description, readme, formItems, ...), except its
    /// `id`, which is `connectorId` here. Absent when no loaded plugin provides the factory.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub factory_metadata: serde_json::Map<String, Value>,
}

fn factory_metadata_fields(metadata: &PluginMetadata) -> serde_json::Map<String, Value> {
    match serde_json::to_value(metadata) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("id");
            fields
        }
        _ => serde_json::Map::new(),
    }
}

fn connector_response(state: &AppState, record: ConnectorRecord) -> ConnectorResponse {
    let registry = state.factories.load();
    let live = state.live.current();
    // An orphaned live connector (its file gone) is still described by the build it runs on.
    let factory = registry.get(&record.factory_id).or_else(|| {
        live.as_deref()
            .filter(|live| live.connector_id == record.id)
            .and_then(|live| live.running_factory())
    });
    let orphaned = live
        .as_deref()
        .is_some_and(|live| live.connector_id == record.id && live.is_orphaned(&registry));
    let load_error = match (live.as_deref(), factory) {
        (Some(live), _) if live.connector_id == record.id => {
            live.unavailable_reason().map(str::to_owned)
        }
        (_, None) => Some(format!(
            "no loaded plugin provides the factory {:?}",
            record.factory_id
        )),
        (_, Some(_)) => None,
    };
    ConnectorResponse {
        is_demo: crate::send::outbox::is_development_factory(&record.factory_id),
        config: secret_keys(factory).mask(&record.config),
        factory_metadata: factory
            .map(|factory| factory_metadata_fields(&factory.plugin.metadata))
            .unwrap_or_default(),
        loaded: load_error.is_none(),
        load_error,
        orphaned,
        id: record.id,
        connector_id: record.factory_id,
        connector_type: crate::routes::connector_factories::ConnectorType::Sms,
        enabled: record.enabled,
        fallback: record.fallback,
        metadata: record.metadata,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListConnectorsQuery {
    /// `true` (default): the live connector, as Logto lists; `false`: the retired ones.
    pub enabled: Option<bool>,
}

/// The live connector (default), or the retired ones with `enabled=false`.
#[utoipa::path(get, path = "/api/connectors", tag = "connectors", params(ListConnectorsQuery),
    responses((status = 200, body = [ConnectorResponse])), security(("admin_key" = [])))]
pub async fn list_connectors(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListConnectorsQuery>,
) -> Result<Json<Vec<ConnectorResponse>>, ApiError> {
    let enabled = query.enabled.unwrap_or(true);
    let records = state.store().list(Some(enabled)).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|record| connector_response(&state, record))
            .collect(),
    ))
}

/// One connector, live or retired.
#[utoipa::path(get, path = "/api/connectors/{id}", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 200, body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn get_connector(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state.connector_lifecycle().find_connector(&id).await?;
    Ok(Json(connector_response(&state, record)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"connectorId": "mock-short-message-service", "config": {"templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}], "outbox": false}}))]
pub struct CreateConnectorBody {
    /// The factory id, from `GET /api/connector-factories`.
    #[serde(deserialize_with = "crate::request_fields::non_empty_string")]
    #[schema(min_length = 1)]
    pub connector_id: String,
    /// Validated by the factory's plugin before anything is saved. Optional, as in Logto: left
    /// out, it is `{}`, which a plugin with required fields refuses (`connector.invalid_config`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Kept with the connector as it is.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Creates a connector and makes it the live one; the previous live connector is retired in
/// the same transaction, its config kept.
#[utoipa::path(post, path = "/api/connectors", tag = "connectors", request_body = CreateConnectorBody,
    responses((status = 200, description = "The new live connector", body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn create_connector(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Json(body): Json<CreateConnectorBody>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state
        .connector_lifecycle()
        .changed_by(key)
        .create(NewConnectorRequest {
            factory_id: body.connector_id,
            config: Value::Object(body.config),
            metadata: Value::Object(body.metadata),
        })
        .await?;
    Ok(Json(connector_response(&state, record)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"config": {"templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}], "outbox": false}, "metadata": {"note": "staging"}}))]
pub struct UpdateConnectorBody {
    /// Replaces the whole config (Logto replaces, it does not merge); masked secrets stay.
    /// Left out: the saved config, validated again.
    #[serde(
        default,
        deserialize_with = "crate::request_fields::object_when_present"
    )]
    #[schema(value_type = Object)]
    pub config: Option<Map<String, Value>>,
    /// Replaces the metadata; left out, it is kept.
    #[serde(
        default,
        deserialize_with = "crate::request_fields::object_when_present"
    )]
    #[schema(value_type = Object)]
    pub metadata: Option<Map<String, Value>>,
}

/// Replaces config and/or metadata; patching the live connector swaps it.
#[utoipa::path(patch, path = "/api/connectors/{id}", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")), request_body = UpdateConnectorBody,
    responses((status = 200, body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn update_connector(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
    Json(body): Json<UpdateConnectorBody>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state
        .connector_lifecycle()
        .changed_by(key)
        .update(
            &id,
            body.config.map(Value::Object),
            body.metadata.map(Value::Object),
        )
        .await?;
    Ok(Json(connector_response(&state, record)))
}

/// Makes a saved connector live again, retiring the current one, in one call. Refused (and
/// the current one kept) when the connector's plugin is not loaded or rejects its config.
#[utoipa::path(post, path = "/api/connectors/{id}/enable", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 200, description = "The connector, now live", body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn enable_connector(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state
        .connector_lifecycle()
        .changed_by(key)
        .enable(&id)
        .await?;
    Ok(Json(connector_response(&state, record)))
}

/// Marks a previous connector as the fallback (standby), in place of any other: sends go to
/// it when the live connector's provider provably took nothing (unreachable, credentials
/// refused, throttled, 503), or while the breaker skips a failing live connector. Refused
/// for the live connector (409), and when its plugin is not loaded or rejects its config.
#[utoipa::path(post, path = "/api/connectors/{id}/fallback", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 200, description = "The connector, now the fallback", body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn set_fallback(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state
        .connector_lifecycle()
        .changed_by(key)
        .set_fallback(&id)
        .await?;
    Ok(Json(connector_response(&state, record)))
}

/// Clears a connector's fallback mark: no standby (nothing happens to one that has none).
#[utoipa::path(delete, path = "/api/connectors/{id}/fallback", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 200, description = "The connector, no longer the fallback", body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn clear_fallback(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let record = state
        .connector_lifecycle()
        .changed_by(key)
        .clear_fallback(&id)
        .await?;
    Ok(Json(connector_response(&state, record)))
}

/// Deletes a live or retired connector; deleting the live one leaves none live.
#[utoipa::path(delete, path = "/api/connectors/{id}", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 204, description = "Deleted")), security(("admin_key" = [])))]
pub async fn delete_connector(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .connector_lifecycle()
        .changed_by(key)
        .delete(&id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"phone": "+12015550123", "config": {"templates": [{"usageType": "Generic", "content": "Your code is {{code}}"}], "outbox": false}, "locale": "en"}))]
pub struct TestConnectorBody {
    /// Where the test code goes.
    #[schema(value_type = crate::phone::PhoneNumber)]
    pub phone: String,
    /// The unsaved config to test, validated by the factory's plugin.
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Picks a per-locale template (`payload.locale`).
    pub locale: Option<String>,
    /// The saved connector (of this factory) whose stored secrets stand behind `******` in
    /// `config`, as when testing edits on a connector's page. Without it: the live connector
    /// of this factory, else the one saved last.
    pub saved_connector_id: Option<String>,
}

/// Validates an unsaved config and sends a verification code with the Generic template
/// through the factory (the path's id is the factory id). Nothing is saved. A masked secret
/// is taken from `savedConnectorId`, else from the saved connector of the same factory (the
/// live one first).
#[utoipa::path(post, path = "/api/connectors/{id}/test", tag = "connectors",
    params(("id" = String, Path, description = "The factory id", min_length = 1, example = "mock-short-message-service")),
    request_body = TestConnectorBody,
    responses((status = 204, description = "The test code was sent")), security(("admin_key" = [])))]
pub async fn test_connector_config(
    State(state): State<Arc<AppState>>,
    Path(factory_id): Path<String>,
    Json(body): Json<TestConnectorBody>,
) -> Result<StatusCode, ApiError> {
    let lifecycle = state.connector_lifecycle();
    let factory = lifecycle.find_factory(&factory_id)?;
    let phone = state
        .config
        .phone_validation
        .parse(&body.phone)
        .map_err(ApiError::InvalidPhoneNumber)?;
    let test = ConfigTest {
        factory,
        phone,
        config: Value::Object(body.config),
        locale: body.locale,
        saved_connector_id: body.saved_connector_id,
    };
    send_test_code(&state.sender, &lifecycle, test).await?;
    Ok(StatusCode::NO_CONTENT)
}
