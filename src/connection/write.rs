//! The write side of a connection: drains the client's outbox to its
//! socket in batches (vectored writes), enforces the stall timeout, and
//! says goodbye.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::hub::{weight, Batch, CloseReason, Closing, OutboxHandle};
use crate::protocol::Protocol;
use crate::transport::Farewell;

/// Most buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 64;

/// How long a cut-off client gets to take its last notice.
const ABORT_GOODBYE_TIMEOUT: Duration = Duration::from_millis(250);

/// Drains an outbox to a writer until the client is gone, then says
/// goodbye. Written by hand, not as an `async` block: every idle
/// connection holds this future, and so it holds its writer, its outbox,
/// two references and a few flags, nothing more (an `async` block took 64
/// bytes, and had to be pinned in place, which cost the connection's
/// future a pointer more). Unpin: the connection moves it, for its end,
/// out of the race with the read side. What it does between waits is a
/// boxed step ([`next_step`]), so that none of it is kept beside the wait
/// for the outbox.
pub(super) struct WriteSide<'a, P, W> {
    protocol: &'a P,
    stall: &'a Duration,
    state: Writing<'a, W>,
}

/// Where the write side stands.
enum Writing<'a, W> {
    /// Between steps, with what the next one takes.
    Between(Idle<W>),
    /// A step under way: it holds the outbox and the writer meanwhile.
    Stepping(Pin<Box<dyn Future<Output = Stepped<W>> + Send + 'a>>),
    /// The goodbye was said.
    Done,
}

/// What the write side keeps between steps.
struct Idle<W> {
    outbox: OutboxHandle,
    writer: W,
    /// A message is written in part: a cut-off can come then, and the
    /// goodbye must not be glued to the torn message.
    torn: bool,
    /// Here, not beside it in [`Writing::Between`]: in this struct's
    /// padding.
    next: Next,
}

/// What the write side does next, between steps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Take what the outbox has.
    Take,
    /// Wait for the outbox to have something.
    Wait,
    /// Let every task that is ready run first (readers with input waiting
    /// push more to this outbox), then take all of it for one syscall:
    /// under load, several messages per write.
    Yield,
}

/// A finished step, and what it held.
struct Stepped<W> {
    written: Written,
    idle: Idle<W>,
}

impl<'a, P: Protocol, W: AsyncWrite + Farewell + Unpin + Send + 'a> WriteSide<'a, P, W> {
    pub(super) fn new(
        protocol: &'a P,
        outbox: OutboxHandle,
        writer: W,
        stall: &'a Duration,
    ) -> Self {
        let idle = Idle {
            outbox,
            writer,
            torn: false,
            next: Next::Take,
        };
        WriteSide {
            protocol,
            stall,
            state: Writing::Between(idle),
        }
    }
}

impl<'a, P: Protocol, W: AsyncWrite + Farewell + Unpin + Send + 'a> Future for WriteSide<'a, P, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, Writing::Done) {
                Writing::Stepping(mut step) => match step.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = Writing::Stepping(step);
                        return Poll::Pending;
                    }
                    Poll::Ready(Stepped {
                        written: Written::Ended,
                        ..
                    }) => return Poll::Ready(()),
                    Poll::Ready(Stepped { mut idle, .. }) => {
                        idle.next = Next::Take;
                        this.state = Writing::Between(idle);
                    }
                },
                Writing::Between(idle) if idle.next == Next::Take => {
                    this.state = match next_step(this.protocol, idle, *this.stall) {
                        Ok(step) => Writing::Stepping(step),
                        Err(mut idle) => {
                            idle.next = Next::Wait;
                            Writing::Between(idle)
                        }
                    };
                }
                Writing::Between(mut idle) if idle.next == Next::Wait => {
                    let ready = idle.outbox.poll_ready(cx);
                    if ready.is_pending() {
                        this.state = Writing::Between(idle);
                        return Poll::Pending;
                    }
                    idle.next = Next::Yield;
                    this.state = Writing::Between(idle);
                }
                Writing::Between(mut idle) => {
                    // Next::Yield. A yield's first poll asks to be polled
                    // again once the tasks ready now have run; that is all
                    // it does.
                    let yielding = std::pin::pin!(tokio::task::yield_now());
                    let yielded = yielding.poll(cx);
                    idle.next = Next::Take;
                    this.state = Writing::Between(idle);
                    if yielded.is_pending() {
                        return Poll::Pending;
                    }
                }
                Writing::Done => return Poll::Ready(()),
            }
        }
    }
}

/// What became of a step of the write side.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// A batch was written (or the client was cut off meanwhile, and its
    /// outbox closed): on to the next.
    Batch,
    /// The goodbye was said: the write side is done.
    Ended,
}

/// Takes what the outbox has, and gives what to do with it as one boxed
/// future: a batch to write, or the goodbye once it is closed. `Err`:
/// nothing to do, the writer waits.
#[allow(clippy::type_complexity)] // a step, or what it would have taken
fn next_step<'a, P: Protocol, W: AsyncWrite + Farewell + Unpin + Send + 'a>(
    protocol: &'a P,
    idle: Idle<W>,
    stall: Duration,
) -> Result<Pin<Box<dyn Future<Output = Stepped<W>> + Send + 'a>>, Idle<W>> {
    let Batch { items, closing } = idle.outbox.take();
    if !items.is_empty() {
        // A flushing close is acted on once the queue is empty.
        drop(closing);
        return Ok(Box::pin(async move {
            let mut idle = idle;
            let Idle {
                outbox,
                writer,
                torn,
                ..
            } = &mut idle;
            if let Err(reason) = write_batch(items, writer, torn, outbox, stall).await {
                outbox.close(reason, false);
            }
            Stepped {
                written: Written::Batch,
                idle,
            }
        }));
    }
    let Some(closing) = closing else {
        return Err(idle);
    };
    Ok(Box::pin(async move {
        let mut idle = idle;
        goodbye(protocol, closing, idle.torn, &mut idle.writer, stall).await;
        Stepped {
            written: Written::Ended,
            idle,
        }
    }))
}

