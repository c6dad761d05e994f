//! Rate limits and the PROXY protocol: a client sending faster than its
//! limit is slowed down, told so, and cut off only if it keeps it up; an
//! address opening connections too fast is refused, saying when to come
//! back; behind a load balancer, the address the PROXY header names is
//! the one that counts.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use switchboard::config::ConnectionLimits;
use switchboard::throttle::Rate;
use switchboard::{Client, Config, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limited(messages: u32, bytes: u32, grace: Duration) -> Config {
    Config {
        limits: ConnectionLimits {
            max_messages_per_second: Rate::per_second(messages),
            max_bytes_per_second: Rate::per_second(bytes),
            rate_limit_grace: grace,
            ..Config::local().limits
        },
        ..Config::local()
    }
}

#[tokio::test]
async fn a_flooding_client_is_slowed_then_cut_off_while_others_keep_talking() {
    let server = TestServer::start(limited(100, 0, Duration::from_secs(2))).await;
    let addr = server.text_addr();
    let (mut watcher, _) = join(addr).await;
    let (mut alice, _) = join(addr).await;
    let (flooder, flooder_name) = join(addr).await;
    let (flood_reader, mut flood_writer) = flooder.into_split();
    let mut flood_reader = flood_reader.lines();

    let started = Instant::now();
    let flooding = tokio::spawn(async move {
        let lines: String = (0..1000).map(|i| format!("flood {i}\n")).collect();
        // Blocks once the server stops reading; fails once it is cut off.
        while flood_writer.write_all(lines.as_bytes()).await.is_ok() {}
    });

    // The flooder hears why it is slowed down, then why it is cut off.
    let slowed = within("the slow-down notice", async {
        loop {
            let line = flood_reader.next_line().await.unwrap().expect("a line");
            if line.starts_with('!') {
                return line;
            }
        }
    })
    .await;
    assert!(
        slowed.contains("slowed down") && slowed.contains("100 messages a second"),
        "{slowed}"
    );

    // Meanwhile the others talk as usual, and the watcher hears the flood
    // no faster than the limit.
    let mut flood_heard = 0u32;
    for round in 0..5 {
        alice.say(&format!("still here {round}")).await.unwrap();
        within("alice's message through the flood", async {
            loop {
                match watcher.next().await.unwrap().expect("a line") {
                    ServerLine::Message { from, text, .. } if from == flooder_name => {
                        assert!(text.starts_with("flood"), "{text}");
                        flood_heard += 1;
                    }
                    ServerLine::Message { text, .. } if text == format!("still here {round}") => {
                        return
                    }
                    _ => {}
                }
            }
        })
        .await;
    }

    let last = within_for(Duration::from_secs(10), "the cut-off", async {
        let mut last = String::new();
        while let Some(line) = flood_reader.next_line().await.unwrap() {
            last = line;
        }
        last
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        last.contains("rate limited") && last.contains("for 2s on end"),
        "{last}"
    );
    // Not before the grace is over. A lower bound on what the server
    // times holds on a stalled machine (a stall only adds to `elapsed`);
    // the pacing itself is timed exactly in throttle.rs's unit tests, with
    // an injected clock.
    assert!(
        elapsed >= Duration::from_secs(2),
        "cut off after {elapsed:?}"
    );
    flooding.await.unwrap();

    // What the watcher heard of the flood: a second's burst, then the rate.
    within("the rest of the flood", async {
        loop {
            match watcher.next().await.unwrap().expect("a line") {
                ServerLine::Message { from, .. } if from == flooder_name => flood_heard += 1,
                ServerLine::Notice(notice) if notice.contains(&flooder_name) => break,
                _ => {}
            }
        }
    })
    .await;
    // At most the burst and the rate for as long as it flooded: a bound
    // that a stall only loosens.
    let most = 100 + (100.0 * elapsed.as_secs_f64()) as u32 + 20;
    assert!(
        (150..=most).contains(&flood_heard),
        "heard {flood_heard} flood messages in {elapsed:?}, at most {most} allowed"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_under_its_limit_is_never_slowed() {
    let server = TestServer::start(limited(100, 0, Duration::from_secs(1))).await;
    let addr = server.text_addr();
    let (mut watcher, _) = join(addr).await;
    let (mut sender, _) = join(addr).await;
    // 40 a second, for three grace periods; after a stall of the test,
    // it does not catch up in a burst, which would be over the limit.
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..120 {
        ticks.tick().await;
        sender.say(&format!("steady {i}")).await.unwrap();
    }
    sync(&mut sender).await;
    for i in 0..120 {
        let (_, _, text) = expect_message(&mut watcher).await;
        assert_eq!(text, format!("steady {i}"));
    }
    // Nothing but pong came back to the sender: no notice, no cut-off.
    sender.send_line("/ping").await.unwrap();
    let line = within("pong", sender.next()).await.unwrap().unwrap();
    assert_eq!(line, ServerLine::Notice("pong".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_byte_limit_paces_a_large_upload() {
    let config = Config {
        listeners: vec![
            "raw://127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ],
        ..limited(0, 16 * 1024, Duration::from_secs(30))
    };
    let server = TestServer::start(config).await;
    let (mut watcher, _) = join(server.text_addr()).await;
    let mut device = TcpStream::connect(server.addr(switchboard::Mode::Raw))
        .await
        .unwrap();
    // 16 KiB go at once (the burst), the next 32 KiB at 16 KiB a second.
    let upload = vec![b'x'; 48 * 1024];
    let started = Instant::now();
    device.write_all(&upload).await.unwrap();
    let mut heard = 0;
    within_for(Duration::from_secs(20), "the whole upload", async {
        while heard < upload.len() {
            let line = watcher.next_line_bytes().await.unwrap().expect("a line");
            heard += line.iter().filter(|&&b| b == b'x').count();
        }
    })
    .await;
    // No sooner than the rate allows: a lower bound, which a stalled
    // machine cannot break.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1800),
        "48 KiB at 16 KiB/s with a 16 KiB burst took only {elapsed:?}"
    );
    server.stop().await;
}

/// A PROXY protocol v1 header for a client at `from`.
fn v1_header(from: &str) -> String {
    format!("PROXY TCP4 {from} 192.0.2.1 40000 12345\r\n")
}

/// Connects through a "balancer" saying the client is `from`; returns the
/// first line the server sends.
async fn connect_as(addr: SocketAddr, from: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(v1_header(from).as_bytes()).await.unwrap();
    let mut client = Client::from_stream(stream);
    within("the first line", client.next_line())
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_address_opening_connections_too_fast_is_refused_behind_a_balancer() {
    let config = Config {
        listeners: vec!["127.0.0.1:0?proxy=v1".parse().unwrap()],
        limits: ConnectionLimits {
            max_connections_per_ip_per_second: Rate::per_second(3),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let addr = server.text_addr();
    for _ in 0..3 {
        let first = connect_as(addr, "203.0.113.7").await;
        assert!(first.starts_with("* welcome"), "{first}");
    }
    let refused = connect_as(addr, "203.0.113.7").await;
    assert!(
        refused.contains("too many new connections from 203.0.113.7")
            && refused.contains("3 a second")
            && refused.contains("try again in"),
        "{refused}"
    );
    // Another client of the same balancer is not held back.
    let other = connect_as(addr, "198.51.100.9").await;
    assert!(other.starts_with("* welcome"), "{other}");
    server.stop().await;
}

#[tokio::test]
async fn a_proxy_listener_serves_the_client_the_header_names() {
    let server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0?proxy=v2",
        "--tls-handshake-timeout",
        "1s",
    ])
    .await;
    let mut server = server;
    let addr = server.addr(0);

    let source: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two as u8 | ppp::v2::Command::Proxy as u8,
        ppp::v2::Protocol::Stream,
        (source, "[2001:db8::1]:12345".parse::<SocketAddr>().unwrap()),
    )
    .build()
    .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&header).await.unwrap();
    let mut client = Client::from_stream(stream);
    read_welcome(&mut client).await;
    let logged = server.expect_log("client connected").await;
    assert!(logged.contains("[2001:db8::7]:40000"), "{logged}");

    // A client that skips the balancer (no header) is closed, and logged.
    let mut direct = TcpStream::connect(addr).await.unwrap();
    direct
        .write_all(b"hello, I am not a balancer\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // Closed unread: a reset, or an end with nothing said.
    match within(
        "the server to close a header-less connection",
        direct.read_to_end(&mut rest),
    )
    .await
    {
        Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let logged = server.expect_log("did not start with a PROXY header").await;
    assert!(
        logged.contains("not a PROXY protocol v2 header"),
        "{logged}"
    );
}

/// The byte at `offset` of the stream a bulk sender uploads: a pattern
/// whose every 4 KiB differs, so a lost or repeated piece shows.
fn pattern(offset: usize) -> u8 {
    ((offset / 4096) as u8).wrapping_mul(31) ^ (offset as u8)
}

#[tokio::test]
async fn with_default_limits_a_bulk_sender_streams_100_mb_and_nothing_is_lost() {
    const TOTAL: usize = 100 * 1024 * 1024;
    // `cat fw.bin | nc HOST 9000` to a raw listener, with no flags at all:
    // the defaults pace such a sender at most, and never cut it off.
    let mut server = BinaryServer::start(&["--listen", "raw://127.0.0.1:0"]).await;
    let addr = server.addr(0);
    let mut reader = within("the reader connects", TcpStream::connect(addr))
        .await
        .unwrap();
    let mut sender = within("the sender connects", TcpStream::connect(addr))
        .await
        .unwrap();
    // The reader is in the room before the first byte is sent.
    server.expect_log("client connected").await;
    server.expect_log("client connected").await;
    let sending = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < TOTAL {
            for (i, byte) in chunk.iter_mut().enumerate() {
                *byte = pattern(sent + i);
            }
            sender
                .write_all(&chunk)
                .await
                .expect("the sender is never cut off");
            sent += chunk.len();
        }
        sender.shutdown().await.expect("shutdown");
        sender
    });
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    within_for(Duration::from_secs(120), "100 MB to arrive", async {
        while received < TOTAL {
            let n = reader.read(&mut buf).await.expect("read");
            assert!(n > 0, "the reader was closed after {received} bytes");
            for (i, byte) in buf[..n].iter().enumerate() {
                assert_eq!(*byte, pattern(received + i), "byte {}", received + i);
            }
            received += n;
        }
    })
    .await;
    let mut sender = within("the sender to finish", sending).await.unwrap();
    // The server closes the sender's connection because it hung up, not
    // because of a limit.
    let mut rest = Vec::new();
    within(
        "the sender's connection to close",
        sender.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    let line = server.expect_log("client disconnected").await;
    assert!(line.contains("closed the connection"), "{line}");
}
