//! Newline framing with a length cap, shared by the text and JSON modes.

use bytes::{Buf, Bytes, BytesMut};

/// Splits a byte stream at `\n`, dropping a `\r` before it (telnet sends
/// CRLF). A line longer than the cap is not buffered: it is reported once
/// and discarded as it streams in, up to its newline.
///
/// (tokio-util's `AnyDelimiterCodec` does this too, but allocates its
/// delimiter sets for every connection: 120 bytes per idle client,
/// measured, where this takes 12 and no allocation: every idle client
/// keeps one.)
#[derive(Debug)]
pub struct LineDecoder {
    /// At most `u32::MAX - 2`: a larger cap is that one (a line of 4 GiB
    /// is beyond any memory budget first).
    max_line: u32,
    /// Bytes at the front of the buffer already searched for a newline
    /// (at most the cap and its line ending).
    searched: u32,
    /// Inside an overlong line: drop bytes up to the next newline.
    discarding: bool,
}

/// A line that went over the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineError {
    /// The cap, in bytes.
    pub max_line: usize,
}

impl LineDecoder {
    /// A decoder refusing lines over `max_line` bytes (not counting the
    /// line ending).
    pub fn new(max_line: usize) -> Self {
        LineDecoder {
            max_line: u32::try_from(max_line)
                .unwrap_or(u32::MAX)
                .min(u32::MAX - 2),
            searched: 0,
            discarding: false,
        }
    }

    /// The next line from `buf`, without its line ending. At `eof`, a final
    /// line without a newline counts too.
    pub fn next_line(&mut self, buf: &mut BytesMut, eof: bool) -> Option<Result<Bytes, LineError>> {
        if self.discarding {
            match memchr::memchr(b'\n', buf) {
                Some(end) => {
                    buf.advance(end + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return None;
                }
            }
        }
        let (max_line, searched) = (self.max_line as usize, self.searched as usize);
        // The longest acceptable line, "\r\n" included.
        let window = buf.len().min(max_line + 2);
        match memchr::memchr(b'\n', &buf[searched.min(window)..window]) {
            Some(at) => {
                let end = searched.min(window) + at;
                self.searched = 0;
                let mut line = buf.split_to(end + 1).freeze();
                line.truncate(end);
                Some(self.checked(line))
            }
            None if window > max_line + 1 => {
                // No newline where one had to be: too long. Drop what is
                // known to be part of it, and the rest as it comes.
                self.searched = 0;
                self.discarding = true;
                buf.advance(window);
                Some(Err(LineError { max_line }))
            }
            None if eof && !buf.is_empty() => {
                self.searched = 0;
                let line = buf.split().freeze();
                Some(self.checked(line))
            }
            None => {
                // At most the cap and its line ending: fits.
                self.searched = window as u32;
                None
            }
        }
    }

    fn checked(&self, mut line: Bytes) -> Result<Bytes, LineError> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        let max_line = self.max_line as usize;
        if line.len() > max_line {
            return Err(LineError { max_line });
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` to a decoder in pieces cut at `cuts`, then EOF.
    fn decode_in_pieces(input: &[u8], cuts: &[usize], max: usize) -> Vec<Result<Bytes, LineError>> {
        let mut decoder = LineDecoder::new(max);
        crate::testing::feed_in_pieces(input, cuts, |buf, eof| decoder.next_line(buf, eof))
    }

    #[test]
    fn lines_end_at_newline_and_crlf() {
        let out = decode_in_pieces(b"one\r\ntwo\nthree", &[], 100);
        let lines: Vec<_> = out.into_iter().map(|l| l.unwrap()).collect();
        assert_eq!(lines, vec![&b"one"[..], b"two", b"three"]);
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_the_next_line_survives() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nok\n");
        let out = decode_in_pieces(&input, &[1000, 5000, 70_000], 64);
        assert_eq!(
            out,
            vec![Err(LineError { max_line: 64 }), Ok(Bytes::from("ok"))]
        );
    }

    #[test]
    fn a_line_of_exactly_the_cap_fits_with_or_without_cr() {
        let line = vec![b'y'; 64];
        for ending in [&b"\n"[..], b"\r\n"] {
            let mut input = line.clone();
            input.extend_from_slice(ending);
            assert_eq!(
                decode_in_pieces(&input, &[], 64),
                vec![Ok(Bytes::from(line.clone()))]
            );
        }
        let mut input = vec![b'y'; 65];
        input.push(b'\n');
        assert_eq!(
            decode_in_pieces(&input, &[], 64),
            vec![Err(LineError { max_line: 64 })]
        );
        // The cap and its "\r" arrived, the "\n" not yet: it may still
        // fit, so it waits.
        let mut decoder = LineDecoder::new(64);
        let mut buf = BytesMut::from(&line[..]);
        buf.extend_from_slice(b"\r");
        assert_eq!(decoder.next_line(&mut buf, false), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(
            decoder.next_line(&mut buf, false),
            Some(Ok(Bytes::from(line.clone())))
        );
    }

    #[test]
    fn the_buffer_never_holds_much_more_than_the_cap() {
        let mut decoder = LineDecoder::new(100);
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'z'; 50]);
            while decoder.next_line(&mut buf, false).is_some() {}
            assert!(buf.len() <= 102, "buffered {}", buf.len());
        }
    }

    proptest! {
        #[test]
        fn any_bytes_split_anywhere_decode_the_same(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 1usize..80,
        ) {
            let whole = decode_in_pieces(&input, &[], max);
            let split = decode_in_pieces(&input, &cuts, max);
            prop_assert_eq!(&whole, &split);
            for line in whole.iter().flatten() {
                prop_assert!(line.len() <= max);
                prop_assert!(!line.contains(&b'\n'));
            }
        }
    }
}
