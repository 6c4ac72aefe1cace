//! The till API beyond loopback: TLS and the till token, or no start at all; on
//! loopback nothing changes.

use e2e::agent::{Agent, run_refused_on, sale_body};
use e2e::{bin, http, tls};
use reqwest::Method;
use std::path::Path;
use std::process::Command;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// `pos-agent till-token rotate --config DIR/agent.toml`: the printed token.
fn rotate(dir: &Path) -> String {
    let out = Command::new(bin("pos-agent"))
        .args(["till-token", "rotate", "--config"])
        .arg(dir.join("agent.toml"))
        .output()
        .expect("run pos-agent till-token rotate");
    assert!(
        out.status.success(),
        "rotate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).expect("UTF-8 token");
    let token = token.trim().to_owned();
    assert_eq!(token.len(), 43, "256 bits in URL-safe base64: {token}");
    token
}

/// A standalone config exposing the till API on the store network with `pki`'s
/// certificate and a till token.
fn remote_config(pki: &tls::Pki) -> String {
    format!(
        "{}[till_api]\nlisten = \"0.0.0.0:7070\"\ntoken_hash_file = \"till-token.sha256\"\n\
         [till_api.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        Agent::standalone_config(),
        pki.cert.display(),
        pki.key.display()
    )
}

#[test]
fn loopback_default_needs_no_token_and_no_tls() {
    let dir = temp_dir();
    let agent = Agent::start(dir.path(), &Agent::standalone_config());
    assert!(
        agent.base.starts_with("http://127.0.0.1:"),
        "{}",
        agent.base
    );
    let health = agent.get("/v1/health");
    assert_eq!(health.status, 200, "{}", health.text);
    let (hold, commit) = agent.sell("L-1", Some("4006381333931"), 1_000, 0);
    assert_eq!((hold.status, commit.status), (200, 200), "{}", commit.text);
}

#[test]
fn a_non_loopback_listen_without_tls_and_token_refuses_to_start() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("agent.toml"), Agent::standalone_config()).unwrap();
    // The address comes from the command line here, past the config's own check.
    let err = run_refused_on(dir.path(), "0.0.0.0:0");
    assert!(err.contains("needs TLS and a till token"), "{err}");
    assert!(err.contains("till-token rotate"), "{err}");
    assert!(
        !dir.path().join("journal.db").exists(),
        "nothing is created before the refusal"
    );

    // A token without TLS is refused as well, naming what is missing.
    let config = format!(
        "{}[till_api]\nlisten = \"0.0.0.0:7070\"\ntoken_hash_file = \"till-token.sha256\"\n",
        Agent::standalone_config()
    );
    std::fs::write(dir.path().join("agent.toml"), config).unwrap();
    let err = run_refused_on(dir.path(), "0.0.0.0:0");
    assert!(err.contains("[till_api.tls]"), "{err}");
}

#[test]
fn a_remote_till_api_answers_over_tls_only_with_the_current_token() {
    let dir = temp_dir();
    let pki = tls::generate(dir.path(), "till");
    let ca = std::fs::read_to_string(&pki.ca).unwrap();
    std::fs::write(dir.path().join("agent.toml"), remote_config(&pki)).unwrap();
    // Without a token hash yet, the agent says how to make one.
    let err = run_refused_on(dir.path(), "0.0.0.0:0");
    assert!(err.contains("till-token rotate"), "{err}");

    let token = rotate(dir.path());
    let hash = std::fs::read_to_string(dir.path().join("till-token.sha256")).unwrap();
    assert!(
        hash.starts_with("sha256:") && !hash.contains(&token),
        "{hash}"
    );
    let agent = Agent::start_listening(dir.path(), &remote_config(&pki), "0.0.0.0:0");
    assert!(agent.base.starts_with("http://0.0.0.0:"), "{}", agent.base);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", agent.port());
    let get = |token: Option<&str>| http::https(Method::GET, &url("/v1/health"), &ca, token, None);

    for (presented, what) in [(None, "missing"), (Some("not-the-token"), "wrong")] {
        let refused = get(presented);
        assert_eq!(refused.status, 401, "{what}: {}", refused.text);
        assert_eq!(refused.code(), "unauthorized", "{what}: {}", refused.text);
        assert!(
            refused.body["error"]["message"].is_string(),
            "{}",
            refused.text
        );
    }
    // A refused sale records nothing; the same sale with the token goes through.
    let sale = sale_body("R-1", Some("4006381333931"), 1_000, 0);
    let refused = http::https(Method::POST, &url("/v1/sales"), &ca, None, Some(&sale));
    assert_eq!(refused.status, 401, "{}", refused.text);
    let held = http::https(
        Method::POST,
        &url("/v1/sales"),
        &ca,
        Some(&token),
        Some(&sale),
    );
    assert_eq!(held.status, 200, "{}", held.text);
    assert_eq!(get(Some(&token)).status, 200);
    assert!(
        !http::reachable(&format!("http://127.0.0.1:{}/v1/health", agent.port())),
        "plain HTTP is not served"
    );
    assert!(!agent.log().contains(&token), "the token is never logged");

    // Rotation: the running agent takes the new token and refuses the old one.
    let rotated = rotate(dir.path());
    assert_ne!(rotated, token);
    assert_eq!(get(Some(&token)).status, 401);
    assert_eq!(get(Some(&rotated)).status, 200);
}
