//! Devices on raw listeners (DTUs, ESP modules, serial converters): they
//! register by IMEI and get a name and a room of their own, a device that
//! reconnects replaces its stale connection, heartbeats keep them alive
//! without reaching anyone, and their byte streams are cut into packets
//! that people see as hex.

use crate::common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard::config::HttpSettings;
use switchboard::{Client, Config, Mode, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const IMEI: &str = "861234567890123";
const DEVICE: &str = "dev-861234567890123";

/// A server with a text listener and a device listener with `options`.
async fn server(options: &str) -> TestServer {
    TestServer::start(Config {
        listeners: vec![
            "127.0.0.1:0".parse().unwrap(),
            format!("raw://127.0.0.1:0?{options}").parse().unwrap(),
            "json://127.0.0.1:0".parse().unwrap(),
        ],
        ..Config::local()
    })
    .await
}

/// A device that has sent `registration`.
async fn connect_device(server: &TestServer, registration: &[u8]) -> TcpStream {
    let mut device = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    device.set_nodelay(true).unwrap();
    device.write_all(registration).await.unwrap();
    device
}

/// A text client in `room`.
async fn app_in(server: &TestServer, room: &str) -> Client {
    let (mut app, _) = join(server.text_addr()).await;
    app.send_line(format!("/join {room}")).await.unwrap();
    expect_line(
        &mut app,
        "the join",
        |l| matches!(l, ServerLine::Notice(n) if n.starts_with("you joined")),
    )
    .await;
    app
}

async fn expect_notice_containing(client: &mut Client, text: &str) -> String {
    let line = expect_line(
        client,
        text,
        |l| matches!(l, ServerLine::Notice(n) if n.contains(text)),
    )
    .await;
    let ServerLine::Notice(notice) = line else {
        unreachable!()
    };
    notice
}

/// Reads exactly `n` bytes from a device's socket.
async fn device_reads(device: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within("the device to receive", device.read_exact(&mut buf))
        .await
        .expect("read");
    buf
}

/// What the admin API says of the device named `name`.
async fn device_in_api(server: &TestServer, name: &str) -> serde_json::Value {
    let url = format!("http://{}/api/v1/clients", server.http.unwrap());
    let page = crate::http::get_json(url).await;
    page["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {page}"))["device"]
        .clone()
}

/// Checks that `#lobby` has `members` members, as `app` (in it) sees it
/// once everything before has been handled.
async fn assert_lobby_holds(app: &mut Client, members: usize) {
    sync(app).await;
    app.send_line("/who").await.unwrap();
    let who = expect_notice_containing(app, "#lobby").await;
    assert!(who.starts_with(&format!("#lobby ({members})")), "{who}");
}

