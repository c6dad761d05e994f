//! A newcomer's first hour: the seeds' clients and the README's paths, with
//! their timing (no final newline, a pause, a close without reading).

use std::time::Duration;

use crate::common;

use common::*;
use switchboard::{Client, ServerLine};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How many times each one-shot client is tried: its loss was a race.
const RUNS: usize = 10;

/// The pause the seed's client makes between its write and its close, as
/// a person's script or a debug assistant does: long enough for the server
/// to have read the line and greeted the client.
const PAUSE: Duration = Duration::from_millis(300);

/// How the one-shot client's close reaches the server.
#[derive(Clone, Copy)]
enum Close {
    /// As the seed's client closes: the server's first words are there,
    /// unread, so the kernel answers the close with a reset.
    WithGreetingUnread,
    /// A reset whatever was read (SO_LINGER 0): for listeners that greet
    /// nobody (raw, `--welcome ''`), as a join notice or any reply
    /// reaching the client would make it.
    Reset,
}

/// Connects to `addr`, writes `bytes` as they are (no newline added),
/// pauses, and closes as `close` says, never reading.
async fn one_shot(addr: std::net::SocketAddr, bytes: &[u8], close: Close) {
    let mut stream = within("connecting", TcpStream::connect(addr))
        .await
        .expect("connects");
    stream.write_all(bytes).await.expect("writes");
    match close {
        Close::WithGreetingUnread => {
            let mut byte = [0u8; 1];
            within("the server's greeting to arrive", stream.peek(&mut byte))
                .await
                .expect("peek");
        }
        Close::Reset => socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .expect("linger 0"),
    }
    tokio::time::sleep(PAUSE).await;
    drop(stream);
}

/// A server started with `args`, a text client listening in #lobby on its
/// first listener, and the address of listener `to` (where the one-shot
/// client goes).
async fn server_and_listener(
    args: &[&str],
    to: usize,
) -> (BinaryServer, Client, std::net::SocketAddr) {
    let server = BinaryServer::start(args).await;
    let mut listener = within("connecting", Client::connect(server.addr(0)))
        .await
        .expect("connects");
    sync(&mut listener).await;
    let to = server.addr(to);
    (server, listener, to)
}

/// Each run of a one-shot client is heard by `listener` as `expected`, and
/// the server logs its close as the reset it was.
async fn each_run_is_heard(
    server: &mut BinaryServer,
    listener: &mut Client,
    to: std::net::SocketAddr,
    bytes: &[u8],
    close: Close,
    expected: &[&str],
) {
    for run in 1..=RUNS {
        one_shot(to, bytes, close).await;
        for expected in expected {
            let (_, _, text) = expect_message(listener).await;
            assert_eq!(&text, expected, "run {run}");
        }
        server.expect_log("reset by peer").await;
    }
}

#[tokio::test]
async fn the_seeds_one_shot_client_is_heard_though_its_last_line_has_no_newline() {
    let (mut server, mut listener, to) = server_and_listener(&["--listen", "127.0.0.1:0"], 0).await;
    each_run_is_heard(
        &mut server,
        &mut listener,
        to,
        b"Hello World",
        Close::WithGreetingUnread,
        &["Hello World"],
    )
    .await;
}

#[tokio::test]
async fn a_one_shot_client_is_heard_with_no_welcome() {
    let (mut server, mut listener, to) =
        server_and_listener(&["--listen", "127.0.0.1:0", "--welcome", ""], 0).await;
    each_run_is_heard(
        &mut server,
        &mut listener,
        to,
        b"Hello World",
        Close::Reset,
        &["Hello World"],
    )
    .await;
}

#[tokio::test]
async fn the_second_seeds_client_is_heard_with_its_greeting_and_acks_unread() {
    let (mut server, mut listener, to) = server_and_listener(
        &[
            "--listen",
            "127.0.0.1:0",
            "--welcome",
            "connect",
            "--ack",
            "received",
        ],
        0,
    )
    .await;
    each_run_is_heard(
        &mut server,
        &mut listener,
        to,
        b"first\nHello World",
        Close::WithGreetingUnread,
        &["first", "Hello World"],
    )
    .await;
}

#[tokio::test]
async fn a_json_one_shot_client_is_heard_without_a_final_newline() {
    let (mut server, mut listener, to) = server_and_listener(
        &["--listen", "127.0.0.1:0", "--listen", "json://127.0.0.1:0"],
        1,
    )
    .await;
    each_run_is_heard(
        &mut server,
        &mut listener,
        to,
        br#"{"type":"say","text":"Hello World"}"#,
        Close::WithGreetingUnread,
        &["Hello World"],
    )
    .await;
}

