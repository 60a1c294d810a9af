//! The HTTP API, one module per resource.

pub mod connector_factories;
pub mod connectors;
pub mod delivery_reports;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod plugins;
pub mod protection;
pub mod verification_codes;

/// The key that made a request (its id, for log lines), as the admission gate found it;
/// `None` on a route the gate does not guard.
pub struct RequestKey(pub Option<crate::api_keys::KeyId>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestKey(
            parts.extensions.get::<crate::api_keys::KeyId>().copied(),
        ))
    }
}
