//! A room's history kept by the cluster (Redis, with `--cluster`), and
//! this node's copy of it.
//!
//! In a cluster that shares histories, a message said in a room that
//! keeps one is not delivered where it was said: it is appended to the
//! cluster's history, which gives it its position, and every node (the
//! one it was said on too) delivers it as it comes back, at that
//! position ([`Hub::kept_arrived`]). So every node numbers a room's
//! messages alike, and a client can resume on any node from a position
//! another gave it.
//!
//! Each node's [`Log`] of the room is then a copy of the cluster's. While
//! the node hears the room (it has members there, or a read holds it),
//! the copy stays whole: every message comes back in order. Whenever it
//! may have missed some (no member left to hear them, a lost connection,
//! a hole in the positions), it is marked incomplete, and the next reader
//! asks Redis for the room's history first ([`Hub::fresh_history`]),
//! holding the room while it joins, so that nothing falls between what
//! was read and what is heard.
//!
//! While the cluster is out of reach, messages are delivered where they
//! were said, without a position, and the copy remembers from where: a
//! client resuming from before that is told that it lost them
//! ([`GapReason::Unrecorded`](super::GapReason::Unrecorded)).

use std::sync::Arc;
use std::time::SystemTime;

use super::{Kept, Log, Offset, RoomHistory};
use crate::hub::backplane::SharedHistory;
use crate::hub::event::{Body, Delivery, Event};
use crate::hub::info::unix_millis;
use crate::hub::names::{Name, RoomName};
use crate::hub::room::Room;
use crate::hub::{ClientId, Hub};

/// What became of a message that came back from the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::hub) enum Accepted {
    /// Kept at its position: deliver it.
    New,
    /// The copy has it already (a read brought it first): every member
    /// here has it.
    Known,
    /// Kept, after a hole of this many messages the copy never heard
    /// while it was whole: they were lost on the way.
    AfterHole(u64),
}

impl Log {
    /// Keeps `kept`, which the cluster numbered, in this node's copy.
    pub(in crate::hub) fn accept(&mut self, history: &RoomHistory, kept: Kept) -> Accepted {
        let offset = kept.offset;
        let mut accepted = Accepted::New;
        if offset.epoch == self.epoch && offset.seq < self.next {
            return Accepted::Known;
        }
        if offset.epoch != self.epoch || offset.seq > self.next {
            if offset.epoch == self.epoch && self.mirror.complete {
                accepted = Accepted::AfterHole(offset.seq - self.next);
            }
            self.forget(history);
            // A history that starts here is all there is of it.
            self.mirror.complete = offset.seq == 1;
            if offset.epoch != self.epoch {
                self.mirror.unrecorded_before = None;
            }
            self.epoch = offset.epoch;
        }
        self.mirror.arrivals += 1;
        self.keep(history, kept, unix_millis(SystemTime::now()));
        accepted
    }

    /// Takes in what a read of the cluster's history found, `arrivals`
    /// being how many messages had come back when the read was asked
    /// for: the copy is whole after it.
    pub(in crate::hub) fn merge(
        &mut self,
        history: &RoomHistory,
        read: SharedHistory,
        arrivals: u64,
    ) {
        let newer = self.mirror.arrivals != arrivals;
        let Some(epoch) = read.epoch else {
            // Nothing kept there: whatever this copy holds is stale,
            // unless it began after the read (a first message).
            if newer && self.kept.front().is_some_and(|k| k.offset.seq == 1) {
                self.mirror.complete = true;
                return;
            }
            self.forget(history);
            self.epoch = 0;
            self.next = 1;
            self.mirror.unrecorded_before = None;
            self.mirror.complete = true;
            return;
        };
        if epoch != self.epoch && newer {
            // The history was lost again after the read: what came back
            // since is newer than what was read.
            return;
        }
        // Everything up to the read's last message came back before the
        // read answered; what this copy heard after it is kept.
        let upto = read.next.saturating_sub(1);
        let later: Vec<Kept> = if epoch == self.epoch {
            self.kept
                .iter()
                .filter(|kept| kept.offset.seq > upto)
                .cloned()
                .collect()
        } else {
            self.mirror.unrecorded_before = None;
            Vec::new()
        };
        self.forget(history);
        self.epoch = epoch;
        self.next = read.kept.first().map_or(read.next, |k| k.offset.seq);
        let now = unix_millis(SystemTime::now());
        for kept in read.kept.into_iter().chain(later) {
            if kept.offset.seq != self.next {
                // Not one run: keep what follows the hole only.
                self.forget(history);
            }
            self.keep(history, kept, now);
        }
        self.next = self.next.max(read.next);
        self.mirror.complete = true;
    }