#[tokio::test]
async fn a_raw_one_shot_client_is_heard_when_its_close_is_a_reset() {
    // A bare raw listener relays each read as it comes; one that frames
    // by lines holds an unfinished last line, like a text listener.
    for raw in ["raw://127.0.0.1:0", "raw://127.0.0.1:0?frame=line"] {
        let (mut server, mut listener, to) =
            server_and_listener(&["--listen", "127.0.0.1:0", "--listen", raw], 1).await;
        each_run_is_heard(
            &mut server,
            &mut listener,
            to,
            b"first\nHello World",
            Close::Reset,
            &["first", "Hello World"],
        )
        .await;
    }
}

/// `switchboard send ARGS`: its exit status and what it said on stderr.
async fn send(args: &[&str]) -> (bool, String) {
    let mut all = vec!["send", "--timeout", "2s"];
    all.extend_from_slice(args);
    let output = run(&all).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The README's last line of its script example: a port nothing listens
/// on is said as the README shows it, and `send` exits non-zero.
#[tokio::test]
async fn send_to_a_port_nobody_listens_on_says_so_as_the_readme_shows() {
    let readme = include_str!("../../README.md");
    let shown = readme
        .lines()
        .find(|line| line.starts_with("switchboard: cannot connect to 127.0.0.1:9: "))
        .expect("the README shows send's error");
    let (_held, addr) = nothing_listens();
    let (ok, stderr) = send(&[&addr.to_string(), "hi"]).await;
    assert!(!ok, "send to {addr} exited 0");
    let expected = shown.replace("127.0.0.1:9", &addr.to_string());
    assert_eq!(stderr.trim_end(), expected, "{stderr}");
}

#[tokio::test]
async fn send_exits_0_only_when_the_server_took_what_it_sent() {
    let server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "json://127.0.0.1:0",
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-self-signed",
        "--listen",
        "raw://127.0.0.1:0",
    ])
    .await;
    let [text, json, tls, raw] = [0, 1, 2, 3].map(|i| server.addr(i).to_string());
    let mut listener = within("connecting", Client::connect(server.addr(0)))
        .await
        .unwrap();
    sync(&mut listener).await;

    // Delivered: 0.
    assert_eq!(send(&[&text, "Hello World"]).await, (true, String::new()));
    assert_eq!(expect_message(&mut listener).await.2, "Hello World");
    assert_eq!(
        send(&["--json", &json, "from json"]).await,
        (true, String::new())
    );
    assert_eq!(expect_message(&mut listener).await.2, "from json");

    // Not delivered: non-zero, and the reason.
    for (args, says) in [
        (
            vec![json.as_str(), "hi"],
            "this looks like a JSON listener: use --json",
        ),
        (
            vec!["--json", &text, "hi"],
            "this looks like a text listener: drop --json",
        ),
        (
            vec![&tls, "hi"],
            "this looks like a TLS listener: use --tls",
        ),
        (
            vec![&raw, "hi"],
            "a raw listener confirms nothing (use --raw)",
        ),
        (vec!["--to", "nobody-here", &text, "hi"], "nobody-here"),
        (
            vec!["--room", "bad!room", &text, "hi"],
            "a room name may hold",
        ),
    ] {
        let (ok, stderr) = send(&args).await;
        assert!(!ok, "send {args:?} exited 0");
        assert!(stderr.contains(says), "send {args:?}: {stderr}");
    }

    // --raw: bytes exactly, to a raw listener, confirmed by its close.
    let mut device = within("connecting", tokio::net::TcpStream::connect(&raw))
        .await
        .unwrap();
    assert_eq!(
        send(&["--raw", &raw, "01 bytes"]).await,
        (true, String::new())
    );
    let mut got = [0u8; 8];
    within(
        "the raw bytes",
        tokio::io::AsyncReadExt::read_exact(&mut device, &mut got),
    )
    .await
    .unwrap();
    assert_eq!(&got, b"01 bytes");
    // The text listener hears it too (after what the misdirected sends
    // left there: a JSON line to a text port is a message to the server).
    expect_line(
        &mut listener,
        "the raw bytes as text",
        |line| matches!(line, switchboard::ServerLine::Message { text, .. } if text == "01 bytes"),
    )
    .await;
}

