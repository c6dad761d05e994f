//! `switchboard connect`: an interactive session, like `nc`, that knows
//! how the server says goodbye.

use std::io::IsTerminal;
use std::process::ExitCode;

use std::time::Duration;

use clap::Args;
use switchboard::{Client, Goodbye};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::resume::Whereabouts;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The server: HOST:PORT, a bare PORT (this machine) or a bare HOST (port 12345).
    #[arg(value_parser = crate::server_address)]
    addr: String,

    /// The listener speaks JSON: type JSON requests, see JSON events.
    #[arg(long)]
    json: bool,

    /// Arrive named NAME (a hello: others hear of you by that name alone).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Arrive in ROOM instead of the listener's room (a hello: only ROOM hears of you).
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,

    /// After a dropped connection (or a server restart), connect again, backing off up to 30s, and go back to the same name and rooms: a JSON client resumes each room from the last message it saw; a text listener with ?history=N shows what was missed. [default: at a terminal]
    #[arg(long, conflicts_with = "no_reconnect")]
    reconnect: bool,

    /// Exit when the connection drops, even at a terminal.
    #[arg(long)]
    no_reconnect: bool,

    #[command(flatten)]
    tls: crate::tls::TlsArgs,

    /// At a terminal, `/login USER` (without the password) asks for the password without echoing it.
    #[command(flatten)]
    login: crate::login::LoginArgs,
}

/// How a connection ended.
enum Ended {
    /// The server said goodbye: `error` if it was not a plain bye.
    Goodbye { error: bool, reason: String },
    /// The connection closed, or failed, without a goodbye.
    Lost(Option<String>),
    /// We closed our side (end of input, `/quit`), and the server closed.
    WeClosed,
    /// Ctrl-C.
    Interrupted,
    /// The first line says this is not the kind of listener we speak to.
    WrongListener,
}

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let credentials = args.login.credentials()?;
    let at_terminal = std::io::stdin().is_terminal();
    let reconnect = !args.no_reconnect && (args.reconnect || at_terminal);
    let tls = args.tls.client_tls()?;
    let mut whereabouts = Whereabouts::default();
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut input = Vec::new();
    let mut resuming = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        let client = match Client::connect_any(&args.addr, tls.as_ref()).await {
            Ok(client) => client,
            Err(error) if resuming => {
                let why = format!("cannot reach {} ({error:#}); trying again", args.addr);
                if back_off(&why, &mut backoff).await {
                    return Ok(ExitCode::SUCCESS);
                }
                continue;
            }
            Err(error) => return Err(error),
        };
        backoff = Duration::from_millis(500);
        let (mut from_server, mut to_server) = client.into_split();
        if let Some(credentials) = &credentials {
            to_server.write_all(&credentials.request(args.json)).await?;
        }
        if resuming {
            to_server
                .write_all(&whereabouts.requests(args.json))
                .await?;
            eprintln!(
                "switchboard: reconnected to {}; back in {}{}",
                args.addr,
                whereabouts.rooms(),
                if args.json {
                    ", resuming each from the last message seen"
                } else {
                    ""
                }
            );
        } else if let Some(hello) =
            crate::send::hello(args.name.as_deref(), args.room.as_deref(), args.json)
        {
            to_server.write_all(&hello).await?;
        }
        let ended = converse(
            &args,
            at_terminal,
            &mut from_server,
            &mut to_server,
            &mut stdin,
            &mut input,
            &mut whereabouts,
        )
        .await?;
        let why = match ended {
            Ended::Goodbye { error: false, .. } | Ended::WeClosed | Ended::Interrupted => {
                return Ok(ExitCode::SUCCESS)
            }
            Ended::WrongListener => return Ok(ExitCode::FAILURE),
            // A restart is worth waiting for; a kick or a refusal is not.
            Ended::Goodbye { reason, .. } if reconnect && reason == "server shutting down" => {
                format!(": {reason}")
            }
            Ended::Lost(why) if reconnect => why.map(|why| format!(": {why}")).unwrap_or_default(),
            Ended::Goodbye { reason, .. } => {
                eprintln!("switchboard: {} closed the connection: {reason}", args.addr);
                return Ok(ExitCode::FAILURE);
            }
            Ended::Lost(why) => {
                match why {
                    Some(why) => eprintln!("switchboard: {}: {why}", args.addr),
                    None => eprintln!("switchboard: {} closed the connection", args.addr),
                }
                return Ok(ExitCode::FAILURE);
            }
        };
        let why = format!("lost the connection to {}{why}; reconnecting", args.addr);
        if back_off(&why, &mut backoff).await {
            return Ok(ExitCode::SUCCESS);
        }
        resuming = true;
    }
}

