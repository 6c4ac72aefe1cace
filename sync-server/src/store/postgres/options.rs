//! The connection string: a libpq-style `postgres://` URL handed to tokio-postgres,
//! plus the server's own `pool_max_size` parameter, which is taken out first because
//! tokio-postgres refuses parameters it does not know.

use crate::store::StoreError;
use std::time::Duration;
use tokio_postgres::config::SslMode;

/// Connections per server instance when the URL does not say.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// What `--database postgres://…` asks for.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The driver's connection settings.
    pub config: tokio_postgres::Config,
    /// Most connections this instance opens.
    pub pool_max_size: usize,
    /// The URL without its password, for messages.
    pub redacted: String,
}

/// Parses a `postgres://` URL. `?pool_max_size=N` sets the pool size; every other
/// parameter is libpq's (`application_name`, `connect_timeout`, `options`, …).
pub fn parse(url: &str) -> Result<PgOptions, StoreError> {
    let redacted = redact(url);
    let bad = |why: String| StoreError::InvalidUrl(format!("database URL {redacted}: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pool_max_size = DEFAULT_POOL_SIZE;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_max_size", n)) => {
                pool_max_size = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        bad(format!("pool_max_size={n} is not a number from 1 to 1000"))
                    })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| bad(super::retry::describe(&e)))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(bad(
            "sslmode=require is not supported: this build connects without TLS; keep \
             PostgreSQL on a private network or loopback (sslmode=disable)"
                .to_owned(),
        ));
    }
    // Without TLS support, `prefer` (libpq's default) would only cost a refused
    // SSLRequest per connection.
    config.ssl_mode(SslMode::Disable);
    if config.get_application_name().is_none() {
        config.application_name("sync-server");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_user().is_none() {
        // libpq's default: the operating-system user.
        if let Ok(user) = std::env::var("USER") {
            config.user(user);
        }
    }
    Ok(PgOptions {
        config,
        pool_max_size,
        redacted,
    })
}

/// `url` with the password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_size_is_ours_and_the_rest_goes_to_the_driver() {
        let o = parse("postgres://hq@db.internal:5433/loyalty?pool_max_size=40&application_name=x")
            .unwrap();
        assert_eq!(o.pool_max_size, 40);
        assert_eq!(o.config.get_application_name(), Some("x"));
        assert_eq!(o.config.get_dbname(), Some("loyalty"));
        let o = parse("postgresql://hq@localhost/loyalty").unwrap();
        assert_eq!(o.pool_max_size, DEFAULT_POOL_SIZE);
        assert_eq!(o.config.get_application_name(), Some("sync-server"));
        assert!(parse("postgres://hq@localhost/loyalty?pool_max_size=0").is_err());
        assert!(parse("postgres://hq@localhost/loyalty?sslmode=require").is_err());
        assert!(parse("postgres://hq@localhost/loyalty?nonsense=1").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://hq:s3cret@db:5432/loyalty?x=1"),
            "postgres://hq:***@db:5432/loyalty?x=1"
        );
        assert_eq!(
            redact("postgres://hq@db/loyalty"),
            "postgres://hq@db/loyalty"
        );
        let err = parse("postgres://hq:s3cret@db/loyalty?pool_max_size=x").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
