//! Arbitrary bytes through handoff::fuzzing::config_text (see controller/src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::config_text(data));
