//! Logto's connector management routes, with retired connectors kept for switching back:
//! `GET|POST /api/connectors`, `GET|PATCH|DELETE /api/connectors/{id}`,
//! `POST /api/connectors/{id}/enable` and `POST /api/connectors/{factoryId}/test`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use plugin_api::{
    ConfigFieldError, ConnectorError, ConnectorInstance, PluginMetadata, TemplateType,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api_error::{ApiError, Json, Path, Query};
use crate::live_connector::LiveConnector;
use crate::plugins::factory_registry::Factory;
use crate::secret_redaction::SecretRedactor;
use crate::secrets::{restore_masked, SecretKeys};
use crate::state::AppState;
use crate::store::{ConnectorRecord, NewConnector, UpdateOutcome};

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

fn secret_keys(factory: Option<&Arc<Factory>>) -> SecretKeys {
    factory
        .map(|factory| SecretKeys::new(factory.plugin.metadata.connector.confidential_keys()))
        .unwrap_or_default()
}

fn connector_response(state: &AppState, record: ConnectorRecord) -> ConnectorResponse {
    let registry = state.factories.load();
    let factory = registry.get(&record.factory_id);
    let live = state.live.load();
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
        metadata: record.metadata,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

fn find_factory(state: &AppState, factory_id: &str) -> Result<Arc<Factory>, ApiError> {
    state
        .factories
        .load()
        .get(factory_id)
        .cloned()
        .ok_or_else(|| ApiError::FactoryNotFound {
            factory_id: factory_id.to_owned(),
        })
}

/// Puts stored secrets back where the client sent the mask, then has the plugin validate and
/// build the config. Returns the normalized config and a ready instance.
fn prepare_config(
    factory: &Factory,
    submitted: &Value,
    stored: Option<&Value>,
) -> Result<(Value, ConnectorInstance), ConnectorError> {
    // A saved secret only goes where it went before: with a changed destination, every masked
    // secret must be entered again.
    if let Some(stored) = stored.filter(|_| crate::secrets::contains_mask(submitted)) {
        let moved = crate::secrets::changed_destinations(submitted, stored);
        if !moved.is_empty() {
            let message = format!(
                "the saved secret is not sent to a changed destination ({}): enter it again",
                moved.join(", ")
            );
            return Err(plugin_api::invalid_config_fields(
                crate::secrets::masked_paths(submitted)
                    .into_iter()
                    .map(|field| ConfigFieldError {
                        field,
                        message: message.clone(),
                    })
                    .collect(),
            ));
        }
    }
    let config = restore_masked(submitted, stored).map_err(|field| {
        plugin_api::invalid_config_fields(vec![ConfigFieldError {
            field,
            message:
                "the masked placeholder stands where no secret is saved: send the value itself"
                    .to_owned(),
        }])
    })?;
    // A plugin's refusal may quote a value, a stored secret put back from behind a mask included.
    let redact =
        |error: ConnectorError| SecretRedactor::for_factory(factory, &config).redact_error(error);
    let normalized = factory
        .plugin
        .module
        .validate_config(&config)
        .map_err(redact)?;
    let instance = factory
        .plugin
        .module
        .instantiate(&normalized)
        .map_err(redact)?;
    Ok((normalized, instance))
}

/// The saved connector with this id, or `404 entity.not_found`.
async fn find_connector(state: &AppState, id: &str) -> Result<ConnectorRecord, ApiError> {
    state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            entity: "connector",
            id: id.to_owned(),
        })
}

/// Twelve random lowercase letters and digits, like Logto's connector ids.
fn new_connector_id() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::Internal(format!("no randomness: {error}")))?;
    // 256 % 36 != 0 leaves a slight bias, harmless for an identifier.
    Ok(bytes
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect())
}

fn make_live(
    state: &AppState,
    record: &ConnectorRecord,
    factory: Arc<Factory>,
    instance: ConnectorInstance,
) {
    state.live.store(Some(Arc::new(LiveConnector::ready(
        &record.id,
        &record.factory_id,
        &record.config,
        factory,
        instance,
    ))));
    metrics::counter!("live_connector_swaps_total").increment(1);
    tracing::info!(connector_id = %record.id, factory_id = %record.factory_id, "live connector swapped");
    crate::send::outbox::warn_if_development_connector_is_live(
        &record.id,
        &record.factory_id,
        state.send_executor.outbox_path(),
    );
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
    let records = state.store.list(Some(enabled)).await?;
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
    let record = find_connector(&state, &id).await?;
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
    Json(body): Json<CreateConnectorBody>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    // The factory first, as Logto: an unknown one is `422` whatever the config.
    let factory = find_factory(&state, &body.connector_id)?;
    let (config, instance) = prepare_config(&factory, &Value::Object(body.config), None)
        .map_err(ApiError::from_config_under_test)?;
    let new_connector = NewConnector {
        id: new_connector_id()?,
        factory_id: body.connector_id,
        config,
        metadata: Value::Object(body.metadata),
    };
    let _change = state.connector_changes.lock().await;
    let record = state.store.insert_live(new_connector).await?;
    make_live(&state, &record, factory, instance);
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
    Path(id): Path<String>,
    Json(body): Json<UpdateConnectorBody>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let _change = state.connector_changes.lock().await;
    let new_config = body.config.map(Value::Object);
    let new_metadata = body.metadata.map(Value::Object);
    // Read, validate, then write only if nothing changed in between (another host may have):
    // masked secrets are restored from exactly the config that is replaced.
    for _attempt in 0..3 {
        let stored = find_connector(&state, &id).await?;
        let factory = find_factory(&state, &stored.factory_id)?;
        let submitted = new_config.as_ref().unwrap_or(&stored.config);
        let (config, instance) = prepare_config(&factory, submitted, Some(&stored.config))
            .map_err(ApiError::from_config_under_test)?;
        let metadata = new_metadata
            .clone()
            .unwrap_or_else(|| stored.metadata.clone());
        match state.store.update(&stored, config, metadata).await? {
            UpdateOutcome::Updated(record) => {
                if record.enabled {
                    make_live(&state, &record, factory, instance);
                }
                return Ok(Json(connector_response(&state, record)));
            }
            UpdateOutcome::NotFound => {
                return Err(ApiError::NotFound {
                    entity: "connector",
                    id,
                })
            }
            UpdateOutcome::ChangedMeanwhile => continue,
        }
    }
    Err(ApiError::ChangedConcurrently { id })
}

