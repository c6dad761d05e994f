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
mod publish;
mod receive;
pub mod report;
mod scenario;
pub mod stream;
pub mod tally;
pub mod websocket;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use adapter::Adapter;
pub use report::Report;
use stream::Connection;

use payload::PROBE;

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
    /// The relay, HOST:PORT; or several, comma-separated (the nodes of a
    /// cluster), which clients are spread over in turn.
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
    /// Speak TLS to the relay, checking it as this says.
    pub tls: Option<crate::ClientTls>,
    /// What the text clients' names start with.
    pub name_prefix: String,
}

impl Options {
    /// The address client `i` connects to: the relays of
    /// [`addr`](Options::addr) in turn.
    pub fn addr_for(&self, i: usize) -> String {
        let addrs: Vec<&str> = self.addr.split(',').map(str::trim).collect();
        addrs[i % addrs.len()].to_owned()
    }
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
            name_prefix: String::new(),
            tls: None,
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
struct BenchState {
    clock: Clock,
    /// Measuring window, in clock nanoseconds; empty until set.
    window: [AtomicU64; 2],
    /// Per publisher: deliveries of its messages so far, all receivers together.
    delivered: Vec<AtomicU64>,
    /// Receivers that have heard a probe.
    ready: AtomicUsize,
    /// Wakes publishers waiting for their receivers to catch up.
    caught_up: Notify,
    /// Tells receivers to stop (and stays told: a receiver that looks
    /// later still sees it).
    stop: tokio_util::sync::CancellationToken,
    progress: Arc<Progress>,
}

impl BenchState {
    fn new(publishers: usize, clock: Clock, progress: Arc<Progress>) -> Arc<Self> {
        Arc::new(BenchState {
            clock,
            window: [AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)],
            delivered: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            ready: AtomicUsize::new(0),
            caught_up: Notify::new(),
            stop: tokio_util::sync::CancellationToken::new(),
            progress,
        })
    }

    fn set_window(&self, (start, end): (u64, u64)) {
        self.window[1].store(end, Ordering::SeqCst);
        self.window[0].store(start, Ordering::SeqCst);
    }

    fn in_window(&self, ns: u64) -> bool {
        self.window().contains(&ns)
    }

    /// The measuring window, as it stands.
    fn window(&self) -> std::ops::Range<u64> {
        self.window[0].load(Ordering::Relaxed)..self.window[1].load(Ordering::Relaxed)
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
    anyhow::ensure!(
        options.size >= payload::MIN_SIZE,
        "--size must be at least {} bytes: the payload carries a stamp",
        payload::MIN_SIZE
    );
    match options.scenario {
        Scenario::Fanout | Scenario::Chat => scenario::traffic(options, progress).await,
        Scenario::Connect => scenario::connect_idle(options, progress).await,
    }
}

/// Opens `count` connections with `open(i)`, a bounded number at a time.
async fn open_many<F, Fut>(
    count: usize,
    progress: &Progress,
    open: F,
) -> anyhow::Result<Vec<Connection>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<Connection>> + Send + 'static,
{
    const AT_ONCE: usize = 64;
    let mut streams: Vec<Option<Connection>> = (0..count).map(|_| None).collect();
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
