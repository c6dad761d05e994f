//! WebSocket: browser clients, served by the same connection code as TCP
//! clients. The frames are made to look like the byte stream the JSON and
//! raw protocols expect:
//! - JSON mode: each text frame is one request, read as one line (a JSON
//!   object's own line breaks are whitespace, and read as spaces); each
//!   line the server writes goes out as one text frame.
//! - raw mode: frames are bytes, passed on unchanged; what the server
//!   writes goes out as binary frames, one per queued message.
//!
//! Reading is tungstenite's (unmasking, fragments, UTF-8 checks, limits,
//! answers to pings and closes). Writing data frames is done here: a
//! server's frame is a 2 to 10 byte header and the payload, and writing
//! them straight into one buffer per batch of the client's queue, the way
//! TCP clients get one vectored write, is what makes WebSocket fanout
//! fast (tungstenite's per-message path, with an owned and re-checked
//! UTF-8 string per frame, cost more than half of it: see
//! docs/performance.md). Control frames tungstenite writes go into the
//! same buffer, whole, so they never land inside a data frame.
//!
//! The server pings a quiet client every ping interval and drops one that
//! sends nothing (not even the pong) within the pong timeout after a ping,
//! so idle proxies keep the connection open and a vanished browser is
//! found. A closing connection gets a close frame with a code and reason.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{write_now, Farewell, Transport};
use crate::hub::{CloseReason, Closing, InputGauge};
use crate::sync::lock;
use crate::throttle::{ClientRates, Throttle, Verdict};

/// How frames map to the protocol's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsMode {
    /// One JSON request or event per text frame.
    Json,
    /// Bytes as binary frames.
    Raw,
}

/// Settings of WebSocket clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSettings {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long after a ping the client must have sent something.
    pub pong_timeout: Duration,
    /// Largest frame or message read.
    pub max_frame: usize,
    /// Bytes read from the socket at a time (and held while idle).
    pub read_buffer: usize,
    /// The client's rate limits, which its control frames (pings, pongs)
    /// count against too: tungstenite answers them without the
    /// connection's read side ever seeing them.
    pub rates: ClientRates,
    /// How long a message may stay unfinished (a fragmented one, or a
    /// frame sent slowly): the line timeout.
    pub line_timeout: Option<Duration>,
}

/// Longest close reason a close frame can carry (125 bytes less the code).
const MAX_CLOSE_REASON: usize = 123;

/// Frames buffered for the socket above which writing waits for it: a
/// batch of the client's queue goes out in writes of about this much.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Close codes (RFC 6455, 7.4.1).
mod code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const ERROR: u16 = 1011;
}

/// The socket and the frames waiting to be written to it, shared by the
/// reading side (tungstenite, which answers pings and closes) and the
/// writing side.
#[derive(Debug)]
struct Socket<S> {
    io: S,
    /// Whole frames, not yet written.
    out: BytesMut,
    /// Whether a close frame went out (ours, or tungstenite's answer).
    close_sent: bool,
    /// Bytes read since the last whole message: a message (or frame) not
    /// finished yet, which tungstenite holds.
    unfinished: usize,
    /// Where `unfinished` is reported, for the memory budget.
    gauge: Option<InputGauge>,
}

impl<S> Socket<S> {
    /// Counts `bytes` more read of a message not finished yet.
    fn read_unfinished(&mut self, bytes: usize) {
        self.unfinished += bytes;
        if let Some(gauge) = &self.gauge {
            gauge.set(self.unfinished);
        }
    }

