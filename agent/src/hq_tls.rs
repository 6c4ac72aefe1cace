//! Why HQ's TLS certificate was refused, in words a pilot can act on.
//!
//! rustls says `invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`; the
//! person setting up a store needs the cause and the fix (`sync-server tls init`,
//! `[sync] ca_file`, the host in `[sync] url`, the clock). [`explain`] finds the
//! rustls error in a failed request's chain of causes and names both; `hq_client`
//! puts the explanation in front of the original text, so the logs and `/v1/health`
//! `last_sync_error` show it (masked by `Scrubbed` like every text about HQ).

use rustls::{CertificateError, Error as TlsError};
use std::error::Error;

/// The explanation of the TLS certificate failure somewhere in `error`'s chain of
/// causes; `None` when the failure is not about HQ's certificate.
pub fn explain(error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = as_tls_error(e) {
            return explain_tls(tls);
        }
        next = e.source();
    }
    None
}

/// An `io::Error` hides the error it wraps from `source()` (it returns the wrapped
/// error's own source), and tokio-rustls reports handshake failures as one, which
/// the HTTP client wraps in another.
fn as_tls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a TlsError> {
    let mut current = e;
    loop {
        if let Some(tls) = current.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        let inner = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
}

const CA_FILE_FIX: &str = "set [sync] ca_file to the ca.pem that `sync-server tls init` wrote \
                           (or to the CA certificate that signed HQ's certificate)";

fn explain_tls(error: &TlsError) -> Option<String> {
    let TlsError::InvalidCertificate(cert) = error else {
        return None;
    };
    Some(match cert {
        CertificateError::UnknownIssuer => format!(
            "HQ's TLS certificate is signed by a CA this agent does not trust (UnknownIssuer): \
             {CA_FILE_FIX}"
        ),
        CertificateError::Other(other) if is_ca_used_as_end_entity(other) => {
            "HQ presents a CA certificate as its own (CaUsedAsEndEntity: a self-signed \
             certificate, such as `openssl req -x509` makes): make HQ's certificate with \
             `sync-server tls init --host NAME`, put its server.pem and server-key.pem in \
             HQ's [tls] and its ca.pem in [sync] ca_file"
                .to_owned()
        }
        CertificateError::NotValidForName => {
            "HQ's TLS certificate does not name the host of [sync] url (NotValidForName): use \
             a host the certificate names, or make one for this host with \
             `sync-server tls init --host NAME`"
                .to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "HQ's TLS certificate is for {} but [sync] url names {} (NotValidForName): use a \
             host the certificate names, or make one for this host with \
             `sync-server tls init --host {}`",
            if presented.is_empty() {
                "no host name".to_owned()
            } else {
                presented.join(", ")
            },
            expected.to_str(),
            expected.to_str(),
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "HQ's TLS certificate has expired (Expired): renew it at HQ (`sync-server tls init \
             --force`, then the new ca.pem to every agent), or check this till's clock"
                .to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "HQ's TLS certificate is not valid yet (NotValidYet): check this till's clock"
                .to_owned()
        }
        CertificateError::BadSignature => format!(
            "HQ's TLS certificate does not match the CA in [sync] ca_file (BadSignature): \
             {CA_FILE_FIX}"
        ),
        other => format!("HQ's TLS certificate is refused ({other:?})"),
    })
}

/// webpki's verdict that the server presented a CA certificate, which rustls passes
/// on only as an opaque `Other`.
fn is_ca_used_as_end_entity(other: &rustls::OtherError) -> bool {
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What a failed request looks like: the rustls error inside an `io::Error`
    /// inside the HTTP client's own error.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// As reqwest reports it: an `io::Error` (the connector's) around tokio-rustls's
    /// `io::Error` around the rustls error.
    fn wrapped(cert: CertificateError) -> Option<String> {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(cert),
        );
        explain(&Outer(std::io::Error::other(io)))
    }

    #[test]
    fn an_unknown_issuer_names_ca_file_and_tls_init() {
        let text = wrapped(CertificateError::UnknownIssuer).expect("explained");
        assert!(text.contains("[sync] ca_file"), "{text}");
        assert!(text.contains("sync-server tls init"), "{text}");
    }

    #[test]
    fn a_self_signed_server_certificate_is_named_and_tls_init_offered() {
        let other = rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity));
        let text = wrapped(CertificateError::Other(other)).expect("explained");
        assert!(text.contains("CaUsedAsEndEntity"), "{text}");
        assert!(text.contains("sync-server tls init --host"), "{text}");
    }

    #[test]
    fn a_name_mismatch_names_both_hosts() {
        let text = wrapped(CertificateError::NotValidForNameContext {
            expected: rustls_pki_types::ServerName::try_from("hq.example")
                .expect("name")
                .to_owned(),
            presented: vec!["DnsName(\"other.example\")".to_owned()],
        })
        .expect("explained");
        assert!(text.contains("hq.example"), "{text}");
        assert!(text.contains("other.example"), "{text}");
    }

    #[test]
    fn an_expired_certificate_says_renew_or_check_the_clock() {
        let text = wrapped(CertificateError::Expired).expect("explained");
        assert!(text.contains("expired") && text.contains("clock"), "{text}");
    }

    #[test]
    fn failures_that_are_not_about_the_certificate_are_left_alone() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(explain(&Outer(refused)), None);
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(explain(&Outer(alert)), None);
    }
}
