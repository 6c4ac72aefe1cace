//! The fuzz harness for scanner input, shared by the `cargo fuzz` target
//! (`fuzz/fuzz_targets/scanner_frames.rs`, needs nightly) and a stable property test
//! that also replays the fuzz inputs, so what the fuzzer found stays fixed on stable.
//! Not part of the agent's API.
//!
//! [`scanner_bytes`] takes arbitrary bytes: the first two choose the scanner settings,
//! the next two where the stream is cut into reads, the rest is the stream. It panics
//! (which the fuzzer reports) if framing or decoding panics or breaks an invariant.

use super::framing::{DEFAULT_IDLE_TIMEOUT, FrameEvent, Framer};
use config::agent::Terminator;
use protocol::codes::decode_frame;
use protocol::token::{KeyId, KeyRing, PublicKey, decode_public_key};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The public key (id 1) the harness trusts: that of the Ed25519 seed `[7; 32]`.
/// Tokens in the seed corpus are signed with it, so mutations of them reach
/// signature verification and the claim checks after it.
pub const HARNESS_PUBLIC_KEY: &str = "5JFGYY7CTRJAVPXVKB5RGLWF7GKUO5VOX27HXESCD3VGSFCG2IWA";
/// The instant (unix seconds) tokens are verified at.
pub const HARNESS_NOW: i64 = 1_800_000_000;

fn key_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let mut ring = KeyRing::new();
        // A constant that decodes; an empty ring would only make the fuzzer weaker.
        if let Ok(key) = decode_public_key(HARNESS_PUBLIC_KEY) {
            ring.insert(
                KeyId(1),
                PublicKey {
                    key,
                    valid_until: None,
                },
            );
        }
        ring
    })
}

/// Runs one input through the framer (whole, cut into reads, and with pauses) and
/// every frame through the decoder, checking the invariants.
pub fn scanner_bytes(data: &[u8]) {
    let [settings, max, cut_a, cut_b, stream @ ..] = data else {
        return;
    };
    let terminator = match settings % 4 {
        0 => Terminator::Cr,
        1 => Terminator::Lf,
        2 => Terminator::Crlf,
        _ => Terminator::StxEtx,
    };
    let aim_prefix = settings & 4 != 0;
    // Small maxima too, so the over-long path is reached often.
    let max_len = 1 + usize::from(*max) * 2;
    let now = Instant::now();

    let whole = run(terminator, max_len, &[stream], now);
    let cuts = [usize::from(*cut_a), usize::from(*cut_b) * 7];
    let chunks = cut(stream, &cuts);
    let split = run(terminator, max_len, &chunks, now);
    assert_eq!(
        whole, split,
        "cutting the stream into reads changed the result"
    );

    // The same reads with a pause after each: stale partial frames are dropped, and
    // whatever is emitted still obeys the rules.
    let mut framer = Framer::new(terminator, max_len, DEFAULT_IDLE_TIMEOUT);
    let mut paused = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let at = now + Duration::from_secs(u64::try_from(i).unwrap_or(u64::MAX / 4));
        framer.push(chunk, at, &mut paused);
    }
    let _ = framer.reset();

    for event in whole.iter().chain(&paused) {
        if let FrameEvent::Frame(frame) = event {
            assert!(!frame.is_empty() && frame.len() <= max_len, "frame size");
            assert!(
                frame.iter().all(|&b| (b >= 0x20 && b != 0x7f) || b == 0x1d),
                "control byte in a frame"
            );
            decode(frame, aim_prefix);
        }
    }
    // The raw input too: the decoder must survive what the framer would never pass.
    decode(stream, aim_prefix);
}

fn decode(frame: &[u8], aim_prefix: bool) {
    if let Ok(scan) = decode_frame(frame, aim_prefix, key_ring(), HARNESS_NOW) {
        let card = scan.card.as_str();
        assert!(
            (6..=19).contains(&card.len()) && card.bytes().all(|b| b.is_ascii_digit()),
            "decoded a card that is not 6 to 19 digits"
        );
    }
}

fn run(terminator: Terminator, max_len: usize, chunks: &[&[u8]], now: Instant) -> Vec<FrameEvent> {
    let mut framer = Framer::new(terminator, max_len, DEFAULT_IDLE_TIMEOUT);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk, now, &mut out);
    }
    out
}

fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for p in points {
        chunks.push(&bytes[at..p]);
        at = p;
    }
    chunks.push(&bytes[at..]);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Replays the seed inputs (`fuzz/seeds`, committed: fixed crashes go there), any
    /// crash not fixed yet (`fuzz/artifacts`) and the local corpus (`fuzz/corpus`,
    /// not committed): the regression suite of the fuzz target, on stable Rust.
    #[test]
    fn fuzz_corpus_and_artifacts_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut replayed = 0;
        for dir in [
            "seeds/scanner_frames",
            "artifacts/scanner_frames",
            "corpus/scanner_frames",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_file() {
                    scanner_bytes(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
        }
        eprintln!("replayed {replayed} fuzz inputs");
    }

    #[test]
    fn the_harness_trusts_its_key() {
        assert_eq!(key_ring().len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// The fuzz target without libFuzzer: random bytes, and random bytes mixed
        /// into frames that look like real codes.
        #[test]
        fn the_fuzz_target_holds_on_random_input(data in prop::collection::vec(any::<u8>(), 0..700)) {
            scanner_bytes(&data);
        }

        #[test]
        fn the_fuzz_target_holds_on_code_like_input(
            settings in any::<[u8; 4]>(),
            pieces in prop::collection::vec(
                prop_oneof![
                    Just(b"]E04006381333931\r\n".to_vec()),
                    Just(b"\x02;6037990000001234=2512101?\x03".to_vec()),
                    Just(b"]Q1LT1:AEAAAAAB".to_vec()),
                    Just(b"12345678\r".to_vec()),
                    prop::collection::vec(any::<u8>(), 0..20),
                ],
                0..30,
            ),
        ) {
            let mut data = settings.to_vec();
            data.extend(pieces.concat());
            scanner_bytes(&data);
        }
    }
}