#[tokio::test]
async fn connect_says_a_tls_listener_is_one() {
    let server = BinaryServer::start(&["--listen", "tls://127.0.0.1:0", "--tls-self-signed"]).await;
    let addr = server.addr(0).to_string();
    let mut connect = switchboard(&["connect", &addr])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = connect.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    let output = within("connect to exit", connect.wait_with_output())
        .await
        .unwrap();
    drop(stdin);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("this looks like a TLS listener: use --tls"),
        "{stderr}"
    );
    // No raw alert bytes on the terminal.
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[tokio::test]
async fn clients_take_addresses_as_serve_listen_takes_them() {
    let server = BinaryServer::start(&["--listen", "127.0.0.1:0"]).await;
    let port = server.addr(0).port().to_string();
    let mut listener = within("connecting", Client::connect(server.addr(0)))
        .await
        .unwrap();
    sync(&mut listener).await;
    // A bare port is this machine; so is `:PORT`; a host names its port.
    for addr in [
        port.clone(),
        format!(":{port}"),
        format!("localhost:{port}"),
    ] {
        assert_eq!(
            send(&[&addr, "by port"]).await,
            (true, String::new()),
            "{addr}"
        );
        assert_eq!(expect_message(&mut listener).await.2, "by port");
    }
    for (addr, says) in [
        ("localhost:http", "expected HOST:PORT"),
        ("127.0.0.1:99999", "a port from 0 to 65535"),
    ] {
        let (ok, stderr) = send(&[addr, "x"]).await;
        assert!(!ok && stderr.contains(says), "{addr}: {stderr}");
    }
}

