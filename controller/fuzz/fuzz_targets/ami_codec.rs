//! Arbitrary bytes through handoff::fuzzing::ami_stream (see controller/src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::ami_stream(data));
