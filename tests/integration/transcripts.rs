//! The transcripts in docs/protocol.md are what a real server says: each
//! labelled one (`alice ← ...`, `json → ...`) is played against the real
//! binary, line by line, and every line a client is shown receiving must
//! be the next line it receives. So a change to what the server says
//! fails here until the documentation says it too.
//!
//! Guest numbers are compared by the order they first appear in, so each
//! transcript runs on a server of its own.

use std::collections::HashMap;

use crate::common;

use common::*;
use switchboard::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One step of a transcript.
#[derive(Debug)]
enum Step {
    /// The client sends the line.
    Sends(String, String),
    /// The client receives the line next.
    Receives(String, String),
    /// The server closes the client's connection.
    Closed(String),
    /// A raw client sends these bytes (`raw1 → 74 65 ...`).
    SendsBytes(String, Vec<u8>),
    /// A raw client receives these bytes next.
    ReceivesBytes(String, Vec<u8>),
    /// The client connects here (`(raw1 connects...)`), not at the start.
    Connects(String),
    /// The client closes its connection (`(raw1 closes its connection)`).
    Leaves(String),
}

/// The bytes of a raw line: hex pairs up to the two spaces before its
/// rendering (`74 65 0a        te\n`).
fn hex_bytes(dump: &str) -> Option<Vec<u8>> {
    let dump = dump.split("  ").next()?;
    dump.split(' ')
        .map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect()
}

/// The labelled transcripts of a Markdown document: fenced blocks whose
/// lines are all `LABEL → LINE`, `LABEL ← LINE` or `LABEL (connection
/// closed by the server)`, with the line number each starts at.
fn transcripts(markdown: &str) -> Vec<(usize, Vec<Step>)> {
    let mut found = Vec::new();
    let mut block: Option<(usize, Vec<&str>)> = None;
    for (number, line) in markdown.lines().enumerate() {
        if line.starts_with("```") {
            match block.take() {
                Some((start, lines)) => {
                    if let Some(steps) = steps(&lines) {
                        found.push((start, steps));
                    }
                }
                None => block = Some((number + 1, Vec::new())),
            }
        } else if let Some((_, lines)) = &mut block {
            lines.push(line);
        }
    }
    found
}

/// The steps of a block, if every line of it is one.
fn steps(lines: &[&str]) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for line in lines {
        // `      (raw1 connects: it receives nothing)`, `(raw1 closes its
        // connection)`: what a client does that is not a line.
        if let Some(event) = line.trim_start().strip_prefix('(') {
            let (label, what) = event.split_once(' ')?;
            let step = match what {
                what if what.starts_with("connects") => Step::Connects(label.into()),
                what if what.starts_with("closes its connection") => Step::Leaves(label.into()),
                _ => return None,
            };
            steps.push(step);
            continue;
        }
        // An unlabelled line is the one client of a block ("some more
        // answers from the same server"), past its welcome.
        let line = match line.starts_with("→ ") || line.starts_with("← ") {
            true => format!("you {line}"),
            false => line.to_string(),
        };
        let (label, rest) = line.split_once(' ')?;
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let rest = rest.trim_start();
        let raw = label.starts_with("raw");
        let step = if let Some(sent) = rest.strip_prefix("→ ").filter(|_| raw) {
            Step::SendsBytes(label.into(), hex_bytes(sent)?)
        } else if let Some(got) = rest.strip_prefix("← ").filter(|_| raw) {
            Step::ReceivesBytes(label.into(), hex_bytes(got)?)
        } else if let Some(sent) = rest.strip_prefix("→ ") {
            Step::Sends(label.into(), sent.into())
        } else if let Some(got) = rest.strip_prefix("← ") {
            Step::Receives(label.into(), got.into())
        } else if rest == "(connection closed by the server)" {
            Step::Closed(label.into())
        } else {
            return None;
        };
        steps.push(step);
    }
    (!steps.is_empty()).then_some(steps)
}

