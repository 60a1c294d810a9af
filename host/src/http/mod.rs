//! The HTTP edge under hostile and heavy load: every connection and request bounded in time,
//! every queue bounded in size.
//!
//! - [`limits`]: the flags (`--header-read-timeout-secs`, `--max-in-flight`, ...) and the
//!   limits they resolve to, with defaults derived from the descriptor limit.
//! - [`descriptors`]: raises the soft `RLIMIT_NOFILE` to the hard limit at start-up.
//! - [`connection_slots`]: at most `--max-connections` open; a full table makes room by
//!   closing the connection that has waited on its client longest (slowloris, idle, slow
//!   reader), never one whose request the host is working on; else refuses.
//! - [`client_stream`]: the socket, with `--response-write-timeout-secs` on writes the
//!   client takes nothing of; tells the connection's slot when the client reads.
//! - [`listener`]: the accept loop (hyper's HTTP/1 server with its header read timeout and
//!   bounded buffers; accept errors pause briefly and never end it) and graceful shutdown;
//!   and the loop that answers while the host starts.
//! - [`request_admission`]: the API routes' gate: `503 server.overloaded` past
//!   `--max-in-flight`, the body read deadline (`408`), the whole-request deadline (`503`),
//!   and the handler run to its end even when the client is gone.
//! - [`request_log`]: every request counted by route template and status, the optional
//!   access log, and 401/403/429 and the store unavailable logged without flooding.
//!
//! Their `408` and `503` answers are in the OpenAPI document with every other failure
//! (`crate::api_contract`).

pub mod client_stream;
pub mod connection_slots;
pub mod descriptors;
pub mod limits;
pub mod listener;
pub mod request_admission;
pub mod request_log;

pub use limits::{HttpLimits, LimitArgs};
pub use listener::serve_connections;
pub use request_admission::RequestAdmission;
