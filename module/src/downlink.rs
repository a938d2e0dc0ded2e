//! The downlink of a device: what the conference sends the phone, the same on each of its legs
//! (pure, lock-free, no allocation after [`Downlink::new`]).
//!
//! ConfBridge (bridge_softmix) sends every member the mix of everyone *but that member*: it
//! subtracts a member's own audio from the mix it writes to it. Of a device's legs only the
//! *feeding* one (the leg [`crate::frame_clock::Group`] lets into the mix) has audio in the mix;
//! the read hook drops the standby leg's frames, so the bridge sees the standby as a silent member
//! and writes it the whole mix — the far party *and the phone's own voice*, a few tens of ms late.
//! A phone that plays the standby leg, or switches its earpiece to it when Wi-Fi drops, hears
//! itself.
//!
//! What the bridge writes to the feeding leg is exactly the right downlink: the conference
//! without the device. So each leg also gets a hook in the WRITE direction (see `media.rs`):
//!
//! - a frame written to the feeding leg passes unchanged and is copied into its group's ring
//!   ([`Downlink::store`]);
//! - a frame written to any other leg of the group keeps its place in the stream (its format,
//!   sample count and timing are the bridge's choice for that channel) but its content is
//!   overwritten in place with the feeding leg's frame ([`Downlink::fill`]), converted to its
//!   format, or with silence of its format when no fresh frame of the feeding leg is there.
//!   The phone's own voice is never passed on: a frame that cannot be filled is silenced, and one
//!   whose codec the module cannot write is dropped.
//!
//! Why a copy and not a subtraction: removing the phone's voice from the standby's full mix would
//! need the exact samples and timing the bridge mixed (its per-member buffers, resampling,
//! clipping), which only the bridge has; the feeding leg's frame is the bridge's own answer.
//!
//! **Pairing.** The mixing thread queues one frame per member every 20 ms; each member's own
//! bridge thread writes it, so within a tick the two legs' writes come in either order, and under
//! load one thread may lag and then write a burst. Taking "the newest copy" would then repeat one
//! frame and skip the next whenever the order flips. Instead each standby leg keeps a [`Cursor`]
//! into the ring and takes the feeding leg's frames in order, each once (a FIFO): when the
//! feeding leg's frame of this tick is not there yet, the standby leg gets the previous frame
//! once more (a repeat of 20 ms, as packet-loss concealment would do) and from then on runs one
//! frame behind, which absorbs either order. A standby leg with more than [`MAX_WAITING`] frames
//! waiting (its thread stalled, a burst of the feeding leg's, or it fed the mix itself until now)
//! skips ahead to one frame behind the newest, so the downlink of a standby leg is never more than
//! a frame or two later than the feeding leg's; a frame older than [`STALE_NS`] (the feeding leg
//! stopped getting frames) is not used: silence.
//!
//! **Switches.** Right after the mix moves from one leg to another the bridge's frame for the new
//! feeding leg may still hold the old leg's voice: the bridge buffers each member's audio (one
//! frame normally, up to five after a burst) and mixes it a tick later, and a frame mixed before
//! the switch may be written after it. [`crate::frame_clock::Group::on_mixed`] tells the write
//! hook when that can be; the feeding leg's frame is then silenced before it is kept, so that
//! every leg gets 20–40 ms of silence at a switch (more after a burst) instead of the phone's own
//! voice. Measured without this: one own-voice packet on each leg at most take-backs.
//!
//! **Formats.** The bridge writes signed linear at its mixing rate to a member with its own audio
//! in the mix, and may write the shared mix already encoded (the write format of several silent
//! members, e.g. μ-law) to the others. The ring keeps a frame as written; [`convert`] turns it
//! into the standby frame's format: the same format is copied, signed linear at 8 kHz and G.711
//! (μ-law, A-law) are converted into one another. Anything else (another rate, another sample
//! count) becomes silence of the target format; a target codec the module cannot write (Opus,
//! G.722, ...) is reported as [`Fill::Unwritable`] and its frame dropped.
//!
//! **Concurrency.** One ring per device group, written by the feeding leg's thread and read by
//! the standby legs' threads. Each slot is a sequence lock over atomic words: the writer never
//! waits (a second writer at the same instant, possible only during a switch, skips its copy);
//! a reader retries a few times and otherwise fills silence. The ring has [`RING`] slots, far
//! more than a reader is ever behind, so a slot is practically never overwritten while read.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Slots in a group's ring.
pub const RING: usize = 8;
/// The largest frame kept: 20 ms of signed linear at 48 kHz (longer frames are not copied; the
/// standby leg then gets silence).
pub const MAX_BYTES: usize = 1920;
const WORDS: usize = MAX_BYTES / 8;
/// How many of the feeding leg's frames may wait for a standby leg: more (its thread lagged, a
/// burst, a leg that fed the mix until now) and it skips to one frame behind the newest.
pub const MAX_WAITING: u64 = 2;
/// A frame of the feeding leg older than this is not played on a standby leg.
pub const STALE_NS: u64 = 100_000_000;
/// A cursor that has not taken any frame yet.
const UNSET: u64 = u64::MAX;

