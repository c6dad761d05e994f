//! The newline framing under text and JSON mode: however the stream is cut,
//! the same lines come out, the ones a plain reading of the bytes says; no
//! line is over the cap or holds a newline; the buffer stays bounded by
//! the cap however long the line; nothing is left over at EOF.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{LineDecoder, LineError};
use switchboard_fuzz::{assert_same, feed, short, Case};

/// What the decoder must make of `input`, read the plain way: split at
/// `\n`; a final piece without a newline counts if it is not empty; one
/// `\r` before the end of a line is dropped; a line over the cap is one
/// error.
fn model(input: &[u8], max_line: usize) -> Vec<Result<Bytes, LineError>> {
    let mut pieces: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    if pieces.last().is_some_and(|last| last.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max_line {
                Err(LineError { max_line })
            } else {
                Ok(Bytes::copy_from_slice(line))
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let max_line = case.max_line;
    let decode = |cuts: &[usize]| {
        let mut decoder = LineDecoder::new(max_line);
        feed(case.input, cuts, |buf, eof| decoder.next_line(buf, eof))
    };
    let whole = decode(&[]);
    let split = decode(&case.cuts);
    assert_same(&whole.items, &split.items, &case.cuts);
    assert_same(&model(case.input, max_line), &whole.items, &[]);

    for line in &whole.items {
        match line {
            Ok(line) => {
                assert!(
                    line.len() <= max_line,
                    "a line of {} bytes passed the cap of {max_line}",
                    line.len()
                );
                assert!(
                    !line.contains(&b'\n'),
                    "a line holds a newline: {}",
                    short(line)
                );
            }
            Err(error) => assert_eq!(error.max_line, max_line),
        }
    }
    for fed in [&whole, &split] {
        fed.assert_line_buffer_bounded(max_line);
    }
});
