//! The router (with key checks) and serving on a listener.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::api_error::ApiError;
use crate::api_keys::KeyScope;
use crate::http::limits::MAX_REQUEST_BODY_BYTES;
use crate::http::request_admission::presented_scope;
use crate::live::plugin_watcher::{rescan_on_changes, watch_plugin_folder};
use crate::routes;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let admin_routes = Router::new()
        .route(
            "/api/connector-factories",
            get(routes::connector_factories::list_connector_factories),
        )
        .route(
            "/api/connector-factories/{id}",
            get(routes::connector_factories::get_connector_factory),
        )
        .route(
            "/api/connector-factories/{id}/readme.html",
            get(routes::connector_factories::get_connector_factory_readme),
        )
        .route(
            "/api/connectors",
            get(routes::connectors::list_connectors).post(routes::connectors::create_connector),
        )
        .route(
            "/api/connectors/{id}",
            get(routes::connectors::get_connector)
                .patch(routes::connectors::update_connector)
                .delete(routes::connectors::delete_connector),
        )
        .route(
            "/api/connectors/{id}/enable",
            post(routes::connectors::enable_connector),
        )
        .route(
            "/api/connectors/{id}/fallback",
            post(routes::connectors::set_fallback).delete(routes::connectors::clear_fallback),
        )
        .route(
            "/api/connectors/{id}/test",
            post(routes::connectors::test_connector_config),
        )
        .route("/api/plugins", get(routes::plugins::list_plugin_files))
        .route("/api/protection", get(routes::protection::get_protection))
        .route(
            "/api/protection/blocks/{id}",
            delete(routes::protection::lift_block),
        )
        .route(
            "/api/protection/countries/{region}/allow",
            post(routes::protection::allow_country),
        )
        .route("/api/messages", get(routes::messages::list_messages))
        .route("/api/messages/{id}", get(routes::messages::get_message))
        .route(
            "/api/messages/summary",
            get(routes::messages::get_message_summary),
        )
        .route(
            "/api/plugins/rescan",
            post(routes::plugins::rescan_plugin_files),
        )
        .route(
            "/api/openapi.json",
            get(crate::api_doc::get_openapi_document),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_admin_key,
        ));
    let send_routes = Router::new()
        .route("/api/messages", post(routes::messages::send_message))
        .route(
            "/api/verification-codes",
            post(routes::verification_codes::issue_code),
        )
        .route(
            "/api/verification-codes/verify",
            post(routes::verification_codes::verify_code),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_send_key,
        ));
    // Shed, deadlines and run-to-the-end for the API; `/health`, `/ready`, `/metrics` and the
    // console's files stay outside, answerable under any load.
    let api_routes = admin_routes
        .merge(send_routes)
        .route_layer(middleware::from_fn_with_state(
            state.admission_gate(),
            crate::http::request_admission::admit_api_request,
        ));
    // Providers' delivery reports: no API key (the URL's token and the connector's signature
    // instead), a small body.
    let report_routes = Router::new()
        .route(
            "/dlr/{connector_id}",
            get(routes::delivery_reports::receive_report)
                .post(routes::delivery_reports::receive_report),
        )
        .layer(DefaultBodyLimit::max(
            routes::delivery_reports::MAX_REPORT_BYTES,
        ));
    Router::new()
        .route("/health", get(routes::health::get_health))
        .route("/ready", get(routes::health::get_ready))
        .route("/metrics", get(routes::metrics::get_metrics))
        .merge(api_routes)
        .merge(report_routes)
        .merge(crate::console::console_router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        // Around every route and the fallbacks: each request counted and logged once.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.request_log),
            crate::http::request_log::log_request,
        ))
        .with_state(state)
}

/// What answers while the host starts (waiting for its database): `/health` (the process is
/// up), `/ready` (503 `starting`), and `503 store.unavailable` for everything else.
fn starting_router() -> Router {
    Router::new()
        .route("/health", get(routes::health::get_health_starting))
        .route("/ready", get(routes::health::get_ready_starting))
        .fallback(|| async {
            ApiError::StoreUnavailable(
                "this host is starting (waiting for its database); try again in a moment"
                    .to_owned(),
            )
        })
}

