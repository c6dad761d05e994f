//! `switchboard status`: is the server up, and what is it doing? Asks the
//! admin API of a running server (its `--http` listener) and prints a
//! table, or the JSON; `--watch` refreshes it like `top`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use switchboard::config::Seconds;
use switchboard::server::control::{ClientPage, RoomPage, Stats};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The server's HTTP listener (its --http): HOST:PORT, or a URL (https://HOST:PORT for an --http https:// listener). [default: 127.0.0.1:8080]
    #[arg(value_name = "ADDR", env = "SWITCHBOARD_HTTP")]
    addr: Option<String>,

    /// The server's admin token (needed when it has one).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Print the figures as JSON (stats, top rooms, recent disconnects).
    #[arg(long)]
    json: bool,

    /// Refresh every INTERVAL (default 2s) until interrupted; `--watch ADDR` and `ADDR --watch` both work.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s")]
    watch: Option<String>,

    /// How long to wait for the server.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: Seconds,

    /// HTTPS: --tls (or an https:// address) checks the server against the system's roots; --ca, --insecure, --cert and --key as for connect.
    #[command(flatten)]
    tls: crate::tls::TlsArgs,
}

/// Everything one look shows.
struct Look {
    stats: Stats,
    rooms: RoomPage,
    closed: ClientPage,
}

/// The address and the refresh interval, whatever the order they came in:
/// `--watch` takes an optional value, so `status --watch 127.0.0.1:8080`
/// gives it the address.
fn address_and_interval(args: &StatusArgs) -> anyhow::Result<(String, Option<Duration>)> {
    let watch = args
        .watch
        .as_deref()
        .map(|value| value.parse::<Seconds>().map(|s| s.0).map_err(|_| value));
    match (args.addr.clone(), watch) {
        (addr, None) => Ok((addr.unwrap_or_else(|| DEFAULT_ADDR.into()), None)),
        (addr, Some(Ok(interval))) => {
            Ok((addr.unwrap_or_else(|| DEFAULT_ADDR.into()), Some(interval)))
        }
        (None, Some(Err(addr))) => Ok((addr.to_owned(), Some(Duration::from_secs(2)))),
        (Some(_), Some(Err(value))) => {
            anyhow::bail!("--watch takes an interval such as 2s or 500ms, not {value:?}")
        }
    }
}

/// Where `status` looks without an address: `--http`'s usual place.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (addr, watch) = address_and_interval(&args)?;
    let tls = args.tls.client_tls()?;
    let base = if addr.contains("://") {
        addr.trim_end_matches('/').to_owned()
    } else if tls.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let https = base.starts_with("https://");
    anyhow::ensure!(
        https || tls.is_none(),
        "{base} is plain HTTP: --tls, --ca, --insecure and --cert are for an https:// address"
    );
    let mut client = reqwest::Client::builder().timeout(args.timeout.0);
    if https {
        let tls = match tls {
            Some(tls) => tls,
            None => switchboard::ClientTls::system_roots()?,
        };
        client = client.tls_backend_preconfigured(tls.rustls_config());
    }
    let client = client.build().context("cannot set up the HTTP client")?;
    loop {
        let look = match look(&client, &base, args.token.as_deref()).await {
            Ok(look) => look,
            Err(error) => {
                eprintln!("switchboard status: {error:#}");
                if let Some(said) = relay_listener_at(&addr).await {
                    eprintln!("switchboard status: {addr} is a switchboard TCP listener (it greeted with {said:?}): status talks to the server's --http listener, e.g. switchboard status 127.0.0.1:8080");
                }
                let Some(interval) = watch else {
                    return Ok(ExitCode::FAILURE);
                };
                tokio::time::sleep(interval).await;
                continue;
            }
        };
        let out = if args.json {
            serde_json::to_string_pretty(&serde_json::json!({
                "stats": look.stats,
                "rooms": look.rooms,
                "recent_disconnects": look.closed,
            }))?
        } else {
            render(&look, &base)
        };
        match watch {
            None => {
                println!("{out}");
                return Ok(ExitCode::SUCCESS);
            }
            Some(interval) => {
                // Clear the screen and go home, like `watch`.
                println!("\x1b[2J\x1b[H{out}");
                tokio::time::sleep(interval).await;
            }
        }
    }
}

/// What `addr` said when connected to, if it greets as a switchboard TCP
/// listener does (a text welcome or a JSON event), within a moment.
async fn relay_listener_at(addr: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    if addr.contains("://") {
        return None;
    }
    let wait = Duration::from_secs(1);
    let mut stream = tokio::time::timeout(wait, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut first = [0u8; 200];
    let n = tokio::time::timeout(wait, stream.read(&mut first))
        .await
        .ok()?
        .ok()?;
    let said = String::from_utf8_lossy(&first[..n]);
    let said = said.lines().next().unwrap_or_default().to_owned();
    (said.starts_with("* ") || said.starts_with("{\"type\":")).then_some(said)
}

async fn look(client: &reqwest::Client, base: &str, token: Option<&str>) -> anyhow::Result<Look> {
    Ok(Look {
        stats: get(client, base, "/api/v1/stats", token).await?,
        rooms: get(client, base, "/api/v1/rooms?limit=5", token).await?,
        closed: get(client, base, "/api/v1/clients?state=closed&limit=5", token).await?,
    })
}

async fn get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<T> {
    let mut request = client.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|error| {
        // The innermost cause: rustls says what was wrong with a certificate.
        let mut cause: &dyn std::error::Error = &error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let why = if error.is_timeout() {
            "it did not answer in time".to_owned()
        } else if cause.to_string().contains("certificate") {
            format!(
                "its certificate is not trusted ({cause}); give its CA with --ca FILE (or --insecure to skip the check)"
            )
        } else if error.is_connect() {
            "nothing accepts connections there".to_owned()
        } else {
            error.to_string()
        };
        anyhow::anyhow!(
            "cannot reach switchboard at {base}: {why}. Is the server running with --http {}?",
            base.trim_start_matches("http://")
        )
    })?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => {}
        401 => anyhow::bail!(
            "the server at {base} wants its admin token, and {}: pass --token TOKEN or set SWITCHBOARD_ADMIN_TOKEN",
            if token.is_some() { "this one is wrong" } else { "none was given" }
        ),
        _ => {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!("the server at {base} answered {status}: {message}");
        }
    }
    response.json().await.with_context(|| {
        format!("the server at {base} sent something other than switchboard's API")
    })
}

