//! What nodes publish to each other, as bytes: one frame per Redis
//! publication.
//!
//! Every frame starts with the same header: a version, its kind, the node
//! that sent it, that node's boot epoch and a sequence number, counted per
//! (node, channel), by which a receiver sees what it missed. The rest is
//! the kind's fields, strings and byte strings length-prefixed. Compact
//! and cheap to write and read, because a room's every message crosses
//! as one.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::hub::{Body, Change, ClientId, ClientPlace, Framing, Name, NodeName, Offset, RoomName};

/// The frame format's version: a node refuses frames of another.
const VERSION: u8 = 1;

/// Where the sequence number sits in a frame sent by `origin`.
pub(super) fn seq_offset(origin: &str) -> usize {
    // version, kind, origin (u16 length and bytes), epoch, stream.
    1 + 1 + 2 + origin.len() + 8 + 8
}

/// Who sent a frame, and its place in its channel's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    /// The node that published it.
    pub origin: NodeName,
    /// That node's boot epoch: a node restarted under the same name is a
    /// new sequence.
    pub epoch: u64,
    /// Which run of the channel's sequence: a node numbers a room's
    /// messages afresh each time it has members there again.
    pub stream: u64,
    /// Its number in the (origin, channel, stream) sequence, from 1.
    pub seq: u64,
}

