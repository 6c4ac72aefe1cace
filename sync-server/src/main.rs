//! `sync-server` binary: parses the command line and hands it to
//! [`sync_server::cli::run`]. Everything else lives in the library.

use anyhow::Context;
use std::process::ExitCode;
use sync_server::cli::{self, Cli};
use sync_server::store::postgres::retry::describe;

fn main() -> ExitCode {
    // clap's own refusals quote what was typed; these mask card numbers in them.
    let args: Cli = config::command_line::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sync-server: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            // The error and its causes, each once (most messages already quote their
            // cause, which `{:#}` would print a second time).
            eprintln!("sync-server: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}
