//! The `switchboard` command: `serve`, `connect`, `send`, `status`,
//! `bench`, `cert`, `passwd` and `completions`, thin layers over the
//! library.

mod bench;
mod cert;
mod connect;
mod device;
mod login;
mod manual;
mod passwd;
mod resume;
mod send;
mod serve;
mod status;
mod tls;

use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser, Subcommand};
use switchboard::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// A TCP message relay: what one client sends, the others in its room
/// receive. Speak to it with `nc`, telnet, a device, a script or this tool.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// How log lines are written to stderr: text for people, json (one
    /// object per line) for log collectors. [default: text, or the config
    /// file's log-format]
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SWITCHBOARD_LOG_FORMAT",
        global = true,
        value_parser = clap::builder::PossibleValuesParser::new(["text", "json"])
            .try_map(|format| format.parse::<LogFormat>()),
    )]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay server (default: text mode on 0.0.0.0:12345).
    Serve(Box<serve::ServeArgs>),
    /// Talk to a server interactively: stdin lines go to it, its lines to stdout.
    Connect(connect::ConnectArgs),
    /// Send one message (or each line of stdin) and hang up.
    Send(send::SendArgs),
    /// Show what a running server is doing: listeners, clients, rooms, rates,
    /// recent disconnects (asks its --http admin API).
    Status(status::StatusArgs),
    /// Write a self-signed TLS certificate and key, to try TLS without a certificate authority.
    Cert(cert::CertArgs),
    /// Measure a running relay (switchboard, ncat --broker, NATS, Redis):
    /// throughput, latency, loss, memory.
    Bench(bench::BenchArgs),
    /// Print a completion script for SHELL, e.g.
    /// `switchboard completions bash > /etc/bash_completion.d/switchboard`.
    Completions(manual::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command to a directory.
    #[command(hide = true)]
    Manpage(manual::ManpageArgs),
    /// Play a device (a DTU): send a registration packet, a heartbeat every
    /// so often and stdin as bytes; print what comes back as hex and text.
    Device(device::DeviceArgs),
    /// Hash a password (read from stdin) and print the users-file entry
    /// for USER, ready to append: `switchboard passwd alice >> users.toml`.
    Passwd(passwd::PasswdArgs),
}

/// A server's address as `connect`, `send` and `device` take it: what
/// `serve --listen` takes (a bare port is this machine, a bare host the
/// default port 12345), as `HOST:PORT`.
fn server_address(addr: &str) -> Result<String, String> {
    switchboard::address::client_target(addr).map_err(|e| e.to_string())
}

/// Crates whose trace-level logs carry client data; capped at debug.
const SECRET_TRACING_CRATES: [&str; 7] = [
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "axum",
    "redis",
];

/// jemalloc, where the `jemalloc` feature (on by default) has it: see
/// Cargo.toml, and docs/performance.md for what it saves.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // rustls's cryptography, for every TLS client in the process (the HTTP
    // client of `status` among them): ring, as the server uses; no aws-lc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let default_level = match (&cli.command, cli.verbose) {
        (Command::Serve(_), 0) => "info",
        (_, 0) => "warn",
        (_, 1) => "debug",
        _ => "trace",
    };
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // These crates' trace output holds what clients send (WebSocket frames
    // with `/ws` logins, request headers with admin tokens, Redis commands
    // with a password): never logged, whatever -vv or RUST_LOG asks.
    let tracing = std::env::var("RUST_LOG").map_or(cli.verbose >= 2, |v| {
        v.to_ascii_lowercase().contains("trace")
    });
    for noisy in SECRET_TRACING_CRATES.iter().filter(|_| tracing) {
        if let Ok(directive) = format!("{noisy}=debug").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let log_format = cli.log_format.unwrap_or_else(|| match &cli.command {
        Command::Serve(args) => args.log_format_in_file().unwrap_or_default(),
        _ => LogFormat::Text,
    });
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's fields at the top level (`"message":...`), where log
        // collectors look for them; spans (a connection's peer) in `spans`.
        LogFormat::Json => logger.json().flatten_event(true).init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Cert(args) => cert::run(args),
            Command::Completions(args) => manual::completions(args, Cli::command()),
            Command::Manpage(args) => manual::manpage(args, Cli::command()),
            Command::Passwd(args) => passwd::run(args).await,
            Command::Device(args) => device::run(args).await,
        }
    });
    // Do not wait for a blocked stdin read: the command is done.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}