    /// Messages are being said here that the cluster will never keep.
    pub(in crate::hub) fn mark_unrecorded(&mut self) {
        if self.mirror.unrecorded_before.is_none() {
            self.mirror.unrecorded_before = Some(self.next);
        }
    }

    /// The copy may miss messages from now on: the next reader reads the
    /// cluster's first.
    pub(in crate::hub) fn mark_incomplete(&mut self) {
        self.mirror.complete = false;
    }

    /// Drops every kept message (the position stays where it was).
    fn forget(&mut self, history: &RoomHistory) {
        while self.pop(history).is_some() {}
    }
}

/// A node hearing a room because a client is about to join it with a
/// fresh copy of its history: released (and the copy marked incomplete,
/// if nobody here is in the room) when dropped.
#[must_use = "the room is heard only while the hold is kept"]
pub struct HistoryHold {
    hub: Hub,
    room: RoomName,
    history: Arc<RoomHistory>,
}

impl std::fmt::Debug for HistoryHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryHold")
            .field("room", &self.room)
            .finish()
    }
}

impl Drop for HistoryHold {
    fn drop(&mut self) {
        // Marked before the node may stop hearing the room: never a
        // moment when the copy is taken for whole and nobody hears it.
        if !self.hub.has_local_room(&self.room) {
            self.history.log().mark_incomplete();
        }
        self.hub.backplane().release_history(&self.room);
    }
}

impl Hub {
    /// In a cluster sharing histories, makes this node's copy of `room`'s
    /// history whole (reading the cluster's, if it may miss some) and
    /// keeps hearing the room while the returned hold lives: a client
    /// joining then is shown, and resumes from, what every node would
    /// show it. `None` when there is nothing to do (a server on its own,
    /// a room without history, a copy already whole) or the cluster is
    /// out of reach (the copy is then used as it is).
    pub async fn fresh_history(&self, room: &RoomName) -> Option<HistoryHold> {
        if !self.shares_history() {
            return None;
        }
        let history = self.shared.histories.for_room(room)?;
        let arrivals = {
            let log = history.log();
            if log.mirror.complete {
                return None;
            }
            log.mirror.arrivals
        };
        let limit = self.shared.histories.rules().max_messages;
        match self.backplane().read_history(room, limit).await {
            Ok(read) => {
                let hold = HistoryHold {
                    hub: self.clone(),
                    room: room.clone(),
                    history: history.clone(),
                };
                history.log().merge(&history, read, arrivals);
                Some(hold)
            }
            Err(error) => {
                tracing::debug!(%room, %error, "cannot read the room's history from the cluster: showing this node's copy");
                None
            }
        }
    }

    /// Whether this node has members in `room`.
    fn has_local_room(&self, room: &RoomName) -> bool {
        self.directory().rooms.contains_key(room)
    }

    /// `bodies`, said by `from` in `room`, came back from the cluster's
    /// history, the first at `first`, said at `at` (Unix milliseconds):
    /// kept in this node's copy and delivered to the room's members here
    /// (but `sender`, when it was said here). Returns how many messages
    /// before it were lost on the way (this node's copy has a hole).
    pub fn kept_arrived(
        &self,
        room: &RoomName,
        from: Name,
        sender: Option<ClientId>,
        at: u64,
        bodies: Vec<Body>,
        first: Offset,
    ) -> u64 {
        let Some(room) = self.directory().rooms.get(room).cloned() else {
            return 0;
        };
        let missed = room.say_kept(&from, bodies, first, at, sender);
        if missed > 0 {
            tracing::warn!(room = %room.name, missed, "messages of a room's shared history never reached this node");
            self.notify_room(
                &room.name,
                "messages_lost",
                &format!(
                    "{missed} message(s) of #{} never reached this server of the cluster",
                    room.name
                ),
            );
        }
        missed
    }

