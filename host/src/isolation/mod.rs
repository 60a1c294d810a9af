//! Plugin isolation (`--plugin-isolation process`): each loaded plugin build runs in worker
//! processes of its own, so a plugin that segfaults, aborts, loops, allocates without bound
//! or tries to open a file, a socket, a thread or a program takes down only its worker, never
//! the host. The default stays in-process: the fastest path, abi_stable's own.
//!
//! Plugins are sans-IO, so a worker needs nothing but its pipes and memory: after loading the
//! library it locks itself down with seccomp, and everything a step does is computed from
//! what the call carries. That is also what makes a replay safe: a worker that died during a
//! step is replaced and the same step computed again, while the host alone performs requests
//! (a send is never restarted from its first step once a request went out).
//!
//! # Layout
//! - [`protocol`]: the frames between host and worker (length-prefixed postcard).
//! - [`worker`]: `connector-host plugin-worker`, the worker process's main.
//! - [`sandbox`]: the worker's resource limits, parent-death signal and seccomp filter.
//! - [`pool`]: the host's workers per build: calls with a deadline, replacement with
//!   backoff, replay once, health.

pub mod pool;
pub mod protocol;
pub mod sandbox;
pub mod worker;

/// `--plugin-isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginIsolation {
    /// Plugins are loaded into the host process (the default).
    #[default]
    InProcess,
    /// Each plugin build runs in sandboxed worker processes.
    Process,
}

impl PluginIsolation {
    pub fn label(self) -> &'static str {
        match self {
            PluginIsolation::InProcess => "in-process",
            PluginIsolation::Process => "process",
        }
    }
}
