//! UDP listeners (`udp://ADDR`): one socket each, and a table of its
//! peers. The first datagram from a source address makes it a client of
//! the raw mode (admitted within the server's limits, as a TCP client
//! is); each datagram after it is one message from that client; a client
//! that sends nothing for the listener's idle timeout (by default
//! [`DEFAULT_UDP_IDLE_TIMEOUT`]) is gone.
//!
//! An idle peer has no task: its connection rests in the table
//! ([`Resting`]) until its next datagram, which a task handles, and what
//! its client is sent is written by the listener's own task from the
//! listener's socket (its outbox wakes the peer itself, a [`Wake`], which
//! puts itself on the listener's [`Ready`] list). So a fleet of quiet
//! devices costs the server their clients' records, not a task and a
//! future each.
//!
//! A source address is not proven, so datagrams with forged ones can make
//! clients at will: new peers are taken while fewer than `max-unproven`
//! served peers have proved nothing (by default half of
//! `--max-connections`), so that such a flood leaves the rest of the
//! server's connections to everyone else.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::admission::PlaceAt;
use super::listeners::Listener;
use super::{Arrival, Greeting, Held, Proof, ServerState};
use crate::connection::{Awake, Burst, Resting};
use crate::hub::{
    weight, Batch, ClientKind, ClientMeta, CloseReason, Closing, Name, OutboxHandle, PeerAddr,
};
use crate::protocol::Protocol;
use crate::sync::lock;
use crate::transport::udp::{peer_clock, PeerInbox, PeerReader, PeerWriter, Refused, UdpStats};

pub(super) use crate::config::DEFAULT_UDP_IDLE_TIMEOUT;

/// How often the table forgets peers whose clients are gone, and ends
/// the resting ones that have been quiet for the idle timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often, at most, a listener logs that it drops new peers.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One source address of a UDP listener, and its client. The address is
/// its client's ([`ClientMeta::peer`]), not kept again here: 32 bytes of
/// every peer. It is kept without an IPv6 address's scope: a link-local
/// peer (`fe80::/10`) is answered by the route the system picks for its
/// address, which on a machine with several interfaces may not be the
/// one it came in by.
struct Peer<P: Protocol> {
    /// What it sent, for its client's next burst, and under the same lock
    /// its connection at rest and its place on the server.
    inbox: PeerInbox<PeerHeld<P>>,
    /// Its client's outbox, which the listener drains.
    client: OutboxHandle,
    /// Where it goes when its outbox wakes it: its listener's list of
    /// peers with something to write (gone with the listener).
    ready: Weak<Ready<P>>,
}

/// What a listener keeps of a peer, under its inbox's lock.
struct PeerHeld<P: Protocol> {
    /// Its connection while nothing is to be done (`None` while a task
    /// serves it, and once it has ended). Whoever takes it serves or ends
    /// it; datagrams are pushed before this is looked at, and a burst
    /// rests only if none wait, both under the inbox's lock, so none is
    /// missed.
    resting: Option<Box<Resting<P>>>,
    /// Its place among the server's connections, given back as it ends
    /// (its address is the peer's own).
    place: PlaceAt,
}

impl<P: Protocol> Peer<P> {
    /// Its source address and port.
    fn addr(&self) -> &PeerAddr {
        &self.client.meta().peer
    }

    /// Takes its connection if it rests: whoever takes it serves or ends it.
    fn take_resting(&self) -> Option<Box<Resting<P>>> {
        self.inbox.with_kept(|held, _| held.resting.take())
    }
}