impl Step {
    fn label(&self) -> &str {
        match self {
            Step::Sends(label, _)
            | Step::Receives(label, _)
            | Step::Closed(label)
            | Step::SendsBytes(label, _)
            | Step::ReceivesBytes(label, _)
            | Step::Connects(label)
            | Step::Leaves(label) => label,
        }
    }
}

/// `guest-N` written as the order it first appeared in, in a transcript or
/// in what the server said.
#[derive(Default)]
struct Guests(HashMap<String, usize>);

impl Guests {
    fn normalize(&mut self, line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("guest-") {
            out.push_str(&rest[..at]);
            let digits: String = rest[at + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.is_empty() {
                out.push_str("guest-");
                rest = &rest[at + 6..];
                continue;
            }
            let next = self.0.len() + 1;
            let n = *self.0.entry(digits.clone()).or_insert(next);
            out.push_str(&format!("guest-#{n}"));
            rest = &rest[at + 6 + digits.len()..];
        }
        out.push_str(rest);
        out
    }

    /// A line written with `guest-#N` (see `normalize`) with the names
    /// these guests have here.
    fn named(&self, normalized: &str) -> String {
        let mut line = normalized.to_owned();
        for (digits, n) in &self.0 {
            line = line.replace(&format!("guest-#{n}\""), &format!("guest-{digits}\""));
            line = line.replace(&format!("guest-#{n} "), &format!("guest-{digits} "));
            if line.ends_with(&format!("guest-#{n}")) {
                let cut = line.len() - format!("guest-#{n}").len();
                line = format!("{}guest-{digits}", &line[..cut]);
            }
        }
        line
    }
}

/// Plays `steps` against a fresh server started with `options`: `json` is
/// a client of its JSON listener, and so is `you` when its first line is
/// JSON; every other label one of its text listener. A client whose first
/// step is not something it receives has read its welcome already.
async fn play(start: usize, steps: &[Step], options: &[&str]) {
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", "json://127.0.0.1:0"];
    args.extend_from_slice(options);
    let server = BinaryServer::start(&args).await;
    let mut clients: HashMap<String, Client> = HashMap::new();
    let mut raws: HashMap<String, TcpStream> = HashMap::new();
    let (mut documented, mut served) = (Guests::default(), Guests::default());
    let connect = |label: &str, step: &Step| {
        let json = label == "json"
            || matches!(step, Step::Sends(_, line) if label == "you" && line.starts_with('{'));
        within(
            "connecting",
            Client::connect(server.addr(usize::from(json))),
        )
    };
    // A client whose first line is its welcome connects there; the others
    // (which have read their welcome already) are there from the start, in
    // the order they first appear. Raw clients connect where the
    // transcript says.
    let mut seen: Vec<&str> = Vec::new();
    for step in steps {
        let label = step.label();
        if seen.contains(&label) {
            continue;
        }
        seen.push(label);
        if matches!(step, Step::Sends(..) | Step::Closed(_)) {
            let mut client = connect(label, step).await.expect("connects");
            let welcome = within("the welcome", client.next_line()).await.unwrap();
            served.normalize(welcome.as_deref().unwrap_or_default());
            clients.insert(label.to_owned(), client);
        }
    }
    for (i, step) in steps.iter().enumerate() {
        let where_ = format!(
            "docs/protocol.md, the transcript at line {start}, step {}",
            i + 1
        );
        let label = step.label();
        match step {
            Step::Connects(_) => {
                let raw = within(
                    "a raw client connecting",
                    TcpStream::connect(server.addr(2)),
                )
                .await
                .expect("connects");
                raws.insert(label.to_owned(), raw);
                continue;
            }
            Step::Leaves(_) => {
                let mut raw = raws.remove(label).expect("a raw client");
                raw.shutdown().await.unwrap();
                continue;
            }
            Step::SendsBytes(_, bytes) => {
                raws.get_mut(label).unwrap().write_all(bytes).await.unwrap();
                continue;
            }
            Step::ReceivesBytes(_, expected) => {
                let raw = raws.get_mut(label).unwrap();
                let mut got = vec![0; expected.len()];
                within(
                    &format!("{where_}: {label} ← {expected:02x?}"),
                    raw.read_exact(&mut got),
                )
                .await
                .unwrap();
                assert_eq!(&got, expected, "{where_}: {label}");
                continue;
            }
            _ => {}
        }
        if !clients.contains_key(label) {
            let client = connect(label, step).await.expect("connects");
            clients.insert(label.to_owned(), client);
        }
        let client = clients.get_mut(label).unwrap();
        match step {
            // A guest's name in what is sent is the name that guest has
            // on this server.
            Step::Sends(_, line) => {
                let line = served.named(&documented.normalize(line));
                client.send_line(line).await.unwrap()
            }
            Step::Receives(_, expected) => {
                let got = within(
                    &format!("{where_}: {label} ← {expected}"),
                    client.next_line(),
                )
                .await
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("{where_}: {label}'s connection closed; expected {expected}")
                });
                assert_eq!(
                    served.normalize(&got),
                    documented.normalize(expected),
                    "{where_}: {label} received {got:?}"
                );
            }
            Step::Closed(_) => {
                let rest = within(&format!("{where_}: {label}'s close"), client.next_line())
                    .await
                    .unwrap();
                assert_eq!(
                    rest, None,
                    "{where_}: {label} received more before the close"
                );
            }
            _ => unreachable!("raw steps are played above"),
        }
    }
}

