//! A UDP peer as a byte stream: what its listener received from one source
//! address, a datagram at a time, and what the peer is sent, a message a
//! datagram, from the listener's one socket.
//!
//! A source address over UDP is not proven: anyone can send a datagram
//! that claims a victim's address, and have the room's traffic sent to
//! the victim. So until a peer proves it is where it says (a device that
//! registered with its key from the devices file), it is sent at most
//! [`AMPLIFICATION`] times the bytes it sent, as QUIC does before a
//! client's address is validated; what the cap holds back is dropped and
//! counted.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UdpSocket;

use crate::hub::{DeviceProof, OutboxHandle};

/// How many times the bytes a peer sent it may be sent before its address
/// is proven (QUIC's rule, RFC 9000 section 8).
pub const AMPLIFICATION: u64 = 3;

/// The largest payload a UDP datagram carries over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// What a UDP listener counts, for the admin.
#[derive(Debug, Default)]
pub(crate) struct UdpStats {
    /// Datagrams received.
    pub(crate) datagrams_in: AtomicU64,
    /// Datagrams sent.
    pub(crate) datagrams_out: AtomicU64,
    /// Messages not sent to a peer whose address is not proven, as they
    /// would have taken it past the amplification cap.
    pub(crate) capped: AtomicU64,
    /// Messages too big for one datagram, not sent.
    pub(crate) oversize: AtomicU64,
    /// Datagrams dropped as they came: their peer had too many waiting.
    pub(crate) dropped_in: AtomicU64,
    /// Datagrams from new peers the server did not admit (its limits).
    pub(crate) refused: AtomicU64,
    /// Datagrams from new peers not taken because the listener had as
    /// many peers whose address is not proven as it takes
    /// (`?max-unproven=`).
    pub(crate) unproven_full: AtomicU64,
    /// Peers now served whose address is not proven (a gauge): what a
    /// flood of forged source addresses makes, so it is bounded.
    pub(crate) unproven: AtomicU64,
    /// How many unproven peers the listener takes now: its `max-unproven`,
    /// or half of `--max-connections` (which a reload may change).
    pub(crate) max_unproven: AtomicU64,
}

impl UdpStats {
    /// Adds one to `counter`.
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Datagrams of one peer waiting to be handled: past it, more are dropped
/// (and counted), as a slow TCP client's socket would push back.
pub(crate) const PEER_QUEUE: usize = 64;

/// Where a UDP listener puts one peer's datagrams for its client: shared
/// by the listener's table and the client's transport. Small while idle
/// (an empty queue allocates nothing), as most peers of a fleet are.
/// `K` is what the listener keeps of the peer under the same lock (its
/// connection at rest): see [`PeerInbox::with_kept`].
#[derive(Debug)]
pub(crate) struct PeerInbox<K> {
    /// What waits, who reads it, and what the listener keeps: one lock
    /// for all (a reader checks the queue and leaves its waker at once; a
    /// burst rests only if nothing waits), 8 bytes less than an
    /// `AtomicWaker` beside the queue's lock, and 8 less again than a lock
    /// of the listener's own.
    waiting: Mutex<Waiting<K>>,
    /// Bytes the peer sent, counted as they come (before its client reads
    /// them): the amplification cap allows three times as many back. 32
    /// bits, saturating: the cap matters for the first few datagrams of a
    /// peer, and 4 bytes less a peer took its record into a smaller block.
    received: AtomicU32,
    /// Bytes sent to it, against that cap (saturating too).
    sent: AtomicU32,
    /// When its last datagram came, in tenths of a second of the hub's
    /// clock ([`PeerInbox::quiet_for`]): 4 bytes, which wrap after 13
    /// years (differences are taken wrapping).
    last: AtomicU32,
    /// [`CLOSED`], [`PROVEN`] and [`SAID_GOODBYE`]: a peer with neither of
    /// the first two counts among its listener's [`UdpStats::unproven`].
    state: AtomicU8,
}

#[derive(Debug)]
struct Waiting<K> {
    /// `None` while nothing waits, as for most peers of a fleet most of
    /// the time: a pointer where an empty `VecDeque` is 32 bytes, which
    /// kept a peer's record out of jemalloc's 192-byte blocks.
    #[expect(
        clippy::box_collection,
        reason = "the box is the point: 8 bytes in every peer's record, allocated only while datagrams wait"
    )]
    queue: Option<Box<VecDeque<Bytes>>>,
    /// The task reading it while one serves the peer.
    reader: Option<Waker>,
    /// What its listener keeps of the peer.
    kept: K,
}

