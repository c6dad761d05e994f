//! Text, JSON and raw clients sharing rooms.

use crate::common;

use common::*;
use serde_json::{json, Value};
use switchboard::{Client, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn all_modes() -> TestServer {
    TestServer::start(config_with(&[
        "text://127.0.0.1:0",
        "json://127.0.0.1:0",
        "raw://127.0.0.1:0",
    ]))
    .await
}

/// A JSON client that has read its welcome; returns it and its name.
async fn json_client(server: &TestServer) -> (Client, String) {
    let mut client = Client::connect(server.addr(Mode::Json)).await.unwrap();
    let welcome = next_json(&mut client).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["room"], "lobby");
    let name = welcome["name"].as_str().unwrap().to_owned();
    (client, name)
}

async fn next_json(client: &mut Client) -> Value {
    within("a JSON event", client.next_json())
        .await
        .unwrap()
        .expect("connection open")
}

/// Reads JSON events until one of `kind`.
async fn expect_json(client: &mut Client, kind: &str) -> Value {
    within(&format!("a JSON {kind} event"), async {
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            if event["type"] == kind {
                return event;
            }
        }
    })
    .await
}

/// A raw client, and its name as learned from the text client's join notice.
async fn raw_client(server: &TestServer, witness: &mut Client) -> (TcpStream, String) {
    // Earlier join notices are behind the witness after this.
    sync(witness).await;
    let raw = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    let notice = expect_line(witness, "the raw client's join notice", |l| {
        l.to_string().ends_with("joined #lobby")
    })
    .await;
    let name = notice.to_string()["* ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    (raw, name)
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    within("raw bytes", stream.read_exact(&mut out))
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn binary_bytes_pass_through_raw_mode_unchanged() {
    let server = all_modes().await;
    let (mut witness, _) = join(server.text_addr()).await;
    let (mut sender, _) = raw_client(&server, &mut witness).await;
    let (mut receiver, _) = raw_client(&server, &mut witness).await;

    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    sender.write_all(&payload).await.unwrap();
    assert_eq!(read_exactly(&mut receiver, payload.len()).await, payload);
    server.stop().await;
}

#[tokio::test]
async fn text_json_and_raw_clients_hear_each_other_in_one_room() {
    let server = all_modes().await;
    let (mut text, text_name) = join(server.text_addr()).await;
    let (mut json_c, json_name) = json_client(&server).await;
    let (mut raw, raw_name) = raw_client(&server, &mut text).await;

    // text → json and raw
    text.send_line("from text").await.unwrap();
    let event = expect_json(&mut json_c, "message").await;
    assert_eq!(
        event,
        json!({"type": "message", "room": "lobby", "from": text_name, "text": "from text"})
    );
    assert_eq!(read_exactly(&mut raw, 10).await, b"from text\n");

    // json → text and raw
    json_c
        .send_line(r#"{"type":"say","text":"from json"}"#)
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut text).await,
        ("lobby".into(), json_name.clone(), "from json".into())
    );
    assert_eq!(read_exactly(&mut raw, 10).await, b"from json\n");

    // raw → text and json, binary included
    raw.write_all(b"temp=21\xff").await.unwrap();
    let line = within("the raw message", async {
        loop {
            let line = text.next_line_bytes().await.unwrap().unwrap();
            if line.starts_with(b"[") {
                return line;
            }
        }
    })
    .await;
    // Text clients are people at terminals: bytes that are not UTF-8 are
    // shown as hex, every byte as it came (raw clients get them unchanged).
    assert_eq!(
        line,
        format!("[#lobby] {raw_name}: <hex 74 65 6D 70 3D 32 31 FF>").into_bytes()
    );
    let event = expect_json(&mut json_c, "message").await;
    assert_eq!(event["from"], raw_name);
    assert_eq!(event["text"], "temp=21\u{fffd}");

    // A raw client gets no notices: only the bare text of messages.
    json_c
        .send_line(r#"{"type":"nick","name":"prog"}"#)
        .await
        .unwrap();
    expect_json(&mut json_c, "renamed").await;
    text.send_line("after rename").await.unwrap();
    assert_eq!(read_exactly(&mut raw, 13).await, b"after rename\n");
    server.stop().await;
}

#[tokio::test]
async fn a_raw_listener_puts_its_devices_in_its_own_room() {
    let server = TestServer::start(config_with(&[
        "text://127.0.0.1:0",
        "raw://127.0.0.1:0?room=devices",
    ]))
    .await;
    let (mut app, _) = join(server.text_addr()).await;
    app.send_line("/join devices").await.unwrap();
    sync(&mut app).await;
    let mut device = TcpStream::connect(server.addr(Mode::Raw)).await.unwrap();
    device.write_all(b"ON").await.unwrap();
    let (room, _, text) = expect_message(&mut app).await;
    assert_eq!((room.as_str(), text.as_str()), ("devices", "ON"));
    app.send_line("OFF").await.unwrap();
    assert_eq!(read_exactly(&mut device, 4).await, b"OFF\n");
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_gets_an_error_event_and_the_connection_goes_on() {
    let server = all_modes().await;
    let (mut a, _) = json_client(&server).await;
    for (input, code) in [
        ("{not json", "bad_json"),
        ("42", "bad_request"),
        (r#"{"type":"teleport"}"#, "bad_request"),
        (r#"{"type":"say"}"#, "bad_request"),
        (r#"{"type":"join","room":"no spaces"}"#, "invalid_room"),
        (
            r#"{"type":"direct","to":"nobody","text":"x"}"#,
            "no_such_client",
        ),
    ] {
        a.send_line(input).await.unwrap();
        let error = expect_json(&mut a, "error").await;
        assert_eq!(error["code"], code, "{input}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    a.send_line(r#"{"type":"ping","id":"p1"}"#).await.unwrap();
    assert_eq!(
        expect_json(&mut a, "pong").await,
        json!({"type": "pong", "id": "p1"})
    );
    server.stop().await;
}

#[tokio::test]
async fn json_clients_use_rooms_names_and_direct_messages() {
    let server = all_modes().await;
    let (mut a, _) = json_client(&server).await;
    let (mut b, b_name) = json_client(&server).await;
    a.send_line(r#"{"type":"nick","name":"alice","id":1}"#)
        .await
        .unwrap();
    let renamed = expect_json(&mut a, "renamed").await;
    assert_eq!(
        (renamed["new"].clone(), renamed["id"].clone()),
        (json!("alice"), json!(1))
    );

    a.send_line(&format!(
        r#"{{"type":"direct","to":"{b_name}","text":"hi b","id":2}}"#
    ))
    .await
    .unwrap();
    assert_eq!(expect_json(&mut a, "sent").await["id"], 2);
    assert_eq!(
        expect_json(&mut b, "direct").await,
        json!({"type": "direct", "from": "alice", "text": "hi b"})
    );

    b.send_line(r#"{"type":"join","room":"ops"}"#)
        .await
        .unwrap();
    assert_eq!(expect_json(&mut b, "joined").await["members"], 1);
    b.send_line(r#"{"type":"rooms"}"#).await.unwrap();
    let rooms = expect_json(&mut b, "rooms").await;
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "lobby", "members": 2}, {"name": "ops", "members": 1}])
    );
    b.send_line(r#"{"type":"who","room":"lobby"}"#)
        .await
        .unwrap();
    let who = expect_json(&mut b, "who").await;
    assert_eq!(who["names"], json!(["alice", b_name]));
    server.stop().await;
}
