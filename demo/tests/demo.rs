//! The demo, run as a newcomer runs it: `loyalty-demo` itself, and `pos-agent demo`
//! where both programs sit side by side (as `cargo build --workspace` leaves them).

use std::path::PathBuf;
use std::process::{Command, Output};

fn loyalty_demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loyalty-demo"))
}

/// `pos-agent` beside `loyalty-demo` in the target directory.
fn pos_agent_beside_the_demo() -> PathBuf {
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_loyalty-demo"));
    let agent = demo.with_file_name(format!("pos-agent{}", std::env::consts::EXE_SUFFIX));
    assert!(
        agent.is_file(),
        "{} not found: build the workspace first (`cargo test --workspace` does)",
        agent.display()
    );
    agent
}

fn assert_the_whole_story(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "scan event {symbology: \"qr\"",
        "refused as a replay",
        "offline_card_daily_cap",
        "sync queue:   0 entries left",
        "every balance matches its ledger",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("4006381333931"),
        "a full card number was printed:\n{stdout}"
    );
    let dir = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("Done in ")
                .and_then(|r| r.split("Removing ").nth(1))
        })
        .map(|d| d.trim_end_matches('.').to_owned())
        .unwrap_or_else(|| panic!("no \"Done in … Removing DIR.\" line in:\n{stdout}"));
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was left behind"
    );
}

#[test]
fn demo_tells_the_whole_story_passes_verify_and_removes_its_files() {
    assert_the_whole_story(&loyalty_demo().output().unwrap());
}

#[test]
fn pos_agent_demo_runs_the_demo_beside_it() {
    let out = Command::new(pos_agent_beside_the_demo())
        .arg("demo")
        .output()
        .unwrap();
    assert_the_whole_story(&out);
}
