//! Checks of `sync-server.toml` values: listen address and plain HTTP, database URL,
//! TLS files, ledger job settings, body limit, logging.

use super::{KIB, MIB, Problems};
use crate::server::{DatabaseUrl, ServerConfig};

/// Every problem of a server configuration.
pub(crate) fn check_server(config: &ServerConfig) -> Problems {
    let mut problems = Problems::default();
    problems.listen_port("listen", config.listen);
    if config.tls.is_none() && !config.allow_plain_http && !config.listen.ip().is_loopback() {
        problems.add(
            "listen",
            format!(
                "{} is not a loopback address and there is no [tls] table: terminal \
                 tokens and balances would cross the network unencrypted; add [tls] \
                 with cert_file and key_file, or set allow_plain_http = true when a \
                 TLS-terminating proxy sits in front",
                config.listen
            ),
        );
    }
    if let Some(url) = &config.database
        && let Err(why) = DatabaseUrl::parse(url.trim())
    {
        problems.add("database", why);
    }
    if let Some(tls) = &config.tls {
        problems.non_empty_path("tls.cert_file", &tls.cert_file);
        problems.non_empty_path("tls.key_file", &tls.key_file);
    }
    problems.range(
        "max_body_bytes",
        config.max_body_bytes,
        KIB,
        1024 * MIB,
        " bytes (1 KiB to 1 GiB)",
    );
    problems.connections("", config.max_connections, config.header_timeout_secs);
    let ledger = &config.ledger;
    problems.range(
        "ledger.job_interval_secs",
        ledger.job_interval_secs,
        1,
        86_400,
        " seconds",
    );
    problems.range(
        "ledger.key_grace_days",
        ledger.key_grace_days,
        0,
        3_650,
        " days",
    );
    problems.range(
        "ledger.pull_page_size",
        ledger.pull_page_size,
        1,
        100_000,
        " entries",
    );
    if let Some(admin) = &config.admin {
        if !admin.password_hash.starts_with("$argon2") {
            problems.add(
                "admin.password_hash",
                "must be an Argon2 hash ($argon2id$...) as `sync-server admin hash-password` \
                 prints it, never the password itself"
                    .to_owned(),
            );
        }
        problems.range(
            "admin.session_minutes",
            admin.session_minutes,
            1,
            10_080,
            " minutes (up to a week)",
        );
    }
    problems.range("ledger.lease_hours", ledger.lease_hours, 1, 720, " hours");
    problems.range(
        "ledger.reservation_abandon_hours",
        ledger.reservation_abandon_hours,
        1,
        8_760,
        " hours",
    );
    problems.range(
        "ledger.lease_abandon_hours",
        ledger.lease_abandon_hours,
        1,
        8_760,
        " hours",
    );
    problems.log(&config.log);
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(config: &ServerConfig) -> Vec<String> {
        check_server(config)
            .0
            .iter()
            .map(|p| p.key.to_string())
            .collect()
    }

    #[test]
    fn defaults_have_no_problems() {
        assert!(keys(&ServerConfig::default()).is_empty());
    }

    #[test]
    fn plain_http_off_loopback_needs_tls_or_explicit_permission() {
        let mut config = ServerConfig {
            listen: "0.0.0.0:8443".parse().expect("literal address"),
            ..ServerConfig::default()
        };
        assert_eq!(keys(&config), ["listen"]);
        config.allow_plain_http = true;
        assert!(keys(&config).is_empty());
    }

    #[test]
    fn bad_database_url_and_ledger_bounds_are_reported() {
        let mut config = ServerConfig {
            database: Some("mysql://hq".into()),
            ..ServerConfig::default()
        };
        config.ledger.job_interval_secs = 0;
        config.ledger.pull_page_size = 100_001;
        assert_eq!(
            keys(&config),
            [
                "database",
                "ledger.job_interval_secs",
                "ledger.pull_page_size"
            ]
        );
    }

    #[test]
    fn an_admin_password_must_be_a_hash_and_sessions_bounded() {
        let mut config = ServerConfig {
            admin: Some(crate::server::AdminSection {
                password_hash: "hunter2".into(),
                session_minutes: 0,
            }),
            ..ServerConfig::default()
        };
        assert_eq!(
            keys(&config),
            ["admin.password_hash", "admin.session_minutes"]
        );
        config.admin = Some(crate::server::AdminSection {
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            session_minutes: 480,
        });
        assert!(keys(&config).is_empty());
    }
}
