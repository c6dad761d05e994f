//! What rooms keep of what was said in them: a bounded history per room,
//! each message at a position ([`Offset`]) a client can resume from.
//!
//! A room's history outlives its members (a dashboard opening after the
//! last device reported still finds the reading), so the histories live
//! in [`Histories`], by room name, and a room holds its own while it
//! exists. Each is bounded three ways (messages, bytes, age) by the
//! [`HistoryRules`] in force, and all of them together by the server's
//! memory budget: the sweep evicts the oldest history before it cuts any
//! client off.
//!
//! Positions are an epoch and a sequence number. The sequence numbers a
//! room's messages in order; the epoch changes whenever the room's
//! history is lost (a restart, or every kept message expiring), so a
//! client resuming from a position of an earlier epoch is told that it
//! lost something rather than being handed a seam that does not exist.

use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use super::event::{Body, Delivery, Event};
use super::info::unix_millis;
use super::names::{Name, RoomName};
use super::Hub;
use crate::sync::lock;

mod replay;
mod saving;
mod shared;
#[cfg(test)]
mod tests;

pub use replay::{Offload, Replay};
pub(in crate::hub) use replay::{Offloader, Prepared};
use saving::Saving;
pub use saving::{Restored, Saved, Unsaved};
pub use shared::HistoryHold;

/// A kept message's position in its room's history: `EPOCH-SEQ` on the
/// wire, e.g. `9f0c4e1a2b3d5f60-42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Offset {
    /// Which history of the room: new whenever the room's history is lost.
    pub epoch: u64,
    /// The message's number in that history, from 1.
    pub seq: u64,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.seq)
    }
}

/// Why an offset was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a position in a room's history: offsets look like 9f0c4e1a2b3d5f60-42, as messages carry them")]
pub struct BadOffset(pub String);

impl FromStr for Offset {
    type Err = BadOffset;

    fn from_str(text: &str) -> Result<Self, BadOffset> {
        let bad = || BadOffset(text.chars().take(64).collect());
        let (epoch, seq) = text.split_once('-').ok_or_else(bad)?;
        if epoch.is_empty() || epoch.len() > 16 || seq.is_empty() || seq.starts_with('+') {
            return Err(bad());
        }
        Ok(Offset {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One message a room keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Where it is in the room's history.
    pub offset: Offset,
    /// When it was said, in Unix milliseconds.
    pub at: u64,
    /// Who said it, by the name it had then.
    pub from: Name,
    /// What was said.
    pub body: Body,
}

/// Bytes a kept message costs beyond its body and its sender's name: the
/// entry, its share of the queue, the body's allocation.
pub const KEPT_OVERHEAD: usize = 96;

impl Kept {
    /// Bytes of memory it holds, as the limits and the budget count them.
    pub fn weight(&self) -> usize {
        KEPT_OVERHEAD + self.body.bytes.len() + self.from.as_str().len()
    }
}

/// Decides which rooms keep a history (every room, or those matching the
/// `--history-rooms` patterns): the hub knows no pattern syntax.
pub type RoomFilter = Arc<dyn Fn(&RoomName) -> bool + Send + Sync>;

/// What rooms keep: `--history`, `--history-age`, `--history-bytes`,
/// `--history-rooms`. Changed by a reload.
#[derive(Clone)]
pub struct HistoryRules {
    /// Most messages a room keeps; 0: rooms keep nothing.
    pub max_messages: usize,
    /// Oldest a kept message may be.
    pub max_age: Duration,
    /// Most bytes one room's history may hold (bodies, names, overhead).
    pub max_bytes: usize,
    /// Which rooms keep a history (`None`: every room).
    pub rooms: Option<RoomFilter>,
}

impl fmt::Debug for HistoryRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryRules")
            .field("max_messages", &self.max_messages)
            .field("max_age", &self.max_age)
            .field("max_bytes", &self.max_bytes)
            .field("rooms", &self.rooms.as_ref().map(|_| "filter"))
            .finish()
    }
}

impl HistoryRules {
    /// No history: the default.
    pub fn off() -> Self {
        HistoryRules {
            max_messages: 0,
            max_age: Duration::from_secs(3600),
            max_bytes: 1 << 20,
            rooms: None,
        }
    }

