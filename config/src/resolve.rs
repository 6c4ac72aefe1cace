//! Relative paths in a config file mean "next to this file": journal, token, CA,
//! TLS files and the SQLite database are joined to the file's directory, so the
//! binaries behave the same whatever directory they are started from.

use crate::agent::AgentConfig;
use crate::server::{DatabaseUrl, ServerConfig};
use std::path::{Path, PathBuf};

/// `base.join(path)` for a relative path; absolute paths are kept.
fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// Resolves the agent's file paths against `base`.
pub(crate) fn agent_paths(config: &mut AgentConfig, base: &Path) {
    if let Some(path) = &mut config.journal.path {
        resolve(base, path);
    }
    if let Some(tls) = &mut config.till_api.tls {
        resolve(base, &mut tls.cert_file);
        resolve(base, &mut tls.key_file);
    }
    if let Some(path) = &mut config.till_api.token_hash_file {
        resolve(base, path);
    }
    if let Some(sync) = &mut config.sync {
        resolve(base, &mut sync.token_file);
        if let Some(ca) = &mut sync.ca_file {
            resolve(base, ca);
        }
    }
}

/// Resolves the server's file paths (TLS files, a `sqlite:` database) against
/// `base`.
pub(crate) fn server_paths(config: &mut ServerConfig, base: &Path) {
    if let Some(tls) = &mut config.tls {
        resolve(base, &mut tls.cert_file);
        resolve(base, &mut tls.key_file);
    }
    // `:memory:` and friends are SQLite names, not files.
    if let Some(url) = &mut config.database
        && let Ok(DatabaseUrl::Sqlite(mut path)) = DatabaseUrl::parse(url.trim())
        && !path.to_string_lossy().starts_with(':')
        && path.is_relative()
    {
        resolve(base, &mut path);
        // A base directory that is not UTF-8 cannot be written into the URL
        // string; the relative path then stays as written.
        if let Some(text) = path.to_str() {
            *url = format!("sqlite:{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::TlsSection;

    #[test]
    fn sqlite_paths_are_resolved_but_memory_and_postgres_are_not() {
        let base = Path::new("/etc/hq");
        for (given, expected) in [
            ("sqlite:hq.db", "sqlite:/etc/hq/hq.db"),
            ("sqlite://data/hq.db", "sqlite:/etc/hq/data/hq.db"),
            ("sqlite:/var/lib/hq.db", "sqlite:/var/lib/hq.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("postgres://hq@db/hq", "postgres://hq@db/hq"),
        ] {
            let mut config = ServerConfig {
                database: Some(given.into()),
                ..ServerConfig::default()
            };
            server_paths(&mut config, base);
            assert_eq!(config.database.as_deref(), Some(expected), "{given}");
        }
    }

    #[test]
    fn tls_files_are_resolved() {
        let mut config = ServerConfig {
            tls: Some(TlsSection {
                cert_file: "cert.pem".into(),
                key_file: "/abs/key.pem".into(),
            }),
            ..ServerConfig::default()
        };
        server_paths(&mut config, Path::new("/etc/hq"));
        let tls = config.tls.expect("tls is kept");
        assert_eq!(tls.cert_file, Path::new("/etc/hq/cert.pem"));
        assert_eq!(tls.key_file, Path::new("/abs/key.pem"));
    }
}
