//! The playground (`--playground`): the online TCP test page, self-hosted.
//! A visitor gets a port of their own, sees what a client sends there and
//! answers it; nobody else sees or reaches it, and it closes when left
//! alone. Each story runs the real binary over real sockets.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{within, BinaryServer};
use futures_util::StreamExt;

/// A server with a text listener and the playground on its HTTP listener,
/// handing out ports of a range of its own; `extra` arguments after.
async fn server(extra: &[&str]) -> (BinaryServer, String) {
    // A range of 25 ports of its own among this process's stories (one
    // fills its range on purpose), and apart from other processes'; a
    // port some other program holds is skipped by the playground, which
    // takes the next.
    let slot = story_slot();
    let base = 20_000 + (std::process::id() % 40) as u16 * 400 + slot * 25;
    // Half the stories name the ports' address, as behind a proxy; the
    // others take the HTTP listener's.
    let ip = if slot % 2 == 1 { "127.0.0.1:" } else { "" };
    let ports = format!("{ip}{base}-{}", base + 24);
    let mut args = vec![
        "--listen",
        "text://127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--playground",
        "--playground-ports",
        &ports,
    ];
    args.extend_from_slice(extra);
    let server = BinaryServer::start(&args).await;
    let http = server.http();
    (server, http)
}

/// Each story of this test process a slot of its own (16: more than
/// there are stories here).
fn story_slot() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

/// A browser of the playground: its cookie, once it has one.
#[derive(Default)]
struct Visitor {
    cookie: Option<String>,
}

impl Visitor {
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = crate::http::http().request(method, url);
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    /// Asks for a port of `mode`: the status, and the answer.
    async fn open(&mut self, http: &str, mode: &str) -> (u16, Value) {
        let response = self
            .request(
                reqwest::Method::POST,
                format!("http://{http}/play/api/ports"),
            )
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        if let Some(cookie) = response.headers().get("set-cookie") {
            let cookie = cookie.to_str().unwrap();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        }
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut body: Value = response.json().await.unwrap();
        if let Some(retry) = retry {
            body["retry_after"] = retry.into();
        }
        (status, body)
    }

