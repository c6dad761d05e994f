//! The `switchboard` command as users run it: the real binary serving,
//! sending and connecting, checked from outside through its sockets,
//! output and exit status.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use common::{
    expect_line, expect_message, heard_until_pong, join, nothing_listens, read_to_end, run,
    switchboard, sync, within, BinaryServer,
};
use switchboard::{Client, ServerLine};
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `switchboard ARGS` with `input` piped to its stdin (then EOF).
async fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = switchboard(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    let mut stdin = child.stdin.take().unwrap();
    within("writing to the command's stdin", stdin.write_all(input))
        .await
        .expect("write stdin");
    drop(stdin);
    let what = format!("`switchboard {}` to exit", args.join(" "));
    within(&what, child.wait_with_output())
        .await
        .expect("wait for the command")
}

/// The lines a command printed to stderr.
fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines a command printed to stdout.
fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Fails the test, showing the command's output, unless it exited 0.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "expected exit status 0, got {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test, showing the command's output, if it exited 0.
fn assert_failure(output: &Output) {
    assert!(
        !output.status.success(),
        "expected a non-zero exit status\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A real server with default settings on a free port of 127.0.0.1, and
/// its text address as `send` and `connect` take it.
async fn text_server(extra: &[&str]) -> (BinaryServer, SocketAddr, String) {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = BinaryServer::start(&args).await;
    let addr = server.addr(0);
    (server, addr, addr.to_string())
}

/// Connects a client and returns it with the first line the server sent.
async fn connect_and_read_first_line(addr: SocketAddr) -> (Client, String) {
    let mut client = within("connecting", Client::connect(addr))
        .await
        .expect("connects");
    let first = within("the first line", client.next_line())
        .await
        .expect("read")
        .expect("a first line before the server closed");
    (client, first)
}

/// Asserts that, up to a ping round trip, `client` was sent no message.
async fn assert_no_message(client: &mut Client, who: &str) {
    let lines = heard_until_pong(client).await;
    let messages: Vec<&ServerLine> = lines
        .iter()
        .filter(|line| matches!(line, ServerLine::Message { .. } | ServerLine::Direct { .. }))
        .collect();
    assert!(
        messages.is_empty(),
        "{who} received messages it should not have: {messages:?}"
    );
}

/// Whether `name` is a server-assigned guest name, `guest-N`.
fn is_guest_name(name: &str) -> bool {
    name.strip_prefix("guest-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A config file in the temp directory, removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(tag: &str, contents: &str) -> TempConfig {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "switchboard-cli-{tag}-{}-{nanos}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write the config file");
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------
// switchboard send
// ---------------------------------------------------------------------------

#[tokio::test]
async fn send_delivers_one_line_to_the_room_and_exits_zero() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut listener, listener_name) = join(addr).await;

    let output = run(&["send", &addr_arg, "Hello World"]).await;
    assert_success(&output);

    let (room, from, text) = expect_message(&mut listener).await;
    assert_eq!(room, "lobby");
    assert!(
        is_guest_name(&from),
        "sender should be a guest, got {from:?}"
    );
    assert_ne!(from, listener_name);
    assert_eq!(text, "Hello World");
}

#[tokio::test]
async fn send_joins_separate_words_with_spaces() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut listener, _) = join(addr).await;

    let output = run(&["send", &addr_arg, "Hello", "World"]).await;
    assert_success(&output);

    let (_, _, text) = expect_message(&mut listener).await;
    assert_eq!(text, "Hello World");
}

#[tokio::test]
async fn send_to_a_port_where_nothing_listens_fails_with_one_line_naming_the_address() {
    let (_held, addr) = nothing_listens();
    let addr = addr.to_string();

    let output = run(&["send", &addr, "hi"]).await;
    assert_failure(&output);

    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "expected one line on stderr, got {lines:?}");
    assert!(lines[0].contains(&addr), "{lines:?}");
    assert!(lines[0].to_lowercase().contains("refused"), "{lines:?}");
}

#[tokio::test]
async fn send_with_name_and_room_reaches_that_room_and_not_the_lobby() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut device_watcher, _) = join(addr).await;
    device_watcher
        .send_line("/join devices")
        .await
        .expect("send");
    sync(&mut device_watcher).await;
    let (mut lobby, _) = join(addr).await;

    let output = run(&[
        "send", "--name", "alice", "--room", "devices", &addr_arg, "text",
    ])
    .await;
    assert_success(&output);

    let line = expect_line(&mut device_watcher, "alice's message", |l| {
        matches!(l, ServerLine::Message { .. })
    })
    .await;
    assert_eq!(line.to_string(), "[#devices] alice: text");
    assert_no_message(&mut lobby, "the lobby client").await;
}

