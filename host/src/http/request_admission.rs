//! The gate every API request passes: a known key first (401 before anything else), then
//! shed past `--max-in-flight`, read the body within its deadline, bound the wait for the
//! answer, and run the handler to its end regardless.
//!
//! Why not tower's `LoadShed` + `ConcurrencyLimit` + `Timeout` (or tower-http's timeouts):
//! a timeout there drops the handler's future, which would cut a send whose provider request
//! is already out and lose its outcome (and its log line); here the handler runs in its own
//! task, holding its in-flight slot until it really ends, and the deadline only decides when
//! the client stops waiting. tower-http's `RequestBodyTimeoutLayer` restarts its clock at
//! every frame, so a body sent a byte a second would never be cut; API bodies are JSON of at
//! most 64 KiB that every handler reads whole anyway, so the body is read here once, whole,
//! within one deadline. And the refusals must be `{code, message}` like every other error.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::HttpLimits;
use crate::api_error::ApiError;
use crate::server::{AppState, MAX_REQUEST_BODY_BYTES};

pub struct RequestAdmission {
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    body_read_timeout: Duration,
    api_request_timeout: Duration,
}

impl RequestAdmission {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
            max_in_flight: limits.max_in_flight,
            body_read_timeout: limits.body_read_timeout,
            api_request_timeout: limits.api_request_timeout,
        }
    }

    /// API requests in progress now (including those whose client stopped waiting).
    pub fn in_flight(&self) -> usize {
        (self.max_in_flight as usize).saturating_sub(self.in_flight.available_permits())
    }

    /// Waits until no API request is in progress, or `limit` passes; whether none is.
    pub async fn all_finished_within(&self, limit: Duration) -> bool {
        let everything = self.in_flight.acquire_many(self.max_in_flight);
        matches!(tokio::time::timeout(limit, everything).await, Ok(Ok(_)))
    }
}

/// The middleware on the API routes (`from_fn_with_state`).
pub async fn admit_api_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    // The key first: a client without one must not hold an in-flight slot or make the host
    // read its body (a keyless slow-body flood would otherwise shed everyone else).
    let mut request = request;
    match crate::server::presented_scope(&state, &request) {
        Ok(scope) => {
            request.extensions_mut().insert(scope);
        }
        Err(refusal) => return refusal.into_response(),
    }
    let admission = &state.request_admission;
    let Ok(slot) = Arc::clone(&admission.in_flight).try_acquire_owned() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        return ApiError::Overloaded {
            max_in_flight: admission.max_in_flight,
        }
        .into_response();
    };
    let in_flight = InFlightRequest::enter(slot);
    let body_read_timeout = admission.body_read_timeout;
    // Its own task: neither a client that goes away nor the deadline below cuts it short.
    let handler = tokio::spawn(async move {
        let _in_flight = in_flight;
        match read_body_within(request, body_read_timeout).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => refusal.into_response(),
        }
    });
    match tokio::time::timeout(admission.api_request_timeout, handler).await {
        Ok(Ok(response)) => response,
        // A panic in a handler (a bug): its slot went back as its task unwound.
        Ok(Err(failure)) => {
            ApiError::Internal(format!("the request handler failed: {failure}")).into_response()
        }
        Err(_) => {
            metrics::counter!("http_timeouts_total", "kind" => "request").increment(1);
            tracing::warn!(
                limit_secs = admission.api_request_timeout.as_secs(),
                "an API request outlived its deadline; the client was answered 503 and the work goes on"
            );
            ApiError::RequestTimedOut {
                limit_secs: admission.api_request_timeout.as_secs(),
            }
            .into_response()
        }
    }
}

/// One request's in-flight slot, counted in `http_requests_in_flight` while held.
struct InFlightRequest {
    _slot: OwnedSemaphorePermit,
}

impl InFlightRequest {
    fn enter(slot: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("http_requests_in_flight").increment(1.0);
        Self { _slot: slot }
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        metrics::gauge!("http_requests_in_flight").decrement(1.0);
    }
}

/// The request with its body read whole: `408` past the deadline, `413` past the size limit.
async fn read_body_within(request: Request, deadline: Duration) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let reading = Limited::new(body, MAX_REQUEST_BODY_BYTES).collect();
    match tokio::time::timeout(deadline, reading).await {
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge {
            limit_bytes: MAX_REQUEST_BODY_BYTES,
        }),
        Ok(Err(error)) => Err(ApiError::InvalidRequestBody(format!(
            "cannot read the request body: {error}"
        ))),
        Err(_) => {
            metrics::counter!("http_timeouts_total", "kind" => "body").increment(1);
            Err(ApiError::BodyReadTimedOut {
                limit_secs: deadline.as_secs(),
            })
        }
    }
}
