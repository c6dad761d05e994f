//! History and resume: a client that joins late or reconnects gets what
//! it missed, or is told exactly what it lost.

use crate::common;

use common::*;
use serde_json::{json, Value};
use switchboard::config::{HistorySettings, HttpSettings};
use switchboard::hub::HubSettings;
use switchboard::{Client, Config, Mode, ServerLine};

/// A server whose rooms keep their last `keep` messages, with a text
/// listener, a text listener showing joiners the last 5, and a JSON one.
async fn keeping(keep: usize) -> TestServer {
    TestServer::start(Config {
        history: HistorySettings {
            keep,
            ..Default::default()
        },
        ..config_with(&[
            "text://127.0.0.1:0",
            "json://127.0.0.1:0",
            "text://127.0.0.1:0?history=5",
        ])
    })
    .await
}

/// The `?history=5` listener.
fn showing(server: &TestServer) -> std::net::SocketAddr {
    server
        .listeners
        .iter()
        .find(|l| l.history == 5)
        .expect("a ?history=5 listener")
        .addr
}

async fn json_client(server: &TestServer) -> Client {
    let mut client = Client::connect(server.addr(Mode::Json)).await.unwrap();
    let welcome = next_json(&mut client).await;
    assert_eq!(welcome["type"], "welcome");
    client
}

pub(crate) async fn next_json(client: &mut Client) -> Value {
    within("a JSON event", client.next_json())
        .await
        .unwrap()
        .expect("connection open")
}

pub(crate) async fn send_json(client: &mut Client, value: Value) {
    client.send_line(value.to_string()).await.unwrap();
}

/// Reads JSON events until one of `kind`; returns it and those before it.
async fn until_json(client: &mut Client, kind: &str) -> (Value, Vec<Value>) {
    within(&format!("a JSON {kind} event"), async {
        let mut before = Vec::new();
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            if event["type"] == kind {
                return (event, before);
            }
            before.push(event);
        }
    })
    .await
}