/// The frame formats the module can read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Signed linear, 16 bits in host order, at this rate (Hz).
    Slin(u32),
    /// G.711 μ-law, 8 kHz.
    Ulaw,
    /// G.711 A-law, 8 kHz.
    Alaw,
}

impl Format {
    /// From an Asterisk format name: `slin`, `slin16`, ... `slin192`, `ulaw`, `alaw`.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"ulaw" => Some(Self::Ulaw),
            b"alaw" => Some(Self::Alaw),
            b"slin" => Some(Self::Slin(8000)),
            [b's', b'l', b'i', b'n', digits @ ..] if !digits.is_empty() && digits.len() <= 3 => {
                let mut khz = 0u32;
                for d in digits {
                    if !d.is_ascii_digit() {
                        return None;
                    }
                    khz = khz * 10 + u32::from(d - b'0');
                }
                // slin44 is 44.1 kHz
                Some(Self::Slin(if khz == 44 { 44_100 } else { khz * 1000 }))
            }
            _ => None,
        }
    }

    /// Bytes of `samples` samples.
    pub fn bytes(self, samples: usize) -> usize {
        match self {
            Self::Slin(_) => samples * 2,
            Self::Ulaw | Self::Alaw => samples,
        }
    }

    /// The byte that encodes silence (signed linear: both bytes of a 0 sample).
    pub fn silence_byte(self) -> u8 {
        match self {
            Self::Slin(_) => 0,
            Self::Ulaw => 0xff,
            Self::Alaw => 0xd5,
        }
    }

    fn code(self) -> u32 {
        match self {
            Self::Ulaw => 1,
            Self::Alaw => 2,
            Self::Slin(rate) => 3 + rate,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => None,
            1 => Some(Self::Ulaw),
            2 => Some(Self::Alaw),
            c => Some(Self::Slin(c - 3)),
        }
    }
}

/// G.711 μ-law encoding of one sample, as Asterisk's own table does it (14 bits kept).
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENCODE[usize::from(sample as u16 >> 2)]
}

/// The reference μ-law encoder (ITU-T G.711, as Sun's g711.c), run at build time for the table.
const fn ulaw_encode_const(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = if s > CLIP { CLIP } else { s } + BIAS;
    let top = 31 - (s as u32).leading_zeros() as i32;
    let exponent = if top < 7 {
        0
    } else if top - 7 > 7 {
        7
    } else {
        top - 7
    };
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

const fn ulaw_decode_const(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let v = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -v } else { v }) as i16
}

/// G.711 A-law encoding of one sample (13 bits, all A-law uses).
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENCODE[usize::from(sample as u16 >> 3)]
}

