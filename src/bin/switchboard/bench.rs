//! `switchboard bench`: drive a running relay and report what it does.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use switchboard::bench::{self, Adapter, Options, Progress, Scenario};
use switchboard::config::Seconds;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure: fanout (throughput), chat (latency at a fixed rate)
    /// or connect (memory per idle client).
    #[arg(value_name = "SCENARIO")]
    scenario: Scenario,

    /// The relay, HOST:PORT; or the nodes of a cluster, comma-separated, which clients are spread over in turn.
    #[arg(long, short, default_value = "127.0.0.1:12345")]
    addr: String,

    /// How to speak to it: text or raw (switchboard), ws (switchboard's
    /// `/ws`: ADDR is the HTTP listener), line (any newline broadcast
    /// server, e.g. ncat --broker), nats, redis.
    #[arg(long, short, default_value = "text")]
    protocol: Adapter,

    /// Receivers (fanout) or clients (chat, connect).
    #[arg(long, short, default_value_t = 100)]
    clients: usize,

    /// Publishers (fanout).
    #[arg(long, default_value_t = 1)]
    publishers: usize,

    /// Payload bytes per message (at least 37: the stamp).
    #[arg(long, default_value_t = 64)]
    size: usize,

    /// How long to measure.
    #[arg(long, default_value = "10s")]
    duration: Seconds,

    /// How long to run before measuring.
    #[arg(long, default_value = "2s")]
    warmup: Seconds,

    /// Messages per second per client (chat).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,

    /// Messages a fanout publisher may be ahead of its receivers.
    #[arg(long, default_value_t = 1000)]
    window: usize,

    /// Room, subject or channel to use.
    #[arg(long, default_value = "lobby")]
    room: String,

    /// The relay's process id, for memory figures (found by port when the
    /// relay runs on this machine).
    #[arg(long)]
    server_pid: Option<u32>,

    /// What the text clients' names start with (bench-N, idle-N): several benches against one cluster need names of their own.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    name_prefix: String,

    /// Speak TLS to a tls://, json+tls:// or raw+tls:// listener (or wss to an --http https:// one): --tls checks the server against the system's roots, --ca FILE against a CA, --insecure not at all.
    #[command(flatten)]
    tls: crate::tls::TlsArgs,

    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.size >= bench::payload::MIN_SIZE,
        "--size must be at least {} bytes: the payload carries a stamp",
        bench::payload::MIN_SIZE
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be more than 0");
    let options = Options {
        addr: args.addr,
        scenario: args.scenario,
        adapter: args.protocol,
        room: args.room,
        clients: args.clients,
        publishers: args.publishers,
        size: args.size,
        duration: args.duration.0,
        warmup: args.warmup.0,
        rate: args.rate,
        window: args.window,
        server_pid: args.server_pid,
        name_prefix: args.name_prefix,
        tls: args.tls.client_tls()?,
        ..Options::default()
    };
    let progress = Arc::new(Progress::default());
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr())
        .then(|| show_progress(progress.clone(), &options));
    let report = bench::run(&options, progress).await;
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r\x1b[2K");
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A live line on stderr: connecting, warming up, then rates.
fn show_progress(progress: Arc<Progress>, options: &Options) -> tokio::task::JoinHandle<()> {
    let duration = options.duration;
    let clients = options.clients;
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut last = (0u64, 0u64);
        let mut measuring_since = None;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let connected = progress.connected.load(Ordering::Relaxed);
            let published = progress.published.load(Ordering::Relaxed);
            let delivered = progress.delivered.load(Ordering::Relaxed);
            let rates = ((published - last.0) * 2, (delivered - last.1) * 2);
            last = (published, delivered);
            let phase = if connected < clients {
                format!("connecting {connected}/{clients}")
            } else if progress.measuring.load(Ordering::Relaxed) {
                let since = *measuring_since.get_or_insert_with(std::time::Instant::now);
                format!(
                    "measuring {:.0}s/{:.0}s",
                    since.elapsed().as_secs_f64(),
                    duration.as_secs_f64()
                )
            } else {
                "warming up".to_owned()
            };
            bar.set_message(format!(
                "{phase}   {} msg/s published   {} deliveries/s",
                rates.0, rates.1
            ));
        }
    })
}