/// Writes one batch, unless the client is cut off meanwhile.
async fn write_batch<W: AsyncWrite + Unpin>(
    items: Vec<Bytes>,
    writer: &mut W,
    torn: &mut bool,
    outbox: &OutboxHandle,
    stall: Duration,
) -> Result<(), CloseReason> {
    let mut chunks: VecDeque<(Bytes, usize)> = items
        .into_iter()
        .map(|bytes| {
            let weight = weight(&bytes);
            (bytes, weight)
        })
        .collect();
    tokio::select! {
        biased;
        _ = outbox.aborted() => Ok(()),
        written = write_chunks(writer, &mut chunks, torn, outbox, stall) => written,
    }
}

/// Writes `chunks` (bytes and their queue weight) with vectored writes,
/// reporting progress to the outbox; `torn` tells whether the first chunk
/// is partly written. Fails if the client accepts nothing for `stall`.
async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: &mut VecDeque<(Bytes, usize)>,
    torn: &mut bool,
    outbox: &OutboxHandle,
    stall: Duration,
) -> Result<(), CloseReason> {
    while !chunks.is_empty() {
        let slices: Vec<IoSlice<'_>> = chunks
            .iter()
            .take(MAX_WRITE_SLICES)
            .map(|(bytes, _)| IoSlice::new(bytes))
            .collect();
        let written = match timeout(stall, writer.write_vectored(&slices)).await {
            Err(_) => return Err(CloseReason::Stalled { timeout: stall }),
            Ok(Err(e)) => return Err(CloseReason::WriteFailed(e.to_string().into())),
            Ok(Ok(0)) => return Err(CloseReason::WriteFailed("connection closed".into())),
            Ok(Ok(n)) => n,
        };
        drop(slices);
        outbox.progressed();
        outbox.sent(written);
        let mut left = written;
        let mut done = 0;
        while left > 0 {
            let (bytes, weight) = chunks.front_mut().expect("wrote no more than was given");
            if left >= bytes.len() {
                left -= bytes.len();
                done += *weight;
                chunks.pop_front();
                *torn = false;
            } else {
                bytes.advance(left);
                left = 0;
                *torn = true;
            }
        }
        outbox.written(done);
    }
    // What a transport buffers (a WebSocket's frames) goes out now; TCP
    // buffers nothing, and this costs it nothing.
    match timeout(stall, writer.flush()).await {
        Err(_) => Err(CloseReason::Stalled { timeout: stall }),
        Ok(Err(e)) => Err(CloseReason::WriteFailed(e.to_string().into())),
        Ok(Ok(())) => Ok(()),
    }
}

/// Tells the client why it is being disconnected (as far as its protocol
/// says such things), then closes the write side. After a torn message the
/// goodbye starts on a line of its own.
async fn goodbye<P: Protocol, W: AsyncWrite + Farewell + Unpin>(
    protocol: &P,
    closing: Closing,
    torn: bool,
    writer: &mut W,
    stall: Duration,
) {
    if matches!(closing.reason, CloseReason::WriteFailed(_)) {
        return;
    }
    let mut bytes = protocol.goodbye(&closing);
    if torn && !bytes.is_empty() {
        bytes = [&b"\n"[..], &bytes].concat().into();
    }
    writer.closing(&closing);
    let deadline = if closing.flush {
        stall
    } else {
        ABORT_GOODBYE_TIMEOUT
    };
    let _ = timeout(deadline, async {
        if !bytes.is_empty() {
            writer.write_all(&bytes).await?;
        }
        writer.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Text;

    fn stalled() -> Closing {
        Closing {
            reason: CloseReason::Stalled {
                timeout: Duration::from_secs(1),
            },
            flush: false,
        }
    }

    #[tokio::test]
    async fn a_goodbye_after_a_torn_message_starts_on_its_own_line() {
        let text = Text::new(1024, None, None);
        let mut out = Vec::new();
        goodbye(&text, stalled(), true, &mut out, Duration::from_secs(1)).await;
        assert!(
            out.starts_with(b"\n! disconnected: stalled"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let mut out = Vec::new();
        goodbye(&text, stalled(), false, &mut out, Duration::from_secs(1)).await;
        assert!(out.starts_with(b"! disconnected: stalled"));
    }

    #[tokio::test]
    async fn a_partial_write_marks_the_message_torn_until_it_is_finished() {
        let hub = crate::hub::Hub::new(crate::Config::local().hub);
        let session = hub.connect(None, &Text::ENCODINGS, crate::hub::ClientMeta::default());
        let outbox = session.outbox_handle();
        // A pipe that holds 3 bytes: "hello\n" cannot go in one write.
        let (mut near, mut far) = tokio::io::duplex(3);
        let mut chunks = VecDeque::from([(Bytes::from_static(b"hello\n"), 6)]);
        let mut torn = false;
        {
            let writing = write_chunks(
                &mut near,
                &mut chunks,
                &mut torn,
                &outbox,
                Duration::from_secs(5),
            );
            tokio::pin!(writing);
            tokio::select! {
                biased;
                _ = &mut writing => panic!("wrote 6 bytes into a 3-byte pipe"),
                _ = std::future::ready(()) => {}
            }
        }
        assert!(torn);
        let mut first = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut first)
            .await
            .unwrap();
        write_chunks(
            &mut near,
            &mut chunks,
            &mut torn,
            &outbox,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(!torn);
        assert!(chunks.is_empty());
    }
}