/// The reference A-law encoder (ITU-T G.711, as Sun's g711.c), run at build time for the table.
const fn alaw_encode_const(sample: i16) -> u8 {
    let s = (sample as i32) >> 3; // 13 bits
    let (mask, mag) = if s >= 0 { (0xd5, s) } else { (0x55, -s - 1) };
    let mag = if mag > 0x0fff { 0x0fff } else { mag };
    let seg = (32 - (mag as u32 >> 5).leading_zeros()) as i32; // 0 up to 31, 7 from 2048
    let code = if seg == 0 { mag >> 1 } else { (seg << 4) | ((mag >> seg) & 0x0f) };
    (code ^ mask) as u8
}

/// Encoding tables indexed by the sample's top 14 (μ-law) or 13 (A-law) bits.
static ULAW_ENCODE: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_encode_const(((i as u16) << 2) as i16);
        i += 1;
    }
    t
};
static ALAW_ENCODE: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_const(((i as u16) << 3) as i16);
        i += 1;
    }
    t
};

const fn alaw_decode_const(byte: u8) -> i16 {
    let a = (byte ^ 0x55) as i32;
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn decode_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw { alaw_decode_const(i as u8) } else { ulaw_decode_const(i as u8) };
        i += 1;
    }
    t
}

static ULAW: [i16; 256] = decode_table(false);
static ALAW: [i16; 256] = decode_table(true);

/// G.711 μ-law decoding of one byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW[usize::from(byte)]
}

/// G.711 A-law decoding of one byte.
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW[usize::from(byte)]
}

/// Writes `samples` samples of `from` (format `src`) into `out` (format `dst`, exactly
/// `dst.bytes(samples)` long); false when the module cannot convert between the two (then `out`
/// is untouched).
pub fn convert(src: Format, from: &[u8], dst: Format, out: &mut [u8], samples: usize) -> bool {
    if from.len() != src.bytes(samples) || out.len() != dst.bytes(samples) {
        return false;
    }
    let slin = from.chunks_exact(2).map(|p| i16::from_ne_bytes([p[0], p[1]]));
    match (src, dst) {
        (a, b) if a == b => out.copy_from_slice(from),
        (Format::Slin(8000), Format::Ulaw) => out.iter_mut().zip(slin).for_each(|(o, s)| *o = ulaw_encode(s)),
        (Format::Slin(8000), Format::Alaw) => out.iter_mut().zip(slin).for_each(|(o, s)| *o = alaw_encode(s)),
        (Format::Ulaw | Format::Alaw, Format::Slin(8000)) => {
            let table = if src == Format::Ulaw { &ULAW } else { &ALAW };
            for (pair, b) in out.chunks_exact_mut(2).zip(from) {
                pair.copy_from_slice(&table[usize::from(*b)].to_ne_bytes());
            }
        }
        (Format::Ulaw, Format::Alaw) => out.iter_mut().zip(from).for_each(|(o, b)| *o = alaw_encode(ulaw_decode(*b))),
        (Format::Alaw, Format::Ulaw) => out.iter_mut().zip(from).for_each(|(o, b)| *o = ulaw_encode(alaw_decode(*b))),
        _ => return false,
    }
    true
}

/// One frame of the feeding leg, under a sequence lock.
struct Slot {
    /// Odd while the writer is in the slot.
    seq: AtomicU64,
    /// Which frame of the ring's history the slot holds (0: none).
    number: AtomicU64,
    written_ns: AtomicU64,
    format: AtomicU32,
    samples: AtomicU32,
    len: AtomicU32,
    data: [AtomicU64; WORDS],
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            number: AtomicU64::new(0),
            written_ns: AtomicU64::new(0),
            format: AtomicU32::new(0),
            samples: AtomicU32::new(0),
            len: AtomicU32::new(0),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A frame read out of the ring.
struct Entry {
    written_ns: u64,
    format: Format,
    samples: usize,
    len: usize,
}

/// A device group's downlink: the last [`RING`] frames the bridge wrote to its feeding leg.
pub struct Downlink {
    slots: Box<[Slot; RING]>,
    /// Frames stored so far; frame `n` (1-based) is in slot `n % RING`.
    stored: AtomicU64,
    /// A writer is in the ring.
    writing: AtomicBool,
}

impl Default for Downlink {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Downlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downlink").field("stored", &self.stored.load(Ordering::Relaxed)).finish()
    }
}