/// The clock [`PeerInbox::quiet_for`] is asked with: read once for a
/// sweep of every peer.
pub(crate) fn peer_clock() -> u64 {
    crate::hub::now_millis()
}

/// Adds `bytes` to `counter`, which stops at its largest value.
fn add_saturating(counter: &AtomicU32, bytes: usize) {
    let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        Some(now.saturating_add(bytes))
    });
}

/// The hub's millisecond clock in tenths of a second, as a peer's last
/// datagram is kept (wrapping).
fn tenths(millis: u64) -> u32 {
    (millis / 100) as u32
}

/// The client is gone, or the listener: nothing more comes through.
const CLOSED: u8 = 1;
/// The peer's address is proven: no amplification cap.
const PROVEN: u8 = 2;
/// Its client's goodbye is written: nothing more is sent to it.
const SAID_GOODBYE: u8 = 4;

/// Why a datagram did not go into a peer's inbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// [`PEER_QUEUE`] datagrams are waiting already.
    Full,
    /// Its client is gone: the datagram is a new peer's.
    Closed(Bytes),
}

impl<K> PeerInbox<K> {
    /// A new peer's inbox, counted among its listener's unproven peers
    /// (`stats`) until it is proven or closed, keeping `kept` for the
    /// listener.
    pub(crate) fn new(stats: &UdpStats, kept: K) -> Self {
        stats.unproven.fetch_add(1, Ordering::Relaxed);
        PeerInbox {
            waiting: Mutex::new(Waiting {
                queue: None,
                reader: None,
                kept,
            }),
            received: AtomicU32::new(0),
            sent: AtomicU32::new(0),
            last: AtomicU32::new(tenths(crate::hub::now_millis())),
            state: AtomicU8::new(0),
        }
    }

    /// How long, at `now` (of [`peer_clock`]), since its last
    /// datagram came (or since it was made).
    pub(crate) fn quiet_for(&self, now: u64) -> Duration {
        let quiet = tenths(now).wrapping_sub(self.last.load(Ordering::Relaxed));
        Duration::from_millis(u64::from(quiet) * 100)
    }

    /// Calls `f` with what the listener keeps of the peer, and whether
    /// nothing waits for its client (no datagram, and its input is not
    /// closed), under the inbox's lock: a datagram pushed before is seen,
    /// one pushed after finds what `f` left.
    pub(crate) fn with_kept<T>(&self, f: impl FnOnce(&mut K, bool) -> T) -> T {
        let mut waiting = crate::sync::lock(&self.waiting);
        let quiet = waiting.queue.is_none() && !self.is_closed();
        f(&mut waiting.kept, quiet)
    }

    /// Hands `datagram` to the peer's client.
    pub(crate) fn push(&self, datagram: Bytes) -> Result<(), Refused> {
        if self.is_closed() {
            return Err(Refused::Closed(datagram));
        }
        let reader = {
            let mut waiting = crate::sync::lock(&self.waiting);
            let queue = waiting.queue.get_or_insert_with(Box::default);
            if queue.len() >= PEER_QUEUE {
                return Err(Refused::Full);
            }
            // Counted before its client can read it: an answer to it may
            // not find the cap without it.
            add_saturating(&self.received, datagram.len());
            queue.push_back(datagram);
            waiting.reader.take()
        };
        self.last
            .store(tenths(crate::hub::now_millis()), Ordering::Relaxed);
        if let Some(reader) = reader {
            reader.wake();
        }
        Ok(())
    }