/// The texts of the history lines (`[#room 12:03:04] from: text`) heard.
fn kept_texts(heard: &[ServerLine]) -> Vec<String> {
    heard
        .iter()
        .filter_map(|line| match line {
            ServerLine::Kept { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn texts(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|event| event["type"] == "message")
        .map(|event| event["text"].as_str().unwrap())
        .collect()
}

/// Says `texts` in the text client's current room, and waits until they
/// are handled (and kept).
async fn say_all(client: &mut Client, texts: impl IntoIterator<Item = String>) {
    for text in texts {
        client.say(&text).await.unwrap();
    }
    sync(client).await;
}

#[tokio::test]
async fn a_text_client_joining_late_sees_the_last_messages_with_their_time() {
    let server = keeping(100).await;
    let (mut alice, alice_name) = join(server.text_addr()).await;
    say_all(&mut alice, (1..=7).map(|n| format!("reading {n}"))).await;

    // The dashboard opens after the device reported, on a listener that
    // shows joiners the last 5.
    let (mut late, _) = join(showing(&server)).await;
    let heard = heard_until_pong(&mut late).await;
    let kept: Vec<_> = heard
        .iter()
        .filter_map(|line| match line {
            ServerLine::Kept {
                room,
                at,
                from,
                text,
            } => {
                assert_eq!(room, "lobby");
                assert_eq!(from, &alice_name);
                // 12:03:04: today's, in UTC.
                assert!(
                    at.len() == 8 && at.as_bytes()[2] == b':' && at.as_bytes()[5] == b':',
                    "{at:?}"
                );
                Some(text.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        kept,
        [
            "reading 3",
            "reading 4",
            "reading 5",
            "reading 6",
            "reading 7"
        ]
    );
    let end = heard
        .iter()
        .position(|line| *line == ServerLine::Notice("end of history (#lobby, 5 messages)".into()));
    let last_kept = heard
        .iter()
        .rposition(|line| matches!(line, ServerLine::Kept { .. }));
    assert!(
        end > last_kept,
        "the end comes after the history: {heard:?}"
    );

    // Then it hears the room live, as anyone.
    alice.say("reading 8").await.unwrap();
    let (room, from, text) = expect_message(&mut late).await;
    assert_eq!((room.as_str(), text.as_str()), ("lobby", "reading 8"));
    assert_eq!(from, alice_name);

    // A client of the plain listener is shown nothing as it joins.
    let (mut plain, _) = join(server.text_addr()).await;
    let heard = heard_until_pong(&mut plain).await;
    assert!(
        heard
            .iter()
            .all(|line| !matches!(line, ServerLine::Kept { .. })),
        "{heard:?}"
    );
}

#[tokio::test]
async fn slash_history_shows_the_last_n_of_the_current_room() {
    let server = keeping(100).await;
    let (mut alice, _) = join(server.text_addr()).await;
    alice.send_line("/join ops").await.unwrap();
    say_all(&mut alice, (1..=30).map(|n| format!("line {n}"))).await;

    let (mut bob, _) = join(server.text_addr()).await;
    bob.send_line("/join ops").await.unwrap();
    bob.send_line("/history 3").await.unwrap();
    let end = expect_line(
        &mut bob,
        "the end of history",
        |line| matches!(line, ServerLine::Notice(text) if text.starts_with("end of history")),
    )
    .await;
    assert_eq!(
        end,
        ServerLine::Notice(
            "end of history (#ops, 3 messages; older ones are kept: /history with a larger N)"
                .into()
        )
    );
    // Without N: the last 20.
    bob.send_line("/history").await.unwrap();
    let heard = heard_until_pong(&mut bob).await;
    let expected: Vec<String> = (11..=30).map(|n| format!("line {n}")).collect();
    assert_eq!(kept_texts(&heard), expected);

    // Bad arguments say how it goes.
    bob.send_line("/history many").await.unwrap();
    let error = expect_line(&mut bob, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(error.to_string().contains("/history [N]"), "{error}");
}

#[tokio::test]
async fn a_room_outside_history_rooms_says_it_keeps_none() {
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 10,
            rooms: vec!["dev-*".into()],
            ..Default::default()
        },
        ..Config::local()
    })
    .await;
    let (mut alice, _) = join(server.text_addr()).await;
    alice.say("not kept").await.unwrap();
    alice.send_line("/history").await.unwrap();
    let error = expect_line(&mut alice, "an error", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert_eq!(
        error,
        ServerLine::Error("#lobby keeps no history: this server keeps the history of the rooms --history-rooms names, when --history is set".into())
    );
    alice.send_line("/join dev-7").await.unwrap();
    say_all(&mut alice, ["kept".to_owned()]).await;
    alice.send_line("/history").await.unwrap();
    let line = expect_line(&mut alice, "the kept line", |l| {
        matches!(l, ServerLine::Kept { .. })
    })
    .await;
    assert!(matches!(line, ServerLine::Kept { text, .. } if text == "kept"));
}

#[tokio::test]
async fn json_messages_carry_their_offset_and_history_pages_backwards() {
    let server = keeping(100).await;
    let mut alice = json_client(&server).await;
    let mut bob = json_client(&server).await;
    for n in 1..=10 {
        send_json(&mut alice, json!({"type": "say", "text": format!("m{n}")})).await;
    }
    let mut offsets = Vec::new();
    for n in 1..=10 {
        let (message, _) = until_json(&mut bob, "message").await;
        assert_eq!(message["text"], format!("m{n}"));
        assert!(message.get("history").is_none(), "{message}");
        offsets.push(message["offset"].as_str().expect("an offset").to_owned());
    }
    // EPOCH-SEQ: one epoch, consecutive numbers.
    let split: Vec<(&str, u64)> = offsets
        .iter()
        .map(|offset| {
            let (epoch, seq) = offset.split_once('-').unwrap();
            (epoch, seq.parse().unwrap())
        })
        .collect();
    assert!(split
        .windows(2)
        .all(|w| w[0].0 == w[1].0 && w[1].1 == w[0].1 + 1));

    send_json(&mut bob, json!({"type": "history", "limit": 4, "id": 7})).await;
    let (reply, before) = until_json(&mut bob, "history").await;
    assert_eq!(texts(&before), ["m7", "m8", "m9", "m10"]);
    assert!(before
        .iter()
        .all(|m| m["history"] == true && m["at"].is_u64()));
    assert_eq!(before[0]["offset"], offsets[6]);
    assert_eq!(
        reply,
        json!({"type": "history", "room": "lobby", "count": 4, "more": true, "before": offsets[6], "id": 7})
    );
    send_json(
        &mut bob,
        json!({"type": "history", "room": "lobby", "limit": 4, "before": offsets[6]}),
    )
    .await;
    let (_, before) = until_json(&mut bob, "history").await;
    assert_eq!(texts(&before), ["m3", "m4", "m5", "m6"]);
    send_json(&mut bob, json!({"type": "history", "before": "yesterday"})).await;
    let (error, _) = until_json(&mut bob, "error").await;
    assert_eq!(error["code"], "bad_offset");
}

/// The last offset a JSON client saw of `texts`, read until it sees `last`.
async fn read_until_text(client: &mut Client, last: &str) -> Vec<Value> {
    within(&format!("the message {last:?}"), async {
        let mut seen = Vec::new();
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            if event["type"] == "message" {
                let done = event["text"] == last;
                seen.push(event);
                if done {
                    return seen;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_client_that_drops_off_resumes_with_all_it_missed_in_order_while_the_room_talks() {
    let server = keeping(5000).await;
    let (mut talker, _) = join(server.text_addr()).await;
    talker.send_line("/join ops").await.unwrap();
    sync(&mut talker).await;
    let mut phone = json_client(&server).await;
    send_json(&mut phone, json!({"type": "join", "room": "ops"})).await;
    until_json(&mut phone, "joined").await;
    say_all(&mut talker, (0..10).map(|n| format!("n{n}"))).await;
    let seen = read_until_text(&mut phone, "n9").await;
    let last = seen.last().unwrap()["offset"].as_str().unwrap().to_owned();
    // The phone drops off the network.
    drop(phone);

    // 1,000 messages while it is away.
    say_all(&mut talker, (10..1010).map(|n| format!("n{n}"))).await;
    // And the room keeps talking while it comes back.
    let talking = tokio::spawn(async move {
        for n in 1010..1500 {
            talker.say(&format!("n{n}")).await.unwrap();
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        sync(&mut talker).await;
        talker
    });
    let mut phone = json_client(&server).await;
    send_json(
        &mut phone,
        json!({"type": "join", "room": "ops", "since": last}),
    )
    .await;
    let seen = read_until_text(&mut phone, "n1499").await;
    let _talker = talking.await.unwrap();
    let numbers: Vec<u32> = seen
        .iter()
        .map(|m| m["text"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    let expected: Vec<u32> = (10..1500).collect();
    assert_eq!(numbers, expected, "every message after n9, once, in order");
    assert!(
        seen.iter().all(|m| m["room"] == "ops"),
        "only the room's messages"
    );
    assert!(!seen.iter().any(|m| m["type"] == "gap"));
}

#[tokio::test]
async fn an_offset_too_old_gets_a_gap_then_what_is_kept() {
    let server = keeping(5).await;
    let (mut talker, _) = join(server.text_addr()).await;
    let mut phone = json_client(&server).await;
    say_all(&mut talker, ["first".to_owned()]).await;
    let (first, _) = until_json(&mut phone, "message").await;
    let since = first["offset"].as_str().unwrap().to_owned();
    drop(phone);
    say_all(&mut talker, (1..=10).map(|n| format!("m{n}"))).await;

    let mut phone = json_client(&server).await;
    send_json(
        &mut phone,
        json!({"type": "join", "room": "lobby", "since": since}),
    )
    .await;
    let (gap, _) = until_json(&mut phone, "gap").await;
    assert_eq!(gap["room"], "lobby");
    assert_eq!(gap["since"], since.as_str());
    assert_eq!(gap["reason"], "too_old");
    let seen = read_until_text(&mut phone, "m10").await;
    assert_eq!(texts(&seen), ["m6", "m7", "m8", "m9", "m10"]);
    assert_eq!(
        gap["from"], seen[0]["offset"],
        "it resumes from the oldest kept"
    );
}

#[tokio::test]
async fn a_restart_without_storage_is_a_new_epoch_and_resuming_clients_are_told() {
    let config = Config {
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        ..config_with(&["text://127.0.0.1:0", "json://127.0.0.1:0"])
    };
    let server = TestServer::start(config.clone()).await;
    let (mut talker, _) = join(server.text_addr()).await;
    let mut phone = json_client(&server).await;
    say_all(&mut talker, ["before".to_owned()]).await;
    let (before, _) = until_json(&mut phone, "message").await;
    let since = before["offset"].as_str().unwrap().to_owned();
    drop((talker, phone));
    server.stop().await;

    let server = TestServer::start(config).await;
    let (mut talker, _) = join(server.text_addr()).await;
    say_all(&mut talker, ["after".to_owned()]).await;
    let mut phone = json_client(&server).await;
    send_json(
        &mut phone,
        json!({"type": "join", "room": "lobby", "since": since}),
    )
    .await;
    let (gap, _) = until_json(&mut phone, "gap").await;
    assert_eq!(gap["reason"], "epoch");
    let seen = read_until_text(&mut phone, "after").await;
    assert_eq!(texts(&seen), ["after"]);
}

#[tokio::test]
async fn resuming_the_room_a_client_arrived_in_replays_only_what_came_before_it() {
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        ..config_with(&["text://127.0.0.1:0", "json://127.0.0.1:0?room=ops"])
    })
    .await;
    let (mut talker, _) = join(server.text_addr()).await;
    talker.send_line("/join ops").await.unwrap();
    say_all(&mut talker, ["a".to_owned(), "b".to_owned()]).await;
    let mut first = json_client(&server).await;
    say_all(&mut talker, ["c".to_owned()]).await;
    let (c, _) = until_json(&mut first, "message").await;
    assert_eq!(c["text"], "c");
    drop(first);
    say_all(&mut talker, ["d".to_owned(), "e".to_owned()]).await;

    // Back, in #ops as it arrives (its listener's room); "f" is said to
    // it live before it asks to resume.
    let mut again = json_client(&server).await;
    say_all(&mut talker, ["f".to_owned()]).await;
    send_json(
        &mut again,
        json!({"type": "join", "room": "ops", "since": c["offset"]}),
    )
    .await;
    let (_, before) = until_json(&mut again, "joined").await;
    // "f" came live; the resume adds "d" and "e", and nothing twice.
    let mut seen = texts(&before);
    seen.sort_unstable();
    assert_eq!(seen, ["d", "e", "f"]);
    assert!(!before.iter().any(|event| event["type"] == "gap"));
}

#[tokio::test]
async fn the_admin_api_shows_a_rooms_history_pages_it_and_resumes_from_an_offset() {
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..config_with(&["text://127.0.0.1:0"])
    })
    .await;
    let http = server.http.unwrap();
    let (mut alice, alice_name) = join(server.text_addr()).await;
    alice.send_line("/join ops").await.unwrap();
    say_all(&mut alice, (1..=5).map(|n| format!("m{n}"))).await;
    // Even after everyone left, the room's history stays.
    drop(alice);

    let url = format!("http://{http}/api/v1/rooms/ops/history");
    let history = within("the room's history", async {
        loop {
            let history = crate::http::get_json(format!("{url}?limit=2")).await;
            if history["messages"].as_array().is_some_and(|m| m.len() == 2) {
                return history;
            }
        }
    })
    .await;
    assert_eq!(history["room"], "ops");
    assert_eq!(history["more"], true);
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages[0]["text"], "m4");
    assert_eq!(messages[1]["text"], "m5");
    assert_eq!(messages[0]["from"], alice_name.as_str());
    assert!(messages[0]["at"].is_u64());
    let m4 = messages[0]["offset"].as_str().unwrap().to_owned();
    assert!(m4.starts_with(history["epoch"].as_str().unwrap()));

    let page = crate::http::get_json(format!("{url}?before={m4}&limit=10")).await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m1", "m2", "m3"]);
    assert_eq!(page["more"], false);

    let after = crate::http::get_json(format!("{url}?since={m4}")).await;
    assert_eq!(after["messages"][0]["text"], "m5");
    assert_eq!(after["gap"], Value::Null);

    let bad = crate::http::get_json(format!("{url}?since=yesterday")).await;
    assert_eq!(bad["error"]["code"], "bad_offset");
    let unknown = crate::http::get_json(format!(
        "http://{http}/api/v1/rooms/nobody-here/history?since={m4}"
    ))
    .await;
    assert_eq!(unknown["messages"], json!([]));
    assert_eq!(unknown["gap"]["reason"], "not_kept");
}

#[tokio::test]
async fn an_app_joining_a_device_room_sees_the_last_readings_at_once() {
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 10,
            ..Default::default()
        },
        ..config_with(&[
            "text://127.0.0.1:0?history=3",
            "raw://127.0.0.1:0?room=dev-7",
        ])
    })
    .await;
    let mut device = tokio::net::TcpStream::connect(server.addr(Mode::Raw))
        .await
        .unwrap();
    use tokio::io::AsyncWriteExt;
    // A witness in the room tells when each reading was relayed (and so kept).
    let (mut witness, _) = join(server.text_addr()).await;
    witness.send_line("/join dev-7").await.unwrap();
    sync(&mut witness).await;
    for reading in [&[0x01u8, 0x03, 0x02][..], &[0x01, 0x03, 0x04], b"t=21.5\n"] {
        device.write_all(reading).await.unwrap();
        expect_message(&mut witness).await;
    }
    let (mut app, _) = join(server.text_addr()).await;
    app.send_line("/join dev-7").await.unwrap();
    let heard = heard_until_pong(&mut app).await;
    let kept: Vec<String> = heard
        .iter()
        .filter_map(|line| match line {
            ServerLine::Kept { room, text, .. } if room == "dev-7" => Some(text.clone()),
            _ => None,
        })
        .collect();
    // Bytes that are not text are shown as hex, as live (docs/protocol.md).
    assert_eq!(kept, ["<hex 01 03 02>", "<hex 01 03 04>", "t=21.5"]);
    assert!(heard.contains(&ServerLine::Notice(
        "end of history (#dev-7, 3 messages)".into()
    )));
}

#[tokio::test]
async fn history_is_evicted_oldest_first_before_any_client_is_cut_off() {
    // A budget of 4 MiB, and rooms that would keep 1 MiB each: six of
    // them keep more than the budget.
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 100_000,
            bytes: 1 << 20,
            ..Default::default()
        },
        hub: HubSettings {
            max_memory: 4 << 20,
            ..Config::local().hub
        },
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..flat_out()
    })
    .await;
    let http = server.http.unwrap();
    let (mut talker, _) = join(server.text_addr()).await;
    let (mut idle, _) = join(server.text_addr()).await;
    let line = "x".repeat(1000);
    for room in 0..6 {
        talker.send_line(format!("/join r{room}")).await.unwrap();
        for _ in 0..1100 {
            talker.say(&line).await.unwrap();
        }
        sync(&mut talker).await;
    }
    // Between two sweeps the rooms keep what is said; each sweep (ten a
    // second) brings them back under nine tenths of the budget.
    within("history to be evicted to within the budget", async {
        loop {
            let stats = crate::http::get_json(format!("http://{http}/api/v1/stats")).await;
            let memory = &stats["memory"];
            if memory["history_evicted"].as_u64() > Some(0)
                && memory["history"].as_u64() <= Some((4 << 20) / 10 * 9)
            {
                return;
            }
        }
    })
    .await;
    // The oldest room lost the most: its first messages are gone.
    let r0 =
        crate::http::get_json(format!("http://{http}/api/v1/rooms/r0/history?limit=1000")).await;
    let r5 =
        crate::http::get_json(format!("http://{http}/api/v1/rooms/r5/history?limit=1000")).await;
    let kept = |h: &Value| h["messages"].as_array().unwrap().len();
    assert!(
        kept(&r0) < kept(&r5),
        "r0 kept {}, r5 {}",
        kept(&r0),
        kept(&r5)
    );
    // Nobody was cut off for it: both still talk.
    sync(&mut talker).await;
    sync(&mut idle).await;
}

/// `systemctl reload` with history turned on: at once, for the rooms that
/// exist and their members, no restart; and off again: what was kept goes.
#[tokio::test]
async fn history_is_turned_on_and_off_by_a_reload() {
    let dir = TempDir::new("history-reload");
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, "listen = [\"127.0.0.1:0\"]\n").unwrap();
    let mut server = BinaryServer::start(&["--config", config.to_str().unwrap()]).await;
    let (mut alice, _) = join(server.addr(0)).await;
    alice.say("before").await.unwrap();
    alice.send_line("/history").await.unwrap();
    let error = expect_line(&mut alice, "an error", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(error.to_string().contains("keeps no history"), "{error}");

    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\nhistory = 50\nhistory-rooms = [\"lobby\"]\n",
    )
    .unwrap();
    server.hang_up();
    let reloaded = server.expect_log("reloaded the config").await;
    assert!(reloaded.contains("history"), "{reloaded}");
    say_all(&mut alice, ["after".to_owned()]).await;
    alice.send_line("/history").await.unwrap();
    let heard = heard_until_pong(&mut alice).await;
    assert_eq!(
        kept_texts(&heard),
        ["after"],
        "only what was said since: {heard:?}"
    );

    std::fs::write(&config, "listen = [\"127.0.0.1:0\"]\nhistory = 0\n").unwrap();
    server.hang_up();
    server.expect_log("reloaded the config").await;
    alice.send_line("/history").await.unwrap();
    let error = expect_line(&mut alice, "an error", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(error.to_string().contains("keeps no history"), "{error}");
}

/// A TCP relay between a client and a server that the test can cut, as a
/// flaky network does: every connection through it is dropped at once,
/// without a goodbye from either side.
struct Flaky {
    addr: std::net::SocketAddr,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Flaky {
    async fn to(server: std::net::SocketAddr) -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = links.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(server).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                kept.lock().unwrap().push(link);
            }
        });
        Flaky { addr, links }
    }

    /// Drops every connection through it.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn switchboard_connect_comes_back_after_a_dropped_connection_and_resumes() {
    let server = keeping(100).await;
    let network = Flaky::to(server.addr(Mode::Json)).await;
    let mut child = switchboard(&[
        "connect",
        "--json",
        "--reconnect",
        &network.addr.to_string(),
    ])
    .stdin(std::process::Stdio::piped())
    .spawn()
    .expect("the switchboard binary starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    stdin
        .write_all(
            b"{\"type\":\"hello\",\"name\":\"phone\"}\n{\"type\":\"join\",\"room\":\"ops\"}\n",
        )
        .await
        .unwrap();
    shown(&mut stdout, "joined #ops", |e| {
        e["type"] == "joined" && e["room"] == "ops"
    })
    .await;
    let (mut talker, _) = join(server.text_addr()).await;
    talker.send_line("/join ops").await.unwrap();
    say_all(&mut talker, ["one".to_owned()]).await;
    shown(&mut stdout, "one", |e| e["text"] == "one").await;

    network.cut();
    let lost = within("connect to notice", stderr.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(lost.contains("lost the connection"), "{lost}");
    // Said while the phone is away.
    say_all(&mut talker, ["two".to_owned(), "three".to_owned()]).await;
    let back = within("connect to come back", stderr.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(
        back.contains("reconnected") && back.contains("#ops"),
        "{back}"
    );
    let two = shown(&mut stdout, "two, replayed", |e| e["type"] == "message").await;
    assert_eq!(
        (two["text"].as_str(), two["history"].as_bool()),
        (Some("two"), Some(true))
    );
    let three = shown(&mut stdout, "three", |e| e["type"] == "message").await;
    assert_eq!(three["text"], "three");
    // By its name again, in #ops: a direct message and the room reach it.
    talker.send_line("/msg phone still there?").await.unwrap();
    shown(&mut stdout, "the direct message", |e| e["type"] == "direct").await;
    say_all(&mut talker, ["four".to_owned()]).await;
    let four = shown(&mut stdout, "four, live", |e| e["type"] == "message").await;
    assert_eq!(four["text"], "four");
    assert!(four.get("history").is_none());
    drop(stdin);
    within("connect to exit", child.wait()).await.unwrap();
}

/// Reads what `switchboard connect --json` prints until an event `wanted`.
async fn shown(
    stdout: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    what: &str,
    wanted: fn(&Value) -> bool,
) -> Value {
    within(what, async {
        loop {
            let line = stdout.next_line().await.unwrap().expect("connect runs");
            let event: Value = serde_json::from_str(&line).unwrap();
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
}
