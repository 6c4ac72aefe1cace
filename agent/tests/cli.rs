//! The `pos-agent` command line (also makes `cargo test` build the binary that the
//! end-to-end tests in `tests/` start).

// clippy.toml allows unwrap inside #[test] functions only; the fixtures here are
// test code too.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn pos_agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pos-agent"))
}

/// The example config copied into `dir`, with the token and CA files it names when
/// `with_files`.
fn example_in(dir: &std::path::Path, with_files: bool) -> std::path::PathBuf {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples/agent.toml");
    let file = dir.join("agent.toml");
    std::fs::copy(example, &file).unwrap();
    if with_files {
        std::fs::write(dir.join("terminal.token"), "token\n").unwrap();
        std::fs::write(dir.join("hq-ca.pem"), "not checked here\n").unwrap();
    }
    file
}

#[test]
fn check_config_accepts_the_example_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = pos_agent()
        .arg("check-config")
        .arg(example_in(dir.path(), true))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn a_missing_token_file_is_named_once_by_check_config_and_by_run_before_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_in(dir.path(), false);
    let out = pos_agent().arg("check-config").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sync.token_file") && text.contains("sync.ca_file"),
        "{text}"
    );

    let out = pos_agent()
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("terminal.token").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 2, "{stderr}");
    assert!(!dir.path().join("journal.db").exists());
}

#[test]
fn check_config_refuses_a_bad_file_naming_its_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "[store]\nstore_id = \"s\"\nterminal_idd = \"t\"\n").unwrap();
    let out = pos_agent().arg("check-config").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("agent.toml:3: unknown key 'terminal_idd'"),
        "{text}"
    );
}

#[test]
fn run_refuses_an_invalid_config_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[till_api]\nlisten = \"0.0.0.0:7070\"\n[journal]\npath = \"j.db\"\n",
    )
    .unwrap();
    let out = pos_agent()
        .arg("run")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    assert!(!dir.path().join("j.db").exists());
}

#[test]
fn demo_without_loyalty_demo_beside_it_says_how_to_run_it() {
    // A copy of pos-agent alone in a directory, as on a till.
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("pos-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_pos-agent"), &alone).unwrap();
    let out = Command::new(&alone).arg("demo").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loyalty-demo") && stderr.contains("cargo run --release -p loyalty-demo"),
        "{stderr}"
    );
}
