//! Cutting a scanner's byte stream into frames.
//!
//! A serial read returns whatever bytes happened to arrive: half a code, three codes,
//! or line noise. [`Framer`] is a byte-level state machine, one per scanner, that
//! turns those reads into whole frames (without their terminator) or reasons why
//! bytes were dropped. It is pure: no I/O and no clock of its own; the caller passes
//! the instant each read arrived, so the same bytes always give the same frames
//! however they were split into reads.
//!
//! Rules, for every terminator:
//! - data bytes are printable ASCII, bytes from 0x80 up (the decoder refuses them with
//!   a reason), and GS (0x1D, the GS1 field separator);
//! - any other control byte (below 0x20, or DEL) that is not the terminator drops
//!   the frame, and so does a frame longer than `max_len`; the framer then skips to
//!   the next terminator and starts afresh (resynchronisation);
//! - a partial frame whose last byte is older than the idle timeout when new bytes
//!   arrive is dropped as incomplete (a scanner never pauses inside a code), so a
//!   lost terminator costs one code, not two;
//! - empty frames (a blank line, `STX ETX`) are ignored silently.
//!
//! With `stx-etx`, bytes between ETX and the next STX are garbage and reported as one
//! drop per run, except CR and LF, which many scanners keep as a suffix after ETX and
//! are ignored. An STX inside a frame drops the partial frame and starts a new one.

use config::agent::Terminator;
use std::fmt;
use std::time::{Duration, Instant};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const LF: u8 = 0x0A;
const CR: u8 = 0x0D;
const GS: u8 = 0x1D;
const DEL: u8 = 0x7F;

/// A scanner never pauses this long inside one code; a partial frame older than this
/// is dropped when the next bytes arrive.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why bytes were dropped instead of becoming a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The frame grew past the configured maximum length.
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// A control byte that is not part of the terminator.
    ControlByte(u8),
    /// No terminator arrived before the scanner went quiet (or the port closed).
    Incomplete,
    /// `stx-etx`: a new STX arrived before the ETX of the frame in progress.
    Interrupted,
    /// `stx-etx`: bytes outside any STX..ETX frame.
    Garbage,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { max } => write!(f, "frame longer than {max} bytes"),
            Self::ControlByte(b) => write!(f, "control byte 0x{b:02X} inside a frame"),
            Self::Incomplete => f.write_str("incomplete frame: no terminator before a pause"),
            Self::Interrupted => f.write_str("STX before the ETX of the previous frame"),
            Self::Garbage => f.write_str("bytes outside STX..ETX"),
        }
    }
}

/// Bytes the framer threw away, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Why the bytes were dropped.
    pub reason: DropReason,
    /// How many bytes of the frame (or garbage run) had been seen when it was dropped.
    pub len: usize,
}

/// What the framer made of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete frame, without its terminator.
    Frame(Vec<u8>),
    /// Bytes dropped.
    Dropped(Dropped),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `stx-etx` only: between frames, `garbage` bytes seen since the last ETX.
    Outside { garbage: usize },
    /// Collecting a frame into the buffer.
    InFrame,
    /// `crlf` only: the frame in the buffer is followed by a CR; LF should come next.
    AfterCr,
    /// The frame in progress was dropped: skip to its terminator. `after_cr` is for
    /// `crlf`, where the terminator is two bytes.
    Skipping { after_cr: bool },
}

/// The framing state machine of one scanner.
#[derive(Debug, Clone)]
pub struct Framer {
    terminator: Terminator,
    max_len: usize,
    idle_timeout: Duration,
    state: State,
    buf: Vec<u8>,
    last_byte_at: Option<Instant>,
}

/// True for bytes that may appear inside a frame.
fn is_data(b: u8) -> bool {
    (b >= 0x20 && b != DEL) || b == GS
}

impl Framer {
    /// A framer for `terminator` that drops frames longer than `max_len` bytes and
    /// partial frames idle for longer than `idle_timeout`.
    pub fn new(terminator: Terminator, max_len: usize, idle_timeout: Duration) -> Self {
        let mut framer = Self {
            terminator,
            max_len,
            idle_timeout,
            state: State::InFrame,
            // A scanner frame is short; one allocation up to a sane bound serves them all.
            buf: Vec::with_capacity(max_len.min(1024)),
            last_byte_at: None,
        };
        framer.state = framer.idle_state();
        framer
    }

    fn idle_state(&self) -> State {
        match self.terminator {
            Terminator::StxEtx => State::Outside { garbage: 0 },
            Terminator::Cr | Terminator::Lf | Terminator::Crlf => State::InFrame,
        }
    }