#[tokio::test]
async fn every_transcript_in_the_protocol_document_is_what_a_real_server_says() {
    let markdown = include_str!("../../docs/protocol.md");
    let found = transcripts(markdown);
    // The text, JSON and mixed transcripts at least; a block that stops
    // parsing would drop out of this list unnoticed otherwise.
    // Those of text, JSON and raw clients (the WebSocket one shows frames
    // and a client of /ws?mode=raw, and is not played yet).
    let playable: Vec<&(usize, Vec<Step>)> = found
        .iter()
        .filter(|(_, steps)| {
            steps.iter().all(|step| {
                [
                    "alice", "bob", "text", "json", "a", "b", "you", "raw1", "raw2",
                ]
                .contains(&step.label())
            })
        })
        .collect();
    // A block that stopped parsing would drop out unnoticed: the text, the
    // JSON, the legacy and the two "more answers" transcripts at least.
    assert!(playable.len() >= 5, "{} transcripts found", playable.len());
    assert!(
        playable
            .iter()
            .any(|(_, steps)| steps.iter().any(|s| matches!(s, Step::SendsBytes(..)))),
        "the raw transcript is not among them"
    );
    for (start, steps) in playable {
        // The legacy client's transcript is of `--welcome connect --ack ok`.
        let legacy = steps
            .iter()
            .any(|step| matches!(step, Step::Receives(_, line) if line == "connect"));
        let raw = steps.iter().any(|step| step.label().starts_with("raw"));
        let options: &[&str] = if legacy {
            &["--welcome", "connect", "--ack", "ok"]
        } else if raw {
            // The raw transcript's devices come to #devices.
            &["--listen", "raw://127.0.0.1:0?room=devices"]
        } else {
            &[]
        };
        play(*start, steps, options).await;
    }
}

/// One terminal of the README: what its user types, and what it shows.
#[derive(Debug, Clone)]
enum Shown {
    Types(String),
    Reads(String),
}

/// The README's `$ switchboard connect` terminals, in order: each line the
/// server sends starts with `* ` or `[`; the rest is what the user types.
fn readme_terminals(markdown: &str) -> Vec<Vec<Shown>> {
    let mut terminals = Vec::new();
    let mut current: Option<Vec<Shown>> = None;
    for line in markdown.lines() {
        if line.starts_with("```") {
            if let Some(terminal) = current.take() {
                terminals.push(terminal);
            }
            continue;
        }
        if line.starts_with("$ switchboard connect 127.0.0.1:12345") {
            current = Some(Vec::new());
            continue;
        }
        if let Some(terminal) = &mut current {
            let shown = match line.starts_with("* ") || line.starts_with('[') {
                true => Shown::Reads(line.to_owned()),
                false => Shown::Types(line.to_owned()),
            };
            terminal.push(shown);
        }
    }
    terminals
}

