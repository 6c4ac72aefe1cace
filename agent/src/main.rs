//! `pos-agent` entry point: parse the command line and hand over.

fn main() -> std::process::ExitCode {
    // clap's own refusals quote what was typed; this masks card numbers in them.
    agent::cli::main(config::command_line::parse())
}
