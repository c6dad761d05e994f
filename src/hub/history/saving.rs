//! Keeping histories across restarts (`--history-dir`): the hub says
//! which rooms' histories changed and what they hold now; a saver outside
//! the hub writes that down on its own thread, and at the next start
//! hands back what it had, which the rooms take up with their positions
//! and epochs. The hub knows no disk: nothing here blocks on one, and a
//! message costs one flag when saving is on, nothing when it is off.
//!
//! What is saved mirrors what is kept: a message trimmed or evicted from
//! memory is deleted from the saver's copy at its next save, so the
//! bounds that hold in memory (messages, bytes, age, the memory budget)
//! bound the disk too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use super::{Bounds, Kept, Log, RoomHistory};
use crate::hub::info::unix_millis;
use crate::hub::names::RoomName;
use crate::hub::Hub;
use crate::sync::lock;

/// A room's history as a saver had it, handed back at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The room.
    pub room: RoomName,
    /// Its epoch, which the positions it hands out go on in.
    pub epoch: u64,
    /// The sequence number its next message gets.
    pub next: u64,
    /// What it kept, oldest first.
    pub kept: Vec<Kept>,
}

/// What changed in one room's history since a saver last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsaved {
    /// The room keeps a history: what it holds now.
    Kept {
        /// The room.
        room: RoomName,
        /// Its epoch: when it is not the one saved, everything saved of
        /// the room is of a lost history.
        epoch: u64,
        /// The sequence number its next message gets.
        next: u64,
        /// The first sequence number it still keeps (`next` if none):
        /// everything saved before it is gone from memory.
        first: u64,
        /// What it keeps after the saver's position (everything, when the
        /// epoch is another), oldest first.
        kept: Vec<Kept>,
    },
    /// The room keeps no history any more: forget what was saved of it.
    Forgotten(RoomName),
}

/// How far a saver has written one room's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The epoch it saved.
    pub epoch: u64,
    /// The last sequence number it saved (0: none).
    pub through: u64,
}

/// The rooms whose histories changed, for a saver to pick up.
#[derive(Debug, Default)]
pub(super) struct Saving {
    /// Set once a saver runs: before that nothing is noted.
    on: AtomicBool,
    changed: Mutex<HashSet<RoomName>>,
    /// Rooms in `changed`, readable without its lock.
    count: AtomicUsize,
    /// Signalled when `changed` gets its first room, or to wake the saver.
    wake: Condvar,
}

impl Saving {
    /// Notes that `history` changed. Called under its log's lock, so that
    /// a saver clearing the flag under the same lock misses nothing.
    pub(super) fn changed(&self, history: &RoomHistory) {
        if self.on.load(Ordering::Relaxed) && !history.unsaved.swap(true, Ordering::Relaxed) {
            self.note(&history.room);
        }
    }

    /// Notes that `room` no longer has a history.
    pub(super) fn forgotten(&self, room: &RoomName) {
        if self.on.load(Ordering::Relaxed) {
            self.note(room);
        }
    }

    fn note(&self, room: &RoomName) {
        let mut changed = lock(&self.changed);
        if changed.insert(room.clone()) {
            self.count.store(changed.len(), Ordering::Relaxed);
            if changed.len() == 1 {
                self.wake.notify_all();
            }
        }
    }

    fn take(&self) -> HashSet<RoomName> {
        let mut changed = lock(&self.changed);
        self.count.store(0, Ordering::Relaxed);
        std::mem::take(&mut *changed)
    }
}

impl Hub {
    /// Takes up the histories a saver had (before any client is served)
    /// and notes every change from now on for [`unsaved_history`].
    /// Rooms the rules in force do not keep are forgotten; the rest are
    /// trimmed to the rules, and go on at their epoch and position.
    ///
    /// [`unsaved_history`]: Hub::unsaved_history
    pub fn restore_history(&self, restored: Vec<Restored>) {
        let histories = &self.shared.histories;
        let shared = &histories.shared;
        shared.saving.on.store(true, Ordering::Relaxed);
        let rules = histories.rules();
        let bounds = Bounds::from(&rules);
        let now = unix_millis(SystemTime::now());
        let mut rooms = lock(&histories.rooms);
        for restored in restored {
            if !rules.keeps(&restored.room) || rooms.contains_key(&restored.room) {
                shared.saving.forgotten(&restored.room);
                continue;
            }
            let kept: VecDeque<Kept> = restored.kept.into();
            let bytes = kept.iter().map(Kept::weight).sum();
            shared.bytes.fetch_add(bytes, Ordering::Relaxed);
            let history = Arc::new(RoomHistory {
                shared: shared.clone(),
                room: restored.room.clone(),
                unsaved: AtomicBool::new(false),
                log: Mutex::new(Log {
                    mirror: super::Mirror::default(),
                    epoch: restored.epoch,
                    next: restored.next,
                    kept,
                    bytes,
                }),
            });
            history.log().trim(&history, &bounds, now);
            rooms.insert(restored.room, history);
        }
    }

    /// What changed in the rooms' histories since the last call, given
    /// how far the saver has written each (`saved`).
    pub fn unsaved_history(&self, saved: &HashMap<RoomName, Saved>) -> Vec<Unsaved> {
        let histories = &self.shared.histories;
        let changed = histories.shared.saving.take();
        let mut unsaved = Vec::with_capacity(changed.len());
        for room in changed {
            let Some(history) = histories.get(&room) else {
                unsaved.push(Unsaved::Forgotten(room));
                continue;
            };
            let log = history.log();
            history.unsaved.store(false, Ordering::Relaxed);
            let first = log.kept.front().map_or(log.next, |kept| kept.offset.seq);
            let after = match saved.get(&room) {
                Some(saved) if saved.epoch == log.epoch => saved.through,
                _ => 0,
            };
            let skip = (after + 1).saturating_sub(first) as usize;
            unsaved.push(Unsaved::Kept {
                room,
                epoch: log.epoch,
                next: log.next,
                first,
                kept: log.kept.iter().skip(skip).cloned().collect(),
            });
        }
        unsaved
    }

    /// Notes again rooms whose changes a saver could not write, so that
    /// the next [`unsaved_history`](Hub::unsaved_history) has them.
    pub fn history_unsaved_again(&self, rooms: impl IntoIterator<Item = RoomName>) {
        let saving = &self.shared.histories.shared.saving;
        for room in rooms {
            saving.note(&room);
        }
    }

    /// Waits up to `timeout` for a history to change; whether one has
    /// (returns early, and false, when [`wake_history_saver`] is called).
    ///
    /// [`wake_history_saver`]: Hub::wake_history_saver
    pub fn wait_for_unsaved_history(&self, timeout: Duration) -> bool {
        let saving = &self.shared.histories.shared.saving;
        let changed = lock(&saving.changed);
        if !changed.is_empty() {
            return true;
        }
        let (changed, _) = saving
            .wake
            .wait_timeout(changed, timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !changed.is_empty()
    }

    /// Wakes a saver waiting in
    /// [`wait_for_unsaved_history`](Hub::wait_for_unsaved_history).
    pub fn wake_history_saver(&self) {
        let saving = &self.shared.histories.shared.saving;
        let _changed = lock(&saving.changed);
        saving.wake.notify_all();
    }

    /// Rooms whose histories changed and are not saved yet.
    pub fn unsaved_rooms(&self) -> usize {
        self.shared
            .histories
            .shared
            .saving
            .count
            .load(Ordering::Relaxed)
    }
}