    /// Ends the peer's input (its client is gone, or its listener stops):
    /// its client reads the end.
    pub(crate) fn close(&self, stats: &UdpStats) {
        self.settle(CLOSED, stats);
        let reader = crate::sync::lock(&self.waiting).reader.take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Whether its client is gone (or its listener).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// The peer proved its address: it is sent whatever it is sent, and
    /// no longer counts among the listener's unproven peers.
    pub(crate) fn prove(&self, stats: &UdpStats) {
        self.settle(PROVEN, stats);
    }

    /// Whether the peer proved its address.
    pub(crate) fn is_proven(&self) -> bool {
        self.state.load(Ordering::Acquire) & PROVEN != 0
    }

    /// Marks its client's goodbye written; returns whether it was not
    /// before (a writer woken twice says it once).
    pub(crate) fn say_goodbye(&self) -> bool {
        self.state.fetch_or(SAID_GOODBYE, Ordering::AcqRel) & SAID_GOODBYE == 0
    }

    /// Whether its client's goodbye is written.
    pub(crate) fn said_goodbye(&self) -> bool {
        self.state.load(Ordering::Acquire) & SAID_GOODBYE != 0
    }

    /// Sets `bit`; the first of closing and proving takes the peer off
    /// the listener's unproven ones, once.
    fn settle(&self, bit: u8, stats: &UdpStats) {
        if self.state.fetch_or(bit, Ordering::AcqRel) & (CLOSED | PROVEN) == 0 {
            stats.unproven.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut waiting = crate::sync::lock(&self.waiting);
        let Waiting { queue, reader, .. } = &mut *waiting;
        if let Some(datagram) = queue.as_mut().and_then(|queue| queue.pop_front()) {
            // An emptied queue keeps its room: given back, as most peers
            // of a fleet are quiet far longer than they send.
            if queue.as_ref().is_some_and(|queue| queue.is_empty()) {
                *queue = None;
            }
            return Poll::Ready(Some(datagram));
        }
        // Left before the end is looked at: a close after it wakes it.
        match reader {
            Some(reader) if reader.will_wake(cx.waker()) => {}
            _ => *reader = Some(cx.waker().clone()),
        }
        drop(waiting);
        match self.is_closed() {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }
}

/// The reading half of a peer, for a burst of its client's connection:
/// its datagrams, one per read (or more reads, if one is longer than the
/// buffer); the end when its client or its listener is gone.
#[derive(Debug)]
pub(crate) struct PeerReader<'a, K> {
    inbox: &'a PeerInbox<K>,
    /// The rest of a datagram longer than the reader's buffer.
    pending: &'a mut Option<Bytes>,
    stats: &'a UdpStats,
    client: &'a OutboxHandle,
}

impl<'a, K> PeerReader<'a, K> {
    /// Reads what `inbox` holds for `client`, keeping the rest of a long
    /// datagram in `pending` between reads.
    pub(crate) fn new(
        inbox: &'a PeerInbox<K>,
        pending: &'a mut Option<Bytes>,
        stats: &'a UdpStats,
        client: &'a OutboxHandle,
    ) -> Self {
        PeerReader {
            inbox,
            pending,
            stats,
            client,
        }
    }
}

/// Whether `client` proved where it is: a device that registered with its
/// key from the devices file.
fn proved(client: &OutboxHandle) -> bool {
    client.device_proof() == Some(DeviceProof::Keyed)
}

impl<K> AsyncRead for PeerReader<'_, K> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Asked before each datagram, after the last was handled: a
        // registration with a key leaves the unproven at once.
        if !this.inbox.is_proven() && proved(this.client) {
            this.inbox.prove(this.stats);
        }
        while this.pending.is_none() {
            match this.inbox.poll_next(cx) {
                // An empty datagram says nothing; a read of nothing would
                // be the end.
                Poll::Ready(Some(datagram)) if datagram.is_empty() => continue,
                Poll::Ready(Some(datagram)) => *this.pending = Some(datagram),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let datagram = this.pending.as_mut().expect("filled above");
        let n = datagram.len().min(buf.remaining());
        buf.put_slice(&datagram[..n]);
        datagram.advance(n);
        if datagram.is_empty() {
            *this.pending = None;
        }
        Poll::Ready(Ok(()))
    }
}

/// Where a peer is sent what its client is sent: a message a datagram,
/// from its listener's socket, within the amplification cap until its
/// address is proven.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerWriter<'a, K> {
    pub(crate) socket: &'a UdpSocket,
    pub(crate) peer: SocketAddr,
    pub(crate) inbox: &'a PeerInbox<K>,
    pub(crate) stats: &'a UdpStats,
    pub(crate) client: &'a OutboxHandle,
}

impl<K> PeerWriter<'_, K> {
    /// Whether `len` more bytes may be sent to the peer now.
    fn may_send(&self, len: usize) -> bool {
        if self.inbox.is_proven() {
            return true;
        }
        let allowed = AMPLIFICATION * u64::from(self.inbox.received.load(Ordering::Relaxed));
        if u64::from(self.inbox.sent.load(Ordering::Relaxed)) + len as u64 <= allowed {
            return true;
        }
        if proved(self.client) {
            self.inbox.prove(self.stats);
            return true;
        }
        false
    }