/// Makes a saved connector live again, retiring the current one, in one call. Refused (and
/// the current one kept) when the connector's plugin is not loaded or rejects its config.
#[utoipa::path(post, path = "/api/connectors/{id}/enable", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 200, description = "The connector, now live", body = ConnectorResponse)), security(("admin_key" = [])))]
pub async fn enable_connector(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let _change = state.connector_changes.lock().await;
    let stored = find_connector(&state, &id).await?;
    let factory = find_factory(&state, &stored.factory_id)?;
    let instance = factory
        .plugin
        .module
        .instantiate(&stored.config)
        .map_err(|error| ApiError::Connector {
            error,
            during_test: true,
        })?;
    let record = state
        .store
        .enable(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            entity: "connector",
            id: stored.id.clone(),
        })?;
    make_live(&state, &record, factory, instance);
    Ok(Json(connector_response(&state, record)))
}

/// Deletes a live or retired connector; deleting the live one leaves none live.
#[utoipa::path(delete, path = "/api/connectors/{id}", tag = "connectors", params(("id" = String, Path, description = "The connector id", min_length = 1, example = "6wb24mwyos70")),
    responses((status = 204, description = "Deleted")), security(("admin_key" = [])))]
pub async fn delete_connector(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let _change = state.connector_changes.lock().await;
    let deleted = state.store.delete(&id).await?;
    if !deleted {
        return Err(ApiError::NotFound {
            entity: "connector",
            id,
        });
    }
    if state
        .live
        .load()
        .as_deref()
        .is_some_and(|live| live.connector_id == id)
    {
        state.live.store(None);
        tracing::info!(connector_id = %id, "the live connector was deleted; no SMS connector is live");
    }
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
    let factory = find_factory(&state, &factory_id)?;
    let phone = state
        .config
        .phone_validation
        .parse(&body.phone)
        .map_err(ApiError::InvalidPhoneNumber)?;
    let config = Value::Object(body.config);
    let stored_config = match body.saved_connector_id {
        Some(saved_connector_id) => {
            let saved = find_connector(&state, &saved_connector_id).await?;
            if saved.factory_id != factory_id {
                return Err(ApiError::InvalidRequestBody(format!(
                    "`savedConnectorId` {saved_connector_id:?} belongs to the factory {:?}, not {factory_id:?}",
                    saved.factory_id
                )));
            }
            Some(saved.config)
        }
        None if crate::secrets::contains_mask(&config) => {
            let mut candidates = state.store.list(None).await?;
            candidates.retain(|record| record.factory_id == factory_id);
            candidates.sort_by_key(|record| (record.enabled, record.updated_at));
            candidates.pop().map(|record| record.config)
        }
        None => None,
    };
    let (normalized, instance) = prepare_config(&factory, &config, stored_config.as_ref())
        .map_err(ApiError::from_config_under_test)?;
    // The unsaved config's secrets are kept out of the answer and the log as a saved one's are.
    let redactor = SecretRedactor::for_factory(&factory, &normalized);
    let code = crate::verification_code::generate_code()
        .map_err(|error| ApiError::Internal(format!("cannot generate a code: {error}")))?;
    let message =
        crate::verification_code::code_message(&phone, TemplateType::Generic, code, body.locale);
    let send_metrics = crate::send::SendMetrics::for_factory(&factory_id);
    let target = crate::send::SendTarget {
        connector_id: "(unsaved config)",
        factory_id: &factory_id,
        instance: &instance,
        metrics: &send_metrics,
        redactor: &redactor,
    };
    crate::send::send_with_flow_control(
        &state,
        target,
        &phone,
        message,
        crate::send::SendPurpose::ConfigTest,
        // An admin's test: no end user behind it.
        None,
    )
    .await?;
    tracing::info!(%factory_id, "test message sent");
    Ok(StatusCode::NO_CONTENT)
}
