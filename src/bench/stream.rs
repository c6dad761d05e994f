//! A bench connection: plain TCP, or TLS over it (`bench --tls`), so that
//! the same scenarios measure what encryption costs the relay.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::ClientTls;

/// One connection to the relay.
#[derive(Debug)]
pub enum Connection {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (boxed: its state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection's read side.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// A connection's write side.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), over TLS if `tls` is given.
    pub async fn open(addr: &str, tls: Option<&ClientTls>) -> io::Result<Connection> {
        match tls {
            Some(tls) => {
                let stream = tls
                    .connect(addr)
                    .await
                    .map_err(|e| io::Error::other(format!("{e:#}")))?;
                Ok(Connection::Tls(Box::new(stream)))
            }
            None => {
                let stream = TcpStream::connect(addr).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot connect to {addr}: {e}"))
                })?;
                stream.set_nodelay(true)?;
                Ok(Connection::Plain(stream))
            }
        }
    }

    /// Its two sides, for two tasks: a TCP socket's own halves, or a TLS
    /// stream's shared ones.
    pub fn split(self) -> (Reader, Writer) {
        match self {
            Connection::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Connection::Tls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                (Box::new(reader), Box::new(writer))
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
