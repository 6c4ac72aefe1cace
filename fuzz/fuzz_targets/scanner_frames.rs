//! Scanner bytes: arbitrary input through the framer (whole, cut into reads, with
//! pauses) and every frame through `decode_frame`; see `agent::scanner::fuzzing`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent::scanner::fuzzing::scanner_bytes(data));
