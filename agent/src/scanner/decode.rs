//! From a frame to a card: [`protocol::codes::decode_frame`] plus what the agent
//! owes the operator when a frame is not a card. Refused codes never reach the till;
//! they are counted (`pos_agent_scans_total{result="invalid"}`) and logged with the
//! reason and a masked payload, so a log never holds a whole card number or token.

use crate::metrics::{Metrics, ScanResult};
use protocol::codes::{CardScan, CodeError, decode_frame};
use protocol::token::{KeyRing, TokenError};

/// Decodes `frame` from scanner `scanner`, or counts and logs why it is not a card.
pub fn decode(
    scanner: &str,
    frame: &[u8],
    aim_prefix: bool,
    keys: &KeyRing,
    now_unix: i64,
    metrics: &Metrics,
) -> Option<CardScan> {
    match decode_frame(frame, aim_prefix, keys, now_unix) {
        Ok(scan) => Some(scan),
        Err(error) => {
            refused(scanner, frame, &error.to_string(), is_suspicious(&error));
            metrics.scan(scanner, ScanResult::Invalid);
            None
        }
    }
}

/// Logs a refused code. `suspicious` ones (a token that does not verify) are warnings:
/// they may be forgeries; the others are everyday misreads and wrong barcodes.
pub fn refused(scanner: &str, frame: &[u8], reason: &str, suspicious: bool) {
    let payload = masked_payload(frame);
    if suspicious {
        tracing::warn!(scanner, reason, payload, len = frame.len(), "scan refused");
    } else {
        tracing::info!(scanner, reason, payload, len = frame.len(), "scan refused");
    }
}

fn is_suspicious(error: &CodeError) -> bool {
    matches!(
        error,
        CodeError::Token(
            TokenError::BadSignature | TokenError::UnknownKey(_) | TokenError::RetiredKey(_)
        )
    )
}

/// The frame as loggable text: non-printable bytes shown as `.` (no terminal control
/// sequences in logs), then masked down to its last four characters.
pub fn masked_payload(frame: &[u8]) -> String {
    let printable: String = frame
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    protocol::ids::masked(&printable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_masked_and_made_printable() {
        assert_eq!(masked_payload(b"]E04006381333932"), "****3932");
        assert_eq!(masked_payload(b"12\x1b[2J"), "****.[2J");
        assert_eq!(masked_payload(b"\x07\x08"), "..");
    }

    #[test]
    fn a_bad_check_digit_is_counted_as_invalid_and_gives_nothing() {
        let metrics = Metrics::new();
        assert!(
            decode(
                "front",
                b"4006381333932",
                false,
                &KeyRing::new(),
                0,
                &metrics
            )
            .is_none()
        );
        let good = decode(
            "front",
            b"4006381333931",
            false,
            &KeyRing::new(),
            0,
            &metrics,
        );
        assert_eq!(good.unwrap().card.as_str(), "4006381333931");
        let text = metrics.render();
        assert!(
            text.contains(r#"pos_agent_scans_total{scanner="front",result="invalid"} 1"#),
            "{text}"
        );
    }
}