    /// A whole message came: nothing is held unfinished.
    fn finished(&mut self) {
        if self.unfinished > 0 {
            self.unfinished = 0;
            if let Some(gauge) = &self.gauge {
                gauge.set(0);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Socket<S> {
    /// Writes what is buffered, as far as the socket takes it now.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        // An idle client keeps no write buffer.
        if self.out.capacity() > 0 {
            self.out = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Appends a frame to what is waiting to be written.
    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        frame(&mut self.out, opcode, payload);
    }
}

/// Appends a frame (FIN set, unmasked, as a server sends) to `out`.
fn frame(out: &mut impl BufMut, opcode: u8, payload: &[u8]) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.put_u8(len as u8),
        len @ 126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.put_slice(payload);
}

/// Frames `slices` into `out`, up to about [`WRITE_HIGH_WATER`] bytes
/// of frames in it: whole slices only (each a queued item; in JSON mode,
/// whole lines), each line (JSON) or item (raw) a frame. Returns the
/// bytes of `slices` taken.
fn frame_slices<B: BufMut + AsRef<[u8]>>(
    out: &mut B,
    mode: WsMode,
    slices: &[io::IoSlice<'_>],
) -> usize {
    let mut taken = 0;
    for slice in slices.iter().filter(|slice| !slice.is_empty()) {
        if out.as_ref().len() >= WRITE_HIGH_WATER {
            break;
        }
        match mode {
            WsMode::Raw => frame(out, 0x2, slice),
            WsMode::Json => {
                // The JSON encoder writes UTF-8 lines: each a text frame.
                let mut start = 0;
                for end in memchr::memchr_iter(b'\n', slice).chain([slice.len()]) {
                    if end > start {
                        frame(out, 0x1, &slice[start..end]);
                    }
                    start = end + 1;
                }
            }
        }
        taken += slice.len();
    }
    taken
}

thread_local! {
    /// Where a batch's frames are made before the socket: only what the
    /// socket does not take now is kept by the connection.
    static FRAMES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

type SharedSocket<S> = Arc<Mutex<Socket<S>>>;

/// The stream tungstenite reads from: the socket; what it writes (pongs,
/// the answer to a close) joins the frames waiting to be written.
#[derive(Debug)]
struct ReadSide<S>(SharedSocket<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ReadSide<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut socket = lock(&self.0);
        let before = buf.filled().len();
        ready!(Pin::new(&mut socket.io).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        socket.read_unfinished(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ReadSide<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut socket = lock(&self.0);
        // A client that sends pings and never reads must not make the
        // answers pile up: past the mark, tungstenite is told to wait (it
        // keeps one pong pending and reads on).
        if socket.out.len() >= WRITE_HIGH_WATER {
            ready!(socket.poll_drain(cx))?;
        }
        if data.first().is_some_and(|b| b & 0x0f == 0x8) {
            socket.close_sent = true;
        }
        socket.out.extend_from_slice(data);
        let _ = socket.poll_drain(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.0).poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        lock(&self.0).poll_drain(cx)
    }
}

/// A WebSocket connection as a byte stream.
pub(crate) struct WebSocketTransport<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    reader: WebSocketStream<ReadSide<S>>,
    socket: SharedSocket<S>,
    mode: WsMode,
    /// What is left of the last frame read, for the next read.
    leftover: Bytes,
    settings: WsSettings,
    /// When to ping next, or when the pong is overdue.
    timer: Pin<Box<Sleep>>,
    /// When the pong to the last ping is due; `None` once anything came.
    pong_due: Option<Instant>,
    /// The close frame to end with: its code and reason.
    close: Option<(u16, String)>,
    /// A read error that came after data already handed over.
    failed: Option<io::Error>,
    /// The control frames' share of the rate limits.
    control: Throttle,
    /// Reading waits until then: the client's pings went over its limit.
    paused: Option<Pin<Box<Sleep>>>,
    /// When a message the client started must be finished by: the line
    /// timeout, as for an unfinished line over TCP.
    unfinished_by: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WebSocketTransport<S> {
    /// Serves a connection that has just been upgraded to WebSocket.
    pub(crate) async fn new(io: S, mode: WsMode, settings: WsSettings) -> Self {
        let socket = Arc::new(Mutex::new(Socket {
            io,
            out: BytesMut::new(),
            close_sent: false,
            unfinished: 0,
            gauge: None,
        }));
        let config = WebSocketConfig::default()
            .read_buffer_size(settings.read_buffer)
            .write_buffer_size(0)
            .max_message_size(Some(settings.max_frame))
            .max_frame_size(Some(settings.max_frame));
        let reader =
            WebSocketStream::from_raw_socket(ReadSide(socket.clone()), Role::Server, Some(config))
                .await;
        WebSocketTransport {
            inner: Mutex::new(Inner {
                reader,
                socket,
                mode,
                leftover: Bytes::new(),
                settings,
                timer: Box::pin(tokio::time::sleep(settings.ping_interval)),
                pong_due: None,
                close: None,
                failed: None,
                control: Throttle::default(),
                paused: None,
                unfinished_by: None,
            }),
        }
    }
}

/// Both halves lock the one connection for each poll: they are polled by
/// the same task, so the lock is never contended.
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WebSocketTransport<S> {
    type Reader<'a> = Half<'a, S>;
    type Writer<'a> = Half<'a, S>;
    fn halves(&mut self) -> (Half<'_, S>, Half<'_, S>) {
        (Half(&self.inner), Half(&self.inner))
    }

    fn gauge_input(&mut self, gauge: InputGauge) {
        let inner = lock(&self.inner);
        lock(&inner.socket).gauge = Some(gauge);
    }
}

/// One side of a [`WebSocketTransport`].
pub(crate) struct Half<'a, S>(&'a Mutex<Inner<S>>);

impl<S> Half<'_, S> {
    fn inner(&self) -> MutexGuard<'_, Inner<S>> {
        crate::sync::lock(self.0)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Pings when it is time, and fails when a ping went unanswered.
    fn heartbeat(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.pong_due.is_some_and(|due| due <= now) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer to a ping within {} (pong timeout)",
                        crate::units::format_duration(self.settings.pong_timeout)
                    ),
                ));
            }
            let mut socket = lock(&self.socket);
            // A client with frames still waiting for it is not idle: no ping.
            if socket.out.is_empty() {
                socket.frame(0x9, b"");
                let _ = socket.poll_drain(cx)?;
                if self.pong_due.is_none() {
                    self.pong_due = Some(now + self.settings.pong_timeout);
                }
            }
            drop(socket);
            let mut next = now + self.settings.ping_interval;
            if let Some(due) = self.pong_due {
                next = next.min(due);
            }
            self.timer.as_mut().reset(next);
        }
        Ok(())
    }

    /// The bytes a frame stands for in the protocol's stream.
    /// With part of a message read and the rest not come, starts (or
    /// checks) the line timeout: a client cannot hold an unfinished
    /// message (a fragment with FIN=0, a frame trickled in) for longer
    /// than one may hold an unfinished line.
    fn unfinished(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(limit) = self.settings.line_timeout else {
            return Ok(());
        };
        if lock(&self.socket).unfinished == 0 {
            return Ok(());
        }
        let by = self
            .unfinished_by
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match by.as_mut().poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "a message was left unfinished for {} (line timeout)",
                    crate::units::format_duration(limit)
                ),
            )),
        }
    }

    /// Counts a control frame of `bytes` against the client's rates, as a
    /// message is counted: past them, reading pauses (or, with a rate
    /// limit grace spent, the client is cut off).
    fn control_frame(&mut self, bytes: usize) -> io::Result<()> {
        let rates = self.settings.rates;
        if rates.messages.is_none() && rates.bytes.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        self.control.took_messages(&rates, 1, now);
        // A frame's header is paid for too: a flood of empty pings is
        // not free.
        self.control.took_bytes(&rates, bytes + 2, now);
        let over_bytes = self.control.bytes_allowed(&rates, now) == Some(0);
        let over_messages = self.control.messages_allowed(&rates, now) == Some(0);
        if !(over_bytes || over_messages) {
            return Ok(());
        }
        match self.control.hold(&rates, over_bytes && !over_messages, now) {
            Verdict::Pause { until, .. } => {
                self.paused = Some(Box::pin(tokio::time::sleep_until(until)));
                Ok(())
            }
            Verdict::CutOff(limit) => Err(io::Error::other(format!(
                "rate limited: sent control frames faster than {limit} for the rate limit grace"
            ))),
        }
    }

    fn frame_bytes(&self, message: Message) -> Option<Bytes> {
        let data = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(data) => data,
            _ => return None,
        };
        Some(match self.mode {
            WsMode::Raw => data,
            WsMode::Json => {
                let mut line = BytesMut::with_capacity(data.len() + 1);
                line.extend_from_slice(&data);
                for byte in line.iter_mut() {
                    if *byte == b'\n' || *byte == b'\r' {
                        *byte = b' ';
                    }
                }
                line.extend_from_slice(b"\n");
                line.freeze()
            }
        })
    }
}

