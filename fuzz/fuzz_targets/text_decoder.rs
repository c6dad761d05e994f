//! Text mode's decoder (lines, then commands): however the stream is cut,
//! the same inputs come out; what is said is one line within the cap; the
//! buffer stays bounded by the cap; nothing is left over at EOF.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{Decode, Input, Protocol, Text};
use switchboard_fuzz::{assert_same, feed_at_most, said_bodies, Case};

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let max_line = case.max_line;
    let text = Text::new(max_line, None, None);
    let decode = |cuts: &[usize]| {
        let mut decoder = text.decoder();
        // A line that is not text is followed, once, by the not_text
        // notice: one more item than bytes at most.
        feed_at_most(case.input, cuts, 2, |buf, eof| decoder.decode(buf, eof))
    };
    let whole = decode(&[]);
    let split = decode(&case.cuts);
    assert_same(&whole.items, &split.items, &case.cuts);

    for input in &whole.items {
        let (Input::Request { tag, .. } | Input::Invalid { tag, .. }) = input else {
            panic!("a text client was refused: {input:?}");
        };
        assert!(tag.is_none(), "a text input has a JSON id: {input:?}");
    }
    for body in said_bodies(&whole.items, max_line) {
        assert!(!body.bytes.contains(&b'\n'), "a text body holds a newline");
        assert!(!body.bytes.is_empty(), "an empty line was said");
    }
    for fed in [&whole, &split] {
        fed.assert_line_buffer_bounded(max_line);
    }
});
