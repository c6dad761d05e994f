//! History on disk (`--history-dir`): a restart, even a `kill -9`, keeps
//! what rooms said with its positions, so clients resume across it as if
//! nothing happened; and the disk holds no more than memory would.

use crate::common;
use crate::history::{next_json, send_json, texts};

use common::*;
use serde_json::{json, Value};
use switchboard::config::HistorySettings;
use switchboard::{Client, Config, Mode};

/// A JSON client past its welcome.
async fn json_client(addr: std::net::SocketAddr) -> Client {
    let mut client = Client::connect(addr).await.unwrap();
    assert_eq!(next_json(&mut client).await["type"], "welcome");
    client
}

/// Reads JSON events up to the message saying `last`; returns them all,
/// gaps included (`history::read_until_text` keeps only messages).
async fn read_until_text(client: &mut Client, last: &str) -> Vec<Value> {
    within(&format!("the message {last:?}"), async {
        let mut events = Vec::new();
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            let done = event["type"] == "message" && event["text"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    })
    .await
}

/// Asks for the last `limit` messages of the lobby; returns their texts.
async fn lobby_history(addr: std::net::SocketAddr, limit: usize) -> (Vec<String>, Vec<Value>) {
    let mut client = json_client(addr).await;
    send_json(
        &mut client,
        json!({"type": "history", "room": "lobby", "limit": limit}),
    )
    .await;
    let events = within("the history reply", async {
        let mut events = Vec::new();
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            if event["type"] == "history" {
                return events;
            }
            events.push(event);
        }
    })
    .await;
    let texts = texts(&events).into_iter().map(str::to_owned).collect();
    (texts, events)
}

