//! Slow and stalled readers: nobody loses messages by reading slowly, and
//! a client that stops reading cannot hold the others back for long.

use crate::common;

use std::time::Duration;

use common::*;
use switchboard::config::ConnectionLimits;
use switchboard::hub::{HubSettings, QueueLimits};
use switchboard::{Client, Config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const LINE: usize = 1000;

/// Line `i` of a test stream: its number, padded to `LINE - 1` bytes.
fn numbered_line(i: usize) -> String {
    format!("{i:08} {}\n", "x".repeat(LINE - 10))
}

/// Writes `count` numbered lines as fast as the server takes them.
fn send_numbered(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    count: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = String::with_capacity(LINE * 100);
        for i in 0..count {
            batch.push_str(&numbered_line(i));
            if batch.len() >= LINE * 100 {
                writer.write_all(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        writer.write_all(batch.as_bytes()).await.unwrap();
        // Keep the connection open: a hang-up is not what is being tested.
        std::mem::forget(writer);
    })
}

/// Reads room messages until `count` numbered lines have arrived, checking
/// each is the next in sequence. `pace` slows the reader down.
async fn receive_numbered(client: Client, count: usize, pace: Option<Duration>) {
    let (reader, _writer) = client.into_split();
    let mut reader = BufReader::with_capacity(8 * 1024, reader);
    let mut next = 0;
    let mut line = Vec::new();
    while next < count {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await.unwrap();
        assert!(n > 0, "connection closed after {next} of {count} lines");
        if !line.starts_with(b"[") {
            continue; // a notice
        }
        let text = &line[line.iter().position(|b| *b == b':').unwrap() + 2..];
        let number: usize = std::str::from_utf8(&text[..8]).unwrap().parse().unwrap();
        assert_eq!(number, next, "line {next} lost or out of order");
        next += 1;
        if let Some(pace) = pace {
            if next % 100 == 0 {
                // Deliberately slow: this reader takes its time.
                tokio::time::sleep(pace).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_and_others_keep_going() {
    const COUNT: usize = 100_000; // 100 MB in 1000-byte lines
                                  // 100 MB as fast as the server takes it: no rate limit.
    let mut server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--stall-timeout",
        "2s",
        "--max-bytes-per-second",
        "0",
        "--max-messages-per-second",
        "0",
    ])
    .await;
    let addr = server.addr(0);

    let (sender, _) = join(addr).await;
    let (receiver, _) = join(addr).await;
    // Connects, and never reads a byte.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    server.expect_log("client connected").await;
    let (_sender_reader, sender_writer) = sender.into_split();

    let started = std::time::Instant::now();
    let writing = send_numbered(sender_writer, COUNT);
    within_for(
        Duration::from_secs(120),
        "the reading client to get all 100 MB",
        receive_numbered(receiver, COUNT, None),
    )
    .await;
    within("the sender", writing).await.unwrap();
    eprintln!(
        "100 MB relayed past a stalled client in {:?}",
        started.elapsed()
    );

    // Senders stopped waiting for it after the pause timeout: its queue
    // reached the hard limit before the stall timeout could end it.
    // (The reader, done, may have left first: its line is not this one.)
    let cut = within("the stalled client's cut-off in the log", async {
        loop {
            let line = server.expect_log("client disconnected").await;
            if !line.contains("client closed the connection") {
                return line;
            }
        }
    })
    .await;
    assert!(
        cut.contains("slow consumer") || cut.contains("stalled"),
        "{cut}"
    );
    // The stalled client's connection was closed: reading drains what the
    // kernel buffered, then meets the end.
    within("the stalled client's connection to end", async {
        let mut sink = vec![0; 1 << 16];
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;

    // The documented bound is a queue's hard limit (4 MiB) and two lines
    // per client, on a few MiB of runtime: some 20 MiB here. 64 MiB leaves
    // room for the allocator, and is far under the 100 MB relayed.
    let peak = server.peak_rss_kib();
    eprintln!("server peak RSS: {peak} KiB");
    assert!(
        peak < 64 * 1024,
        "server memory grew to {peak} KiB relaying past a stalled client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_much_slower_than_its_sender_still_gets_every_line() {
    const COUNT: usize = 10_000; // 10 MB: more than the kernel's socket buffers hold
    let config = Config {
        hub: HubSettings {
            queue: QueueLimits {
                soft: 64 * 1024,
                hard: 256 * 1024,
                ..Config::local().hub.queue
            },
            ..Config::local().hub
        },
        max_line: 4 * 1024,
        ..flat_out()
    };
    let server = TestServer::start(config).await;
    let (sender, _) = join(server.text_addr()).await;
    let (slow, _) = join(server.text_addr()).await;
    let (fast, _) = join(server.text_addr()).await;
    let (_r, w) = sender.into_split();
    let writing = send_numbered(w, COUNT);
    let slow_done = tokio::spawn(receive_numbered(
        slow,
        COUNT,
        Some(Duration::from_millis(5)),
    ));
    let fast_done = tokio::spawn(receive_numbered(fast, COUNT, None));
    within_for(Duration::from_secs(120), "the slow reader", slow_done)
        .await
        .unwrap();
    within("the fast reader", fast_done).await.unwrap();
    within("the sender", writing).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_client_is_cut_off_and_its_sender_goes_on() {
    let config = Config {
        hub: HubSettings {
            queue: QueueLimits {
                soft: 64 * 1024,
                hard: 1024 * 1024,
                ..Config::local().hub.queue
            },
            ..Config::local().hub
        },
        limits: ConnectionLimits {
            stall_timeout: Duration::from_millis(500),
            ..flat_out().limits
        },
        ..flat_out()
    };
    let server = TestServer::start(config).await;
    let (sender, _) = join(server.text_addr()).await;
    let (mut watcher, _) = join(server.text_addr()).await;
    let stalled = TcpStream::connect(server.text_addr()).await.unwrap();
    sync(&mut watcher).await;
    // The stalled client cannot take more than its socket buffers and soft
    // limit; the sender pauses for the pause timeout (250 ms), then goes on
    // while the stalled client's queue fills to the hard limit (or the
    // stall timeout comes first) and it is cut off. 20 MB is more than
    // loopback buffers hold.
    let (_r, w) = sender.into_split();
    let writing = send_numbered(w, 20_000);
    // Behind up to 20 MB of the sender's lines, which the watcher reads
    // first: as long as the sender is given, not the usual patience.
    within_for(
        Duration::from_secs(60),
        "the stalled client's leave notice",
        async {
            loop {
                let line = watcher.next().await.unwrap().expect("the watcher stays");
                let line = line.to_string();
                if line.ends_with("(stalled)") || line.ends_with("(slow consumer)") {
                    return;
                }
            }
        },
    )
    .await;
    within_for(Duration::from_secs(60), "the sender to finish", writing)
        .await
        .unwrap();
    drop(stalled);
    server.stop().await;
}
