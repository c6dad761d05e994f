//! A newcomer's first hour: the seeds' clients and the README's paths, with
//! their timing (no final newline, a pause, a close without reading).

use std::time::Duration;

use crate::common;

use common::*;
use switchboard::Client;
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
async fn server_and_listener(args: &[&str], to: usize) -> (BinaryServer, Client, std::net::SocketAddr) {
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
        &["--listen", "127.0.0.1:0", "--welcome", "connect", "--ack", "received"],
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
