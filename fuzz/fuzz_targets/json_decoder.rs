//! JSON mode's decoder (lines, then JSON requests): however the stream is
//! cut, the same inputs come out, ids included; what is said fits in the
//! cap; the buffer stays bounded by the cap; nothing is left over at EOF.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{Decode, Input, Json, Protocol, Request};
use switchboard_fuzz::{assert_same, feed, Case};

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let max_line = case.max_line;
    let json = Json::new(max_line);
    let decode = |cuts: &[usize]| {
        let mut decoder = json.decoder();
        feed(case.input, cuts, |buf, eof| decoder.decode(buf, eof))
    };
    let whole = decode(&[]);
    let split = decode(&case.cuts);
    assert_same(&whole.items, &split.items, &case.cuts);

    for input in &whole.items {
        if let Input::Request {
            request: Request::Say { body, .. } | Request::Direct { body, .. },
            ..
        } = input
        {
            // Escapes only shrink: the text is no longer than its line.
            assert!(
                body.bytes.len() <= max_line,
                "a body of {} bytes passed the cap of {max_line}",
                body.bytes.len()
            );
            assert!(
                std::str::from_utf8(&body.bytes).is_ok(),
                "a JSON text that is not UTF-8"
            );
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