/// A peer is its outbox's writer's waker: woken, it goes on its
/// listener's [`Ready`] list. The outbox holds it only while the client
/// is open (see [`crate::hub::Outbox::shared`]), and the peer holds the
/// client: the two are let go of each other as the client ends.
impl<P: Protocol> Wake for Peer<P> {
    fn wake(self: Arc<Self>) {
        if let Some(ready) = self.ready.upgrade() {
            ready.push(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.clone().wake();
    }
}

/// A listener's peers whose outboxes have something to write (new items
/// after an empty queue, or a close): each once or more, in the order
/// they said so.
struct Ready<P: Protocol> {
    peers: Mutex<Vec<Arc<Peer<P>>>>,
    notify: tokio::sync::Notify,
}

impl<P: Protocol> Ready<P> {
    fn push(&self, peer: Arc<Peer<P>>) {
        lock(&self.peers).push(peer);
        self.notify.notify_one();
    }

    /// Takes the peers woken so far, into `into` (which is empty).
    fn take(&self, into: &mut Vec<Arc<Peer<P>>>) {
        std::mem::swap(&mut *lock(&self.peers), into);
    }
}

/// A peer in its listener's table, found by its address: the address is
/// the peer's own, so the table holds a pointer a peer where a map from
/// address to peer held the 32-byte address again (40 bytes an entry,
/// about 65 with the table's free room, against 8 and 15).
struct ByAddr<P: Protocol>(Arc<Peer<P>>);

impl<P: Protocol> std::borrow::Borrow<PeerAddr> for ByAddr<P> {
    fn borrow(&self) -> &PeerAddr {
        self.0.addr()
    }
}

impl<P: Protocol> std::hash::Hash for ByAddr<P> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the address hashes: the table is searched by address.
        self.0.addr().hash(state)
    }
}

impl<P: Protocol> PartialEq for ByAddr<P> {
    fn eq(&self, other: &Self) -> bool {
        self.0.addr() == other.0.addr()
    }
}

impl<P: Protocol> Eq for ByAddr<P> {}

/// What every peer's task needs of its listener.
struct Shared<P: Protocol> {
    server: Arc<ServerState>,
    listener: Arc<Listener>,
    stats: Arc<UdpStats>,
    protocol: Arc<P>,
}

impl<P: Protocol> Shared<P> {
    /// Serves `peer`, burst after burst, until nothing waits (it rests
    /// again) or it ends.
    async fn serve(self: Arc<Self>, peer: Arc<Peer<P>>, mut awake: Awake<P>) {
        let mut pending: Option<Bytes> = None;
        loop {
            let reader = PeerReader::new(&peer.inbox, &mut pending, &self.stats, &peer.client);
            // The listener's, as they are now: a reload reaches resting
            // peers too.
            let timeouts = self.server.timeouts_for(&self.listener);
            match awake.serve(reader, &timeouts).await {
                Burst::Idle(idle) => {
                    let rested = peer.inbox.with_kept(|held, quiet| match quiet {
                        true => {
                            held.resting = Some(idle);
                            None
                        }
                        false => Some(idle),
                    });
                    // More came meanwhile (or the end): served at once.
                    if let Some(idle) = rested {
                        awake = idle.wake(self.protocol.clone());
                        continue;
                    }
                    return;
                }
                Burst::Ended(name, closing) => return self.ended(&peer, name, closing),
            }
        }
    }

    /// Ends `peer`'s client: at once if it rests, or as its task reads the
    /// end of its input.
    fn end(self: &Arc<Self>, peer: &Arc<Peer<P>>) {
        peer.inbox.close(&self.stats);
        if let Some(resting) = peer.take_resting() {
            self.finish(peer, resting, None);
        }
    }

    /// Ends a resting peer's client, for `reason` if nothing closed it yet.
    fn finish(
        self: &Arc<Self>,
        peer: &Arc<Peer<P>>,
        resting: Box<Resting<P>>,
        reason: Option<CloseReason>,
    ) {
        // Its next datagram is a new peer's.
        peer.inbox.close(&self.stats);
        let (shared, peer) = (self.clone(), peer.clone());
        let stall = self.server.live().timeouts.stall;
        self.server.tracker.spawn(async move {
            let (name, closing) = resting
                .wake(shared.protocol.clone())
                .end(reason, stall)
                .await;
            shared.ended(&peer, name, closing);
        });
    }

    fn ended(&self, peer: &Peer<P>, name: Name, closing: Closing) {
        peer.inbox.close(&self.stats);
        // Closed, its outbox holds the peer no more; made sure of here.
        peer.client.detach();
        let mut place = peer
            .inbox
            .with_kept(|held, _| std::mem::take(&mut held.place));
        self.server.release_at(&mut place, peer.addr().ip());
        self.server
            .client_left(&self.listener, &peer.client, name, closing);
    }

