//! # connector-host
//!
//! Loads SMS connector plugins (shared libraries built on `plugin-api`), keeps one SMS
//! connector live and serves Logto's connector API over HTTP.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `check`); the binary only calls [`cli::run`].
//! - [`plugin_loader`]: turns one plugin file into a loaded [`plugin_api::ConnectorModule`]:
//!   private content-addressed copy, dlopen through abi_stable's per-file API, metadata checks.
//! - [`load_error`]: every way a plugin file can be refused, each a one-line message.
//! - [`factory_registry`]: the connector factories the loaded plugins provide, by factory id.
//! - [`server`]: application state, the router and the listener.
//! - [`api_error`]: the one error type at the HTTP edge, and the JSON extractor sharing it.
//! - [`routes`]: one module per resource of the HTTP API.

pub mod api_error;
pub mod cli;
pub mod factory_registry;
pub mod load_error;
pub mod plugin_loader;
pub mod routes;
pub mod server;