#[tokio::test]
async fn send_to_a_named_client_delivers_a_direct_message() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut target, target_name) = join(addr).await;
    let (mut bystander, _) = join(addr).await;

    let output = run(&["send", "--to", &target_name, &addr_arg, "psst"]).await;
    assert_success(&output);

    let line = expect_line(&mut target, "a direct message", |l| {
        matches!(l, ServerLine::Direct { .. })
    })
    .await;
    let ServerLine::Direct { from, text } = line else {
        unreachable!()
    };
    assert!(
        is_guest_name(&from),
        "sender should be a guest, got {from:?}"
    );
    assert_eq!(text, "psst");
    assert_no_message(&mut bystander, "a bystander").await;
}

#[tokio::test]
async fn send_to_nobody_fails_and_says_no_client_has_that_name() {
    let (_server, _addr, addr_arg) = text_server(&[]).await;

    let output = run(&["send", "--to", "nobody", &addr_arg, "hello?"]).await;
    assert_failure(&output);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no client is named nobody"),
        "stderr: {stderr}"
    );
}

#[tokio::test]
async fn send_with_a_taken_name_fails_and_delivers_nothing() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut x, _) = join(addr).await;
    x.send_line("/nick X").await.expect("send");
    sync(&mut x).await;
    let (mut observer, _) = join(addr).await;

    let output = run(&["send", "--name", "X", &addr_arg, "should not arrive"]).await;
    assert_failure(&output);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("taken"), "stderr: {stderr}");
    assert!(stderr.contains('X'), "stderr: {stderr}");
    assert_no_message(&mut x, "the client named X").await;
    assert_no_message(&mut observer, "an observer").await;
}

#[tokio::test]
async fn send_without_text_sends_each_line_of_stdin_in_order() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut listener, _) = join(addr).await;

    let output = run_with_stdin(&["send", &addr_arg], b"one\ntwo\nthree\n").await;
    assert_success(&output);

    let mut texts = Vec::new();
    for _ in 0..3 {
        let (room, _, text) = expect_message(&mut listener).await;
        assert_eq!(room, "lobby");
        texts.push(text);
    }
    assert_eq!(texts, ["one", "two", "three"]);
    assert_no_message(&mut listener, "the listener (after three lines)").await;
}

#[tokio::test]
async fn send_delivers_text_starting_with_a_slash_literally() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut listener, _) = join(addr).await;

    let output = run(&["send", &addr_arg, "/etc/hosts"]).await;
    assert_success(&output);

    let (_, _, text) = expect_message(&mut listener).await;
    assert_eq!(text, "/etc/hosts");
}

// ---------------------------------------------------------------------------
// switchboard connect
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connect_relays_stdin_prints_the_servers_lines_and_exits_zero_at_eof() {
    let (_server, addr, addr_arg) = text_server(&[]).await;
    let (mut listener, _) = join(addr).await;

    let output = run_with_stdin(&["connect", &addr_arg], b"hello\n").await;
    assert_success(&output);

    let (room, from, text) = expect_message(&mut listener).await;
    assert_eq!((room.as_str(), text.as_str()), ("lobby", "hello"));
    let stdout = stdout_lines(&output);
    assert!(
        stdout.first().is_some_and(|l| l.starts_with("* welcome")),
        "stdout: {stdout:?}"
    );
    assert!(
        stdout[0].contains(&from),
        "the welcome names the client that spoke ({from}): {stdout:?}"
    );
}