fn render(look: &Look, base: &str) -> String {
    let Look {
        stats,
        rooms,
        closed,
    } = look;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "switchboard {} at {}, up {}",
        stats.version,
        base.trim_start_matches("http://"),
        duration(stats.uptime_seconds)
    );
    let _ = writeln!(
        out,
        "clients   {} now, {} since start   rooms {}",
        stats.clients.current, stats.clients.total, stats.rooms
    );
    let _ = writeln!(
        out,
        "messages  in {}/s  out {}/s   ({} in, {} out in all)",
        count(stats.rates.messages_in),
        count(stats.rates.messages_out),
        count(stats.messages.received as f64),
        count(stats.messages.sent as f64)
    );
    let _ = writeln!(
        out,
        "bytes     in {}/s  out {}/s",
        bytes(stats.rates.bytes_in),
        bytes(stats.rates.bytes_out)
    );
    let _ = writeln!(
        out,
        "memory    {} held of a {} budget, {} resident",
        bytes(stats.memory.held as f64),
        bytes(stats.memory.budget as f64),
        bytes(stats.memory.rss as f64)
    );
    if stats.memory.history > 0 || stats.history_store.is_some() {
        let mut line = format!(
            "history   {} kept in memory, {} evicted for the budget",
            bytes(stats.memory.history as f64),
            stats.memory.history_evicted
        );
        if let Some(store) = &stats.history_store {
            line.push_str(&format!(
                "; on disk {} ({}), {} saved, last commit {:.1} ms{}",
                store.path,
                bytes(store.bytes as f64),
                store.saved,
                store.last_commit_us as f64 / 1000.0,
                match store.errors {
                    0 => String::new(),
                    n => format!(", {n} FAILED commits"),
                }
            ));
        }
        let _ = writeln!(out, "{line}");
    }
    if !stats.disconnects.is_empty() {
        let mut reasons: Vec<_> = stats.disconnects.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "gone      {}", reasons.join(", "));
    }
    if let Some(cluster) = &stats.cluster {
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("{} ({})", node.name, node.clients))
            .collect();
        let _ = writeln!(
            out,
            "cluster   node {}{}, nodes {}",
            cluster.node,
            if cluster.degraded {
                " DEGRADED (Redis out of reach)"
            } else {
                ""
            },
            nodes.join(", ")
        );
        let _ = writeln!(
            out,
            "          out {} in {}, {} failed sends, {} lost (gaps), Redis round trip {}",
            cluster.messages_out,
            cluster.messages_in,
            cluster.send_failures,
            cluster.gaps,
            if cluster.redis_rtt_us < 1000 {
                format!("{} µs", cluster.redis_rtt_us)
            } else {
                format!("{:.1} ms", cluster.redis_rtt_us as f64 / 1000.0)
            }
        );
    }
    let _ = writeln!(out);
    let rows: Vec<Vec<String>> = stats
        .listeners
        .iter()
        .map(|l| {
            vec![
                l.id.to_string(),
                l.mode.clone(),
                l.addr.clone(),
                l.room.clone(),
                l.clients.to_string(),
                l.origin.as_str().to_owned(),
            ]
        })
        .collect();
    table(
        &mut out,
        "LISTENERS",
        &["ID", "MODE", "ADDRESS", "ROOM", "CLIENTS", "ORIGIN"],
        &rows,
    );
    let rows: Vec<Vec<String>> = rooms
        .rooms
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.members.to_string(),
                format!("{:.1}", r.rate),
            ]
        })
        .collect();
    let title = format!("TOP ROOMS ({} of {})", rooms.rooms.len(), rooms.total);
    table(&mut out, &title, &["ROOM", "MEMBERS", "MSG/S"], &rows);
    let rows: Vec<Vec<String>> = closed
        .clients
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.addr.clone(),
                c.mode.clone(),
                c.reason_code.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &mut out,
        "RECENT DISCONNECTS",
        &["NAME", "ADDRESS", "MODE", "REASON"],
        &rows,
    );
    out.trim_end().to_owned()
}

fn table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)\n");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("  {}", cells.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(&mut header.iter().copied()));
    for row in rows {
        let _ = writeln!(out, "{}", line(&mut row.iter().map(String::as_str)));
    }
    let _ = writeln!(out);
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n if n.fract() == 0.0 => format!("{n:.0}"),
        n => format!("{n:.1}"),
    }
}

fn bytes(n: f64) -> String {
    match n {
        n if n >= (1u64 << 30) as f64 => format!("{:.1} GiB", n / (1u64 << 30) as f64),
        n if n >= (1u64 << 20) as f64 => format!("{:.1} MiB", n / (1u64 << 20) as f64),
        n if n >= 1024.0 => format!("{:.1} KiB", n / 1024.0),
        n => format!("{n:.0} B"),
    }
}
