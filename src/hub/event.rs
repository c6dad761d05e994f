//! What the hub hands to a client's outbox: routed events, shared between
//! recipients, and replies already encoded for one client.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::history::{Gap, Kept, Offset};
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
        /// Its position in the room's history, if the room keeps one.
        offset: Option<Offset>,
    },
    /// A message the room kept, shown again: to a client that asked for
    /// the room's history, or resumes, or joins where joiners are shown it.
    Replayed {
        /// The room it was said in.
        room: RoomName,
        /// The message, when it was said, and its position.
        kept: Kept,
    },
    /// The end of what a room's history showed a client.
    HistoryEnd {
        /// The room.
        room: RoomName,
        /// How many messages were shown.
        count: usize,
    },
    /// A resuming client lost messages: the room no longer has all that
    /// came after its offset.
    Gap {
        /// The room.
        room: RoomName,
        /// Where it asked to resume, and where it resumes.
        gap: Gap,
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
    /// Something the server tells its clients about itself: e.g. that the
    /// cluster it is part of is degraded, or that messages of a room may
    /// have been lost between servers.
    Notice {
        /// A stable machine-readable code (`cluster_degraded`, ...).
        code: &'static str,
        /// What happened, for a person.
        text: Arc<str>,
    },
}

/// Spare capacity an encoded delivery may keep without being trimmed.
const TRIM_SLACK: usize = 4096;

/// Number of encodings a [`Delivery`] can cache: one per wire format.
pub const ENCODING_SLOTS: usize = 5;

/// How one wire format turns events into bytes: which of a
/// [`Delivery`]'s cached encodings is its own, and the encoder. The hub
/// encodes each delivery for a recipient's format as it queues it, so a
/// queue counts exactly the bytes its client will be sent.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    /// The cache slot, `< ENCODING_SLOTS`, one per wire format.
    pub slot: usize,
    /// Appends an event as the format shows it; nothing for events its
    /// clients are not shown.
    pub encode: fn(&Event, &mut BytesMut),
}

/// Events on their way to one or more clients: usually one, or the run of
/// messages one read from a sender produced. Built once and shared by
/// reference among all recipients; each wire format encodes it at most
/// once, on first use, and every recipient of that format shares the
/// encoded bytes: one buffer, and one slice of a vectored write, per
/// recipient, however many messages it holds.
#[derive(Debug)]
pub struct Delivery {
    events: Box<[Event]>,
    encoded: [OnceLock<Bytes>; ENCODING_SLOTS],
}

impl Delivery {
    /// Wraps an event for delivery.
    pub fn new(event: Event) -> Self {
        Delivery::batch(vec![event])
    }

    /// Wraps events to be delivered together, in order.
    pub fn batch(events: Vec<Event>) -> Self {
        Delivery {
            events: events.into_boxed_slice(),
            encoded: Default::default(),
        }
    }

    /// The events, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Roughly how many bytes the events take in any wire format: the
    /// body, the names, and a little framing.
    fn size_hint(&self) -> usize {
        let size = |event: &Event| match event {
            Event::Message {
                room, from, body, ..
            } => body.bytes.len() + room.as_str().len() + from.as_str().len() + 24,
            Event::Replayed { room, kept } => {
                kept.body.bytes.len() + room.as_str().len() + kept.from.as_str().len() + 48
            }
            Event::Direct { from, body } => body.bytes.len() + from.as_str().len(),
            _ => 64,
        };
        self.events.iter().map(|event| 32 + size(event)).sum()
    }

    /// The events as `encoding` shows them, encoded once for all the
    /// recipients that share it.
    pub fn encoded(&self, encoding: Encoding) -> Bytes {
        self.encoded[encoding.slot]
            .get_or_init(|| {
                let mut out = BytesMut::with_capacity(self.size_hint());
                for event in self.events.iter() {
                    (encoding.encode)(event, &mut out);
                }
                // Queues count what they will send; what the buffer holds
                // beyond it must not be much more. A guess far off (a 64 KiB
                // body shown as 17 KB of text) is trimmed; small messages,
                // where a copy would cost more than it saves, are not.
                if out.capacity() - out.len() > TRIM_SLACK.max(out.len() / 2) {
                    Bytes::copy_from_slice(&out)
                } else {
                    out.freeze()
                }
            })
            .clone()
    }
}
