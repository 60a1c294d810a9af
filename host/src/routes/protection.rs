//! The SMS-pumping protection's admin API: `GET /api/protection` (mode, settings, current
//! blocks, allowed countries), `DELETE /api/protection/blocks/{id}` (lift a block) and
//! `POST /api/protection/countries/{region}/allow` (`first_seen_country` lifted for it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, Json, Path, Query};
use crate::protection::{BlockKind, BlockReason, BlockView, ProtectionReport};
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

/// Which blocks `GET /api/protection` lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProtectionQuery {
    /// Only the blocks with this reason: `ip_velocity`, `prefix_velocity`, `low_conversion`,
    /// `first_seen_country`, `budget` or `recipient_backoff`.
    #[param(
        pattern = "^(ip_velocity|prefix_velocity|low_conversion|first_seen_country|budget|recipient_backoff)$"
    )]
    pub reason: Option<String>,
    /// Only the blocks on this kind of subject: `prefix`, `country`, `ip`, `recipient` or
    /// `global`.
    #[param(pattern = "^(prefix|country|ip|recipient|global)$")]
    pub kind: Option<String>,
}

fn parse_reason(reason: &str) -> Result<BlockReason, ApiError> {
    BlockReason::ALL
        .into_iter()
        .find(|known| known.label() == reason)
        .ok_or_else(|| {
            ApiError::InvalidRequestBody(format!(
                "unknown reason {reason:?}: use one of {}",
                BlockReason::ALL.map(BlockReason::label).join(", ")
            ))
        })
}

fn parse_kind(kind: &str) -> Result<BlockKind, ApiError> {
    BlockKind::ALL
        .into_iter()
        .find(|known| known.label() == kind)
        .ok_or_else(|| {
            ApiError::InvalidRequestBody(format!(
                "unknown kind {kind:?}: use one of {}",
                BlockKind::ALL.map(BlockKind::label).join(", ")
            ))
        })
}

/// The protection's mode, settings, current blocks (what, why, since, until, counts; only
/// those of a `reason` or `kind` when asked) and the countries an admin allowed.
#[utoipa::path(get, path = "/api/protection", tag = "protection", params(ProtectionQuery),
    responses((status = 200, description = "The protection's state", body = ProtectionResponse)),
    security(("admin_key" = [])))]
pub async fn get_protection(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ProtectionQuery>,
) -> Result<Json<ProtectionResponse>, ApiError> {
    let reason = query.reason.as_deref().map(parse_reason).transpose()?;
    let kind = query.kind.as_deref().map(parse_kind).transpose()?;
    let mut report = state.sender.protection.report(crate::store::now_millis());
    report.blocks.retain(|block| {
        reason.is_none_or(|reason| block.reason == reason)
            && kind.is_none_or(|kind| block.kind == kind)
    });
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
    // Every host's first: the others drop it at their next exchange.
    let lifted_for_all = match state.store_backend.shared() {
        Some(postgres) => postgres.lift_protection_block(&id).await?,
        None => false,
    };
    if state.sender.protection.lift(&id) || lifted_for_all {
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
    if let Some(postgres) = state.store_backend.shared() {
        postgres.allow_protection_country(&region).await?;
    }
    state.sender.protection.allow_country(&region);
    tracing::info!(%region, key_id = %key_id(key), "country allowed by an admin for protection");
    Ok(StatusCode::NO_CONTENT)
}

/// The key id for a log line, `-` when not known.
fn key_id(key: Option<crate::api_keys::KeyId>) -> String {
    key.map_or_else(|| "-".to_owned(), |key| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::IntoParams;

    /// The document's patterns name exactly the reasons and kinds the host takes.
    #[test]
    fn the_documented_patterns_are_the_known_reasons_and_kinds() {
        let patterns: Vec<(String, String)> = ProtectionQuery::into_params(|| None)
            .into_iter()
            .map(|parameter| {
                let schema = serde_json::to_value(&parameter.schema).unwrap();
                (
                    parameter.name,
                    schema["pattern"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let pattern = |labels: Vec<&str>| format!("^({})$", labels.join("|"));
        assert_eq!(
            patterns,
            [
                (
                    "reason".to_owned(),
                    pattern(BlockReason::ALL.map(BlockReason::label).to_vec())
                ),
                (
                    "kind".to_owned(),
                    pattern(BlockKind::ALL.map(BlockKind::label).to_vec())
                ),
            ]
        );
    }
}
