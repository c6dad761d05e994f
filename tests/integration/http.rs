//! The HTTP listener through real sockets: WebSocket clients talking with
//! TCP clients, what a browser page of another site may not do, hostile
//! HTTP requests, and a browser that reconnects. The admin side (the API,
//! its guards, metrics, `status`) is in `admin.rs`; the helpers both use
//! are here.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use crate::admin::until_closed;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::config::{ConnectionLimits, HistorySettings, HttpSettings};
use switchboard::hub::{HubSettings, QueueLimits};
use switchboard::{Config, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// A config with a text listener, a raw listener in `devices`, and HTTP.
pub(crate) fn http_config() -> Config {
    Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..config_with(&["127.0.0.1:0", "raw://127.0.0.1:0?room=devices"])
    }
}

pub(crate) async fn start(config: Config) -> (TestServer, SocketAddr) {
    let server = TestServer::start(config).await;
    let http = server.http.expect("an HTTP listener");
    (server, http)
}

pub(crate) async fn ws_connect(http: SocketAddr, query: &str) -> Ws {
    let (ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{http}/ws{query}")),
    )
    .await
    .expect("the WebSocket upgrade succeeds");
    ws
}

/// The next JSON event of a WebSocket client (skipping pings).
pub(crate) async fn ws_event(ws: &mut Ws) -> Value {
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
pub(crate) async fn ws_expect(ws: &mut Ws, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
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

pub(crate) async fn ws_send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send");
}

/// The JSON a request is answered with.
pub(crate) async fn json_of(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("the request is answered");
    response.json().await.expect("a JSON answer")
}

/// The status a request is answered with.
pub(crate) async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .expect("the request is answered")
        .status()
        .as_u16()
}

/// Reads until the server's close frame; fails if the connection ends without one.
pub(crate) async fn close_frame_of(
    ws: &mut Ws,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
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
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
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
pub(crate) async fn ws_status_as_page(http_addr: SocketAddr, origin: &str, host: &str) -> u16 {
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