    /// Comes in by a share link, as its page does: the status, and the
    /// answer; keeps the cookie it is given.
    async fn join(&mut self, http: &str, link: &str) -> (u16, Value) {
        let response = self
            .request(
                reqwest::Method::POST,
                format!("http://{http}/play/api/join"),
            )
            .json(&json!({ "watch": link }))
            .send()
            .await
            .unwrap();
        if let Some(cookie) = response.headers().get("set-cookie") {
            self.cookie = Some(
                cookie
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, http: &str, port: u64) -> (u16, Value) {
        let response = self
            .request(
                reqwest::Method::GET,
                format!("http://{http}/play/api/ports/{port}"),
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, http: &str, port: u64, body: Value) -> (u16, Value) {
        let response = self
            .request(
                reqwest::Method::POST,
                format!("http://{http}/play/api/ports/{port}/send"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn live(
        &self,
        http: &str,
        port: u64,
    ) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>, u16>
    {
        let mut request = format!("ws://{http}/play/api/ports/{port}/live")
            .into_client_request()
            .unwrap();
        if let Some(cookie) = &self.cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(other) => panic!("{other}"),
        }
    }
}

/// The next traffic item of the live feed whose text contains `text`.
async fn traffic(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    text: &str,
) -> Value {
    within(&format!("{text:?} in the live feed"), async {
        loop {
            let Some(Ok(Message::Text(frame))) = ws.next().await else {
                panic!("the live feed ended");
            };
            let event: Value = serde_json::from_str(&frame).unwrap();
            if event["type"] != "traffic" {
                continue;
            }
            for item in event["items"].as_array().unwrap() {
                if item["text"].as_str().is_some_and(|t| t.contains(text)) {
                    return item.clone();
                }
            }
        }
    })
    .await
}

/// Reads from `stream` until it has `want`.
async fn read_until(stream: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    within("the client to hear the visitor", async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(want.len()).any(|w| w == want) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before it heard {want:?}: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
    .await
}

#[tokio::test]
async fn a_visitor_gets_a_port_sees_hello_world_arrive_and_answers() {
    let (_server, http) = server(&[]).await;
    let mut visitor = Visitor::default();
    let (status, port) = visitor.open(&http, "text").await;
    assert_eq!(status, 201, "{port}");
    assert_eq!(port["mode"], "text");
    assert!(port["expires_at"].as_u64().unwrap() > 0, "{port}");
    let number = port["port"].as_u64().unwrap();
    let mut live = visitor.live(&http, number).await.expect("the live feed");

    // The tutorial's client: connects, writes its line, reads.
    let mut client = TcpStream::connect(("127.0.0.1", number as u16))
        .await
        .unwrap();
    client.write_all(b"Hello World\n").await.unwrap();
    let seen = traffic(&mut live, "Hello World").await;
    assert_eq!(seen["size"], 12, "{seen}");

    // The page lists it; the visitor answers all, then the one client.
    let (_, view) = visitor.get(&http, number).await;
    let clients = view["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{view}");
    assert_eq!(
        clients[0]["addr"],
        client.local_addr().unwrap().to_string(),
        "{view}"
    );
    let (status, sent) = visitor
        .send(&http, number, json!({"text": "hi device"}))
        .await;
    assert_eq!(
        (status, sent["delivered"].as_u64()),
        (200, Some(1)),
        "{sent}"
    );
    read_until(&mut client, b"hi device").await;
    let id = clients[0]["id"].as_u64().unwrap();
    let (status, _) = visitor
        .send(&http, number, json!({"bytes": "AQID", "to": id}))
        .await;
    assert_eq!(status, 200);
    read_until(&mut client, &[1, 2, 3]).await;
    // The seeds' client: its last line without a newline, a pause, and
    // a close without reading anything.
    let mut once = TcpStream::connect(("127.0.0.1", number as u16))
        .await
        .unwrap();
    once.write_all(b"Hello World, once").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the client's own pause
    drop(once);
    traffic(&mut live, "Hello World, once").await;

    // Closing the port closes its client.
    let status = visitor
        .request(
            reqwest::Method::DELETE,
            format!("http://{http}/play/api/ports/{number}"),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    within("the client to be closed", async {
        let mut buf = [0u8; 256];
        while client.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    })
    .await;
    assert_eq!(visitor.get(&http, number).await.0, 404);
}

#[tokio::test]
async fn another_visitor_cannot_see_send_to_or_watch_a_port_and_nothing_of_it_reaches_the_relay() {
    let (server, http) = server(&[]).await;
    let mut owner = Visitor::default();
    let (_, port) = owner.open(&http, "raw").await;
    let number = port["port"].as_u64().unwrap();
    let mut device = TcpStream::connect(("127.0.0.1", number as u16))
        .await
        .unwrap();
    device.write_all(b"secret reading").await.unwrap();
    let name = within("the device to be listed", async {
        loop {
            let (_, view) = owner.get(&http, number).await;
            if let Some(client) = view["clients"].as_array().and_then(|c| c.first()) {
                return client["name"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // A stranger, with a cookie of their own or none.
    let mut stranger = Visitor::default();
    stranger.open(&http, "text").await;
    for visitor in [&stranger, &Visitor::default()] {
        assert_eq!(visitor.get(&http, number).await.0, 404);
        assert_eq!(
            visitor.send(&http, number, json!({"text": "x"})).await.0,
            404
        );
        assert_eq!(visitor.live(&http, number).await.err(), Some(404));
    }

    // The relay's own clients neither see the port's room nor reach its
    // client by name.
    let (mut terminal, _) = crate::common::join(server.addr(0)).await;
    terminal.send_line("/rooms").await.unwrap();
    terminal
        .send_line(format!("/msg {name} hello"))
        .await
        .unwrap();
    let answer = crate::common::expect_line(&mut terminal, "no such client", |line| {
        format!("{line:?}").contains("no client") || format!("{line:?}").contains("no such")
    })
    .await;
    assert!(!format!("{answer:?}").contains("play"), "{answer:?}");
    let rooms = crate::http::get_json(format!("http://{http}/api/v1/rooms")).await;
    assert!(
        rooms.to_string().contains("~play-"),
        "the admin sees it: {rooms}"
    );
    let mut buf = [0u8; 64];
    let quiet = tokio::time::timeout(Duration::from_millis(200), device.read(&mut buf)).await;
    assert!(quiet.is_err(), "the device heard nothing: {quiet:?}");
}

#[tokio::test]
async fn an_address_holds_two_ports_and_is_told_when_to_come_back() {
    let (_server, http) = server(&["--playground-ttl", "30s"]).await;
    let mut visitor = Visitor::default();
    assert_eq!(visitor.open(&http, "text").await.0, 201);
    assert_eq!(visitor.open(&http, "udp").await.0, 201);
    let (status, refused) = visitor.open(&http, "raw").await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_ports", "{refused}");
    let retry: u64 = refused["retry_after"].as_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{refused}");
    // Another visitor from the same address is the same address.
    assert_eq!(Visitor::default().open(&http, "text").await.0, 429);
}

#[tokio::test]
async fn a_port_left_alone_closes_after_its_time_and_one_in_use_stays() {
    let (_server, http) =
        server(&["--playground-ttl", "1s", "--playground-max-clients", "1"]).await;
    let mut visitor = Visitor::default();
    let (_, idle) = visitor.open(&http, "text").await;
    let (_, used) = visitor.open(&http, "text").await;
    let (idle, used) = (
        idle["port"].as_u64().unwrap(),
        used["port"].as_u64().unwrap(),
    );
    let _client = TcpStream::connect(("127.0.0.1", used as u16))
        .await
        .unwrap();
    within("the idle port to close", async {
        while visitor.get(&http, idle).await.0 != 404 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(visitor.get(&http, used).await.0, 200, "its client keeps it");
    // One client is all it takes: a second is closed (a raw port's
    // clients are told nothing; the log says why), the first stays.
    let mut second = TcpStream::connect(("127.0.0.1", used as u16))
        .await
        .unwrap();
    let mut said = Vec::new();
    within("the refusal", second.read_to_end(&mut said))
        .await
        .unwrap();
    assert!(said.is_empty(), "{said:?}");
    let (_, view) = visitor.get(&http, used).await;
    assert_eq!(view["clients"].as_array().unwrap().len(), 1, "{view}");
}

#[tokio::test]
async fn the_admin_side_stays_closed_to_visitors() {
    let (_server, http) = server(&["--admin-token", "s3cret-admin-token"]).await;
    let mut visitor = Visitor::default();
    assert_eq!(visitor.open(&http, "text").await.0, 201);
    for path in ["/api/v1/stats", "/api/v1/listeners", "/metrics"] {
        let status = visitor
            .request(reqwest::Method::GET, format!("http://{http}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        // Loopback without the token is the admin only when there is no
        // token; with one, a visitor's cookie is nothing.
        assert_eq!(status, 401, "{path}");
    }
    // A page of another site cannot use the playground in its visitor's
    // name.
    let status = visitor
        .request(
            reqwest::Method::POST,
            format!("http://{http}/play/api/ports"),
        )
        .header("origin", "http://evil.example")
        .json(&json!({"mode": "text"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_share_link_lets_a_second_device_watch_and_send_and_dies_with_the_port() {
    let (_server, http) = server(&[]).await;
    let mut owner = Visitor::default();
    let (_, port) = owner.open(&http, "text").await;
    let number = port["port"].as_u64().unwrap();
    let link = port["watch"].as_str().unwrap().to_owned();
    assert!(link.starts_with("/play/w/"), "{port}");

    // The phone next to the device: a browser of its own.
    let mut phone = Visitor::default();
    let (status, view) = phone.join(&http, &link).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["port"].as_u64(), &view["owner"]),
        (Some(number), &json!(false))
    );
    let mut live = phone.live(&http, number).await.expect("the phone watches");
    let shown = within("the port's state on the phone's page", async {
        loop {
            let Some(Ok(Message::Text(frame))) = live.next().await else {
                panic!("the live feed ended");
            };
            let event: Value = serde_json::from_str(&frame).unwrap();
            if event["type"] == "port" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(shown["port"]["owner"], false, "a guest's page: {shown}");
    let mut device = TcpStream::connect(("127.0.0.1", number as u16))
        .await
        .unwrap();
    device.write_all(b"seen on the phone\n").await.unwrap();
    traffic(&mut live, "seen on the phone").await;
    assert_eq!(
        phone
            .send(&http, number, json!({"text": "from the phone"}))
            .await
            .0,
        200
    );
    read_until(&mut device, b"from the phone").await;
    // Only the owner closes it; then the link is dead.
    let status = |v: &Visitor| {
        v.request(
            reqwest::Method::DELETE,
            format!("http://{http}/play/api/ports/{number}"),
        )
        .send()
    };
    assert_eq!(status(&phone).await.unwrap().status(), 404);
    assert_eq!(status(&owner).await.unwrap().status(), 204);
    assert_eq!(Visitor::default().join(&http, &link).await.0, 404);
    assert_eq!(phone.get(&http, number).await.0, 404);
}

/// The page, in Debian's headless Chromium: a visitor gets a port, the
/// tutorial's client says Hello World, the page shows it in text and hex,
/// and the visitor's answer reaches the client; at 1,440 and 390 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_a_visitor_gets_a_port_sees_hello_world_in_text_and_hex_and_answers() {
    use crate::browser::{Chrome, DESKTOP};
    let (_server, http) = server(&[]).await;
    let chrome = Chrome::start().await;
    chrome.set_viewport(DESKTOP).await;
    chrome
        .browser
        .goto(&format!("http://{http}/play"))
        .await
        .unwrap();
    chrome.check_layout("the playground's start").await;
    chrome.screenshot("15-playground-start").await;
    chrome.click("#get-port").await;
    let addr = chrome
        .wait_text("the port's address", "#addr", |t| t.contains(':'))
        .await;
    let number: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    chrome
        .wait_text("the live feed", "#status", |t| t.contains("port"))
        .await;

    let mut client = within("the client to connect", async {
        loop {
            let mut client = TcpStream::connect(("127.0.0.1", number)).await.unwrap();
            client.write_all(b"Hello World\n").await.unwrap();
            let shown = tokio::time::timeout(
                Duration::from_millis(700),
                chrome.wait_text("Hello World on the page", ".play-log .play-text", |t| {
                    t.contains("Hello World")
                }),
            )
            .await;
            if shown.is_ok() {
                return client;
            }
        }
    })
    .await;
    chrome.click("#view button[data-view='both']").await;
    chrome
        .wait_text("its hex", ".play-log .play-hex", |t| {
            t.contains("48 65 6C 6C 6F 20 57 6F 72 6C 64 0A")
        })
        .await;
    chrome
        .wait_text("the client listed", "#clients", |t| t.contains("127.0.0.1"))
        .await;
    chrome.fill("#send-text", "hi device").await;
    chrome.click("#send-button").await;
    read_until(&mut client, b"hi device\n").await;
    chrome
        .wait_text("the answer in the log", ".play-log .dir-out", |t| {
            t.contains("all clients")
        })
        .await;
    chrome.screenshot("16-playground-hello").await;
    for size in [DESKTOP, (390, 844), (360, 740)] {
        chrome.set_viewport(size).await;
        chrome.scroll_to(None).await;
        chrome.check_layout("the playground with a client").await;
        chrome
            .screenshot(&format!("16-playground-{}", size.0))
            .await;
        chrome.scroll_to(Some("log-card")).await;
        chrome
            .screenshot(&format!("16-playground-{}-log", size.0))
            .await;
    }
}

/// A port's client sends at most `--playground-bytes-per-second`: it is
/// read that fast (after a second's burst), and nothing it sent is lost.
#[tokio::test]
async fn a_ports_client_is_read_at_the_playgrounds_rate_and_loses_nothing() {
    let (_server, http) = server(&["--playground-bytes-per-second", "1KiB"]).await;
    let mut visitor = Visitor::default();
    let (_, port) = visitor.open(&http, "raw").await;
    let number = port["port"].as_u64().unwrap();
    let mut live = visitor.live(&http, number).await.unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", number as u16))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    client.write_all(&[b'x'; 4096]).await.unwrap();
    let bytes_in = || async {
        let (_, view) = visitor.get(&http, number).await;
        view["clients"][0]["bytes_in"].as_u64().unwrap_or(0)
    };
    // At 1 KiB a second with a second's burst, 4 KiB take three seconds:
    // the first that is read is the burst, not all of it.
    let first = within("the first bytes to be read", async {
        loop {
            let read = bytes_in().await;
            if read > 0 {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if started.elapsed() < Duration::from_secs(1) {
        assert!(first <= 2048, "read {first} bytes at once");
    }
    within("all 4 KiB to be read", async {
        while bytes_in().await < 4096 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    drop(live.close(None).await);
}

/// A DTU's raw bytes and a module's datagram arrive on ports of their
/// modes, and the visitor's answer reaches the module as a datagram.
#[tokio::test]
async fn raw_and_udp_ports_show_what_their_clients_send_and_answer_them() {
    let (_server, http) = server(&["--playground-max-ports-per-ip", "3"]).await;
    let mut visitor = Visitor::default();
    let (_, raw) = visitor.open(&http, "raw").await;
    let (_, udp) = visitor.open(&http, "udp").await;
    let (raw, udp) = (raw["port"].as_u64().unwrap(), udp["port"].as_u64().unwrap());
    let mut raw_feed = visitor.live(&http, raw).await.unwrap();
    let mut udp_feed = visitor.live(&http, udp).await.unwrap();

    let mut dtu = TcpStream::connect(("127.0.0.1", raw as u16)).await.unwrap();
    dtu.write_all(b"Hello World").await.unwrap();
    let seen = traffic(&mut raw_feed, "Hello World").await;
    assert_eq!(seen["size"], 11, "{seen}");

    let module = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    module
        .send_to(b"Hello World", ("127.0.0.1", udp as u16))
        .await
        .unwrap();
    traffic(&mut udp_feed, "Hello World").await;
    assert_eq!(visitor.send(&http, udp, json!({"text": "ok"})).await.0, 200);
    let mut buf = [0u8; 64];
    let n = within("the datagram", module.recv(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], b"ok\n");
}

/// When the range is all in use, the next visitor is told so and when one
/// would free up; a port the admin closes is gone for its visitor too.
#[tokio::test]
async fn a_full_range_says_when_a_port_frees_up_and_the_admin_can_close_a_port() {
    let (_server, http) = server(&["--playground-max-ports-per-ip", "100"]).await;
    let mut visitor = Visitor::default();
    // The range holds 25 ports (fewer if other programs hold some).
    let mut opened = Vec::new();
    let refused = loop {
        let (status, body) = visitor.open(&http, "text").await;
        match status {
            201 => opened.push(body["port"].as_u64().unwrap()),
            _ => break (status, body),
        }
        assert!(opened.len() <= 25, "more ports than the range holds");
    };
    assert_eq!(refused.0, 429, "{}", refused.1);
    assert_eq!(refused.1["error"]["code"], "no_free_port", "{}", refused.1);
    assert!(refused.1["retry_after"].as_str().is_some(), "{}", refused.1);

    // The admin sees them among the listeners, and closes one.
    let listeners = crate::http::get_json(format!("http://{http}/api/v1/listeners")).await;
    let port = opened[0];
    let listener = listeners
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["addr"].as_str().unwrap().ends_with(&format!(":{port}")))
        .expect("the port is listed")
        .clone();
    assert_eq!(listener["origin"], "playground", "{listener}");
    let mut feed = visitor.live(&http, port).await.unwrap();
    let closed = crate::http::http()
        .delete(format!("http://{http}/api/v1/listeners/{}", listener["id"]))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    within("the page to be told", async {
        loop {
            match feed.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"closed\"") => return,
                Some(Ok(_)) => continue,
                other => panic!("the feed ended without saying: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(visitor.get(&http, port).await.0, 404);
    // And the range has a free port again.
    assert_eq!(visitor.open(&http, "text").await.0, 201);
}

/// Pages watching one port are bounded: each holds a feed of its traffic.
#[tokio::test]
async fn a_port_is_watched_by_at_most_eight_pages_at_once() {
    let (_server, http) = server(&[]).await;
    let mut visitor = Visitor::default();
    let (_, port) = visitor.open(&http, "text").await;
    let number = port["port"].as_u64().unwrap();
    let mut pages = Vec::new();
    for _ in 0..8 {
        pages.push(visitor.live(&http, number).await.expect("a page"));
    }
    assert_eq!(visitor.live(&http, number).await.err(), Some(429));
    // One closes: another may open.
    let mut first = pages.remove(0);
    first.close(None).await.unwrap();
    within("a feed to be free again", async {
        loop {
            match visitor.live(&http, number).await {
                Ok(page) => return pages.push(page),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
}
