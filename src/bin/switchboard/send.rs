//! `switchboard send`: a one-shot sender for scripts. It sends, asks the
//! server to confirm that it took everything (a ping after the last line),
//! hangs up, and exits 0 only then; otherwise it says why, on stderr.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use switchboard::config::Seconds;
use switchboard::{Client, Goodbye, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The server: HOST:PORT, a bare PORT (this machine) or a bare HOST (port 12345).
    #[arg(value_parser = crate::server_address)]
    addr: String,

    /// The message (words are joined with spaces). Without it, every line of
    /// stdin is sent as it comes, so `tail -f log | switchboard send ...` works.
    text: Vec<String>,

    /// Arrive in ROOM (instead of the listener's) and send there: the client's hello, so only ROOM hears of it.
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,

    /// Send to the client named NAME alone.
    #[arg(long, value_name = "NAME")]
    to: Option<String>,

    /// Arrive named NAME (the client's hello: its arrival is announced by that name alone).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The listener speaks JSON.
    #[arg(long, conflicts_with = "raw")]
    json: bool,

    /// The listener is raw (bytes, no commands): send the message, or stdin, as bytes exactly (no newline added). A raw listener answers nothing, so exit 0 means that the server read every byte and closed the connection, not that anyone received them.
    #[arg(long, conflicts_with_all = ["room", "to", "name", "user", "token_file"])]
    raw: bool,

    /// The listener is UDP (udp://): send the message, or each line of
    /// stdin, as one datagram, bytes exactly (no newline added). Nothing
    /// confirms a datagram: exit 0 means it was sent, not that it arrived.
    #[arg(long, conflicts_with_all = ["json", "raw", "room", "to", "name", "user", "token_file"])]
    udp: bool,

    /// How long to wait for the server to answer.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: Seconds,

    #[command(flatten)]
    tls: crate::tls::TlsArgs,

    #[command(flatten)]
    login: crate::login::LoginArgs,
}

/// What the server said, as far as `send` cares.
enum Heard {
    /// The answer to a ping: everything sent before it was taken.
    Pong,
    /// A request was refused, or the connection closed with an error.
    Error(String),
    /// The listener is not what the flags say: this is what to do.
    WrongListener(String),
    /// Reading from the server failed.
    Lost(String),
}

impl SendArgs {
    /// A hello with `--name` and `--room`, if either is given: the client
    /// arrives named, where it goes, announced only there.
    fn setup(&self) -> Vec<Vec<u8>> {
        hello(self.name.as_deref(), self.room.as_deref(), self.json)
            .into_iter()
            .collect()
    }

    fn message(&self, text: &str) -> Vec<u8> {
        match &self.to {
            Some(to) => self.request(
                json!({"type": "direct", "to": to, "text": text}),
                format!("/msg {to} {text}"),
            ),
            None if text.starts_with('/') => {
                self.request(json!({"type": "say", "text": text}), format!("/{text}"))
            }
            None => self.request(json!({"type": "say", "text": text}), text.to_owned()),
        }
    }

    fn request(&self, json: serde_json::Value, text: String) -> Vec<u8> {
        let mut line = if self.json {
            json.to_string().into_bytes()
        } else {
            text.into_bytes()
        };
        line.push(b'\n');
        line
    }

    /// What `line` (without its line end) means to `send`, if anything.
    fn hear(&self, line: &[u8]) -> Option<Heard> {
        if let Some(advice) = wrong_listener(line, self.json) {
            return Some(Heard::WrongListener(advice));
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if let Some(goodbye) = Goodbye::parse(line) {
            return goodbye.error.then_some(Heard::Error(goodbye.reason));
        }
        if self.json {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            match value["type"].as_str() {
                Some("pong") => Some(Heard::Pong),
                Some("error") => Some(Heard::Error(
                    value["message"].as_str().unwrap_or(line).to_owned(),
                )),
                _ => None,
            }
        } else {
            match ServerLine::parse(line) {
                ServerLine::Notice(text) if text == "pong" => Some(Heard::Pong),
                ServerLine::Error(text) => Some(Heard::Error(text)),
                _ => None,
            }
        }
    }
}

/// The hello line that names a client and picks its room as it arrives
/// (`/hello name=NAME room=ROOM`), if there is anything to say.
pub(crate) fn hello(name: Option<&str>, room: Option<&str>, json: bool) -> Option<Vec<u8>> {
    if name.is_none() && room.is_none() {
        return None;
    }
    let mut line = if json {
        json!({"type": "hello", "name": name, "room": room})
            .to_string()
            .into_bytes()
    } else {
        let mut text = "/hello".to_owned();
        if let Some(name) = name {
            text.push_str(&format!(" name={name}"));
        }
        if let Some(room) = room {
            text.push_str(&format!(" room={room}"));
        }
        text.into_bytes()
    };
    line.push(b'\n');
    Some(line)
}

/// Advice, when what the server sent shows that it is another kind of
/// listener than the flags say.
pub(crate) fn wrong_listener(line: &[u8], json: bool) -> Option<String> {
    // A TLS record: a handshake or an alert, version 3.x.
    if let [0x15 | 0x16, 0x03, ..] = line {
        return Some("this looks like a TLS listener: use --tls (with --ca FILE for a self-signed certificate)".into());
    }
    let text = String::from_utf8_lossy(line);
    match json {
        false if text.starts_with("{\"type\":") => {
            Some("this looks like a JSON listener: use --json".into())
        }
        true if text.starts_with("* ") || text.starts_with("! ") => {
            Some("this looks like a text listener: drop --json".into())
        }
        _ => None,
    }
}

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.udp {
        return send_datagrams(&args).await;
    }
    let args = Arc::new(args);
    let credentials = args.login.credentials()?;
    let client = Client::connect_any(&args.addr, args.tls.client_tls()?.as_ref()).await?;
    let (mut from_server, mut to_server) = client.into_split();
    let wait = args.timeout.0;