/// The real binary keeping history in `dir`, with a text, a JSON and an
/// HTTP listener (indexes 0, 1, 2), committing every 50 ms.
async fn serve_keeping(dir: &TempDir, keep: usize) -> BinaryServer {
    BinaryServer::start_owned(
        [
            "--listen",
            "text://127.0.0.1:0",
            "--listen",
            "json://127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--history",
            &keep.to_string(),
            "--history-dir",
            dir.path().to_str().unwrap(),
            "--history-sync",
            "50ms",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await
}

/// Waits until the server's store has written `messages` messages.
async fn saved(server: &BinaryServer, messages: u64) {
    let http = server.addr(2);
    within(&format!("{messages} messages to be saved"), async {
        loop {
            let stats = crate::http::get_json(format!("http://{http}/api/v1/stats")).await;
            if stats["history_store"]["saved"].as_u64() >= Some(messages) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn after_a_kill_9_a_phone_resumes_where_it_was_with_no_gap_and_positions_go_on() {
    let dir = TempDir::new("history-kill");
    let mut server = serve_keeping(&dir, 1000).await;
    let (mut talker, _) = join(server.addr(0)).await;
    let mut phone = json_client(server.addr(1)).await;
    for i in 1..=100 {
        talker.say(&format!("m{i}")).await.unwrap();
    }
    let heard = read_until_text(&mut phone, "m100").await;
    let offsets: Vec<&str> = heard
        .iter()
        .filter(|event| event["type"] == "message")
        .map(|event| event["offset"].as_str().expect("an offset"))
        .collect();
    let (epoch, _) = offsets[99].split_once('-').unwrap();
    saved(&server, 100).await;
    // What an operator sees of it.
    let http = format!("http://{}", server.addr(2));
    let status = run(&["status", &http]).await;
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("on disk") && status.contains("100 saved"),
        "{status}"
    );
    let metrics = crate::http::metrics(server.addr(2)).await;
    assert!(
        metrics.contains("switchboard_history_saved_total 100"),
        "{metrics}"
    );
    server.child.start_kill().expect("kill -9");
    within("the server to die", server.child.wait())
        .await
        .unwrap();
    drop((talker, phone));

    let server = serve_keeping(&dir, 1000).await;
    let mut phone = json_client(server.addr(1)).await;
    // The phone had heard up to m10 when it dropped off.
    send_json(
        &mut phone,
        json!({"type": "join", "room": "lobby", "since": offsets[9]}),
    )
    .await;
    let mut resumed = within("the phone's join", async {
        let mut events = Vec::new();
        loop {
            let event = phone.next_json().await.unwrap().expect("connection open");
            if event["type"] == "joined" && event["you"] == true {
                return events;
            }
            events.push(event);
        }
    })
    .await;
    let (mut talker, _) = join(server.addr(0)).await;
    talker.say("after the restart").await.unwrap();
    resumed.extend(read_until_text(&mut phone, "after the restart").await);
    assert!(
        resumed.iter().all(|event| event["type"] != "gap"),
        "no gap across the restart: {resumed:?}"
    );
    let expected: Vec<String> = (11..=100)
        .map(|i| format!("m{i}"))
        .chain(["after the restart".to_owned()])
        .collect();
    assert_eq!(texts(&resumed), expected);
    let messages = resumed.iter().filter(|event| event["type"] == "message");
    for (event, offset) in messages.zip(&offsets[10..]) {
        assert_eq!(event["offset"], *offset, "the same positions as before");
    }
    assert_eq!(
        resumed.last().unwrap()["offset"],
        format!("{epoch}-101"),
        "the room goes on in its epoch, after its last position"
    );
}

#[tokio::test]
async fn a_graceful_stop_saves_what_was_said_since_the_last_commit() {
    let dir = TempDir::new("history-stop");
    let config = Config {
        history: HistorySettings {
            keep: 100,
            dir: Some(dir.path().to_owned()),
            sync: std::time::Duration::from_secs(3600),
            ..Default::default()
        },
        // No commit would come in this test's lifetime but the last one.
        ..config_with(&["text://127.0.0.1:0", "json://127.0.0.1:0"])
    };
    let server = TestServer::start(config.clone()).await;
    let (mut talker, _) = join(server.text_addr()).await;
    for text in ["one", "two", "three"] {
        talker.say(text).await.unwrap();
    }
    sync(&mut talker).await;
    drop(talker);
    server.stop().await;

    let server = TestServer::start(config).await;
    let (texts, _) = lobby_history(server.addr(Mode::Json), 10).await;
    assert_eq!(texts, ["one", "two", "three"]);
}

#[tokio::test]
async fn the_disk_keeps_no_more_than_the_rules_and_forgets_rooms_no_longer_kept() {
    let dir = TempDir::new("history-bounds");
    let keeping = |keep: usize, rooms: &[&str]| Config {
        history: HistorySettings {
            keep,
            rooms: rooms.iter().map(|room| (*room).to_owned()).collect(),
            dir: Some(dir.path().to_owned()),
            ..Default::default()
        },
        ..config_with(&["text://127.0.0.1:0", "json://127.0.0.1:0"])
    };
    let server = TestServer::start(keeping(3, &[])).await;
    let (mut talker, _) = join(server.text_addr()).await;
    for i in 1..=10 {
        talker.say(&format!("m{i}")).await.unwrap();
    }
    sync(&mut talker).await;
    drop(talker);
    server.stop().await;

    // Started keeping more, it has only what the smaller bound kept.
    let server = TestServer::start(keeping(100, &[])).await;
    let (texts, events) = lobby_history(server.addr(Mode::Json), 100).await;
    assert_eq!(texts, ["m8", "m9", "m10"]);
    assert!(events[0]["offset"].as_str().unwrap().ends_with("-8"));
    server.stop().await;

    // A start that keeps the lobby no history forgets it, on disk too.
    let server = TestServer::start(keeping(100, &["dev-*"])).await;
    server.stop().await;
    let server = TestServer::start(keeping(100, &[])).await;
    let (texts, _) = lobby_history(server.addr(Mode::Json), 100).await;
    assert!(
        texts.is_empty(),
        "the lobby's history was forgotten: {texts:?}"
    );
}

/// Runs `serve` keeping history in `dir`, which must refuse to start;
/// returns what it said.
async fn refused_start(dir: &TempDir) -> String {
    let refused = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--history",
        "10",
        "--history-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    assert!(!refused.status.success(), "it started");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

#[tokio::test]
async fn a_second_server_on_the_same_history_dir_is_refused_and_says_why() {
    let dir = TempDir::new("history-twice");
    let _first = serve_keeping(&dir, 10).await;
    let stderr = refused_start(&dir).await;
    assert!(
        stderr.contains("cannot open the history store") && stderr.contains("another server"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_store_that_is_not_one_is_refused_with_its_path_not_overwritten() {
    let dir = TempDir::new("history-garbage");
    let file = dir.join("history.redb");
    std::fs::write(&file, b"not a database, but someone's file").unwrap();
    let stderr = refused_start(&dir).await;
    assert!(
        stderr.contains(&format!("cannot open the history store {}", file.display()))
            && stderr.contains("move it away"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a database, but someone's file",
        "left as it was"
    );
}
