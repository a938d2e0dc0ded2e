//! Arbitrary bytes through handoff::fuzzing::esl_stream (see controller/src/fuzzing.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff::fuzzing::esl_stream(data));
