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

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Farewell, Transport};
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
}

impl UdpStats {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One peer of a UDP listener.
#[derive(Debug)]
pub(crate) struct UdpTransport {
    inbox: mpsc::Receiver<Bytes>,
    /// The rest of a datagram longer than the reader's buffer.
    pending: Option<Bytes>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    stats: Arc<UdpStats>,
    /// Bytes received from the peer, counted by its listener as they
    /// come (before this client reads them): what it may be sent
    /// depends on it.
    received: Arc<AtomicU64>,
    /// Bytes sent to it.
    sent: u64,
    /// Its address is proven: no cap.
    proven: bool,
    /// The client, whose registration may prove its address.
    client: Option<OutboxHandle>,
}

impl UdpTransport {
    /// The peer at `peer`, whose datagrams come through `inbox` (their
    /// bytes counted in `received`), answered through `socket`.
    pub(crate) fn new(
        inbox: mpsc::Receiver<Bytes>,
        received: Arc<AtomicU64>,
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        stats: Arc<UdpStats>,
    ) -> Self {
        UdpTransport {
            inbox,
            pending: None,
            socket,
            peer,
            stats,
            received,
            sent: 0,
            proven: false,
            client: None,
        }
    }
}

impl Transport for UdpTransport {
    type Reader<'a> = Reader<'a>;
    type Writer<'a> = Writer<'a>;

    fn halves(&mut self) -> (Reader<'_>, Writer<'_>) {
        (
            Reader {
                inbox: &mut self.inbox,
                pending: &mut self.pending,
            },
            Writer {
                socket: &self.socket,
                peer: self.peer,
                stats: &self.stats,
                received: &self.received,
                sent: &mut self.sent,
                proven: &mut self.proven,
                client: self.client.as_ref(),
            },
        )
    }

    fn know_client(&mut self, client: OutboxHandle) {
        self.client = Some(client);
    }
}

/// The reading half: the peer's datagrams, one per read (or more reads,
/// if one is longer than the buffer); the end when its listener lets it go.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    inbox: &'a mut mpsc::Receiver<Bytes>,
    pending: &'a mut Option<Bytes>,
}

impl AsyncRead for Reader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_none() {
            match this.inbox.poll_recv(cx) {
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

/// The writing half: each message a datagram to the peer, within the
/// amplification cap until its address is proven.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    socket: &'a UdpSocket,
    peer: SocketAddr,
    stats: &'a UdpStats,
    received: &'a AtomicU64,
    sent: &'a mut u64,
    proven: &'a mut bool,
    client: Option<&'a OutboxHandle>,
}

impl Writer<'_> {
    /// Whether `len` more bytes may be sent to the peer now.
    fn may_send(&mut self, len: usize) -> bool {
        if *self.proven {
            return true;
        }
        let allowed = AMPLIFICATION * self.received.load(Ordering::Relaxed);
        if *self.sent + len as u64 <= allowed {
            return true;
        }
        // Asked only when the cap would bite: a device that registered
        // with its key proved where it is.
        if self.client.and_then(OutboxHandle::device_proof) == Some(DeviceProof::Keyed) {
            *self.proven = true;
            return true;
        }
        false
    }

    /// Sends one message as one datagram, or drops it (counted); `Pending`
    /// if the socket cannot take it now.
    fn poll_send(&mut self, cx: &mut Context<'_>, message: &[u8]) -> Poll<()> {
        if message.len() > MAX_DATAGRAM {
            UdpStats::count(&self.stats.oversize);
            return Poll::Ready(());
        }
        if !self.may_send(message.len()) {
            UdpStats::count(&self.stats.capped);
            return Poll::Ready(());
        }
        match self.socket.poll_send_to(cx, message, self.peer) {
            Poll::Ready(Ok(_)) => {
                *self.sent += message.len() as u64;
                UdpStats::count(&self.stats.datagrams_out);
                Poll::Ready(())
            }
            // A datagram is not a stream: one that cannot go (no route, no
            // buffer) is lost, not the peer.
            Poll::Ready(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "a datagram could not be sent");
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Writer<'_> {
    /// Sends the messages of `items` (each as [`Datagrams`] framed them),
    /// a datagram each; returns the bytes of those handled (sent, or
    /// dropped and counted), which end at a message's end, or `Pending`
    /// if the socket takes none now.
    ///
    /// [`Datagrams`]: crate::protocol::Datagrams
    fn poll_send_items<'b>(
        &mut self,
        cx: &mut Context<'_>,
        items: impl Iterator<Item = &'b [u8]>,
    ) -> Poll<io::Result<usize>> {
        let mut written = 0;
        for item in items {
            for message in crate::protocol::datagram_messages(item) {
                match self.poll_send(cx, message) {
                    Poll::Ready(()) => written += FRAME_HEADER + message.len(),
                    Poll::Pending if written > 0 => return Poll::Ready(Ok(written)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        Poll::Ready(Ok(written))
    }
}

/// The length in front of each message of a UDP client's queue.
const FRAME_HEADER: usize = 4;

impl AsyncWrite for Writer<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send_items(cx, std::iter::once(buf))
    }

    /// Each slice is an item of the client's queue, or what is left of
    /// one: messages behind their lengths, a datagram each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send_items(cx, bufs.iter().map(|slice| &slice[..]))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Farewell for Writer<'_> {}