    /// Whether `room` keeps a history under these rules.
    pub fn keeps(&self, room: &RoomName) -> bool {
        self.max_messages > 0 && self.rooms.as_ref().is_none_or(|keeps| keeps(room))
    }
}

/// The numeric limits, copied where each append reads them.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_messages: usize,
    max_age_ms: u64,
    max_bytes: usize,
}

impl From<&HistoryRules> for Bounds {
    fn from(rules: &HistoryRules) -> Self {
        Bounds {
            max_messages: rules.max_messages,
            max_age_ms: u64::try_from(rules.max_age.as_millis()).unwrap_or(u64::MAX),
            max_bytes: rules.max_bytes,
        }
    }
}

/// Every room's history, by room name, and the rules they keep to.
#[derive(Debug)]
pub(super) struct Histories {
    rules: RwLock<HistoryRules>,
    shared: Arc<Shared>,
    rooms: Mutex<HashMap<RoomName, Arc<RoomHistory>>>,
}

/// What every room's history reads and counts.
#[derive(Debug)]
struct Shared {
    bounds: RwLock<Bounds>,
    /// Bytes all histories hold together.
    bytes: AtomicUsize,
    /// Messages dropped to keep the server within its memory budget.
    evicted: AtomicU64,
    /// Seeds the epochs: random per process.
    seed: RandomState,
    next: AtomicU64,
    /// Which histories changed since a saver last looked (`--history-dir`).
    saving: Saving,
}

impl Shared {
    /// A new epoch: random, different from every other this process gave.
    fn epoch(&self) -> u64 {
        let mut hasher = self.seed.build_hasher();
        hasher.write_u64(self.next.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    }
}

/// One room's history. Its lock is taken under the room's member lock
/// when a message is said (so the positions are the order every member
/// receives the messages in) and alone to read it.
#[derive(Debug)]
pub(super) struct RoomHistory {
    shared: Arc<Shared>,
    room: RoomName,
    /// Changed since a saver last looked: set under the log's lock.
    unsaved: AtomicBool,
    log: Mutex<Log>,
}

#[derive(Debug)]
pub(super) struct Log {
    epoch: u64,
    /// The sequence number the next message gets.
    next: u64,
    kept: VecDeque<Kept>,
    /// Bytes `kept` holds, by [`Kept::weight`].
    bytes: usize,
    /// Where the history lives in a cluster: this log is then a copy of
    /// the cluster's (see `shared.rs`).
    mirror: Mirror,
}

/// What a node's copy of a room's shared history knows (all default on
/// a server on its own, where the log is the history itself).
#[derive(Debug, Default)]
pub(super) struct Mirror {
    /// Whether the copy holds all the cluster keeps of the room (within
    /// this node's bounds) and hears each new message: read it, not
    /// Redis.
    complete: bool,
    /// Messages that came back from the cluster, ever: tells a read that
    /// newer ones arrived while it was out.
    arrivals: u64,
    /// Messages were said here while the cluster was out of reach, before
    /// this sequence number: delivered, never kept, so a client resuming
    /// from before it is told it lost them.
    unrecorded_before: Option<u64>,
}

/// Where a resuming client stands: what it gets again, and whether it
/// lost something first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Messages after its offset, oldest first.
    pub kept: Vec<Kept>,
    /// Set when the room no longer has everything after its offset.
    pub gap: Option<Gap>,
}

impl Resume {
    /// What the client is shown: the gap first, if any, then the messages.
    pub(super) fn into_delivery(self, room: &RoomName) -> Delivery {
        let gap = self.gap.map(|gap| Event::Gap {
            room: room.clone(),
            gap,
        });
        let kept = self.kept.into_iter().map(|kept| Event::Replayed {
            room: room.clone(),
            kept,
        });
        Delivery::batch(gap.into_iter().chain(kept).collect())
    }
}

/// A resuming client lost messages: its offset is older than what the
/// room keeps, of another epoch, or the room keeps no history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The offset the client asked to resume from.
    pub since: Offset,
    /// The oldest message the room still has, from which it resumes
    /// (`None`: the room has none).
    pub from: Option<Offset>,
    /// Why.
    pub reason: GapReason,
}

/// Why a client could not resume exactly where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// Messages after its offset were dropped (by age, count, bytes, or
    /// the memory budget).
    TooOld,
    /// The room's history was lost since (a restart, or all of it
    /// expired): its offset is of another epoch.
    Epoch,
    /// The room keeps no history.
    NotKept,
    /// Messages were said while the cluster sharing the room's history
    /// was out of reach: delivered to the clients there then, never kept.
    Unrecorded,
}