/// Where one standby leg is in its group's ring (each leg has its own; only its write thread,
/// which holds the channel lock, touches it).
#[derive(Debug)]
pub struct Cursor {
    /// The next frame number this leg takes ([`UNSET`] before the first).
    next: AtomicU64,
    /// Whether the last fill was a repeat (at most one in a row).
    repeated: AtomicBool,
}

impl Default for Cursor {
    fn default() -> Self {
        Self { next: AtomicU64::new(UNSET), repeated: AtomicBool::new(false) }
    }
}

/// What [`Downlink::fill`] put into a standby leg's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// The feeding leg's next frame.
    Copied,
    /// The feeding leg's frame of this tick was not there yet: its previous one again.
    Repeated,
    /// Silence: no fresh frame of the feeding leg, or one the module cannot convert.
    Silence,
    /// The target codec is not one the module can write: the caller drops the frame.
    Unwritable,
}

impl Downlink {
    pub fn new() -> Self {
        Self {
            slots: Box::new(std::array::from_fn(|_| Slot::default())),
            stored: AtomicU64::new(0),
            writing: AtomicBool::new(false),
        }
    }

    /// Keeps a frame the bridge wrote to the feeding leg; false when it was not kept (longer
    /// than [`MAX_BYTES`], or another writer is in the ring this instant).
    pub fn store(&self, format: Format, samples: usize, bytes: &[u8], now_ns: u64) -> bool {
        if bytes.len() > MAX_BYTES || bytes.len() != format.bytes(samples) {
            return false;
        }
        if self.writing.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        let number = self.stored.load(Ordering::Relaxed) + 1;
        let slot = &self.slots[(number % RING as u64) as usize];
        let seq = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        slot.number.store(number, Ordering::Relaxed);
        slot.written_ns.store(now_ns, Ordering::Relaxed);
        slot.format.store(format.code(), Ordering::Relaxed);
        slot.samples.store(samples as u32, Ordering::Relaxed);
        slot.len.store(bytes.len() as u32, Ordering::Relaxed);
        for (word, chunk) in slot.data.iter().zip(bytes.chunks(8)) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        slot.seq.store(seq.wrapping_add(2), Ordering::Release);
        self.stored.store(number, Ordering::Release);
        self.writing.store(false, Ordering::Release);
        true
    }

    /// Reads frame `number`: straight into `out` when it is already a frame of `want` (format,
    /// samples, `out`'s length), else into `buf`; None if the slot holds another frame or kept
    /// changing (then `out` may hold a torn copy: the caller overwrites it).
    fn read(
        &self,
        number: u64,
        want: (Format, usize),
        out: &mut [u8],
        buf: &mut [u8; MAX_BYTES],
    ) -> Option<(Entry, bool)> {
        let slot = &self.slots[(number % RING as u64) as usize];
        for _ in 0..4 {
            let seq = slot.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            if slot.number.load(Ordering::Relaxed) != number {
                return None;
            }
            let written_ns = slot.written_ns.load(Ordering::Relaxed);
            let format = slot.format.load(Ordering::Relaxed);
            let samples = slot.samples.load(Ordering::Relaxed) as usize;
            let len = (slot.len.load(Ordering::Relaxed) as usize).min(MAX_BYTES);
            let direct = format == want.0.code() && samples == want.1 && len == out.len();
            let dst = if direct { &mut out[..] } else { &mut buf[..len] };
            for (word, chunk) in slot.data.iter().zip(dst.chunks_mut(8)) {
                let w = word.load(Ordering::Relaxed).to_ne_bytes();
                chunk.copy_from_slice(&w[..chunk.len()]);
            }
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == seq {
                return Format::from_code(format).map(|format| (Entry { written_ns, format, samples, len }, direct));
            }
        }
        None
    }

