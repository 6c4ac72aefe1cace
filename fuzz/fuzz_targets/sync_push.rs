//! Sync push bodies (`POST /v1/sync/push` from a terminal with a valid token):
//! parsed, checked as a batch and planned by the ledger; see
//! `sync_server::http::fuzzing`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sync_server::http::fuzzing::push_body(data));