/// How many SIGTERM or SIGINT signals have come. One watcher from start-up to exit, so no
/// signal falls between start-up and serving.
#[derive(Clone)]
pub struct ShutdownSignals(tokio::sync::watch::Receiver<u32>);

impl ShutdownSignals {
    /// Starts counting the signals (a task on the runtime).
    pub fn watch() -> Self {
        let (count, receiver) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                shutdown_signal().await;
                count.send_modify(|count| *count += 1);
            }
        });
        Self(receiver)
    }

    /// Until `count` signals have come in all.
    async fn until(&mut self, count: u32) {
        // The sender lives as long as the runtime: an error only at exit.
        let _ = self.0.wait_for(|came| *came >= count).await;
    }
}

/// Runs start-up (`loading`) while answering on `listener` as [`starting_router`] does.
/// `None`: SIGTERM or SIGINT came first (start-up is abandoned).
pub async fn start<T>(
    listener: &TcpListener,
    limits: &crate::http::HttpLimits,
    signals: &ShutdownSignals,
    loading: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut signals = signals.clone();
    let loading_or_stopped = async {
        tokio::select! {
            loaded = loading => Some(loaded),
            () = signals.until(1) => None,
        }
    };
    crate::http::listener::answer_while(listener, starting_router(), limits, loading_or_stopped)
        .await
}

async fn require_admin_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match presented_scope(&state.api_keys, &request)? {
        KeyScope::Admin => Ok(next.run(request).await),
        KeyScope::Send => Err(ApiError::Forbidden),
    }
}

async fn require_send_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    presented_scope(&state.api_keys, &request)?;
    Ok(next.run(request).await)
}

