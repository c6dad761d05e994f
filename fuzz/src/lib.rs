//! What the fuzz targets share: how a fuzz input is read as a line cap, the
//! places where a stream cuts it, and the bytes; and feeding those bytes to
//! a decoder as a socket would bring them.
//!
//! Decoder inputs are laid out as
//!
//! ```text
//! byte 0       the line cap (see `max_line`)
//! byte 1       how many cuts follow (taken modulo MAX_CUTS + 1)
//! 2 bytes each the cuts, u16 little-endian (taken modulo input length + 1)
//! the rest     the bytes the client sends
//! ```
//!
//! so a seed is two header bytes (`\x40\x00`: cap 64, no cuts) and text.

use bytes::BytesMut;
use switchboard::hub::Body;
use switchboard::protocol::{Input, Request};

/// Most cuts one input can ask for.
pub const MAX_CUTS: usize = 16;

/// The line cap byte `selector` stands for: 0 to 239 as they are (small
/// caps reach every edge case quickly, 0 included), then powers of two
/// from 256 up, the server's default (64 KiB), and `usize::MAX` (the
/// decoder's arithmetic must saturate).
pub fn max_line(selector: u8) -> usize {
    match selector {
        0..=0xef => selector as usize,
        0xf0..=0xfd => 1 << (selector - 0xf0 + 8),
        0xfe => 64 * 1024,
        0xff => usize::MAX,
    }
}

/// A decoder's fuzz input, read as laid out above.
#[derive(Debug)]
pub struct Case<'a> {
    /// The line cap.
    pub max_line: usize,
    /// Where the stream cuts the input (unsorted, not yet reduced).
    pub cuts: Vec<usize>,
    /// The bytes the client sends.
    pub input: &'a [u8],
}

impl<'a> Case<'a> {
    /// Reads `data`; too short a header reads as zeros.
    pub fn parse(data: &'a [u8]) -> Self {
        let (selector, rest) = data.split_first().map_or((0, data), |(b, r)| (*b, r));
        let (count, mut rest) = rest.split_first().map_or((0, rest), |(b, r)| (*b, r));
        let mut cuts = Vec::new();
        for _ in 0..(count as usize % (MAX_CUTS + 1)) {
            let Some((cut, tail)) = rest.split_first_chunk::<2>() else {
                break;
            };
            cuts.push(u16::from_le_bytes(*cut) as usize);
            rest = tail;
        }
        Case {
            max_line: max_line(selector),
            cuts,
            input: rest,
        }
    }
}

/// What a decoder made of a stream.
#[derive(Debug)]
pub struct Fed<T> {
    /// Everything it produced, in order.
    pub items: Vec<T>,
    /// The most bytes left in the buffer once the decoder had taken all it
    /// could after a piece arrived (before EOF).
    pub max_buffered: usize,
    /// Bytes left in the buffer at the end, after EOF.
    pub left: usize,
}

/// Feeds `input` to `next` as a stream would bring it, in pieces cut at
/// `cuts` (taken modulo its length + 1), then EOF; returns all it produced.
///
/// Every item a decoder produces consumes at least one byte, so more items
/// than bytes means a decoder that never stops: that panics here, at once,
/// rather than as a libFuzzer timeout.
pub fn feed<T>(
    input: &[u8],
    cuts: &[usize],
    next: impl FnMut(&mut BytesMut, bool) -> Option<T>,
) -> Fed<T> {
    feed_at_most(input, cuts, 1, next)
}

/// Like [`feed`], for a decoder that may produce up to `per_byte` items
/// for each byte (a device decoder notes a bad Modbus frame after the
/// packet it is about, which may be one byte long).
pub fn feed_at_most<T>(
    input: &[u8],
    cuts: &[usize],
    per_byte: usize,
    mut next: impl FnMut(&mut BytesMut, bool) -> Option<T>,
) -> Fed<T> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut fed = Fed {
        items: Vec::new(),
        max_buffered: 0,
        left: 0,
    };
    let mut pull = |buf: &mut BytesMut, eof: bool, items: &mut Vec<T>| {
        while let Some(item) = next(buf, eof) {
            items.push(item);
            assert!(
                items.len() <= input.len() * per_byte,
                "{} items from {} bytes: the decoder does not stop",
                items.len(),
                input.len()
            );
        }
    };
    let (mut buf, mut start) = (BytesMut::new(), 0);
    for cut in cuts.into_iter().chain([input.len()]) {
        buf.extend_from_slice(&input[start..cut]);
        start = cut;
        pull(&mut buf, false, &mut fed.items);
        fed.max_buffered = fed.max_buffered.max(buf.len());
    }
    pull(&mut buf, true, &mut fed.items);
    fed.left = buf.len();
    fed
}

impl<T> Fed<T> {
    /// Panics unless a line decoder with cap `max_line` kept its buffer
    /// bounded: once it has taken what it can, what is left is the start
    /// of one line, which fits in the cap and its "\r\n" (or is being
    /// dropped), and nothing is left after EOF.
    pub fn assert_line_buffer_bounded(&self, max_line: usize) {
        assert!(
            self.max_buffered <= max_line.saturating_add(2),
            "{} bytes left buffered with a cap of {max_line}",
            self.max_buffered
        );
        assert_eq!(self.left, 0, "bytes left in the buffer after EOF");
    }
}

/// The bodies of the messages (room or direct) among `inputs`, each checked
/// against the line cap.
pub fn said_bodies(inputs: &[Input], max_line: usize) -> impl Iterator<Item = &Body> {
    inputs.iter().filter_map(move |input| match input {
        Input::Request {
            request: Request::Say { body, .. } | Request::Direct { body, .. },
            ..
        } => {
            assert!(
                body.bytes.len() <= max_line,
                "a body of {} bytes passed the cap of {max_line}",
                body.bytes.len()
            );
            Some(body)
        }
        _ => None,
    })
}

/// Panics, showing where, if `whole` (the input in one piece) and `split`
/// (the same input in pieces) differ. Shows the first difference only:
/// inputs can be 64 KiB.
pub fn assert_same<T: PartialEq + std::fmt::Debug>(whole: &[T], split: &[T], cuts: &[usize]) {
    if whole == split {
        return;
    }
    let at = whole
        .iter()
        .zip(split)
        .position(|(a, b)| a != b)
        .unwrap_or(whole.len().min(split.len()));
    panic!(
        "cut at {cuts:?}, the input decodes differently: {} items whole, {} split; \
         first difference at item {at}:\n  whole: {}\n  split: {}",
        whole.len(),
        split.len(),
        short(whole.get(at)),
        short(split.get(at)),
    );
}

/// `item`'s debug form, cut to a readable length.
pub fn short<T: std::fmt::Debug>(item: T) -> String {
    let mut text = format!("{item:?}");
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}
