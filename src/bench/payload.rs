//! The bench's message payload: who sent it, its sequence number and when
//! it was (meant to be) sent, in fixed-width text that survives every
//! protocol, padded to the requested size.
//!
//! `SB1 PPPPP SSSSSSSSSS TTTTTTTTTTTTTTTT ....` — marker, publisher,
//! sequence number, nanoseconds since the bench started, padding.

use memchr::memmem;

/// Marks a bench payload inside whatever a protocol wraps it in.
pub const MARKER: &[u8] = b"SB1 ";

const PUBLISHER_DIGITS: usize = 5;
const SEQ_DIGITS: usize = 10;
const TIME_DIGITS: usize = 16;

/// The smallest payload: marker and fields, no padding.
pub const MIN_SIZE: usize = MARKER.len() + PUBLISHER_DIGITS + 1 + SEQ_DIGITS + 1 + TIME_DIGITS;

/// Publisher id of the probes sent to check every receiver is listening.
pub const PROBE: u32 = 99_999;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which publisher sent it.
    pub publisher: u32,
    /// Its place in that publisher's sequence, from 0.
    pub seq: u64,
    /// When it was due to be sent, in nanoseconds since the bench started.
    pub sent_ns: u64,
}

/// Appends the payload for `stamp`, `size` bytes long (at least [`MIN_SIZE`]).
pub fn encode(stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let start = out.len();
    write!(
        out,
        "SB1 {:05} {:010} {:016}",
        stamp.publisher, stamp.seq, stamp.sent_ns
    )
    .expect("writing to a Vec cannot fail");
    let written = out.len() - start;
    out.resize(start + size.max(written), b'.');
}

/// Finds and reads the payload of `size` bytes in `line`, if it holds one.
///
/// Every relay puts the payload last on its line (after a sender prefix,
/// before an optional `\r`), so it is looked for there first; anywhere
/// else only if not found there. The receive loop of the bench spends most
/// of its time here.
pub fn find(line: &[u8], size: usize, finder: &memmem::Finder<'_>) -> Option<Stamp> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let at = match line.len().checked_sub(size) {
        Some(at) if line[at..].starts_with(MARKER) => at,
        _ => finder.find(line)?,
    };
    let fields = line.get(at + MARKER.len()..at + MIN_SIZE)?;
    let publisher = digits(&fields[..PUBLISHER_DIGITS])?;
    let seq = &fields[PUBLISHER_DIGITS + 1..PUBLISHER_DIGITS + 1 + SEQ_DIGITS];
    let seq = digits(&seq[..2])? * 100_000_000 + eight_digits(&seq[2..])?;
    let time = &fields[PUBLISHER_DIGITS + SEQ_DIGITS + 2..];
    let sent_ns = eight_digits(&time[..8])? * 100_000_000 + eight_digits(&time[8..])?;
    Some(Stamp {
        publisher: publisher as u32,
        seq,
        sent_ns,
    })
}

/// A finder for [`MARKER`], built once per receiver.
pub fn finder() -> memmem::Finder<'static> {
    memmem::Finder::new(MARKER)
}

/// Reads exactly eight decimal digits at once, as one little-endian word
/// (the receive loop parses 26 digits per message, millions a second).
fn eight_digits(field: &[u8]) -> Option<u64> {
    let word = u64::from_le_bytes(field.try_into().ok()?);
    // Every byte must be 0x30..=0x39: high nibble 3, and still 3 after adding 6.
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    if word & HIGH != THREES || word.wrapping_add(0x0606_0606_0606_0606) & HIGH != THREES {
        return None;
    }
    let d = word - THREES;
    // Pairs, then quads, then the eight: the first byte is the most significant digit.
    let d = (d.wrapping_mul(10) + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let d = (d.wrapping_mul(100) + (d >> 16)) & 0x0000_FFFF_0000_FFFF;
    let d = (d.wrapping_mul(10_000) + (d >> 32)) & 0xFFFF_FFFF;
    Some(d)
}

/// Reads fixed-width decimal digits, without a branch per digit.
fn digits(field: &[u8]) -> Option<u64> {
    let mut n = 0u64;
    let mut bad = 0u8;
    for &b in field {
        let digit = b.wrapping_sub(b'0');
        bad |= u8::from(digit > 9);
        n = n.wrapping_mul(10).wrapping_add(u64::from(digit));
    }
    (bad == 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_payload_has_the_requested_size_and_reads_back() {
        let stamp = Stamp {
            publisher: 3,
            seq: 42,
            sent_ns: 123_456_789,
        };
        let mut out = Vec::new();
        encode(stamp, 64, &mut out);
        assert_eq!(out.len(), 64);
        let wrapped = [b"[#lobby] guest-1: ".as_slice(), &out].concat();
        assert_eq!(find(&wrapped, 64, &finder()), Some(stamp));
        // Found even where the size is not what was expected.
        assert_eq!(
            find(&[&wrapped[..], b" trailer"].concat(), 64, &finder()),
            Some(stamp)
        );
    }

    #[test]
    fn lines_without_a_payload_are_not_mistaken_for_one() {
        assert_eq!(find(b"* guest-2 joined #lobby", 64, &finder()), None);
        assert_eq!(find(b"SB1 00001 0000000002", 20, &finder()), None);
        assert_eq!(
            find(b"SB1 0000x 0000000002 0000000000000003", 37, &finder()),
            None
        );
    }

    #[test]
    fn eight_digits_read_like_one_at_a_time() {
        for text in ["00000000", "12345678", "99999999", "00000042", "90000001"] {
            assert_eq!(
                eight_digits(text.as_bytes()),
                digits(text.as_bytes()),
                "{text}"
            );
        }
        for bad in ["1234567x", "/2345678", ":2345678", "1234 678"] {
            assert_eq!(eight_digits(bad.as_bytes()), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn eight_digits_agree_with_the_plain_parser(n in 0u64..100_000_000) {
            let text = format!("{n:08}");
            prop_assert_eq!(eight_digits(text.as_bytes()), Some(n));
        }

        #[test]
        fn any_stamp_survives_encoding(publisher in 0u32..100_000, seq in 0u64..10_000_000_000, sent_ns in 0u64..10_000_000_000_000_000, size in 0usize..200) {
            let stamp = Stamp { publisher, seq, sent_ns };
            let mut out = Vec::new();
            encode(stamp, size, &mut out);
            prop_assert_eq!(out.len(), size.max(MIN_SIZE));
            prop_assert_eq!(find(&out, size, &finder()), Some(stamp));
        }
    }
}
