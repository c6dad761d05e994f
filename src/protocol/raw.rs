//! The raw mode: transparent relay for devices. Every read from the socket
//! is one message to the listener's room; raw clients receive message bytes
//! and nothing else: no framing, no welcome, no notices.

use bytes::{Bytes, BytesMut};

use super::{Decode, Input, Protocol, ProtocolError, Reply, Request, Tag, RAW_SLOT};
use crate::hub::{Body, Closing, Event, Framing, Name, RoomName};

/// The raw protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

/// Turns whatever bytes arrived into one message.
#[derive(Debug)]
pub struct RawDecoder;

impl Decode for RawDecoder {
    fn decode(&mut self, buf: &mut BytesMut, _eof: bool) -> Option<Input> {
        if buf.is_empty() {
            return None;
        }
        Some(Input::Request {
            request: Request::Say {
                room: None,
                body: Body::chunk(buf.split().freeze()),
            },
            tag: None,
        })
    }
}

impl Protocol for Raw {
    type Decoder = RawDecoder;
    const SLOT: usize = RAW_SLOT;

    fn decode(&self, decoder: &mut Self::Decoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        decoder.decode(buf, eof)
    }

    fn decoder(&self) -> RawDecoder {
        RawDecoder
    }

    fn welcome(&self, _name: &Name, _room: Option<&RoomName>) -> Bytes {
        Bytes::new()
    }

    fn credentials_in_data(&self) -> bool {
        true
    }

    fn encode_event(event: &Event, out: &mut BytesMut) {
        let body = match event {
            Event::Message { body, .. } | Event::Direct { body, .. } => body,
            _ => return,
        };
        out.extend_from_slice(&body.bytes);
        if body.framing == Framing::Line {
            out.extend_from_slice(b"\n");
        }
    }

    fn reply(&self, _reply: &Reply, _tag: &Tag) -> Bytes {
        Bytes::new()
    }

    fn error(&self, _error: &ProtocolError, _tag: &Tag) -> Bytes {
        Bytes::new()
    }

    fn goodbye(&self, _closing: &Closing) -> Bytes {
        Bytes::new()
    }

    fn refusal(&self, _reason: &str) -> Bytes {
        Bytes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn raw_bytes_pass_through_unchanged_however_they_are_split(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut decoder = RawDecoder;
            let inputs = crate::testing::feed_in_pieces(&input, &cuts, |buf, eof| decoder.decode(buf, eof));
            let mut out = Vec::new();
            for input in inputs {
                let Input::Request { request: Request::Say { body, .. }, .. } = input else {
                    panic!("raw input is always a message");
                };
                let event = Event::Message { offset: None, room: RoomName::lobby(), from: Name::new("d").unwrap(), body };
                out.extend_from_slice(&Raw::event(&event));
            }
            prop_assert_eq!(out, input);
        }
    }
}
