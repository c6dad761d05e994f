//! JSON mode's decoder (lines, then JSON requests): however the stream is
//! cut, the same inputs come out, ids included; what is said fits in the
//! cap; the buffer stays bounded by the cap; nothing is left over at EOF.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::hub::Framing;
use switchboard::protocol::{Decode, Json, Protocol};
use switchboard_fuzz::{assert_same, feed, said_bodies, Case};

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

    // Escapes only shrink: a text is no longer than its line. A "text" is
    // UTF-8; "bytes" (base64) may be anything, and is a chunk.
    for body in said_bodies(&whole.items, max_line) {
        assert!(
            body.framing == Framing::Chunk || std::str::from_utf8(&body.bytes).is_ok(),
            "a JSON text that is not UTF-8"
        );
    }
    for fed in [&whole, &split] {
        fed.assert_line_buffer_bounded(max_line);
    }
});