impl GapReason {
    /// As clients see it.
    pub fn code(self) -> &'static str {
        match self {
            GapReason::TooOld => "too_old",
            GapReason::Epoch => "epoch",
            GapReason::NotKept => "not_kept",
            GapReason::Unrecorded => "unrecorded",
        }
    }
}

/// A page of a room's history, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The messages, oldest first.
    pub kept: Vec<Kept>,
    /// Whether older messages are kept than the page holds.
    pub more: bool,
}

impl Log {
    /// Keeps a message said now; returns its position.
    pub(super) fn push(&mut self, history: &RoomHistory, from: &Name, body: &Body) -> Offset {
        let offset = Offset {
            epoch: self.epoch,
            seq: self.next,
        };
        let now = unix_millis(SystemTime::now());
        let kept = Kept {
            offset,
            at: now,
            from: from.clone(),
            // A copy: the body may be a slice of a large read buffer,
            // which a kept message must not hold for an hour.
            body: Body {
                bytes: bytes::Bytes::copy_from_slice(&body.bytes),
                framing: body.framing,
            },
        };
        self.keep(history, kept, now);
        offset
    }

    /// Keeps `kept`, the next message, at its position, and drops what
    /// the bounds no longer allow as of `now`.
    fn keep(&mut self, history: &RoomHistory, kept: Kept, now: u64) {
        self.next = kept.offset.seq + 1;
        let weight = kept.weight();
        self.bytes += weight;
        history.shared.bytes.fetch_add(weight, Ordering::Relaxed);
        self.kept.push_back(kept);
        let bounds = *crate::sync::read(&history.shared.bounds);
        self.trim(history, &bounds, now);
        history.shared.saving.changed(history);
    }

    /// Drops what the bounds no longer allow, oldest first.
    fn trim(&mut self, history: &RoomHistory, bounds: &Bounds, now: u64) {
        let oldest = now.saturating_sub(bounds.max_age_ms);
        while let Some(first) = self.kept.front() {
            if self.kept.len() <= bounds.max_messages
                && self.bytes <= bounds.max_bytes
                && first.at >= oldest
            {
                break;
            }
            self.pop(history);
        }
    }

    fn pop(&mut self, history: &RoomHistory) -> Option<usize> {
        let kept = self.kept.pop_front()?;
        let weight = kept.weight();
        self.bytes -= weight;
        history.shared.bytes.fetch_sub(weight, Ordering::Relaxed);
        history.shared.saving.changed(history);
        Some(weight)
    }

    /// Everything after `since`, or what is kept and the gap before it.
    pub(super) fn since(&self, since: Offset) -> Resume {
        self.since_at_most(since, usize::MAX)
    }

    /// [`since`](Log::since), at most `limit` messages of it (the oldest).
    pub(super) fn since_at_most(&self, since: Offset, limit: usize) -> Resume {
        let first = self.kept.front().map(|kept| kept.offset);
        if since.epoch != self.epoch {
            return Resume {
                kept: self.kept.iter().take(limit).cloned().collect(),
                gap: Some(Gap {
                    since,
                    from: first,
                    reason: GapReason::Epoch,
                }),
            };
        }
        // The first sequence number still kept (or the next, if none is).
        let first_seq = first.map_or(self.next, |offset| offset.seq);
        let gap = if since.seq + 1 < first_seq {
            Some(Gap {
                since,
                from: first,
                reason: GapReason::TooOld,
            })
        } else if self.mirror.unrecorded_before.is_some_and(|u| since.seq < u) {
            Some(Gap {
                since,
                from: self
                    .kept
                    .iter()
                    .find(|kept| kept.offset.seq > since.seq)
                    .map(|kept| kept.offset),
                reason: GapReason::Unrecorded,
            })
        } else {
            None
        };
        let skip = (since.seq + 1).saturating_sub(first_seq) as usize;
        Resume {
            kept: self.kept.iter().skip(skip).take(limit).cloned().collect(),
            gap,
        }
    }

    /// The last `limit` messages before `before` (or the last ones).
    pub(super) fn page(&self, limit: usize, before: Option<Offset>) -> Page {
        let end = match before {
            None => self.kept.len(),
            Some(before) if before.epoch != self.epoch => 0,
            Some(before) => {
                let first_seq = self.kept.front().map_or(self.next, |kept| kept.offset.seq);
                (before.seq.saturating_sub(first_seq) as usize).min(self.kept.len())
            }
        };
        let start = end.saturating_sub(limit);
        Page {
            kept: self.kept.range(start..end).cloned().collect(),
            more: start > 0,
        }
    }

