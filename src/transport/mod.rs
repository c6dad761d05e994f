//! Transports: the byte streams a client is served over. The connection
//! (see `connection`) reads requests from one and writes the client's
//! queue to it, whatever carries the bytes: a TCP socket, or a WebSocket
//! whose frames are cut and joined to look like one, and either over TLS.
//! A UDP listener's peers (`udp`) are read a datagram a message, and
//! written from the listener's one socket.

pub(crate) mod proxy;
mod tcp;
pub(crate) mod tls;
pub(crate) mod udp;
mod websocket;

pub use tls::{ClientTls, SelfSigned};
pub(crate) use tls::{ServerTls, TlsTransport};
pub(crate) use websocket::{WebSocketTransport, WsMode, WsSettings};

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::{Closing, InputGauge};

/// A byte stream a client is served over, read and written at once.
pub(crate) trait Transport: Send {
    /// The reading half.
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    /// The writing half.
    type Writer<'a>: AsyncWrite + Farewell + Unpin + Send
    where
        Self: 'a;
    /// Both halves, borrowed.
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
    /// Where to report the bytes the transport holds of a message not
    /// finished yet (they count against the memory budget); a transport
    /// that holds none has nothing to report.
    fn gauge_input(&mut self, _gauge: InputGauge) {}
}

/// A writer that can tell the peer why the connection closes, beyond the
/// protocol's own goodbye (a WebSocket close frame's code and reason).
pub(crate) trait Farewell {
    /// Called before the writer is shut down for `closing`.
    fn closing(&mut self, _closing: &Closing) {}
}

impl Farewell for Vec<u8> {}
impl Farewell for tokio::io::DuplexStream {}

/// Writes `bytes` to `io` as far as it takes them now, without waiting;
/// returns how many it took. For a transport that makes a batch in a
/// per-thread buffer and keeps only what the socket leaves.
pub(crate) fn write_now<W: AsyncWrite + Unpin>(
    io: &mut W,
    cx: &mut Context<'_>,
    bytes: &[u8],
) -> io::Result<usize> {
    let mut at = 0;
    while at < bytes.len() {
        match Pin::new(&mut *io).poll_write(cx, &bytes[at..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(written)) => at += written,
            Poll::Ready(Err(error)) => return Err(error),
            Poll::Pending => break,
        }
    }
    Ok(at)
}
