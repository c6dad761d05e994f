//! Just enough WebSocket for the bench to be a browser client of
//! switchboard's `/ws`: the opening handshake, masked client frames, and a
//! reader that turns the server's frames back into lines for the receive
//! loop. Hand-written on purpose: the bench must cost the same per message
//! whatever the relay, and drive 10,000 connections from one process.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Upgrades `stream` to a WebSocket on `path`; fails unless the server
/// answers 101.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> io::Result<()> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: c3dpdGNoYm9hcmQtYmVuY2g=\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // Read the response head byte by byte: the frames that follow it must
    // stay in the socket for the receive loop.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 4096 {
            return Err(io::Error::other(
                "the WebSocket handshake answer is too long",
            ));
        }
        head.push(stream.read_u8().await?);
    }
    let status = head.split(|b| *b == b'\n').next().unwrap_or_default();
    if !status.windows(5).any(|w| w == b" 101 ") {
        return Err(io::Error::other(format!(
            "the server refused the WebSocket upgrade: {}",
            String::from_utf8_lossy(status).trim()
        )));
    }
    Ok(())
}

/// Appends a client text frame holding `text`. The mask is all zeros (a
/// valid mask), so the payload goes as it is.
pub fn text_frame(text: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match text.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(text);
}

/// Reads a server's WebSocket frames as lines: each data frame's payload
/// and a `\n`; control frames (pings) are skipped.
#[derive(Debug)]
pub struct FrameLines<R> {
    inner: R,
    /// Frames read, not yet unwrapped.
    buf: Vec<u8>,
    filled: usize,
    /// Lines unwrapped, not yet handed over, from `given` on.
    lines: Vec<u8>,
    given: usize,
}

impl<R> FrameLines<R> {
    /// Reads frames from `inner`.
    pub fn new(inner: R) -> Self {
        FrameLines {
            inner,
            buf: vec![0; 64 * 1024],
            filled: 0,
            lines: Vec::new(),
            given: 0,
        }
    }
}

/// The next whole frame at the start of `buf`: its opcode, where its
/// payload starts and ends.
fn next_frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let (len, start): (usize, usize) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        len => (len as usize, 2),
    };
    let end = start.checked_add(len)?;
    (buf.len() >= end).then_some((first & 0x0f, start, end))
}

impl<R: AsyncRead + Unpin> AsyncRead for FrameLines<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Lines left over from a read whose lines did not all fit.
            if this.given < this.lines.len() {
                let n = (this.lines.len() - this.given).min(out.remaining());
                out.put_slice(&this.lines[this.given..this.given + n]);
                this.given += n;
                if this.given == this.lines.len() {
                    this.lines.clear();
                    this.given = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // Unwrap every whole frame read so far, straight into `out`
            // while it fits (one copy: the bench must keep up with the
            // relay), the rest into `lines`.
            let mut at = 0;
            let mut gave = false;
            let before = out.filled().len();
            while let Some((opcode, start, end)) = next_frame(&this.buf[at..this.filled]) {
                if opcode <= 2 {
                    let payload = &this.buf[at + start..at + end];
                    if this.lines.is_empty() && out.remaining() > payload.len() {
                        out.put_slice(payload);
                        out.put_slice(b"\n");
                    } else {
                        this.lines.extend_from_slice(payload);
                        this.lines.push(b'\n');
                    }
                    gave = true;
                }
                at += end;
            }
            this.buf.copy_within(at..this.filled, 0);
            this.filled -= at;
            if gave {
                if out.filled().len() > before {
                    return Poll::Ready(Ok(()));
                }
                // Nothing fitted in `out`: hand over from `lines`.
                continue;
            }
            if this.filled == this.buf.len() {
                let bigger = this.buf.len() * 2;
                this.buf.resize(bigger, 0);
            }
            let mut read = ReadBuf::new(&mut this.buf[this.filled..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            this.filled += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn server_frames_read_as_lines_and_pings_are_skipped() {
        let mut wire = vec![0x81, 5];
        wire.extend_from_slice(b"hello");
        wire.extend_from_slice(&[0x89, 0]);
        wire.extend_from_slice(&[0x81, 126, 0x01, 0x00]);
        wire.extend_from_slice(&[b'x'; 256]);
        let mut lines = FrameLines::new(&wire[..]);
        let mut all = Vec::new();
        lines.read_to_end(&mut all).await.unwrap();
        let mut expected = b"hello\n".to_vec();
        expected.extend_from_slice(&[b'x'; 256]);
        expected.push(b'\n');
        assert_eq!(all, expected);
    }

    #[test]
    fn client_frames_are_masked_with_their_length() {
        let mut out = Vec::new();
        text_frame(b"hi", &mut out);
        assert_eq!(out, [0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
        out.clear();
        text_frame(&[b'x'; 300], &mut out);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 0x01, 0x2c]);
    }
}