    /// The room's epoch.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The position of the last message said (`None`: none yet).
    pub(super) fn last(&self) -> Option<Offset> {
        (self.next > 1).then_some(Offset {
            epoch: self.epoch,
            seq: self.next - 1,
        })
    }
}

impl RoomHistory {
    /// The room's history, locked: to append as messages are said, or to
    /// read it.
    pub(super) fn log(&self) -> MutexGuard<'_, Log> {
        lock(&self.log)
    }
}

impl Histories {
    pub(super) fn new(rules: HistoryRules) -> Self {
        Histories {
            shared: Arc::new(Shared {
                bounds: RwLock::new(Bounds::from(&rules)),
                bytes: AtomicUsize::new(0),
                evicted: AtomicU64::new(0),
                seed: RandomState::new(),
                next: AtomicU64::new(0),
                saving: Saving::default(),
            }),
            rules: RwLock::new(rules),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// The rules in force.
    pub(super) fn rules(&self) -> HistoryRules {
        crate::sync::read(&self.rules).clone()
    }

    /// Puts `rules` in force: bounds apply at the next message and sweep;
    /// rooms that no longer keep a history lose it at once.
    pub(super) fn set_rules(&self, rules: HistoryRules) {
        *crate::sync::write(&self.shared.bounds) = Bounds::from(&rules);
        *crate::sync::write(&self.rules) = rules.clone();
        let dropped: Vec<Arc<RoomHistory>> = {
            let mut rooms = lock(&self.rooms);
            let gone: Vec<RoomName> = rooms
                .keys()
                .filter(|room| !rules.keeps(room))
                .cloned()
                .collect();
            gone.iter().filter_map(|room| rooms.remove(room)).collect()
        };
        for history in dropped {
            let mut log = history.log();
            while log.pop(&history).is_some() {}
            self.shared.saving.forgotten(&history.room);
        }
    }

    /// The history `room` keeps under the rules in force, made if it has
    /// none yet; `None` if it keeps none.
    pub(super) fn for_room(&self, room: &RoomName) -> Option<Arc<RoomHistory>> {
        if !crate::sync::read(&self.rules).keeps(room) {
            return None;
        }
        let mut rooms = lock(&self.rooms);
        let history = rooms.entry(room.clone()).or_insert_with(|| {
            Arc::new(RoomHistory {
                shared: self.shared.clone(),
                room: room.clone(),
                unsaved: AtomicBool::new(false),
                log: Mutex::new(Log {
                    epoch: self.shared.epoch(),
                    next: 1,
                    kept: VecDeque::new(),
                    bytes: 0,
                    mirror: Mirror::default(),
                }),
            })
        });
        Some(history.clone())
    }

    /// Every room's history.
    pub(super) fn all(&self) -> Vec<Arc<RoomHistory>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// The history of `room`, if it keeps one now (whether or not anyone
    /// is in it).
    pub(super) fn get(&self, room: &RoomName) -> Option<Arc<RoomHistory>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Bytes all histories hold.
    pub(super) fn bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Messages dropped, ever, to keep within the memory budget.
    pub(super) fn evicted(&self) -> u64 {
        self.shared.evicted.load(Ordering::Relaxed)
    }

    /// Drops what is older than the rules allow, and forgets the
    /// histories of rooms that have neither messages nor members.
    pub(super) fn expire(&self) {
        let bounds = *crate::sync::read(&self.shared.bounds);
        let now = unix_millis(SystemTime::now());
        let histories: Vec<Arc<RoomHistory>> = lock(&self.rooms).values().cloned().collect();
        for history in &histories {
            history.log().trim(history, &bounds, now);
        }
        drop(histories);
        // Only this map and no room hold it: nobody can add to it now.
        lock(&self.rooms).retain(|room, history| {
            let keep = Arc::strong_count(history) > 1 || !history.log().kept.is_empty();
            if !keep {
                self.shared.saving.forgotten(room);
            }
            keep
        });
    }

    /// Drops the oldest kept messages, across all rooms, until `bytes`
    /// are freed or nothing is kept; returns the bytes freed.
    pub(super) fn evict(&self, bytes: usize) -> usize {
        let histories: Vec<Arc<RoomHistory>> = lock(&self.rooms).values().cloned().collect();
        // The oldest first: a heap of each room's oldest message.
        let mut oldest: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = histories
            .iter()
            .enumerate()
            .filter_map(|(i, history)| {
                let at = history.log().kept.front()?.at;
                Some(std::cmp::Reverse((at, i)))
            })
            .collect();
        let mut freed = 0;
        while freed < bytes {
            let Some(std::cmp::Reverse((_, i))) = oldest.pop() else {
                break;
            };
            let history = &histories[i];
            let mut log = history.log();
            if let Some(weight) = log.pop(history) {
                freed += weight;
                self.shared.evicted.fetch_add(1, Ordering::Relaxed);
                // A cluster's copy no longer holds all the cluster keeps.
                log.mark_incomplete();
            }
            if let Some(next) = log.kept.front() {
                oldest.push(std::cmp::Reverse((next.at, i)));
            }
        }
        freed
    }
}

/// A room's history as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomHistoryView {
    /// The room's current epoch (`None`: it keeps no history now).
    pub epoch: Option<u64>,
    /// The messages asked for, oldest first.
    pub kept: Vec<Kept>,
    /// Whether older messages are kept than these (paging backwards).
    pub more: bool,
    /// Set when `since` was asked for and the room no longer has all
    /// that came after it.
    pub gap: Option<Gap>,
}

impl Hub {
    /// Sends the encoding of history replays to `offload` (a thread of
    /// lower priority) from now on. Set once, by the server.
    pub fn set_offload(&self, offload: Offload) {
        self.shared.offload.set(offload);
    }