    if args.raw {
        // Bytes as they are; the server closes once it has read our end.
        if args.text.is_empty() {
            tokio::io::copy(&mut tokio::io::stdin(), &mut to_server)
                .await
                .context("cannot send stdin")?;
        } else {
            to_server.write_all(args.text.join(" ").as_bytes()).await?;
        }
        to_server.shutdown().await?;
        let mut rest = Vec::new();
        return match tokio::time::timeout(wait, from_server.read_to_end(&mut rest)).await {
            Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
            Ok(Err(error)) => anyhow::bail!("{}: {error}", args.addr),
            Err(_) => anyhow::bail!(
                "{} did not close the connection within {wait:?} after reading what was sent",
                args.addr
            ),
        };
    }

    // Everything the server says is read as it comes: refusals go to
    // stderr at once, pongs and a wrong kind of listener to the sender.
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    tokio::spawn({
        let args = args.clone();
        async move {
            let mut line = Vec::new();
            loop {
                match from_server.read_until(b'\n', &mut line).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => {
                        let _ = heard_tx.send(Heard::Lost(error.to_string()));
                        break;
                    }
                }
                let end = line.strip_suffix(b"\n").unwrap_or(&line);
                match args.hear(end) {
                    Some(Heard::Error(message)) => {
                        eprintln!("switchboard: {}: {message}", args.addr);
                        let _ = heard_tx.send(Heard::Error(message));
                    }
                    Some(heard) => {
                        let _ = heard_tx.send(heard);
                    }
                    None => {}
                }
                line.clear();
            }
        }
    });

    // Logging in, a name and a room first, confirmed before anything is
    // said: a refusal (wrong password, a taken name, a forbidden room)
    // stops here.
    let mut setup: Vec<Vec<u8>> = credentials.iter().map(|c| c.request(args.json)).collect();
    setup.extend(args.setup());
    if !setup.is_empty() {
        for line in setup {
            to_server.write_all(&line).await?;
        }
        if confirm(&args, &mut to_server, &mut heard, wait).await? > 0 {
            return Ok(ExitCode::FAILURE);
        }
    }

    if args.text.is_empty() {
        let mut stdin = BufReader::new(tokio::io::stdin());
        let mut line = Vec::new();
        while stdin
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read stdin")?
            > 0
        {
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if !text.is_empty() {
                to_server.write_all(&args.message(text)).await?;
            }
            line.clear();
        }
    } else {
        let text = args.text.join(" ");
        for line in text.lines().filter(|line| !line.is_empty()) {
            to_server.write_all(&args.message(line)).await?;
        }
    }

    // The pong after the last line says the server took every line before
    // it; a refusal of any of them came before the pong.
    let refused = confirm(&args, &mut to_server, &mut heard, wait).await?;
    let _ = to_server.shutdown().await;
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Sends a ping and waits for its pong; returns how many refusals came
/// first (each already said on stderr). Fails if the server closes, is
/// another kind of listener, or says nothing in time.
/// `send --udp`: the message, or each line of stdin, as a datagram.
async fn send_datagrams(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let target = tokio::net::lookup_host(&args.addr)
        .await
        .with_context(|| format!("cannot resolve {}", args.addr))?
        .next()
        .with_context(|| format!("{} has no address", args.addr))?;
    let local = if target.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    if !args.text.is_empty() {
        socket.send(args.text.join(" ").as_bytes()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        socket
            .send(line.as_bytes())
            .await
            .with_context(|| format!("cannot send to {target}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn confirm(
    args: &SendArgs,
    to_server: &mut (impl AsyncWriteExt + Unpin),
    heard: &mut mpsc::UnboundedReceiver<Heard>,
    wait: Duration,
) -> anyhow::Result<usize> {
    to_server
        .write_all(&args.request(json!({"type": "ping"}), "/ping".into()))
        .await
        .with_context(|| format!("cannot send to {}", args.addr))?;
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, heard.recv()).await {
            Ok(Some(Heard::Pong)) => return Ok(refused),
            Ok(Some(Heard::Error(_))) => refused += 1,
            Ok(Some(Heard::WrongListener(advice))) => anyhow::bail!("{}: {advice}", args.addr),
            Ok(Some(Heard::Lost(error))) => anyhow::bail!(
                "the connection to {} was lost before it confirmed what was sent: {error}",
                args.addr
            ),
            // Closed with an error, already said.
            Ok(None) if refused > 0 => return Ok(refused),
            Ok(None) => anyhow::bail!(
                "{} closed the connection before confirming what was sent",
                args.addr
            ),
            Err(_) => anyhow::bail!(
                "{} did not confirm what was sent within {wait:?}: a raw listener confirms nothing (use --raw), a TLS one waits for --tls",
                args.addr
            ),
        }
    }
}
