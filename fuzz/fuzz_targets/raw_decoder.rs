//! Raw mode's decoder: however the stream is cut, every input is a message
//! to the current room, and the messages' bodies (and what raw clients are
//! sent of them) put together are the bytes sent, unchanged; one read is at
//! most one message, never an empty one.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, unused here; cuts;
//! bytes), shared with the other decoders so seeds carry over.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::hub::{Body, Event, Framing, Name, RoomName};
use switchboard::protocol::{Decode, Input, Protocol, Raw, Request};
use switchboard_fuzz::{feed, short, Case};

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let from = Name::new("device").expect("a valid name");
    for cuts in [&[][..], &case.cuts] {
        let mut decoder = Raw.decoder();
        let fed = feed(case.input, cuts, |buf, eof| decoder.decode(buf, eof));
        assert_eq!(fed.left, 0, "bytes left in the buffer after EOF");
        assert_eq!(fed.max_buffered, 0, "raw mode buffered bytes");
        // One message per non-empty piece at most: there are cuts + 1 pieces.
        assert!(fed.items.len() <= cuts.len() + 1);
        if cuts.is_empty() {
            assert_eq!(fed.items.len(), usize::from(!case.input.is_empty()));
        }

        let (mut bodies, mut shown) = (Vec::new(), Vec::new());
        for input in fed.items {
            let Input::Request {
                request: Request::Say { room: None, body },
                tag: None,
            } = input
            else {
                panic!("raw input that is not a message: {}", short(&input));
            };
            assert_eq!(body.framing, Framing::Chunk);
            assert!(!body.bytes.is_empty(), "an empty raw message");
            bodies.extend_from_slice(&body.bytes);
            let event = Event::Message {
                offset: None,
                room: RoomName::lobby(),
                from: from.clone(),
                body: Body::chunk(body.bytes),
            };
            shown.extend_from_slice(&Raw::event(&event));
        }
        assert!(bodies == case.input, "the bodies are not the bytes sent");
        assert!(
            shown == case.input,
            "raw clients are not sent the bytes sent"
        );
    }
});
