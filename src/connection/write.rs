//! The write side of a connection: drains the client's outbox to its
//! socket in batches (vectored writes), enforces the stall timeout, and
//! says goodbye.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::future::Either;
use futures_util::FutureExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::hub::{weight, Batch, CloseReason, Closing, OutboxHandle};
use crate::protocol::Protocol;
use crate::transport::Farewell;

/// Most buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 64;

/// How long a cut-off client gets to take its last notice.
const ABORT_GOODBYE_TIMEOUT: Duration = Duration::from_millis(250);

/// Drains `outbox` to `writer` until the client is gone, then says
/// goodbye. Not an `async fn`: one copies its arguments into its body, and
/// this future is held by every idle connection; for the same reason what
/// it does between waits is made by [`next_step`] and boxed, so that none
/// of it is kept beside the wait for the outbox.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(super) fn write_side<'a, P: Protocol, W: AsyncWrite + Farewell + Unpin + 'a>(
    protocol: &'a P,
    outbox: OutboxHandle,
    mut writer: W,
    stall: &'a Duration,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        // Set while a message is written in part: a cut-off can come then, and
        // the goodbye must not be glued to the torn message.
        let mut torn = false;
        loop {
            if let Some(step) = next_step(protocol, &outbox, &mut writer, &mut torn, *stall) {
                if step.await == Written::Ended {
                    return;
                }
                continue;
            }
            outbox.ready().await;
            // Let every task that is ready run first (readers with input
            // waiting push more to this outbox), then write all of it in one
            // syscall: under load, several messages per write.
            tokio::task::yield_now().await;
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
/// future: a batch to write, or the goodbye once it is closed. `None`:
/// nothing to do, the writer waits. One future for both, so that the
/// write side awaits a step in one place (an `async` block keeps beside
/// all its waits what is alive across two of them).
fn next_step<'b, P: Protocol, W: AsyncWrite + Farewell + Unpin>(
    protocol: &'b P,
    outbox: &'b OutboxHandle,
    writer: &'b mut W,
    torn: &'b mut bool,
    stall: Duration,
) -> Option<Pin<Box<impl std::future::Future<Output = Written> + 'b>>> {
    let Batch { items, closing } = outbox.take();
    if !items.is_empty() {
        // A flushing close is acted on once the queue is empty.
        drop(closing);
        let writing = write_batch(items, writer, torn, outbox, stall).map(|written| {
            if let Err(reason) = written {
                outbox.close(reason, false);
            }
            Written::Batch
        });
        return Some(Box::pin(Either::Left(writing)));
    }
    let closing = closing?;
    let torn = *torn;
    let goodbye = goodbye(protocol, closing, torn, writer, stall).map(|()| Written::Ended);
    Some(Box::pin(Either::Right(goodbye)))
}

/// Writes one batch, unless the client is cut off meanwhile.
async fn write_batch<W: AsyncWrite + Unpin>(
    items: VecDeque<Bytes>,
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
