//! The `pos-agent` command line (also makes `cargo test` build the binary that the
//! end-to-end tests in `tests/` start).

use std::process::Command;

fn pos_agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pos-agent"))
}

#[test]
fn check_config_accepts_the_example_file() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples/agent.toml");
    let out = pos_agent()
        .args(["check-config", example])
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
