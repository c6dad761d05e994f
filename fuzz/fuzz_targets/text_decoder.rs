//! Text mode's decoder (lines, then commands): however the stream is cut,
//! the same inputs come out; what is said is one line within the cap; the
//! buffer stays bounded by the cap; nothing is left over at EOF.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{Decode, Input, Protocol, Request, Text};
use switchboard_fuzz::{assert_same, feed, Case};

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let max_line = case.max_line;
    let text = Text::new(max_line, None, None);
    let decode = |cuts: &[usize]| {
        let mut decoder = text.decoder();
        feed(case.input, cuts, |buf, eof| decoder.decode(buf, eof))
    };
    let whole = decode(&[]);
    let split = decode(&case.cuts);
    assert_same(&whole.items, &split.items, &case.cuts);

    for input in &whole.items {
        let (Input::Request { tag, .. } | Input::Invalid { tag, .. }) = input;
        assert!(tag.is_none(), "a text input has a JSON id: {input:?}");
        if let Input::Request {
            request: Request::Say { body, .. } | Request::Direct { body, .. },
            ..
        } = input
        {
            assert!(
                body.bytes.len() <= max_line,
                "a body of {} bytes passed the cap of {max_line}",
                body.bytes.len()
            );
            assert!(!body.bytes.contains(&b'\n'), "a text body holds a newline");
            assert!(!body.bytes.is_empty(), "an empty line was said");
        }
    }
    for fed in [&whole, &split] {
        assert!(
            fed.max_buffered <= max_line.saturating_add(2),
            "{} bytes left buffered with a cap of {max_line}",
            fed.max_buffered
        );
        assert_eq!(fed.left, 0, "bytes left in the buffer after EOF");
    }
});
