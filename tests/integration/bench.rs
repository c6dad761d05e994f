//! `switchboard bench` as users run it: the real binary driving a real
//! switchboard server (also the real binary) on a free port, its JSON
//! report read back and checked for figures that make sense. Runs are
//! kept short; no timing or rate is asserted beyond being more than zero.

use crate::common;

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{within_for, BinaryServer};
use serde::Deserialize;
use tokio::process::Command;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// How long one bench run may take, connecting and draining included.
const BENCH_PATIENCE: Duration = Duration::from_secs(60);

/// The figures of a bench report this file checks (a subset of the JSON).
#[derive(Debug, Deserialize)]
struct Report {
    scenario: String,
    protocol: String,
    addr: String,
    clients: usize,
    publishers: usize,
    rate: Option<f64>,
    published: u64,
    published_per_s: f64,
    delivered: u64,
    deliveries_per_s: f64,
    latency_us: Option<Latency>,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    garbled: u64,
    per_publisher: Vec<PublisherFigures>,
    memory: Option<Memory>,
    heard_broadcast: Option<usize>,
    connects_per_s: Option<f64>,
    heard_room: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    samples: u64,
}

#[derive(Debug, Deserialize)]
struct PublisherFigures {
    id: u32,
    sent: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
}

#[derive(Debug, Deserialize)]
struct Memory {
    pid: u32,
    rss_before: u64,
    rss_after: u64,
}

/// `switchboard bench ARGS` with stdin closed, output captured, and killed
/// if the test fails.
fn bench_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("bench")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `switchboard bench ARGS` and waits for it to exit.
async fn run_bench(args: &[&str]) -> Output {
    let what = format!("`switchboard bench {}` to exit", args.join(" "));
    within_for(BENCH_PATIENCE, &what, bench_command(args).output())
        .await
        .expect("the switchboard binary runs")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails the test, showing the command's output, unless it exited 0.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "expected exit status 0, got {}\nstdout: {}\nstderr: {}",
        output.status,
        stdout_of(output),
        stderr_of(output)
    );
}

/// Fails the test, showing the command's output, if it exited 0.
fn assert_failure(output: &Output) {
    assert!(
        !output.status.success(),
        "expected a non-zero exit status\nstdout: {}\nstderr: {}",
        stdout_of(output),
        stderr_of(output)
    );
}

/// Runs `switchboard bench ARGS --json`, which must succeed, and reads its report.
async fn bench_json(args: &[&str]) -> Report {
    let mut args = args.to_vec();
    args.push("--json");
    let output = run_bench(&args).await;
    assert_success(&output);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a JSON report: {e}\nstdout: {}\nstderr: {}",
            stdout_of(&output),
            stderr_of(&output)
        )
    })
}

/// A real switchboard server on a free port of 127.0.0.1, with `extra`
/// listeners after its text one, and the text address.
async fn server_with(extra: &[&str]) -> (BinaryServer, String) {
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = BinaryServer::start(&args).await;
    let addr = server.addr(0).to_string();
    (server, addr)
}

/// An address of 127.0.0.1 where nothing listens: a bound socket that never
/// listens holds the port, so no other test can take it meanwhile.
fn address_where_nothing_listens() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an IP address");
    (socket, addr)
}

/// No message was lost, repeated, out of order or torn, overall and per publisher.
fn assert_every_message_intact(report: &Report) {
    assert_eq!(
        (
            report.lost,
            report.duplicated,
            report.reordered,
            report.garbled
        ),
        (0, 0, 0, 0),
        "lost, duplicated, reordered, garbled: {report:#?}"
    );
    assert!(
        !report.per_publisher.is_empty(),
        "no publisher reported: {report:#?}"
    );
    for p in &report.per_publisher {
        assert_eq!(
            (p.lost, p.duplicated, p.reordered),
            (0, 0, 0),
            "publisher {}: {report:#?}",
            p.id
        );
    }
}

/// Messages flowed, the rates say so, and every one reached `receivers_each` receivers.
fn assert_delivered_to(report: &Report, receivers_each: u64) {
    assert!(report.published > 0, "nothing published: {report:#?}");
    assert_eq!(
        report.delivered,
        report.published * receivers_each,
        "every message should reach {receivers_each} receivers: {report:#?}"
    );
    assert!(report.published_per_s > 0.0, "{report:#?}");
    assert!(report.deliveries_per_s > 0.0, "{report:#?}");
}