/// What a frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Payload {
    /// A client said `bodies` in `room`.
    Message {
        room: RoomName,
        from: Name,
        bodies: Vec<Body>,
    },
    /// A client (`from_id` of the sending node) said `bodies` in `room`,
    /// at `at` (Unix ms), appended to the room's shared history: the
    /// first at `first`, which the append script writes at the end of
    /// the frame as it publishes it (`None` in a frame not yet sent).
    Kept {
        room: RoomName,
        from: Name,
        from_id: ClientId,
        at: u64,
        bodies: Vec<Body>,
        first: Option<Offset>,
    },
    /// A client sent `body` to client `to` (named `to_name`) of the node
    /// whose inbox this is.
    Direct {
        to: ClientId,
        to_name: Name,
        from: Name,
        body: Body,
    },
    /// A client's name or rooms changed.
    Change(Change),
    /// The sender rewrote its picture of itself in Redis (it joined, or
    /// came back after a cut): read it again.
    Resync,
    /// `node` is gone (it shut down, or its lease ran out), for `reason`.
    Gone { node: NodeName, reason: String },
    /// A device connected to the sender under `name`, which client `to`
    /// of the node whose inbox this is holds: its stale connection, to be
    /// closed.
    ReplaceDevice {
        to: ClientId,
        name: Name,
        /// What the new registration proved ([`crate::hub::DeviceProof`]).
        proof: u8,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadFrame {
    #[error("frame ends early")]
    Short,
    #[error("frame format version {0}, this node speaks {VERSION}")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("bad name in frame: {0}")]
    Name(String),
    #[error("text in frame is not UTF-8")]
    Utf8,
}

const MESSAGE: u8 = 1;
const DIRECT: u8 = 2;
const CONNECTED: u8 = 3;
const JOINED: u8 = 4;
const LEFT: u8 = 5;
const RENAMED: u8 = 6;
const DEPARTED: u8 = 7;
const RESYNC: u8 = 8;
const GONE: u8 = 9;
const REPLACE_DEVICE: u8 = 10;
const KEPT: u8 = 11;

/// Writes a frame of `payload` with `header`; its sequence number can be
/// set later, at [`seq_offset`].
pub(super) fn encode(header: &Header, payload: &Payload) -> BytesMut {
    let mut out = BytesMut::with_capacity(64 + size_hint(payload));
    let kind = match payload {
        Payload::Message { .. } => MESSAGE,
        Payload::Kept { .. } => KEPT,
        Payload::Direct { .. } => DIRECT,
        Payload::Change(Change::Connected { .. }) => CONNECTED,
        Payload::Change(Change::Joined { .. }) => JOINED,
        Payload::Change(Change::Left { .. }) => LEFT,
        Payload::Change(Change::Renamed { .. }) => RENAMED,
        Payload::Change(Change::Departed { .. }) => DEPARTED,
        Payload::Resync => RESYNC,
        Payload::Gone { .. } => GONE,
        Payload::ReplaceDevice { .. } => REPLACE_DEVICE,
    };
    out.put_u8(VERSION);
    out.put_u8(kind);
    put_str(&mut out, &header.origin);
    out.put_u64(header.epoch);
    out.put_u64(header.stream);
    out.put_u64(header.seq);
    match payload {
        Payload::Message { room, from, bodies } => {
            put_str(&mut out, room.as_str());
            put_str(&mut out, from.as_str());
            put_bodies(&mut out, bodies);
        }
        Payload::Kept {
            room,
            from,
            from_id,
            at,
            bodies,
            first,
        } => {
            put_str(&mut out, room.as_str());
            put_str(&mut out, from.as_str());
            out.put_u64(from_id.get());
            out.put_u64(*at);
            put_bodies(&mut out, bodies);
            if let Some(first) = first {
                out.put_slice(first.to_string().as_bytes());
            }
        }
        Payload::Direct {
            to,
            to_name,
            from,
            body,
        } => {
            out.put_u64(to.get());
            put_str(&mut out, to_name.as_str());
            put_str(&mut out, from.as_str());
            put_body(&mut out, body);
        }
        Payload::Change(change) => match change {
            Change::Connected { id, name } | Change::Departed { id, name } => {
                out.put_u64(id.get());
                put_str(&mut out, name.as_str());
            }
            Change::Joined {
                id,
                name,
                room,
                first,
            } => {
                out.put_u64(id.get());
                put_str(&mut out, name.as_str());
                put_str(&mut out, room.as_str());
                out.put_u8(*first as u8);
            }
            Change::Left {
                id,
                name,
                room,
                reason,
                last,
            } => {
                out.put_u64(id.get());
                put_str(&mut out, name.as_str());
                put_str(&mut out, room.as_str());
                put_str(&mut out, reason);
                out.put_u8(*last as u8);
            }
            Change::Renamed { id, old, new } => {
                out.put_u64(id.get());
                put_str(&mut out, old.as_str());
                put_str(&mut out, new.as_str());
            }
        },
        Payload::Resync => {}
        Payload::Gone { node, reason } => {
            put_str(&mut out, node);
            put_str(&mut out, reason);
        }
        Payload::ReplaceDevice { to, name, proof } => {
            out.put_u64(to.get());
            put_str(&mut out, name.as_str());
            out.put_u8(*proof);
        }
    }
    out
}

/// Sets the stream and sequence number of a frame `origin` wrote.
pub(super) fn set_position(frame: &mut BytesMut, origin: &str, stream: u64, seq: u64) {
    let at = seq_offset(origin) - 8;
    frame[at..at + 8].copy_from_slice(&stream.to_be_bytes());
    set_seq(frame, origin, seq);
}

/// Sets the sequence number of a frame `origin` wrote.
pub(super) fn set_seq(frame: &mut BytesMut, origin: &str, seq: u64) {
    let at = seq_offset(origin);
    frame[at..at + 8].copy_from_slice(&seq.to_be_bytes());
}

fn size_hint(payload: &Payload) -> usize {
    match payload {
        Payload::Message { bodies, .. } | Payload::Kept { bodies, .. } => {
            bodies.iter().map(|b| 5 + b.bytes.len()).sum()
        }
        Payload::Direct { body, .. } => body.bytes.len(),
        _ => 64,
    }
}

fn put_str(out: &mut BytesMut, text: &str) {
    // Names, rooms, reasons and node names are far shorter than 64 KiB.
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

/// A count of bodies, then the bodies.
fn put_bodies(out: &mut BytesMut, bodies: &[Body]) {
    out.put_u32(bodies.len() as u32);
    for body in bodies {
        put_body(out, body);
    }
}

fn put_body(out: &mut BytesMut, body: &Body) {
    out.put_u8(match body.framing {
        Framing::Line => 0,
        Framing::Chunk => 1,
    });
    out.put_u32(body.bytes.len() as u32);
    out.put_slice(&body.bytes);
}

/// Reads a frame; bodies share `frame`'s buffer.
pub(super) fn decode(mut frame: Bytes) -> Result<(Header, Payload), BadFrame> {
    let version = get_u8(&mut frame)?;
    if version != VERSION {
        return Err(BadFrame::Version(version));
    }
    let kind = get_u8(&mut frame)?;
    let origin: NodeName = get_string(&mut frame)?.into();
    let epoch = get_u64(&mut frame)?;
    let stream = get_u64(&mut frame)?;
    let seq = get_u64(&mut frame)?;
    let header = Header {
        origin,
        epoch,
        stream,
        seq,
    };
    let payload = match kind {
        MESSAGE => {
            let room = get_room(&mut frame)?;
            let from = get_name(&mut frame)?;
            let bodies = get_bodies(&mut frame)?;
            Payload::Message { room, from, bodies }
        }
        KEPT => {
            let room = get_room(&mut frame)?;
            let from = get_name(&mut frame)?;
            let from_id = ClientId::new(get_u64(&mut frame)?);
            let at = get_u64(&mut frame)?;
            let bodies = get_bodies(&mut frame)?;
            // What the append script wrote after it: `EPOCH-SEQ`.
            let first = std::str::from_utf8(&frame)
                .map_err(|_| BadFrame::Utf8)?
                .parse::<Offset>()
                .map_err(|_| BadFrame::Short)?;
            Payload::Kept {
                room,
                from,
                from_id,
                at,
                bodies,
                first: Some(first),
            }
        }
        DIRECT => Payload::Direct {
            to: ClientId::new(get_u64(&mut frame)?),
            to_name: get_name(&mut frame)?,
            from: get_name(&mut frame)?,
            body: get_body(&mut frame)?,
        },
        CONNECTED | DEPARTED => {
            let id = ClientId::new(get_u64(&mut frame)?);
            let name = get_name(&mut frame)?;
            Payload::Change(if kind == CONNECTED {
                Change::Connected { id, name }
            } else {
                Change::Departed { id, name }
            })
        }
        JOINED => Payload::Change(Change::Joined {
            id: ClientId::new(get_u64(&mut frame)?),
            name: get_name(&mut frame)?,
            room: get_room(&mut frame)?,
            first: get_u8(&mut frame)? != 0,
        }),
        LEFT => Payload::Change(Change::Left {
            id: ClientId::new(get_u64(&mut frame)?),
            name: get_name(&mut frame)?,
            room: get_room(&mut frame)?,
            reason: get_string(&mut frame)?.into(),
            last: get_u8(&mut frame)? != 0,
        }),
        RENAMED => Payload::Change(Change::Renamed {
            id: ClientId::new(get_u64(&mut frame)?),
            old: get_name(&mut frame)?,
            new: get_name(&mut frame)?,
        }),
        RESYNC => Payload::Resync,
        GONE => Payload::Gone {
            node: get_string(&mut frame)?.into(),
            reason: get_string(&mut frame)?,
        },
        REPLACE_DEVICE => Payload::ReplaceDevice {
            to: ClientId::new(get_u64(&mut frame)?),
            name: get_name(&mut frame)?,
            // Absent from an older node's frame: the least proof.
            proof: if frame.has_remaining() {
                frame.get_u8()
            } else {
                0
            },
        },
        other => return Err(BadFrame::Kind(other)),
    };
    Ok((header, payload))
}

/// Writes a client's place (its name and rooms), as a node keeps it in
/// Redis for the others to read.
pub(super) fn encode_place(name: &Name, rooms: &[RoomName]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + name.as_str().len() + rooms.len() * 16);
    put_str(&mut out, name.as_str());
    out.put_u16(rooms.len().min(u16::MAX as usize) as u16);
    for room in rooms.iter().take(u16::MAX as usize) {
        put_str(&mut out, room.as_str());
    }
    out.freeze()
}

/// Reads what [`encode_place`] wrote, for client `id`.
pub(super) fn decode_place(id: ClientId, mut place: Bytes) -> Result<ClientPlace, BadFrame> {
    let name = get_name(&mut place)?;
    let count = get_u16(&mut place)?;
    let mut rooms = Vec::with_capacity(count as usize);
    for _ in 0..count {
        rooms.push(get_room(&mut place)?);
    }
    Ok(ClientPlace { id, name, rooms })
}

fn need(frame: &Bytes, n: usize) -> Result<(), BadFrame> {
    if frame.remaining() < n {
        Err(BadFrame::Short)
    } else {
        Ok(())
    }
}

fn get_u8(frame: &mut Bytes) -> Result<u8, BadFrame> {
    need(frame, 1)?;
    Ok(frame.get_u8())
}

fn get_u16(frame: &mut Bytes) -> Result<u16, BadFrame> {
    need(frame, 2)?;
    Ok(frame.get_u16())
}

fn get_u32(frame: &mut Bytes) -> Result<u32, BadFrame> {
    need(frame, 4)?;
    Ok(frame.get_u32())
}

fn get_u64(frame: &mut Bytes) -> Result<u64, BadFrame> {
    need(frame, 8)?;
    Ok(frame.get_u64())
}

fn get_bytes(frame: &mut Bytes, len: usize) -> Result<Bytes, BadFrame> {
    need(frame, len)?;
    Ok(frame.split_to(len))
}

fn get_string(frame: &mut Bytes) -> Result<String, BadFrame> {
    let len = get_u16(frame)? as usize;
    let bytes = get_bytes(frame, len)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| BadFrame::Utf8)
}