#[tokio::test]
async fn a_bad_listener_address_says_what_is_wrong_with_an_example() {
    for (listen, says) in [
        (":21360x", "is not a port"),
        (
            "text://0.0.0.0",
            "has no port: expected IP:PORT, e.g. 0.0.0.0:12345",
        ),
        ("127.0.0.1:99999", "a port from 0 to 65535"),
        (
            "nosuchhost.invalid:80",
            "is a host name: a listener listens on an IP address",
        ),
    ] {
        let output = run(&["serve", "--listen", listen]).await;
        assert!(!output.status.success(), "{listen}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{listen}: {stderr}");
    }
    // The same from a config file, and a key misspelt in it.
    let dir = TempDir::new("first-hour");
    let file = dir.join("switchboard.toml");
    for (text, says) in [
        ("listen = \"0.0.0.0\"", "has no port"),
        ("lisen = [\"0.0.0.0:0\"]", "did you mean `listen`?"),
    ] {
        std::fs::write(&file, text).unwrap();
        let output = run(&[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--check-config",
        ])
        .await;
        assert!(!output.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
    // One listener as a string is a list of one.
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nidle-timeout = \"30m\"\n").unwrap();
    let output = run(&[
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--check-config",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("text://127.0.0.1:0"), "{stdout}");
    // Every setting, in the units it was given, welcome and ack included.
    let shows = |key: &str, value: &str| {
        stdout
            .lines()
            .any(|line| line.split_once(' ').map(|(k, v)| (k, v.trim())) == Some((key, value)))
    };
    assert!(shows("idle-timeout", "30m"), "{stdout}");
    assert!(
        shows("welcome", "the default, naming the client and /help"),
        "{stdout}"
    );
    assert!(shows("ack", "none"), "{stdout}");
    for setting in switchboard::config::Setting::ALL {
        assert!(
            stdout
                .lines()
                .any(|line| line.split(' ').next() == Some(setting.key())),
            "{} is not shown: {stdout}",
            setting.key()
        );
    }
}

#[tokio::test]
async fn a_text_heartbeat_that_reads_as_hex_is_warned_of() {
    let mut server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "raw://127.0.0.1:0?register=imei&heartbeat=FE",
    ])
    .await;
    let warning = server.expect_log("heartbeat=FE is the text").await;
    assert!(warning.contains("write heartbeat=hex:FE"), "{warning}");
    let output = run(&["device", "127.0.0.1:1", "--heartbeat", "FE"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "--heartbeat FE sends the text \"FE\"; for those bytes write --heartbeat hex:FE"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_text_client_sending_a_modbus_frame_is_told_once_where_it_belongs() {
    let server = TestServer::text().await;
    let (mut watcher, _) = join(server.text_addr()).await;
    let (mut sender, _) = join(server.text_addr()).await;
    let frame = b"\x01\x03\x00\x00\x00\x02\xc4\x0b";
    for _ in 0..2 {
        sender.send_line(frame).await.unwrap();
    }
    sender.send_line("plain text").await.unwrap();
    // Everything the sender heard up to its pong: one notice.
    sender.send_line("/ping").await.unwrap();
    let heard = within("the pong", async {
        let mut heard = Vec::new();
        loop {
            match sender.next().await.unwrap().expect("a line") {
                ServerLine::Notice(text) if text == "pong" => return heard,
                line => heard.push(line),
            }
        }
    })
    .await;
    assert!(
        matches!(&heard[..], [ServerLine::Error(text)] if text.contains("belongs on a raw listener")),
        "{heard:?}"
    );
    // Its lines went as ever.
    for _ in 0..2 {
        let (_, _, text) = expect_message(&mut watcher).await;
        assert!(text.starts_with("^A^C"), "{text}");
    }
    assert_eq!(expect_message(&mut watcher).await.2, "plain text");
    server.stop().await;
}

#[tokio::test]
async fn status_takes_its_address_before_or_after_watch_and_knows_a_tcp_listener() {
    let server = BinaryServer::start(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]).await;
    let http = server.listeners[1]
        .strip_prefix("http://")
        .expect("the HTTP listener")
        .to_owned();
    // `--watch ADDR`: the address, refreshed every 2 s.
    let mut watching = switchboard(&["status", "--watch", &http]).spawn().unwrap();
    let mut out = tokio::io::BufReader::new(watching.stdout.take().unwrap());
    let mut shown = String::new();
    within("status to show the server", async {
        while !shown.contains("clients") {
            let mut line = String::new();
            let read = tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
                .await
                .unwrap();
            assert!(read > 0, "status exited: {shown}");
            shown.push_str(&line);
        }
    })
    .await;
    watching.kill().await.unwrap();
    // Pointed at a TCP listener, it says that status talks to --http.
    let text = server.addr(0).to_string();
    let output = run(&["status", &text]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is a switchboard TCP listener") && stderr.contains("--http"),
        "{stderr}"
    );
}

/// A text client in `room` of the server at `addr`, everything before it
/// read.
async fn member_of(addr: std::net::SocketAddr, room: &str) -> Client {
    let mut client = within("connecting", Client::connect(addr)).await.unwrap();
    client.send_line(format!("/join {room}")).await.unwrap();
    expect_line(
        &mut client,
        "the join",
        |l| matches!(l, ServerLine::Notice(n) if n.starts_with("you joined")),
    )
    .await;
    client
}

#[tokio::test]
async fn a_one_shot_sender_with_a_name_and_room_is_announced_only_where_it_goes() {
    let server =
        BinaryServer::start(&["--listen", "127.0.0.1:0", "--listen", "json://127.0.0.1:0"]).await;
    let (text, json) = (server.addr(0).to_string(), server.addr(1).to_string());
    let mut lobby = member_of(server.addr(0), "lobby").await;
    let mut ops = member_of(server.addr(0), "ops").await;
    heard_until_pong(&mut lobby).await;

    for (args, name) in [
        (
            vec!["--name", "logger", "--room", "ops", &text, "disk full"],
            "logger",
        ),
        (
            vec![
                "--json",
                "--name",
                "cron",
                "--room",
                "ops",
                &json,
                "disk full",
            ],
            "cron",
        ),
    ] {
        let (ok, stderr) = send(&args).await;
        assert!(ok, "{stderr}");
        // #ops hears it arrive by its name, say its line, and go.
        for expected in [
            format!("* {name} joined #ops"),
            format!("[#ops] {name}: disk full"),
        ] {
            let line = expect_line(&mut ops, &expected, |_| true).await;
            assert_eq!(line.to_string(), expected);
        }
        let gone = expect_line(&mut ops, "its leaving", |_| true).await;
        assert!(
            gone.to_string().starts_with(&format!("* {name} left #ops")),
            "{gone}"
        );
    }
    // #lobby heard nothing of either: no joined, renamed or left.
    let heard = heard_until_pong(&mut lobby).await;
    assert!(heard.is_empty(), "the lobby heard {heard:?}");
}

#[tokio::test]
async fn a_new_client_is_announced_before_its_first_line_or_after_a_moment() {
    let server = TestServer::text().await;
    let (mut lobby, _) = join(server.text_addr()).await;
    // One that says something at once: its arrival comes first.
    let (mut talker, talker_name) = join(server.text_addr()).await;
    talker.send_line("hi").await.unwrap();
    let arrived = expect_line(&mut lobby, "the arrival", |_| true).await;
    assert_eq!(
        arrived.to_string(),
        format!("* {talker_name} joined #lobby")
    );
    assert_eq!(expect_message(&mut lobby).await.2, "hi");
    // One that says nothing (nc, a person reading the welcome): announced
    // all the same, a moment later, and it hears the room meanwhile.
    let (mut quiet, quiet_name) = join(server.text_addr()).await;
    talker.send_line("are you there?").await.unwrap();
    assert_eq!(expect_message(&mut quiet).await.2, "are you there?");
    expect_line(&mut lobby, "the quiet one's arrival", |l| {
        l.to_string() == format!("* {quiet_name} joined #lobby")
    })
    .await;
    // A hello after its arrival is /nick and /join, told as those are.
    quiet.send_line("/hello name=late room=ops").await.unwrap();
    expect_line(&mut lobby, "the rename", |l| {
        l.to_string() == format!("* {quiet_name} is now known as late")
    })
    .await;
    server.stop().await;
}
