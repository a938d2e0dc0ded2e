//! Entry points shared by the cargo-fuzz targets (`controller/fuzz/`) and the corpus replay test
//! (`controller/tests/fuzz_corpus.rs`): arbitrary bytes through each input parser. Each one
//! panics only if a property breaks (the parsers themselves must never panic).

use crate::ami::{AmiDecoder, MAX_MESSAGE_BYTES};
use crate::config::Config;
use crate::esl;

/// The first byte picks a read size, the rest is a stream fed in reads of that size: the AMI
/// decoder never panics, always makes progress and keeps its buffer bounded.
pub fn ami_stream(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else { return };
    let size = usize::from(size).max(1);
    let mut d = AmiDecoder::new();
    for chunk in stream.chunks(size) {
        d.feed(chunk);
        while let Ok(Some(_)) | Err(_) = d.next_message() {
            assert!(d.buffered() <= MAX_MESSAGE_BYTES + size, "AMI buffer grew to {}", d.buffered());
        }
        assert!(d.buffered() <= MAX_MESSAGE_BYTES + size, "AMI buffer grew to {}", d.buffered());
    }
}

/// As [`ami_stream`] for the FreeSWITCH Event Socket decoder; after a fatal error it must stay
/// failed (ESL cannot resynchronise) and hold no buffer.
pub fn esl_stream(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else { return };
    let size = usize::from(size).max(1);
    let mut d = esl::Decoder::new();
    for chunk in stream.chunks(size) {
        d.feed(chunk);
        loop {
            match d.next_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_fatal() => return,
                Err(_) => {}
            }
        }
        assert!(d.buffered() <= esl::MAX_HEADER_BYTES + esl::MAX_BODY_BYTES + size);
    }
}

/// Any text as `handoffd.yaml`: a valid config or a one-line error, never a panic.
pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::parse(&text, "fuzz.yaml") {
        let line = e.to_string();
        assert!(!line.contains('\n'), "config errors are one line: {line:?}");
        assert!(line.starts_with("fuzz.yaml"), "config errors name the file: {line:?}");
    }
}
