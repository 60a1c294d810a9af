//! `GET /metrics`: Prometheus text format. Counts only, no secrets, so it needs no key, like
//! `/health`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format",
    content_type = "text/plain", example = "# TYPE sms_sends_total counter\nsms_sends_total{factory=\"mock-short-message-service\",purpose=\"verification_code\",outcome=\"sent\"} 3\n")))]
pub async fn get_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
