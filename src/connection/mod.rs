//! One client's connection, from its welcome to its goodbye: the phases
//! it goes through before it is simply served (`phase.rs`: authenticating,
//! registering, arriving), the read side that turns bytes into requests to
//! the hub (`read.rs`), and the write side that drains its outbox to the
//! socket, in batches, and enforces the stall timeout (`write.rs`).
//!
//! A UDP peer is served the same way in bursts ([`Resting`]): a task
//! handles what it sent and ends once there is nothing more, leaving its
//! state with the peer; its listener's socket writes what it is sent.

mod phase;
mod read;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::time::timeout;

use crate::hub::{
    CloseReason, Closing, Name, Outbox, OutboxHandle, ParkedSession, RoomName, Session,
};
use crate::protocol::Protocol;
use crate::throttle::ClientRates;
use crate::transport::Transport;
pub(crate) use phase::AuthGate;
use phase::Phase;
use read::{read_side, ParkedReading, Reading, Stopped};
use write::WriteSide;

/// The per-connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// See [`Config::stall_timeout`](crate::Config::stall_timeout).
    pub stall: Duration,
    /// See [`Config::idle_timeout`](crate::Config::idle_timeout).
    pub idle: Option<Duration>,
    /// See [`Config::line_timeout`](crate::Config::line_timeout).
    pub line: Option<Duration>,
    /// See [`Config::max_messages_per_second`](crate::Config::max_messages_per_second)
    /// and the settings after it.
    pub rates: ClientRates,
}

/// How a client's connection ended: what its last log line names.
#[derive(Debug)]
pub(crate) struct Gone {
    /// Its final name.
    pub(crate) name: Name,
    /// Why the connection closed.
    pub(crate) closing: Closing,
    /// Its record in the hub, for the rest (given back at the end rather
    /// than kept beside the connection's future all its life).
    pub(crate) client: OutboxHandle,
}

/// Welcomes a client, puts it in `room`, and serves it until it leaves or
/// is disconnected; returns how it went.
///
/// The read side ends the connection by closing the outbox (the client
/// left, or sent garbage the socket cannot survive); everything else (a
/// cut-off, a server shutdown) closes the outbox from outside. Either way
/// the write side ends once it has said goodbye, and whatever the read side
/// was doing is dropped. So an idle connection waits on its socket and its
/// outbox's wake-up, nothing more: this future lives as long as the
/// connection, and its size is memory per client. What is needed only while
/// handling input or writing is boxed for that time.
pub(crate) fn serve<P, S>(
    protocol: Arc<P>,
    mut session: Session,
    room: RoomName,
    mut stream: S,
    timeouts: Arc<Timeouts>,
    gate: Option<AuthGate>,
) -> impl std::future::Future<Output = Gone> + Send
where
    P: Protocol,
    S: Transport,
{
    // Done before the future, so that it does not keep what it needs only
    // to begin with (the room, the welcome).
    let phase = Phase::start(&*protocol, &mut session, room, gate);
    let mut reading = Reading::new(protocol.decoder(), phase);
    async move {
        // The captured stream itself, borrowed: moving it into a local
        // would keep both in the future, the moved-from one dead but
        // still taking its room (a WebSocket's or TLS session's state
        // twice, not a socket's handle).
        let (reader, writer) = stream.halves();
        let protocol = &*protocol;
        let writing = WriteSide::new(protocol, session.outbox_handle(), writer, &timeouts.stall);
        // The write side, if the read side ended first.
        let writing = {
            let reading = read_side(
                protocol,
                &mut session,
                reader,
                &timeouts,
                &mut reading,
                false,
            );
            Sides {
                reading: std::pin::pin!(reading),
                writing: Some(writing),
            }
            .await
        };
        // Out of its rooms now, while the writer may still be flushing.
        let name = depart(&mut session);
        let stall = timeouts.stall;
        // Boxed, as everything this future awaits only once; one await,
        // so that nothing is kept for it beside the two sides.
        let (closing, client) = Box::pin(async move {
            if let Some(writing) = writing {
                writing.await;
            }
            let closing = closing(session.outbox());
            let client = session.outbox_handle();
            farewell(session, stall).await;
            (closing, client)
        })
        .await;
        Gone {
            name,
            closing,
            client,
        }
    }
}

/// A connection's two sides, until one ends: the read side first. The
/// output is the write side, if the read side ended first (it says
/// goodbye still). Not `select!`, nor a `poll_fn` over two pinned locals:
/// those keep more beside the two sides (their own state, pointers to
/// them), and this is held by every idle connection.
struct Sides<'r, R, W> {
    reading: Pin<&'r mut R>,
    /// `None` once it is given out.
    writing: Option<W>,
}

