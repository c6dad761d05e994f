//! History shared by a cluster: rooms' histories live in Redis, every node
//! numbers a room's messages alike, and a client resumes on any node from
//! where another left it, or is told exactly what it lost.

use serde_json::{json, Value};
use switchboard::{Client, ServerLine};

use crate::cluster::{expect_notice, node_with};
use crate::common::{expect_message, join, sync, within, BinaryServer};
use crate::history::{next_json, send_json, texts};
use crate::redis::Redis;

/// A node keeping `keep` messages per room, with a text listener (0), a
/// JSON one (1) and a text one showing joiners the last 5 (2).
async fn keeping_node(redis: &Redis, name: &str, keep: usize) -> BinaryServer {
    let keep = keep.to_string();
    node_with(
        redis,
        name,
        &[
            "text://127.0.0.1:0",
            "json://127.0.0.1:0",
            "text://127.0.0.1:0?history=5",
        ],
        &["--history", &keep],
    )
    .await
}

/// A JSON client of `node`, in the lobby, its welcome read.
async fn phone(node: &BinaryServer) -> Client {
    let mut client = Client::connect(node.addr(1)).await.unwrap();
    let welcome = next_json(&mut client).await;
    assert_eq!(welcome["type"], "welcome");
    client
}

/// Reads JSON events until the message `last`; returns every event read.
async fn events_until(client: &mut Client, last: &str) -> Vec<Value> {
    within(&format!("the message {last:?}"), async {
        let mut seen = Vec::new();
        loop {
            let event = client.next_json().await.unwrap().expect("connection open");
            let done = event["type"] == "message" && event["text"] == last;
            seen.push(event);
            if done {
                return seen;
            }
        }
    })
    .await
}

/// Waits until `client` (text) has heard `last` from anyone.
async fn heard(client: &mut Client, last: &str) {
    within(&format!("{last:?} to be heard"), async {
        loop {
            let (_, _, text) = expect_message(client).await;
            if text == last {
                return;
            }
        }
    })
    .await;
}

fn sequence(offset: &Value) -> (String, u64) {
    let (epoch, seq) = offset.as_str().unwrap().split_once('-').unwrap();
    (epoch.to_owned(), seq.parse().unwrap())
}

