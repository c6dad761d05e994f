//! The scenarios, from connecting to the report.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::adapter::{self, Adapter};
use super::publish::{self, probe_until_ready, PacedWriter};
use super::receive::receive;
use super::stream::{Connection, Reader};
use super::{open_many, procfs, BenchState, Clock, Options, Progress, Report, Scenario};

/// Fanout and chat: connect everyone, check everyone hears the room, warm
/// up, measure, wait for what is in flight, report.
pub(super) async fn traffic(options: &Options, progress: Arc<Progress>) -> anyhow::Result<Report> {
    let clock = Clock(Instant::now());
    let chat = options.scenario == Scenario::Chat;
    let clients = options.clients;
    let publishers = if chat { clients } else { options.publishers };
    anyhow::ensure!(!chat || clients >= 2, "chat needs at least 2 clients");
    anyhow::ensure!(!chat || options.rate > 0.0, "--rate must be more than 0");

    let adapter = options.adapter;
    let subscribers = open_many(clients, &progress, |i| {
        let (addr, room, tls) = (
            options.addr_for(i),
            options.room.clone(),
            options.tls.clone(),
        );
        let name = (adapter == Adapter::Text).then(|| format!("{}bench-{i}", options.name_prefix));
        async move {
            adapter
                .subscriber(&addr, tls.as_ref(), &room, name.as_deref())
                .await
        }
    })
    .await?;
    // A chat client publishes on its own connection where the relay allows.
    let separate_publishers = !chat || !adapter.publishes_while_subscribed();
    let publisher_streams = if separate_publishers {
        open_many(publishers, &progress, |i| {
            let (addr, room, tls) = (
                options.addr_for(i),
                options.room.clone(),
                options.tls.clone(),
            );
            async move { adapter.publisher(&addr, tls.as_ref(), &room).await }
        })
        .await?
    } else {
        Vec::new()
    };

    let shared = BenchState::new(publishers, clock, progress.clone());
    let mut receivers = JoinSet::new();
    // Write sides stay open to the end: a relay may take a closed write
    // side for a client leaving.
    let mut keep_open = Vec::new();
    let mut fanout_writers = Vec::new();
    let mut paced_writers = Vec::new();
    for (i, stream) in subscribers.into_iter().enumerate() {
        let own = chat.then_some(i as u32);
        let (size, shared) = (options.size, shared.clone());
        if chat && !separate_publishers {
            let (reader, writer) = split_for_pacer(stream)?;
            paced_writers.push(writer);
            receivers.spawn(async move {
                (
                    own,
                    receive(adapter.lines(reader), own, publishers, size, shared).await,
                )
            });
        } else {
            let (reader, writer) = stream.split();
            keep_open.push(writer);
            receivers.spawn(async move {
                (
                    own,
                    receive(adapter.lines(reader), own, publishers, size, shared).await,
                )
            });
        }
    }
    for stream in publisher_streams {
        // A publisher's connection only publishes: what it receives
        // (notices, reply counts, other publishers' messages) is discarded.
        if chat {
            let (reader, writer) = split_for_pacer(stream)?;
            tokio::spawn(adapter::drain(reader));
            paced_writers.push(writer);
        } else {
            let (reader, writer) = stream.split();
            tokio::spawn(adapter::drain(reader));
            fanout_writers.push(writer);
        }
    }
    probe_until_ready(options, &shared, clients).await?;

    // The window opens after the warm-up, counted from now.
    let start = clock.now_ns();
    let window = (
        start + options.warmup.as_nanos() as u64,
        start + (options.warmup + options.duration).as_nanos() as u64,
    );
    shared.set_window(window);
    tokio::spawn({
        let (progress, warmup) = (progress.clone(), options.warmup);
        async move {
            tokio::time::sleep(warmup).await;
            progress.measuring.store(true, Ordering::Relaxed);
        }
    });

    let receivers_per_message = if chat { clients - 1 } else { clients } as u64;
    let mut sent = vec![0u64; publishers];
    let mut sent_in_window = 0;
    if chat {
        let (pacing, pacer_shared) = (options.clone(), shared.clone());
        let paced = tokio::task::spawn_blocking(move || {
            publish::pace(paced_writers, pacing, window.1, pacer_shared)
        })
        .await
        .context("the pacer thread")?
        .context("publishing")?;
        sent = paced.sent;
        sent_in_window = paced.in_window;
        let _keep_open = paced.writers;
        drain_and_stop(options, &shared, &sent, receivers_per_message).await;
    } else {
        let mut publishing = JoinSet::new();
        for (id, writer) in fanout_writers.into_iter().enumerate() {
            let (options, shared) = (options.clone(), shared.clone());
            let id = id as u32;
            publishing.spawn(async move {
                let published =
                    publish::fanout(id, writer, options, receivers_per_message, window.1, shared)
                        .await;
                (id, published)
            });
        }
        while let Some(done) = publishing.join_next().await {
            let (id, published) = done.context("publisher task")?;
            let published = published.with_context(|| format!("publisher {id}"))?;
            sent[id as usize] = published.sent;
            sent_in_window += published.in_window;
            keep_open.push(published.writer);
        }
        drain_and_stop(options, &shared, &sent, receivers_per_message).await;
    }
    let mut tallies = Vec::new();
    while let Some(done) = receivers.join_next().await {
        tallies.push(done.context("receiver task")?);
    }
    drop(keep_open);
    let mut report = Report::from_traffic(options, &sent, sent_in_window, &tallies, chat);
    report.heard_room = Some(shared.ready.load(Ordering::SeqCst));
    Ok(report)
}

