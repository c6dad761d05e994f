//! Taps: copies of what is said in a room, or by one client, for someone
//! watching (the web console's traffic view).
//!
//! A watcher must never slow the relay down: unlike a member's outbox, a
//! tap is lossy. It holds at most [`TAP_MAX_ITEMS`] messages and
//! [`TAP_MAX_BYTES`] bytes; what does not fit is counted as dropped and
//! the watcher is told how many it missed. Pushing to a tap takes its own
//! small lock and never waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

use super::{lock, Body, ClientId, Name, Offset, RoomName};

/// Most messages a tap holds for its watcher: a second of a busy room.
pub const TAP_MAX_ITEMS: usize = 4096;

/// Most message bytes a tap holds for its watcher, so that watching a
/// room of large messages costs bounded memory.
pub const TAP_MAX_BYTES: usize = 4 * 1024 * 1024;

/// One message a tap saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When the server relayed it.
    pub at: SystemTime,
    /// The room it was said in; `None` for a direct message.
    pub room: Option<RoomName>,
    /// Who said it.
    pub from: Name,
    /// The sender's id; `None` when the server's admin sent it.
    pub from_id: Option<ClientId>,
    /// The receiver of a direct message.
    pub to: Option<Name>,
    /// What was said, exactly as sent.
    pub body: Body,
    /// Its position in the room's history, when the room keeps one: what
    /// a watcher whose feed dropped resumes from.
    pub offset: Option<Offset>,
}

/// What a watcher takes from its tap at once.
#[derive(Debug, Default)]
pub struct Sightings {
    /// The messages, oldest first.
    pub items: Vec<Seen>,
    /// Messages dropped since the last take, because the watcher was behind.
    pub dropped: u64,
}

/// A lossy, bounded queue of what a watcher is shown.
#[derive(Debug, Default)]
pub struct Tap {
    queue: Mutex<TapQueue>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct TapQueue {
    items: VecDeque<Seen>,
    bytes: usize,
    dropped: u64,
}

impl Tap {
    /// A new, empty tap.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Records `seen`, or counts it as dropped if the tap is full.
    pub(super) fn push(&self, seen: Seen) {
        let mut queue = lock(&self.queue);
        let size = seen.body.bytes.len();
        if queue.items.len() >= TAP_MAX_ITEMS || queue.bytes + size > TAP_MAX_BYTES {
            queue.dropped += 1;
            return;
        }
        let was_empty = queue.items.is_empty();
        queue.bytes += size;
        queue.items.push_back(seen);
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Takes everything the tap holds.
    pub fn take(&self) -> Sightings {
        self.take_some(usize::MAX)
    }

    /// Takes the oldest `max` messages the tap holds, at most.
    pub fn take_some(&self, max: usize) -> Sightings {
        let mut queue = lock(&self.queue);
        let count = queue.items.len().min(max);
        let items: Vec<Seen> = queue.items.drain(..count).collect();
        let taken: usize = items.iter().map(|seen| seen.body.bytes.len()).sum();
        queue.bytes -= taken;
        Sightings {
            items,
            dropped: std::mem::take(&mut queue.dropped),
        }
    }

    /// Waits until the tap may hold something.
    pub async fn ready(&self) {
        let notified = self.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !lock(&self.queue).items.is_empty() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(size: usize) -> Seen {
        Seen {
            at: SystemTime::now(),
            room: Some(RoomName::lobby()),
            from: Name::new("a").unwrap(),
            from_id: None,
            to: None,
            body: Body::line(vec![b'x'; size]),
            offset: None,
        }
    }

    #[test]
    fn a_full_tap_drops_and_counts_instead_of_growing() {
        let tap = Tap::new();
        for _ in 0..TAP_MAX_ITEMS + 10 {
            tap.push(seen(1));
        }
        let taken = tap.take();
        assert_eq!(taken.items.len(), TAP_MAX_ITEMS);
        assert_eq!(taken.dropped, 10);
        tap.push(seen(TAP_MAX_BYTES));
        tap.push(seen(1));
        let taken = tap.take();
        assert_eq!((taken.items.len(), taken.dropped), (1, 1));
        assert_eq!(tap.take().dropped, 0);
    }
}
