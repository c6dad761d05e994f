//! `switchboard send`: a one-shot sender for scripts. It sends, hangs up,
//! and reports what the server refused.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use switchboard::config::Seconds;
use switchboard::{Client, Goodbye, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The server, HOST:PORT.
    addr: String,

    /// The message (words are joined with spaces). Without it, every line of
    /// stdin is sent as it comes, so `tail -f log | switchboard send ...` works.
    text: Vec<String>,

    /// Join ROOM first and send there.
    #[arg(long, value_name = "ROOM")]
    room: Option<String>,

    /// Send to the client named NAME alone.
    #[arg(long, value_name = "NAME")]
    to: Option<String>,

    /// Take the name NAME first.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// The listener speaks JSON.
    #[arg(long)]
    json: bool,

    /// How long to wait for the server to answer.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    timeout: Seconds,

    #[command(flatten)]
    tls: crate::tls::TlsArgs,
}

/// What the server said, as far as `send` cares.
enum Heard {
    Pong,
    Error(String),
    Other,
}

impl SendArgs {
    fn setup(&self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        if let Some(name) = &self.name {
            lines.push(self.request(
                json!({"type": "nick", "name": name}),
                format!("/nick {name}"),
            ));
        }
        if let Some(room) = &self.room {
            lines.push(self.request(
                json!({"type": "join", "room": room}),
                format!("/join {room}"),
            ));
        }
        lines
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

    fn hear(&self, line: &str) -> Heard {
        if let Some(goodbye) = Goodbye::parse(line) {
            return if goodbye.error {
                Heard::Error(goodbye.reason)
            } else {
                Heard::Other
            };
        }
        if self.json {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            match value["type"].as_str() {
                Some("pong") => Heard::Pong,
                Some("error") => Heard::Error(value["message"].as_str().unwrap_or(line).to_owned()),
                _ => Heard::Other,
            }
        } else {
            match ServerLine::parse(line) {
                ServerLine::Notice(text) if text == "pong" => Heard::Pong,
                ServerLine::Error(text) => Heard::Error(text),
                _ => Heard::Other,
            }
        }
    }
}

pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let args = Arc::new(args);
    let client = Client::connect_any(&args.addr, args.tls.client_tls()?.as_ref()).await?;
    let (mut from_server, mut to_server) = client.into_split();

    // Everything the server says is read as it comes: errors go to stderr
    // at once, a pong confirms the set-up.
    let errors = Arc::new(AtomicUsize::new(0));
    let (pong_tx, mut pong_rx) = mpsc::channel(1);
    let listener = tokio::spawn({
        let (args, errors) = (args.clone(), errors.clone());
        async move {
            let mut line = Vec::new();
            while from_server.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line);
                match args.hear(text.trim_end()) {
                    Heard::Pong => {
                        let _ = pong_tx.try_send(());
                    }
                    Heard::Error(message) => {
                        eprintln!("switchboard: {}: {message}", args.addr);
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                    Heard::Other => {}
                }
                line.clear();
            }
        }
    });

    let setup = args.setup();
    if !setup.is_empty() {
        for line in setup {
            to_server.write_all(&line).await?;
        }
        to_server
            .write_all(&args.request(json!({"type": "ping"}), "/ping".into()))
            .await?;
        let confirmed = tokio::time::timeout(args.timeout.0, pong_rx.recv()).await;
        if errors.load(Ordering::SeqCst) > 0 {
            return Ok(ExitCode::FAILURE);
        }
        match confirmed {
            Ok(Some(())) => {}
            Ok(None) => anyhow::bail!(
                "{} closed the connection before the set-up was confirmed",
                args.addr
            ),
            Err(_) => anyhow::bail!("{} did not answer within {:?}", args.addr, args.timeout.0),
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

    // Hang up our side; the server handles what it got, answers, and closes.
    to_server.shutdown().await?;
    let _ = tokio::time::timeout(args.timeout.0, listener).await;
    if errors.load(Ordering::SeqCst) > 0 {
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