async fn closed(device: &mut TcpStream) {
    within("the server to close the device's connection", async {
        let mut buf = [0; 256];
        while device.read(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await;
}

#[tokio::test]
async fn a_device_registering_by_imei_gets_its_name_and_room_and_talks_hex_with_an_app() {
    let server = server("register=imei&room=dev-{id}&heartbeat=hex:FE").await;
    let mut app = app_in(&server, DEVICE).await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined #{DEVICE}")).await;

    // A Modbus reply, as a person at a terminal sees it.
    device
        .write_all(&[0x01, 0x03, 0x02, 0x00, 0x0A, 0x38, 0x43])
        .await
        .unwrap();
    let (room, from, text) = expect_message(&mut app).await;
    assert_eq!((room.as_str(), from.as_str()), (DEVICE, DEVICE));
    assert_eq!(text, "<hex 01 03 02 00 0A 38 43>");
    // Readable text stays text.
    device.write_all(b"T=21.5\r\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "T=21.5");

    // The app sends a Modbus request, written in hex, by name.
    app.send_line(format!("/hex {DEVICE} 01 03 00 00 00 0A C5 CD"))
        .await
        .unwrap();
    assert_eq!(
        device_reads(&mut device, 8).await,
        [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]
    );
    // Or to the device's room.
    app.send_line(format!("/hex #{DEVICE} FF")).await.unwrap();
    assert_eq!(device_reads(&mut device, 1).await, [0xFF]);
    // A JSON program sends it bytes too.
    let mut program = Client::connect(server.addr(Mode::Json)).await.unwrap();
    let send = json!({"type": "send", "to": DEVICE, "bytes": "AQM="});
    program.send_line(send.to_string()).await.unwrap();
    assert_eq!(device_reads(&mut device, 2).await, [0x01, 0x03]);
    // Bad hex is refused, saying why.
    app.send_line(format!("/hex {DEVICE} 0G")).await.unwrap();
    let error = expect_line(&mut app, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(
        matches!(&error, ServerLine::Error(e) if e.contains("not a hex byte")),
        "{error:?}"
    );

    // Nobody else may take a device's name, before or after it connects.
    app.send_line("/nick dev-999999999999999").await.unwrap();
    let error = expect_line(&mut app, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(
        matches!(&error, ServerLine::Error(e) if e.contains("kept for devices")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_person_debugging_a_device_turns_the_hex_display_on_and_off() {
    let server = server("register=imei").await;
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined")).await;
    app.send_line("/hex on").await.unwrap();
    expect_notice_containing(&mut app, "hex on").await;
    device.write_all(b"T=21\r\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "<hex 54 3D 32 31 0D 0A>");
    app.send_line("/hex off").await.unwrap();
    expect_notice_containing(&mut app, "hex off").await;
    device.write_all(b"T=22\r\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "T=22");
}

#[tokio::test]
async fn a_second_connection_with_the_same_imei_replaces_the_first() {
    let server = server("register=imei&room=dev-{id}").await;
    let mut app = app_in(&server, DEVICE).await;
    let mut stale = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined")).await;
    // The link dropped without a FIN; the device connects again. Its room
    // hears the stale connection leave, then the new one join: an app that
    // follows presence by these notices ends with the device online.
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    let left = expect_notice_containing(&mut app, DEVICE).await;
    assert!(left.contains("left") && left.contains("replaced"), "{left}");
    let joined = expect_notice_containing(&mut app, DEVICE).await;
    assert!(joined.contains("joined"), "{joined}");
    closed(&mut stale).await;
    device.write_all(b"back\n").await.unwrap();
    assert_eq!(
        expect_message(&mut app).await,
        (DEVICE.into(), DEVICE.into(), "back".into())
    );
    app.send_line(format!("/msg {DEVICE} status?"))
        .await
        .unwrap();
    assert_eq!(device_reads(&mut device, 8).await, b"status?\n");
}

#[tokio::test]
async fn heartbeats_are_not_relayed_but_keep_a_device_alive_and_a_silent_one_is_dropped() {
    let server = server("register=imei&heartbeat=hex:FE&idle-timeout=2s").await;
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined")).await;
    // Heartbeats for twice the idle timeout, ten to each: the device stays.
    // Each is followed by a pause, so that it arrives as a packet of its
    // own (a raw listener cuts packets where reads end).
    let started = std::time::Instant::now();
    let mut beats = tokio::time::interval(Duration::from_millis(200));
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beats.tick().await;
    while started.elapsed() < Duration::from_secs(4) {
        device.write_all(&[0xFE]).await.unwrap();
        beats.tick().await;
    }
    device.write_all(b"still here\n").await.unwrap();
    // The first thing the app hears is the data: no heartbeat came before it.
    let line = expect_line(
        &mut app,
        "the device's data",
        |l| !matches!(l, ServerLine::Notice(n) if n.contains("joined")),
    )
    .await;
    assert_eq!(
        line,
        ServerLine::Message {
            room: "lobby".into(),
            from: DEVICE.into(),
            text: "still here".into()
        }
    );
    // Then it goes quiet: "fake online" for at most the idle timeout.
    let left = expect_notice_containing(&mut app, &format!("{DEVICE} left")).await;
    assert!(left.contains("idle"), "{left}");
    closed(&mut device).await;
}

#[tokio::test]
async fn register_each_prefixes_are_stripped_before_relaying() {
    let server = server("register=imei&register-each&frame=line").await;
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, format!("{IMEI}T=21\n").as_bytes()).await;
    assert_eq!(expect_message(&mut app).await.2, "T=21");
    device
        .write_all(format!("{IMEI}T=22\n{IMEI}T=23\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut app).await,
        ("lobby".into(), DEVICE.into(), "T=22".into())
    );
    assert_eq!(expect_message(&mut app).await.2, "T=23");
}

#[tokio::test]
async fn gap_framing_cuts_modbus_frames_written_byte_by_byte_into_whole_frames() {
    // A gap of 500 ms: the bytes of a frame, written one by one, are far
    // closer than that even on a loaded machine.
    let server = server("frame=gap:500").await;
    let mut program = Client::connect(server.addr(Mode::Json)).await.unwrap();
    // A raw member of the room gets the bytes unchanged.
    let mut raw_member = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    let mut device = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    device.set_nodelay(true).unwrap();
    let frames: [&[u8]; 3] = [
        &[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD],
        &[0x01, 0x03, 0x14, 0x00, 0x01, 0x00, 0x02],
        &[0x11, 0x06, 0x00, 0x01, 0x00, 0x03, 0x9A, 0x9B],
    ];
    for frame in frames {
        for byte in frame {
            device.write_all(&[*byte]).await.unwrap();
        }
        // The next frame only after this one arrived whole: the pause
        // between frames is the gap.
        let bytes = within("the frame", async {
            loop {
                let event = program.next_json().await.unwrap().expect("an event");
                if event["type"] == "message" {
                    return event["bytes"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| {
                            base64_of(event["text"].as_str().expect("text").as_bytes())
                        });
                }
            }
        })
        .await;
        assert_eq!(bytes, base64_of(frame));
    }
    let all: Vec<u8> = frames.concat();
    assert_eq!(device_reads(&mut raw_member, all.len()).await, all);
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_devices_reply_reaches_only_its_own_room() {
    let server = server("register=imei&room=dev-{id}").await;
    let other_imei = "861234567890999";
    let mut app = app_in(&server, DEVICE).await;
    let mut other_app = app_in(&server, &format!("dev-{other_imei}")).await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    let _other = connect_device(&server, other_imei.as_bytes()).await;
    expect_notice_containing(&mut other_app, &format!("dev-{other_imei} joined")).await;
    device.write_all(b"reply\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "reply");
    // Had it reached the other room, it would come before the pong.
    other_app.send_line("/ping").await.unwrap();
    let line = expect_line(&mut other_app, "pong or a message", |l| {
        matches!(l, ServerLine::Message { .. }) || *l == ServerLine::Notice("pong".into())
    })
    .await;
    assert_eq!(line, ServerLine::Notice("pong".into()));
}

#[tokio::test]
async fn a_first_packet_that_is_not_a_registration_is_refused_and_closed_after_the_grace() {
    let server = TestServer::start(Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        listeners: vec![
            "127.0.0.1:0".parse().unwrap(),
            "raw://127.0.0.1:0?register=imei&register-grace=300ms"
                .parse()
                .unwrap(),
        ],
        ..Config::local()
    })
    .await;
    let mut app = app_in(&server, "lobby").await;
    let mut impostor = connect_device(&server, b"hello, I am a device\n").await;
    let impostor_addr = impostor.local_addr().unwrap().to_string();
    closed(&mut impostor).await;
    // A silent one is closed too.
    let mut silent = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    closed(&mut silent).await;
    // Neither reached the room.
    assert_lobby_holds(&mut app, 1).await;
    // Each was held for the grace (as the server timed it), and is told
    // apart in the disconnects: the impostor refused for what it sent,
    // the silent one for sending nothing.
    let url = format!(
        "http://{}/api/v1/clients?state=closed",
        server.http.unwrap()
    );
    let page = crate::http::get_json(url).await;
    let gone = |addr: &str| {
        page["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["addr"] == addr)
            .unwrap_or_else(|| panic!("{addr} is not among the disconnects: {page}"))
            .clone()
    };
    let (impostor, silent) = (gone(&impostor_addr), gone(&silent_addr));
    assert_eq!(impostor["reason_code"], "refused", "{impostor}");
    assert!(
        impostor["reason"].as_str().unwrap().contains("IMEI"),
        "{impostor}"
    );
    assert_eq!(silent["reason_code"], "not_registered", "{silent}");
    for client in [&impostor, &silent] {
        let held = client["closed_at"].as_u64().unwrap() - client["connected_at"].as_u64().unwrap();
        assert!(
            held >= 300,
            "closed after {held} ms, before the grace: {client}"
        );
    }
}

/// The device simulator: a fake DTU that registers, sends heartbeats and
/// stdin, and prints what it receives as hex and text.
#[tokio::test]
async fn the_device_simulator_registers_sends_heartbeats_and_shows_what_it_receives() {
    let mut server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "raw://127.0.0.1:0?register=imei&heartbeat=hex:FE&idle-timeout=2s",
    ])
    .await;
    let addr: SocketAddr = server.addr(1);
    let mut app = Client::connect(server.addr(0)).await.unwrap();
    read_welcome(&mut app).await;
    let mut simulator = switchboard(&[
        "device",
        &addr.to_string(),
        "--register",
        IMEI,
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
    assert_eq!(
        expect_message(&mut app).await,
        ("lobby".into(), DEVICE.into(), "T=21".into())
    );
    app.send_line(format!("/hex {DEVICE} 01 03 4F 4B"))
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
    // Its heartbeats (every 300 ms) are not relayed: the app hears only
    // the answer to its ping.
    let heard = heard_until_pong(&mut app).await;
    assert!(
        !heard
            .iter()
            .any(|l| matches!(l, ServerLine::Message { .. })),
        "a heartbeat was relayed: {heard:?}"
    );
    simulator.kill().await.ok();
}

/// `modbus=rtu`: frames failing their CRC are relayed as they came, and
/// counted on the device, as the admin API shows.
#[tokio::test]
async fn modbus_frames_failing_their_crc_are_relayed_and_counted() {
    let server = TestServer::start(Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        listeners: vec![
            "127.0.0.1:0".parse().unwrap(),
            "raw://127.0.0.1:0?register=imei&frame=gap:50&modbus=rtu"
                .parse()
                .unwrap(),
        ],
        ..Config::local()
    })
    .await;
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined")).await;
    let good = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD];
    let bad = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCE];
    // As docs/protocol.md shows binary to a text client: upper-case hex
    // bytes, one space apart.
    let (good_shown, bad_shown) = (
        "<hex 01 03 00 00 00 0A C5 CD>",
        "<hex 01 03 00 00 00 0A C5 CE>",
    );
    for (frame, shown) in [(&good, good_shown), (&bad, bad_shown), (&good, good_shown)] {
        device.write_all(frame).await.unwrap();
        let (_, _, text) = expect_message(&mut app).await;
        assert_eq!(text, shown);
    }
    let device_view = device_in_api(&server, DEVICE).await;
    assert_eq!(device_view["id"], IMEI);
    assert_eq!(device_view["bad_frames"], 1, "{device_view}");
}

/// Like the online debug pages, the admin hands out a port for devices
/// for a few minutes: `POST /api/v1/listeners` with device options.
#[tokio::test]
async fn the_admin_opens_a_device_listener_through_the_api() {
    let server = TestServer::start(Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..Config::local()
    })
    .await;
    let api = format!("http://{}/api/v1/listeners", server.http.unwrap());
    let http = crate::http::http();
    let body = json!({
        "mode": "raw", "addr": "127.0.0.1:0", "room": "dev-{id}",
        "device": "register=imei&heartbeat=hex:FE", "expire_after_idle_seconds": 300,
    });
    let opened = crate::http::post_json(&api, &body).await;
    assert_eq!(opened["room"], "dev-{id}", "{opened}");
    assert_eq!(
        opened["device"], "register=imei&heartbeat=hex:FE",
        "{opened}"
    );
    let addr: SocketAddr = opened["addr"].as_str().unwrap().parse().unwrap();

    let mut app = app_in(&server, DEVICE).await;
    let mut device = TcpStream::connect(addr).await.unwrap();
    device.write_all(IMEI.as_bytes()).await.unwrap();
    expect_notice_containing(&mut app, &format!("{DEVICE} joined #{DEVICE}")).await;
    device.write_all(b"T=21\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "T=21");

    // Options that do not fit are refused, saying why.
    for (body, says) in [
        (
            json!({"mode": "text", "device": "register=imei"}),
            "raw listeners",
        ),
        (
            json!({"mode": "raw", "device": "register=imsi"}),
            "unknown register",
        ),
        (
            json!({"mode": "raw", "device": "colour=red"}),
            "unknown device option",
        ),
        (
            json!({"mode": "raw", "room": "dev-{id}"}),
            "needs register=",
        ),
    ] {
        let response = http.post(&api).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_device_options", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{error}");
    }
    // Devices that must authenticate need a devices list to check.
    let body = json!({"mode": "raw", "device": "register=imei", "auth": "required"});
    let response = http.post(&api).json(&body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "no_devices_list", "{error}");
}

/// A server whose device listener (`options`, with `auth=required`) takes
/// the devices of the devices file `devices`.
async fn server_with_devices(options: &str, devices: &str) -> (TestServer, TempDir) {
    let dir = TempDir::new("devices");
    let file = dir.join("devices");
    std::fs::write(&file, devices).unwrap();
    let mut config = Config {
        listeners: vec![
            "127.0.0.1:0".parse().unwrap(),
            format!("raw://127.0.0.1:0?{options}&auth=required")
                .parse()
                .unwrap(),
        ],
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..Config::local()
    };
    config.auth.devices_file = Some(file);
    (TestServer::start(config).await, dir)
}

#[tokio::test]
async fn with_authentication_on_only_the_devices_of_the_devices_file_may_register() {
    let listed = format!("{IMEI} pump house 3\n");
    let (server, _dir) = server_with_devices("register=imei&register-grace=300ms", &listed).await;
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined #lobby")).await;
    device.write_all(b"T=21\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "T=21");
    // The console and the API show what the file calls it.
    let view = device_in_api(&server, DEVICE).await;
    assert_eq!(view["label"], "pump house 3", "{view}");
    // The admin opens more such listeners, checked against the same file.
    let api = format!("http://{}/api/v1/listeners", server.http.unwrap());
    let body = json!({"mode": "raw", "addr": "127.0.0.1:0", "device": "register=imei&register-grace=300ms", "auth": "required"});
    let opened = crate::http::post_json(&api, &body).await;
    assert_eq!(opened["auth"], "required", "{opened}");
    let addr: SocketAddr = opened["addr"].as_str().unwrap().parse().unwrap();
    let mut stranger = TcpStream::connect(addr).await.unwrap();
    stranger.write_all(b"861234567890998").await.unwrap();
    closed(&mut stranger).await;

    // A device the file does not list is refused, and closed when its
    // grace ends; it cannot take the listed device's place either.
    let mut stranger = connect_device(&server, b"861234567890999").await;
    closed(&mut stranger).await;
    assert_lobby_holds(&mut app, 2).await;
    device.write_all(b"T=22\n").await.unwrap();
    assert_eq!(expect_message(&mut app).await.2, "T=22");
}

/// An IMEI is printed on the device: a key in the devices file keeps
/// whoever reads it from taking the device's place.
#[tokio::test]
async fn a_device_with_a_key_must_carry_it_in_its_registration() {
    let register = r"register=regex:(?<id>[0-9]{15}),(?<key>[^\r\n]+)\r?\n?";
    let listed = format!("{IMEI} key=k9Qe2xVb7Lm4\n");
    let options = format!("{register}&room=dev-{{id}}&register-grace=300ms");
    let (server, _dir) = server_with_devices(&options, &listed).await;
    let mut app = app_in(&server, DEVICE).await;
    let mut device = connect_device(&server, format!("{IMEI},k9Qe2xVb7Lm4\r\n").as_bytes()).await;
    expect_notice_containing(&mut app, &format!("{DEVICE} joined #{DEVICE}")).await;

    for wrong in [format!("{IMEI},guessed-key\r\n"), format!("{IMEI}\r\n")] {
        let mut impostor = connect_device(&server, wrong.as_bytes()).await;
        closed(&mut impostor).await;
    }
    // The device was not replaced: it still talks to its room.
    device.write_all(b"T=21\n").await.unwrap();
    let (room, from, text) = expect_message(&mut app).await;
    assert_eq!(
        (room.as_str(), from.as_str(), text.as_str()),
        (DEVICE, DEVICE, "T=21")
    );
}

/// The attacker's review: with a keyed device on one listener and an open
/// `register=imei` listener beside it, both naming `dev-{id}`, sending the
/// IMEI to the open one must not close the keyed connection and receive
/// its commands.
#[tokio::test]
async fn an_open_listener_cannot_take_over_a_device_that_registered_with_its_key() {
    let dir = TempDir::new("devices-takeover");
    let file = dir.join("devices");
    std::fs::write(&file, format!("{IMEI} key=k9Qe2xVb7Lm4\n")).unwrap();
    let keyed = r"register=regex:(?<id>[0-9]{15}),(?<key>[^\r\n]+)\r?\n?&auth=required";
    let mut config = Config {
        listeners: vec![
            "127.0.0.1:0".parse().unwrap(),
            format!("raw://127.0.0.1:0?{keyed}&room=dev-{{id}}")
                .parse()
                .unwrap(),
            "raw://127.0.0.1:0?register=imei&room=dev-{id}&register-grace=300ms"
                .parse()
                .unwrap(),
        ],
        ..Config::local()
    };
    config.auth.devices_file = Some(file);
    let server = TestServer::start(config).await;
    let (keyed_addr, open_addr) = (server.listeners[1].addr, server.listeners[2].addr);
    let mut app = app_in(&server, DEVICE).await;
    let mut device = TcpStream::connect(keyed_addr).await.unwrap();
    device
        .write_all(format!("{IMEI},k9Qe2xVb7Lm4\r\n").as_bytes())
        .await
        .unwrap();
    expect_notice_containing(&mut app, &format!("{DEVICE} joined #{DEVICE}")).await;

    // The impostor knows the IMEI (it is printed on the device).
    let mut impostor = TcpStream::connect(open_addr).await.unwrap();
    impostor.write_all(IMEI.as_bytes()).await.unwrap();
    closed(&mut impostor).await;
    // The keyed device was not replaced, and the app's command reaches it.
    app.send_line(format!("/hex {DEVICE} 01 03")).await.unwrap();
    let mut got = [0u8; 2];
    within(
        "the command to reach the keyed device",
        device.read_exact(&mut got),
    )
    .await
    .unwrap();
    assert_eq!(got, [0x01, 0x03]);
    device.write_all(b"T=21\n").await.unwrap();
    let (_, from, text) = expect_message(&mut app).await;
    assert_eq!((from.as_str(), text.as_str()), (DEVICE, "T=21"));
    // A keyed registration still replaces its own stale connection.
    let mut again = TcpStream::connect(keyed_addr).await.unwrap();
    again
        .write_all(format!("{IMEI},k9Qe2xVb7Lm4\r\n").as_bytes())
        .await
        .unwrap();
    closed(&mut device).await;
    server.stop().await;
}

/// Guessing identities gets the address banned, as guessing passwords
/// does: then nothing from it is let in.
#[tokio::test]
async fn an_address_that_keeps_guessing_device_identities_is_banned() {
    let listed = format!("{IMEI}\n");
    let (server, _dir) = server_with_devices("register=imei&register-grace=200ms", &listed).await;
    let mut guesses = Vec::new();
    for guess in 0..switchboard::auth::guard::BAN_AFTER {
        let imei = format!("86123456789{guess:04}");
        guesses.push(connect_device(&server, imei.as_bytes()).await);
    }
    for guess in &mut guesses {
        closed(guess).await;
    }
    // Even a listed device, from that address, is now turned away.
    let mut app = app_in(&server, "lobby").await;
    let mut device = connect_device(&server, IMEI.as_bytes()).await;
    closed(&mut device).await;
    assert_lobby_holds(&mut app, 1).await;
}

/// The devices file is read again on SIGHUP: a device added to it may
/// register without a restart.
#[tokio::test]
async fn a_device_added_to_the_devices_file_registers_after_a_reload() {
    let dir = TempDir::new("devices-reload");
    let file = dir.join("devices");
    std::fs::write(&file, "# no devices yet\n").unwrap();
    let mut server = BinaryServer::start(&[
        "--listen",
        "raw://127.0.0.1:0?register=imei&auth=required&register-grace=300ms",
        "--devices",
        file.to_str().unwrap(),
    ])
    .await;
    let mut device = TcpStream::connect(server.addr(0)).await.unwrap();
    device.write_all(IMEI.as_bytes()).await.unwrap();
    let refused = server.expect_log("device refused").await;
    assert!(
        refused.contains("not in the devices file") && refused.contains(IMEI),
        "{refused}"
    );
    closed(&mut device).await;

    std::fs::write(&file, format!("# the pumps\n{IMEI} tank 1\n")).unwrap();
    server.hang_up();
    server.expect_log("users, tokens and devices").await;
    let mut device = TcpStream::connect(server.addr(0)).await.unwrap();
    device.write_all(IMEI.as_bytes()).await.unwrap();
    let registered = server.expect_log("device registered").await;
    assert!(registered.contains(DEVICE), "{registered}");

    // A file broken by an edit is refused, and the devices it held stay.
    std::fs::write(&file, "x key=short\n").unwrap();
    server.hang_up();
    let kept = server.expect_log("the current ones stay").await;
    assert!(kept.contains("key"), "{kept}");
    server.terminate();
}

#[test]
fn devices_that_must_authenticate_need_a_devices_file() {
    let devices = Config {
        listeners: vec!["raw://127.0.0.1:0?register=imei&auth=required"
            .parse()
            .unwrap()],
        ..Config::local()
    };
    let error = devices.validate().unwrap_err().to_string();
    assert!(error.contains("--devices FILE"), "{error}");
    // And a devices file lets no person in.
    let mut people = Config {
        listeners: vec!["127.0.0.1:0?auth=required".parse().unwrap()],
        ..Config::local()
    };
    people.auth.devices_file = Some("devices".into());
    let error = people.validate().unwrap_err().to_string();
    assert!(error.contains("--users FILE"), "{error}");
}

/// `serve --check-config`, run before a restart or a reload, reads the
/// devices file too.
#[tokio::test]
async fn check_config_finds_a_broken_devices_file() {
    let dir = TempDir::new("devices-check");
    let file = dir.join("devices");
    std::fs::write(&file, format!("{IMEI} pump house 3\nx key=short\n")).unwrap();
    let args = [
        "serve",
        "--check-config",
        "--listen",
        "raw://127.0.0.1:0?register=imei&auth=required",
        "--devices",
        file.to_str().unwrap(),
    ];
    let broken = run(&args).await;
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(said.contains("line 2") && said.contains("key"), "{said}");
    std::fs::write(&file, format!("{IMEI} pump house 3\n")).unwrap();
    let fixed = run(&args).await;
    assert!(fixed.status.success(), "{fixed:?}");
}
