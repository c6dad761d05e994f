//! The HTTP listener through real sockets: WebSocket clients talking with
//! TCP clients, the admin API and its security, metrics, and `status`
//! against a live server and a dead port.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::config::{ConnectionLimits, HistorySettings, HttpSettings};
use switchboard::hub::{HubSettings, QueueLimits};
use switchboard::{Config, Mode, ServerLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A config with a text listener, a raw listener in `devices`, and HTTP.
fn http_config() -> Config {
    Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0", "raw://127.0.0.1:0?room=devices"])
    }
}

async fn start(config: Config) -> (TestServer, SocketAddr) {
    let server = TestServer::start(config).await;
    let http = server.http.expect("an HTTP listener");
    (server, http)
}

async fn ws_connect(http: SocketAddr, query: &str) -> Ws {
    let (ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{http}/ws{query}")),
    )
    .await
    .expect("the WebSocket upgrade succeeds");
    ws
}

/// The next JSON event of a WebSocket client (skipping pings).
async fn ws_event(ws: &mut Ws) -> Value {
    within("a WebSocket event", async {
        loop {
            match ws
                .next()
                .await
                .expect("the connection is open")
                .expect("read")
            {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Close(frame) => panic!("closed while waiting for an event: {frame:?}"),
                _ => continue,
            }
        }
    })
    .await
}

/// Reads events until one satisfies `wanted`.
async fn ws_expect(ws: &mut Ws, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let event = ws_event(ws).await;
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
}

async fn ws_send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send");
}

/// The JSON a request is answered with.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("the request is answered");
    response.json().await.expect("a JSON answer")
}

/// The status a request is answered with.
async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .expect("the request is answered")
        .status()
        .as_u16()
}

/// Reads until the server's close frame; fails if the connection ends without one.
async fn close_frame_of(ws: &mut Ws) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    within("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.expect("a close frame with a code")
                }
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
}

pub(crate) fn http() -> reqwest::Client {
    client_builder().timeout(PATIENCE).build().unwrap()
}

