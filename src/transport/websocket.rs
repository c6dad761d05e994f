//! WebSocket: browser clients, served by the same connection code as TCP
//! clients. The frames are made to look like the byte stream the JSON and
//! raw protocols expect:
//! - JSON mode: each text frame is one request, read as one line (a JSON
//!   object's own line breaks are whitespace, and read as spaces); each
//!   line the server writes goes out as one text frame.
//! - raw mode: frames are bytes, passed on unchanged; what the server
//!   writes goes out as binary frames, one per queued message.
//!
//! The server pings a quiet client every ping interval and drops one that
//! sends nothing (not even the pong) within the pong timeout after a ping,
//! so idle proxies keep the connection open and a vanished browser is
//! found. A closing connection gets a close frame with a code and reason.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{Farewell, Transport};
use crate::hub::{CloseReason, Closing};

/// How frames map to the protocol's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsMode {
    /// One JSON request or event per text frame.
    Json,
    /// Bytes as binary frames.
    Raw,
}

/// Heartbeat settings of WebSocket clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsSettings {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long after a ping the client must have sent something.
    pub pong_timeout: Duration,
}

/// Longest close reason a close frame can carry (125 bytes less the code).
const MAX_CLOSE_REASON: usize = 123;

/// A WebSocket connection as a byte stream.
#[derive(Debug)]
pub(crate) struct WebSocketTransport {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: WebSocket,
    mode: WsMode,
    /// What is left of the last frame read, for the next read.
    leftover: Bytes,
    settings: WsSettings,
    /// When to ping next, or when the pong is overdue.
    timer: Pin<Box<Sleep>>,
    /// When the pong to the last ping is due; `None` once anything came.
    pong_due: Option<Instant>,
    /// The close frame to end with.
    close: Option<CloseFrame>,
    /// Whether the close frame went out.
    close_sent: bool,
    /// A read error that came after data already handed over.
    failed: Option<io::Error>,
}

impl WebSocketTransport {
    pub(crate) fn new(socket: WebSocket, mode: WsMode, settings: WsSettings) -> Self {
        WebSocketTransport {
            inner: Mutex::new(Inner {
                socket,
                mode,
                leftover: Bytes::new(),
                settings,
                timer: Box::pin(tokio::time::sleep(settings.ping_interval)),
                pong_due: None,
                close: None,
                close_sent: false,
                failed: None,
            }),
        }
    }
}

/// Both halves lock the one socket for each poll: they are polled by the
/// same task, so the lock is never contended, and it costs no allocation
/// per client as a split into two owned halves would.
impl Transport for WebSocketTransport {
    type Reader<'a> = Half<'a>;
    type Writer<'a> = Half<'a>;
    fn halves(&mut self) -> (Half<'_>, Half<'_>) {
        (Half(&self.inner), Half(&self.inner))
    }
}

/// One side of a [`WebSocketTransport`].
#[derive(Debug)]
pub(crate) struct Half<'a>(&'a Mutex<Inner>);

impl Half<'_> {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn io_error(error: axum::Error) -> io::Error {
    io::Error::other(error.into_inner())
}

impl Inner {
    /// Pings when it is time, and fails when a ping went unanswered.
    fn heartbeat(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.pong_due.is_some_and(|due| due <= now) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no answer to a ping within {} (pong timeout)",
                        crate::config::format_duration(self.settings.pong_timeout)
                    ),
                ));
            }
            // A writer with a full socket is busy anyway: no ping needed.
            if Pin::new(&mut self.socket).poll_ready(cx).is_ready() {
                let pinged = Pin::new(&mut self.socket).start_send(Message::Ping(Bytes::new()));
                if pinged.is_ok() {
                    let _ = Pin::new(&mut self.socket).poll_flush(cx);
                    if self.pong_due.is_none() {
                        self.pong_due = Some(now + self.settings.pong_timeout);
                    }
                }
            }
            let next = (now + self.settings.ping_interval)
                .min(self.pong_due.unwrap_or(now + self.settings.ping_interval));
            self.timer.as_mut().reset(next);
        }
        Ok(())
    }

    /// The bytes a frame stands for in the protocol's stream.
    fn frame_bytes(&self, message: Message) -> Option<Bytes> {
        let data = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(data) => data,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return None,
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

impl AsyncRead for Half<'_> {
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
            let message = match Pin::new(&mut inner.socket).poll_next(cx) {
                Poll::Pending if gave => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
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
            if let Some(bytes) = inner.frame_bytes(message) {
                inner.leftover = bytes;
            }
        }
    }
}

