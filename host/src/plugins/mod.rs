//! Plugin files to connector factories: from one `.so` in the plugins folder to the factories
//! the routes list, and back to the folder when an operator drops, upgrades or removes one.
//!
//! # Layout
//! - [`loader`]: one file to a loaded module (one read, ELF preflight, signature check,
//!   private content-addressed copy, dlopen through abi_stable's per-file API, metadata
//!   checks).
//! - [`module`]: a loaded build and its connectors as the host calls them, in-process or in
//!   worker processes ([`crate::isolation`]).
//! - [`folder_file`]: reads a plugin or signature file without ever blocking (regular files
//!   only, opened non-blocking, checked with `fstat`, size-capped).
//! - [`signature`]: minisign public keys and the check of a file's `.minisig`.
//! - [`load_error`]: every way a file is refused, one line each.
//! - [`factory_registry`]: the factories by id and a report per file, swapped whole.
//! - [`config_migration`]: a saved config and a build that may have to migrate it first.
//! - [`folder`]: reconciles the folder with what is loaded (drop-in, upgrade, removal, trust);
//!   [`crate::live::plugin_watcher`] notices folder changes and runs it.

pub mod config_migration;
pub mod factory_registry;
pub mod folder;
pub mod folder_file;
pub mod load_error;
pub mod loader;
pub mod module;
pub mod signature;
