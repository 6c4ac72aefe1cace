//! `pos-agent` entry point: parse the command line and hand over.

use clap::Parser;

fn main() -> std::process::ExitCode {
    agent::cli::main(agent::cli::Cli::parse())
}
