//! # connector-host
//!
//! Loads SMS connector plugins (shared libraries built on `plugin-api`), keeps one SMS
//! connector live and serves Logto's connector API over HTTP.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `config show`, `check`, `rotate-secrets-key`,
//!   `new-connector`); the binary only calls [`cli::main`]; `cli::config_file`: `serve`'s
//!   flags from a TOML file (`--config`).
//! - [`plugins`]: plugin files to connector factories: [`plugins::loader`] (one file to a
//!   loaded [`plugins::module::PluginModule`]: private content-addressed copy, dlopen through
//!   abi_stable's per-file API, metadata checks), [`plugins::signature`] (minisign keys and
//!   the check over the bytes that are loaded), [`plugins::load_error`] (every way a file is
//!   refused, one line each), [`plugins::factory_registry`] (the factories by id and a
//!   report per file), [`plugins::folder`] (reconciles the folder with what is loaded:
//!   drop-in, upgrade moving the live connector, removal, trust).
//! - [`isolation`]: `--plugin-isolation process`: each build in sandboxed worker processes
//!   (`connector-host plugin-worker`, seccomp), a pool per build, calls with a deadline and
//!   one replay on a fresh worker.
//! - [`store`]: the store boundary ([`store::Store`]: saved connectors and verification
//!   codes, async), [`store::sqlite`] (the embedded default in the data directory),
//!   [`store::postgres`] (several hosts), configs sealed at rest ([`store::secrets_keyring`])
//!   and the key rotation ([`store::key_rotation`]).
//! - [`log_output`]: log formats (text, JSON) and the escaping that keeps one event on one
//!   line whatever a client or plugin put in a value; [`log_writer`]: lines written in
//!   batches by one background thread; [`log_dedup`]: repeated identical lines collapsed.
//! - [`live`]: everything that changes which connector is live: [`live::live_connector`] (the
//!   one live SMS connector and the [`live::live_connector::LiveSlot`] that alone swaps it),
//!   [`live::lifecycle`] (connectors created, updated, enabled, deleted),
//!   [`live::plugin_watcher`] (inotify or polling, then the reconcile) and
//!   [`live::store_follower`] (with a store several hosts share, other hosts' changes,
//!   LISTEN/NOTIFY with a one-second poll as the fallback).
//! - [`send`]: one send as every route does it, through the [`send::Sender`]: country
//!   allowlist, per-recipient limit and resend cooldown ([`send::flow_control`]), then the
//!   connector through [`send::executor`] (the HTTP requests connectors describe; development
//!   connectors' messages to the host's own file, [`send::outbox`]) within
//!   [`send::vendor_concurrency`], with one log line and metrics ([`send::metrics`]);
//!   verification codes issued and checked ([`send::verification_codes`]) and unsaved
//!   configs tested ([`send::config_test`]). Refusals are a [`send::SendError`]; the HTTP
//!   edge ([`api_error`]) decides their status.
//! - [`secrets`]: masking of confidential config values, and the masked round trip.
//! - [`api_keys`]: admin and send keys, compared in constant time.
//! - [`phone`]: phone number validation and E.164 normalization.
//! - [`verification_code`]: six-digit codes from the OS CSPRNG, their keyed hash, their policy.
//! - [`telemetry`]: the Prometheus recorder and its upkeep, every metric's HELP text, the
//!   series known in advance registered at zero, and `build_info`.
//! - [`server`]: the router (with key checks), the listener and the drain at shutdown.
//! - [`readiness`]: `/ready` apart from `/health` (what a load balancer checks), and the
//!   drain settings.
//! - [`state`]: the application state the routes share, what `serve` is configured with, and
//!   start-up (data directory, keys, plugins folder, store, the live connector restored).
//! - [`http`]: the limits at the HTTP edge: the accept loop with a cap on connections and
//!   hyper's header read timeout, the descriptor limit, load shedding and request deadlines.
//! - [`durations`]: durations in answers as whole seconds.
//! - [`data_directory`]: the data directory and its files kept private (0700, 0600).
//! - [`console`]: the admin console, a single page embedded in the binary, and the sanitized
//!   README route it uses.
//! - [`api_doc`]: the OpenAPI document, generated from the handlers (utoipa).
//! - [`api_contract`]: what utoipa cannot derive: each operation's error responses (from
//!   [`api_error::ApiError`]), links, Logto's usage types.
//! - [`api_error`]: the one error type at the HTTP edge, and the JSON extractor sharing it.
//! - [`request_fields`]: the rules of request-body fields serde's derive cannot state.
//! - [`routes`]: one module per resource of the HTTP API.
//! - [`scaffold`]: `new-connector`, a vendor crate from embedded templates.

pub mod api_contract;
pub mod api_doc;
pub mod api_error;
pub mod api_keys;
pub mod cli;
pub mod console;
pub mod core_dumps;
pub mod data_directory;
pub mod durations;
pub mod http;
pub mod isolation;
pub mod live;
pub mod log_dedup;
pub mod log_output;
pub mod log_writer;
pub mod phone;
pub mod plugins;
pub mod protection;
pub mod readiness;
pub mod request_fields;
pub mod routes;
pub mod scaffold;
pub mod secret_redaction;
pub mod secrets;
pub mod send;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod verification_code;