    /// Forgets any partial frame (the port was closed and reopened: what follows is a
    /// new stream). Returns the drop of the partial frame, if there was one.
    pub fn reset(&mut self) -> Option<Dropped> {
        let dropped = self.pending_drop();
        self.buf.clear();
        self.state = self.idle_state();
        self.last_byte_at = None;
        dropped
    }

    /// What is lost if the stream stops here.
    fn pending_drop(&self) -> Option<Dropped> {
        match self.state {
            State::Outside { garbage: 0 } | State::Skipping { .. } => None,
            State::Outside { garbage } => Some(Dropped {
                reason: DropReason::Garbage,
                len: garbage,
            }),
            State::InFrame if self.buf.is_empty() && self.terminator != Terminator::StxEtx => None,
            State::InFrame => Some(Dropped {
                reason: DropReason::Incomplete,
                len: self.buf.len(),
            }),
            State::AfterCr => Some(Dropped {
                reason: DropReason::Incomplete,
                len: self.buf.len() + 1,
            }),
        }
    }

    /// Feeds the bytes of one read that arrived at `now`, appending what they complete
    /// to `out`.
    pub fn push(&mut self, bytes: &[u8], now: Instant, out: &mut Vec<FrameEvent>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(last) = self.last_byte_at
            && now.saturating_duration_since(last) > self.idle_timeout
            && let Some(dropped) = self.reset()
        {
            out.push(FrameEvent::Dropped(dropped));
        }
        for &b in bytes {
            self.byte(b, out);
        }
        self.last_byte_at = Some(now);
    }

    fn byte(&mut self, b: u8, out: &mut Vec<FrameEvent>) {
        match self.terminator {
            Terminator::Cr => self.line_byte(b, CR, out),
            Terminator::Lf => self.line_byte(b, LF, out),
            Terminator::Crlf => self.crlf_byte(b, out),
            Terminator::StxEtx => self.stx_etx_byte(b, out),
        }
    }

    /// `cr` and `lf`: one terminator byte.
    fn line_byte(&mut self, b: u8, terminator: u8, out: &mut Vec<FrameEvent>) {
        match self.state {
            State::Skipping { .. } => {
                if b == terminator {
                    self.state = State::InFrame;
                }
            }
            _ if b == terminator => self.emit(out),
            _ => self.data_byte(b, out),
        }
    }

    fn crlf_byte(&mut self, b: u8, out: &mut Vec<FrameEvent>) {
        match self.state {
            State::Skipping { after_cr } => {
                self.state = if after_cr && b == LF {
                    State::InFrame
                } else {
                    State::Skipping { after_cr: b == CR }
                };
            }
            State::AfterCr if b == LF => self.emit(out),
            State::AfterCr => {
                // The CR was not a terminator after all, so it is a stray control byte.
                self.drop_frame(DropReason::ControlByte(CR), 1, out);
                self.state = State::Skipping { after_cr: b == CR };
            }
            _ if b == CR => self.state = State::AfterCr,
            _ => self.data_byte(b, out),
        }
    }

    fn stx_etx_byte(&mut self, b: u8, out: &mut Vec<FrameEvent>) {
        match (self.state, b) {
            (State::Outside { garbage }, STX) => {
                if garbage > 0 {
                    out.push(FrameEvent::Dropped(Dropped {
                        reason: DropReason::Garbage,
                        len: garbage,
                    }));
                }
                self.start_frame();
            }
            // Scanners often keep a CR/LF suffix after ETX; it is not garbage.
            (State::Outside { .. }, CR | LF) => {}
            (State::Outside { garbage }, _) => {
                self.state = State::Outside {
                    garbage: garbage.saturating_add(1),
                };
            }
            (State::Skipping { .. }, STX) => self.start_frame(),
            (State::Skipping { .. }, ETX) => self.state = State::Outside { garbage: 0 },
            (State::Skipping { .. }, _) => {}
            (_, STX) => {
                if !self.buf.is_empty() {
                    self.drop_frame(DropReason::Interrupted, 0, out);
                }
                self.start_frame();
            }
            (_, ETX) => {
                self.emit(out);
                self.state = State::Outside { garbage: 0 };
            }
            _ => self.data_byte(b, out),
        }
    }

    fn start_frame(&mut self) {
        self.buf.clear();
        self.state = State::InFrame;
    }

