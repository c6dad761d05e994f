//! Publishers: fanout's (as fast as the relay takes it, within a window),
//! chat's (on a fixed schedule, kept by an OS thread), and the probes that
//! tell when every receiver is listening.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stream::Writer;
use anyhow::Context;
use tokio::io::AsyncWriteExt;

use super::adapter;
use super::payload::{self, Stamp, PROBE};
use super::{BenchState, Options};

/// What a fanout publisher did, and its connection, kept open until the end.
pub(super) struct Published {
    pub sent: u64,
    pub in_window: u64,
    pub writer: Writer,
}

/// A fanout publisher: as fast as the relay takes it, at most
/// `options.window` messages ahead of its slowest-on-average receiver.
pub(super) async fn fanout(
    id: u32,
    mut writer: Writer,
    options: Options,
    receivers: u64,
    end_ns: u64,
    shared: Arc<BenchState>,
) -> std::io::Result<Published> {
    const BATCH: u64 = 64;
    let window = options.window.max(1) as u64;
    let (mut seq, mut in_window) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(BATCH as usize * (options.size + 64));
    let mut payload = Vec::with_capacity(options.size);
    let behind = |seq: u64| {
        seq - (shared.delivered[id as usize].load(Ordering::Relaxed) / receivers).min(seq)
    };
    loop {
        let now = shared.clock.now_ns();
        if now >= end_ns {
            break;
        }
        let in_flight = behind(seq);
        if in_flight >= window {
            let caught_up = shared.caught_up.notified();
            tokio::pin!(caught_up);
            caught_up.as_mut().enable();
            if behind(seq) >= window {
                let _ = tokio::time::timeout(Duration::from_millis(10), caught_up).await;
            }
            continue;
        }
        let count = (window - in_flight).min(BATCH);
        buf.clear();
        for _ in 0..count {
            payload.clear();
            payload::encode(
                Stamp {
                    publisher: id,
                    seq,
                    sent_ns: now,
                },
                options.size,
                &mut payload,
            );
            options.adapter.frame(&options.room, &payload, &mut buf);
            seq += 1;
        }
        // A TLS writer keeps what the socket did not take: flush, or the
        // last batches wait in it while the window waits for them.
        writer.write_all(&buf).await?;
        writer.flush().await?;
        shared
            .progress
            .published
            .fetch_add(count, Ordering::Relaxed);
        if shared.in_window(now) {
            in_window += count;
        }
    }
    Ok(Published {
        sent: seq,
        in_window,
        writer,
    })
}

/// What the chat pacer did.
pub(super) struct Paced {
    pub sent: Vec<u64>,
    pub in_window: u64,
    pub writers: Vec<PacedWriter>,
}

/// How the pacer thread writes one client's messages.
pub(super) enum PacedWriter {
    /// Itself, to the client's TCP socket.
    Socket(std::net::TcpStream),
    /// Through the task that writes the client's TLS stream.
    Task(tokio::sync::mpsc::UnboundedSender<Vec<u8>>),
}

impl PacedWriter {
    fn write(&mut self, message: &[u8]) -> std::io::Result<()> {
        match self {
            PacedWriter::Socket(stream) => write_all(stream, message),
            PacedWriter::Task(messages) => messages
                .send(message.to_vec())
                .map_err(|_| std::io::ErrorKind::BrokenPipe.into()),
        }
    }
}

/// How long before a message is due the pacer stops sleeping and yields
/// instead: sleeping is only that precise.
const SLEEP_SLACK: Duration = Duration::from_micros(80);

