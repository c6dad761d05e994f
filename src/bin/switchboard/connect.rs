//! `switchboard connect`: an interactive session, like `nc`, that knows
//! how the server says goodbye.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use switchboard::{Client, Goodbye};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

    #[command(flatten)]
    tls: crate::tls::TlsArgs,

    /// At a terminal, `/login USER` (without the password) asks for the password without echoing it.
    #[command(flatten)]
    login: crate::login::LoginArgs,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let credentials = args.login.credentials()?;
    let client = Client::connect_any(&args.addr, args.tls.client_tls()?.as_ref()).await?;
    let (mut from_server, mut to_server) = client.into_split();
    if let Some(credentials) = credentials {
        to_server.write_all(&credentials.request(args.json)).await?;
    }
    if let Some(hello) = crate::send::hello(args.name.as_deref(), args.room.as_deref(), args.json) {
        to_server.write_all(&hello).await?;
    }
    let at_terminal = std::io::stdin().is_terminal();
    let mut first = true;
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let (mut line, mut input) = (Vec::new(), Vec::new());
    let mut last_line = String::new();
    let mut we_closed = false;
    loop {
        tokio::select! {
            read = from_server.read_until(b'\n', &mut line) => {
                if read? == 0 {
                    break;
                }
                if std::mem::take(&mut first) {
                    if let Some(advice) = crate::send::wrong_listener(&line, args.json) {
                        eprintln!("switchboard: {}: {advice}", args.addr);
                        // A TLS alert is nothing to show; a JSON or text
                        // listener is still one to talk to, by hand.
                        if matches!(line.first(), Some(0x15 | 0x16)) {
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                stdout.write_all(&line).await?;
                stdout.flush().await?;
                last_line = String::from_utf8_lossy(&line).trim_end().to_owned();
                line.clear();
            }
            read = stdin.read_until(b'\n', &mut input), if !we_closed => {
                if read? == 0 {
                    // Half-close: the server answers what it got, says bye and closes.
                    we_closed = true;
                    to_server.shutdown().await?;
                    continue;
                }
                if !input.ends_with(b"\n") {
                    input.push(b'\n');
                }
                if is_quit(&input, args.json) {
                    we_closed = true;
                }
                if let Some(user) = login_without_password(&input, args.json).filter(|_| at_terminal) {
                    let password = crate::login::ask_password(&user)?;
                    input = format!("/login {user} {password}\n").into_bytes();
                }
                to_server.write_all(&input).await?;
                input.clear();
            }
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
    match Goodbye::parse(&last_line) {
        Some(Goodbye {
            error: true,
            reason,
        }) => {
            eprintln!("switchboard: {} closed the connection: {reason}", args.addr);
            Ok(ExitCode::FAILURE)
        }
        Some(_) => Ok(ExitCode::SUCCESS),
        None if we_closed => Ok(ExitCode::SUCCESS),
        None => {
            eprintln!("switchboard: {} closed the connection", args.addr);
            Ok(ExitCode::FAILURE)
        }
    }
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