/// Says `why` and for how long it waits, waits, and doubles the wait for
/// next time (up to [`MAX_BACKOFF`]); true if Ctrl-C came first.
async fn back_off(why: &str, backoff: &mut Duration) -> bool {
    let delay = *backoff;
    eprintln!(
        "switchboard: {why} in {}",
        switchboard::units::format_duration(delay)
    );
    *backoff = (delay * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = tokio::signal::ctrl_c() => true,
    }
}

/// Relays lines both ways on one connection until it ends.
async fn converse<R, W, I>(
    args: &ConnectArgs,
    at_terminal: bool,
    from_server: &mut R,
    to_server: &mut W,
    stdin: &mut I,
    input: &mut Vec<u8>,
    whereabouts: &mut Whereabouts,
) -> anyhow::Result<Ended>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    I: AsyncBufRead + Unpin,
{
    let mut first = true;
    let mut stdout = tokio::io::stdout();
    let mut line = Vec::new();
    let mut last_line = String::new();
    let mut we_closed = false;
    loop {
        tokio::select! {
            read = from_server.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => return Ok(Ended::Lost(Some(error.to_string()))),
                }
                if std::mem::take(&mut first) {
                    if let Some(advice) = crate::send::wrong_listener(&line, args.json) {
                        eprintln!("switchboard: {}: {advice}", args.addr);
                        // A TLS alert is nothing to show; a JSON or text
                        // listener is still one to talk to, by hand.
                        if matches!(line.first(), Some(0x15 | 0x16)) {
                            return Ok(Ended::WrongListener);
                        }
                    }
                }
                whereabouts.heard(&line, args.json);
                stdout.write_all(&line).await?;
                stdout.flush().await?;
                last_line = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
            }
            read = stdin.read_until(b'\n', input), if !we_closed => {
                if read? == 0 {
                    // Half-close: the server answers what it got, says bye and closes.
                    we_closed = true;
                    to_server.shutdown().await?;
                    continue;
                }
                if !input.ends_with(b"\n") {
                    input.push(b'\n');
                }
                if is_quit(input, args.json) {
                    we_closed = true;
                }
                if let Some(user) = login_without_password(input, args.json).filter(|_| at_terminal) {
                    let password = crate::login::ask_password(&user)?;
                    *input = format!("/login {user} {password}\n").into_bytes();
                }
                let written = to_server.write_all(input).await;
                input.clear();
                if let Err(error) = written {
                    return Ok(Ended::Lost(Some(error.to_string())));
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(Ended::Interrupted),
        }
    }
    Ok(match Goodbye::parse(&last_line) {
        Some(Goodbye { error, reason }) => Ended::Goodbye { error, reason },
        None if we_closed => Ended::WeClosed,
        None => Ended::Lost(None),
    })
}

/// `/login USER` typed without its password: the user to ask it for.
fn login_without_password(line: &[u8], json: bool) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim();
    let mut words = line.split_whitespace();
    match (json, words.next(), words.next(), words.next()) {
        (false, Some(command), Some(user), None) if command.eq_ignore_ascii_case("/login") => {
            Some(user.to_owned())
        }
        _ => None,
    }
}

fn is_quit(line: &[u8], json: bool) -> bool {
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    if json {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|value| value["type"] == "quit")
    } else {
        line.eq_ignore_ascii_case("/quit") || line.eq_ignore_ascii_case("/exit")
    }
}
