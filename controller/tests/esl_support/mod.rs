//! Loading the FreeSWITCH ESL recordings (tests/data/freeswitch-esl/, see its README): the
//! chunks of every connection as recorded, in both directions, checked against the `.bin`
//! files.

#![allow(dead_code)]

use handoff::esl::{Decoder, EslMessage};

pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/freeswitch-esl/");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// FreeSWITCH to client.
    S2c,
    /// Client to FreeSWITCH.
    C2s,
    /// FreeSWITCH closed.
    Eof,
    /// The client (handoffd, in 22–28) closed its socket.
    ClientEof,
}

#[derive(Debug, Clone)]
pub struct Chunk {
    pub index: usize,
    pub dir: Dir,
    /// Milliseconds since the connection opened.
    pub t_ms: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    /// The recorder's annotations (`notes`), as text.
    pub notes: Vec<String>,
    pub outbound: bool,
    pub chunks: Vec<Chunk>,
    /// `NAME.s2c.bin`.
    pub s2c: Vec<u8>,
    /// `NAME.c2s.bin`.
    pub c2s: Vec<u8>,
}

impl Recording {
    pub fn s2c_chunks(&self) -> Vec<&[u8]> {
        self.chunks.iter().filter(|c| c.dir == Dir::S2c).map(|c| c.bytes.as_slice()).collect()
    }
}

/// Standard base64 (the recorder's `bytes_b64`).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::new();
    for quad in clean.chunks(4) {
        let pad = quad.iter().filter(|&&b| b == b'=').count();
        let mut n = 0u32;
        for (i, &b) in quad.iter().enumerate() {
            n |= if b == b'=' { 0 } else { value(b) } << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    out
}

pub fn load(name: &str) -> Recording {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{DATA}{name}.json")).expect("recording json")).expect("json");
    let chunks: Vec<Chunk> = json["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| {
            let dir = match c["dir"].as_str().expect("dir") {
                "s2c" => Dir::S2c,
                "c2s" => Dir::C2s,
                "s2c_eof" => Dir::Eof,
                "c2s_eof" => Dir::ClientEof,
                other => panic!("{name}: dir {other}"),
            };
            let bytes = base64(c["bytes_b64"].as_str().expect("bytes_b64"));
            assert_eq!(bytes.len() as u64, c["len"].as_u64().expect("len"), "{name}: chunk length");
            Chunk {
                index: c["i"].as_u64().expect("i") as usize,
                dir,
                t_ms: (c["t"].as_f64().expect("t") * 1000.0) as u64,
                bytes,
            }
        })
        .collect();
    let rec = Recording {
        name: name.to_string(),
        outbound: json["mode"] == "outbound",
        notes: json["notes"].as_array().map(|n| n.iter().map(|v| v.to_string()).collect()).unwrap_or_default(),
        s2c: std::fs::read(format!("{DATA}{name}.s2c.bin")).expect("s2c.bin"),
        c2s: std::fs::read(format!("{DATA}{name}.c2s.bin")).expect("c2s.bin"),
        chunks,
    };
    let joined = |d: Dir| rec.chunks.iter().filter(|c| c.dir == d).flat_map(|c| c.bytes.clone()).collect::<Vec<u8>>();
    assert_eq!(joined(Dir::S2c), rec.s2c, "{name}: the s2c chunks are the .s2c.bin");
    assert_eq!(joined(Dir::C2s), rec.c2s, "{name}: the c2s chunks are the .c2s.bin");
    rec
}

/// Every recorded connection, by name (NAME of NAME.json).
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(DATA)
        .expect("tests/data/freeswitch-esl")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names.len(), 29, "29 recorded connections in {DATA} (01–18: a scripted client, 22–28: handoffd)");
    names
}

/// Decodes chunks fed one after another; a real FreeSWITCH stream has no errors.
pub fn decode_all<C: AsRef<[u8]>>(name: &str, chunks: &[C]) -> Vec<EslMessage> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c.as_ref());
        loop {
            match d.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => panic!("{name}: a real FreeSWITCH stream must decode without errors: {e}"),
            }
        }
    }
    assert!(d.is_idle(), "{name}: {} bytes left over", d.buffered());
    out
}
