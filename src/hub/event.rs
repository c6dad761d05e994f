//! What the hub hands to a client's outbox: routed events, shared between
//! recipients, and replies already encoded for one client.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::names::{Name, RoomName};

/// The payload of a message, exactly as its sender produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The bytes; not necessarily UTF-8.
    pub bytes: Bytes,
    /// How the sender framed them.
    pub framing: Framing,
}

/// Whether a body is a complete message or a piece of a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A whole message without its terminator (a text line, a JSON `text`).
    /// Stream receivers get it followed by a newline.
    Line,
    /// Bytes as read from a stream (raw mode), passed on unchanged.
    Chunk,
}

impl Body {
    /// A complete message, e.g. one text line.
    pub fn line(bytes: impl Into<Bytes>) -> Self {
        Body {
            bytes: bytes.into(),
            framing: Framing::Line,
        }
    }

    /// A piece of a byte stream.
    pub fn chunk(bytes: impl Into<Bytes>) -> Self {
        Body {
            bytes: bytes.into(),
            framing: Framing::Chunk,
        }
    }
}

/// Something that happened which a client is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `from` said `body` in `room`.
    Message {
        /// The room it was said in.
        room: RoomName,
        /// The sender's name when it was sent.
        from: Name,
        /// What was said.
        body: Body,
    },
    /// `from` sent `body` to this client alone.
    Direct {
        /// The sender's name when it was sent.
        from: Name,
        /// What was said.
        body: Body,
    },
    /// `name` joined `room`.
    Joined {
        /// The room joined.
        room: RoomName,
        /// Who joined.
        name: Name,
    },
    /// `name` left `room`, because of `reason`.
    Left {
        /// The room left.
        room: RoomName,
        /// Who left.
        name: Name,
        /// Why, in a few words ("left", "quit", "slow consumer", ...).
        reason: Arc<str>,
    },
    /// A client sharing a room with this one changed its name.
    Renamed {
        /// The name before.
        old: Name,
        /// The name now.
        new: Name,
    },
}

impl Event {
    /// An estimate of the bytes this event takes in memory and on the wire,
    /// for queue accounting. It does not need to be exact, only proportional.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 48;
        OVERHEAD
            + match self {
                Event::Message { room, from, body } => {
                    room.as_str().len() + from.as_str().len() + body.bytes.len()
                }
                Event::Direct { from, body } => from.as_str().len() + body.bytes.len(),
                Event::Joined { room, name } => room.as_str().len() + name.as_str().len(),
                Event::Left { room, name, reason } => {
                    room.as_str().len() + name.as_str().len() + reason.len()
                }
                Event::Renamed { old, new } => old.as_str().len() + new.as_str().len(),
            }
    }
}

/// Number of encodings a [`Delivery`] can cache: one per wire format.
pub const ENCODING_SLOTS: usize = 4;

/// Events on their way to one or more clients: usually one, or the run of
/// messages one read from a sender produced. Built once and shared by
/// reference among all recipients; each wire format encodes it at most
/// once, on first use, and every recipient of that format shares the
/// encoded bytes: one buffer, and one slice of a vectored write, per
/// recipient, however many messages it holds.
#[derive(Debug)]
pub struct Delivery {
    events: Box<[Event]>,
    weight: usize,
    encoded: [OnceLock<Bytes>; ENCODING_SLOTS],
}

impl Delivery {
    /// Wraps an event for delivery.
    pub fn new(event: Event) -> Arc<Self> {
        Delivery::batch(vec![event])
    }

    /// Wraps events to be delivered together, in order.
    pub fn batch(events: Vec<Event>) -> Arc<Self> {
        Arc::new(Delivery {
            weight: events.iter().map(Event::weight).sum(),
            events: events.into_boxed_slice(),
            encoded: Default::default(),
        })
    }

    /// The events, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events encoded by the wire format owning `slot`
    /// (`slot < ENCODING_SLOTS`), encoding them if no recipient has yet.
    pub fn encoded(&self, slot: usize, encode: impl Fn(&Event, &mut BytesMut)) -> Bytes {
        self.encoded[slot]
            .get_or_init(|| {
                let mut out = BytesMut::with_capacity(self.weight);
                for event in self.events.iter() {
                    encode(event, &mut out);
                }
                out.freeze()
            })
            .clone()
    }
}

/// One item of a client's outbound queue.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An event shared with other recipients, encoded by the writer.
    Shared(Arc<Delivery>),
    /// Bytes already encoded for this client (a reply to its own request).
    Encoded(Bytes),
}

impl Outgoing {
    /// Bytes this item counts for against the queue limits.
    pub fn weight(&self) -> usize {
        match self {
            Outgoing::Shared(d) => d.weight,
            Outgoing::Encoded(b) => b.len(),
        }
    }
}
