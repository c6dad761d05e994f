//! Wire protocols: how bytes from a client become requests to the hub, and
//! how events and replies become bytes for the client.
//!
//! Every mode maps onto the same [`Request`]s and [`Reply`]s, so text, JSON
//! and raw clients share rooms. A mode is a [`Protocol`]: a decoder per
//! connection, and encoders shared by all connections of a listener.

mod datagram;
mod device;
mod json;
mod line;
mod raw;
mod request;
pub mod terminal;
mod text;

pub use datagram::{messages as datagram_messages, Datagrams};
pub use device::Device;
pub use json::Json;
pub use line::{LineDecoder, LineError};
pub use raw::Raw;
pub use request::{apply, ErrorCode, ProtocolError, Registration, Reply, Request, Secret};
pub use text::{Text, MAX_LINES_PER_MESSAGE};

use bytes::{Bytes, BytesMut};

use crate::hub::{Closing, Encoding, Event, Name, RoomName};

/// A JSON request's `id`, echoed in its reply; `None` for other modes.
/// Boxed: it is rare, and inputs are small without it.
pub type Tag = Option<Box<serde_json::Value>>;

/// What a decoder found in a client's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A request to carry out.
    Request {
        /// The request.
        request: Request,
        /// The JSON `id` to echo.
        tag: Tag,
    },
    /// Input that could not be understood; the client is told why and the
    /// connection goes on.
    Invalid {
        /// What was wrong.
        error: ProtocolError,
        /// The JSON `id` to echo, if one could be read.
        tag: Tag,
    },
    /// Input after which nothing more from the client is taken: a device
    /// whose registration is wrong (why, for the log). The connection is
    /// closed when its time to register is up.
    Refused(String),
}

/// Splits a connection's incoming bytes into inputs: the decoders that
/// need nothing of their listener (text, JSON, raw).
pub trait Decode: Send {
    /// Takes the next input off the front of `buf`, or `None` if `buf` holds
    /// no complete one. `eof`: no more bytes will come, so a trailing
    /// incomplete line counts as complete.
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Option<Input>;
}

/// A wire protocol: a decoder per connection, encoders shared by all
/// connections of a listener. An encoder returns empty bytes for what its
/// clients are not shown (raw clients get no notices).
pub trait Protocol: Send + Sync + 'static {
    /// The decoder state of one connection: only what is that
    /// connection's. The listener's settings are the protocol's, given to
    /// [`Protocol::decode`]; every idle client holds its decoder.
    type Decoder: Send;

    /// Takes the next input of a connection whose decoder is `decoder` off
    /// the front of `buf` (see [`Decode::decode`]).
    fn decode(&self, decoder: &mut Self::Decoder, buf: &mut BytesMut, eof: bool) -> Option<Input>;

    /// How long a pause in the client's input ends what it has sent so
    /// far (`frame=gap:MS`): after it, `decode` is called as at `eof`.
    fn gap(&self) -> Option<std::time::Duration> {
        None
    }

    /// Which of a [`Delivery`](crate::hub::Delivery)'s cached encodings is
    /// this protocol's. Encoding an event may depend on the event alone.
    const SLOT: usize;

    /// A fresh decoder for a new connection.
    fn decoder(&self) -> Self::Decoder;

    /// The first bytes a new client gets.
    fn welcome(&self, name: &Name, room: Option<&RoomName>) -> Bytes;

    /// Appends an event, as this protocol shows it, to `out`.
    fn encode_event(event: &Event, out: &mut BytesMut);

    /// This protocol's encoding, as the hub needs it to queue events for
    /// its clients.
    const ENCODING: Encoding = Encoding {
        slot: Self::SLOT,
        encode: Self::encode_event,
    };

    /// Its encoding, and the one a client may switch to (text's hex
    /// display); by default the same.
    const ENCODINGS: [Encoding; 2] = [Self::ENCODING, Self::ENCODING];

    /// An event, as this protocol shows it.
    fn event(event: &Event) -> Bytes {
        let mut out = BytesMut::new();
        Self::encode_event(event, &mut out);
        out.freeze()
    }

    /// The answer to a carried-out request.
    fn reply(&self, reply: &Reply, tag: &Tag) -> Bytes;

    /// The answer to a refused request or bad input.
    fn error(&self, error: &ProtocolError, tag: &Tag) -> Bytes;

    /// The last bytes before the server closes the connection.
    fn goodbye(&self, closing: &Closing) -> Bytes;

    /// What a client turned away at the door (limits) is told.
    fn refusal(&self, reason: &str) -> Bytes;

    /// The first bytes a client gets on a listener that asks for
    /// credentials (`?auth=required`): how to give them, and by when.
    fn auth_required(&self, _within: std::time::Duration) -> Bytes {
        Bytes::new()
    }

    /// How long a new client has to register (a device listener with
    /// `register=`); `None`: nothing to register, and the client joins its
    /// listener's room as it arrives (a device that registers joins its
    /// room then).
    fn register_within(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether the client's first line of data is its token (raw devices,
    /// which have no commands), rather than a request to authenticate.
    fn credentials_in_data(&self) -> bool {
        false
    }
}

/// Slot of [`Text`] in a delivery's encoding cache.
pub const TEXT_SLOT: usize = 0;
/// Slot of [`Json`] in a delivery's encoding cache.
pub const JSON_SLOT: usize = 1;
/// Slot of [`Raw`] in a delivery's encoding cache.
pub const RAW_SLOT: usize = 2;
/// Slot of [`Text`] with its hex display on (`/hex on`).
pub const TEXT_HEX_SLOT: usize = 3;
/// Slot of [`Datagrams`]: raw messages framed for a UDP peer.
pub const UDP_SLOT: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything `protocol`'s decoder makes of `input` fed in pieces cut
    /// at `cuts`, then EOF.
    fn decode_all<P: Protocol>(protocol: &P, input: &[u8], cuts: &[usize]) -> Vec<Input> {
        let mut decoder = protocol.decoder();
        crate::testing::feed_in_pieces(input, cuts, |buf, eof| {
            protocol.decode(&mut decoder, buf, eof)
        })
    }

    /// Bytes that look like protocol input often enough to reach the parsers.
    fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop_oneof![
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"/".to_vec()),
            Just(b"/nick ".to_vec()),
            Just(b"/msg a ".to_vec()),
            Just(b"/join #".to_vec()),
            Just(br#"{"type":"say","text":"#.to_vec()),
            Just(br#"{"type":"join","room":"x","id":"#.to_vec()),
            Just(b"}".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        proptest::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn text_input_split_anywhere_decodes_the_same_and_never_panics(
            input in wire_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let text = Text::new(64, None, None);
            prop_assert_eq!(decode_all(&text, &input, &[]), decode_all(&text, &input, &cuts));
        }

        #[test]
        fn json_input_split_anywhere_decodes_the_same_and_never_panics(
            input in wire_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let json = Json::new(64);
            prop_assert_eq!(decode_all(&json, &input, &[]), decode_all(&json, &input, &cuts));
        }
    }
}