/// How a read error for a frame over the frame limit begins: such a
/// connection is closed with 1009 (message too big).
const FRAME_TOO_LARGE: &str = "frame too large";

fn io_error(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(error) => error,
        Error::Capacity(error) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{FRAME_TOO_LARGE}: {error}; the most read is 4 times the line limit (max line)"
            ),
        ),
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Half<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.inner();
        if let Some(error) = inner.failed.take() {
            return Poll::Ready(Err(error));
        }
        // As many frames as have arrived, in one read: a sender's run of
        // messages is then relayed as one delivery, as over TCP.
        let mut gave = false;
        loop {
            if !inner.leftover.is_empty() {
                let n = inner.leftover.len().min(buf.remaining());
                buf.put_slice(&inner.leftover[..n]);
                inner.leftover.advance(n);
                gave = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            inner.heartbeat(cx)?;
            // Over its rate with control frames: nothing is read (TCP holds
            // the sender back) until it may go on.
            if let Some(paused) = inner.paused.as_mut() {
                match paused.as_mut().poll(cx) {
                    Poll::Pending if gave => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => inner.paused = None,
                }
            }
            let message = match Pin::new(&mut inner.reader).poll_next(cx) {
                Poll::Pending => {
                    inner.unfinished(cx)?;
                    return match gave {
                        true => Poll::Ready(Ok(())),
                        false => Poll::Pending,
                    };
                }
                Poll::Ready(None) | Poll::Ready(Some(Ok(Message::Close(_)))) => {
                    return Poll::Ready(Ok(()))
                }
                Poll::Ready(Some(Err(error))) if gave => {
                    // Said at the next read, after what came before it.
                    inner.failed = Some(io_error(error));
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(io_error(error))),
                Poll::Ready(Some(Ok(message))) => message,
            };
            // Anything from the client shows it is there.
            inner.pong_due = None;
            lock(&inner.socket).finished();
            inner.unfinished_by = None;
            if let Message::Ping(data) | Message::Pong(data) = &message {
                let bytes = data.len();
                inner.control_frame(bytes)?;
            }
            if let Some(bytes) = inner.frame_bytes(message) {
                inner.leftover = bytes;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Half<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    /// Frames some of `slices` ([`frame_slices`]) and writes them, as far
    /// as the socket takes them now; while [`WRITE_HIGH_WATER`] bytes of
    /// frames wait for the socket, waits.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let inner = self.inner();
        let mut socket = lock(&inner.socket);
        if socket.out.len() >= WRITE_HIGH_WATER {
            ready!(socket.poll_drain(cx))?;
        }
        // Behind frames still waiting (the socket was full, or a pong):
        // these join them.
        if !socket.out.is_empty() {
            let taken = frame_slices(&mut socket.out, inner.mode, slices);
            if let Poll::Ready(Err(error)) = socket.poll_drain(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(taken));
        }
        // Nothing waiting: made in the thread's buffer and written from
        // there; only what the socket does not take now is kept.
        FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            frames.clear();
            let taken = frame_slices(&mut *frames, inner.mode, slices);
            let at = write_now(&mut socket.io, cx, &frames)?;
            socket.out.extend_from_slice(&frames[at..]);
            Poll::Ready(Ok(taken))
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = self.inner();
        let mut socket = lock(&inner.socket);
        ready!(socket.poll_drain(cx))?;
        Pin::new(&mut socket.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.inner();
        let close = inner.close.take().unwrap_or((code::NORMAL, String::new()));
        let mut socket = lock(&inner.socket);
        if !socket.close_sent {
            let mut payload = close.0.to_be_bytes().to_vec();
            payload.extend_from_slice(close.1.as_bytes());
            socket.frame(0x8, &payload);
            socket.close_sent = true;
        }
        ready!(socket.poll_drain(cx))?;
        Pin::new(&mut socket.io).poll_shutdown(cx)
    }
}

impl<S> Farewell for Half<'_, S> {
    fn closing(&mut self, closing: &Closing) {
        self.inner().close = Some(close_frame(&closing.reason));
    }
}

/// The close frame for a reason: its code, and the reason itself as far
/// as a close frame can carry it.
pub(crate) fn close_frame(reason: &CloseReason) -> (u16, String) {
    let code = match reason {
        CloseReason::Quit | CloseReason::ClientClosed => code::NORMAL,
        CloseReason::ServerShutdown | CloseReason::ListenerClosed => code::AWAY,
        CloseReason::ReadFailed(error) if error.starts_with(FRAME_TOO_LARGE) => code::TOO_BIG,
        CloseReason::ReadFailed(_) | CloseReason::WriteFailed(_) => code::ERROR,
        CloseReason::SlowConsumer { .. }
        | CloseReason::TooSlow { .. }
        | CloseReason::Stalled { .. }
        | CloseReason::MemoryBudget { .. }
        | CloseReason::LineTimeout { .. }
        | CloseReason::Idle { .. }
        | CloseReason::Kicked(_)
        | CloseReason::Refused(_)
        | CloseReason::AuthTimeout { .. }
        | CloseReason::CredentialsExpired
        | CloseReason::Replaced
        | CloseReason::NotRegistered { .. }
        | CloseReason::RateLimited { .. } => code::POLICY,
    };
    (code, truncate(&reason.to_string(), MAX_CLOSE_REASON))
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let (code, reason) = close_frame(&CloseReason::Kicked("é".repeat(200).into()));
        assert_eq!(code, code::POLICY);
        assert!(reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(close_frame(&CloseReason::ServerShutdown).0, code::AWAY);
    }

    #[test]
    fn frames_carry_their_length_in_the_shortest_form() {
        let mut socket = Socket {
            io: tokio::io::empty(),
            out: BytesMut::new(),
            close_sent: false,
            unfinished: 0,
            gauge: None,
        };
        socket.frame(0x1, b"hi");
        assert_eq!(&socket.out[..], &[0x81, 2, b'h', b'i']);
        socket.out.clear();
        socket.frame(0x2, &[0; 300]);
        assert_eq!(&socket.out[..4], &[0x82, 126, 0x01, 0x2c]);
        socket.out.clear();
        socket.frame(0x2, &vec![0; 70_000]);
        assert_eq!(
            &socket.out[..10],
            &[0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
    }
}
