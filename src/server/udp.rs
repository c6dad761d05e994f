//! UDP listeners (`udp://ADDR`): one socket each, and a table of its
//! peers. The first datagram from a source address makes it a client of
//! the raw mode (admitted within the server's limits, as a TCP client
//! is), served over a [`UdpTransport`]; each datagram after it is one
//! message from that client; a client that sends nothing for the
//! listener's idle timeout (by default [`DEFAULT_UDP_IDLE_TIMEOUT`]) is gone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (len, peer) = tokio::select! {
            // Its peers' clients end with it.
            _ = listener.stop.cancelled() => {
                for inbox in peers.values() {
                    inbox.close();
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
        match shared.admit(Held::Nothing, peer.ip(), spec.auth) {
            Ok(admitted) => {
                let inbox = Arc::new(PeerInbox::default());
                let _ = inbox.push(datagram);
                let transport =
                    UdpTransport::new(inbox.clone(), socket.clone(), peer, stats.clone());
                let arrival = Arrival {
                    meta: ClientMeta {
                        kind: ClientKind::Udp,
                        tls: false,
                        peer,
                        listener: listener.id,
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