#[tokio::test]
async fn a_phone_resumes_on_another_node_with_all_it_missed_in_order_while_the_room_talks() {
    let redis = Redis::start().await;
    let a = keeping_node(&redis, "a", 5000).await;
    let b = keeping_node(&redis, "b", 5000).await;
    // In #ops: a client arriving in its listener's room (the lobby) would
    // hear the room live before it asks to resume.
    let (mut talker, _) = join(a.addr(0)).await;
    talker.send_line("/join ops").await.unwrap();
    sync(&mut talker).await;
    let (mut listener_on_b, _) = join(b.addr(0)).await;
    listener_on_b.send_line("/join ops").await.unwrap();
    sync(&mut listener_on_b).await;
    let mut on_a = phone(&a).await;
    send_json(&mut on_a, json!({"type": "join", "room": "ops"})).await;
    within("the phone to be in #ops", async {
        while next_json(&mut on_a).await["type"] != "joined" {}
    })
    .await;
    for n in 0..10 {
        talker.say(&format!("n{n}")).await.unwrap();
    }
    let seen = events_until(&mut on_a, "n9").await;
    let last = seen.last().unwrap()["offset"].clone();
    // The phone drops off the network.
    drop(on_a);

    // 1,000 messages while it is away, kept by the cluster (node b heard
    // them all).
    for n in 10..1010 {
        talker.say(&format!("n{n}")).await.unwrap();
    }
    heard(&mut listener_on_b, "n1009").await;
    // The room keeps talking while it comes back, through node b.
    let talking = tokio::spawn(async move {
        for n in 1010..1500 {
            talker.say(&format!("n{n}")).await.unwrap();
        }
        sync(&mut talker).await;
        talker
    });
    let mut on_b = phone(&b).await;
    send_json(
        &mut on_b,
        json!({"type": "join", "room": "ops", "since": last}),
    )
    .await;
    let seen = events_until(&mut on_b, "n1499").await;
    let _talker = talking.await.unwrap();
    assert!(
        !seen.iter().any(|e| e["type"] == "gap"),
        "nothing was lost: {:?}",
        seen.iter().find(|e| e["type"] == "gap")
    );
    let messages: Vec<&Value> = seen.iter().filter(|e| e["type"] == "message").collect();
    let numbers: Vec<u64> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (10..1500).collect::<Vec<u64>>(),
        "every message after n9, once, in order"
    );
    // Positions are the cluster's: node b continues node a's numbering.
    let (epoch, seq) = sequence(&last);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(
            sequence(&message["offset"]),
            (epoch.clone(), seq + 1 + i as u64),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_node_with_nobody_in_the_room_shows_a_joiner_what_the_cluster_kept() {
    let redis = Redis::start().await;
    let a = keeping_node(&redis, "a", 100).await;
    let b = keeping_node(&redis, "b", 100).await;
    let (mut talker, _) = join(a.addr(0)).await;
    let mut on_a = phone(&a).await;
    for n in 1..=8 {
        talker.say(&format!("m{n}")).await.unwrap();
    }
    let seen_on_a = events_until(&mut on_a, "m8").await;

    // Node b had nobody in the lobby: a text client showing the last 5
    // sees them anyway, read from Redis, then the end of history.
    let mut late = Client::connect(b.addr(2)).await.unwrap();
    let kept = within("the last 5 and the end of history", async {
        let mut kept = Vec::new();
        loop {
            match late.next().await.unwrap().expect("connection open") {
                ServerLine::Kept { text, .. } => kept.push(text),
                ServerLine::Notice(text) if text.contains("end of history") => return kept,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(kept, ["m4", "m5", "m6", "m7", "m8"]);
    // The admin API of a third node, with nobody in the room, answers
    // with the same history and the same positions.
    let c = node_with(
        &redis,
        "c",
        &["text://127.0.0.1:0"],
        &["--history", "100", "--http", "127.0.0.1:0"],
    )
    .await;
    let http = c.http();
    let page =
        crate::http::get_json(format!("http://{http}/api/v1/rooms/lobby/history?limit=3")).await;
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m6", "m7", "m8"], "{page}");
    let m8 = page["messages"][2]["offset"].clone();
    assert_eq!(
        seen_on_a.last().unwrap()["offset"],
        m8,
        "the same position on every node"
    );
    // And it hears what is said next, once.
    talker.say("m9").await.unwrap();
    heard(&mut late, "m9").await;
    let (_, _, next) = {
        talker.say("m10").await.unwrap();
        expect_message(&mut late).await
    };
    assert_eq!(next, "m10");
}

#[tokio::test]
async fn redis_restarted_empty_is_a_new_epoch_and_a_resuming_client_is_told() {
    let mut redis = Redis::start().await;
    let a = keeping_node(&redis, "a", 100).await;
    let b = keeping_node(&redis, "b", 100).await;
    let (mut talker, _) = join(a.addr(0)).await;
    let mut on_a = phone(&a).await;
    talker.say("before").await.unwrap();
    let seen = events_until(&mut on_a, "before").await;
    let since = seen.last().unwrap()["offset"].clone();
    drop(on_a);

    redis.kill().await;
    expect_notice(&mut talker, "lost touch with the rest of its cluster").await;
    redis.restart().await;
    expect_notice(&mut talker, "back in touch").await;
    let (mut listener_on_b, _) = join(b.addr(0)).await;
    within("the room to span both nodes again", async {
        loop {
            talker.say("after").await.unwrap();
            if tokio::time::timeout(
                std::time::Duration::from_millis(300),
                heard(&mut listener_on_b, "after"),
            )
            .await
            .is_ok()
            {
                return;
            }
        }
    })
    .await;

    let mut on_b = phone(&b).await;
    send_json(
        &mut on_b,
        json!({"type": "join", "room": "lobby", "since": since}),
    )
    .await;
    let seen = events_until(&mut on_b, "after").await;
    let gap = seen.iter().find(|e| e["type"] == "gap").expect("a gap");
    assert_eq!(gap["reason"], "epoch");
    assert_eq!(gap["since"], since);
    assert!(texts(&seen).iter().all(|t| *t == "after"));
}

#[tokio::test]
async fn with_redis_gone_the_room_talks_on_and_a_client_resuming_from_before_is_told_it_lost_some()
{
    let mut redis = Redis::start().await;
    let a = keeping_node(&redis, "a", 100).await;
    let (mut talker, _) = join(a.addr(0)).await;
    let (mut neighbour, _) = join(a.addr(0)).await;
    let mut on_a = phone(&a).await;
    talker.say("recorded").await.unwrap();
    let seen = events_until(&mut on_a, "recorded").await;
    let since = seen.last().unwrap()["offset"].clone();
    drop(on_a);

    redis.kill().await;
    expect_notice(&mut talker, "lost touch with the rest of its cluster").await;
    talker.say("said while redis was gone").await.unwrap();
    heard(&mut neighbour, "said while redis was gone").await;

    let mut back = phone(&a).await;
    send_json(
        &mut back,
        json!({"type": "join", "room": "lobby", "since": since}),
    )
    .await;
    let (gap, messages) = within("a gap", async {
        let mut messages = Vec::new();
        loop {
            let event = next_json(&mut back).await;
            match event["type"].as_str() {
                Some("gap") => return (event, messages),
                Some("message") => messages.push(event),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(gap["reason"], "unrecorded", "{gap}");
    assert!(messages.is_empty(), "{messages:?}");
}

#[tokio::test]
async fn a_room_joined_while_redis_was_away_is_still_heard_after_its_history_is_read() {
    let mut redis = Redis::start().await;
    let a = keeping_node(&redis, "a", 100).await;
    let b = keeping_node(&redis, "b", 100).await;
    let (mut here, _) = join(a.addr(0)).await;
    redis.kill().await;
    expect_notice(&mut here, "lost touch with the rest of its cluster").await;
    // Joined while no change reaches Redis.
    here.send_line("/join ops").await.unwrap();
    sync(&mut here).await;
    redis.restart().await;
    expect_notice(&mut here, "back in touch").await;
    // The node's copy of #ops may have missed messages: reading it asks
    // Redis, holding the room meanwhile, and lets go after.
    here.send_line("/history").await.unwrap();
    sync(&mut here).await;
    let (mut there, _) = join(b.addr(0)).await;
    there.send_line("/join ops").await.unwrap();
    sync(&mut there).await;
    within("node a to hear #ops from node b", async {
        loop {
            there.say("over here").await.unwrap();
            if tokio::time::timeout(
                std::time::Duration::from_millis(300),
                heard(&mut here, "over here"),
            )
            .await
            .is_ok()
            {
                return;
            }
        }
    })
    .await;
}