/// Plays one terminal: each line it shows is the next line its client
/// receives, each it types is sent. `first_answer` is told once the user's
/// first typed line has been answered.
async fn play_terminal(
    who: &str,
    client: &mut Client,
    terminal: &[Shown],
    mut first_answer: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut typed = false;
    for (i, shown) in terminal.iter().enumerate() {
        let where_ = format!("README.md, {who}'s terminal, line {}", i + 2);
        match shown {
            Shown::Types(line) => {
                client.send_line(line).await.unwrap();
                typed = true;
            }
            Shown::Reads(expected) => {
                let got = within(&format!("{where_}: {expected}"), client.next_line())
                    .await
                    .unwrap();
                assert_eq!(got.as_deref(), Some(expected.as_str()), "{where_}");
                if typed {
                    if let Some(tell) = first_answer.take() {
                        let _ = tell.send(());
                    }
                }
            }
        }
    }
}

/// The README's first example, two people at `switchboard connect`, is
/// what a real server shows them: the second terminal connects once the
/// first has its name, and each types what it types after what it was
/// shown above it.
#[tokio::test]
async fn the_readmes_two_terminals_are_what_a_real_server_shows() {
    let terminals = readme_terminals(include_str!("../../README.md"));
    assert_eq!(terminals.len(), 2, "{terminals:?}");
    let server = BinaryServer::start(&["--listen", "127.0.0.1:0"]).await;
    let (named, has_name) = tokio::sync::oneshot::channel();
    let addr = server.addr(0);
    let first = async {
        let mut alice = Client::connect(addr).await.unwrap();
        play_terminal("the first", &mut alice, &terminals[0], Some(named)).await;
    };
    let second = async {
        has_name.await.unwrap();
        let mut bob = Client::connect(addr).await.unwrap();
        play_terminal("the second", &mut bob, &terminals[1], None).await;
    };
    tokio::join!(first, second);
}

/// One step of docs/protocol.md's WebSocket transcript: `nc` is a text
/// client, `web` a browser on `/ws`, `dev` a client of `/ws?mode=raw`.
#[derive(Debug)]
enum WsStep {
    /// `nc → line` / `nc ← line`.
    Text { sends: bool, line: String },
    /// `web → {...}` (one frame, on one line or several) / `web ← {...}`.
    Json { sends: bool, frame: String },
    /// `web ← close 1000 "client quit"`.
    Close { code: u16, reason: String },
    /// `dev → binary 01 03` / `dev ← binary 72 65`.
    Binary { sends: bool, bytes: Vec<u8> },
    /// `(dev connects to /ws?mode=raw&room=lobby)`.
    DevConnects(String),
}

/// The WebSocket transcript: the block whose clients are `nc`, `web` and
/// `dev`. A frame shortened in the text (`xxxx...(70,000 bytes)...xxxx`)
/// is played at its full length.
fn websocket_transcript(markdown: &str) -> Vec<WsStep> {
    let (_, after) = markdown
        .split_once("\n```\nweb  ← ")
        .expect("docs/protocol.md has the WebSocket transcript");
    let block = format!("web  ← {}", after.split("\n```").next().unwrap());
    let mut steps = Vec::new();
    let mut lines = block.lines();
    while let Some(line) = lines.next() {
        if let Some(path) = line.trim().strip_prefix("(dev connects to ") {
            steps.push(WsStep::DevConnects(path.trim_end_matches(')').to_owned()));
            continue;
        }
        let (label, rest) = line.split_once(' ').expect("a labelled line");
        let rest = rest.trim_start();
        let (sends, what) = match (rest.strip_prefix("→ "), rest.strip_prefix("← ")) {
            (Some(what), _) => (true, what),
            (_, Some(what)) => (false, what),
            _ => panic!("not a step: {line}"),
        };
        let step = match label {
            "nc" => WsStep::Text {
                sends,
                line: what.to_owned(),
            },
            "dev" => WsStep::Binary {
                sends,
                bytes: what
                    .strip_prefix("binary ")
                    .and_then(hex_bytes)
                    .expect("a binary frame"),
            },
            "web" if what.starts_with("close ") => {
                let (code, reason) = what["close ".len()..].split_once(' ').unwrap();
                WsStep::Close {
                    code: code.parse().unwrap(),
                    reason: reason.trim_matches('"').to_owned(),
                }
            }
            "web" => {
                let mut frame = what.to_owned();
                // A frame written over several lines ends with its `}`.
                if frame == "{" {
                    for more in lines.by_ref() {
                        frame.push('\n');
                        frame.push_str(more);
                        if more == "}" {
                            break;
                        }
                    }
                }
                let frame = frame.replace("xxxx...(70,000 bytes)...xxxx", &"x".repeat(70_000));
                WsStep::Json { sends, frame }
            }
            other => panic!("unknown client {other} in: {line}"),
        };
        steps.push(step);
    }
    steps
}

