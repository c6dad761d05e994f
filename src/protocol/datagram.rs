//! A raw or device protocol over UDP: what it decodes is its inner
//! protocol's (each datagram is one read), and what its clients are sent is
//! the raw bytes of each message behind a 4-byte length, so that the UDP
//! transport can send each message as a datagram of its own however many
//! one delivery holds (the lines a sender's one read carried).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Input, Protocol, ProtocolError, Raw, Reply, Tag, UDP_SLOT};
use crate::hub::{Closing, Event, Name, RoomName};

/// `P` (raw, or a device listener's), its messages framed for datagrams.
#[derive(Debug, Clone)]
pub struct Datagrams<P>(pub P);

/// Appends `message` as the UDP transport reads it back: its length (u32,
/// big-endian), then its bytes.
fn frame(message: &[u8], out: &mut BytesMut) {
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(message);
}

/// Splits what [`Datagrams`] encoded back into messages; a torn frame (it
/// cannot happen: items are written whole) ends the split.
pub fn messages(mut framed: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = framed.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        let message = rest.get(..len)?;
        framed = &rest[len..];
        Some(message)
    })
}

impl<P: Protocol> Protocol for Datagrams<P> {
    type Decoder = P::Decoder;
    const SLOT: usize = UDP_SLOT;

    fn decoder(&self) -> P::Decoder {
        self.0.decoder()
    }

    fn decode(&self, decoder: &mut P::Decoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        self.0.decode(decoder, buf, eof)
    }

    fn gap(&self) -> Option<Duration> {
        self.0.gap()
    }

    fn welcome(&self, name: &Name, room: Option<&RoomName>) -> Bytes {
        self.0.welcome(name, room)
    }

    fn encode_event(event: &Event, out: &mut BytesMut) {
        let mut message = BytesMut::new();
        Raw::encode_event(event, &mut message);
        if !message.is_empty() {
            frame(&message, out);
        }
    }

    fn reply(&self, reply: &Reply, tag: &Tag) -> Bytes {
        self.0.reply(reply, tag)
    }

    fn error(&self, error: &ProtocolError, tag: &Tag) -> Bytes {
        self.0.error(error, tag)
    }

    fn goodbye(&self, closing: &Closing) -> Bytes {
        self.0.goodbye(closing)
    }

    fn refusal(&self, reason: &str) -> Bytes {
        self.0.refusal(reason)
    }

    fn register_within(&self) -> Option<Duration> {
        self.0.register_within()
    }

    fn credentials_in_data(&self) -> bool {
        self.0.credentials_in_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Body, Delivery};

    #[test]
    fn each_message_of_a_delivery_comes_back_whole_for_a_datagram_of_its_own() {
        let message = |body: Body| Event::Message {
            room: RoomName::lobby(),
            from: Name::new("alice").unwrap(),
            body,
            offset: None,
        };
        let delivery = Delivery::batch(vec![
            message(Body::line("first")),
            Event::Notice {
                code: "x",
                text: "raw clients see no notices".into(),
            },
            message(Body::chunk(Bytes::from_static(b"\x01\x02"))),
        ]);
        let framed = delivery.encoded(Datagrams::<Raw>::ENCODING);
        let split: Vec<&[u8]> = messages(&framed).collect();
        assert_eq!(split, [&b"first\n"[..], &b"\x01\x02"[..]]);
    }
}
