//! A policy file through parsing (the Bottle egress schema) and compilation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bb_sidecar::fuzzing::policy_text(data);
});