    /// Overwrites `out`, a frame of `samples` samples in `format` (None: a codec the module
    /// cannot write) written to a standby leg, with the feeding leg's frame in turn for `cursor`.
    pub fn fill(&self, cursor: &Cursor, format: Option<Format>, samples: usize, out: &mut [u8], now_ns: u64) -> Fill {
        let Some(format) = format else { return Fill::Unwritable };
        let stored = self.stored.load(Ordering::Acquire);
        let mut next = cursor.next.load(Ordering::Relaxed);
        if next == UNSET || next == 0 || next > stored + 1 {
            // first frame: start at the newest
            next = stored.max(1);
        } else if stored + 1 - next > MAX_WAITING {
            // fallen behind: one frame behind the newest, as in the steady state
            next = stored.saturating_sub(1).max(1);
        }
        let mut buf = [0u8; MAX_BYTES];
        let (number, how) = if next <= stored {
            cursor.next.store(next + 1, Ordering::Relaxed);
            cursor.repeated.store(false, Ordering::Relaxed);
            (next, Fill::Copied)
        } else if stored > 0 && !cursor.repeated.swap(true, Ordering::Relaxed) {
            cursor.next.store(next, Ordering::Relaxed);
            (stored, Fill::Repeated)
        } else {
            cursor.next.store(next, Ordering::Relaxed);
            return silence(format, out);
        };
        match self.read(number, (format, samples), out, &mut buf) {
            Some((e, direct)) if now_ns.saturating_sub(e.written_ns) <= STALE_NS && e.samples == samples => {
                if direct || convert(e.format, &buf[..e.len], format, out, samples) {
                    how
                } else {
                    silence(format, out)
                }
            }
            _ => silence(format, out),
        }
    }
}

