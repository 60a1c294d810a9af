//! No core dumps from `serve`: a dump holds what the process holds in memory (the secrets key,
//! the code-hash key, API keys, decrypted provider credentials) and would land wherever the
//! system's `core_pattern` says. At start-up `serve` sets `RLIMIT_CORE` to 0 (soft and hard)
//! and marks itself non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`), which also keeps processes of
//! the same user from attaching with ptrace or reading its `/proc/<pid>/mem` and `environ`.
//! `--allow-core-dumps` leaves both as they are, for debugging.

use rustix::process::{set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit};

/// Why `serve` cannot turn core dumps off; one line each.
#[derive(Debug, thiserror::Error)]
pub enum CoreDumpError {
    #[error("cannot set RLIMIT_CORE to 0: {0}; pass --allow-core-dumps to start anyway")]
    CoreLimit(rustix::io::Errno),
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {0}; pass --allow-core-dumps to start anyway")]
    NotDumpable(rustix::io::Errno),
}

/// Disables core dumps and ptrace attach by the same user.
pub fn disable_core_dumps() -> Result<(), CoreDumpError> {
    let no_core = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, no_core).map_err(CoreDumpError::CoreLimit)?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(CoreDumpError::NotDumpable)
}