fn get_name(frame: &mut Bytes) -> Result<Name, BadFrame> {
    Name::new(&get_string(frame)?).map_err(|e| BadFrame::Name(e.to_string()))
}

fn get_room(frame: &mut Bytes) -> Result<RoomName, BadFrame> {
    RoomName::new(&get_string(frame)?).map_err(|e| BadFrame::Name(e.to_string()))
}

/// A count of bodies, then the bodies.
fn get_bodies(frame: &mut Bytes) -> Result<Vec<Body>, BadFrame> {
    let count = get_u32(frame)? as usize;
    // Each body takes at least 5 bytes: a count beyond that is a lie.
    if count > frame.remaining() / 5 {
        return Err(BadFrame::Short);
    }
    (0..count).map(|_| get_body(frame)).collect()
}

fn get_body(frame: &mut Bytes) -> Result<Body, BadFrame> {
    let framing = match get_u8(frame)? {
        0 => Framing::Line,
        _ => Framing::Chunk,
    };
    let len = get_u32(frame)? as usize;
    Ok(Body {
        bytes: get_bytes(frame, len)?,
        framing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(seq: u64) -> Header {
        Header {
            origin: "node-a".into(),
            epoch: 7,
            stream: 3,
            seq,
        }
    }

    fn name(n: &str) -> Name {
        Name::new(n).unwrap()
    }

    fn room(n: &str) -> RoomName {
        RoomName::new(n).unwrap()
    }

    #[test]
    fn every_kind_of_frame_reads_back_as_written() {
        let payloads = vec![
            Payload::Message {
                room: room("lobby"),
                from: name("alice"),
                bodies: vec![Body::line("hello"), Body::chunk(vec![0u8, 0xff, 0x10])],
            },
            Payload::Direct {
                to: ClientId::new(42),
                to_name: name("bob"),
                from: name("小明"),
                body: Body::line("psst"),
            },
            Payload::Change(Change::Connected {
                id: ClientId::new(1),
                name: name("guest-1-a"),
            }),
            Payload::Change(Change::Joined {
                id: ClientId::new(1),
                name: name("alice"),
                room: room("lobby"),
                first: true,
            }),
            Payload::Change(Change::Left {
                id: ClientId::new(1),
                name: name("alice"),
                room: room("lobby"),
                reason: "slow consumer".into(),
                last: false,
            }),
            Payload::Change(Change::Renamed {
                id: ClientId::new(1),
                old: name("a"),
                new: name("b"),
            }),
            Payload::Change(Change::Departed {
                id: ClientId::new(1),
                name: name("b"),
            }),
            Payload::Resync,
            Payload::Gone {
                node: "node-b".into(),
                reason: "shut down".into(),
            },
            Payload::ReplaceDevice {
                to: ClientId::new(12),
                name: name("dev-861234567890123"),
                proof: 2,
            },
        ];
        for payload in payloads {
            let mut frame = encode(&header(0), &payload);
            set_seq(&mut frame, "node-a", 99);
            let (read, back) = decode(frame.freeze()).unwrap();
            assert_eq!(read, header(99));
            assert_eq!(back, payload);
        }
    }

    #[test]
    fn a_place_reads_back_as_written() {
        let rooms = vec![room("lobby"), room("dev-1")];
        let place = decode_place(ClientId::new(5), encode_place(&name("alice"), &rooms)).unwrap();
        assert_eq!(place.name, name("alice"));
        assert_eq!(place.rooms, rooms);
    }

    proptest! {
        #[test]
        fn any_bytes_are_refused_or_read_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(bytes.clone()));
            let _ = decode_place(ClientId::new(1), Bytes::from(bytes));
        }

        #[test]
        fn a_cut_frame_is_refused(cut in 0usize..40) {
            let payload = Payload::Message { room: room("lobby"), from: name("alice"), bodies: vec![Body::line("hello")] };
            let frame = encode(&header(1), &payload).freeze();
            let cut = cut.min(frame.len() - 1);
            prop_assert!(decode(frame.slice(..cut)).is_err());
        }
    }
}
