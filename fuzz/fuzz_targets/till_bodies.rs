//! Till API request bodies: the first byte picks the endpoint (sales, quote,
//! returns), the rest is the body; see `agent::till_api::fuzzing`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agent::till_api::fuzzing::till_body(data));