/// docs/protocol.md's WebSocket transcript, played against the real
/// binary: every line and frame a client is shown receiving is the next
/// it receives.
#[tokio::test]
async fn the_websocket_transcript_is_what_a_real_server_says() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;
    /// The next frame that is not a ping or pong.
    async fn next_frame(ws: &mut Ws, what: &str) -> Message {
        within(what, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(message)) => return message,
                    other => panic!("{what}: {other:?}"),
                }
            }
        })
        .await
    }

    let steps = websocket_transcript(include_str!("../../docs/protocol.md"));
    assert!(steps.len() >= 25, "{steps:?}");
    let server = BinaryServer::start(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]).await;
    let (text_addr, http_addr) = (server.addr(0), server.addr(1));
    let (mut documented, mut served) = (Guests::default(), Guests::default());
    let mut nc: Option<Client> = None;
    let mut web: Option<Ws> = None;
    let mut dev: Option<Ws> = None;
    for (i, step) in steps.iter().enumerate() {
        let where_ = format!("docs/protocol.md, the WebSocket transcript, step {}", i + 1);
        match step {
            WsStep::Text { sends, line } => {
                if nc.is_none() {
                    nc = Some(Client::connect(text_addr).await.unwrap());
                }
                let nc = nc.as_mut().unwrap();
                if *sends {
                    nc.send_line(served.named(&documented.normalize(line)))
                        .await
                        .unwrap();
                } else {
                    let got = within(&where_, nc.next_line()).await.unwrap().unwrap();
                    assert_eq!(
                        served.normalize(&got),
                        documented.normalize(line),
                        "{where_}: nc received {got:?}"
                    );
                }
            }
            WsStep::Json { sends, frame } => {
                if web.is_none() {
                    let url = format!("ws://{http_addr}/ws");
                    web = Some(tokio_tungstenite::connect_async(url).await.unwrap().0);
                }
                let web = web.as_mut().unwrap();
                if *sends {
                    let frame = served.named(&documented.normalize(frame));
                    web.send(Message::text(frame)).await.unwrap();
                } else {
                    let got = next_frame(web, &where_).await;
                    let got = got.into_text().unwrap().to_string();
                    assert_eq!(
                        served.normalize(&got),
                        documented.normalize(frame),
                        "{where_}: web received {got:?}"
                    );
                }
            }
            WsStep::Close { code, reason } => {
                let got = next_frame(web.as_mut().unwrap(), &where_).await;
                let Message::Close(Some(close)) = got else {
                    panic!("{where_}: expected a close frame, got {got:?}");
                };
                assert_eq!(u16::from(close.code), *code, "{where_}");
                assert_eq!(close.reason.as_str(), reason, "{where_}");
            }
            WsStep::DevConnects(path) => {
                let url = format!("ws://{http_addr}{path}");
                dev = Some(tokio_tungstenite::connect_async(url).await.unwrap().0);
            }
            WsStep::Binary { sends, bytes } => {
                let dev = dev.as_mut().expect("dev connected");
                if *sends {
                    dev.send(Message::binary(bytes.clone())).await.unwrap();
                } else {
                    let got = next_frame(dev, &where_).await;
                    assert_eq!(got.into_data().to_vec(), *bytes, "{where_}");
                }
            }
        }
    }
}
