//! Server-wide traffic counters, by kind of client, for metrics and stats.
//!
//! They must be monotonic (a Prometheus counter that goes down reads as a
//! restart) and cost nothing shared on the path of a message. So they are
//! striped: each thread adds to a stripe of its own, on its own cache
//! line, and a reader sums the stripes. A client's own counters (see
//! `info`) are kept apart, for listings; these outlive it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::info::Totals;

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ClientKind {
    /// A TCP client in text mode.
    #[default]
    Text,
    /// A TCP client in JSON mode.
    Json,
    /// A TCP client in raw mode.
    Raw,
    /// A WebSocket client speaking the JSON mode.
    WebSocket,
    /// A WebSocket client sending and receiving raw bytes.
    WebSocketRaw,
    /// A UDP peer: raw bytes, a datagram a message.
    Udp,
}

/// Every kind, in order.
pub const KINDS: [ClientKind; 6] = [
    ClientKind::Text,
    ClientKind::Json,
    ClientKind::Raw,
    ClientKind::WebSocket,
    ClientKind::WebSocketRaw,
    ClientKind::Udp,
];

impl ClientKind {
    /// The name the admin API, metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Text => "text",
            ClientKind::Json => "json",
            ClientKind::Raw => "raw",
            ClientKind::WebSocket => "ws",
            ClientKind::WebSocketRaw => "ws-raw",
            ClientKind::Udp => "udp",
        }
    }
}

impl std::fmt::Display for ClientKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    Clients = 0,
    MessagesIn,
    BytesIn,
    MessagesOut,
    BytesOut,
}

const FIELDS: usize = 5;

/// More stripes than a server has worker threads, so each has its own.
const STRIPES: usize = 32;

/// One thread's counters, on cache lines of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe([[AtomicU64; FIELDS]; KINDS.len()]);

/// The counters of one hub.
#[derive(Debug)]
pub(super) struct Counters {
    stripes: Box<[Stripe]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
}

/// This thread's stripe number.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|mine| *mine)
}

impl Counters {
    /// Adds `n` to `field` of `kind`.
    pub(super) fn add(&self, kind: ClientKind, field: Field, n: u64) {
        self.stripes[stripe()].0[kind as usize][field as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds per-kind counts of `field` at once.
    pub(super) fn add_all(&self, field: Field, by_kind: &[u64; KINDS.len()]) {
        let stripe = &self.stripes[stripe()];
        for (kind, n) in by_kind.iter().enumerate() {
            if *n > 0 {
                stripe.0[kind][field as usize].fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// The sums, by kind.
    pub(super) fn totals(&self) -> Vec<(ClientKind, Totals)> {
        KINDS
            .iter()
            .map(|kind| {
                let sum = |field: Field| -> u64 {
                    self.stripes
                        .iter()
                        .map(|s| s.0[*kind as usize][field as usize].load(Ordering::Relaxed))
                        .sum()
                };
                (
                    *kind,
                    Totals {
                        clients: sum(Field::Clients),
                        messages_in: sum(Field::MessagesIn),
                        bytes_in: sum(Field::BytesIn),
                        messages_out: sum(Field::MessagesOut),
                        bytes_out: sum(Field::BytesOut),
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counters.add(ClientKind::Json, Field::MessagesIn, 1);
                    }
                    counters.add_all(Field::BytesOut, &[1, 0, 0, 2, 0, 0]);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let totals: std::collections::HashMap<_, _> = counters.totals().into_iter().collect();
        assert_eq!(totals[&ClientKind::Json].messages_in, 8000);
        assert_eq!(totals[&ClientKind::Text].bytes_out, 8);
        assert_eq!(totals[&ClientKind::WebSocket].bytes_out, 16);
    }
}