/// Publishers are numbered from 0 and their `sent` adds up to `published`.
fn assert_publishers_add_up(report: &Report, publishers: usize) {
    assert_eq!(report.publishers, publishers, "{report:#?}");
    assert_eq!(report.per_publisher.len(), publishers, "{report:#?}");
    for (i, p) in report.per_publisher.iter().enumerate() {
        assert_eq!(p.id as usize, i, "{report:#?}");
        assert!(p.sent > 0, "publisher {i} sent nothing: {report:#?}");
    }
    let sent: u64 = report.per_publisher.iter().map(|p| p.sent).sum();
    assert_eq!(sent, report.published, "{report:#?}");
}

/// Latency was measured and its percentiles are in order.
fn assert_latency_sane(report: &Report) {
    let l = report
        .latency_us
        .as_ref()
        .unwrap_or_else(|| panic!("no latency measured: {report:#?}"));
    assert!(l.samples > 0, "{l:?}");
    assert!(l.p50 > 0.0, "{l:?}");
    assert!(
        l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "percentiles out of order: {l:?}"
    );
}

// ---------------------------------------------------------------------------
// Scenarios against switchboard
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_fanout_bench_delivers_every_message_to_every_receiver_intact() {
    let (_server, addr) = server_with(&[]).await;
    let report = bench_json(&[
        "fanout",
        "--addr",
        &addr,
        "--protocol",
        "text",
        "--clients",
        "5",
        "--publishers",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;

    assert_eq!(report.scenario, "fanout");
    assert_eq!(report.protocol, "text");
    assert_eq!(report.addr, addr);
    assert_eq!(report.clients, 5);
    assert_eq!(report.rate, None, "fanout has no rate: {report:#?}");
    assert_eq!(report.heard_room, Some(5), "{report:#?}");
    assert_delivered_to(&report, 5);
    assert_every_message_intact(&report);
    assert_latency_sane(&report);
    assert_publishers_add_up(&report, 2);
    assert!(report.memory.is_none() && report.heard_broadcast.is_none());
}

#[tokio::test]
async fn a_chat_bench_delivers_each_clients_messages_to_all_the_others() {
    let (_server, addr) = server_with(&[]).await;
    let report = bench_json(&[
        "chat",
        "--addr",
        &addr,
        "--clients",
        "4",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;

    assert_eq!(report.scenario, "chat");
    assert_eq!(report.protocol, "text");
    assert_eq!(report.rate, Some(50.0));
    assert_eq!(report.heard_room, Some(4), "{report:#?}");
    // Each message reaches the 3 other clients, never its sender.
    assert_delivered_to(&report, 3);
    assert_every_message_intact(&report);
    assert_latency_sane(&report);
    // In chat every client publishes.
    assert_publishers_add_up(&report, 4);
}

#[tokio::test]
async fn a_connect_bench_reaches_every_idle_client_and_reads_the_servers_memory() {
    let (server, addr) = server_with(&[]).await;
    let report = bench_json(&[
        "connect",
        "--addr",
        &addr,
        "--clients",
        "20",
        "--duration",
        "200ms",
    ])
    .await;

    assert_eq!(report.scenario, "connect");
    assert_eq!(report.clients, 20);
    assert_eq!(report.heard_broadcast, Some(20), "{report:#?}");
    // Found by its listening port: the server runs on this machine.
    let memory = report
        .memory
        .as_ref()
        .unwrap_or_else(|| panic!("no memory figures: {report:#?}"));
    assert_eq!(Some(memory.pid), server.child.id(), "{report:#?}");
    assert!(memory.rss_before > 0 && memory.rss_after > 0, "{memory:?}");
    assert_eq!(report.published, 0);
    assert!(report.latency_us.is_none() && report.heard_room.is_none());
}

/// `bench --tls` against a `tls://` listener: the same scenarios, every
/// message intact, and the connect scenario's rate is TLS handshakes.
#[tokio::test]
async fn benches_over_tls_lose_nothing_and_count_handshakes() {
    let (server, _text) = server_with(&[
        "--listen",
        "tls://127.0.0.1:0",
        "--tls-self-signed",
        "--max-messages-per-second",
        "0",
        "--max-bytes-per-second",
        "0",
    ])
    .await;
    let tls = server.addr(1).to_string();
    let fanout = bench_json(&[
        "fanout",
        "--addr",
        &tls,
        "--insecure",
        "--clients",
        "5",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ])
    .await;
    assert_eq!(fanout.protocol, "text+tls");
    assert_every_message_intact(&fanout);
    assert_delivered_to(&fanout, 5);

    let chat = bench_json(&[
        "chat",
        "--addr",
        &tls,
        "--insecure",
        "--clients",
        "4",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;
    assert_every_message_intact(&chat);
    assert_delivered_to(&chat, 3);
    assert_latency_sane(&chat);

    let connect = bench_json(&[
        "connect",
        "--addr",
        &tls,
        "--insecure",
        "--clients",
        "20",
        "--duration",
        "200ms",
    ])
    .await;
    assert_eq!(connect.heard_broadcast, Some(20), "{connect:#?}");
    assert!(
        connect.connects_per_s.is_some_and(|rate| rate > 0.0),
        "{connect:#?}"
    );
}

#[tokio::test]
async fn a_fanout_bench_over_a_raw_listener_loses_and_tears_nothing() {
    let (server, _text) = server_with(&["--listen", "raw://127.0.0.1:0"]).await;
    assert!(
        server.listeners[1].starts_with("raw://"),
        "{:?}",
        server.listeners
    );
    let raw = server.addr(1).to_string();
    let report = bench_json(&[
        "fanout",
        "--protocol",
        "raw",
        "--addr",
        &raw,
        "--clients",
        "3",
        "--publishers",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;

    assert_eq!(report.protocol, "raw");
    assert_eq!(report.addr, raw);
    assert_eq!(report.heard_room, Some(3), "{report:#?}");
    assert_delivered_to(&report, 3);
    assert_every_message_intact(&report);
    assert_publishers_add_up(&report, 1);
}

#[tokio::test]
async fn browser_protocol_clients_get_every_message_intact_over_websocket() {
    let (server, _text) = server_with(&["--http", "127.0.0.1:0"]).await;
    let http = server.http();
    for scenario in ["fanout", "chat"] {
        let report = bench_json(&[
            scenario,
            "--protocol",
            "ws",
            "--addr",
            &http,
            "--clients",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ])
        .await;
        assert_eq!(report.protocol, "ws");
        // Fanout: each message to all 4 clients; chat: to the 3 others.
        let receivers = if scenario == "fanout" { 4 } else { 3 };
        assert_delivered_to(&report, receivers);
        assert_every_message_intact(&report);
    }
}

#[tokio::test]
async fn the_line_adapter_finds_payloads_behind_the_text_listeners_sender_prefix() {
    let (_server, addr) = server_with(&[]).await;
    let report = bench_json(&[
        "fanout",
        "--protocol",
        "line",
        "--addr",
        &addr,
        "--clients",
        "3",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;

    assert_eq!(report.protocol, "line");
    assert_eq!(report.heard_room, Some(3), "{report:#?}");
    assert_delivered_to(&report, 3);
    assert_every_message_intact(&report);
    assert_publishers_add_up(&report, 1);
}

#[tokio::test]
async fn a_human_reads_a_short_fanout_as_a_table_of_figures() {
    let (_server, addr) = server_with(&[]).await;
    let output = run_bench(&[
        "fanout",
        "--addr",
        &addr,
        "--clients",
        "3",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ])
    .await;
    assert_success(&output);
    let stdout = stdout_of(&output);
    let has_line = |prefix: &str| stdout.lines().any(|line| line.starts_with(prefix));
    for prefix in ["  published", "  delivered", "  latency", "  lost 0 "] {
        assert!(
            has_line(prefix),
            "no line starting {prefix:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().next().unwrap_or_default().contains(&addr),
        "the first line names the server:\n{stdout}"
    );
    let latency = stdout.lines().find(|l| l.starts_with("  latency")).unwrap();
    assert!(
        latency.contains("p50"),
        "latency should be measured:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------
// Mistakes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_bench_against_a_port_where_nothing_listens_says_it_cannot_connect() {
    let (_held, addr) = address_where_nothing_listens();
    let addr = addr.to_string();
    let output = run_bench(&[
        "fanout",
        "--addr",
        &addr,
        "--clients",
        "3",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ])
    .await;
    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("cannot connect") && stderr.contains(&addr),
        "stderr should say it cannot connect to {addr}: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "no report: {}",
        stdout_of(&output)
    );
}

#[tokio::test]
async fn a_payload_too_small_for_its_stamp_is_refused_before_connecting() {
    let (_held, addr) = address_where_nothing_listens();
    let addr = addr.to_string();
    let output = run_bench(&["fanout", "--addr", &addr, "--size", "10"]).await;
    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("--size"), "stderr: {stderr}");
    assert!(
        !stderr.contains("cannot connect"),
        "refused before connecting: {stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout: {}", stdout_of(&output));
}

#[tokio::test]
async fn an_unknown_scenario_is_refused_with_the_ones_there_are() {
    let output = run_bench(&["flood"]).await;
    assert_failure(&output);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("unknown scenario"), "stderr: {stderr}");
    assert!(
        stderr.contains("fanout") && stderr.contains("chat") && stderr.contains("connect"),
        "stderr should list the scenarios: {stderr}"
    );
    assert!(output.stdout.is_empty(), "stdout: {}", stdout_of(&output));
}
