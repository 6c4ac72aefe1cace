//! `pos-agent demo`: the demonstration is its own program, `loyalty-demo`, because it
//! embeds a whole HQ (`sync-server`) that the till binary must not carry. When that
//! program sits beside `pos-agent` (as after `cargo build --workspace`, or in a
//! release bundle) this command runs it in place of itself; otherwise it says how to
//! run the demo.

use anyhow::{Context, bail};
use std::process::Command;

/// The demo program's name.
pub const DEMO_PROGRAM: &str = "loyalty-demo";

/// The one command that runs the demo from the source tree.
pub const DEMO_COMMAND: &str = "cargo run --release -p loyalty-demo";

/// Runs `loyalty-demo` from beside this executable, or fails saying how to run it.
pub fn run() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding where pos-agent is installed")?;
    let demo = exe.with_file_name(format!("{DEMO_PROGRAM}{}", std::env::consts::EXE_SUFFIX));
    if !demo.is_file() {
        bail!(
            "the demo is a separate program, {DEMO_PROGRAM}, and it is not installed beside {}; \
             from the source tree, run it with `{DEMO_COMMAND}`",
            exe.display()
        );
    }
    run_in_place(Command::new(&demo)).with_context(|| format!("running {}", demo.display()))
}

/// Replaces this process with `command`, so the demo's output, signals and exit code
/// are the command's own. Returns only when it could not start.
#[cfg(unix)]
fn run_in_place(mut command: Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    Err(command.exec().into())
}

/// Runs `command` and exits with its code (no `exec` outside Unix).
#[cfg(not(unix))]
fn run_in_place(mut command: Command) -> anyhow::Result<()> {
    let status = command.status()?;
    std::process::exit(status.code().unwrap_or(1));
}