    /// Writes what `peer`'s client is sent, and its goodbye if it is
    /// closed (once: a peer may be woken again after it).
    async fn write(self: &Arc<Self>, socket: &UdpSocket, peer: &Arc<Peer<P>>) {
        if peer.inbox.said_goodbye() {
            return;
        }
        let waker = Waker::from(peer.clone());
        let stall = self.server.live().timeouts.stall;
        let writer = PeerWriter {
            socket,
            peer: SocketAddr::from(*peer.addr()),
            inbox: &peer.inbox,
            stats: &self.stats,
            client: &peer.client,
        };
        loop {
            let Batch { items, closing } = peer.client.take_rearmed(&waker);
            let was_empty = items.is_empty();
            let (mut sent, mut done) = (0, 0);
            for item in &items {
                sent += writer.send_item(item, stall).await;
                done += weight(item);
            }
            if !was_empty {
                peer.client.progressed();
                peer.client.sent(sent);
                peer.client.written(done);
            }
            let Some(closing) = closing else {
                return;
            };
            // A flushing close is acted on once the queue is empty.
            if !was_empty {
                continue;
            }
            if !peer.inbox.say_goodbye() {
                return;
            }
            let goodbye = self.protocol.goodbye(&closing);
            if !goodbye.is_empty() {
                writer.send(&goodbye, stall).await;
            }
            self.end(peer);
            return;
        }
    }
}

