//! The SMS-pumping protection's admin API: `GET /api/protection` (mode, settings, current
//! blocks, allowed countries), `DELETE /api/protection/blocks/{id}` (lift a block) and
//! `POST /api/protection/countries/{region}/allow` (`first_seen_country` lifted for it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::api_error::{ApiError, Json, Path};
use crate::protection::{BlockView, ProtectionReport};
use crate::routes::RequestKey;
use crate::state::AppState;

/// What `GET /api/protection` answers (documented shape of [`ProtectionReport`]).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"mode": "enforce", "settings": {"ipVelocityMax": 30}, "blocks": [{"id": "9f2c4e1a7b3d5f60", "kind": "prefix", "subject": "+1201555", "reason": "low_conversion", "since": 1_767_000_000_000i64, "until": 1_767_003_600_000i64, "counts": {"issued": 40, "verified": 3, "blocked": 12}}], "allowedCountries": ["US"]}))]
pub struct ProtectionResponse {
    /// `off`, `monitor` or `enforce`.
    pub mode: String,
    /// Every protection flag's value, by its name in camel case.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// The blocks in force, newest first.
    pub blocks: Vec<BlockView>,
    /// Countries an admin allowed (`first_seen_country` spares them).
    pub allowed_countries: Vec<String>,
}

fn response(report: ProtectionReport) -> Result<ProtectionResponse, ApiError> {
    let settings = serde_json::to_value(&report.settings)
        .map_err(|error| ApiError::Internal(format!("cannot serialize the settings: {error}")))?;
    Ok(ProtectionResponse {
        mode: report.mode.label().to_owned(),
        settings,
        blocks: report.blocks,
        allowed_countries: report.allowed_countries,
    })
}

/// The protection's mode, settings, current blocks (what, why, since, until, counts) and the
/// countries an admin allowed.
#[utoipa::path(get, path = "/api/protection", tag = "protection",
    responses((status = 200, description = "The protection's state", body = ProtectionResponse)),
    security(("admin_key" = [])))]
pub async fn get_protection(
    State(state): State<Arc<AppState>>,
) -> Result<Json<ProtectionResponse>, ApiError> {
    let report = state.sender.protection.report(crate::store::now_millis());
    Ok(Json(response(report)?))
}

/// Lifts a block: sends to its subject go again (its counts start over).
#[utoipa::path(delete, path = "/api/protection/blocks/{id}", tag = "protection",
    params(("id" = String, Path, description = "The block id from `GET /api/protection`", example = "9f2c4e1a7b3d5f60")),
    responses((status = 204, description = "Lifted")), security(("admin_key" = [])))]
pub async fn lift_block(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.sender.protection.lift(&id) {
        tracing::info!(block_id = %id, key_id = %key_id(key), "protection block lifted by an admin");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound {
            entity: "protection block",
            id,
        })
    }
}

/// Allows a country: `first_seen_country` no longer throttles it (as if a code there had been
/// verified).
#[utoipa::path(post, path = "/api/protection/countries/{region}/allow", tag = "protection",
    params(("region" = String, Path, description = "ISO 3166 alpha-2 code, uppercase", pattern = "^[A-Z]{2}$", example = "US")),
    responses((status = 204, description = "Allowed")), security(("admin_key" = [])))]
pub async fn allow_country(
    State(state): State<Arc<AppState>>,
    RequestKey(key): RequestKey,
    Path(region): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !crate::protection::is_region_code(&region) {
        return Err(ApiError::InvalidRequestBody(format!(
            "{region:?} is not a region: use an ISO 3166 alpha-2 code in uppercase, such as US"
        )));
    }
    state.sender.protection.allow_country(&region);
    tracing::info!(%region, key_id = %key_id(key), "country allowed by an admin for protection");
    Ok(StatusCode::NO_CONTENT)
}

/// The key id for a log line, `-` when not known.
fn key_id(key: Option<crate::api_keys::KeyId>) -> String {
    key.map_or_else(|| "-".to_owned(), |key| key.to_string())
}
