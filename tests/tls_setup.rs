//! HTTPS between a till and HQ as a pilot sets it up: `sync-server tls init` makes
//! files a real HQ serves and a real agent syncs over, and the self-signed
//! certificate of the usual openssl one-liner is refused with its cause and fix named.

#![allow(clippy::unwrap_used)]

use e2e::agent::enrolled;
use e2e::server::Server;
use e2e::{bin, temp_dir, wait_for};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const CARD: &str = "4006381333931";

fn tls_init(out: &Path, extra: &[&str]) -> Output {
    Command::new(bin("sync-server"))
        .args([
            "tls",
            "init",
            "--host",
            "127.0.0.1",
            "--host",
            "localhost",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn tls_config(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn tls_init_output_serves_hq_and_an_agent_syncs_over_it() {
    let dir = temp_dir();
    let pki = dir.path().join("pki");
    let made = tls_init(&pki, &[]);
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(
        stdout.contains("ca_file") && stdout.contains("cert_file"),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join("server-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A second run would replace the CA every agent trusts: refused, nothing changed.
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    let again = tls_init(&pki, &[]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(pki.join("ca.pem")).unwrap(), ca);

    let server = Server::start(
        &dir.path().join("hq"),
        &tls_config(&pki.join("server.pem"), &pki.join("server-key.pem")),
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let agent = enrolled(
        &dir.path().join("agent"),
        &server,
        "store-1",
        "till-1",
        &format!("ca_file = \"{}\"\n", pki.join("ca.pem").display()),
    );
    agent.sell("T-1", Some(CARD), 20_000, 0);
    agent.wait_synced();
    let card = server.admin_ok(&["card", "show", CARD]);
    let balance = card
        .lines()
        .find_map(|l| l.strip_prefix("balance"))
        .map(str::trim);
    assert_eq!(balance, Some("10"), "{card}");
    server.assert_verify();
}

#[test]
fn a_self_signed_hq_certificate_is_refused_with_its_cause_and_fix_named() {
    let dir = temp_dir();
    let openssl_like = e2e::tls::self_signed(dir.path(), "hq");
    let server = Server::start(
        &dir.path().join("hq"),
        &tls_config(&openssl_like.cert, &openssl_like.key),
    );
    let agent = enrolled(
        &dir.path().join("agent"),
        &server,
        "store-1",
        "till-1",
        &format!("ca_file = \"{}\"\n", openssl_like.ca.display()),
    );
    // A card lookup goes to HQ with the card in its URL: the error must not carry it.
    agent.card(CARD);
    agent.sell("T-1", Some(CARD), 20_000, 0);
    let error = wait_for(Duration::from_secs(30), "the certificate refusal", || {
        let h = agent.health();
        let err = h["last_sync_error"].as_str().unwrap_or("").to_owned();
        (h["online"] == false && err.contains("CaUsedAsEndEntity")).then_some(err)
    });
    assert!(error.contains("sync-server tls init --host"), "{error}");
    assert!(error.contains("[sync] ca_file"), "{error}");
    assert!(!error.contains(CARD), "{error}");
    let log = agent.log();
    assert!(log.contains("sync-server tls init"), "{log}");
    assert!(!log.contains(CARD), "{log}");
    assert_eq!(agent.health()["queue_depth"], 1);
}
