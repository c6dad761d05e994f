//! UDP listeners: cellular modules and ESP firmware that send datagrams
//! share rooms with TCP devices, terminals and browsers. Each story runs
//! the real binary and talks to it over real UDP and TCP sockets.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use switchboard::{Client, ServerLine};
use tokio::net::UdpSocket;

use crate::common::{expect_line, expect_message, join, sync, within, BinaryServer};

/// A server with a text listener (0), the UDP listener `udp` (1) and
/// the admin API; `extra` arguments after.
async fn server(udp: &str, extra: &[&str]) -> (BinaryServer, String) {
    let udp = format!("udp://127.0.0.1:0{udp}");
    let mut args = vec![
        "--listen",
        "text://127.0.0.1:0",
        "--listen",
        &udp,
        "--http",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let server = BinaryServer::start(&args).await;
    let http = server.http();
    (server, http)
}

/// A device's UDP socket, on a port of its own.
async fn module() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// The next datagram `socket` receives.
async fn datagram(socket: &UdpSocket) -> Vec<u8> {
    within("a datagram", async {
        let mut buf = vec![0; 1 << 16];
        let n = socket.recv(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    })
    .await
}

/// Whether `socket` has a datagram waiting, without waiting for one.
fn has_datagram(socket: &UdpSocket) -> bool {
    let mut buf = [0; 16];
    socket.try_recv_from(&mut buf).is_ok()
}

/// A terminal in the lobby (listener 0) hears a module's "hello" arrive
/// through the UDP listener (1): the terminal, the module, and the name
/// its peer was given.
async fn a_peer_says_hello(server: &BinaryServer) -> (Client, UdpSocket, String) {
    let (mut terminal, _) = join(server.addr(0)).await;
    let esp = module().await;
    esp.send_to(b"hello", server.addr(1)).await.unwrap();
    let joined = notice(&mut terminal, "joined #lobby").await;
    let name = joined.split_whitespace().next().unwrap().to_owned();
    (terminal, esp, name)
}

/// Waits until `client` hears a notice containing `text`.
async fn notice(client: &mut Client, text: &str) -> String {
    let line = expect_line(
        client,
        text,
        |l| matches!(l, ServerLine::Notice(t) if t.contains(text)),
    )
    .await;
    match line {
        ServerLine::Notice(text) => text,
        _ => unreachable!(),
    }
}

/// The UDP listener's view in the admin API.
async fn udp_listener(http: &str) -> Value {
    let listeners = crate::http::get_json(format!("http://{http}/api/v1/listeners")).await;
    listeners
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mode"] == "udp")
        .expect("the UDP listener")
        .clone()
}

/// Waits until the UDP listener's counter `what` reaches `at_least`.
async fn counted(http: &str, what: &str, at_least: u64) -> Value {
    within(&format!("udp.{what} to reach {at_least}"), async {
        loop {
            let listener = udp_listener(http).await;
            if listener["udp"][what].as_u64().unwrap_or(0) >= at_least {
                return listener;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_udp_device_registers_heartbeats_and_talks_with_a_terminal() {
    let (server, http) = server("?register=imei&heartbeat=hex:FE", &[]).await;
    let listener: SocketAddr = server.addr(1);
    let (mut terminal, _) = join(server.addr(0)).await;
    let dtu = module().await;

    dtu.send_to(b"861234567890123", listener).await.unwrap();
    notice(&mut terminal, "dev-861234567890123 joined #lobby").await;
    // A heartbeat keeps it alive and reaches nobody; a reading does.
    dtu.send_to(&[0xFE], listener).await.unwrap();
    dtu.send_to(b"temp=21.5", listener).await.unwrap();
    let (room, from, text) = expect_message(&mut terminal).await;
    assert_eq!(
        (room.as_str(), from.as_str(), text.as_str()),
        ("lobby", "dev-861234567890123", "temp=21.5")
    );

    // The terminal's command reaches the device as bytes, one datagram.
    terminal
        .send_line("/hex dev-861234567890123 41 54 0D 0A")
        .await
        .unwrap();
    assert_eq!(datagram(&dtu).await, b"AT\r\n");
    // Lines that came in one read of the terminal (one delivery of two
    // messages) go out a datagram each.
    terminal.send_line("one\ntwo").await.unwrap();
    assert_eq!(datagram(&dtu).await, b"one\n");
    assert_eq!(datagram(&dtu).await, b"two\n");

    // The admin sees a UDP client, registered, and what the listener
    // counted.
    let clients = crate::http::get_json(format!("http://{http}/api/v1/clients")).await;
    let device = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dev-861234567890123")
        .expect("the device is listed")
        .clone();
    assert_eq!(device["mode"], "udp", "{device}");
    assert_eq!(device["device"]["heartbeats"], 1, "{device}");
    let listener = counted(&http, "datagrams_out", 1).await;
    assert_eq!(listener["udp"]["datagrams_in"], 3, "{listener}");
}

#[tokio::test]
async fn a_device_that_comes_back_from_a_new_port_takes_its_name_over_at_once() {
    let (server, _http) = server("?register=imei", &[]).await;
    let listener = server.addr(1);
    let (mut terminal, _) = join(server.addr(0)).await;
    let before = module().await;
    before.send_to(b"861234567890123", listener).await.unwrap();
    notice(&mut terminal, "dev-861234567890123 joined").await;

    // The modem restarted: a new source port, the same registration.
    let after = module().await;
    after.send_to(b"861234567890123", listener).await.unwrap();
    after.send_to(b"back", listener).await.unwrap();
    within("the reading from the new port", async {
        loop {
            let (_, from, text) = expect_message(&mut terminal).await;
            if text == "back" {
                assert_eq!(from, "dev-861234567890123");
                return;
            }
        }
    })
    .await;
    terminal
        .send_line("/msg dev-861234567890123 reboot")
        .await
        .unwrap();
    sync(&mut terminal).await;
    assert_eq!(datagram(&after).await, b"reboot\n");
    assert!(!has_datagram(&before), "the stale port hears nothing");
}

#[tokio::test]
async fn a_silent_peer_is_gone_after_its_idle_timeout_and_a_new_datagram_brings_it_back() {
    let (server, _http) = server("?idle-timeout=1s", &[]).await;
    let listener = server.addr(1);
    let (mut terminal, esp, name) = a_peer_says_hello(&server).await;
    let left = notice(&mut terminal, &format!("{name} left")).await;
    assert!(left.contains("idle"), "{left}");
    esp.send_to(b"again", listener).await.unwrap();
    notice(&mut terminal, "joined #lobby").await;
    let (_, _, text) = expect_message(&mut terminal).await;
    assert_eq!(text, "again");
}

/// A peer that is gone gives its place on the server back, and its share
/// of its address's: with room for two clients, two from one address, a
/// terminal and one peer at a time are served, and each next peer is
/// taken once the one before it has gone.
#[tokio::test]
async fn a_peer_that_is_gone_gives_its_place_back() {
    // No admin API: its connections would take places too. Two unproven
    // peers may be served (by default half of the two places).
    let mut server = BinaryServer::start(&[
        "--listen",
        "text://127.0.0.1:0",
        "--listen",
        "udp://127.0.0.1:0?idle-timeout=1s&max-unproven=2",
        "--max-connections",
        "2",
        "--max-connections-per-ip",
        "2",
    ])
    .await;
    let listener = server.addr(1);
    let (mut terminal, _) = join(server.addr(0)).await;
    for _ in 0..3 {
        let served = module().await;
        served.send_to(b"here", listener).await.unwrap();
        let joined = notice(&mut terminal, "joined #lobby").await;
        let name = joined.split_whitespace().next().unwrap().to_owned();
        let turned_away = module().await;
        turned_away.send_to(b"full", listener).await.unwrap();
        server
            .expect_log("dropped a datagram from a new UDP peer: server full")
            .await;
        notice(&mut terminal, &format!("{name} left")).await;
    }
}

#[tokio::test]
async fn a_message_too_big_for_a_datagram_is_dropped_and_counted_and_the_next_one_goes() {
    let (server, http) = server("", &["--max-line", "100000", "--max-bytes-per-second", "0"]).await;
    let listener = server.addr(1);
    let (mut terminal, _) = join(server.addr(0)).await;
    let esp = module().await;
    // Enough sent for the amplification cap to allow the short message.
    esp.send_to(&[b'x'; 100], listener).await.unwrap();
    notice(&mut terminal, "joined #lobby").await;
    terminal.say(&"y".repeat(70_000)).await.unwrap();
    terminal.say("short").await.unwrap();
    assert_eq!(datagram(&esp).await, b"short\n");
    let listener = counted(&http, "oversize", 1).await;
    assert_eq!(listener["udp"]["oversize"], 1, "{listener}");
}

#[tokio::test]
async fn a_peer_whose_address_is_not_proven_is_sent_at_most_three_times_what_it_sent() {
    let dir = crate::common::TempDir::new("udp-amplification");
    let devices = dir.join("devices");
    std::fs::write(&devices, "861234567890123 key=s3cret-pump-7 pump\n").unwrap();
    let devices = devices.display().to_string();
    let (server, http) = server("", &["--devices", &devices]).await;
    let listener = server.addr(1);
    let (mut terminal, _) = join(server.addr(0)).await;

    // A spoofed source: 10 bytes in, claiming someone's address.
    let victim = module().await;
    victim.send_to(b"0123456789", listener).await.unwrap();
    notice(&mut terminal, "joined #lobby").await;
    // 3 x 10 = 30 bytes may go back to it: a 100-byte message does not.
    terminal.say(&"z".repeat(99)).await.unwrap();
    counted(&http, "capped", 1).await;
    assert!(!has_datagram(&victim), "the cap held");
    // What fits under the cap goes.
    terminal.say("ok").await.unwrap();
    assert_eq!(datagram(&victim).await, b"ok\n");
    // A peer that keeps talking earns what it is sent.
    victim.send_to(&[b'.'; 100], listener).await.unwrap();
    // (Its first message, 0123456789, is still to be read before it.)
    expect_line(
        &mut terminal,
        "the peer's 100 bytes",
        |line| matches!(line, ServerLine::Message { text, .. } if text.starts_with("..........")),
    )
    .await;
    terminal.say(&"z".repeat(99)).await.unwrap();
    assert_eq!(datagram(&victim).await.len(), 100);

    // A device that proved where it is, with its key, is sent all of it.
    drop(server);
    let (server, _http) = server_keyed(&devices).await;
    let (mut terminal, _) = join(server.addr(0)).await;
    let pump = module().await;
    pump.send_to(b"861234567890123,s3cret-pump-7", server.addr(1))
        .await
        .unwrap();
    notice(&mut terminal, "dev-861234567890123 joined").await;
    terminal
        .send_line(format!("/msg dev-861234567890123 {}", "c".repeat(999)))
        .await
        .unwrap();
    assert_eq!(datagram(&pump).await.len(), 1000);
}

/// A server whose UDP listener registers devices with their key.
async fn server_keyed(devices: &str) -> (BinaryServer, String) {
    server(
        r"?register=regex:(?<id>\d{15}),(?<key>[\w-]+)&auth=required",
        &["--devices", devices],
    )
    .await
}

#[tokio::test]
async fn the_admin_opens_a_udp_listener_and_its_peers_are_heard() {
    let server =
        BinaryServer::start(&["--listen", "text://127.0.0.1:0", "--http", "127.0.0.1:0"]).await;
    let http = server.http();
    let opened = crate::http::post_json(
        format!("http://{http}/api/v1/listeners"),
        &serde_json::json!({"mode": "udp", "addr": "127.0.0.1:0", "device": "register=line"}),
    )
    .await;
    assert_eq!(opened["mode"], "udp", "{opened}");
    let addr: SocketAddr = opened["addr"].as_str().unwrap().parse().unwrap();
    let (mut terminal, _) = join(server.addr(0)).await;
    let sensor = module().await;
    sensor.send_to(b"sensor-7\n", addr).await.unwrap();
    notice(&mut terminal, "sensor-7 joined").await;
}

/// Sends `payload` to `to` in a UDP datagram whose source says `from`: a
/// raw IPv4 packet with headers written here, as an attacker forges one.
/// Needs root (a raw socket), as CI has.
fn spoof(from: SocketAddr, to: SocketAddr, payload: &[u8]) {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        panic!("IPv4 addresses");
    };
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut packet = Vec::with_capacity(total);
    // IPv4: version 4, 5 words; the kernel fills in the checksum and id.
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    // UDP, without a checksum (allowed over IPv4).
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(255)), // IPPROTO_RAW: the headers are ours
    )
    .expect("a raw socket (this test needs root)");
    raw.send_to(&packet, &SocketAddr::V4(to).into())
        .expect("the forged packet is sent");
}

#[tokio::test]
async fn a_forged_datagram_gets_the_address_it_names_at_most_three_times_its_size() {
    let (server, http) = server("", &[]).await;
    let (mut terminal, _) = join(server.addr(0)).await;
    // The victim never sends anything; the attacker names its address.
    let victim = UdpSocket::bind("127.0.0.7:0").await.unwrap();
    spoof(victim.local_addr().unwrap(), server.addr(1), b"0123456789");
    let joined = notice(&mut terminal, "joined #lobby").await;
    let name = joined.split_whitespace().next().unwrap().to_owned();
    let clients = crate::http::get_json(format!("http://{http}/api/v1/clients")).await;
    let forged = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .expect("the forged peer is a client")
        .clone();
    assert_eq!(
        forged["addr"],
        victim.local_addr().unwrap().to_string(),
        "{forged}"
    );

    // The room's traffic would go to the victim: 100 bytes do not.
    terminal.say(&"z".repeat(99)).await.unwrap();
    counted(&http, "capped", 1).await;
    // 30 bytes may: what fits goes, what does not is held back.
    for word in ["ab", "cd", "efghijklmnopqrstuvwxyz0123"] {
        terminal.say(word).await.unwrap();
    }
    sync(&mut terminal).await;
    counted(&http, "capped", 2).await;
    let mut got = Vec::new();
    got.extend(datagram(&victim).await);
    got.extend(datagram(&victim).await);
    assert_eq!(got, b"ab\ncd\n");
    assert!(!has_datagram(&victim), "nothing past 3 x 10 bytes");
}

/// Datagrams with forged source addresses each make a client; they take
/// at most half of the server's connections (its `--max-connections`, by
/// default), so people and devices still get in.
#[tokio::test]
async fn a_flood_of_forged_sources_leaves_the_server_room_for_everyone_else() {
    let (server, http) = server("?idle-timeout=2s", &["--max-connections", "8"]).await;
    let (mut terminal, _) = join(server.addr(0)).await;
    for host in 10..20 {
        let forged = SocketAddr::from(([127, 0, 0, host], 4000));
        spoof(forged, server.addr(1), b"flood");
    }
    let listener = counted(&http, "unproven_full", 6).await;
    assert_eq!(listener["udp"]["unproven"], 4, "{listener}");
    assert_eq!(listener["udp"]["max_unproven"], 4, "half of 8: {listener}");
    for _ in 0..4 {
        notice(&mut terminal, "joined #lobby").await;
    }
    // Connections are left: a second terminal joins and is heard.
    let (mut late, _) = join(server.addr(0)).await;
    late.say("still here").await.unwrap();
    within("the late terminal to be heard", async {
        while expect_message(&mut terminal).await.2 != "still here" {}
    })
    .await;

    // As the forged peers go quiet and leave, new peers are taken again.
    for _ in 0..4 {
        notice(&mut terminal, "left").await;
    }
    let sensor = module().await;
    sensor.send_to(b"reading", server.addr(1)).await.unwrap();
    notice(&mut terminal, "joined #lobby").await;
    let listener = udp_listener(&http).await;
    assert_eq!(listener["udp"]["unproven"], 1, "{listener}");
}

/// A device that registers with its key proved its address: it no longer
/// counts against `max-unproven`, which bounds only the others.
#[tokio::test]
async fn devices_that_prove_their_address_are_not_held_by_max_unproven() {
    let dir = crate::common::TempDir::new("udp-unproven");
    let devices = dir.join("devices");
    std::fs::write(
        &devices,
        "861234567890123 key=pump-key\n861234567890124 key=valve-key\n",
    )
    .unwrap();
    let (server, http) = server(
        r"?register=regex:(?<id>\d{15}),(?<key>[\w-]+)&auth=required&max-unproven=1",
        &["--devices", &devices.display().to_string()],
    )
    .await;
    let (mut terminal, _) = join(server.addr(0)).await;
    let pump = module().await;
    pump.send_to(b"861234567890123,pump-key", server.addr(1))
        .await
        .unwrap();
    notice(&mut terminal, "dev-861234567890123 joined").await;
    within("the pump to leave the unproven", async {
        while udp_listener(&http).await["udp"]["unproven"] != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let valve = module().await;
    valve
        .send_to(b"861234567890124,valve-key", server.addr(1))
        .await
        .unwrap();
    notice(&mut terminal, "dev-861234567890124 joined").await;
    let listener = udp_listener(&http).await;
    assert_eq!(listener["udp"]["unproven_full"], 0, "{listener}");
    assert_eq!(listener["udp"]["max_unproven"], 1, "{listener}");
}

/// `switchboard device --udp`, a fake module sending datagrams, and
/// `switchboard send --udp`, one datagram and done.
#[tokio::test]
async fn the_device_simulator_and_send_speak_udp() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let (mut server, _http) = server("?register=imei&heartbeat=hex:FE", &[]).await;
    let addr = server.addr(1).to_string();
    let (mut terminal, _) = join(server.addr(0)).await;
    let mut simulator = crate::common::switchboard(&[
        "device",
        &addr,
        "--udp",
        "--register",
        "861234567890123",
        "--heartbeat",
        "hex:FE",
        "--every",
        "300ms",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .expect("the simulator starts");
    server.expect_log("device registered").await;
    let mut stdin = simulator.stdin.take().unwrap();
    stdin.write_all(b"T=21\n").await.unwrap();
    let (_, from, text) = expect_message(&mut terminal).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("dev-861234567890123", "T=21")
    );
    terminal
        .send_line("/hex dev-861234567890123 01 03 4F 4B")
        .await
        .unwrap();
    let mut stdout = BufReader::new(simulator.stdout.take().unwrap()).lines();
    let shown = within("the simulator to show what it received", async {
        loop {
            let line = stdout.next_line().await.unwrap().expect("a line");
            if line.contains("01 03 4F 4B") {
                return line;
            }
        }
    })
    .await;
    assert!(shown.contains("|..OK|"), "{shown}");
    simulator.kill().await.ok();

    // One datagram from a port of its own: another module registers.
    let output = crate::common::run(&["send", "--udp", &addr, "861234567890124"]).await;
    assert!(output.status.success(), "{output:?}");
    notice(&mut terminal, "dev-861234567890124 joined").await;
}

/// A fleet's devices are mostly quiet: a quiet UDP peer holds no task of
/// its own (its connection rests in its listener's table until its next
/// datagram), and one that speaks again is heard at once. (What a resting
/// peer is sent goes out from its listener's task: the amplification
/// story answers one.)
#[tokio::test]
async fn a_hundred_quiet_peers_hold_no_task_and_each_is_heard_when_it_speaks() {
    let server = crate::common::TestServer::start(switchboard::Config {
        listeners: vec![
            "text://127.0.0.1:0".parse().unwrap(),
            "udp://127.0.0.1:0".parse().unwrap(),
        ],
        ..switchboard::Config::local()
    })
    .await;
    let udp = server.listeners.iter().find(|l| l.udp).unwrap().addr;
    let (mut terminal, _) = join(server.text_addr()).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let mut peers = Vec::new();
    for i in 0..100 {
        let peer = module().await;
        peer.send_to(format!("hello {i}").as_bytes(), udp)
            .await
            .unwrap();
        peers.push(peer);
    }
    for _ in 0..100 {
        let (_, _, text) = expect_message(&mut terminal).await;
        assert!(text.starts_with("hello "), "{text}");
    }
    // Each burst's task ends once its datagram is handled.
    within("the peers' tasks to end", async {
        while tasks() > before + 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    peers[42].send_to(b"still here", udp).await.unwrap();
    let (_, _, text) = expect_message(&mut terminal).await;
    assert_eq!(text, "still here");
    server.stop().await;
}

/// A quiet peer has no task to be told it is disconnected: the admin's
/// kick still ends it at once, and its next datagram is a new client.
#[tokio::test]
async fn the_admin_disconnects_a_quiet_peer_and_its_next_datagram_is_a_new_client() {
    let (server, http) = server("", &[]).await;
    let listener = server.addr(1);
    let (mut terminal, esp, name) = a_peer_says_hello(&server).await;
    let (_, _, text) = expect_message(&mut terminal).await;
    assert_eq!(text, "hello");
    // Guests are named by their client's id.
    let id = name.trim_start_matches("guest-");
    let kicked = reqwest::Client::new()
        .delete(format!("http://{http}/api/v1/clients/{id}"))
        .json(&serde_json::json!({"reason": "maintenance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kicked.status(), 200);
    let left = notice(&mut terminal, &format!("{name} left")).await;
    assert!(left.contains("kicked"), "{left}");
    esp.send_to(b"again", listener).await.unwrap();
    let rejoined = notice(&mut terminal, "joined #lobby").await;
    assert!(!rejoined.starts_with(&format!("{name} ")), "{rejoined}");
    let (_, _, text) = expect_message(&mut terminal).await;
    assert_eq!(text, "again");
}