impl<R: Future, W: Future<Output = ()> + Unpin> Future for Sides<'_, R, W> {
    type Output = Option<W>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<W>> {
        let this = self.get_mut();
        if this.reading.as_mut().poll(cx).is_ready() {
            return Poll::Ready(this.writing.take());
        }
        let Some(writing) = &mut this.writing else {
            return Poll::Pending;
        };
        Pin::new(writing).poll(cx).map(|()| None)
    }
}

/// Takes a leaving client out of its rooms (they are told) and gives its
/// final name.
fn depart(session: &mut Session) -> Name {
    let name = session.name().clone();
    session.set_input_held(0);
    session.depart();
    name
}

/// After a client has left its rooms: they were told, and like anything a
/// client causes, that waits for receivers its notice congested (a bounded
/// time: a stalled one is cut off), so a client connecting and leaving in
/// a loop cannot flood a room faster than it reads.
async fn farewell(mut session: Session, stall: Duration) {
    let _ = timeout(stall, session.until_receivers_keep_up()).await;
}

/// Why the connection closed, as its outbox says (a client that simply
/// left, if nothing closed it).
fn closing(outbox: &Outbox) -> Closing {
    outbox.closing().unwrap_or(Closing {
        reason: CloseReason::ClientClosed,
        flush: true,
    })
}

/// A client served in bursts (a UDP peer), between them: all its
/// connection keeps while it sends nothing, with no task, parked (its
/// session without its name, its read side without its buffer). Its
/// outbox is drained by a shared writer (see [`Hub::connect_drained`]),
/// so only its input needs a task: [`Resting::wake`] gives the
/// connection that serves what came, until there is nothing more.
///
/// [`Hub::connect_drained`]: crate::hub::Hub::connect_drained
pub(crate) struct Resting<P: Protocol> {
    session: ParkedSession,
    reading: ParkedReading<P::Decoder>,
}

/// A client served in bursts, during one: see [`Resting`].
pub(crate) struct Awake<P: Protocol> {
    protocol: Arc<P>,
    session: Session,
    reading: Reading<P::Decoder>,
}

/// What became of a burst.
pub(crate) enum Burst<P: Protocol> {
    /// Nothing more to read: put away until more comes.
    Idle(Box<Resting<P>>),
    /// The client is gone: its final name and why.
    Ended(Name, Closing),
}

impl<P: Protocol> Resting<P> {
    /// The connection again, to serve what came, in its listener's
    /// `protocol` (not kept at rest: 8 bytes a peer).
    pub(crate) fn wake(self, protocol: Arc<P>) -> Awake<P> {
        let Resting { session, reading } = self;
        Awake {
            protocol,
            session: session.resume(),
            reading: reading.resume(),
        }
    }
}

impl<P: Protocol> Awake<P> {
    /// Welcomes a client and puts it in `room`, as [`serve`] does; it is
    /// served from the first [`Awake::serve`].
    pub(crate) fn start(
        protocol: Arc<P>,
        mut session: Session,
        room: RoomName,
        gate: Option<AuthGate>,
    ) -> Self {
        let phase = Phase::start(&*protocol, &mut session, room, gate);
        let reading = Reading::new(protocol.decoder(), phase);
        Awake {
            protocol,
            session,
            reading,
        }
    }

    /// Handles what `reader` has, and what comes while a phase waits for
    /// more (a device's registration, with its deadline), until there is
    /// nothing more to read; or the client's end, if it comes first
    /// (its reader ends, or its outbox closes). `timeouts` are its
    /// listener's now (not kept while it rests).
    pub(crate) async fn serve<R: AsyncRead + Unpin>(
        mut self,
        reader: R,
        timeouts: &Timeouts,
    ) -> Burst<P> {
        let Awake {
            protocol,
            session,
            reading,
        } = &mut self;
        let stopped = read_side(&**protocol, session, reader, timeouts, reading, true).await;
        match stopped {
            Stopped::Idle if !session.outbox().is_closed() => {
                let Awake {
                    session, reading, ..
                } = self;
                Burst::Idle(Box::new(Resting {
                    session: session.park(),
                    reading: reading.park(),
                }))
            }
            _ => {
                let (name, closing) = self.end(None, timeouts.stall).await;
                Burst::Ended(name, closing)
            }
        }
    }