/// Receives datagrams until the listener is stopped, and writes what its
/// peers are sent; `make` makes the protocol its peers speak.
pub(super) async fn receive_loop<P: Protocol>(
    server: Arc<ServerState>,
    listener: Arc<Listener>,
    socket: Arc<UdpSocket>,
    stats: Arc<UdpStats>,
    make: impl Fn(&Greeting) -> P + Send + 'static,
) {
    let spec = listener.spec.clone().expect("UDP listeners have a spec");
    let protocol = Arc::new(make(&server.greeting.borrow()));
    let shared = Arc::new(Shared {
        server: server.clone(),
        listener: listener.clone(),
        stats: stats.clone(),
        protocol,
    });
    let ready = Arc::new(Ready {
        peers: Mutex::default(),
        notify: tokio::sync::Notify::new(),
    });
    #[expect(
        clippy::mutable_key_type,
        reason = "a peer is hashed and compared by its address, which never changes"
    )]
    let mut peers: HashSet<ByAddr<P>> = HashSet::new();
    let mut woken = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    let max_unproven = || {
        let max = spec
            .max_unproven
            .unwrap_or(server.live().max_connections / 2)
            .max(1) as u64;
        stats.max_unproven.store(max, Ordering::Relaxed);
        max
    };
    max_unproven();
    let mut warned: Option<Instant> = None;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (len, addr) = tokio::select! {
            // Its peers' clients end with it.
            _ = listener.stop.cancelled() => {
                for ByAddr(peer) in &peers {
                    shared.end(peer);
                }
                return;
            }
            () = ready.notify.notified() => {
                ready.take(&mut woken);
                for peer in woken.drain(..) {
                    shared.write(&socket, &peer).await;
                }
                continue;
            }
            _ = sweep.tick() => {
                let idle = server.timeouts_for(&listener).idle;
                let now = peer_clock();
                peers.retain(|ByAddr(peer)| {
                    if peer.inbox.is_closed() {
                        return false;
                    }
                    // A peer a task serves has that task's deadlines.
                    if let Some(idle) = idle.filter(|idle| peer.inbox.quiet_for(now) >= *idle) {
                        if let Some(resting) = peer.take_resting() {
                            let reason = CloseReason::Idle { timeout: idle };
                            shared.finish(peer, resting, Some(reason));
                        }
                    }
                    true
                });
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
        let addr = PeerAddr::from(addr);
        if let Some(ByAddr(peer)) = peers.get(&addr) {
            match peer.inbox.push(datagram) {
                Ok(()) => {
                    // Resting: a task serves it now.
                    if let Some(resting) = peer.take_resting() {
                        let task = shared
                            .clone()
                            .serve(peer.clone(), resting.wake(shared.protocol.clone()));
                        server.tracker.spawn(task);
                    }
                    continue;
                }
                Err(Refused::Full) => {
                    UdpStats::count(&stats.dropped_in);
                    continue;
                }
                // Its client is gone (idle, kicked): this one is new.
                Err(Refused::Closed(again)) => {
                    peers.remove(&addr);
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
        let admitted = server
            .listener_has_room(&listener)
            .and_then(|()| server.admit(Held::Nothing, addr.ip(), spec.auth));
        let admitted = match admitted {
            Ok(admitted) => admitted,
            // Not answered: an answer to an address nobody proved is what
            // an amplification attack wants.
            Err(refusal) => {
                UdpStats::count(&stats.refused);
                if refusal.log {
                    warn!(peer = %addr, listener = %spec, "dropped a datagram from a new UDP peer: {}", refusal.reason);
                }
                continue;
            }
        };
        let arrival = Arrival {
            meta: ClientMeta {
                kind: ClientKind::Udp,
                tls: false,
                peer: addr,
                listener: listener.id,
                sealed: spec.room.is_sealed(),
            },
            room: spec.room.clone(),
            proof: Proof::Nothing,
            admitted,
        };
        let (peer, first) = arrive(&shared, arrival, datagram, Arc::downgrade(&ready));
        server.tracker.spawn(first);
        // The address is free (a closed peer of it was removed above).
        peers.replace(ByAddr(peer));
    }
}

/// A new peer's client, with `datagram` waiting for it, and the task that
/// welcomes it and serves its first burst.
fn arrive<P: Protocol>(
    shared: &Arc<Shared<P>>,
    arrival: Arrival,
    datagram: Bytes,
    ready: Weak<Ready<P>>,
) -> (
    Arc<Peer<P>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let Arrival {
        meta,
        room,
        admitted,
        ..
    } = arrival;
    let server = &shared.server;
    let mut session = server.hub.connect_drained(&P::ENCODINGS, meta);
    server.settle(&shared.listener, &mut session);
    let peer = Arc::new(Peer {
        inbox: PeerInbox::new(
            &shared.stats,
            PeerHeld {
                resting: None,
                place: admitted.slot.into_place_at(meta.peer.ip()),
            },
        ),
        client: session.outbox_handle(),
        ready,
    });
    peer.client.attach(&Waker::from(peer.clone()));
    let _ = peer.inbox.push(datagram);
    shared.listener.connected();
    info!(peer = %meta.peer, name = %session.name(), client = %session.id(), mode = %meta.kind, tls = false, "client connected");
    let (shared, serving) = (shared.clone(), peer.clone());
    let gate = admitted.gate;
    let first = async move {
        // In a cluster sharing histories, the room's copy is made whole
        // before the client arrives in it (it is shown it).
        let hold = match shared.server.hub.shares_history() {
            true => session.ready_to_join(&room).await,
            false => None,
        };
        let awake = Awake::start(shared.protocol.clone(), session, room, gate);
        drop(hold);
        shared.serve(serving, awake).await;
    };
    (peer, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Datagrams, Device, Raw};

    /// What an idle peer holds besides its client's record in the hub:
    /// its entry here, and its connection at rest. A feature that grows
    /// them shows here first (raise the bounds knowingly, with the memory
    /// figure of `bench/udp_idle.py` in the commit). A connection at rest
    /// is parked: its session without its name or its hub, its one room
    /// inline, its read side without its buffer, its protocol its
    /// listener's; a raw one is 64 bytes, a device's 80, each a block of
    /// that size of jemalloc's (80 and 96 while the parked session held
    /// its hub and its rooms as a list; 168 and 184, 192-byte blocks,
    /// while a resting peer kept its whole connection). A peer's record is
    /// 80 bytes, 96 in its `Arc`: a 96-byte block (88, a 112-byte block,
    /// while its connection at rest had a lock of its own beside its
    /// inbox's; 136, a 160-byte block, while it kept its address beside
    /// its client's, its clock in 8 bytes and its amplification counts in
    /// 16; 176, a 192-byte block,
    /// while its inbox's reader had a lock of its own beside the queue's
    /// and its place on the server held its address again; 200, a
    /// 224-byte block, while its inbox held an empty queue inline).
    #[test]
    fn a_resting_peer_stays_small() {
        let peer = std::mem::size_of::<Peer<Datagrams<Device>>>();
        let device = std::mem::size_of::<Resting<Datagrams<Device>>>();
        let raw = std::mem::size_of::<Resting<Datagrams<Raw>>>();
        println!(
            "a peer: {peer} bytes; at rest, a device's connection {device}, a raw one's {raw}"
        );
        assert!(peer <= 80, "Peer is {peer} bytes");
        assert!(device <= 80, "a device's Resting is {device} bytes");
        assert!(raw <= 64, "a raw Resting is {raw} bytes");
    }
}