    /// Puts new history rules in force (a reload): bounds apply at once;
    /// rooms that keep a history now and did not get one, and rooms that
    /// no longer keep one lose theirs.
    pub fn set_history_rules(&self, rules: HistoryRules) {
        let histories = &self.shared.histories;
        histories.set_rules(rules);
        let directory = self.directory();
        for room in directory.rooms.values() {
            let history = histories.for_room(&room.name);
            room.members_mut().history = history;
        }
    }

    /// The history rules in force.
    pub fn history_rules(&self) -> HistoryRules {
        self.shared.histories.rules()
    }

    /// What a shared history is capped at, as the rules in force say:
    /// the most messages, the oldest one may be (ms), and the most bytes
    /// a room's copy holds (what one read of it may bring).
    pub fn history_bounds(&self) -> (usize, u64, usize) {
        let bounds = *crate::sync::read(&self.shared.histories.shared.bounds);
        (bounds.max_messages, bounds.max_age_ms, bounds.max_bytes)
    }

    /// A new epoch for a room's history, unlike any other this process
    /// gave: for a cluster starting a room's shared history.
    pub fn new_history_epoch(&self) -> u64 {
        self.shared.histories.shared.epoch()
    }

    /// Bytes the rooms' histories hold now.
    pub fn history_bytes(&self) -> usize {
        self.shared.histories.bytes()
    }

    /// Kept messages dropped, ever, to keep within the memory budget.
    pub fn history_evicted(&self) -> u64 {
        self.shared.histories.evicted()
    }

    /// What `room` keeps, for the admin: everything after `since` (with
    /// the gap, if it lost some), or the last `limit` before `before`.
    /// At most `limit` messages either way (the oldest first after
    /// `since`, with `more` set when there are more).
    pub fn room_history(
        &self,
        room: &RoomName,
        since: Option<Offset>,
        before: Option<Offset>,
        limit: usize,
    ) -> RoomHistoryView {
        let Some(history) = self.shared.histories.get(room) else {
            return RoomHistoryView {
                epoch: None,
                kept: Vec::new(),
                more: false,
                gap: since.map(|since| Gap {
                    since,
                    from: None,
                    reason: GapReason::NotKept,
                }),
            };
        };
        let log = history.log();
        match since {
            Some(since) => {
                // One more than asked: whether there are more.
                let mut resume = log.since_at_most(since, limit.saturating_add(1));
                let more = resume.kept.len() > limit;
                resume.kept.truncate(limit);
                RoomHistoryView {
                    epoch: Some(log.epoch),
                    kept: resume.kept,
                    more,
                    gap: resume.gap,
                }
            }
            None => {
                let page = log.page(limit, before);
                RoomHistoryView {
                    epoch: Some(log.epoch),
                    kept: page.kept,
                    more: page.more,
                    gap: None,
                }
            }
        }
    }
}
