//! A replay of a room's history: read under the room's history lock,
//! encoded off the relay's threads, queued as the client enters the room
//! with what was said meanwhile.

use std::fmt;
use std::sync::Arc;

use super::{Gap, GapReason, Log, Offset, Resume, RoomHistory};
use crate::hub::event::{Delivery, Encoding, Event};
use crate::hub::names::RoomName;

/// What a client joining a room is shown of its history first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Nothing: it hears what is said from now on.
    Nothing,
    /// The last this many messages, then the end of history (a text
    /// listener's `?history=N`).
    Last(usize),
    /// Everything after this offset, or the gap and what is kept (a
    /// resuming client's `join` with `since`).
    Since(Offset),
}

/// A replay read and encoded before the client is let into the room, so
/// that the room's lock is held only to queue it and what was said since.
#[derive(Debug)]
pub(in crate::hub) struct Prepared {
    room: RoomName,
    replay: Replay,
    /// The epoch it was read from; `None`: the room keeps no history.
    epoch: Option<u64>,
    /// The last sequence number it covers.
    upto: u64,
    /// Messages shown so far.
    count: usize,
    /// Shared with the thread that encodes it.
    head: Arc<Delivery>,
}

impl Prepared {
    /// Reads `replay` from `history` (`None`: the room keeps none).
    pub(in crate::hub) fn read(
        room: &RoomName,
        history: Option<&RoomHistory>,
        replay: Replay,
    ) -> Self {
        let Some(history) = history else {
            let events = match replay {
                Replay::Since(since) => vec![Event::Gap {
                    room: room.clone(),
                    gap: Gap {
                        since,
                        from: None,
                        reason: GapReason::NotKept,
                    },
                }],
                _ => Vec::new(),
            };
            return Prepared {
                room: room.clone(),
                replay,
                epoch: None,
                upto: 0,
                count: 0,
                head: Arc::new(Delivery::batch(events)),
            };
        };
        Prepared::read_locked(room, &history.log(), replay)
    }

    /// The deliveries to queue, in order, now that the room's history is
    /// `log` (`None`: it keeps none): what was read, and what was said
    /// since, or all of it read again if the history changed meanwhile.
    pub(in crate::hub) fn finish(
        self,
        history: Option<(&RoomHistory, &Log)>,
    ) -> Vec<Arc<Delivery>> {
        let same = match (history, self.epoch) {
            (Some((_, log)), Some(epoch)) => log.epoch == epoch,
            (None, None) => true,
            _ => false,
        };
        if !same {
            // Replaced by a reload between the read and now: read again
            // (under the lock: rare, and bounded like any replay).
            let again = match history {
                Some((history, log)) => {
                    let prepared = Prepared::read_locked(&self.room, log, self.replay);
                    return prepared.finish(Some((history, log)));
                }
                None => Prepared::read(&self.room, None, self.replay),
            };
            return again.finish(None);
        }
        let mut count = self.count;
        let mut tail = Vec::new();
        if let Some((_, log)) = history {
            let first_seq = log.kept.front().map_or(log.next, |kept| kept.offset.seq);
            let skip = (self.upto + 1).saturating_sub(first_seq) as usize;
            tail.extend(log.kept.iter().skip(skip).map(|kept| Event::Replayed {
                room: self.room.clone(),
                kept: kept.clone(),
            }));
            count += tail.len();
        }
        if let Replay::Last(_) = self.replay {
            if self.epoch.is_some() {
                tail.push(Event::HistoryEnd {
                    room: self.room.clone(),
                    count,
                });
            }
        }
        let mut deliveries = vec![self.head];
        if !tail.is_empty() {
            deliveries.push(Arc::new(Delivery::batch(tail)));
        }
        deliveries
    }

    /// [`Prepared::read`] with the history already locked.
    fn read_locked(room: &RoomName, log: &Log, replay: Replay) -> Self {
        let (kept, gap) = match replay {
            Replay::Nothing => (Vec::new(), None),
            Replay::Last(n) => (log.page(n, None).kept, None),
            Replay::Since(since) => {
                let resume = log.since(since);
                (resume.kept, resume.gap)
            }
        };
        let count = kept.len();
        Prepared {
            room: room.clone(),
            replay,
            epoch: Some(log.epoch),
            upto: log.next - 1,
            count,
            head: Arc::new(Resume { kept, gap }.into_delivery(room)),
        }
    }

    /// The first delivery, to be encoded before any lock is taken.
    pub(in crate::hub) fn head(&self) -> &Arc<Delivery> {
        &self.head
    }
}

/// Runs a job off the relay's threads (a thread of lower priority), for
/// work a client can ask for in a loop: encoding a history replay.
pub type Offload = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

/// The hub's [`Offload`], if the server gave it one (unset: the work is
/// done in place, as in tests).
#[derive(Default)]
pub(in crate::hub) struct Offloader(std::sync::OnceLock<Offload>);

impl fmt::Debug for Offloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Offloader(set)"
        } else {
            "Offloader(in place)"
        })
    }
}

impl Offloader {
    /// Sends the work to `offload` from now on; set once.
    pub(in crate::hub) fn set(&self, offload: Offload) {
        let _ = self.0.set(offload);
    }

    /// Encodes `delivery` in `encoding` off the relay's threads (or here,
    /// if the hub has nowhere to send it): queuing it then costs a clone.
    pub(in crate::hub) async fn encode(&self, delivery: &Arc<Delivery>, encoding: Encoding) {
        let delivery = delivery.clone();
        self.run(move || delivery.encoded(encoding)).await;
    }

    /// Runs `job` off the relay's threads and returns what it made (or
    /// runs it here, if the hub has nowhere to send it or that thread is
    /// gone): for a replay, the reading and copying of thousands of kept
    /// messages as well as their encoding, so that a client asking in a
    /// loop takes the low-priority thread's time, not the relay's.
    pub(in crate::hub) async fn run<T, F>(&self, job: F) -> T
    where
        T: Send + 'static,
        F: Fn() -> T + Send + Sync + 'static,
    {
        let Some(offload) = self.0.get() else {
            return job();
        };
        let job = Arc::new(job);
        let (done, result) = tokio::sync::oneshot::channel();
        let remote = job.clone();
        offload(Box::new(move || {
            let _ = done.send(remote());
        }));
        match result.await {
            Ok(made) => made,
            // The thread ended (shutdown) and dropped it: here, then.
            Err(_) => job(),
        }
    }
}