fn silence(format: Format, out: &mut [u8]) -> Fill {
    out.fill(format.silence_byte());
    Fill::Silence
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn slin(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
    }

    /// A 20 ms signed-linear frame whose every sample is `v`.
    fn frame(v: i16) -> Vec<u8> {
        slin(&[v; 160])
    }

    fn value(out: &[u8]) -> i16 {
        i16::from_ne_bytes([out[0], out[1]])
    }

    #[test]
    fn format_names_are_read_as_asterisk_writes_them() {
        assert_eq!(Format::from_name(b"ulaw"), Some(Format::Ulaw));
        assert_eq!(Format::from_name(b"alaw"), Some(Format::Alaw));
        assert_eq!(Format::from_name(b"slin"), Some(Format::Slin(8000)));
        assert_eq!(Format::from_name(b"slin16"), Some(Format::Slin(16000)));
        assert_eq!(Format::from_name(b"slin44"), Some(Format::Slin(44100)));
        assert_eq!(Format::from_name(b"slin192"), Some(Format::Slin(192000)));
        for other in [&b"opus"[..], b"g722", b"slin1x", b"slin1234", b"", b"slinx"] {
            assert_eq!(Format::from_name(other), None, "{other:?}");
        }
        for f in [Format::Ulaw, Format::Alaw, Format::Slin(8000), Format::Slin(48000)] {
            assert_eq!(Format::from_code(f.code()), Some(f));
        }
    }

    #[test]
    fn g711_matches_the_reference_tables() {
        // Known code points of G.711 (ITU-T tables): silence, full scale, small values.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(32767), 0xaa);
        assert_eq!(alaw_encode(-32768), 0x2a);
        // Every code decodes and encodes back to itself (μ-law's two zeros aside).
        for b in 0..=255u8 {
            if b != 0x7f {
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "ulaw {b:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(b)), b, "alaw {b:#x}");
        }
        // Encoding is monotonic and within the quantisation step.
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            for (enc, dec) in [(ulaw_encode(s), ulaw_decode as fn(u8) -> i16), (alaw_encode(s), alaw_decode)] {
                let back = i32::from(dec(enc));
                assert!((back - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 16, "{s} -> {back}");
            }
        }
    }

    #[test]
    fn conversions_keep_the_signal_and_refuse_what_they_cannot_do() {
        let src: Vec<i16> = (0..160).map(|i| ((i as f64 / 3.0).sin() * 8000.0) as i16).collect();
        let bytes = slin(&src);
        let mut ulaw = vec![0u8; 160];
        assert!(convert(Format::Slin(8000), &bytes, Format::Ulaw, &mut ulaw, 160));
        let mut alaw = vec![0u8; 160];
        assert!(convert(Format::Ulaw, &ulaw, Format::Alaw, &mut alaw, 160));
        let mut back = vec![0u8; 320];
        assert!(convert(Format::Alaw, &alaw, Format::Slin(8000), &mut back, 160));
        for (i, s) in src.iter().enumerate() {
            let b = i16::from_ne_bytes([back[2 * i], back[2 * i + 1]]);
            assert!((i32::from(b) - i32::from(*s)).abs() <= 600, "{s} -> {b}");
        }
        let mut same = vec![0u8; 320];
        assert!(convert(Format::Slin(8000), &bytes, Format::Slin(8000), &mut same, 160));
        assert_eq!(same, bytes);
        // another rate, a wrong length: untouched, refused
        let mut wide = vec![7u8; 320];
        assert!(!convert(Format::Slin(16000), &bytes, Format::Ulaw, &mut wide[..160], 160));
        assert!(!convert(Format::Slin(8000), &bytes, Format::Slin(16000), &mut wide, 160));
        assert!(!convert(Format::Slin(8000), &bytes[..300], Format::Slin(8000), &mut wide, 160));
        assert!(wide.iter().all(|b| *b == 7));
    }

    #[test]
    fn the_standby_leg_gets_each_feeding_frame_once_in_order_whichever_write_comes_first() {
        let d = Downlink::new();
        let c = Cursor::default();
        let mut got = Vec::new();
        let mut out = vec![0u8; 320];
        // ticks 1..=40; the order of the two writes flips at random-looking ticks
        for tick in 1..=40i16 {
            let now = tick as u64 * 20 * MS;
            let standby_first = matches!(tick % 7, 2 | 3 | 5);
            if !standby_first {
                assert!(d.store(Format::Slin(8000), 160, &frame(tick), now));
            }
            let how = d.fill(&c, Some(Format::Slin(8000)), 160, &mut out, now + MS);
            got.push((value(&out), how));
            if standby_first {
                assert!(d.store(Format::Slin(8000), 160, &frame(tick), now + 2 * MS));
            }
        }
        // After at most one repeat the standby runs one frame behind, each frame once, in order.
        let repeats = got.iter().filter(|(_, h)| *h == Fill::Repeated).count();
        assert!(repeats <= 1, "{got:?}");
        let values: Vec<i16> = got.iter().filter(|(_, h)| *h == Fill::Copied).map(|(v, _)| *v).collect();
        assert!(values.windows(2).all(|w| w[1] == w[0] + 1), "in order, none skipped or repeated: {values:?}");
        assert!(values.len() >= 38, "{got:?}");
        assert!(got.iter().all(|(_, h)| *h != Fill::Silence), "{got:?}");
    }

    #[test]
    fn a_lagging_standby_catches_up_and_a_stalled_feeding_leg_becomes_silence() {
        let d = Downlink::new();
        let c = Cursor::default();
        let mut out = vec![0u8; 160];
        for tick in 1..=3i16 {
            d.store(Format::Slin(8000), 160, &frame(tick * 100), tick as u64 * 20 * MS);
        }
        // First fill: the newest frame, encoded to the standby's μ-law.
        assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, 61 * MS), Fill::Copied);
        assert_eq!(ulaw_decode(out[0]), ulaw_decode(ulaw_encode(300)));
        // The standby's thread stalls for 10 frames: it skips ahead to one frame behind the
        // newest, not 10 frames late forever.
        for tick in 4..=13i16 {
            d.store(Format::Slin(8000), 160, &frame(tick * 100), tick as u64 * 20 * MS);
        }
        assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, 261 * MS), Fill::Copied);
        assert_eq!(ulaw_decode(out[0]), ulaw_decode(ulaw_encode(1200)));
        assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, 262 * MS), Fill::Copied);
        assert_eq!(ulaw_decode(out[0]), ulaw_decode(ulaw_encode(1300)));
        // The feeding leg gets no more frames: one repeat, then silence (never a loop of old audio).
        assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, 281 * MS), Fill::Repeated);
        for t in 0..5 {
            out.fill(1);
            assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, (301 + 20 * t) * MS), Fill::Silence);
            assert!(out.iter().all(|b| *b == 0xff));
        }
        // It comes back: in turn again.
        d.store(Format::Slin(8000), 160, &frame(1400), 400 * MS);
        assert_eq!(d.fill(&c, Some(Format::Ulaw), 160, &mut out, 401 * MS), Fill::Copied);
        assert_eq!(ulaw_decode(out[0]), ulaw_decode(ulaw_encode(1400)));
    }

    #[test]
    fn nothing_of_the_standby_frame_survives_a_fill() {
        let d = Downlink::new();
        let c = Cursor::default();
        // the standby frame holds "own voice": every byte 0x11
        let mut out = vec![0x11u8; 320];
        // no feeding frame yet
        assert_eq!(d.fill(&c, Some(Format::Slin(8000)), 160, &mut out, MS), Fill::Silence);
        assert!(out.iter().all(|b| *b == 0));
        // a stale frame
        d.store(Format::Slin(8000), 160, &frame(5), MS);
        out.fill(0x11);
        let c = Cursor::default();
        assert_eq!(d.fill(&c, Some(Format::Slin(8000)), 160, &mut out, MS + STALE_NS + 1), Fill::Silence);
        assert!(out.iter().all(|b| *b == 0));
        // a frame of another length or rate
        d.store(Format::Slin(16000), 320, &slin(&[9; 320]), 2 * MS);
        out.fill(0x11);
        assert_eq!(d.fill(&c, Some(Format::Slin(8000)), 160, &mut out, 3 * MS), Fill::Silence);
        assert!(out.iter().all(|b| *b == 0));
        // a codec the module cannot write
        assert_eq!(d.fill(&c, None, 160, &mut out, 3 * MS), Fill::Unwritable);
        // a frame too long to keep
        assert!(!d.store(Format::Slin(48000), 1000, &slin(&[1; 1000]), 4 * MS));
    }

    #[test]
    fn concurrent_writer_and_readers_never_see_a_torn_frame() {
        use std::sync::Arc;
        let d = Arc::new(Downlink::new());
        // The readers read until the writer is done (on a busy machine the writer may start
        // after they would otherwise have finished), and at least 50 000 times.
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (d, done) = (d.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 1..=50_000u64 {
                    d.store(Format::Slin(8000), 160, &frame((i % 30_000) as i16), i);
                }
                done.store(true, Ordering::Release);
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (d, done) = (d.clone(), done.clone());
                std::thread::spawn(move || {
                    let c = Cursor::default();
                    let mut out = vec![0u8; 320];
                    let mut copied = 0;
                    let mut i = 0u64;
                    while i < 50_000 || !done.load(Ordering::Acquire) || copied == 0 {
                        i += 1;
                        if d.fill(&c, Some(Format::Slin(8000)), 160, &mut out, i) == Fill::Copied {
                            copied += 1;
                        }
                        let v = value(&out);
                        assert!(out.chunks_exact(2).all(|p| i16::from_ne_bytes([p[0], p[1]]) == v), "torn frame");
                    }
                    copied
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    }
}
