//! Wire protocols: how bytes from a client become requests to the hub, and
//! how events and replies become bytes for the client.
//!
//! Every mode maps onto the same [`Request`]s and [`Reply`]s, so text, JSON
//! and raw clients share rooms. A mode is a [`Protocol`]: a decoder per
//! connection, and encoders shared by all connections of a listener.

mod json;
mod line;
mod raw;
mod request;
mod text;

pub use json::Json;
pub use line::{LineDecoder, LineError};
pub use raw::Raw;
pub use request::{apply, ProtocolError, Reply, Request};
pub use text::Text;

use bytes::{Bytes, BytesMut};

use crate::hub::{Closing, Event, Name, RoomName};

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
}

/// Splits a connection's incoming bytes into inputs.
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
    /// The decoder state of one connection.
    type Decoder: Decode;

    /// Which of a [`Delivery`](crate::hub::Delivery)'s cached encodings is
    /// this protocol's. Encoding an event may depend on the event alone.
    const SLOT: usize;

    /// A fresh decoder for a new connection.
    fn decoder(&self) -> Self::Decoder;

    /// The first bytes a new client gets.
    fn welcome(&self, name: &Name, room: Option<&RoomName>) -> Bytes;

    /// Appends an event, as this protocol shows it, to `out`.
    fn encode_event(event: &Event, out: &mut BytesMut);

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
}

/// Slot of [`Text`] in a delivery's encoding cache.
pub const TEXT_SLOT: usize = 0;
/// Slot of [`Json`] in a delivery's encoding cache.
pub const JSON_SLOT: usize = 1;
/// Slot of [`Raw`] in a delivery's encoding cache.
pub const RAW_SLOT: usize = 2;
