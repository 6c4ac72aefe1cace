//! `sync-server tls init`: a pilot's private PKI in one command — a small CA whose
//! certificate the agents trust (`[sync] ca_file`) and a server certificate signed by
//! it for HQ's `[tls]`.
//!
//! Why not a self-signed server certificate: rustls (the agent) refuses a CA
//! certificate presented as the server's own (`CaUsedAsEndEntity`), which is what the
//! usual `openssl req -x509` one-liner makes. The CA's private key is not kept: nobody
//! can issue another certificate these agents trust from this machine, and a new host
//! name means a new `tls init --force` and the new `ca.pem` on every agent.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::ServerName;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA certificate: `[sync] ca_file` of every agent.
pub const CA_FILE: &str = "ca.pem";
/// The server certificate: HQ's `[tls] cert_file`.
pub const CERT_FILE: &str = "server.pem";
/// The server's private key: HQ's `[tls] key_file` (mode 0600).
pub const KEY_FILE: &str = "server-key.pem";

/// How long the CA is valid: long enough that a pilot never meets its end.
const CA_VALIDITY: Duration = Duration::days(10 * 365);
/// How long the server certificate is valid.
const SERVER_VALIDITY: Duration = Duration::days(825);
/// Backdating, so a till whose clock is a little behind accepts a fresh certificate.
const BACKDATE: Duration = Duration::days(1);

/// Why `tls init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// No host name was given.
    #[error("give at least one --host: the name (or IP address) agents use in [sync] url")]
    NoHost,
    /// A host is neither a DNS name nor an IP address.
    #[error("--host {0:?} is neither a DNS name nor an IP address")]
    BadHost(String),
    /// An output file exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it (agents then need the new {CA_FILE})", .0.display())]
    Exists(PathBuf),
    /// rcgen could not make a key or certificate.
    #[error("generating the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's refusal.
        source: std::io::Error,
    },
}

/// What `tls init` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

/// The PEM texts of a new CA and of a server certificate for `hosts` signed by it.
struct Generated {
    ca: String,
    cert: String,
    key: String,
}

fn generate(hosts: &[String], now: OffsetDateTime) -> Result<Generated, PkiError> {
    let first = hosts.first().ok_or(PkiError::NoHost)?;
    for host in hosts {
        // The agent matches the URL's host with rustls's ServerName: accept exactly
        // what it can match.
        if ServerName::try_from(host.as_str()).is_err() || host.contains('*') {
            return Err(PkiError::BadHost(host.clone()));
        }
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("loyalty HQ CA for {first}"));
    ca_params.not_before = now - BACKDATE;
    ca_params.not_after = now + CA_VALIDITY;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, first);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVER_VALIDITY;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca: ca_cert.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `ca.pem`, `server.pem` and `server-key.pem` into `out` (created if
/// missing). Without `force`, an existing file of the three stops it before anything
/// is written.
pub fn init(
    hosts: &[String],
    out: &Path,
    force: bool,
    now: OffsetDateTime,
) -> Result<PkiFiles, PkiError> {
    let files = PkiFiles {
        ca: out.join(CA_FILE),
        cert: out.join(CERT_FILE),
        key: out.join(KEY_FILE),
    };
    if !force {
        for path in [&files.ca, &files.cert, &files.key] {
            if path.exists() {
                return Err(PkiError::Exists(path.clone()));
            }
        }
    }
    let generated = generate(hosts, now)?;
    std::fs::create_dir_all(out).map_err(|source| PkiError::Write {
        path: out.to_owned(),
        source,
    })?;
    // The key first: a run that fails half-way leaves no certificate without its key.
    write_replacing(&files.key, &generated.key, 0o600)?;
    write_replacing(&files.cert, &generated.cert, 0o644)?;
    write_replacing(&files.ca, &generated.ca, 0o644)?;
    Ok(files)
}

/// Writes `text` to a new temporary file with `mode` beside `path`, then renames it
/// over `path`: the file never exists with wider permissions or half written.
fn write_replacing(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    // Explicitly, whatever the umask says.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(err)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

/// The lines `tls init` prints: which file goes where.
pub fn describe(files: &PkiFiles, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "wrote {}", files.ca.display())?;
    writeln!(out, "wrote {}", files.cert.display())?;
    writeln!(out, "wrote {} (mode 0600)", files.key.display())?;
    writeln!(out, "HQ, sync-server.toml:")?;
    writeln!(out, "  [tls]")?;
    writeln!(out, "  cert_file = {:?}", files.cert.display().to_string())?;
    writeln!(out, "  key_file = {:?}", files.key.display().to_string())?;
    writeln!(out, "every agent, agent.toml (copy {CA_FILE} to the till):")?;
    writeln!(out, "  [sync]")?;
    writeln!(out, "  ca_file = \"/etc/pos-agent/{CA_FILE}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn the_server_certificate_verifies_against_the_ca_for_each_host_and_no_other() {
        let generated = generate(
            &hosts(&["hq.example", "10.0.0.5"]),
            OffsetDateTime::now_utc(),
        )
        .expect("generate");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(generated.ca.as_bytes()).expect("ca pem"))
            .expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        let cert = CertificateDer::from_pem_slice(generated.cert.as_bytes()).expect("cert pem");
        let now = rustls_pki_types::UnixTime::now();
        for host in ["hq.example", "10.0.0.5"] {
            let name = ServerName::try_from(host).expect("name");
            verifier
                .verify_server_cert(&cert, &[], &name, &[], now)
                .unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        let other = ServerName::try_from("other.example").expect("name");
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &other, &[], now)
                .is_err()
        );
        PrivateKeyDer::from_pem_slice(generated.key.as_bytes()).expect("key pem");
    }

    #[test]
    fn bad_or_missing_hosts_are_refused() {
        let now = OffsetDateTime::now_utc();
        assert!(matches!(generate(&[], now), Err(PkiError::NoHost)));
        for bad in ["has space", "*.example.com", "", "x/y"] {
            assert!(
                matches!(generate(&hosts(&[bad]), now), Err(PkiError::BadHost(h)) if h == bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn existing_files_are_kept_without_force_and_replaced_with_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let now = OffsetDateTime::now_utc();
        let files = init(&hosts(&["localhost"]), dir.path(), false, now).expect("first");
        let ca = std::fs::read_to_string(&files.ca).expect("read ca");
        let again = init(&hosts(&["localhost"]), dir.path(), false, now);
        assert!(matches!(again, Err(PkiError::Exists(_))), "{again:?}");
        assert_eq!(std::fs::read_to_string(&files.ca).expect("read ca"), ca);
        init(&hosts(&["localhost"]), dir.path(), true, now).expect("forced");
        assert_ne!(std::fs::read_to_string(&files.ca).expect("read ca"), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&files.key), 0o600);
            assert_eq!(mode(&files.cert), 0o644);
        }
    }
}
