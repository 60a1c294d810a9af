//! The `connector-host` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    connector_host::cli::run(connector_host::cli::Cli::parse())
}
