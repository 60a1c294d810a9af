//! The accept loop and each connection's HTTP/1 server.
//!
//! `axum::serve` offers neither hyper's header read timeout nor a cap on connections, and it
//! sleeps a whole second after an accept error; this is the same loop (hyper's HTTP/1
//! connection, hyper-util's tokio glue, the router as the service) with those three added,
//! and the socket wrapped to bound stalled response writes ([`ClientStream`]).
//!
//! What one connection can queue, however many requests its client pipelines: hyper serves
//! them one at a time (the next head is parsed only once the previous response is wholly
//! buffered), reads ahead at most [`HTTP1_BUFFER_BYTES`] (the rest waits in the kernel's
//! socket buffer, and then in the client's), and buffers at most about as much of a response
//! before it waits for the socket (plus the one body chunk in hand). `pipeline_flush` stays
//! off: with it hyper buffers responses without that bound.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use super::client_stream::{ClientStream, ResponseWriteStalled};
use super::connection_slots::{ConnectionSlot, ConnectionSlots};
use super::limits::HttpLimits;
use super::request_log::ClientAddress;

/// hyper's read buffer (a request head must fit; bodies stream through it) and the bound on
/// its write buffer, per connection. hyper's default is about 400 KiB each; API bodies are
/// at most 64 KiB and heads a few KiB.
const HTTP1_BUFFER_BYTES: usize = 64 * 1024;

/// After an accept error other than a vanished peer (out of descriptors, `EMFILE`; out of
/// memory): long enough not to spin, short enough that the backlog barely notices. Closing
/// connections (header read timeouts) frees descriptors meanwhile.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// One log line per this long at most while accept keeps failing.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// At most this many connections at once while the host starts: only checks and probes come
/// then, each answered at once.
const STARTING_CONNECTIONS: usize = 64;

/// While the host starts (waiting for its database): answers on `listener` with `router`
/// (`/health`, `/ready` 503 and a 503 for the rest) until `starting` resolves, and returns
/// its output; the listener stays open for [`serve_connections`]. One request per connection
/// (no keep-alive), with the header read timeout; past [`STARTING_CONNECTIONS`] a connection
/// is closed at once.
pub async fn answer_while<T>(
    listener: &TcpListener,
    router: Router,
    limits: &HttpLimits,
    starting: impl Future<Output = T>,
) -> T {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HTTP1_BUFFER_BYTES)
        .keep_alive(false);
    let http = Arc::new(http);
    let connections = Arc::new(tokio::sync::Semaphore::new(STARTING_CONNECTIONS));
    let mut starting = std::pin::pin!(starting);
    let mut accept_errors = AcceptErrorLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            done = &mut starting => return done,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                accept_errors.pause_after(error).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (router, http) = (router.clone(), Arc::clone(&http));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                router.clone().oneshot(request)
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(permit);
        });
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests (at most `grace`) and returns.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()> {
    let slots = ConnectionSlots::new(limits.max_connections);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HTTP1_BUFFER_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    let (shutting_down, shutdown_receiver) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = AcceptErrorLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                accept_errors.pause_after(error).await;
                continue;
            }
        };
        let Some(slot) = slots.admit().await else {
            // Full of connections whose requests the host is working on: closed at once, so
            // the client learns now rather than after a timeout, and the backlog keeps moving.
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let task = tokio::spawn(serve_connection(
            stream,
            peer,
            Arc::clone(&slot),
            router.clone(),
            Arc::clone(&http),
            limits.response_write_timeout,
            shutdown_receiver.clone(),
        ));
        slot.evictable_through(task.abort_handle());
    }
    drop(listener);
    let _ = shutting_down.send(true);
    if !slots.all_closed_within(grace).await {
        tracing::warn!(
            open = slots.open(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<ConnectionSlot>,
    router: Router,
    http: Arc<http1::Builder>,
    response_write_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = {
        let slot = Arc::clone(&slot);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            slot.request_started();
            request.extensions_mut().insert(ClientAddress(peer));
            let answer = router.clone().oneshot(request);
            let slot = Arc::clone(&slot);
            async move {
                let response = answer.await;
                slot.request_answered();
                response
            }
        })
    };
    let stream = ClientStream::new(stream, Arc::clone(&slot), response_write_timeout);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut closing = *shutdown.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    if error.is_timeout() {
                        // The head did not arrive in time (a slow or idle client).
                        metrics::counter!("http_timeouts_total", "kind" => "head").increment(1);
                    } else if ResponseWriteStalled::caused(&error) {
                        // The client stopped taking its response.
                        metrics::counter!("http_timeouts_total", "kind" => "write").increment(1);
                        tracing::debug!(%error, "connection closed: response write stalled");
                    } else {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                break;
            }
            // Also when the sender is gone: then the server is going away too.
            _ = shutdown.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}

/// Accept errors: a peer that vanished before accept is nothing; anything else (`EMFILE`,
/// `ENFILE`, `ENOMEM`) pauses the loop briefly and is logged at most every few seconds.
#[derive(Default)]
struct AcceptErrorLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrorLog {
    async fn pause_after(&mut self, error: io::Error) {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
        ) {
            return;
        }
        metrics::counter!("http_accept_errors_total").increment(1);
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|logged| logged.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL)
        {
            tracing::error!(%error, errors = self.unlogged, "cannot accept connections; pausing briefly");
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
    }
}
