//! Replays every file of the cargo-fuzz corpora (`controller/fuzz/corpus/<target>/`: seeds from
//! the recorded AMI and ESL traffic and the config sample, plus whatever fuzzing found) through
//! the same entry points the fuzz targets use, as ordinary tests.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        let result = std::panic::catch_unwind(|| f(&data));
        assert!(result.is_ok(), "{} breaks {target}", path.display());
        n += 1;
    }
    assert!(n >= 3, "{target}: only {n} corpus files");
}

#[test]
fn ami_codec_corpus() {
    replay("ami_codec", handoff::fuzzing::ami_stream);
}

#[test]
fn esl_codec_corpus() {
    replay("esl_codec", handoff::fuzzing::esl_stream);
}

#[test]
fn config_corpus() {
    replay("config", handoff::fuzzing::config_text);
}
