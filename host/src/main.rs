//! The `connector-host` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a send allocates and frees on both worker threads,
/// where glibc's arenas cost about twice as much CPU. Plugins keep their own allocator (what
/// crosses the boundary is freed by the side that allocated it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    connector_host::cli::main()
}
