//! Cutting a device's byte stream into packets (`frame=`), so that text,
//! JSON and WebSocket members get one message per packet, not one per
//! read. A packet keeps its framing bytes (its delimiter, its length
//! prefix): raw members of the room get the stream exactly as it came.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::OptionError;

/// How a stream is cut into packets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Frame {
    /// Each read is a packet, as TCP happened to deliver it.
    #[default]
    None,
    /// A pause of this long between bytes ends a packet, as serial tools
    /// and Modbus RTU do.
    Gap(Duration),
    /// A packet ends with `\n`.
    Line,
    /// A packet starts with its length: that many bytes follow.
    Length(LengthPrefix),
    /// A packet ends with these bytes.
    Delimiter(Bytes),
}

/// A length prefix: its width and byte order; the length counts the bytes
/// after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthPrefix {
    /// 1, 2 or 4 bytes.
    pub width: usize,
    /// Most significant byte first.
    pub big_endian: bool,
}

impl LengthPrefix {
    fn read(self, bytes: &[u8]) -> usize {
        let bytes = &bytes[..self.width];
        let fold = |n: usize, b: &u8| (n << 8) | usize::from(*b);
        if self.big_endian {
            bytes.iter().fold(0, fold)
        } else {
            bytes.iter().rev().fold(0, fold)
        }
    }
}

impl FromStr for Frame {
    type Err = OptionError;
    fn from_str(spec: &str) -> Result<Self, OptionError> {
        let (kind, value) = spec.split_once(':').unwrap_or((spec, ""));
        Ok(match (kind, value) {
            ("none", "") => Frame::None,
            ("line", "") => Frame::Line,
            ("gap", ms) => {
                let duration = match ms.parse::<u64>() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => {
                        ms.parse::<crate::units::Seconds>()
                            .map_err(|error| OptionError::Gap {
                                spec: spec.to_owned(),
                                error: format!("{error:#}"),
                            })?
                            .0
                    }
                };
                if duration < Duration::from_millis(1) || duration > Duration::from_secs(10) {
                    return Err(OptionError::GapRange(spec.to_owned()));
                }
                Frame::Gap(duration)
            }
            ("len", prefix) => {
                let (width, big_endian) = match prefix {
                    "1" => (1, true),
                    "2be" => (2, true),
                    "2le" => (2, false),
                    "4be" => (4, true),
                    "4le" => (4, false),
                    _ => {
                        return Err(OptionError::Frame {
                            what: "length prefix in",
                            spec: spec.to_owned(),
                        })
                    }
                };
                Frame::Length(LengthPrefix { width, big_endian })
            }
            ("delimiter", hex) => {
                let bytes = super::hex::parse(hex).map_err(|error| OptionError::Delimiter {
                    spec: spec.to_owned(),
                    error,
                })?;
                if bytes.len() > 16 {
                    return Err(OptionError::DelimiterLength(spec.to_owned()));
                }
                Frame::Delimiter(bytes.into())
            }
            _ => {
                return Err(OptionError::Frame {
                    what: "",
                    spec: spec.to_owned(),
                })
            }
        })
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::None => f.write_str("none"),
            Frame::Gap(gap) => write!(f, "gap:{}", gap.as_millis()),
            Frame::Line => f.write_str("line"),
            Frame::Length(LengthPrefix { width: 1, .. }) => f.write_str("len:1"),
            Frame::Length(LengthPrefix { width, big_endian }) => {
                write!(f, "len:{width}{}", if *big_endian { "be" } else { "le" })
            }
            Frame::Delimiter(bytes) => {
                write!(
                    f,
                    "delimiter:{}",
                    super::hex::format(bytes).replace(' ', "")
                )
            }
        }
    }
}

impl Frame {
    /// How long a pause ends a packet, for [`Frame::Gap`].
    pub fn gap(&self) -> Option<Duration> {
        match self {
            Frame::Gap(gap) => Some(*gap),
            _ => None,
        }
    }
}

/// One connection's framer: what is left of an oversized length-prefixed
/// packet being skipped. The [`Frame`] is its listener's, given to each
/// call: every device of a fleet holds this, not a copy of it.
#[derive(Debug, Default)]
pub struct Framer {
    /// Bytes still to drop of a packet longer than the limit, its prefix
    /// dropped already: what a prefix of at most 4 bytes announces fits 32
    /// bits (a device's decoder is in every idle device's task).
    skip: u32,
}