/// The JSON answer to `POST url` with the JSON `body`.
pub(crate) async fn post_json(
    url: impl reqwest::IntoUrl,
    body: &serde_json::Value,
) -> serde_json::Value {
    http()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The JSON body of `GET url`.
pub(crate) async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// The server's `/metrics` page, as Prometheus reads it.
pub(crate) async fn metrics(http: impl std::fmt::Display) -> String {
    let url = format!("http://{http}/metrics");
    self::http()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An HTTP client's builder. The switchboard binary picks rustls's
/// cryptography (ring) for its HTTP client at start; a test does the same.
fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

#[tokio::test]
async fn a_browser_client_and_an_nc_client_talk_both_ways() {
    let (server, http_addr) = start(http_config()).await;
    let mut browser = ws_connect(http_addr, "").await;
    let welcome = ws_event(&mut browser).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["room"], "lobby");
    let (mut nc, nc_name) = join(server.text_addr()).await;

    nc.send_line("hello browser").await.unwrap();
    let heard = ws_expect(&mut browser, "the nc client's line", |e| {
        e["type"] == "message"
    })
    .await;
    assert_eq!(heard["from"], nc_name.as_str());
    assert_eq!(heard["text"], "hello browser");

    ws_send(&mut browser, json!({"type": "nick", "name": "webby"})).await;
    ws_send(&mut browser, json!({"type": "say", "text": "hello nc"})).await;
    let (room, from, text) = expect_message(&mut nc).await;
    assert_eq!(
        (room.as_str(), from.as_str(), text.as_str()),
        ("lobby", "webby", "hello nc")
    );

    // A direct message, by name, across transports.
    nc.send_line("/msg webby psst").await.unwrap();
    let direct = ws_expect(&mut browser, "the direct message", |e| {
        e["type"] == "direct"
    })
    .await;
    assert_eq!(direct["text"], "psst");
    server.stop().await;
}

#[tokio::test]
async fn binary_frames_reach_raw_clients_unchanged_and_back() {
    let (server, http_addr) = start(http_config()).await;
    let mut device = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    let mut browser = ws_connect(http_addr, "?mode=raw&room=devices").await;
    // The device is in the room once the browser's bytes reach it; both
    // joined before anything is sent, so send until the first arrives.
    let frame: Vec<u8> = vec![
        0x01, 0x03, 0x00, 0x00, 0x00, 0x0a, 0xc5, 0xcd, 0xff, 0x00, b'\n',
    ];
    browser
        .send(Message::Binary(frame.clone().into()))
        .await
        .unwrap();
    let mut got = vec![0; frame.len()];
    within(
        "the browser's bytes at the device",
        device.read_exact(&mut got),
    )
    .await
    .unwrap();
    assert_eq!(got, frame);

    let reply = [0xfe, 0x00, 0x80, 0x81];
    device.write_all(&reply).await.unwrap();
    let heard = within("the device's bytes in the browser", async {
        loop {
            match browser.next().await.unwrap().unwrap() {
                Message::Binary(data) => return data,
                Message::Text(text) => panic!("a raw client got text: {text}"),
                _ => continue,
            }
        }
    })
    .await;
    assert_eq!(&heard[..], &reply[..]);
    server.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_line_limit_gets_an_error_and_the_connection_lives() {
    let config = Config {
        max_line: 1024,
        hub: HubSettings {
            queue: QueueLimits {
                soft: 64 * 1024,
                ..Config::local().hub.queue
            },
            ..Config::local().hub
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let mut browser = ws_connect(http_addr, "").await;
    ws_event(&mut browser).await;
    let huge = json!({"type": "say", "text": "x".repeat(3000)});
    ws_send(&mut browser, huge).await;
    let error = ws_expect(&mut browser, "the error", |e| e["type"] == "error").await;
    assert_eq!(error["code"], "line_too_long", "{error}");
    ws_send(&mut browser, json!({"type": "ping", "id": 1})).await;
    let pong = ws_expect(&mut browser, "the pong", |e| e["type"] == "pong").await;
    assert_eq!(pong["id"], 1);
    // Past four times the line limit, the frame is not even read: 1009.
    let enormous = json!({"type": "say", "text": "x".repeat(5000)});
    ws_send(&mut browser, enormous).await;
    let close = close_frame_of(&mut browser).await;
    assert_eq!(close.code, CloseCode::Size, "{close:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_stops_reading_is_cut_off_and_the_room_goes_on() {
    let config = Config {
        limits: ConnectionLimits {
            stall_timeout: Duration::from_millis(500),
            max_messages_per_second: None,
            max_bytes_per_second: None,
            ..http_config().limits
        },
        hub: HubSettings {
            queue: QueueLimits {
                pause: Duration::from_millis(100),
                ..Config::local().hub.queue
            },
            ..Config::local().hub
        },
        // The talker floods on purpose.
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // Never reads: its socket fills, then its queue.
    let mut stuck = ws_connect(http_addr, "").await;
    ws_send(&mut stuck, json!({"type": "nick", "name": "stuck"})).await;
    let (mut listener, _) = join(server.text_addr()).await;
    let mut talker = TcpStream::connect(server.text_addr()).await.unwrap();
    let line = format!("{}\n", "z".repeat(1000)).repeat(100);
    let flood = tokio::spawn(async move {
        for _ in 0..400 {
            talker.write_all(line.as_bytes()).await.unwrap();
        }
        talker
    });
    // The listener reads on, and hears the stuck browser leave.
    let left = within_for(
        Duration::from_secs(20),
        "the stuck browser's leave notice",
        async {
            loop {
                let line = listener.next_line().await.unwrap().expect("open");
                if line.starts_with("* stuck left") {
                    return line;
                }
            }
        },
    )
    .await;
    assert!(
        left.contains("stalled") || left.contains("slow consumer"),
        "{left}"
    );
    flood.abort();
    // Its close frame said why, had it read it. The rooms hear it leave
    // before its connection has finished closing (and is recorded).
    let gone = within("the stuck browser among the recent disconnects", async {
        loop {
            let url = format!("http://{http_addr}/api/v1/clients?state=closed");
            let closed: Value = json_of(http().get(url)).await;
            let clients = closed["clients"].as_array().unwrap();
            if let Some(gone) = clients.iter().find(|c| c["name"] == "stuck") {
                return gone.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(gone["mode"], "ws");
    assert!(
        ["stalled", "slow_consumer", "too_slow"].contains(&gone["reason_code"].as_str().unwrap()),
        "{gone}"
    );
    drop(stuck);
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_browser_is_pinged_and_one_that_never_answers_is_dropped() {
    let config = Config {
        http: HttpSettings {
            ws_ping_interval: Duration::from_millis(200),
            ws_pong_timeout: Duration::from_millis(300),
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // A client that reads (and so answers pings) stays, well past the timeout.
    let alive = ws_connect(http_addr, "").await;
    let (mut alive_tx, mut alive_rx) = alive.split();
    let (pings_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reading = tokio::spawn(async move {
        while let Some(Ok(message)) = alive_rx.next().await {
            match message {
                Message::Ping(_) => {
                    let _ = pings_tx.send(());
                }
                Message::Text(text) => {
                    let _ = events_tx.send(serde_json::from_str(&text).unwrap());
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    within("three pings", async {
        for _ in 0..3 {
            pings.recv().await.expect("a ping");
        }
    })
    .await;
    // A client that did the handshake and then never reads, so never
    // answers: dropped by the pong timeout.
    let mut silent = ws_connect(http_addr, "").await;
    ws_send(&mut silent, json!({"type": "nick", "name": "silent"})).await;
    let client = http();
    within("the silent browser to be dropped", async {
        loop {
            let closed: Value =
                json_of(client.get(format!("http://{http_addr}/api/v1/clients?state=closed")))
                    .await;
            if let Some(gone) = closed["clients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "silent")
            {
                assert_eq!(gone["reason_code"], "read_error", "{gone}");
                assert!(gone["reason"].as_str().unwrap().contains("pong"), "{gone}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The reading one is still there, and answers.
    alive_tx
        .send(Message::Text(
            json!({"type": "ping", "id": "still"}).to_string().into(),
        ))
        .await
        .unwrap();
    within("the live browser's pong", async {
        while let Some(event) = events.recv().await {
            if event["type"] == "pong" && event["id"] == "still" {
                return;
            }
        }
        panic!("the live browser's connection ended");
    })
    .await;
    server.stop().await;
    reading.await.unwrap();
    drop(silent);
}

#[tokio::test]
async fn close_frames_say_why_with_the_proper_code() {
    let (server, http_addr) = start(http_config()).await;
    let mut browser = ws_connect(http_addr, "").await;
    ws_send(&mut browser, json!({"type": "nick", "name": "kickme"})).await;
    ws_expect(&mut browser, "the rename", |e| e["type"] == "renamed").await;
    let client = http();
    let clients: Value =
        json_of(client.get(format!("http://{http_addr}/api/v1/clients?filter=kickme"))).await;
    let id = clients["clients"][0]["id"]
        .as_u64()
        .expect("the browser's id");
    let response = client
        .delete(format!("http://{http_addr}/api/v1/clients/{id}"))
        .json(&json!({"reason": "testing kicks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (bye, close) = within("the goodbye and close frame", async {
        let mut bye = None;
        loop {
            match browser.next().await {
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    if event["type"] == "bye" {
                        bye = Some(event);
                    }
                }
                Some(Ok(Message::Close(frame))) => return (bye, frame),
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await;
    let bye = bye.expect("a bye event");
    assert!(
        bye["reason"].as_str().unwrap().contains("testing kicks"),
        "{bye}"
    );
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(close.reason.contains("testing kicks"), "{}", close.reason);

    // A server shutting down says so: 1001, going away.
    let mut browser = ws_connect(http_addr, "").await;
    ws_event(&mut browser).await;
    let stopping = tokio::spawn(server.stop());
    let close = close_frame_of(&mut browser).await;
    assert_eq!(close.code, CloseCode::Away);
    stopping.await.unwrap();
}

/// A `/ws` request as a browser page sends it, with `Origin` and `Host`.
async fn ws_status_as_page(http_addr: SocketAddr, origin: &str, host: &str) -> u16 {
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    request.headers_mut().insert("host", host.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_page_that_dns_rebinding_points_at_a_loopback_relay_cannot_open_a_websocket() {
    // evil.example resolves to 127.0.0.1 after the page loaded: its page
    // asks for /ws with Origin and Host both evil.example.
    let (server, http_addr) = start(http_config()).await;
    let port = http_addr.port();
    let evil = format!("evil.example:{port}");
    assert_eq!(
        ws_status_as_page(http_addr, &format!("http://{evil}"), &evil).await,
        403
    );
    // The server's own names still work: loopback, and its address.
    for host in [format!("localhost:{port}"), http_addr.to_string()] {
        assert_eq!(
            ws_status_as_page(http_addr, &format!("http://{host}"), &host).await,
            101,
            "{host}"
        );
    }
    server.stop().await;
    // A name the operator gives with --server-name is the server's own.
    let config = Config {
        http: HttpSettings {
            server_names: vec!["relay.example.com".into()],
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let own = format!("relay.example.com:{}", http_addr.port());
    assert_eq!(
        ws_status_as_page(http_addr, &format!("http://{own}"), &own).await,
        101
    );
    server.stop().await;
}

#[tokio::test]
async fn a_page_from_another_site_cannot_open_a_websocket() {
    let (server, http_addr) = start(http_config()).await;
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    // Its own origin is fine, and so is an allowed one.
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", format!("http://{http_addr}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("same origin");
    server.stop().await;

    let config = Config {
        http: HttpSettings {
            allowed_origins: vec!["https://app.example.com".into()],
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("an allowed origin");
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_lists_sends_kicks_and_opens_listeners() {
    let (server, http_addr) = start(http_config()).await;
    let base = format!("http://{http_addr}");
    let client = http();
    let (mut alice, _) = join(server.text_addr()).await;
    alice.send_line("/nick alice").await.unwrap();
    alice.send_line("one").await.unwrap();
    sync(&mut alice).await;

    let stats: Value = json_of(client.get(format!("{base}/api/v1/stats"))).await;
    assert_eq!(stats["clients"]["current"], 1);
    assert_eq!(stats["rooms"], 1);
    assert!(stats["messages"]["in"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["listeners"].as_array().unwrap().len(), 3);

    let page: Value = json_of(client.get(format!("{base}/api/v1/clients?sort=name"))).await;
    assert_eq!(page["total"], 1);
    let alice_view = &page["clients"][0];
    assert_eq!(alice_view["name"], "alice");
    assert_eq!(alice_view["mode"], "text");
    assert_eq!(alice_view["rooms"], json!(["lobby"]));
    assert!(alice_view["bytes_in"].as_u64().unwrap() > 0);

    let rooms: Value = json_of(client.get(format!("{base}/api/v1/rooms"))).await;
    assert_eq!(rooms["rooms"][0]["name"], "lobby");
    let lobby: Value = json_of(client.get(format!("{base}/api/v1/rooms/lobby"))).await;
    assert_eq!(lobby["members"][0]["name"], "alice");
    let missing = client
        .get(format!("{base}/api/v1/rooms/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "no_such_room");

    // Send to the room, as text, and to alice, as bytes.
    let sent: Value = json_of(
        client
            .post(format!("{base}/api/v1/send"))
            .json(&json!({"room": "lobby", "text": "hello from the API"})),
    )
    .await;
    assert_eq!(sent["delivered"], 1);
    let (_, from, text) = expect_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("admin", "hello from the API")
    );
    let bad = client
        .post(format!("{base}/api/v1/send"))
        .json(&json!({"room": "lobby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Nobody may pass for the admin.
    alice.send_line("/nick Admin").await.unwrap();
    expect_line(
        &mut alice,
        "the refusal",
        |l| matches!(l, ServerLine::Error(e) if e.contains("reserved")),
    )
    .await;

    // Open a listener on any free port; a client connects there; close it.
    let opened = client
        .post(format!("{base}/api/v1/listeners"))
        .json(&json!({"mode": "text", "addr": "127.0.0.1:0", "room": "temp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let opened: Value = opened.json().await.unwrap();
    let addr: SocketAddr = opened["addr"].as_str().unwrap().parse().unwrap();
    let (mut visitor, _) = join(addr).await;
    visitor.send_line("/who").await.unwrap();
    expect_line(
        &mut visitor,
        "the temp room",
        |l| matches!(l, ServerLine::Notice(n) if n.contains("#temp")),
    )
    .await;
    let taken = client
        .post(format!("{base}/api/v1/listeners"))
        .json(&json!({"addr": addr.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409);
    assert_eq!(opened["auth"], "none");
    for (request, code) in [
        (json!({"auth": "required"}), "no_credentials"),
        (json!({"mode": "tls"}), "no_certificate"),
        (json!({"auth": "maybe"}), "bad_auth"),
    ] {
        let refused = client
            .post(format!("{base}/api/v1/listeners"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{request}");
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], code, "{request}");
    }
    let id = opened["id"].as_u64().unwrap();
    let closed = client
        .delete(format!("{base}/api/v1/listeners/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let lines = read_to_end(&mut visitor).await;
    assert!(lines.last().unwrap().contains("listener"), "{lines:?}");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the closed listener still accepts"
    );
    let listeners: Value = client
        .get(format!("{base}/api/v1/listeners"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_config = listeners
        .as_array()
        .unwrap_or_else(|| panic!("{listeners}"))
        .iter()
        .find(|l| l["origin"] == "config")
        .unwrap_or_else(|| panic!("no listener from the configuration: {listeners}"))["id"]
        .as_u64()
        .unwrap();
    let config_listener = client
        .delete(format!("{base}/api/v1/listeners/{from_config}"))
        .send()
        .await
        .unwrap();
    assert_eq!(config_listener.status(), 409);

    // Kick alice with a reason.
    let id = alice_view["id"].as_u64().unwrap();
    let kicked = client
        .delete(format!("{base}/api/v1/clients/{id}"))
        .json(&json!({"reason": "enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kicked.status(), 200);
    let lines = read_to_end(&mut alice).await;
    assert!(
        lines
            .last()
            .unwrap()
            .contains("kicked by the server's admin: enough"),
        "{lines:?}"
    );
    let gone = client
        .delete(format!("{base}/api/v1/clients/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Recorded once its connection has finished closing, which its peer
    // may see a moment before.
    let closed = within(
        "the kicked and the closed listener's clients among the recent disconnects",
        async {
            loop {
                let url = format!("{base}/api/v1/clients?state=closed");
                let closed: Value = json_of(client.get(url)).await;
                let codes: Vec<&str> = closed["clients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|c| c["reason_code"].as_str())
                    .collect();
                if codes.contains(&"kicked") && codes.contains(&"listener_closed") {
                    return closed;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    let codes: Vec<&str> = closed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason_code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"kicked") && codes.contains(&"listener_closed"),
        "{codes:?}"
    );

    let openapi: Value = json_of(client.get(format!("{base}/api/v1/openapi.json"))).await;
    assert!(
        openapi["paths"]["/api/v1/clients/{id}"]["delete"].is_object(),
        "{openapi}"
    );
    server.stop().await;
}

/// A value the API takes one of a few of (a listing's state, sort and
/// order, a listener's mode and auth) is refused with its own code and the
/// values there are; the OpenAPI document lists them too.
#[tokio::test]
async fn a_value_that_is_not_one_of_the_choices_is_refused_naming_them() {
    let (server, http) = start(http_config()).await;
    let base = format!("http://{http}");
    let client = client_builder().build().unwrap();
    for (query, code, lists) in [
        ("sort=size", "bad_sort", "`messages_in`"),
        ("state=gone", "bad_state", "`closed`"),
        ("order=up", "bad_order", "`desc`"),
    ] {
        let response = client
            .get(format!("{base}/api/v1/clients?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let refused: Value = response.json().await.unwrap();
        assert_eq!(refused["error"]["code"], code, "{query}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(lists), "{query}: {message}");
    }
    let refused: Value = json_of(
        client
            .post(format!("{base}/api/v1/listeners"))
            .json(&json!({"mode": "xml"})),
    )
    .await;
    assert_eq!(refused["error"]["code"], "bad_mode", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`raw+tls`"),
        "{refused}"
    );
    let sorted: Value = json_of(client.get(format!(
        "{base}/api/v1/clients?state=closed&sort=bytes_in&order=desc"
    )))
    .await;
    assert!(sorted["clients"].is_array(), "{sorted}");

    let openapi: Value = json_of(client.get(format!("{base}/api/v1/openapi.json"))).await;
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(schemas["SortOrder"]["enum"], json!(["asc", "desc"]));
    assert_eq!(schemas["Auth"]["enum"], json!(["none", "required"]));
    // Every reference in the document leads somewhere.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(to)) = map.get("$ref") {
                    found.push(to.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    references(&openapi, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for to in found {
        let name = to.strip_prefix("#/components/schemas/").unwrap_or(&to);
        assert!(schemas[name].is_object(), "{to} leads nowhere");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_connections_messages_and_disconnects_by_mode() {
    let (server, http_addr) = start(http_config()).await;
    let (mut text, _) = join(server.text_addr()).await;
    let mut browser = ws_connect(http_addr, "").await;
    ws_event(&mut browser).await;
    text.send_line("counted").await.unwrap();
    ws_expect(&mut browser, "the message", |e| e["type"] == "message").await;
    text.send_line("/quit").await.unwrap();
    read_to_end(&mut text).await;
    let metrics = within("metrics with the quit counted", async {
        loop {
            let metrics = metrics(http_addr).await;
            if metrics.contains("switchboard_disconnects_total{reason=\"quit\"} 1") {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for line in [
        "switchboard_clients{mode=\"ws\"} 1",
        "switchboard_connections_total{mode=\"text\"} 1",
        "switchboard_messages_received_total{mode=\"text\"} 1",
        "switchboard_messages_delivered_total{mode=\"ws\"}",
        "switchboard_http_requests_total{route=\"/ws\",status=\"101\"} 1",
        "# EOF",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_the_api_wants_it_and_slows_down_guessers() {
    let config = Config {
        http: HttpSettings {
            admin_token: Some(TOKEN.into()),
            admin_login_attempts: 3,
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let client = http();
    // The console sends a browser without the cookie to the login page.
    let no_redirects = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects
        .get(format!("http://{http_addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login");
    let url = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(status_of(client.get(&url)).await, 401);
    assert_eq!(status_of(client.get(&url).bearer_auth(TOKEN)).await, 200);
    assert_eq!(
        status_of(
            client
                .get(format!("http://{http_addr}/metrics"))
                .bearer_auth(TOKEN)
        )
        .await,
        200
    );
    for _ in 0..3 {
        let wrong = client
            .get(&url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // Past the limit, wrong tokens wait out the minute...
    let limited = client
        .get(&url)
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    // ...and the right one is never refused because of them: behind a
    // proxy, an attacker's guesses come from the admin's address too.
    assert_eq!(status_of(client.get(&url).bearer_auth(TOKEN)).await, 200);
    // /ws and /healthz stay open.
    assert_eq!(
        status_of(client.get(format!("http://{http_addr}/healthz"))).await,
        200
    );
    ws_connect(http_addr, "").await;
    server.stop().await;
}

#[tokio::test]
async fn the_console_login_keeps_the_token_in_a_strict_http_only_cookie() {
    let config = Config {
        http: HttpSettings {
            admin_token: Some(TOKEN.into()),
            ..http_config().http
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let client = client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("http://{http_addr}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let page = client
        .get(format!("http://{http_addr}/"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    // The cookie is a session that ends, not the token.
    assert!(!cookie.contains(TOKEN), "{cookie}");
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let stats = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(
        status_of(client.get(&stats).header("cookie", pair)).await,
        200
    );
    // Logging out revokes it: the same cookie, replayed, opens nothing.
    let logout = client
        .post(format!("http://{http_addr}/logout"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    assert_eq!(
        status_of(client.get(&stats).header("cookie", pair)).await,
        401
    );
    // A made-up cookie opens nothing either.
    let forged = format!("switchboard_admin={}", "ab".repeat(32));
    assert_eq!(
        status_of(client.get(&stats).header("cookie", forged)).await,
        401
    );
    let wrong = client
        .post(format!("http://{http_addr}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["location"], "/login?failed=1");
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_the_admin_side_answers_only_locally() {
    let (server, http_addr) = start(http_config()).await;
    let client = http();
    let url = format!("http://{http_addr}/api/v1/stats");
    assert_eq!(status_of(client.get(&url)).await, 200);
    // A proxy forwarding the internet to a local server is not local.
    let forwarded = client
        .get(&url)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 403);
    // A page on another site (or a DNS name rebound to 127.0.0.1) is not either.
    let rebound = client
        .get(&url)
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let cross_site = client
        .get(&url)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_nothing_a_local_proxy_passes_on_reaches_the_admin() {
    let (server, http_addr) = start(http_config()).await;
    let client = http();
    let stats = format!("http://{http_addr}/api/v1/stats");
    let listeners = format!("http://{http_addr}/api/v1/listeners");
    // nginx with `proxy_set_header Host $host` and nothing else passes on
    // the Host its client chose, from 127.0.0.1: a browser opening the
    // server by its public address sends such a Host without forging it.
    for host in [
        "203.0.113.10",
        "203.0.113.10:8080",
        "[2001:db8::1]:80",
        "10.0.0.5",
    ] {
        let refused = client
            .get(&stats)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "Host: {host}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "local_only", "{body}");
        let open = client
            .post(&listeners)
            .header("host", host)
            .json(&serde_json::json!({"spec": "127.0.0.1:0"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            open.status(),
            403,
            "POST /api/v1/listeners with Host: {host}"
        );
    }
    // A loopback Host passes through a proxy too: whatever header the
    // proxy adds gives it away (the documented block adds X-Forwarded-For).
    for header in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "via",
        "x-forwarded-proto",
    ] {
        let refused = client
            .get(&stats)
            .header("host", "127.0.0.1")
            .header(header, "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{header}");
    }
    // The live feed (all traffic readable) is refused the same way.
    let live = client
        .get(format!("http://{http_addr}/api/v1/live"))
        .header("host", "203.0.113.10")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 403);
    // What the admin's own tools send still works.
    for host in [
        "localhost",
        &http_addr.to_string(),
        &format!("localhost:{}", http_addr.port()),
    ] {
        let ok = client
            .get(&stats)
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "Host: {host}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_documented_nginx_block_forwards_the_client_address() {
    // Every nginx block in the README and docs/*.md says who the client is,
    // so that a server behind it without a token keeps its admin local; the
    // docs show at least one.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    docs.extend(pages);
    let mut found = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        // Every fenced block that configures an HTTP proxy.
        let blocks = text
            .split("```")
            .skip(1)
            .step_by(2)
            .filter(|block| block.contains("proxy_pass") && block.contains("location"));
        for block in blocks {
            found += 1;
            assert!(
                block.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"),
                "{}: an nginx block without X-Forwarded-For:\n{block}",
                doc.display()
            );
        }
    }
    assert!(found > 0, "no nginx block in {docs:?}");
}

#[tokio::test]
async fn a_public_http_address_without_a_token_refuses_to_start() {
    // With a limit: a regression that starts serving fails, not hangs.
    let output = run(&["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-token"), "{stderr}");
}

#[tokio::test]
async fn status_shows_a_live_server_and_fails_clearly_on_a_dead_port() {
    let mut server =
        BinaryServer::start(&["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"]).await;
    let http_addr = server.http();
    let (mut client, _) = join(server.addr(0)).await;
    client.send_line("/nick statler").await.unwrap();
    sync(&mut client).await;
    let status = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("status")
            .args(args)
            .env_remove("SWITCHBOARD_ADMIN_TOKEN")
            .env_remove("SWITCHBOARD_HTTP")
            .output()
            .await
            .unwrap()
    };
    let out = status(vec![http_addr.clone()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("clients   1 now"), "{text}");
    assert!(
        text.contains("LISTENERS") && text.contains("lobby"),
        "{text}"
    );
    let out = status(vec![http_addr.clone(), "--json".into()]).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stats"]["clients"]["current"], 1);

    // A port nothing listens on: non-zero, and a line saying so.
    let (_held, dead) = nothing_listens();
    let out = status(vec![dead.to_string()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach switchboard"), "{stderr}");
    server.terminate();
    server.expect_log("shut down").await;
}

/// A `/ws` upgrade as nginx forwards it, for the client at `client`: the
/// answer's status.
async fn ws_status_forwarded_for(http_addr: SocketAddr, client: &str) -> (u16, Option<Ws>) {
    let mut request = format!("ws://{http_addr}/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => (101, Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_counted_as_itself() {
    // nginx on this machine: every request from 127.0.0.1.
    let config = Config {
        http: HttpSettings {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            admin_token: Some(TOKEN.into()),
            admin_login_attempts: 2,
            ..http_config().http
        },
        limits: ConnectionLimits {
            max_connections_per_ip: Some(1),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // One connection per address: the proxy's many clients are many addresses.
    let (first, _kept) = ws_status_forwarded_for(http_addr, "203.0.113.5").await;
    assert_eq!(first, 101);
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.5").await.0,
        503
    );
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.6").await.0,
        101
    );
    // A guesser locks out its own address, not the admin's.
    let client = http();
    let stats = format!("http://{http_addr}/api/v1/stats");
    for _ in 0..3 {
        client
            .get(&stats)
            .bearer_auth("wrong-token-wrong-token")
            .header("x-forwarded-for", "198.51.100.66")
            .send()
            .await
            .unwrap();
    }
    let guesser = client
        .get(&stats)
        .bearer_auth("wrong-token-wrong-token")
        .header("x-forwarded-for", "198.51.100.66")
        .send()
        .await
        .unwrap();
    assert_eq!(guesser.status(), 429);
    let admin = client
        .get(&stats)
        .bearer_auth("another-wrong-token")
        .header("x-forwarded-for", "203.0.113.10")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401, "another address is not locked out");
    server.stop().await;

    // Not trusted: a client's X-Forwarded-For is its own words, ignored.
    let config = Config {
        limits: ConnectionLimits {
            max_connections_per_ip: Some(1),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let (first, _kept) = ws_status_forwarded_for(http_addr, "203.0.113.5").await;
    assert_eq!(first, 101);
    assert_eq!(
        ws_status_forwarded_for(http_addr, "203.0.113.6").await.0,
        503
    );
    server.stop().await;
}

/// Reads until the server closes the connection; what it said.
async fn until_closed(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    within(what, async {
        let mut said = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return said,
                Ok(n) => said.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
}

#[tokio::test]
async fn slow_or_silent_http_connections_are_closed_and_counted_like_clients() {
    let config = Config {
        http: HttpSettings {
            header_timeout: Duration::from_secs(1),
            ..http_config().http
        },
        limits: ConnectionLimits {
            max_connections_per_ip: Some(2),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    // A slowloris: headers a byte at a time, never finished; and a
    // connection that says nothing at all.
    let mut trickling = TcpStream::connect(http_addr).await.unwrap();
    trickling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(http_addr).await.unwrap();
    // Together they hold this address's two connections: a TCP client from
    // it is refused, as a third would be.
    let mut third = TcpStream::connect(server.text_addr()).await.unwrap();
    let said = String::from_utf8_lossy(&until_closed(&mut third, "the refusal").await).into_owned();
    assert!(said.contains("too many connections"), "{said}");
    let mut refused = TcpStream::connect(http_addr).await.unwrap();
    refused
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut refused, "the 503").await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    // Both are closed once the header timeout has passed.
    until_closed(&mut trickling, "the slowloris to be closed").await;
    until_closed(&mut silent, "the silent connection to be closed").await;
    // Their slots are free again.
    assert_eq!(
        status_of(http().get(format!("http://{http_addr}/healthz"))).await,
        200
    );
    // A keep-alive connection that goes quiet is closed the same way.
    let mut idle = TcpStream::connect(http_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer =
        String::from_utf8_lossy(&until_closed(&mut idle, "the idle keep-alive to be closed").await)
            .into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_every_pending_tls_handshake() {
    let server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0",
        "--http",
        "https://127.0.0.1:0",
        "--tls-self-signed",
        "--max-connections-per-ip",
        "0",
    ])
    .await;
    let https: SocketAddr = server.listeners[1]
        .strip_prefix("https://")
        .unwrap()
        .parse()
        .unwrap();
    // 127.0.0.1 opens connections and never says hello: past its share
    // (a sixteenth of the 1,024 handshakes), the next is closed at once.
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(TcpStream::connect(https).await.unwrap());
    }
    let mut over = TcpStream::connect(https).await.unwrap();
    until_closed(
        &mut over,
        "the connection past the address's share to be closed",
    )
    .await;
    // Another address still gets through: a whole handshake and a request.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(https).await.unwrap();
    let tls = switchboard::ClientTls::insecure().unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls.rustls_config()));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = within(
        "the other address's handshake",
        connector.connect(name, stream),
    )
    .await
    .expect("the handshake completes");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the answer", stream.read_to_end(&mut answer))
        .await
        .ok();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(silent);
}

#[tokio::test]
async fn websocket_pings_count_against_the_rate_limits() {
    let config = Config {
        limits: ConnectionLimits {
            max_messages_per_second: switchboard::throttle::Rate::per_second(100),
            rate_limit_grace: Duration::from_secs(1),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let ws = ws_connect(http_addr, "").await;
    let (mut sink, mut stream) = ws.split();
    // Pings flat out: tungstenite answers them inside the transport, but
    // they are paced like messages, and a client that keeps it up past
    // the grace is cut off, as one sending messages is.
    let flooding = tokio::spawn(async move {
        while sink.send(Message::Ping(vec![0u8; 8].into())).await.is_ok() {}
    });
    let ended = within("the flooder to be cut off", async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await;
    if let Some(reason) = ended {
        assert!(reason.contains("rate limited"), "{reason}");
    }
    flooding.abort();
    server.stop().await;
}

#[tokio::test]
async fn an_unfinished_fragmented_websocket_message_is_held_to_the_line_timeout() {
    let config = Config {
        limits: ConnectionLimits {
            line_timeout: Some(Duration::from_secs(1)),
            ..http_config().limits
        },
        ..http_config()
    };
    let (server, http_addr) = start(config).await;
    let mut ws = ws_connect(http_addr, "").await;
    ws_event(&mut ws).await; // the welcome
                             // A text frame with FIN=0, never continued, while the client answers
                             // pings: its message is never finished.
    let first = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        b"{\"type\":\"say\",\"text\":\"".to_vec(),
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        false,
    );
    ws.send(Message::Frame(first)).await.unwrap();
    let frame = close_frame_of(&mut ws).await;
    assert!(frame.reason.contains("unfinished"), "{frame:?}");
    assert!(frame.reason.contains("line timeout"), "{frame:?}");
    server.stop().await;
}

/// What a client holds of a WebSocket message it has not finished counts
/// against the memory budget, as an unfinished line does: the API shows
/// it held, and it is given back when the message is finished.
#[tokio::test]
async fn an_unfinished_websocket_message_counts_against_the_memory_budget() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let (server, http_addr) = start(http_config()).await;
    let base = format!("http://{http_addr}");
    let client = client_builder().build().unwrap();
    let held = || async {
        let stats = json_of(client.get(format!("{base}/api/v1/stats"))).await;
        stats["memory"]["held"].as_u64().unwrap()
    };
    let mut ws = ws_connect(http_addr, "").await;
    ws_event(&mut ws).await; // the welcome
    let start = "{\"type\":\"say\",\"text\":\"";
    let part = "x".repeat(200 * 1024);
    let first = Frame::message(format!("{start}{part}"), OpCode::Data(Data::Text), false);
    ws.send(Message::Frame(first)).await.unwrap();
    within("the unfinished message to be counted", async {
        while held().await < 200 * 1024 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let last = Frame::message("\"}", OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(last)).await.unwrap();
    // The message, finished, is one over the line limit: refused, and
    // nothing of it is held any more.
    let refused = ws_expect(&mut ws, "the refusal", |e| e["type"] == "error").await;
    assert_eq!(refused["code"], "line_too_long", "{refused}");
    within("the finished message to be given back", async {
        while held().await >= 200 * 1024 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop().await;
}

/// What held when the HTTP listener was attacked is kept: a form post
/// (`text/plain`, which a page of any site may send without asking) is not
/// taken as JSON; a request that is both `Content-Length` and chunked
/// (smuggling) is refused; so are headers past hyper's limit, a body past
/// the API's limit and JSON nested past serde's; `..` never leaves the
/// console's assets; and the server serves on after all of it.
#[tokio::test]
async fn hostile_http_requests_are_refused_and_the_server_serves_on() {
    let (server, http_addr) = start(http_config()).await;
    let base = format!("http://{http_addr}");
    let client = client_builder().build().unwrap();
    let (mut room, _) = join(server.text_addr()).await;

    let form = client
        .post(format!("{base}/api/v1/send"))
        .header("content-type", "text/plain")
        .body(r#"{"room":"lobby","text":"from a form"}"#);
    assert_eq!(status_of(form).await, 415);

    let mut smuggler = TcpStream::connect(http_addr).await.unwrap();
    smuggler
        .write_all(
            b"POST /api/v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
              POST /api/v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 35\r\n\r\n{\"room\":\"lobby\",\"text\":\"smuggled\"}",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut smuggler, "the smuggler's answer").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut big_headers = TcpStream::connect(http_addr).await.unwrap();
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    // The server may stop reading once it has refused: what matters is
    // the answer.
    let _ = big_headers.write_all(header.as_bytes()).await;
    let answer = until_closed(&mut big_headers, "the answer to huge headers").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let big_body = client
        .post(format!("{base}/api/v1/send"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"room":"lobby","text":"{}"}}"#,
            "a".repeat(4 << 20)
        ));
    assert_eq!(status_of(big_body).await, 413);
    let nested = client
        .post(format!("{base}/api/v1/send"))
        .header("content-type", "application/json")
        .body(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    assert_eq!(status_of(nested).await, 422);

    for path in [
        "/assets/..%2f..%2fCargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let mut raw = TcpStream::connect(http_addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        raw.write_all(request.as_bytes()).await.unwrap();
        let answer = until_closed(&mut raw, "the answer to a traversal").await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("[package]"), "{path}: {answer}");
    }

    // None of it reached the room, and the server still serves.
    let heard = heard_until_pong(&mut room).await;
    assert!(heard.is_empty(), "{heard:?}");
    assert_eq!(status_of(client.get(format!("{base}/healthz"))).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_browser_that_reconnects_resumes_where_it_was() {
    let (server, http) = start(Config {
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        ..http_config()
    })
    .await;
    let (mut nc, _) = join(server.text_addr()).await;
    let mut browser = ws_connect(http, "").await;
    ws_expect(&mut browser, "the welcome", |e| e["type"] == "welcome").await;
    nc.say("one").await.unwrap();
    let one = ws_expect(&mut browser, "one", |e| e["text"] == "one").await;
    drop(browser);
    for text in ["two", "three"] {
        nc.say(text).await.unwrap();
    }
    sync(&mut nc).await;

    let mut browser = ws_connect(http, "").await;
    ws_expect(&mut browser, "the welcome", |e| e["type"] == "welcome").await;
    browser
        .send(Message::text(
            json!({"type": "join", "room": "lobby", "since": one["offset"]}).to_string(),
        ))
        .await
        .unwrap();
    let two = ws_expect(&mut browser, "two", |e| e["type"] == "message").await;
    assert_eq!(
        (two["text"].as_str(), two["history"].as_bool()),
        (Some("two"), Some(true))
    );
    let three = ws_expect(&mut browser, "three", |e| e["type"] == "message").await;
    assert_eq!(three["text"], "three");
    nc.say("four").await.unwrap();
    let four = ws_expect(&mut browser, "four", |e| e["type"] == "message").await;
    assert_eq!(four["text"], "four");
    assert!(four.get("history").is_none());
}
