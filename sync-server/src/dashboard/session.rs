//! The admin login: the password checked against its Argon2 hash, sessions kept in
//! this process's memory under the SHA-256 of their id (the id itself lives only in
//! the browser's cookie), each with its CSRF token and the card it looked up, and the
//! cookies that carry them.
//!
//! Cookies are `HttpOnly` (no script reads them), `SameSite=Strict` (no other site's
//! page sends them), `Path=/` and `Secure` whenever the server is reached over TLS.
//! Every POST carries the session's CSRF token in a hidden field; the login form,
//! before there is a session, carries a random value that must equal its own
//! short-lived cookie (double submit).

use crate::keys::{RandomError, TokenHash, random_secret};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::header::COOKIE;
use data_encoding::BASE64;
use protocol::CardId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "loyalty_admin";
/// The login form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "loyalty_login";
/// Most sessions kept at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 1_000;

/// Why the admin password setting is unusable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("[admin] password_hash is not an Argon2 hash: {0}")]
pub struct BadHash(String);

/// The configured password, checked once at start.
#[derive(Debug, Clone)]
pub struct Password {
    phc: String,
}

impl Password {
    /// Parses the PHC string of `[admin] password_hash`.
    pub fn new(phc: &str) -> Result<Self, BadHash> {
        PasswordHash::new(phc).map_err(|e| BadHash(e.to_string()))?;
        Ok(Self {
            phc: phc.to_owned(),
        })
    }

    /// True when `given` is the password. Slow on purpose (Argon2): call it off the
    /// async workers.
    pub fn matches(&self, given: &str) -> bool {
        PasswordHash::new(&self.phc).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(given.as_bytes(), &hash)
                .is_ok()
        })
    }
}

/// The Argon2id PHC string of a password, for `[admin] password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A logged-in admin's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The hash the session is kept under (to end it).
    pub key: TokenHash,
    /// The token every POST of this session must carry.
    pub csrf: String,
    /// The card the admin looked up last (kept here so pages never carry the number).
    pub card: Option<CardId>,
}

struct Entry {
    csrf: String,
    card: Option<CardId>,
    last_used: Instant,
}

/// Every live session of this process.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<TokenHash, Entry>>,
}

impl Sessions {
    /// Sessions that end after `ttl` without use.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; answers the id for the cookie.
    pub fn start(&self) -> Result<String, RandomError> {
        let id = random_secret()?;
        let csrf = random_secret()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, e| now.duration_since(e.last_used) < self.ttl);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            TokenHash::of(&id),
            Entry {
                csrf,
                card: None,
                last_used: now,
            },
        );
        Ok(id)
    }

    /// The live session of the request's cookie, its idle time restarted.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let key = TokenHash::of(id);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = map.get_mut(&key)?;
        if now.duration_since(entry.last_used) >= self.ttl {
            map.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(Session {
            key,
            csrf: entry.csrf.clone(),
            card: entry.card.clone(),
        })
    }

    /// Remembers the card a session looked up.
    pub fn set_card(&self, session: &Session, card: Option<CardId>) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(&session.key) {
            entry.card = card;
        }
    }

    /// Ends a session (logout).
    pub fn end(&self, session: &Session) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&session.key);
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the protections above; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// The password of an `Authorization: Basic` header for user `admin`.
pub fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim().as_bytes()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (user == "admin").then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn a_password_matches_its_hash_only() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let p = Password::new(&phc).expect("valid hash");
        assert!(p.matches("correct horse"));
        assert!(!p.matches("correct horse "));
        assert!(Password::new("hunter2").is_err());
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.start().expect("session");
        let headers = with_cookie(&format!("other=1; {SESSION_COOKIE}={id}"));
        let s = sessions.find(&headers).expect("live session");
        assert_eq!(s.csrf.len(), id.len());
        sessions.set_card(&s, Some(CardId::parse("123456").expect("card")));
        assert!(sessions.find(&headers).expect("live").card.is_some());
        sessions.end(&s);
        assert!(sessions.find(&headers).is_none());
        assert!(
            sessions
                .find(&with_cookie(&format!("{SESSION_COOKIE}=forged")))
                .is_none()
        );
    }

    #[test]
    fn an_idle_session_expires() {
        let sessions = Sessions::new(Duration::ZERO);
        let id = sessions.start().expect("session");
        assert!(
            sessions
                .find(&with_cookie(&format!("{SESSION_COOKIE}={id}")))
                .is_none()
        );
    }

    #[test]
    fn cookies_carry_their_protections() {
        let c = set_cookie(SESSION_COOKIE, "abc", Duration::from_secs(60), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("x", "y", Duration::ZERO, false).contains("Secure"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
