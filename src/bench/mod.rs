//! `switchboard bench`: a load generator that drives a running relay over
//! real sockets and measures throughput, latency, loss and memory.
//!
//! Scenarios:
//! - [`Scenario::Fanout`]: N receivers in one room, P publishers sending
//!   as fast as the relay takes it, each at most `window` messages ahead of
//!   its receivers;
//! - [`Scenario::Chat`]: N clients each sending at a fixed rate, open loop
//!   (latency counts from when a message was due, so a relay that stalls
//!   the sender cannot hide it), each receiving everyone else's messages;
//! - [`Scenario::Connect`]: N idle clients, each with a name and in a room,
//!   and the server's memory per client.
//!
//! Every payload carries its publisher, sequence number and due time (see
//! [`payload`]), so every receiver checks loss, duplicates and order.

pub mod adapter;
pub mod payload;
mod procfs;
pub mod report;
pub mod tally;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use adapter::Adapter;
pub use report::Report;

use payload::{Stamp, PROBE};
use tally::Tally;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Many receivers, few publishers at full speed: throughput.
    Fanout,
    /// Many clients at a fixed rate: latency.
    Chat,
    /// Many idle clients: memory per client.
    Connect,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fanout" => Ok(Scenario::Fanout),
            "chat" => Ok(Scenario::Chat),
            "connect" => Ok(Scenario::Connect),
            _ => Err(format!(
                "unknown scenario {s:?}: expected fanout, chat or connect"
            )),
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scenario::Fanout => "fanout",
            Scenario::Chat => "chat",
            Scenario::Connect => "connect",
        })
    }
}

/// How to run a bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// The relay, HOST:PORT.
    pub addr: String,
    /// What to measure.
    pub scenario: Scenario,
    /// How to speak to the relay.
    pub adapter: Adapter,
    /// The room (subject, channel) everything is sent to.
    pub room: String,
    /// Receivers (fanout), clients (chat, connect).
    pub clients: usize,
    /// Publishers (fanout).
    pub publishers: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// Messages per second per client (chat).
    pub rate: f64,
    /// Messages a fanout publisher may be ahead of its receivers.
    pub window: usize,
    /// The relay's process, for memory figures (found by port if not given).
    pub server_pid: Option<u32>,
    /// How long to wait for messages still in flight at the end.
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: format!("127.0.0.1:{}", crate::config::DEFAULT_PORT),
            scenario: Scenario::Fanout,
            adapter: Adapter::Text,
            room: "lobby".into(),
            clients: 100,
            publishers: 1,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: 100.0,
            window: 1000,
            server_pid: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Live counters, for a progress display while a bench runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Clients connected so far.
    pub connected: AtomicUsize,
    /// Messages published so far.
    pub published: AtomicU64,
    /// Messages received so far, all receivers together.
    pub delivered: AtomicU64,
    /// Set once measuring has begun (after connecting and warm-up).
    pub measuring: AtomicBool,
}

/// Nanoseconds since the bench started: the clock of every timestamp.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// State shared by publishers and receivers.
struct Shared {
    clock: Clock,
    /// Measuring window, in clock nanoseconds; empty until set.
    window: [AtomicU64; 2],
    /// Per publisher: deliveries of its messages so far, all receivers together.
    delivered: Vec<AtomicU64>,
    /// Receivers that have heard a probe.
    ready: AtomicUsize,
    /// Wakes publishers waiting for their receivers to catch up.
    caught_up: Notify,
    /// Tells receivers to stop.
    stop: Notify,
    stopped: AtomicBool,
    progress: Arc<Progress>,
}

impl Shared {
    fn new(publishers: usize, clock: Clock, progress: Arc<Progress>) -> Arc<Self> {
        Arc::new(Shared {
            clock,
            window: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            delivered: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicUsize::new(0),
            caught_up: Notify::new(),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            progress,
        })
    }

    fn set_window(&self, (start, end): (u64, u64)) {
        self.window[1].store(end, Ordering::SeqCst);
        self.window[0].store(start, Ordering::SeqCst);
    }

    fn in_window(&self, ns: u64) -> bool {
        let start = self.window[0].load(Ordering::Relaxed);
        let end = self.window[1].load(Ordering::Relaxed);
        (start..end).contains(&ns)
    }

    fn total_delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum()
    }
}