    /// `bodies`, said here by `sender` in `room`, could not be appended to
    /// the cluster's history (it went out of reach): delivered here alone,
    /// unrecorded, as a server on its own would.
    pub fn unrecorded(&self, room: &RoomName, from: &Name, sender: ClientId, bodies: Vec<Body>) {
        let Some(room) = self.directory().rooms.get(room).cloned() else {
            return;
        };
        let mut congested = Vec::new();
        room.say_unrecorded(from, bodies, Some(sender), &mut congested);
    }

    /// This node may have missed messages of every room (its connection
    /// to the cluster was lost): each copy is read again before it is
    /// used.
    pub fn shared_history_interrupted(&self) {
        for history in self.shared.histories.all() {
            history.log().mark_incomplete();
        }
    }
}

impl Room {
    /// `bodies` came back from the cluster's history, the first at
    /// `first`: kept in the room's copy and delivered to every member but
    /// `except`. Returns how many messages were lost before them.
    pub(in crate::hub) fn say_kept(
        &self,
        from: &Name,
        bodies: Vec<Body>,
        first: Offset,
        at: u64,
        except: Option<ClientId>,
    ) -> u64 {
        let inside = self.members();
        let mut log = inside
            .history
            .as_ref()
            .map(|history| (history, history.log()));
        let mut missed = 0;
        let mut events = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.into_iter().enumerate() {
            let offset = Offset {
                epoch: first.epoch,
                seq: first.seq + i as u64,
            };
            if let Some((history, log)) = log.as_mut() {
                let kept = Kept {
                    offset,
                    at,
                    from: from.clone(),
                    body: Body {
                        bytes: bytes::Bytes::copy_from_slice(&body.bytes),
                        framing: body.framing,
                    },
                };
                match log.accept(history, kept) {
                    Accepted::Known => continue,
                    Accepted::AfterHole(n) => missed += n,
                    Accepted::New => {}
                }
            }
            events.push(Event::Message {
                room: self.name.clone(),
                from: from.clone(),
                body,
                offset: Some(offset),
            });
        }
        if !events.is_empty() {
            self.count_messages(events.len());
            let mut congested = Vec::new();
            self.deliver(&inside, &Delivery::batch(events), except, &mut congested);
        }
        drop(log);
        missed
    }