impl Framer {
    /// Takes the next packet off the front of `buf`, or `None` if it holds
    /// no complete one. `flush`: the stream paused for the gap, or ended,
    /// so what is left is a packet. A packet never exceeds `max` bytes
    /// (plus a length prefix): longer runs without a delimiter are cut
    /// there, and a length-prefixed packet announced longer is skipped
    /// (logged), so a device holds at most that much unrelayed.
    pub fn next(
        &mut self,
        frame: &Frame,
        buf: &mut BytesMut,
        flush: bool,
        max: usize,
    ) -> Option<Bytes> {
        let max = max.max(1);
        if self.skip > 0 {
            let skipped = buf.len().min(self.skip as usize);
            buf.advance(skipped);
            // `skipped` is at most `skip`, a u32.
            self.skip -= skipped as u32;
            if self.skip > 0 {
                return None;
            }
        }
        if buf.is_empty() {
            return None;
        }
        let cut = match frame {
            Frame::None => Some(buf.len().min(max)),
            Frame::Gap(_) => (flush || buf.len() >= max).then(|| buf.len().min(max)),
            Frame::Line => ended_by(buf, b"\n", flush, max),
            Frame::Delimiter(delimiter) => ended_by(buf, delimiter, flush, max),
            Frame::Length(prefix) => {
                if buf.len() < prefix.width {
                    flush.then_some(buf.len())
                } else {
                    let length = prefix.read(buf);
                    if length > max {
                        tracing::info!(
                            length,
                            max,
                            "skipped a device packet longer than the line limit (max line)"
                        );
                        buf.advance(prefix.width);
                        // A prefix is at most 4 bytes wide.
                        self.skip = u32::try_from(length).unwrap_or(u32::MAX);
                        return self.next(frame, buf, flush, max);
                    }
                    let whole = prefix.width + length;
                    if buf.len() >= whole {
                        Some(whole)
                    } else {
                        flush.then_some(buf.len())
                    }
                }
            }
        }?;
        Some(buf.split_to(cut).freeze())
    }
}