    /// Sends one message as one datagram, or drops it (counted): too big,
    /// over the cap, or not taken by the socket within `stall` (a datagram
    /// is not a stream: one that cannot go is lost, not the peer). Returns
    /// the bytes sent.
    pub(crate) async fn send(&self, message: &[u8], stall: Duration) -> usize {
        if message.len() > MAX_DATAGRAM {
            UdpStats::count(&self.stats.oversize);
            return 0;
        }
        if !self.may_send(message.len()) {
            UdpStats::count(&self.stats.capped);
            return 0;
        }
        // Most sends go at once; a full socket buffer is waited for, as a
        // peer's own writer did.
        let sent = match self.socket.try_send_to(message, self.peer) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(stall, self.socket.send_to(message, self.peer)).await {
                    Ok(sent) => sent,
                    Err(_) => Err(io::ErrorKind::TimedOut.into()),
                }
            }
            sent => sent,
        };
        match sent {
            Ok(_) => {
                add_saturating(&self.inbox.sent, message.len());
                UdpStats::count(&self.stats.datagrams_out);
                message.len()
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer, %error, "a datagram could not be sent");
                0
            }
        }
    }

    /// Sends the messages of `item` (as [`Datagrams`] framed them), a
    /// datagram each; returns the bytes sent.
    ///
    /// [`Datagrams`]: crate::protocol::Datagrams
    pub(crate) async fn send_item(&self, item: &[u8], stall: Duration) -> usize {
        let mut sent = 0;
        for message in crate::protocol::datagram_messages(item) {
            sent += self.send(message, stall).await;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held for every peer of a fleet, idle or not: a change that grows
    /// them shows here first (raise the bounds knowingly, with the
    /// memory figure of `TRANSPORT=udp bench/devices.py` in the commit).
    #[test]
    fn what_each_udp_peer_holds_stays_small() {
        let inbox = std::mem::size_of::<PeerInbox<()>>();
        println!("a peer's inbox: {inbox} bytes");
        assert!(inbox <= 48, "PeerInbox is {inbox} bytes");
    }

    /// A quiet peer's inbox holds no queue: it held the room of four
    /// datagrams after its first (128 bytes, an eighth of an idle peer).
    #[test]
    fn an_inbox_gives_its_queue_back_once_read() {
        let stats = UdpStats::default();
        let inbox = PeerInbox::new(&stats, ());
        inbox.push(Bytes::from_static(b"hello")).unwrap();
        inbox.push(Bytes::from_static(b"again")).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for expected in [&b"hello"[..], b"again"] {
            match inbox.poll_next(&mut cx) {
                Poll::Ready(Some(datagram)) => assert_eq!(&datagram[..], expected),
                other => panic!("expected a datagram, got {other:?}"),
            }
        }
        assert!(inbox.poll_next(&mut cx).is_pending());
        assert!(crate::sync::lock(&inbox.waiting).queue.is_none());
    }

    #[test]
    fn an_inbox_takes_a_queue_of_datagrams_then_refuses_and_closes() {
        let stats = UdpStats::default();
        let inbox = PeerInbox::new(&stats, ());
        for _ in 0..PEER_QUEUE {
            inbox.push(Bytes::from_static(b"12345")).unwrap();
        }
        assert_eq!(inbox.push(Bytes::from_static(b"x")), Err(Refused::Full));
        assert_eq!(
            inbox.received.load(Ordering::Relaxed),
            5 * PEER_QUEUE as u32,
            "what was taken counts, what was refused does not"
        );
        inbox.close(&stats);
        assert_eq!(
            inbox.push(Bytes::from_static(b"y")),
            Err(Refused::Closed(Bytes::from_static(b"y")))
        );
    }

    /// A flood of forged sources is bounded by counting the peers that
    /// proved nothing: each leaves the count once, proven or gone.
    #[test]
    fn a_peer_counts_as_unproven_until_it_is_proven_or_gone() {
        let stats = UdpStats::default();
        let unproven = || stats.unproven.load(Ordering::Relaxed);
        let (device, forged) = (PeerInbox::new(&stats, ()), PeerInbox::new(&stats, ()));
        assert_eq!(unproven(), 2);
        device.prove(&stats);
        device.prove(&stats);
        assert_eq!(unproven(), 1);
        device.close(&stats);
        assert_eq!(unproven(), 1, "a proven peer left the count already");
        forged.close(&stats);
        forged.close(&stats);
        assert_eq!(unproven(), 0);
        assert!(device.is_proven() && device.is_closed() && !forged.is_proven());
    }
}
