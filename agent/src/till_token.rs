//! The till token: the bearer token a till on another machine presents to the till
//! API (`[till_api] token_hash_file`).
//!
//! Only its SHA-256 is stored: the token is 256 random bits, so the hash cannot be
//! turned back into it and no slow password hash is needed. `pos-agent till-token
//! rotate` writes a new hash (atomically, by rename) and prints the token once; the
//! running agent notices the new file on the next request ([`TokenCheck`]), so the
//! old token stops working at once, without a restart.

use anyhow::{Context, bail};
use config::AgentConfig;
use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// How the hash file starts: names the algorithm, so that it can change later.
const PREFIX: &str = "sha256:";

/// The SHA-256 of a till token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(***)")
    }
}

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Compares in constant time, so that the answer's timing tells nothing about
    /// how much of a guess was right.
    fn matches(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }

    /// The file's text: `sha256:` and 64 lower-case hex digits.
    fn to_file_text(self) -> String {
        format!("{PREFIX}{}\n", HEXLOWER.encode(&self.0))
    }

    /// Parses the file's text.
    fn parse(text: &str) -> Result<Self, String> {
        let hex = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("does not start with {PREFIX}"))?;
        let bytes = HEXLOWER
            .decode(hex.as_bytes())
            .map_err(|_| "is not a SHA-256 in lower-case hex".to_owned())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "is not 32 bytes of SHA-256".to_owned())?;
        Ok(Self(bytes))
    }
}

/// A new till token: 256 random bits, URL-safe base64 (43 characters).
pub fn new_token() -> String {
    BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>())
}

/// Reads a hash file.
pub fn read_hash(path: &Path) -> anyhow::Result<TokenHash> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the till token hash {}", path.display()))?;
    TokenHash::parse(&text).map_err(|why| {
        anyhow::anyhow!(
            "till token hash {} {why}; write a new one with `pos-agent till-token rotate`",
            path.display()
        )
    })
}

/// Replaces the hash file with `hash`: written beside it, synced, then renamed over
/// it, so the agent never reads half a file.
fn write_hash(path: &Path, hash: TokenHash) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(hash.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("replacing {} with {}", path.display(), tmp.display()))
}

/// `pos-agent till-token rotate`: a new token replaces the old one; returns it (the
/// caller prints it once; it is stored nowhere).
pub fn rotate(config: &AgentConfig, config_file: &Path) -> anyhow::Result<String> {
    let Some(path) = &config.till_api.token_hash_file else {
        bail!(
            "{} sets no [till_api] token_hash_file: add one (e.g. token_hash_file = \"/var/lib/pos-agent/till-token.sha256\") to require a till token",
            config_file.display()
        );
    };
    let token = new_token();
    write_hash(path, TokenHash::of(&token))?;
    Ok(token)
}

/// What identifies one version of the hash file: a rename makes a new inode, an
/// edit in place a new modification time or length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified_ns: i128,
    len: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            len: meta.len(),
        }
    }
}

/// Checks presented tokens against the hash file, rereading it when it changed.
#[derive(Debug)]
pub struct TokenCheck {
    path: PathBuf,
    current: Mutex<(FileStamp, TokenHash)>,
}

impl TokenCheck {
    /// Loads the hash file; fails when it is missing or malformed, so that the agent
    /// does not start with a till API nobody can use.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the till token hash {}", path.display()))?;
        let hash = read_hash(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: Mutex::new((FileStamp::of(&meta), hash)),
        })
    }

    /// True when `presented` is the current till token. A file that vanished or
    /// went bad admits nobody until it is fixed (and says so in the log).
    ///
    /// A `stat` per request, and a read of a one-line file after a rotation: cheap
    /// enough for the request's task, like a log line.
    pub fn admits(&self, presented: &str) -> bool {
        let presented = TokenHash::of(presented);
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => FileStamp::of(&meta),
            Err(e) => {
                tracing::error!(file = %self.path.display(), error = %e, "till token hash unreadable; refusing every till request");
                return false;
            }
        };
        if stamp != current.0 {
            match read_hash(&self.path) {
                Ok(hash) => {
                    tracing::info!(file = %self.path.display(), "till token rotated");
                    *current = (stamp, hash);
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "refusing every till request");
                    return false;
                }
            }
        }
        current.1.matches(&presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_256_bit_values() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(BASE64URL_NOPAD.decode(a.as_bytes()).unwrap().len(), 32);
    }

    #[test]
    fn the_hash_file_round_trips_and_refuses_other_text() {
        let hash = TokenHash::of("secret");
        assert_eq!(TokenHash::parse(&hash.to_file_text()), Ok(hash));
        assert!(TokenHash::parse("secret").is_err());
        assert!(TokenHash::parse("sha256:abcd").is_err());
        assert!(!hash.to_file_text().contains("secret"));
        assert_eq!(format!("{hash:?}"), "TokenHash(***)");
    }

    #[test]
    fn a_rotation_replaces_the_accepted_token_without_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("till-token.sha256");
        let mut config = AgentConfig::default();
        config.till_api.token_hash_file = Some(path.clone());
        let old = rotate(&config, Path::new("agent.toml")).unwrap();
        let check = TokenCheck::load(&path).unwrap();
        assert!(check.admits(&old));
        assert!(!check.admits("guess"));
        let new = rotate(&config, Path::new("agent.toml")).unwrap();
        assert!(check.admits(&new));
        assert!(!check.admits(&old));
        std::fs::remove_file(&path).unwrap();
        assert!(!check.admits(&new), "a vanished hash file admits nobody");
    }

    #[test]
    fn rotate_without_a_hash_file_says_which_key_to_set() {
        let err = rotate(&AgentConfig::default(), Path::new("agent.toml")).unwrap_err();
        assert!(err.to_string().contains("token_hash_file"), "{err}");
    }
}