/// Where a packet ending with `delimiter` ends in `buf`, if it does.
fn ended_by(buf: &[u8], delimiter: &[u8], flush: bool, max: usize) -> Option<usize> {
    // Saturating: a cap of usize::MAX (no cap) must not wrap to a small one.
    let within = buf.len().min(max.saturating_add(delimiter.len()));
    match memchr::memmem::find(&buf[..within], delimiter) {
        Some(at) if at + delimiter.len() <= max => Some(at + delimiter.len()),
        _ if buf.len() >= max => Some(max),
        _ => flush.then_some(buf.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packets(frame: &str, input: &[u8], cuts: &[usize], max: usize) -> Vec<Vec<u8>> {
        let (frame, mut framer) = (frame.parse().unwrap(), Framer::default());
        crate::testing::feed_in_pieces(input, cuts, |buf, eof| framer.next(&frame, buf, eof, max))
            .into_iter()
            .map(|packet| packet.to_vec())
            .collect()
    }

    #[test]
    fn every_frame_spec_reads_back_as_written() {
        for spec in [
            "none",
            "gap:20",
            "line",
            "len:1",
            "len:2be",
            "len:2le",
            "len:4be",
            "len:4le",
            "delimiter:0D0A",
        ] {
            assert_eq!(spec.parse::<Frame>().unwrap().to_string(), spec);
        }
        assert_eq!(
            "gap:20ms".parse::<Frame>().unwrap(),
            Frame::Gap(Duration::from_millis(20))
        );
        for bad in [
            "gap:0",
            "gap:x",
            "len:3",
            "delimiter:",
            "delimiter:0",
            "lines",
            "gap:1h",
        ] {
            assert!(bad.parse::<Frame>().is_err(), "{bad}");
        }
    }

    /// Found by the device_decoder fuzz target: the search window was
    /// `max + delimiter length`, which overflowed with no cap at all.
    #[test]
    fn delimited_packets_are_cut_with_a_cap_of_usize_max() {
        for frame in ["line", "delimiter:0D0A"] {
            let input = b"a\r\nbb\r\nccc";
            let cut = packets(frame, input, &[2], usize::MAX);
            assert_eq!(cut.concat(), input, "{frame}");
            assert_eq!(cut.len(), 3, "{frame}: {cut:?}");
        }
    }

    #[test]
    fn the_limits_of_a_frame_spec_are_inclusive() {
        for good in ["gap:1", "gap:1ms", "gap:10s", "gap:10000"] {
            assert!(good.parse::<Frame>().is_ok(), "{good}");
        }
        for bad in ["gap:0", "gap:10001", "gap:11s"] {
            assert!(bad.parse::<Frame>().is_err(), "{bad}");
        }
        let sixteen = "00".repeat(16);
        assert!(format!("delimiter:{sixteen}").parse::<Frame>().is_ok());
        assert!(format!("delimiter:{sixteen}00").parse::<Frame>().is_err());
    }

    #[test]
    fn only_gap_framing_waits_for_a_pause() {
        let gap = |spec: &str| spec.parse::<Frame>().unwrap().gap();
        assert_eq!(gap("gap:20"), Some(Duration::from_millis(20)));
        for other in ["none", "line", "len:1", "delimiter:7E"] {
            assert_eq!(gap(other), None, "{other}");
        }
    }

    #[test]
    fn a_skipped_packet_is_skipped_across_reads_and_what_follows_it_is_kept() {
        let (frame, mut framer) = ("len:1".parse().unwrap(), Framer::default());
        // Announced 5 bytes with a cap of 2: skipped, 3 of them now, 2 later.
        let mut buf = BytesMut::from(&[5u8, 1, 2, 3][..]);
        assert_eq!(framer.next(&frame, &mut buf, false, 2), None);
        assert!(buf.is_empty());
        buf.extend_from_slice(&[4, 5, 1, b'!']);
        assert_eq!(
            framer.next(&frame, &mut buf, false, 2).as_deref(),
            Some(&[1u8, b'!'][..])
        );
    }

    #[test]
    fn a_packet_of_exactly_the_cap_is_kept_and_an_empty_one_cut_at_once() {
        // Announced length equal to the cap: relayed, not skipped.
        let input = [4, b'a', b'b', b'c', b'd'];
        assert_eq!(packets("len:1", &input, &[], 4), vec![input.to_vec()]);
        // A zero-length packet is whole as soon as its prefix is there,
        // before anything else arrives.
        let (frame, mut framer) = ("len:2be".parse().unwrap(), Framer::default());
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(
            framer.next(&frame, &mut buf, false, 16).as_deref(),
            Some(&[0u8, 0][..])
        );
    }

    #[test]
    fn a_length_prefix_reads_every_byte_in_its_order() {
        let body = vec![b'x'; 0x0102];
        for (frame, prefix) in [("len:2be", vec![0x01, 0x02]), ("len:2le", vec![0x02, 0x01])] {
            let input = [prefix.clone(), body.clone(), prefix, b"!".to_vec()].concat();
            let cut = packets(frame, &input, &[], 1024);
            assert_eq!(cut[0].len(), 2 + 0x0102, "{frame}");
        }
        let four = [[0, 0, 1, 0].as_slice(), &[b'y'; 256]].concat();
        assert_eq!(packets("len:4be", &four, &[], 1024)[0].len(), 4 + 256);
    }

    #[test]
    fn length_prefixed_packets_are_cut_whole_and_an_oversized_one_skipped() {
        let input = [
            0, 2, b'h', b'i', 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, b'!',
        ];
        assert_eq!(
            packets("len:2be", &input, &[1, 3, 7], 4),
            vec![vec![0, 2, b'h', b'i'], vec![0, 1, b'!']]
        );
        assert_eq!(
            packets("len:2le", &[2, 0, 7, 8], &[], 64),
            vec![vec![2, 0, 7, 8]]
        );
    }

    #[test]
    fn delimited_packets_keep_their_delimiter_and_long_runs_are_cut() {
        assert_eq!(
            packets("line", b"a\nbb\ncccccc", &[], 4),
            vec![
                b"a\n".to_vec(),
                b"bb\n".to_vec(),
                b"cccc".to_vec(),
                b"cc".to_vec()
            ]
        );
        assert_eq!(
            packets("delimiter:0D0A", b"T=21\r\nT=22\r\n", &[3, 5, 6], 64),
            vec![b"T=21\r\n".to_vec(), b"T=22\r\n".to_vec()]
        );
    }

    fn frames() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "gap:5",
            "line",
            "len:1",
            "len:2be",
            "len:2le",
            "len:4be",
            "delimiter:7E",
            "delimiter:0D0A",
        ])
    }

    proptest! {
        /// However TCP splits the stream, the same packets come out
        /// (`none` excepted: its packets are the reads), none longer than
        /// the limit, and (skipped packets aside) nothing is lost.
        #[test]
        fn any_split_gives_the_same_packets(
            frame in frames(),
            input in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 10, 13, 0x7E, b'a']), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in 1usize..80,
        ) {
            let whole = packets(frame, &input, &[], max);
            let split = packets(frame, &input, &cuts, max);
            prop_assert_eq!(&whole, &split);
            for packet in &whole {
                prop_assert!(!packet.is_empty() && packet.len() <= max + 4, "{} bytes", packet.len());
            }
            if !frame.starts_with("len") {
                prop_assert_eq!(whole.concat(), input);
            }
        }

        #[test]
        fn each_read_is_a_packet_with_frame_none(input in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..100) {
            let out = packets("none", &input, &[], max);
            prop_assert_eq!(out.concat(), input);
        }
    }
}
