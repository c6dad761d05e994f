//! Hostile clients: whatever one client sends, it cannot freeze the server,
//! forge another client, drive another's terminal, get a reader that reads
//! cut off, or make the server hold memory past its documented bounds.
//! Each test is one attack, as a client on the internet would try it, with
//! the figure it checks.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use switchboard::config::{ConnectionLimits, KeepaliveSettings};
use switchboard::hub::{HubSettings, QueueLimits};
use switchboard::{Client, Config, ServerLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads lines until `wanted` matches one; panics on a line `forbidden`
/// matches first.
async fn expect_line_not_after(
    client: &mut Client,
    what: &str,
    wanted: impl Fn(&str) -> bool,
    forbidden: impl Fn(&str) -> bool,
) -> String {
    within(what, async {
        loop {
            let line = client
                .next_line()
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("connection closed while waiting for {what}"));
            assert!(!forbidden(&line), "got {line:?} while waiting for {what}");
            if wanted(&line) {
                return line;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_with_a_backlog_of_requests_gets_nothing_more_done() {
    let config = Config {
        limits: ConnectionLimits {
            stall_timeout: Duration::from_millis(500),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (mut watcher, _) = join(server.text_addr()).await;
    // Asks for help 20,000 times (16 MB of answers) and never reads them,
    // then says something: by then it has been cut off as stalled, and
    // nothing it sent after that may be carried out.
    let mut flooder = TcpStream::connect(server.text_addr()).await.unwrap();
    let mut flood = "/help\n".repeat(20_000).into_bytes();
    flood.extend_from_slice(b"said after the cut-off\n");
    let writing = tokio::spawn(async move {
        // The server stops reading it: the write may never finish.
        let _ = flooder.write_all(&flood).await;
        flooder
    });
    let left = expect_line_not_after(
        &mut watcher,
        "the flooder's leave notice",
        |l| l.ends_with("(stalled)"),
        |l| l.contains("said after the cut-off"),
    )
    .await;
    assert!(left.starts_with("* guest-"), "{left}");
    // Everything the flooder caused has reached the watcher by now, and
    // none of it is what it sent after the cut-off.
    let after = heard_until_pong(&mut watcher).await;
    assert!(
        !after
            .iter()
            .any(|l| l.to_string().contains("said after the cut-off")),
        "{after:?}"
    );
    writing.abort();
    server.stop().await;
}

#[tokio::test]
async fn room_listings_are_bounded_largest_first_and_filtered_in_text_and_json() {
    let config = Config {
        hub: HubSettings {
            max_list: 10,
            ..Config::local().hub
        },
        ..config_with(&["127.0.0.1:0", "json://127.0.0.1:0"])
    };
    let server = TestServer::start(config).await;
    let addr = server.text_addr();
    // 30 clients, each in the lobby and a room of its own; two of them in
    // #big too.
    let mut clients = Vec::new();
    for i in 0..30 {
        let (mut client, _) = join(addr).await;
        client.send_line(format!("/join room-{i}")).await.unwrap();
        if i < 2 {
            client.send_line("/join big").await.unwrap();
        }
        sync(&mut client).await;
        clients.push(client);
    }
    let asker = &mut clients[0];
    let is_rooms = |l: &ServerLine| l.to_string().starts_with("* rooms");
    asker.send_line("/rooms").await.unwrap();
    let rooms = expect_line(asker, "rooms", is_rooms).await;
    let rooms = rooms.to_string();
    assert!(
        rooms.starts_with("* rooms (10 of 32): #lobby (30), #big (2), #room-"),
        "{rooms}"
    );
    assert!(
        rooms.ends_with("; more not shown, narrow with /rooms PATTERN"),
        "{rooms}"
    );
    asker.send_line("/rooms room-2*").await.unwrap();
    let some = expect_line(asker, "rooms", is_rooms).await;
    // room-2 and room-20 to room-29 are 11: ten shown.
    assert!(
        some.to_string().starts_with("* rooms (10 of 32): #room-2"),
        "{some}"
    );
    asker.send_line("/rooms 17").await.unwrap();
    let one = expect_line(asker, "rooms", is_rooms).await;
    assert_eq!(one.to_string(), "* rooms (1 of 32): #room-17 (1)");
    asker.send_line("/who lobby").await.unwrap();
    let who = expect_line(asker, "who", |l| l.to_string().starts_with("* #lobby (")).await;
    assert!(
        who.to_string().starts_with("* #lobby (10 of 30): "),
        "{who}"
    );
    asker
        .send_line(format!("/rooms {}", "x".repeat(65)))
        .await
        .unwrap();
    let error = expect_line(asker, "error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(
        error.to_string().contains("at most 64 characters"),
        "{error}"
    );

    let mut json_client = Client::connect(server.addr(switchboard::Mode::Json))
        .await
        .unwrap();
    json_client
        .send_line(r#"{"type":"rooms","pattern":"room-1*","id":1}"#)
        .await
        .unwrap();
    let rooms = within("json rooms", async {
        loop {
            let event = json_client.next_json().await.unwrap().unwrap();
            if event["type"] == "rooms" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(rooms["total"], 32, "{rooms}");
    assert_eq!(rooms["more"], true, "{rooms}");
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 10, "{rooms}");
    json_client
        .send_line(r#"{"type":"who","room":"big","pattern":"*"}"#)
        .await
        .unwrap();
    let who = within("json who", async {
        loop {
            let event = json_client.next_json().await.unwrap().unwrap();
            if event["type"] == "who" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(
        (who["total"].clone(), who["more"].clone()),
        (json!(2), json!(false))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_listing_of_long_names_stays_within_the_line_limit() {
    let server = TestServer::text().await;
    let addr = server.text_addr();
    // 130 rooms named with 32 three-byte characters each: the whole list
    // would be over 12 KB; the answer shows at most 100 of them.
    let mut hanzi = (0x4e00..0x9fff)
        .filter_map(char::from_u32)
        .filter(|c| switchboard::hub::RoomName::new(&c.to_string()).is_ok());
    let mut clients = Vec::new();
    for _ in 0..5 {
        let (mut client, _) = join(addr).await;
        for _ in 0..26 {
            let name: String = hanzi.by_ref().take(32).collect();
            client.send_line(format!("/join {name}")).await.unwrap();
        }
        sync(&mut client).await;
        clients.push(client);
    }
    clients[0].send_line("/rooms").await.unwrap();
    let line = expect_line(&mut clients[0], "rooms", |l| {
        l.to_string().starts_with("* rooms")
    })
    .await
    .to_string();
    assert!(line.starts_with("* rooms (100 of 131): "), "{line}");
    assert!(line.len() < 64 * 1024, "{} bytes", line.len());
    server.stop().await;
}

#[tokio::test]
async fn no_client_can_forge_a_prefix_or_drive_another_clients_terminal() {
    let server = TestServer::start(config_with(&[
        "127.0.0.1:0",
        "json://127.0.0.1:0",
        "raw://127.0.0.1:0",
    ]))
    .await;
    let (mut victim, _) = join(server.text_addr()).await;
    let (mut mallory, mallory_name) = join(server.text_addr()).await;
    let mut json_reader = Client::connect(server.addr(switchboard::Mode::Json))
        .await
        .unwrap();
    let _welcome = within("json welcome", json_reader.next_json()).await;
    sync(&mut victim).await;

    let attack = b"hi\r[#lobby] admin: please send me your password\x1b[2J\x1b]0;pwned\x07\x08\x08\xe2\x80\xaetxt";
    mallory.send_line(attack).await.unwrap();
    let line = within("the message", async {
        loop {
            let line = victim.next_line_bytes().await.unwrap().unwrap();
            if line.starts_with(b"[") {
                return line;
            }
        }
    })
    .await;
    let shown = String::from_utf8(line).expect("text clients get UTF-8");
    assert_eq!(
        shown,
        format!(
            "[#lobby] {mallory_name}: hi^M[#lobby] admin: please send me your password^[[2J^[]0;pwned^G^H^H\u{fffd}txt"
        )
    );
    // A JSON client gets the exact text (JSON escapes it).
    let event = within("the json message", async {
        loop {
            let event = json_reader.next_json().await.unwrap().unwrap();
            if event["type"] == "message" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(
        event["text"],
        String::from_utf8_lossy(attack).into_owned(),
        "{event}"
    );

    // The same bytes from a JSON sender and from a raw device.
    json_reader
        .send_line(r#"{"type":"say","text":"a\r[#lobby] admin: b\u001b[2J"}"#)
        .await
        .unwrap();
    let mut device = TcpStream::connect(server.addr(switchboard::Mode::Raw))
        .await
        .unwrap();
    // A device's bytes with control characters are shown as hex.
    let from_device = "<hex 63 0D 5B 23 6C 6F 62 62 79 5D 20 61 64 6D 69 6E 3A 20 64 07>";
    for expected in ["a^M[#lobby] admin: b^[[2J", from_device] {
        if expected == from_device {
            device.write_all(b"c\r[#lobby] admin: d\x07").await.unwrap();
        }
        let (_, _, text) = expect_message(&mut victim).await;
        assert_eq!(text, expected);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_flood_waits_for_a_reader_that_reads_instead_of_cutting_it_off() {
    // The slow timeout is a separate policy (a reader slower than its room
    // for longer is cut off on purpose); this is about the flood alone.
    // A small queue, so that a flood not held back would cut the reader
    // off after half a megabyte.
    let config = Config {
        hub: HubSettings {
            queue: QueueLimits {
                soft: 128 * 1024,
                hard: 512 * 1024,
                ..Config::local().hub.queue
            },
            slow_timeout: None,
            ..Config::local().hub
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (reader, _) = join(server.text_addr()).await;
    let (flooder, _) = join(server.text_addr()).await;
    let (mut flood_answers, mut flood) = flooder.into_split();
    // Reads its own answers, so only the room is at stake.
    let draining = tokio::spawn(async move {
        let mut sink = vec![0; 1 << 16];
        while flood_answers.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let flooding = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let mut batch = String::new();
            for _ in 0..1000 {
                batch.push_str(&format!("/nick n{}\n", i % 2));
                i += 1;
            }
            if flood.write_all(batch.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    // The reader reads steadily, at most 64 KiB every 100 ms, slower than
    // the flood, until it has taken three times what its queue may hold.
    // Before notices were flow-controlled, it was cut off within a second.
    let (mut reader, mut reader_writer) = reader.into_split();
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0; 64 * 1024];
    let mut taken = 0usize;
    while taken < 3 * 512 * 1024 {
        ticks.tick().await;
        let n = within("the reader's next read", reader.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "the reader was disconnected after {taken} bytes");
        let read = &buf[..n];
        assert!(
            !read.windows(12).any(|w| w == b"disconnected"),
            "the reader was cut off: {}",
            String::from_utf8_lossy(read)
        );
        taken += n;
    }
    // Still connected: a ping comes back after the backlog.
    reader_writer.write_all(b"/ping\n").await.unwrap();
    within("the reader's pong", async {
        let mut tail = Vec::new();
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the reader was disconnected");
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(7).any(|w| w == b"* pong\n") {
                return;
            }
            assert!(
                !tail.windows(12).any(|w| w == b"disconnected"),
                "the reader was cut off"
            );
            let keep = tail.len().saturating_sub(16);
            tail.drain(..keep);
        }
    })
    .await;
    flooding.abort();
    draining.abort();
    server.stop().await;
}

#[tokio::test]
async fn look_alike_names_cannot_pose_as_a_connected_client() {
    let server = TestServer::text().await;
    let (mut alice, _) = join(server.text_addr()).await;
    alice.send_line("/nick alice").await.unwrap();
    sync(&mut alice).await;
    let (mut mallory, _) = join(server.text_addr()).await;
    for (pose, why) in [
        ("ALICE", "is taken"),
        ("AIice", "is taken"),       // capital I for l
        ("аlice", "one script"),     // Cyrillic а
        ("ａｌｉｃｅ", "U+FF41"),    // fullwidth
        ("𝐚𝐥𝐢𝐜𝐞", "U+1D41A"),        // mathematical bold
        ("\u{3164}", "U+3164"),      // Hangul filler: looks blank
        ("a\u{200b}lice", "U+200B"), // zero-width space
    ] {
        mallory.send_line(format!("/nick {pose}")).await.unwrap();
        let error = expect_line(&mut mallory, "an error", |l| {
            matches!(l, ServerLine::Error(_))
        })
        .await;
        assert!(error.to_string().contains(why), "{pose}: {error}");
    }
    // Other scripts are welcome.
    for name in ["小明", "José", "Παύλος"] {
        mallory.send_line(format!("/nick {name}")).await.unwrap();
        expect_line(&mut mallory, "renamed", |l| {
            *l == ServerLine::Notice(format!("you are now known as {name}"))
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_line_left_unfinished_is_cut_off_after_the_line_timeout() {
    let config = Config {
        limits: ConnectionLimits {
            line_timeout: Some(Duration::from_millis(300)),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (mut watcher, _) = join(server.text_addr()).await;
    let (mut slowpoke, _) = join(server.text_addr()).await;
    // Whole lines, however slow, are fine.
    slowpoke.send_line("hello").await.unwrap();
    expect_message(&mut watcher).await;
    // A line started and never finished is not.
    slowpoke.send_line("").await.unwrap();
    let (_, mut writer) = {
        let (reader, writer) = slowpoke.into_split();
        (reader, writer)
    };
    writer.write_all(b"this line never ends").await.unwrap();
    let left = expect_line(&mut watcher, "the leave notice", |l| {
        l.to_string().ends_with("(line timeout)")
    })
    .await;
    assert!(left.to_string().starts_with("* guest-"), "{left}");
    server.stop().await;
}

#[tokio::test]
async fn a_sender_whose_reads_all_end_mid_line_is_not_cut_off_by_the_line_timeout() {
    // Found by the soak: a flooder's reads never ended on a line break, so
    // its "unfinished line" seemed to last the whole 30 s.
    let config = Config {
        limits: ConnectionLimits {
            line_timeout: Some(Duration::from_secs(1)),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (mut watcher, _) = join(server.text_addr()).await;
    let (streamer, _) = join(server.text_addr()).await;
    let (_r, mut w) = streamer.into_split();
    // Every write finishes the last line and starts the next one, for
    // three times the line timeout. Each line is unfinished for a fifth of
    // it: only a machine stalled for 800 ms could make one last too long.
    w.write_all(b"line 0 starts").await.unwrap();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    for i in 1..=15 {
        ticks.tick().await;
        w.write_all(format!(" and ends\nline {i} starts").as_bytes())
            .await
            .unwrap();
    }
    for i in 0..15 {
        let (_, _, text) = expect_message(&mut watcher).await;
        assert_eq!(text, format!("line {i} starts and ends"));
    }
    server.stop().await;
}

#[tokio::test]
async fn over_the_memory_budget_new_clients_are_refused_and_the_largest_holders_cut_off() {
    let config = Config {
        max_line: 64 * 1024,
        hub: HubSettings {
            queue: QueueLimits {
                soft: 64 * 1024,
                hard: 256 * 1024,
                ..Config::local().hub.queue
            },
            max_memory: 1024 * 1024,
            ..Config::local().hub
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let addr = server.text_addr();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (client, _) = join(addr).await;
        clients.push(client.into_split());
    }
    // Fourteen of them each hold 60 KB of a line: 840 KB, over 90% of the
    // 1 MiB budget once buffers are counted, not over the budget.
    for (_, writer) in &mut clients[..14] {
        writer.write_all(&vec![b'x'; 60_000]).await.unwrap();
    }
    let refusal = within("a refusal", async {
        loop {
            let mut client = Client::connect(addr).await.unwrap();
            let first = client.next_line().await.unwrap().unwrap_or_default();
            if first.starts_with("! refused: server busy") {
                return first;
            }
            // Not swept yet: this one got in. Try again.
            drop(client);
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refusal.contains("memory budget"), "{refusal}");
    // The other two hold 64 KB each: over the budget. The largest holders
    // are cut off, each told why.
    let mut cut = 0;
    let big: Vec<_> = clients.drain(14..).collect();
    let mut big_readers = Vec::new();
    for (reader, mut writer) in big {
        writer.write_all(&vec![b'y'; 64_000]).await.unwrap();
        big_readers.push((reader, writer));
    }
    for (mut reader, _writer) in big_readers {
        let mut said = String::new();
        within(
            "the big holder to be cut off",
            reader.read_to_string(&mut said),
        )
        .await
        .ok();
        if said.contains("! disconnected: server memory budget") {
            cut += 1;
        }
    }
    assert!(cut >= 1, "no big holder was cut off");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_reader_is_cut_off_after_the_slow_timeout_and_its_room_speeds_up_again() {
    let config = Config {
        hub: HubSettings {
            slow_timeout: Some(Duration::from_secs(1)),
            ..Config::local().hub
        },
        ..flat_out()
    };
    let server = TestServer::start(config).await;
    let addr = server.text_addr();
    let (mut fast, _) = join(addr).await;
    let (sender, _) = join(addr).await;
    let trickle = TcpStream::connect(addr).await.unwrap();
    sync(&mut fast).await;
    // The trickle reader reads 100 bytes every 100 ms: 1 KB/s.
    let trickling = tokio::spawn(async move {
        let mut trickle = trickle;
        let mut buf = [0; 100];
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            if trickle.read(&mut buf).await.map_or(true, |n| n == 0) {
                return;
            }
        }
    });
    // The sender sends 1000-byte lines as fast as the room takes them.
    let (_r, mut w) = sender.into_split();
    let sending = tokio::spawn(async move {
        let line = format!("{}\n", "m".repeat(999));
        let batch = line.repeat(64);
        loop {
            if w.write_all(batch.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let left = expect_line(&mut fast, "the trickle reader's leave notice", |l| {
        l.to_string().ends_with("(slow consumer)")
    })
    .await;
    let held_back = started.elapsed();
    // After it, the room runs at full speed again: 20 MB reach the fast
    // reader within the test's patience (10 s), which a room still held to
    // the trickle reader's 1 KB/s could not do.
    let after = Instant::now();
    let mut bytes = 0usize;
    while bytes < 20_000_000 {
        let line = within("the room's messages", fast.next_line_bytes())
            .await
            .unwrap()
            .expect("the fast reader stays connected");
        bytes += line.len() + 1;
    }
    eprintln!(
        "{left}: the room was held back {held_back:?}; then 20 MB in {:?}",
        after.elapsed()
    );
    sending.abort();
    trickling.abort();
    server.stop().await;
}

#[tokio::test]
async fn connections_are_probed_with_tcp_keepalive() {
    let config = Config {
        tcp_keepalive: KeepaliveSettings {
            idle: Some(Duration::from_secs(7)),
            ..Default::default()
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (client, _) = join(server.text_addr()).await;
    let (reader, _writer) = client.into_split();
    let client_port = reader.get_ref().local_addr().unwrap().port();
    let server_port = server.text_addr().port();
    // /proc/net/tcp shows the server's socket for this client with its
    // keepalive timer (timer kind 2) running.
    let timer = within("the keepalive timer", async {
        loop {
            let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
            let found = table.lines().skip(1).find_map(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                let port = |field: &str| u16::from_str_radix(field.split(':').nth(1)?, 16).ok();
                (port(fields[1]) == Some(server_port) && port(fields[2]) == Some(client_port))
                    .then(|| fields[5].to_owned())
            });
            if let Some(timer) = found.filter(|t| t.starts_with("02:")) {
                return timer;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // /proc/net/tcp gives the timer in clock ticks (USER_HZ, 100 a
    // second), in hex: it is due within the 7 s set.
    let due = u64::from_str_radix(timer.split(':').nth(1).unwrap(), 16).unwrap();
    assert!(due <= 7 * 100, "keepalive due in {} s", due as f64 / 100.0);
    server.stop().await;
}

/// The server's resident memory now, in KiB.
fn rss_kib(server: &BinaryServer) -> u64 {
    let pid = server.child.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_many_lines_cost_a_reader_what_its_queue_limit_says() {
    const PAIRS: usize = 10;
    let mut server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "json://127.0.0.1:0",
        "--stall-timeout",
        "2s",
        "--queue-hard-limit",
        "1MiB",
    ])
    .await;
    let (text, json) = (server.addr(0), server.addr(1));
    let before = server.peak_rss_kib();
    // Ten pairs, each in a room of its own: a JSON sender whose every
    // 64 KB line is 32,000 line breaks, and a text reader that never
    // reads. Each line shows as up to 1,000 prefixed lines to the reader.
    let line = format!("{}\n", json!({"type": "say", "text": "\n".repeat(32_000)}));
    assert!(line.len() < 64 * 1024);
    let mut readers = Vec::new();
    let mut sending = Vec::new();
    for pair in 0..PAIRS {
        let (mut reader, _) = join(text).await;
        reader.send_line(format!("/join p{pair}")).await.unwrap();
        sync(&mut reader).await;
        readers.push(reader);
        let mut sender = Client::connect(json).await.unwrap();
        sender
            .send_line(format!(r#"{{"type":"join","room":"p{pair}"}}"#))
            .await
            .unwrap();
        let line = line.clone();
        sending.push(tokio::spawn(async move {
            let (_r, mut w) = sender.into_split();
            // 16 MB for the reader: more than the kernel's socket buffers.
            for _ in 0..1000 {
                if w.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            std::mem::forget(_r);
            std::mem::forget(w);
        }));
    }
    // Every reader is cut off: its queue reaches the hard limit once its
    // sender stops waiting for it (the pause timeout), or it has stalled
    // for 2 s.
    for _ in 0..PAIRS {
        let cut = server.expect_log("client disconnected").await;
        assert!(
            cut.contains("slow consumer") || cut.contains("stalled"),
            "{cut}"
        );
    }
    let peak = server.peak_rss_kib();
    let grown = peak.saturating_sub(before);
    // The documented bound: a queue's hard limit (1 MiB here) per reader,
    // and a line (64 KiB, read and being relayed) per client, plus 8 MiB
    // for the allocator and runtime. Counted by body size, this was 49 MiB
    // per reader with the default 4 MiB hard limit.
    let bound = PAIRS as u64 * (1024 + 2 * 64) + 8 * 1024;
    eprintln!("{PAIRS} pairs: server peak RSS {before} KiB -> {peak} KiB (+{grown} KiB; bound {bound} KiB)");
    assert!(grown < bound, "grew {grown} KiB, over {bound} KiB");
    for task in sending {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_line_costs_little_more_than_its_length() {
    const CLIENTS: usize = 300;
    const PARTIAL: usize = 65_537;
    let server = BinaryServer::start(&["--listen", "127.0.0.1:0"]).await;
    let addr = server.addr(0);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (client, _) = join(addr).await;
        clients.push(client.into_split());
    }
    let mut probe = join(addr).await.0;
    sync(&mut probe).await;
    let before = rss_kib(&server);
    for (_, writer) in &mut clients {
        writer.write_all(&vec![b'p'; PARTIAL]).await.unwrap();
    }
    // Everything written has been read once the server holds it all.
    let per_client = within("the server to hold every partial line", async {
        loop {
            let grown = rss_kib(&server).saturating_sub(before) * 1024;
            let per_client = grown as usize / CLIENTS;
            if per_client >= PARTIAL {
                return per_client;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Settle: the last reads may still be landing.
    sync(&mut probe).await;
    let per_client =
        per_client.max((rss_kib(&server).saturating_sub(before) * 1024) as usize / CLIENTS);
    eprintln!(
        "{CLIENTS} clients holding {PARTIAL} bytes of a line each: {per_client} bytes of server memory each ({:.2}x)",
        per_client as f64 / PARTIAL as f64
    );
    // Doubling buffers made it 1.64x.
    assert!(
        per_client < PARTIAL * 5 / 4,
        "{per_client} bytes per client holding {PARTIAL}"
    );
}
