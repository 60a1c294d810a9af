//! The one error type at the HTTP edge. Every failure answers JSON `{code, message, data?}`;
//! a client mistake is never a 500.

use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{entity} with id {id:?} does not exist")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    InvalidRequestBody(String),
    #[error("route {method} {path} does not exist")]
    RouteNotFound { method: String, path: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::InvalidRequestBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logto's error codes where Logto has one.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "entity.not_exists_with_id",
            ApiError::InvalidRequestBody(_) => "guard.invalid_input",
            ApiError::RouteNotFound { .. } => "request.route_not_found",
            ApiError::Internal(_) => "unknown",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(reason) = &self {
            tracing::error!(%reason, "internal error");
        }
        let body = json!({ "code": self.code(), "message": self.to_string() });
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::InvalidRequestBody(rejection.body_text())
    }
}

/// `axum::Json`, but its rejections answer in the shape of [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
