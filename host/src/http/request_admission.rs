//! The gate every API request passes: a known key first (401 before anything else), then
//! shed past `--max-in-flight`, read the body within its deadline, bound the wait for the
//! answer, and run the handler to its end regardless.
//!
//! Why not tower's `LoadShed` + `ConcurrencyLimit` + `Timeout` (or tower-http's timeouts):
//! a timeout there drops the handler's future, which would cut a send whose provider request
//! is already out and lose its outcome (and its log line); here the handler runs to its end,
//! holding its in-flight slot until it really ends, and the deadline only decides when the
//! client stops waiting. The handler runs in the connection's own task while the client
//! waits; only when the client stops waiting (the deadline, or the connection gone) is what
//! remains of it moved into a task of its own ([`RunsToCompletion`]). Spawning a task for
//! every request instead cost a task, a cross-thread wake-up and about 9 µs of CPU a send. tower-http's `RequestBodyTimeoutLayer` restarts its clock at
//! every frame, so a body sent a byte a second would never be cut; API bodies are JSON of at
//! most 64 KiB that every handler reads whole anyway, so the body is read here once, whole,
//! within one deadline. And the refusals must be `{code, message}` like every other error.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::HttpLimits;
use crate::api_error::ApiError;
use crate::api_keys::{ApiKeys, KeyId, KeyScope};
use crate::http::limits::MAX_REQUEST_BODY_BYTES;

pub struct RequestAdmission {
    in_flight: Arc<Semaphore>,
    max_in_flight: u32,
    body_read_timeout: Duration,
    api_request_timeout: Duration,
    /// `http_requests_in_flight`, registered once (the recorder is installed before).
    in_flight_gauge: metrics::Gauge,
}

impl RequestAdmission {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight as usize)),
            max_in_flight: limits.max_in_flight,
            body_read_timeout: limits.body_read_timeout,
            api_request_timeout: limits.api_request_timeout,
            in_flight_gauge: metrics::gauge!("http_requests_in_flight"),
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

/// What the gate needs: the keys it checks first, then the admission limits.
#[derive(Clone)]
pub struct AdmissionGate {
    pub api_keys: Arc<ApiKeys>,
    pub admission: Arc<RequestAdmission>,
}

/// The middleware on the API routes (`from_fn_with_state`).
pub async fn admit_api_request(
    State(gate): State<AdmissionGate>,
    request: Request,
    next: Next,
) -> Response {
    // The key first: a client without one must not hold an in-flight slot or make the host
    // read its body (a keyless slow-body flood would otherwise shed everyone else).
    let mut request = request;
    let key = match presented_key(&gate.api_keys, &request) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    request.extensions_mut().insert(key);
    let mut response = admit_known_key(&gate, request, next).await;
    // For the request log around the router: which key this answer went to.
    response.extensions_mut().insert(key);
    response
}

/// The admission limits, for a request whose key is known.
async fn admit_known_key(gate: &AdmissionGate, request: Request, next: Next) -> Response {
    let admission = &gate.admission;
    let Ok(slot) = Arc::clone(&admission.in_flight).try_acquire_owned() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        return ApiError::Overloaded {
            max_in_flight: admission.max_in_flight,
        }
        .into_response();
    };
    let in_flight = InFlightRequest::enter(slot, admission.in_flight_gauge.clone());
    let body_read_timeout = admission.body_read_timeout;
    let mut handler = RunsToCompletion::new(async move {
        let _in_flight = in_flight;
        match read_body_within(request, body_read_timeout).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => refusal.into_response(),
        }
    });
    match tokio::time::timeout(admission.api_request_timeout, &mut handler).await {
        Ok(response) => response,
        Err(_) => {
            // The client stops waiting; the handler does not stop working.
            handler.detach();
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

/// A handler that runs to its end whatever its client does: polled in place while the client
/// waits; when dropped or [detached](Self::detach) before its end (the connection closed, the
/// deadline passed), what remains of it goes on in a task of its own. A panic in it (a bug)
/// answers `500` instead of taking the connection's task down.
struct RunsToCompletion {
    handler: Option<Pin<Box<dyn Future<Output = Response> + Send>>>,
}

impl RunsToCompletion {
    fn new(handler: impl Future<Output = Response> + Send + 'static) -> Self {
        Self {
            handler: Some(Box::pin(handler)),
        }
    }

    /// Moves what remains of the handler into a task of its own. The box keeps the future
    /// where it is in memory, so moving it after it was polled is sound.
    fn detach(&mut self) {
        let Some(handler) = self.handler.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // Nobody waits for the answer; a panic is already reported by the hook.
                    let _ = RunsToCompletion {
                        handler: Some(handler),
                    }
                    .await;
                });
            }
            // Only when the runtime itself is shutting down: nothing can run it any more.
            Err(_) => tracing::warn!("an API request was cut short by the shutdown"),
        }
    }
}

impl Future for RunsToCompletion {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Response> {
        let Some(handler) = self.handler.as_mut() else {
            return Poll::Ready(
                ApiError::Internal("the request handler was polled after its end".to_owned())
                    .into_response(),
            );
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(context)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(response)) => {
                self.handler = None;
                Poll::Ready(response)
            }
            // A panic in a handler (a bug): its slot goes back as the future is dropped.
            Err(_) => {
                self.handler = None;
                Poll::Ready(
                    ApiError::Internal("the request handler failed".to_owned()).into_response(),
                )
            }
        }
    }
}

impl Drop for RunsToCompletion {
    fn drop(&mut self) {
        self.detach();
    }
}

/// One request's in-flight slot, counted in `http_requests_in_flight` while held.
struct InFlightRequest {
    _slot: OwnedSemaphorePermit,
    gauge: metrics::Gauge,
}

impl InFlightRequest {
    fn enter(slot: OwnedSemaphorePermit, gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self { _slot: slot, gauge }
    }
}

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
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

/// The scope of the key a request presents. The admission gate checks it first (before a
/// slot is taken or a body read) and leaves it in the request's extensions for the route
/// layers, so the key is hashed once.
pub(crate) fn presented_scope(
    api_keys: &ApiKeys,
    request: &axum::extract::Request,
) -> Result<KeyScope, ApiError> {
    presented_key(api_keys, request).map(|key| key.scope)
}

/// The key a request presents, with its id (see [`presented_scope`]).
pub(crate) fn presented_key(
    api_keys: &ApiKeys,
    request: &axum::extract::Request,
) -> Result<KeyId, ApiError> {
    if let Some(key) = request.extensions().get::<KeyId>() {
        return Ok(*key);
    }
    let key = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim_start().split_once(' '))
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .and_then(|(scheme, key)| scheme.eq_ignore_ascii_case("bearer").then_some(key))
        .ok_or(ApiError::Unauthorized)?;
    api_keys.identify(key.trim()).ok_or(ApiError::Unauthorized)
}