    /// A byte inside a frame that is not (the start of) the terminator.
    fn data_byte(&mut self, b: u8, out: &mut Vec<FrameEvent>) {
        if !is_data(b) {
            self.drop_frame(DropReason::ControlByte(b), 1, out);
        } else if self.buf.len() >= self.max_len {
            self.drop_frame(DropReason::TooLong { max: self.max_len }, 1, out);
        } else {
            self.buf.push(b);
        }
    }

    /// Drops the frame in progress; `extra` bytes beyond the buffer were part of it.
    fn drop_frame(&mut self, reason: DropReason, extra: usize, out: &mut Vec<FrameEvent>) {
        out.push(FrameEvent::Dropped(Dropped {
            reason,
            len: self.buf.len() + extra,
        }));
        self.buf.clear();
        self.state = State::Skipping { after_cr: false };
    }

    /// The terminator completed the frame in the buffer.
    fn emit(&mut self, out: &mut Vec<FrameEvent>) {
        if !self.buf.is_empty() {
            out.push(FrameEvent::Frame(self.buf.clone()));
            self.buf.clear();
        }
        self.state = State::InFrame;
    }
}

/// The bytes a scanner configured with `terminator` sends for `payload`.
pub fn encode(terminator: Terminator, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 2);
    match terminator {
        Terminator::Cr => {
            out.extend_from_slice(payload);
            out.push(CR);
        }
        Terminator::Lf => {
            out.extend_from_slice(payload);
            out.push(LF);
        }
        Terminator::Crlf => {
            out.extend_from_slice(payload);
            out.extend_from_slice(&[CR, LF]);
        }
        Terminator::StxEtx => {
            out.push(STX);
            out.extend_from_slice(payload);
            out.push(ETX);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Terminator; 4] = [
        Terminator::Cr,
        Terminator::Lf,
        Terminator::Crlf,
        Terminator::StxEtx,
    ];

    fn framer(t: Terminator) -> Framer {
        Framer::new(t, 32, DEFAULT_IDLE_TIMEOUT)
    }

    /// Feeds `chunks` at one instant and returns every event.
    fn feed(f: &mut Framer, chunks: &[&[u8]]) -> Vec<FrameEvent> {
        let now = Instant::now();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, now, &mut out);
        }
        out
    }

    fn frame(s: &str) -> FrameEvent {
        FrameEvent::Frame(s.as_bytes().to_vec())
    }

    fn dropped(reason: DropReason, len: usize) -> FrameEvent {
        FrameEvent::Dropped(Dropped { reason, len })
    }

    fn frames(events: &[FrameEvent]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                FrameEvent::Frame(f) => Some(f.clone()),
                FrameEvent::Dropped(_) => None,
            })
            .collect()
    }

    #[test]
    fn each_terminator_ends_a_frame() {
        for t in ALL {
            let mut f = framer(t);
            let bytes = encode(t, b"4006381333931");
            assert_eq!(
                feed(&mut f, &[&bytes]),
                vec![frame("4006381333931")],
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_frame_split_across_reads_is_joined() {
        for t in ALL {
            let bytes = encode(t, b"]E04006381333931");
            for cut in 0..=bytes.len() {
                let mut f = framer(t);
                let (a, b) = bytes.split_at(cut);
                assert_eq!(
                    feed(&mut f, &[a, b]),
                    vec![frame("]E04006381333931")],
                    "{t:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn several_frames_in_one_read_are_split() {
        for t in ALL {
            let mut bytes = encode(t, b"111111");
            bytes.extend(encode(t, b"222222"));
            bytes.extend(encode(t, b"333333"));
            let mut f = framer(t);
            assert_eq!(
                feed(&mut f, &[&bytes]),
                vec![frame("111111"), frame("222222"), frame("333333")],
                "{t:?}"
            );
        }
    }

    #[test]
    fn empty_frames_are_ignored() {
        assert_eq!(
            feed(&mut framer(Terminator::Cr), &[b"\r\r12345678\r"]),
            vec![frame("12345678")]
        );
        assert_eq!(
            feed(&mut framer(Terminator::Crlf), &[b"\r\n\r\n12345678\r\n"]),
            vec![frame("12345678")]
        );
        assert_eq!(
            feed(
                &mut framer(Terminator::StxEtx),
                &[b"\x02\x03\x0212345678\x03"]
            ),
            vec![frame("12345678")]
        );
    }

    #[test]
    fn an_over_long_frame_is_dropped_and_the_next_one_kept() {
        for t in ALL {
            let mut bytes = encode(t, &[b'7'; 40]);
            bytes.extend(encode(t, b"12345678"));
            let mut f = framer(t);
            assert_eq!(
                feed(&mut f, &[&bytes]),
                vec![
                    dropped(DropReason::TooLong { max: 32 }, 33),
                    frame("12345678")
                ],
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_frame_of_exactly_the_maximum_length_is_kept() {
        let payload = [b'5'; 32];
        for t in ALL {
            let mut f = framer(t);
            assert_eq!(
                feed(&mut f, &[&encode(t, &payload)]),
                vec![FrameEvent::Frame(payload.to_vec())]
            );
        }
    }

    #[test]
    fn a_control_byte_drops_the_frame_until_the_next_terminator() {
        for t in ALL {
            let mut bytes = encode(t, b"1234\x075678");
            bytes.extend(encode(t, b"87654321"));
            let mut f = framer(t);
            assert_eq!(
                feed(&mut f, &[&bytes]),
                vec![dropped(DropReason::ControlByte(0x07), 5), frame("87654321")],
                "{t:?}"
            );
        }
    }

    #[test]
    fn gs_and_high_bytes_pass_through_for_the_decoder_to_judge() {
        let mut f = framer(Terminator::Cr);
        assert_eq!(
            feed(&mut f, &[b"]C1\x1d0104\xc3\xa9\r"]),
            vec![FrameEvent::Frame(b"]C1\x1d0104\xc3\xa9".to_vec())]
        );
    }

    #[test]
    fn crlf_needs_both_bytes() {
        let mut f = framer(Terminator::Crlf);
        // A bare LF, then a CR not followed by LF: both frames dropped, then resync.
        assert_eq!(
            feed(&mut f, &[b"1234\n5678\r\n", b"12\r34\r\n", b"87654321\r\n"]),
            vec![
                dropped(DropReason::ControlByte(LF), 5),
                dropped(DropReason::ControlByte(CR), 3),
                frame("87654321"),
            ]
        );
        // CR CR LF: the first CR is stray, the CR LF after it resynchronises.
        assert_eq!(
            feed(&mut f, &[b"1234\r", b"\r\n", b"99999999\r\n"]),
            vec![dropped(DropReason::ControlByte(CR), 5), frame("99999999"),]
        );
    }

    #[test]
    fn line_terminators_are_control_bytes_in_other_modes() {
        // A scanner sending CRLF to an agent set to `cr`: the LF ruins the next frame,
        // and the log says why.
        let mut f = framer(Terminator::Cr);
        assert_eq!(
            feed(&mut f, &[b"11111111\r\n22222222\r"]),
            vec![frame("11111111"), dropped(DropReason::ControlByte(LF), 1),]
        );
    }

    #[test]
    fn stx_etx_reports_garbage_between_frames_and_ignores_crlf_suffixes() {
        let mut f = framer(Terminator::StxEtx);
        assert_eq!(
            feed(
                &mut f,
                &[b"noise\x0212345678\x03\r\n", b"\x0287654321\x03xy", b"\x02"]
            ),
            vec![
                dropped(DropReason::Garbage, 5),
                frame("12345678"),
                frame("87654321"),
                dropped(DropReason::Garbage, 2),
            ]
        );
    }

    #[test]
    fn stx_inside_a_frame_restarts_it() {
        let mut f = framer(Terminator::StxEtx);
        assert_eq!(
            feed(&mut f, &[b"\x021234\x0287654321\x03"]),
            vec![dropped(DropReason::Interrupted, 4), frame("87654321"),]
        );
        // Also while skipping a dropped frame.
        assert_eq!(
            feed(&mut f, &[b"\x0212\x0734\x0211111111\x03"]),
            vec![dropped(DropReason::ControlByte(0x07), 3), frame("11111111"),]
        );
    }

    #[test]
    fn a_stale_partial_frame_is_dropped_when_new_bytes_arrive() {
        for t in ALL {
            let mut f = framer(t);
            let start = Instant::now();
            let whole = encode(t, b"12345678");
            let mut out = Vec::new();
            // The scanner sent half a frame, lost the rest, and later a whole frame.
            f.push(&whole[..4], start, &mut out);
            f.push(&whole, start + Duration::from_millis(600), &mut out);
            let partial = if t == Terminator::StxEtx { 3 } else { 4 };
            assert_eq!(
                out,
                vec![dropped(DropReason::Incomplete, partial), frame("12345678")],
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_slow_but_steady_frame_is_not_dropped() {
        let mut f = framer(Terminator::Cr);
        let mut at = Instant::now();
        let mut out = Vec::new();
        for b in b"12345678\r" {
            f.push(&[*b], at, &mut out);
            at += Duration::from_millis(400);
        }
        assert_eq!(out, vec![frame("12345678")]);
    }

    #[test]
    fn a_pause_also_ends_skipping_after_a_dropped_frame() {
        let mut f = framer(Terminator::Cr);
        let start = Instant::now();
        let mut out = Vec::new();
        f.push(b"12\x07", start, &mut out);
        f.push(b"87654321\r", start + Duration::from_secs(1), &mut out);
        assert_eq!(
            out,
            vec![dropped(DropReason::ControlByte(7), 3), frame("87654321")]
        );
    }

    #[test]
    fn reset_reports_and_forgets_a_partial_frame() {
        let mut f = framer(Terminator::Crlf);
        let _ = feed(&mut f, &[b"1234\r"]);
        assert_eq!(
            f.reset(),
            Some(Dropped {
                reason: DropReason::Incomplete,
                len: 5
            })
        );
        assert_eq!(f.reset(), None);
        // The LF that would have completed the old frame now starts a bad new one.
        assert_eq!(
            feed(&mut f, &[b"\n", b"12345678\r\n"]),
            vec![dropped(DropReason::ControlByte(LF), 1)]
        );
        assert_eq!(feed(&mut f, &[b"12345678\r\n"]), vec![frame("12345678")]);
    }

    fn terminator() -> impl Strategy<Value = Terminator> {
        prop::sample::select(ALL.to_vec())
    }

    /// Cuts `bytes` at the given points (sorted, deduplicated, in range).
    fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut at = 0;
        for p in points {
            chunks.push(&bytes[at..p]);
            at = p;
        }
        chunks.push(&bytes[at..]);
        chunks
    }

    /// One piece of a generated stream: a valid code, or arbitrary bytes.
    #[derive(Debug, Clone)]
    enum Piece {
        Code(Vec<u8>),
        Garbage(Vec<u8>),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            prop::collection::vec(0x20u8..0x7f, 1..=32).prop_map(Piece::Code),
            prop::collection::vec(any::<u8>(), 0..80).prop_map(Piece::Garbage),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_bytes_give_only_well_formed_frames(
            t in terminator(),
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            points in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut f = framer(t);
            let events = feed(&mut f, &cut(&bytes, &points));
            for frame in frames(&events) {
                prop_assert!(!frame.is_empty() && frame.len() <= 32);
                prop_assert!(frame.iter().all(|&b| is_data(b)));
            }
        }

        #[test]
        fn splitting_a_stream_anywhere_gives_the_same_events(
            t in terminator(),
            bytes in prop::collection::vec(
                prop_oneof![4 => 0x20u8..0x7f, 1 => 0u8..0x20, 1 => any::<u8>()],
                0..400,
            ),
            points in prop::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = feed(&mut framer(t), &[&bytes]);
            let split = feed(&mut framer(t), &cut(&bytes, &points));
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn valid_codes_interleaved_with_garbage_are_all_recovered(
            t in terminator(),
            pieces in prop::collection::vec(piece(), 0..20),
            points in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            for p in &pieces {
                match p {
                    Piece::Code(code) => {
                        stream.extend(encode(t, code));
                        expected.push(code.clone());
                    }
                    // In line modes garbage is recovered from at the next terminator;
                    // with STX/ETX the next STX is enough.
                    Piece::Garbage(junk) => {
                        stream.extend_from_slice(junk);
                        if t != Terminator::StxEtx {
                            stream.extend(encode(t, b""));
                        }
                    }
                }
            }
            let got = frames(&feed(&mut framer(t), &cut(&stream, &points)));
            // Every code arrives, in order; garbage may add frames of its own.
            let mut rest = got.iter();
            for code in &expected {
                prop_assert!(
                    rest.any(|g| g == code),
                    "lost {:?} from {:?}", String::from_utf8_lossy(code), got
                );
            }
        }

        #[test]
        fn a_pause_never_loses_the_code_sent_after_it(
            t in terminator(),
            junk in prop::collection::vec(any::<u8>(), 0..60),
            code in prop::collection::vec(0x20u8..0x7f, 1..=32),
        ) {
            let mut f = framer(t);
            let start = Instant::now();
            let mut out = Vec::new();
            f.push(&junk, start, &mut out);
            f.push(&encode(t, &code), start + Duration::from_secs(2), &mut out);
            let got = frames(&out);
            prop_assert_eq!(got.last(), Some(&code));
        }
    }
}
