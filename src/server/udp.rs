//! UDP listeners (`udp://ADDR`): one socket each, and a table of its
//! peers. The first datagram from a source address makes it a client of
//! the raw mode (admitted within the server's limits, as a TCP client
//! is), served over a [`UdpTransport`]; each datagram after it is one
//! message from that client; a client that sends nothing for the
//! listener's idle timeout (by default [`DEFAULT_UDP_IDLE_TIMEOUT`]) is gone.
//!
//! A source address is not proven, so datagrams with forged ones can make
//! clients at will: new peers are taken while fewer than `max-unproven`
//! served peers have proved nothing (by default half of
//! `--max-connections`), so that such a flood leaves the rest of the
//! server's connections to everyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::listeners::Listener;
use super::{Arrival, Greeting, Held, Proof, ServerState};
use crate::hub::{ClientKind, ClientMeta};
use crate::protocol::Protocol;
use crate::transport::udp::{PeerInbox, Refused, UdpStats, UdpTransport};

pub(super) use crate::config::DEFAULT_UDP_IDLE_TIMEOUT;

/// How often the table forgets peers whose clients are gone.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often, at most, a listener logs that it drops new peers.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Receives datagrams until the listener is stopped; `make` makes the
/// protocol its peers speak.
pub(super) async fn receive_loop<P: Protocol>(
    shared: Arc<ServerState>,
    listener: Arc<Listener>,
    socket: Arc<UdpSocket>,
    stats: Arc<UdpStats>,
    make: impl Fn(&Greeting) -> P + Send + 'static,
) {
    let spec = listener.spec.clone().expect("UDP listeners have a spec");
    let protocol = Arc::new(make(&shared.greeting.borrow()));
    let mut peers: HashMap<SocketAddr, Arc<PeerInbox>> = HashMap::new();
    let mut buffer = vec![0u8; 1 << 16];
    let max_unproven = || {
        let max = spec
            .max_unproven
            .unwrap_or(shared.live().max_connections / 2)
            .max(1) as u64;
        stats.max_unproven.store(max, Ordering::Relaxed);
        max
    };
    max_unproven();
    let mut warned: Option<Instant> = None;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (len, peer) = tokio::select! {
            // Its peers' clients end with it.
            _ = listener.stop.cancelled() => {
                for inbox in peers.values() {
                    inbox.close(&stats);
                }
                return;
            }
            _ = sweep.tick() => {
                peers.retain(|_, inbox| !inbox.is_closed());
                continue;
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // An ICMP error for an earlier datagram, or the like:
                // about one peer, not the socket.
                Err(error) => {
                    debug!(listener = %spec, %error, "a UDP receive failed");
                    continue;
                }
            },
        };
        UdpStats::count(&stats.datagrams_in);
        let mut datagram = Bytes::copy_from_slice(&buffer[..len]);
        if let Some(inbox) = peers.get(&peer) {
            match inbox.push(datagram) {
                Ok(()) => continue,
                Err(Refused::Full) => {
                    UdpStats::count(&stats.dropped_in);
                    continue;
                }
                // Its client is gone (idle, kicked): this one is new.
                Err(Refused::Closed(again)) => {
                    peers.remove(&peer);
                    datagram = again;
                }
            }
        }
        let max_unproven = max_unproven();
        if stats.unproven.load(Ordering::Relaxed) >= max_unproven {
            UdpStats::count(&stats.unproven_full);
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                warned = Some(Instant::now());
                warn!(
                    listener = %spec,
                    dropped = stats.unproven_full.load(Ordering::Relaxed),
                    "dropping datagrams from new UDP peers: {max_unproven} peers are served whose address is not proven (max-unproven), forged or not; they are taken again as those go (idle timeout) or prove it (a device's key). Raise ?max-unproven= if they are real"
                );
            }
            continue;
        }
        let admitted = shared
            .listener_has_room(&listener)
            .and_then(|()| shared.admit(Held::Nothing, peer.ip(), spec.auth));
        match admitted {
            Ok(admitted) => {
                let inbox = Arc::new(PeerInbox::new(&stats));
                let _ = inbox.push(datagram);
                let transport =
                    UdpTransport::new(inbox.clone(), socket.clone(), peer, stats.clone());
                let arrival = Arrival {
                    meta: ClientMeta {
                        kind: ClientKind::Udp,
                        tls: false,
                        peer,
                        listener: listener.id,
                        sealed: spec.room.is_sealed(),
                    },
                    room: spec.room.clone(),
                    proof: Proof::Nothing,
                    admitted,
                };
                let task = shared.client(&listener, protocol.clone(), transport, arrival);
                shared.tracker.spawn(task);
                peers.insert(peer, inbox);
            }
            // Not answered: an answer to an address nobody proved is what
            // an amplification attack wants.
            Err(refusal) => {
                UdpStats::count(&stats.refused);
                if refusal.log {
                    warn!(%peer, listener = %spec, "dropped a datagram from a new UDP peer: {}", refusal.reason);
                }
            }
        }
    }
}