/// Runs a bench and reports what it measured.
pub async fn run(options: &Options, progress: Arc<Progress>) -> anyhow::Result<Report> {
    anyhow::ensure!(options.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        options.publishers > 0 && options.publishers < PROBE as usize,
        "--publishers must be between 1 and {}",
        PROBE - 1
    );
    anyhow::ensure!(
        !options.duration.is_zero(),
        "--duration must be more than 0"
    );
    match options.scenario {
        Scenario::Fanout | Scenario::Chat => traffic(options, progress).await,
        Scenario::Connect => connect_idle(options, progress).await,
    }
}

/// One receiving connection's task: reads until told to stop, returns its tally.
async fn receive(
    mut reader: OwnedReadHalf,
    own: Option<u32>,
    publishers: usize,
    size: usize,
    shared: Arc<Shared>,
) -> Tally {
    let mut tally = Tally::new(publishers);
    let finder = payload::finder();
    let mut local = vec![0u64; publishers];
    let mut heard_probe = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: not a bench payload; drop it.
            filled = 0;
            tally.garbled += 1;
        }
        let read = tokio::select! {
            read = reader.read(&mut buf[filled..]) => read,
            _ = shared.stop.notified() => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        filled += n;
        let now = shared.clock.now_ns();
        let measuring = shared.in_window(now);
        let mut start = 0;
        let mut got = 0u64;
        for end in memchr::memchr_iter(b'\n', &buf[..filled]) {
            let line = &buf[start..end];
            start = end + 1;
            let Some(stamp) = payload::find(line, size, &finder) else {
                if finder.find(line).is_some() {
                    tally.garbled += 1;
                }
                continue;
            };
            if stamp.publisher == PROBE {
                if !heard_probe {
                    heard_probe = true;
                    shared.ready.fetch_add(1, Ordering::SeqCst);
                }
                continue;
            }
            let p = stamp.publisher as usize;
            if Some(stamp.publisher) == own || p >= publishers {
                continue;
            }
            tally.sequences[p].observe(stamp.seq);
            local[p] += 1;
            got += 1;
            if measuring {
                tally.deliveries_in_window += 1;
                if shared.in_window(stamp.sent_ns) {
                    tally
                        .latency
                        .saturating_record(now.saturating_sub(stamp.sent_ns).max(1));
                }
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if got > 0 {
            for (p, count) in local.iter_mut().enumerate() {
                if *count > 0 {
                    shared.delivered[p].fetch_add(*count, Ordering::Relaxed);
                    *count = 0;
                }
            }
            shared.progress.delivered.fetch_add(got, Ordering::Relaxed);
            shared.caught_up.notify_waiters();
        }
        if shared.stopped.load(Ordering::Relaxed) {
            break;
        }
    }
    tally
}

/// A fanout publisher: as fast as the relay takes it, at most `window`
/// messages ahead of its receivers. Returns how many it sent.
async fn publish_fanout(
    id: u32,
    mut writer: OwnedWriteHalf,
    options: Options,
    receivers: u64,
    end_ns: u64,
    shared: Arc<Shared>,
) -> std::io::Result<Published> {
    const BATCH: u64 = 64;
    let window = options.window.max(1) as u64;
    let mut seq = 0u64;
    let mut in_window = 0u64;
    let mut buf = Vec::with_capacity(BATCH as usize * (options.size + 64));
    let mut payload = Vec::with_capacity(options.size);
    loop {
        let now = shared.clock.now_ns();
        if now >= end_ns {
            break;
        }
        let behind = shared.delivered[id as usize].load(Ordering::Relaxed) / receivers;
        let in_flight = seq - behind.min(seq);
        if in_flight >= window {
            let caught_up = shared.caught_up.notified();
            tokio::pin!(caught_up);
            caught_up.as_mut().enable();
            let behind = shared.delivered[id as usize].load(Ordering::Relaxed) / receivers;
            if seq - behind.min(seq) >= window {
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
        writer.write_all(&buf).await?;
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

/// What a publisher did, and its connection, kept open until the end.
struct Published {
    sent: u64,
    in_window: u64,
    writer: OwnedWriteHalf,
}

/// A chat client's publisher: one message every `1/rate` seconds, stamped
/// with when it was due, however late the relay lets it go out.
async fn publish_at_rate(
    id: u32,
    mut writer: OwnedWriteHalf,
    options: Options,
    offset: Duration,
    end_ns: u64,
    shared: Arc<Shared>,
) -> std::io::Result<Published> {
    let interval_ns = (1e9 / options.rate) as u64;
    let mut due = shared.clock.now_ns() + offset.as_nanos() as u64;
    let mut seq = 0u64;
    let mut in_window = 0u64;
    let mut buf = Vec::new();
    let mut payload = Vec::with_capacity(options.size);
    while due < end_ns {
        let now = shared.clock.now_ns();
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        let now = shared.clock.now_ns();
        buf.clear();
        let mut count = 0;
        while due <= now && due < end_ns {
            payload.clear();
            payload::encode(
                Stamp {
                    publisher: id,
                    seq,
                    sent_ns: due,
                },
                options.size,
                &mut payload,
            );
            options.adapter.frame(&options.room, &payload, &mut buf);
            seq += 1;
            count += 1;
            in_window += u64::from(shared.in_window(due));
            due += interval_ns;
        }
        writer.write_all(&buf).await?;
        shared
            .progress
            .published
            .fetch_add(count, Ordering::Relaxed);
    }
    Ok(Published {
        sent: seq,
        in_window,
        writer,
    })
}

/// Sends probes until every receiver has heard one: only then is everyone
/// surely in the room (some relays have no other way to tell).
async fn probe_until_ready(
    options: &Options,
    shared: &Shared,
    receivers: usize,
) -> anyhow::Result<()> {
    let stream = options
        .adapter
        .publisher(&options.addr, &options.room)
        .await
        .context("probe connection")?;
    let (reader, mut writer) = stream.into_split();
    let draining = tokio::spawn(adapter::drain(reader));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 0;
    while shared.ready.load(Ordering::SeqCst) < receivers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {receivers} receivers heard the room within 60 s",
            shared.ready.load(Ordering::SeqCst)
        );
        let mut buf = Vec::new();
        let mut payload = Vec::new();
        payload::encode(
            Stamp {
                publisher: PROBE,
                seq,
                sent_ns: 0,
            },
            options.size,
            &mut payload,
        );
        options.adapter.frame(&options.room, &payload, &mut buf);
        writer.write_all(&buf).await.context("sending a probe")?;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(writer);
    draining.abort();
    Ok(())
}

/// Opens `count` connections with `open(i)`, a bounded number at a time.
async fn open_many<F, Fut>(
    count: usize,
    progress: &Progress,
    open: F,
) -> anyhow::Result<Vec<TcpStream>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>> + Send + 'static,
{
    const AT_ONCE: usize = 64;
    let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let mut opening = JoinSet::new();
    let mut next = 0;
    while next < count || !opening.is_empty() {
        while next < count && opening.len() < AT_ONCE {
            let future = open(next);
            let i = next;
            opening.spawn(async move { (i, future.await) });
            next += 1;
        }
        if let Some(done) = opening.join_next().await {
            let (i, stream) = done.context("connecting task")?;
            streams[i] = Some(stream.with_context(|| format!("connection {} of {count}", i + 1))?);
            progress.connected.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(streams
        .into_iter()
        .map(|s| s.expect("all opened"))
        .collect())
}

async fn traffic(options: &Options, progress: Arc<Progress>) -> anyhow::Result<Report> {
    let clock = Clock(Instant::now());
    let chat = options.scenario == Scenario::Chat;
    let clients = options.clients;
    let publishers = if chat { clients } else { options.publishers };
    anyhow::ensure!(!chat || clients >= 2, "chat needs at least 2 clients");

    // Connect everyone first; the clock of the measuring window starts after.
    let adapter = options.adapter;
    let subscribers = open_many(clients, &progress, |i| {
        let (addr, room) = (options.addr.clone(), options.room.clone());
        let name = (adapter == Adapter::Text).then(|| format!("bench-{i}"));
        async move { adapter.subscriber(&addr, &room, name.as_deref()).await }
    })
    .await?;
    let separate_publishers = !chat || !adapter.publishes_while_subscribed();
    let publisher_streams = if separate_publishers {
        open_many(publishers, &progress, |_| {
            let (addr, room) = (options.addr.clone(), options.room.clone());
            async move { adapter.publisher(&addr, &room).await }
        })
        .await?
    } else {
        Vec::new()
    };

    let shared = Shared::new(publishers, clock, progress.clone());
    let mut receivers = JoinSet::new();
    // Write halves stay open to the end: a relay may take a closed write
    // side for a client leaving.
    let mut keep_open = Vec::new();
    let mut writers = Vec::new();
    for (i, stream) in subscribers.into_iter().enumerate() {
        let (reader, writer) = stream.into_split();
        let own = chat.then_some(i as u32);
        receivers.spawn(receive_until(
            reader,
            own,
            publishers,
            options.size,
            shared.clone(),
        ));
        if separate_publishers {
            keep_open.push(writer);
        } else {
            writers.push(writer);
        }
    }
    for stream in publisher_streams {
        // A publisher's connection only publishes: what it receives
        // (notices, reply counts, other publishers' messages) is discarded.
        let (reader, writer) = stream.into_split();
        tokio::spawn(adapter::drain(reader));
        writers.push(writer);
    }
    probe_until_ready(options, &shared, clients).await?;

    // The window opens after the warm-up, counted from now.
    let start = clock.now_ns();
    let window = (
        start + options.warmup.as_nanos() as u64,
        start + (options.warmup + options.duration).as_nanos() as u64,
    );
    shared.set_window(window);
    let progress_flag = progress.clone();
    let warmup = options.warmup;
    tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        progress_flag.measuring.store(true, Ordering::Relaxed);
    });

    let mut publishing = JoinSet::new();
    let receivers_per_message = if chat { clients - 1 } else { clients } as u64;
    for (id, writer) in writers.into_iter().enumerate() {
        let (options, shared) = (options.clone(), shared.clone());
        let id = id as u32;
        if chat {
            let offset = Duration::from_secs_f64(id as f64 / options.rate / publishers as f64);
            publishing.spawn(async move {
                (
                    id,
                    publish_at_rate(id, writer, options, offset, window.1, shared).await,
                )
            });
        } else {
            publishing.spawn(async move {
                (
                    id,
                    publish_fanout(id, writer, options, receivers_per_message, window.1, shared)
                        .await,
                )
            });
        }
    }
    let mut sent = vec![0u64; publishers];
    let mut sent_in_window = 0;
    while let Some(done) = publishing.join_next().await {
        let (id, result) = done.context("publisher task")?;
        let published = result.with_context(|| format!("publisher {id}"))?;
        sent[id as usize] = published.sent;
        sent_in_window += published.in_window;
        keep_open.push(published.writer);
    }

    // Wait for what is still in flight, then stop the receivers.
    let expected: u64 = sent.iter().sum::<u64>() * receivers_per_message;
    let drain_deadline = Instant::now() + options.drain_timeout;
    while shared.total_delivered() < expected && Instant::now() < drain_deadline {
        let caught_up = shared.caught_up.notified();
        let _ = tokio::time::timeout(Duration::from_millis(50), caught_up).await;
    }
    shared.stopped.store(true, Ordering::SeqCst);
    shared.stop.notify_waiters();
    let mut tallies = Vec::new();
    while let Some(done) = receivers.join_next().await {
        tallies.push(done.context("receiver task")?);
    }
    drop(keep_open);
    Ok(Report::from_traffic(
        options,
        &sent,
        sent_in_window,
        &tallies,
        chat,
    ))
}

/// Runs [`receive`], stopping when the bench says so even if idle.
async fn receive_until(
    reader: OwnedReadHalf,
    own: Option<u32>,
    publishers: usize,
    size: usize,
    shared: Arc<Shared>,
) -> (Option<u32>, Tally) {
    (own, receive(reader, own, publishers, size, shared).await)
}

async fn connect_idle(options: &Options, progress: Arc<Progress>) -> anyhow::Result<Report> {
    let pid = options
        .server_pid
        .or_else(|| procfs::pid_listening_on(&options.addr));
    let before = pid.and_then(procfs::rss_bytes);
    let adapter = options.adapter;
    let clients = open_many(options.clients, &progress, |i| {
        let (addr, room) = (options.addr.clone(), options.room.clone());
        let name = (adapter == Adapter::Text).then(|| format!("idle-{i}"));
        async move { adapter.subscriber(&addr, &room, name.as_deref()).await }
    })
    .await?;
    let clock = Clock(Instant::now());
    let shared = Shared::new(1, clock, progress.clone());
    let mut receivers = JoinSet::new();
    let mut writers = Vec::new();
    for stream in clients {
        let (reader, writer) = stream.into_split();
        receivers.spawn(receive(reader, None, 1, options.size, shared.clone()));
        writers.push(writer);
    }
    // One broadcast that everyone must hear: all are named, in the room,
    // and still relayed to.
    probe_until_ready(options, &shared, options.clients).await?;
    progress.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(options.duration).await;
    let after = pid.and_then(procfs::rss_bytes);
    shared.stopped.store(true, Ordering::SeqCst);
    shared.stop.notify_waiters();
    while receivers.join_next().await.is_some() {}
    drop(writers);
    Ok(Report::from_connect(
        options,
        pid,
        before,
        after,
        shared.ready.load(Ordering::SeqCst),
    ))
}