/// Sends every chat client's messages on schedule, from one OS thread:
/// client `i` sends every `1/rate` s, the clients spread evenly over the
/// interval, each message stamped with when it was due. Tokio's timer
/// ticks in milliseconds, which would measure the bench, not the relay.
/// Open loop: a relay that holds a sender back makes its messages late,
/// and that lateness counts in their latency.
pub(super) fn pace(
    mut writers: Vec<PacedWriter>,
    options: Options,
    end_ns: u64,
    shared: Arc<BenchState>,
) -> std::io::Result<Paced> {
    let clients = writers.len() as u128;
    let interval_ns = (1e9 / options.rate) as u128;
    let start = shared.clock.now_ns() as u128;
    let mut sent = vec![0u64; writers.len()];
    let mut in_window = 0;
    let mut buf = Vec::new();
    let mut payload = Vec::new();
    for slot in 0u128.. {
        let due = (start + slot * interval_ns / clients) as u64;
        if due >= end_ns {
            break;
        }
        wait_until(&shared, due);
        let client = (slot % clients) as usize;
        let stamp = Stamp {
            publisher: client as u32,
            seq: sent[client],
            sent_ns: due,
        };
        payload.clear();
        payload::encode(stamp, options.size, &mut payload);
        buf.clear();
        options.adapter.frame(&options.room, &payload, &mut buf);
        writers[client].write(&buf)?;
        sent[client] += 1;
        in_window += u64::from(shared.in_window(due));
        shared.progress.published.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Paced {
        sent,
        in_window,
        writers,
    })
}

fn wait_until(shared: &BenchState, due: u64) {
    loop {
        let now = shared.clock.now_ns();
        if now >= due {
            return;
        }
        let left = Duration::from_nanos(due - now);
        if left > SLEEP_SLACK {
            std::thread::sleep(left - SLEEP_SLACK);
        } else {
            std::thread::yield_now();
        }
    }
}

/// Writes all of `buf` to a socket in non-blocking mode (it is shared
/// with the runtime that reads it), waiting while the relay pushes back.
fn write_all(stream: &mut std::net::TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Longest wait for every receiver to hear the room before measuring
/// without the rest (whose messages then count as lost).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long to wait between probes to `receivers`: 20 ms, and 10 µs per
/// receiver when there are more than 2,000, so that probing 19,000 clients
/// (each probe a delivery to every one) takes a few percent of a relay,
/// not all of it, even with several benches probing one cluster.
fn probe_interval(receivers: usize) -> Duration {
    Duration::from_millis(20).max(Duration::from_micros(10) * receivers as u32)
}

/// Sends probes until every receiver has heard one: only then is everyone
/// surely in the room (some relays have no other way to tell). A relay that
/// never lets some receivers hear is measured anyway, and the report says
/// how many heard.
pub(super) async fn probe_until_ready(
    options: &Options,
    shared: &BenchState,
    receivers: usize,
) -> anyhow::Result<()> {
    let stream = options
        .adapter
        .publisher(&options.addr_for(0), options.tls.as_ref(), &options.room)
        .await
        .context("probe connection")?;
    let (reader, mut writer) = stream.split();
    let draining = tokio::spawn(adapter::drain(reader));
    let deadline = Instant::now() + READY_TIMEOUT;
    let (mut buf, mut payload) = (Vec::new(), Vec::new());
    for seq in 0.. {
        let ready = shared.ready.load(Ordering::SeqCst);
        if ready >= receivers {
            break;
        }
        if Instant::now() > deadline {
            anyhow::ensure!(
                ready > 0,
                "no receiver heard the room within {READY_TIMEOUT:?}"
            );
            tracing::warn!(
                "only {ready} of {receivers} receivers heard the room within {READY_TIMEOUT:?}; \
                 measuring anyway: what the others miss counts as lost"
            );
            break;
        }
        payload.clear();
        payload::encode(
            Stamp {
                publisher: PROBE,
                seq,
                sent_ns: 0,
            },
            options.size,
            &mut payload,
        );
        buf.clear();
        options.adapter.frame(&options.room, &payload, &mut buf);
        writer.write_all(&buf).await.context("sending a probe")?;
        writer.flush().await.context("sending a probe")?;
        tokio::time::sleep(probe_interval(receivers)).await;
    }
    drop(writer);
    draining.abort();
    Ok(())
}
