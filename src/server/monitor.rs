//! What the server counts besides the hub: disconnects by reason, the
//! recent disconnects (like NATS's closed connections), refusals, accept
//! errors, and rates sampled once a second. Written when a client goes or
//! is refused, and by the sampler: never on the path of a message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::hub::{ClientInfo, ClientKind, CloseReason, RoomName, Totals};

use super::ServerState;
use crate::sync::lock;

/// How many recent disconnects are kept, as NATS keeps closed connections.
pub const RECENT_DISCONNECTS: usize = 1000;

/// How often rates are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// A client that has gone, and why.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The client as it was when it went.
    pub client: ClientInfo,
    /// When it went.
    pub closed_at: SystemTime,
    /// Why.
    pub reason: CloseReason,
}

/// Per-second rates, from the last two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Messages received per second.
    pub messages_in: f64,
    /// Messages delivered per second.
    pub messages_out: f64,
    /// Bytes received per second.
    pub bytes_in: f64,
    /// Bytes written per second.
    pub bytes_out: f64,
}

#[derive(Debug)]
pub(crate) struct Monitor {
    pub(crate) started: SystemTime,
    pub(crate) started_instant: Instant,
    closed: Mutex<VecDeque<Closed>>,
    disconnects: Mutex<HashMap<&'static str, u64>>,
    accept_errors: AtomicU64,
    refused: AtomicU64,
    tls_failures: AtomicU64,
    sampled: Mutex<Sampled>,
}

#[derive(Debug, Default)]
struct Sampled {
    at: Option<Instant>,
    totals: Totals,
    rates: Rates,
    rooms: HashMap<RoomName, (u64, f64)>,
}

impl Monitor {
    pub(crate) fn new() -> Self {
        Monitor {
            started: SystemTime::now(),
            started_instant: Instant::now(),
            closed: Mutex::default(),
            disconnects: Mutex::default(),
            accept_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            sampled: Mutex::default(),
        }
    }

    pub(crate) fn closed(&self, client: ClientInfo, reason: CloseReason) {
        *lock(&self.disconnects).entry(reason.code()).or_default() += 1;
        let mut closed = lock(&self.closed);
        if closed.len() == RECENT_DISCONNECTS {
            closed.pop_front();
        }
        closed.push_back(Closed {
            client,
            closed_at: SystemTime::now(),
            reason,
        });
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accept_failed(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake failed or timed out.
    pub(crate) fn tls_failed(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_failures(&self) -> u64 {
        self.tls_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn refused_count(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Disconnects so far, by reason code.
    pub(crate) fn disconnects(&self) -> HashMap<&'static str, u64> {
        lock(&self.disconnects).clone()
    }

    /// The recent disconnects, newest first.
    pub(crate) fn recent(&self) -> Vec<Closed> {
        lock(&self.closed).iter().rev().cloned().collect()
    }

    pub(crate) fn rates(&self) -> Rates {
        lock(&self.sampled).rates
    }

    /// Messages per second said in `room`, at the last sample.
    pub(crate) fn room_rate(&self, room: &RoomName) -> f64 {
        lock(&self.sampled).rooms.get(room).map_or(0.0, |r| r.1)
    }
}

/// Adds up every kind's totals.
pub(crate) fn grand_total(totals: &[(ClientKind, Totals)]) -> Totals {
    let mut sum = Totals::default();
    for (_, totals) in totals {
        sum.merge(totals);
    }
    sum
}

/// Samples the counters once a second, for rates.
pub(crate) async fn sample_loop(shared: Arc<ServerState>) {
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let totals = grand_total(&shared.hub.totals());
        let rooms = shared.hub.room_stats();
        let now = Instant::now();
        let mut sampled = lock(&shared.monitor.sampled);
        let elapsed = sampled.at.map(|at| now - at);
        if let Some(elapsed) = elapsed.filter(|e| !e.is_zero()) {
            let per_second =
                |now: u64, before: u64| now.saturating_sub(before) as f64 / elapsed.as_secs_f64();
            let before = sampled.totals;
            sampled.rates = Rates {
                messages_in: per_second(totals.messages_in, before.messages_in),
                messages_out: per_second(totals.messages_out, before.messages_out),
                bytes_in: per_second(totals.bytes_in, before.bytes_in),
                bytes_out: per_second(totals.bytes_out, before.bytes_out),
            };
            let mut fresh = HashMap::with_capacity(rooms.len());
            for room in rooms {
                let before = sampled.rooms.get(&room.name).map_or(room.messages, |r| r.0);
                let rate = per_second(room.messages, before);
                fresh.insert(room.name, (room.messages, rate));
            }
            sampled.rooms = fresh;
        } else {
            sampled.rooms = rooms
                .into_iter()
                .map(|room| (room.name, (room.messages, 0.0)))
                .collect();
        }
        sampled.at = Some(now);
        sampled.totals = totals;
    }
}