impl AsyncWrite for Half<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    /// Takes whole slices only (each a queued item: in JSON mode, whole
    /// lines), as many as the socket accepts without waiting.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.inner();
        let mut taken = 0;
        for slice in slices.iter().filter(|slice| !slice.is_empty()) {
            match Pin::new(&mut inner.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) if taken == 0 => return Poll::Ready(Err(io_error(error))),
                Poll::Pending if taken == 0 => return Poll::Pending,
                _ => break,
            }
            match inner.mode {
                WsMode::Raw => {
                    let message = Message::Binary(Bytes::copy_from_slice(slice));
                    Pin::new(&mut inner.socket)
                        .start_send(message)
                        .map_err(io_error)?;
                }
                WsMode::Json => {
                    // One copy of the item; its lines are slices of it.
                    let whole = Bytes::copy_from_slice(slice);
                    let mut start = 0;
                    for end in memchr::memchr_iter(b'\n', slice).chain([slice.len()]) {
                        let line = whole.slice(start..end);
                        start = end + 1;
                        if line.is_empty() {
                            continue;
                        }
                        // The JSON encoder writes UTF-8; a frame must be.
                        let text = Utf8Bytes::try_from(line.clone()).unwrap_or_else(|_| {
                            Utf8Bytes::from(String::from_utf8_lossy(&line).into_owned())
                        });
                        Pin::new(&mut inner.socket)
                            .start_send(Message::Text(text))
                            .map_err(io_error)?;
                    }
                }
            }
            taken += slice.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner().socket)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.inner();
        if !inner.close_sent {
            ready!(Pin::new(&mut inner.socket).poll_ready(cx)).map_err(io_error)?;
            let frame = inner.close.take().unwrap_or(CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::from_static(""),
            });
            Pin::new(&mut inner.socket)
                .start_send(Message::Close(Some(frame)))
                .map_err(io_error)?;
            inner.close_sent = true;
        }
        Pin::new(&mut inner.socket).poll_flush(cx).map_err(io_error)
    }
}

impl Farewell for Half<'_> {
    fn closing(&mut self, closing: &Closing) {
        self.inner().close = Some(close_frame(&closing.reason));
    }
}

/// The close frame for a reason: its code, and the reason itself as far
/// as a close frame can carry it.
pub(crate) fn close_frame(reason: &CloseReason) -> CloseFrame {
    let code = match reason {
        CloseReason::Quit | CloseReason::ClientClosed => close_code::NORMAL,
        CloseReason::ServerShutdown | CloseReason::ListenerClosed => close_code::AWAY,
        CloseReason::ReadFailed(_) | CloseReason::WriteFailed(_) => close_code::ERROR,
        CloseReason::SlowConsumer { .. }
        | CloseReason::TooSlow { .. }
        | CloseReason::Stalled { .. }
        | CloseReason::MemoryBudget { .. }
        | CloseReason::LineTimeout { .. }
        | CloseReason::Idle { .. }
        | CloseReason::Kicked(_) => close_code::POLICY,
    };
    CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(&reason.to_string(), MAX_CLOSE_REASON)),
    }
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
        let frame = close_frame(&CloseReason::Kicked("é".repeat(200).into()));
        assert_eq!(frame.code, close_code::POLICY);
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(
            close_frame(&CloseReason::ServerShutdown).code,
            close_code::AWAY
        );
    }
}