/// Waits (up to the drain timeout) for every message sent to arrive
/// everywhere, then stops the receivers.
async fn drain_and_stop(
    options: &Options,
    shared: &BenchState,
    sent: &[u64],
    receivers_per_message: u64,
) {
    let expected: u64 = sent.iter().sum::<u64>() * receivers_per_message;
    let deadline = Instant::now() + options.drain_timeout;
    while shared.total_delivered() < expected && Instant::now() < deadline {
        let caught_up = shared.caught_up.notified();
        let _ = tokio::time::timeout(Duration::from_millis(50), caught_up).await;
    }
    shared.stop.cancel();
}

/// A chat client's connection, for the runtime to read and the pacer
/// thread to write. A TCP socket gets two handles, and the pacer writes it
/// itself; a TLS stream is one session, so the pacer hands each message to
/// a task that writes it (a hop that adds to the latency measured over
/// TLS, on the bench's side).
fn split_for_pacer(stream: Connection) -> std::io::Result<(Reader, PacedWriter)> {
    match stream {
        Connection::Plain(stream) => {
            let stream = stream.into_std()?;
            let writer = stream.try_clone()?;
            Ok((
                Box::new(TcpStream::from_std(stream)?),
                PacedWriter::Socket(writer),
            ))
        }
        tls => {
            let (reader, mut writer) = tls.split();
            let (messages, mut to_write) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            tokio::spawn(async move {
                while let Some(message) = to_write.recv().await {
                    // Flushed at once: a message left in the TLS stream's
                    // buffer would be late, or never sent.
                    if writer.write_all(&message).await.is_err() || writer.flush().await.is_err() {
                        break;
                    }
                }
                // Open to the end, as a TCP client's write side stays.
                std::future::pending::<()>().await;
            });
            Ok((reader, PacedWriter::Task(messages)))
        }
    }
}

/// Connect: many idle clients, each named and in the room; one broadcast
/// that all must hear; the relay's memory before and after.
pub(super) async fn connect_idle(
    options: &Options,
    progress: Arc<Progress>,
) -> anyhow::Result<Report> {
    let pid = options
        .server_pid
        .or_else(|| procfs::pid_listening_on(&options.addr_for(0)));
    let before = pid.and_then(procfs::rss_bytes);
    let adapter = options.adapter;
    let opening = Instant::now();
    let clients = open_many(options.clients, &progress, |i| {
        let (addr, room, tls) = (
            options.addr_for(i),
            options.room.clone(),
            options.tls.clone(),
        );
        let name = (adapter == Adapter::Text).then(|| format!("{}idle-{i}", options.name_prefix));
        async move {
            adapter
                .subscriber(&addr, tls.as_ref(), &room, name.as_deref())
                .await
        }
    })
    .await?;
    let opening = opening.elapsed();
    let shared = BenchState::new(1, Clock(Instant::now()), progress.clone());
    let mut receivers = JoinSet::new();
    let mut keep_open = Vec::new();
    for stream in clients {
        let (reader, writer) = stream.split();
        receivers.spawn(receive(
            adapter.lines(reader),
            None,
            1,
            options.size,
            shared.clone(),
        ));
        keep_open.push(writer);
    }
    probe_until_ready(options, &shared, options.clients).await?;
    progress.measuring.store(true, Ordering::Relaxed);
    // Hold them, idle, then read the relay's memory.
    tokio::time::sleep(options.duration).await;
    let after = pid.and_then(procfs::rss_bytes);
    shared.stop.cancel();
    while receivers.join_next().await.is_some() {}
    drop(keep_open);
    Ok(Report::from_connect(
        options,
        pid,
        before,
        after,
        shared.ready.load(Ordering::SeqCst),
        opening,
    ))
}