async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Serves until SIGTERM or SIGINT, then drains (see [`drain_on_signal`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    signals: ShutdownSignals,
) -> std::io::Result<()> {
    tokio::spawn(purge_expired_periodically(Arc::clone(&state)));
    tokio::spawn(crate::http::request_log::report_quiet_floods_periodically(
        Arc::clone(&state.request_log),
    ));
    if state.store_backend.embedded().is_some() {
        let saving = Arc::clone(&state);
        tokio::spawn(async move {
            if let Some(sqlite) = saving.store_backend.embedded() {
                crate::protection::persistence::save_periodically(
                    &saving.sender.protection,
                    sqlite,
                )
                .await;
            }
        });
    }
    start_protection_sharing(&state);
    if state.store_backend.shared().is_some() {
        let following = Arc::clone(&state);
        tokio::spawn(async move {
            if let Some(follower) = following.store_follower() {
                crate::live::store_follower::follow_shared_store(follower).await;
            }
        });
    }
    // Kept alive while serving: dropping it stops the watch.
    let watched = watch_plugin_folder(&state.config.plugins_dir, state.config.plugin_watch);
    let _plugin_watcher = match watched {
        Ok((watcher, changes)) => {
            let rescanning = Arc::clone(&state);
            tokio::spawn(async move {
                rescan_on_changes(changes, rescanning.plugin_rescan()).await;
            });
            Some(watcher)
        }
        Err(error) => {
            tracing::error!(%error, "cannot watch the plugins folder; use POST /api/plugins/rescan after changes");
            None
        }
    };
    let limits = state.config.http_limits.clone();
    let settings = state.config.shutdown;
    // When the listener stopped accepting, and how many API requests were in flight then.
    let stopped_accepting = Arc::new(std::sync::OnceLock::new());
    crate::http::serve_connections(
        listener,
        router(Arc::clone(&state)),
        &limits,
        drain_on_signal(Arc::clone(&state), signals, Arc::clone(&stopped_accepting)),
        settings.timeout,
    )
    .await?;
    // Requests in flight finish (a send is never cut in the middle), within the timeout.
    let (stopped_at, in_flight_at_stop) = stopped_accepting
        .get()
        .copied()
        .unwrap_or_else(|| (std::time::Instant::now(), 0));
    let remaining = settings.timeout.saturating_sub(stopped_at.elapsed());
    if state.request_admission.all_finished_within(remaining).await {
        tracing::info!(
            in_flight_at_stop,
            finished_in_ms = stopped_at.elapsed().as_millis() as u64,
            "drained: every request in flight finished"
        );
    } else {
        tracing::warn!(
            in_flight_at_stop,
            still_running = state.request_admission.in_flight(),
            shutdown_timeout_secs = settings.timeout.as_secs(),
            "requests still running after --shutdown-timeout-secs; exiting anyway"
        );
    }
    // The message log's queued writes (the last sends' messages and outcomes) reach the store.
    state.sender.tracking.flush().await;
    if let Some(sqlite) = state.store_backend.embedded() {
        crate::protection::persistence::save(&state.sender.protection, sqlite, false).await;
    }
    Ok(())
}

/// On PostgreSQL, starts the protection's exchanges with the other hosts (once; the task runs
/// for the runtime's life). Without them a host in `enforce` mode refuses every send after a
/// few seconds (its shared state is stale).
pub fn start_protection_sharing(state: &Arc<AppState>) {
    let protection_sharing = state
        .protection_sharing
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some(sync) = protection_sharing else {
        return;
    };
    let sharing = Arc::clone(state);
    tokio::spawn(async move {
        if let Some(postgres) = sharing.store_backend.shared() {
            crate::protection::shared_state::share_periodically(
                &sharing.sender.protection,
                postgres,
                sync,
            )
            .await;
        }
    });
}

/// Deletes expired codes, forgets recipients with no recent send and messages past their
/// retention, every minute.
async fn purge_expired_periodically(state: Arc<AppState>) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        interval.tick().await;
        state.sender.protection.purge(crate::store::now_millis());
        let recipients = match state.sender.limiter.purge().await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "purging the send log failed");
                0
            }
        };
        let purged = state
            .store()
            .purge_expired_codes(crate::store::now_millis())
            .await;
        match purged {
            Ok(codes) => tracing::debug!(codes, recipients, "purged expired codes"),
            Err(error) => tracing::warn!(%error, "purging expired codes failed"),
        }
        // The message log keeps each send for --message-retention-days.
        let retention =
            i64::try_from(state.config.delivery_reports.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = crate::store::now_millis().saturating_sub(retention);
        match state.sender.tracking.log().purge_messages(cutoff).await {
            Ok(messages) => tracing::debug!(messages, "purged messages past their retention"),
            Err(error) => tracing::warn!(%error, "purging the message log failed"),
        }
    }
}

/// Ends when the listener should stop accepting: at SIGTERM or SIGINT `/ready` turns 503
/// (`draining`), then the listener keeps accepting for `--drain-grace-secs` so a load
/// balancer's next checks take this host out before connections are refused. A second
/// signal ends the grace at once.
async fn drain_on_signal(
    state: Arc<AppState>,
    mut signals: ShutdownSignals,
    stopped_accepting: Arc<std::sync::OnceLock<(std::time::Instant, usize)>>,
) {
    signals.until(1).await;
    state.readiness.start_draining();
    let grace = state.config.shutdown.drain_grace;
    tracing::info!(
        drain_grace_secs = grace.as_secs(),
        in_flight = state.request_admission.in_flight(),
        "draining: /ready answers 503, still accepting during the grace"
    );
    tokio::select! {
        () = tokio::time::sleep(grace) => {},
        () = signals.until(2) => {},
    }
    let in_flight = state.request_admission.in_flight();
    let _ = stopped_accepting.set((std::time::Instant::now(), in_flight));
    tracing::info!(
        in_flight,
        "drain grace over: no longer accepting; requests in flight finish"
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