#[tokio::test]
async fn connect_cut_off_as_idle_says_why_on_stderr_and_exits_non_zero() {
    let (_server, _addr, addr_arg) = text_server(&["--idle-timeout", "300ms"]).await;

    let mut child = switchboard(&["connect", &addr_arg])
        .stdin(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    // Held open, never written: the client stays silent.
    let stdin = child.stdin.take().unwrap();
    let output = within("connect to be cut off", child.wait_with_output())
        .await
        .expect("wait for connect");
    drop(stdin);

    assert_failure(&output);
    let lines = stderr_lines(&output);
    assert!(
        lines.iter().any(|l| l.contains("idle")),
        "stderr: {lines:?}"
    );
}

// ---------------------------------------------------------------------------
// switchboard serve
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_tells_clients_the_server_is_shutting_down_and_exits_zero() {
    let (mut server, addr, _) = text_server(&[]).await;
    let (mut client, _) = join(addr).await;

    server.terminate();

    let lines = read_to_end(&mut client).await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! disconnected: server shutting down"),
        "lines: {lines:?}"
    );
    let status = within("the server to exit", server.child.wait())
        .await
        .expect("wait for the server");
    assert!(status.success(), "server exited with {status}");
}

/// A supervisor may send SIGTERM as soon as the server says it listens.
#[tokio::test]
async fn sigterm_right_after_the_listening_line_shuts_down_gracefully() {
    let (mut server, _, _) = text_server(&[]).await;

    server.terminate();

    let status = within("the server to exit", server.child.wait())
        .await
        .expect("wait for the server");
    assert!(status.success(), "server exited with {status}");
}

#[tokio::test]
async fn legacy_welcome_and_ack_give_the_old_dialogue() {
    let (_server, addr, _) = text_server(&["--welcome", "connect", "--ack", "received"]).await;
    let (mut other, other_welcome) = connect_and_read_first_line(addr).await;
    assert_eq!(other_welcome, "connect");
    sync(&mut other).await;

    let (mut client, welcome) = connect_and_read_first_line(addr).await;
    assert_eq!(welcome, "connect");
    client.send_line("hello").await.expect("send");
    let ack = within("the ack", client.next_line())
        .await
        .expect("read")
        .expect("an ack");
    assert_eq!(ack, "received");

    let (room, _, text) = expect_message(&mut other).await;
    assert_eq!((room.as_str(), text.as_str()), ("lobby", "hello"));
}

#[tokio::test]
async fn an_empty_welcome_sends_no_welcome() {
    let (_server, addr, _) = text_server(&["--welcome", ""]).await;
    let mut client = within("connecting", Client::connect(addr))
        .await
        .expect("connects");

    client.send_line("/ping").await.expect("send");
    let first = within("the first line", client.next_line())
        .await
        .expect("read")
        .expect("a line");
    assert_eq!(first, "* pong");
}

#[tokio::test]
async fn serve_takes_settings_from_a_config_file() {
    let file = TempConfig::new(
        "file",
        "welcome = \"from-file\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let server = BinaryServer::start(&["--config", file.path()]).await;

    let (_client, first) = connect_and_read_first_line(server.addr(0)).await;
    assert_eq!(first, "from-file");
}

#[tokio::test]
async fn serve_flags_win_over_the_config_file() {
    let file = TempConfig::new(
        "flags",
        "welcome = \"from-file\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let server = BinaryServer::start(&["--config", file.path(), "--welcome", "from-flag"]).await;

    let (_client, first) = connect_and_read_first_line(server.addr(0)).await;
    assert_eq!(first, "from-flag");
}

#[tokio::test]
async fn serve_environment_wins_over_the_config_file() {
    let file = TempConfig::new(
        "env",
        "welcome = \"from-file\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let server = BinaryServer::start_with_env(
        &["--config", file.path()],
        &[("SWITCHBOARD_WELCOME", "from-env")],
    )
    .await;

    let (_client, first) = connect_and_read_first_line(server.addr(0)).await;
    assert_eq!(first, "from-env");
}

#[tokio::test]
async fn serve_flags_win_over_the_environment() {
    let server = BinaryServer::start_with_env(
        &["--listen", "127.0.0.1:0", "--welcome", "from-flag"],
        &[("SWITCHBOARD_WELCOME", "from-env")],
    )
    .await;

    let (_client, first) = connect_and_read_first_line(server.addr(0)).await;
    assert_eq!(first, "from-flag");
}

#[tokio::test]
async fn serve_refuses_a_listener_of_unknown_mode() {
    let output = run(&["serve", "--listen", "sctp://1.2.3.4:5"]).await;
    assert_failure(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown mode"), "stderr: {stderr}");
}

#[tokio::test]
async fn serve_refuses_a_queue_soft_limit_below_the_line_limit() {
    let output = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--queue-soft-limit",
        "1KiB",
    ])
    .await;
    assert_failure(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("queue-soft-limit"), "stderr: {stderr}");
}
