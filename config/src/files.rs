//! Checks that the files a loaded config names exist. Kept apart from loading, which
//! tests and the demo do with files made later; `check-config` and `run` of both
//! binaries require them ([`crate::load_agent_ready`], [`crate::load_server_ready`]),
//! so that a missing file is named once, before anything is created.

use crate::agent::AgentConfig;
use crate::error::{ConfigError, ErrorKind};
use crate::server::ServerConfig;
use std::path::Path;

/// Missing or empty files the agent needs: the till API's TLS files and token hash,
/// the sync token file and the CA file. `file` names the config file in the
/// messages. Empty when all are in place.
pub fn check_files(config: &AgentConfig, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(tls) = &config.till_api.tls {
        check(&mut errors, file, "till_api.tls.cert_file", &tls.cert_file);
        check(&mut errors, file, "till_api.tls.key_file", &tls.key_file);
    }
    if let Some(hash) = &config.till_api.token_hash_file {
        let before = errors.len();
        check(&mut errors, file, "till_api.token_hash_file", hash);
        if let Some(missing) = errors.get_mut(before) {
            missing.message.push_str(&format!(
                "; create it with `pos-agent till-token rotate --config {file}`"
            ));
        }
    }
    if let Some(sync) = &config.sync {
        check(&mut errors, file, "sync.token_file", &sync.token_file);
        if let Some(ca) = &sync.ca_file {
            check(&mut errors, file, "sync.ca_file", ca);
        }
    }
    errors
}

/// Missing or empty files the server needs: the TLS certificate and key.
/// `file` names the config file in the messages. Empty when all are in place.
pub fn check_server_files(config: &ServerConfig, file: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(tls) = &config.tls {
        check(&mut errors, file, "tls.cert_file", &tls.cert_file);
        check(&mut errors, file, "tls.key_file", &tls.key_file);
    }
    errors
}

fn check(errors: &mut Vec<ConfigError>, file: &str, key: &str, path: &Path) {
    let problem = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => "is not a regular file".to_owned(),
        Ok(meta) if meta.len() == 0 => "is empty".to_owned(),
        Ok(_) => return,
        Err(e) => format!("cannot be read: {e}"),
    };
    errors.push(ConfigError {
        file: file.to_owned(),
        line: None,
        key: Some(key.to_owned()),
        message: format!("{key}: {} {problem}", path.display()),
        kind: ErrorKind::MissingFile,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::SyncSection;

    fn sync(token: &Path, ca: Option<&Path>) -> AgentConfig {
        AgentConfig {
            sync: Some(SyncSection {
                url: "https://hq.example".into(),
                token_file: token.to_path_buf(),
                ca_file: ca.map(Path::to_path_buf),
                interval_secs: 5,
                batch_size: 500,
                max_backoff_secs: 60,
                live_balance_timeout_ms: 800,
                request_timeout_secs: 30,
            }),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn missing_and_empty_files_are_reported_with_their_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("terminal.token");
        std::fs::write(&token, "").expect("write token");
        let errors = check_files(
            &sync(&token, Some(&dir.path().join("ca.pem"))),
            "agent.toml",
        );
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_deref()).collect();
        assert_eq!(keys, [Some("sync.token_file"), Some("sync.ca_file")]);
        assert!(errors[0].message.ends_with("is empty"), "{}", errors[0]);
        assert!(errors.iter().all(|e| e.kind == ErrorKind::MissingFile));
    }

    #[test]
    fn present_files_pass() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("terminal.token");
        std::fs::write(&token, "secret\n").expect("write token");
        assert!(check_files(&sync(&token, None), "agent.toml").is_empty());
        assert!(check_files(&AgentConfig::default(), "agent.toml").is_empty());
    }
}
