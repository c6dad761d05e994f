//! What no single message can see: a reader holding its room back too
//! long, history older than the rules allow, and all clients and
//! histories together holding more memory than the budget.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;

use super::{ClientId, CloseReason, Hub, Member, Name};
use crate::sync::lock;

/// What one [`Hub::sweep`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Bytes all clients held in queues and unfinished input, after the
    /// cut-offs.
    pub held: usize,
    /// Bytes the rooms' histories hold, after the evictions.
    pub history: usize,
    /// Bytes of history evicted to keep within the memory budget.
    pub evicted: usize,
    /// The clients cut off, and why.
    pub cut: Vec<(ClientId, Name, CloseReason)>,
}

/// Below this share of the memory budget (in tenths), the sweep stops
/// cutting clients off, and new connections are let in again: room for
/// the clients that stay to go on.
pub(super) const BUDGET_RELIEF_TENTHS: usize = 9;

/// Up to this many clients, each sweep visits all of them. Beyond, a
/// sweep visits one of [`SWEEP_PARTS`] parts (each client once every
/// that many sweeps) and adds the other parts' last sums: visiting every
/// member of a fleet ten times a second took 9% of a core at 100,000
/// idle clients, and held the directory (joins, names) 10 ms each time.
pub(super) const SWEEP_ALL_UP_TO: usize = 10_000;

/// Parts a large hub's clients are swept in, one per sweep.
pub(super) const SWEEP_PARTS: usize = 10;

/// Where a large hub's sweep stands.
#[derive(Debug, Default)]
pub(super) struct Parts {
    /// The part visited next.
    next: usize,
    /// What each part's clients held when it was last visited.
    held: [usize; SWEEP_PARTS],
}

/// Which part a member is swept in: from its address, so that choosing
/// reads nothing of the member itself.
fn part_of(member: &std::sync::Arc<Member>) -> usize {
    (std::sync::Arc::as_ptr(member) as usize >> 4) % SWEEP_PARTS
}

/// When history must make room, it is evicted down to this share of the
/// budget (with the clients' share), not just under the relief mark: a
/// server whose rooms keep more than the budget allows evicts in
/// batches, not a few messages at every sweep.
const HISTORY_EVICTION_TENTHS: usize = 8;

impl Hub {
    /// Bytes all clients held in queues and unfinished input at the last
    /// [`sweep`](Hub::sweep).
    pub fn memory_held(&self) -> usize {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// Whether clients hold so much of the memory budget that no new ones
    /// should be let in.
    pub fn memory_nearly_full(&self) -> bool {
        self.memory_held() >= self.shared.settings.max_memory / 10 * BUDGET_RELIEF_TENTHS
    }

    /// Enforces the limits no single push can see, and is meant to run
    /// every few tens of milliseconds: cuts off clients that have held
    /// their senders back past the slow timeout; drops history older
    /// than the rules allow; when clients and histories together hold
    /// more than nine tenths of the memory budget, evicts the oldest
    /// history down to eight tenths (history goes before any client);
    /// then, while clients alone hold more than the budget, cuts off the
    /// largest holders until they hold at most nine tenths of it. Costs
    /// one pass over the clients (over 10,000 of them, over a tenth
    /// of them, the others counted as last seen) and the histories, and
    /// nothing on the path of a message.
    pub fn sweep(&self) -> Sweep {
        let settings = &self.shared.settings;
        let mut held = 0;
        let mut too_slow = Vec::new();
        let mut holders = Vec::new();
        {
            let directory = self.directory();
            let mut parts = lock(&self.shared.sweep_parts);
            let part = (directory.by_name.len() > SWEEP_ALL_UP_TO).then_some(parts.next);
            for member in directory.by_name.values() {
                if part.is_some_and(|part| part_of(member) != part) {
                    continue;
                }
                held += member.held();
                if let Some(timeout) = settings.slow_timeout {
                    if member.outbox.congested_for() > timeout {
                        too_slow.push((member.clone(), CloseReason::TooSlow { timeout }));
                    }
                }
            }
            match part {
                Some(part) => {
                    parts.held[part] = held;
                    parts.next = (part + 1) % SWEEP_PARTS;
                    held = parts.held.iter().sum();
                }
                None => *parts = Parts::default(),
            }
            drop(parts);
            if held > settings.max_memory {
                // Over the budget: every holder, as it is now.
                holders = directory
                    .by_name
                    .values()
                    .map(|member| (member.held(), member.clone()))
                    .collect();
                held = holders.iter().map(|(bytes, _)| bytes).sum();
            }
        }
        let histories = &self.shared.histories;
        histories.expire();
        let relief = settings.max_memory / 10 * BUDGET_RELIEF_TENTHS;
        let mut history = histories.bytes();
        let mut evicted = 0;
        if held + history > relief {
            let target = (settings.max_memory / 10 * HISTORY_EVICTION_TENTHS).saturating_sub(held);
            evicted = histories.evict(history.saturating_sub(target));
            history = histories.bytes();
        }
        let mut cut = Vec::new();
        let mut cut_off = |member: &Member, reason: CloseReason| {
            if !member.outbox.is_closed() {
                member.outbox.close(reason.clone(), false);
                cut.push((member.id, member.name(), reason));
            }
        };
        for (member, reason) in too_slow {
            cut_off(&member, reason);
        }
        if !holders.is_empty() {
            holders.sort_unstable_by_key(|(held, _)| Reverse(*held));
            for (bytes, member) in holders {
                if held <= relief || bytes == 0 {
                    break;
                }
                cut_off(
                    &member,
                    CloseReason::MemoryBudget {
                        held: bytes,
                        budget: settings.max_memory,
                    },
                );
                held = held.saturating_sub(bytes);
            }
        }
        self.shared.held.store(held, Ordering::Relaxed);
        Sweep {
            held,
            history,
            evicted,
            cut,
        }
    }
}
