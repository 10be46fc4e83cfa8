//! A request head from the agent through authority parsing, policy matching and outbound DLP.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bb_sidecar::fuzzing::request_head(data);
});