    /// Ends the connection, for `reason` if it was not closed already (an
    /// idle timeout; without one, the client is taken to have left): out
    /// of its rooms, its rooms told. Returns its final name and why it
    /// closed; its rooms' congested receivers are waited for up to `stall`.
    pub(crate) async fn end(self, reason: Option<CloseReason>, stall: Duration) -> (Name, Closing) {
        let Awake { mut session, .. } = self;
        session.close(reason.unwrap_or(CloseReason::ClientClosed), true);
        let outbox = session.outbox_handle();
        let name = depart(&mut session);
        farewell(session, stall).await;
        (name, closing(&outbox))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Text;

    /// See [`the_connection_of_an_idle_client_stays_small`].
    const CONNECTION_FUTURE_BYTES: usize = 368;

    /// The connection's future is the memory every idle client holds
    /// (with its session and outbox): what it needs only while handling
    /// input or writing is boxed for that time. A change that grows it
    /// shows here first; raise the bound only knowingly, with the
    /// idle-memory figure of `bench/ab.sh` in the commit. It was 992
    /// bytes while the read side's work and the write side's batch were
    /// kept beside its waits, and its two sides were `async fn`s (which
    /// hold their arguments twice); 696 with those fixed; 416 since the
    /// timeouts are shared by a listener's clients, the write side waits
    /// on a waker (not a `Notify`'s 64-byte wait) and each side awaits
    /// its work in one place (an `async` block keeps what lives across
    /// two of its awaits beside all of them); 432 with the rate limit's
    /// buckets held inline (they were 64 bytes on the heap); 368 with the
    /// write side a future written by hand, raced with the read side by
    /// [`Sides`], and the line decoder and the line's start in 8-byte
    /// fields.
    ///
    /// It sits inside the client's task, whose cell tokio allocates in
    /// 128-byte steps: in a release build a text client's future is 360
    /// bytes and, with what the task keeps for the client's end (the
    /// server's `Leaving`, 40 bytes, guarded there), its task's cell is
    /// 512, with no byte to spare (8 bytes more and it is 640).
    /// This bound is the test build's size today: any growth fails.
    #[tokio::test]
    async fn the_connection_of_an_idle_client_stays_small() {
        let size = idle_connection_size(Arc::new(Text::new(1024, None, None))).await;
        println!("a text connection's future: {size} bytes");
        assert!(size <= CONNECTION_FUTURE_BYTES, "{size} bytes");
    }

    /// The size of the future serving an idle client of `protocol` over TCP.
    async fn idle_connection_size<P: Protocol>(protocol: Arc<P>) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, stream) = (client.unwrap(), accepted.unwrap().0);
        let hub = crate::hub::Hub::new(crate::Config::local().hub);
        let session = hub.connect(None, &P::ENCODINGS, crate::hub::ClientMeta::default());
        let timeouts = Arc::new(Timeouts {
            stall: Duration::from_secs(5),
            idle: None,
            line: None,
            rates: ClientRates::default(),
        });
        let connection = serve(protocol, session, RoomName::lobby(), stream, timeouts, None);
        std::mem::size_of_val(&connection)
    }

    /// A device's connection (a raw listener with `register=`) fits what a
    /// text client's does: its decoder holds only the connection's state
    /// (16 bytes), its listener's settings are the protocol's. It was 32
    /// bytes more, and a TCP device's task took a 640-byte cell.
    #[tokio::test]
    async fn a_device_connection_is_no_bigger_than_a_text_one() {
        let spec: crate::ListenerSpec = "raw://127.0.0.1:0?register=imei&heartbeat=hex:FE"
            .parse()
            .unwrap();
        let device = crate::protocol::Device::new(spec.device, spec.room, 1024);
        let size = idle_connection_size(Arc::new(device)).await;
        println!("a device connection's future: {size} bytes");
        assert!(size <= CONNECTION_FUTURE_BYTES, "{size} bytes");
    }

    /// A `/ws` client's connection holds its WebSocket transport once: it
    /// was held twice (1,976 bytes; the stream moved into a local of the
    /// future left its captured copy's room behind), 520 bytes per idle
    /// browser for nothing.
    #[tokio::test]
    async fn a_websocket_connection_holds_its_transport_once() {
        use crate::protocol::Json;
        use crate::transport::{WebSocketTransport, WsMode, WsSettings};
        let (io, _browser) = tokio::io::duplex(1024);
        let settings = WsSettings {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(20),
            max_frame: 1 << 16,
            read_buffer: 512,
            rates: ClientRates::default(),
            line_timeout: None,
        };
        let transport = WebSocketTransport::new(io, WsMode::Json, settings).await;
        let held = std::mem::size_of_val(&transport);
        let hub = crate::hub::Hub::new(crate::Config::local().hub);
        let session = hub.connect(None, &Json::ENCODINGS, crate::hub::ClientMeta::default());
        let timeouts = Arc::new(Timeouts {
            stall: Duration::from_secs(5),
            idle: None,
            line: None,
            rates: ClientRates::default(),
        });
        let json = Arc::new(Json::new(1024));
        let connection = serve(json, session, RoomName::lobby(), transport, timeouts, None);
        let size = std::mem::size_of_val(&connection);
        println!("a /ws connection's future: {size} bytes, its transport {held}");
        assert!(
            size < CONNECTION_FUTURE_BYTES + held,
            "{size} bytes: the transport ({held}) is held twice"
        );
    }
}
