//! What a node has received from each of the others, channel by channel:
//! where each sequence stands, so that what went missing is counted.

use std::collections::HashMap;

use super::frame::Header;
use crate::hub::NodeName;

/// How a frame stands against what came before it on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameOrder {
    /// The next one (or the first heard of its sequence).
    InOrder,
    /// `missed` frames before it never arrived.
    AfterGap { missed: u64 },
    /// Already seen (or older than what a picture read since covers).
    Stale,
}

/// Where each (node, channel) sequence stands.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    last: HashMap<(NodeName, String), Position>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    epoch: u64,
    stream: u64,
    seq: u64,
}

impl Sequences {
    /// Records `header`, received on `channel`.
    pub(super) fn arrive(&mut self, channel: &str, header: &Header) -> FrameOrder {
        let now = Position {
            epoch: header.epoch,
            stream: header.stream,
            seq: header.seq,
        };
        let key = (header.origin.clone(), channel.to_owned());
        match self.last.get_mut(&key) {
            Some(last) if last.epoch == now.epoch && last.stream == now.stream => {
                if now.seq <= last.seq {
                    FrameOrder::Stale
                } else {
                    let missed = now.seq - last.seq - 1;
                    last.seq = now.seq;
                    if missed == 0 {
                        FrameOrder::InOrder
                    } else {
                        FrameOrder::AfterGap { missed }
                    }
                }
            }
            Some(last) => {
                *last = now;
                FrameOrder::InOrder
            }
            None => {
                self.last.insert(key, now);
                FrameOrder::InOrder
            }
        }
    }

    /// Sets where `origin`'s sequence on `channel` stands: everything up
    /// to `seq` of `epoch` is known (read from its picture).
    pub(super) fn set(&mut self, origin: &NodeName, channel: &str, epoch: u64, seq: u64) {
        self.last.insert(
            (origin.clone(), channel.to_owned()),
            Position {
                epoch,
                stream: 0,
                seq,
            },
        );
    }

    /// Forgets every sequence on `channel` (this node left it).
    pub(super) fn forget_channel(&mut self, channel: &str) {
        self.last.retain(|(_, c), _| c != channel);
    }

    /// Forgets every sequence of `origin` (it is gone).
    pub(super) fn forget_node(&mut self, origin: &str) {
        self.last.retain(|(node, _), _| &**node != origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: u64, stream: u64, seq: u64) -> Header {
        Header {
            origin: "a".into(),
            epoch,
            stream,
            seq,
        }
    }

    #[test]
    fn a_sequence_in_order_has_no_gaps_and_a_skip_is_counted() {
        let mut seqs = Sequences::default();
        assert_eq!(seqs.arrive("room", &header(1, 1, 5)), FrameOrder::InOrder);
        assert_eq!(seqs.arrive("room", &header(1, 1, 6)), FrameOrder::InOrder);
        assert_eq!(
            seqs.arrive("room", &header(1, 1, 9)),
            FrameOrder::AfterGap { missed: 2 }
        );
        assert_eq!(seqs.arrive("room", &header(1, 1, 8)), FrameOrder::Stale);
    }

    #[test]
    fn a_new_epoch_or_stream_starts_afresh() {
        let mut seqs = Sequences::default();
        seqs.arrive("room", &header(1, 1, 50));
        assert_eq!(seqs.arrive("room", &header(1, 2, 1)), FrameOrder::InOrder);
        assert_eq!(seqs.arrive("room", &header(2, 1, 1)), FrameOrder::InOrder);
    }

    #[test]
    fn a_picture_read_covers_what_it_includes() {
        let mut seqs = Sequences::default();
        seqs.set(&"a".into(), "events", 1, 10);
        assert_eq!(seqs.arrive("events", &header(1, 0, 9)), FrameOrder::Stale);
        assert_eq!(
            seqs.arrive("events", &header(1, 0, 11)),
            FrameOrder::InOrder
        );
    }
}
