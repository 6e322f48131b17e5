//! What a benchmark message carries: the step it belongs to, its number,
//! and the instant it was handed to the transport, as nanoseconds since a
//! process-wide base. Sender and receivers run in this process, so they
//! share the clock, and publish-to-delivery latency is one subtraction.
//!
//! The text is ASCII, `SSSSSSSS NNNNNNNNNNNNNNNN TTTTTTTTTTTTTTTT ` in hex,
//! padded with `x` to the message size.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bytes of the header; the smallest message size is a little more.
pub const HEADER_LEN: usize = 8 + 1 + 16 + 1 + 16 + 1;

/// Step 0 is the warm-up: its probes are never measured.
pub const WARM_UP_STEP: u32 = 0;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide base.
pub fn now_nanos() -> u64 {
    u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The text of message `seq` of `step`, stamped now, `size` bytes long.
pub fn encode(step: u32, seq: u64, size: usize) -> String {
    let mut text = format!("{step:08x} {seq:016x} {:016x} ", now_nanos());
    let padding = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', padding));
    text
}

/// What a received text says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub step: u32,
    pub seq: u64,
    pub sent_nanos: u64,
}

impl Stamp {
    /// Time from the send to now.
    pub fn age(&self) -> Duration {
        Duration::from_nanos(now_nanos().saturating_sub(self.sent_nanos))
    }
}

/// Reads the header of a benchmark text; `None` for anything else.
pub fn decode(text: &[u8]) -> Option<Stamp> {
    let field = |range: std::ops::Range<usize>| {
        let digits = std::str::from_utf8(text.get(range)?).ok()?;
        u64::from_str_radix(digits, 16).ok()
    };
    Some(Stamp {
        step: u32::try_from(field(0..8)?).ok()?,
        seq: field(9..25)?,
        sent_nanos: field(26..42)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_has_the_requested_size_and_reads_back() {
        let text = encode(7, 123_456, 100);
        assert_eq!(text.len(), 100);
        let stamp = decode(text.as_bytes()).expect("decodes");
        assert_eq!((stamp.step, stamp.seq), (7, 123_456));
        assert!(stamp.sent_nanos <= now_nanos());
    }

    #[test]
    fn other_texts_are_not_benchmark_messages() {
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(&[b'z'; 100]), None);
    }
}
