//! Network addresses in config files: reading listen addresses with a helpful
//! message, and checking HQ's sync URL (scheme, host, port, and plain `http://` only
//! to a loopback host) without pulling in a URL library.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// Reads a listen address (`127.0.0.1:7070`, `[::1]:7070`) from a string, with a
/// message that shows the expected form.
pub(crate) fn deserialize_listen<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "'{text}' is not an IP address with a port, like 127.0.0.1:7070 or [::1]:7070 \
             (host names are not accepted)"
        ))
    })
}

/// The parts of an HQ URL that matter for checking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncUrl {
    /// True for `https://`.
    pub(crate) https: bool,
    /// Host name or IP address, without brackets.
    pub(crate) host: String,
    /// Explicit port, if any.
    pub(crate) port: Option<u16>,
}

impl SyncUrl {
    /// Parses `http(s)://host[:port][/path]`; the error says what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let lower = url.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &url["https://".len()..])
        } else if lower.starts_with("http://") {
            (false, &url["http://".len()..])
        } else {
            return Err(format!(
                "'{url}' is not an http(s) URL; write it like https://hq.example:8443"
            ));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains(['?', '#']) {
            return Err(format!("'{url}' must not have a query (?) or fragment (#)"));
        }
        if authority.contains('@') {
            return Err(format!(
                "'{url}' must not carry a user name or password; the terminal token goes \
                 in token_file"
            ));
        }
        let (host, port) = split_host_port(authority).map_err(|why| format!("'{url}': {why}"))?;
        Ok(Self { https, host, port })
    }

    /// True when the host is this machine: `localhost`, `127.0.0.0/8` or `::1`.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Splits `host[:port]` / `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("unexpected text after ']'")?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    let valid_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
    if !host.chars().all(valid_name) {
        return Err(format!("'{host}' is not a valid host name"));
    }
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("'{text}' is not a port number (1 to 65535)")),
            Ok(port) => Some(port),
        },
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_parse_with_host_and_port() {
        let url = SyncUrl::parse("https://hq.example:8443/pos").expect("valid URL");
        assert_eq!(
            url,
            SyncUrl {
                https: true,
                host: "hq.example".into(),
                port: Some(8443)
            }
        );
        assert!(!url.is_loopback());
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for text in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://LOCALHOST",
        ] {
            let url = SyncUrl::parse(text).expect("valid URL");
            assert!(url.is_loopback(), "{text}");
        }
    }

    #[test]
    fn malformed_urls_say_why() {
        for (text, why) in [
            ("hq.example", "not an http(s) URL"),
            ("ftp://hq", "not an http(s) URL"),
            ("https://", "no host"),
            ("https://:8443", "no host"),
            ("https://hq:0", "not a port number"),
            ("https://hq:99999", "not a port number"),
            ("https://user:pw@hq", "user name or password"),
            ("https://hq?x=1", "query"),
            ("https://h q", "not a valid host name"),
        ] {
            let error = SyncUrl::parse(text).expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