    /// `from` says `bodies` here while the cluster sharing the room's
    /// history is out of reach: delivered without positions, and the
    /// room's copy remembers that it lost them.
    pub(in crate::hub) fn say_unrecorded(
        &self,
        from: &Name,
        bodies: Vec<Body>,
        except: Option<ClientId>,
        congested: &mut Vec<Arc<crate::hub::Member>>,
    ) -> usize {
        if let Some(history) = &self.members().history {
            history.log().mark_unrecorded();
        }
        self.broadcast_messages(from, bodies, except, congested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::history::{GapReason, Histories, HistoryRules};

    const E: u64 = 0xe;

    fn copy() -> (Histories, Arc<RoomHistory>) {
        let histories = Histories::new(HistoryRules {
            max_messages: 10,
            ..HistoryRules::off()
        });
        let history = histories
            .for_room(&RoomName::new("ops").unwrap())
            .expect("keeps one");
        (histories, history)
    }

    fn kept(epoch: u64, seq: u64) -> Kept {
        Kept {
            offset: Offset { epoch, seq },
            at: unix_millis(SystemTime::now()),
            from: Name::new("alice").unwrap(),
            body: Body::line(format!("m{seq}")),
        }
    }

    fn seqs(history: &RoomHistory) -> Vec<u64> {
        history.log().kept.iter().map(|k| k.offset.seq).collect()
    }

    fn read(epoch: u64, seqs: std::ops::RangeInclusive<u64>) -> SharedHistory {
        SharedHistory {
            epoch: Some(epoch),
            next: seqs.end() + 1,
            kept: seqs.map(|seq| kept(epoch, seq)).collect(),
        }
    }

    #[test]
    fn a_copy_takes_the_clusters_positions_and_skips_what_it_has() {
        let (_histories, history) = copy();
        let mut log = history.log();
        assert_eq!(log.accept(&history, kept(E, 1)), Accepted::New);
        assert_eq!(log.accept(&history, kept(E, 2)), Accepted::New);
        assert_eq!(log.accept(&history, kept(E, 2)), Accepted::Known);
        assert_eq!(log.last(), Some(Offset { epoch: E, seq: 2 }));
        assert!(log.mirror.complete, "it heard the history from its start");
    }

    #[test]
    fn a_hole_in_a_whole_copy_is_reported_and_the_copy_starts_again() {
        let (_histories, history) = copy();
        let mut log = history.log();
        log.accept(&history, kept(E, 1));
        assert_eq!(log.accept(&history, kept(E, 5)), Accepted::AfterHole(3));
        drop(log);
        assert_eq!(seqs(&history), [5]);
        assert!(!history.log().mirror.complete);
        // A hole in a copy that was not whole is no news.
        assert_eq!(history.log().accept(&history, kept(E, 9)), Accepted::New);
    }

    #[test]
    fn a_read_fills_the_copy_and_keeps_what_came_back_after_it() {
        let (_histories, history) = copy();
        let arrivals = history.log().mirror.arrivals;
        // Heard while the read was out: the read covers up to 4.
        history.log().accept(&history, kept(E, 4));
        history.log().accept(&history, kept(E, 5));
        history.log().merge(&history, read(E, 1..=4), arrivals);
        assert_eq!(seqs(&history), [1, 2, 3, 4, 5]);
        let log = history.log();
        assert!(log.mirror.complete);
        assert_eq!(log.last(), Some(Offset { epoch: E, seq: 5 }));
    }

    #[test]
    fn a_read_of_nothing_empties_a_stale_copy_and_a_new_history_is_whole_from_its_start() {
        let (_histories, history) = copy();
        for seq in 1..=3 {
            history.log().accept(&history, kept(E, seq));
        }
        history.log().mark_incomplete();
        let arrivals = history.log().mirror.arrivals;
        let nothing = SharedHistory {
            epoch: None,
            next: 1,
            kept: Vec::new(),
        };
        history.log().merge(&history, nothing, arrivals);
        assert!(seqs(&history).is_empty());
        assert!(history.log().mirror.complete);
        assert_eq!(history.log().accept(&history, kept(0xf, 1)), Accepted::New);
        assert!(history.log().mirror.complete);
        let resume = history.log().since(Offset { epoch: E, seq: 3 });
        assert_eq!(resume.gap.map(|g| g.reason), Some(GapReason::Epoch));
    }

    #[test]
    fn a_read_older_than_a_history_lost_meanwhile_leaves_the_newer_copy() {
        let (_histories, history) = copy();
        let arrivals = history.log().mirror.arrivals;
        history.log().accept(&history, kept(0xf, 1));
        history.log().merge(&history, read(E, 1..=3), arrivals);
        assert_eq!(history.log().epoch(), 0xf);
        assert_eq!(seqs(&history), [1]);
    }

    #[test]
    fn a_client_resuming_from_before_an_outage_is_told_it_lost_what_was_said_then() {
        let (_histories, history) = copy();
        history.log().accept(&history, kept(E, 1));
        history.log().accept(&history, kept(E, 2));
        history.log().mark_unrecorded();
        history.log().accept(&history, kept(E, 3));
        let resume = history.log().since(Offset { epoch: E, seq: 2 });
        let gap = resume.gap.expect("a gap");
        assert_eq!(gap.reason, GapReason::Unrecorded);
        assert_eq!(gap.from, Some(Offset { epoch: E, seq: 3 }));
        assert_eq!(resume.kept.len(), 1);
        // From after it, nothing was lost.
        assert_eq!(history.log().since(Offset { epoch: E, seq: 3 }).gap, None);
    }
}
