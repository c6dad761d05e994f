//! Several servers as one, over Redis: each test starts a real
//! `redis-server` on a free loopback port and real `switchboard` nodes
//! joined through it, and talks to them over real sockets.

use std::time::Duration;

use switchboard::{Client, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::{expect_line, expect_message, join, sync, within, BinaryServer};
use crate::redis::Redis;

/// A node: `switchboard serve` with `listen` specs, in the cluster.
async fn node(redis: &Redis, name: &str, listen: &[&str]) -> BinaryServer {
    node_with(redis, name, listen, &[]).await
}

/// A node as [`node`] starts it, with `extra` arguments.
pub(crate) async fn node_with(
    redis: &Redis,
    name: &str,
    listen: &[&str],
    extra: &[&str],
) -> BinaryServer {
    let url = redis.url();
    let mut args = vec!["--cluster", &url, "--node-name", name];
    for spec in listen {
        args.extend(["--listen", spec]);
    }
    args.extend([
        "--max-messages-per-second",
        "0",
        "--max-bytes-per-second",
        "0",
    ]);
    args.extend(extra);
    BinaryServer::start(&args).await
}

async fn text_node(redis: &Redis, name: &str) -> BinaryServer {
    node(redis, name, &["text://127.0.0.1:0"]).await
}

/// Renames `client` to `name`; panics if refused.
async fn nick(client: &mut Client, name: &str) {
    client.send_line(format!("/nick {name}")).await.unwrap();
    let wanted = format!("you are now known as {name}");
    let line = expect_line(client, "the rename", |l| {
        matches!(l, ServerLine::Notice(t) if *t == wanted) || matches!(l, ServerLine::Error(_))
    })
    .await;
    assert_eq!(line, ServerLine::Notice(wanted));
}

/// Waits until `client` is told `text` (a notice).
pub(crate) async fn expect_notice(client: &mut Client, text: &str) {
    expect_line(
        client,
        text,
        |l| matches!(l, ServerLine::Notice(t) if t.contains(text)),
    )
    .await;
}

/// Sends SIGNAL to `server`'s process.
fn signal(server: &BinaryServer, signal: &str) {
    let pid = server.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn text_json_and_raw_clients_on_three_nodes_share_rooms_names_and_direct_messages() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let b = node(&redis, "b", &["json://127.0.0.1:0"]).await;
    let c = node(&redis, "c", &["raw://127.0.0.1:0"]).await;

    let (mut alice, _) = join(a.addr(0)).await;
    nick(&mut alice, "alice").await;

    let bob = TcpStream::connect(b.addr(0)).await.unwrap();
    let (bob_read, mut bob_write) = bob.into_split();
    let mut bob_lines = BufReader::new(bob_read).lines();
    assert!(next_line(&mut bob_lines).await.contains("welcome"));
    expect_notice_containing(&mut alice, "joined #lobby").await;
    bob_write
        .write_all(b"{\"type\":\"nick\",\"name\":\"bob\"}\n")
        .await
        .unwrap();
    expect_notice(&mut alice, "is now known as bob").await;

    let mut device = TcpStream::connect(c.addr(0)).await.unwrap();
    expect_notice_containing(&mut alice, "joined #lobby").await;
    // Bob heard the device join too: past it, he has seen alice's rename.
    loop {
        let line = next_line(&mut bob_lines).await;
        if line.contains("\"joined\"") && line.contains("guest-") {
            break;
        }
    }

    alice.say("hello from a").await.unwrap();
    loop {
        let line = next_line(&mut bob_lines).await;
        if line.contains("\"message\"") {
            assert!(
                line.contains("\"from\":\"alice\"") && line.contains("hello from a"),
                "{line}"
            );
            break;
        }
    }
    let mut heard = vec![0u8; 13];
    within("the device to hear alice", device.read_exact(&mut heard))
        .await
        .unwrap();
    assert_eq!(&heard, b"hello from a\n");

    bob_write
        .write_all(b"{\"type\":\"say\",\"text\":\"hi from b\"}\n")
        .await
        .unwrap();
    assert_eq!(
        expect_message(&mut alice).await,
        ("lobby".into(), "bob".into(), "hi from b".into())
    );
    device.write_all(b"\x01\x03temp=21\n").await.unwrap();
    let (_, from, text) = expect_message(&mut alice).await;
    assert!(from.starts_with("guest-") && from.ends_with("-c"), "{from}");
    // Bytes with control characters reach a person as hex.
    assert_eq!(text, "<hex 01 03 74 65 6D 70 3D 32 31 0A>");

    // A direct message finds bob on his node, and his answer finds alice.
    alice.send_line("/msg bob psst").await.unwrap();
    loop {
        let line = next_line(&mut bob_lines).await;
        if line.contains("\"direct\"") {
            assert!(
                line.contains("\"from\":\"alice\"") && line.contains("psst"),
                "{line}"
            );
            break;
        }
    }
    bob_write
        .write_all(b"{\"type\":\"direct\",\"to\":\"alice\",\"text\":\"back at you\"}\n")
        .await
        .unwrap();
    let line = expect_line(&mut alice, "bob's answer", |l| {
        matches!(l, ServerLine::Direct { .. })
    })
    .await;
    assert_eq!(
        line,
        ServerLine::Direct {
            from: "bob".into(),
            text: "back at you".into()
        }
    );

    // The whole cluster, in listings.
    alice.send_line("/who").await.unwrap();
    let who = expect_notice_containing(&mut alice, "#lobby (3)").await;
    assert!(
        who.contains("alice") && who.contains("bob") && who.contains("-c"),
        "{who}"
    );
    alice.send_line("/rooms").await.unwrap();
    expect_notice_containing(&mut alice, "#lobby (3)").await;

    // A name is unique across the cluster.
    let (mut other, _) = join(a.addr(0)).await;
    other.send_line("/nick bob").await.unwrap();
    let refused = expect_line(&mut other, "the refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(
        matches!(&refused, ServerLine::Error(t) if t.contains("taken")),
        "{refused:?}"
    );
    // And guest names are the servers' to give.
    other.send_line("/nick guest-9-b").await.unwrap();
    let refused = expect_line(&mut other, "the refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(
        matches!(&refused, ServerLine::Error(t) if t.contains("guest-")),
        "{refused:?}"
    );
}

/// Waits until `client`'s node counts `members` in #lobby, across the
/// cluster: from then on, what the client says there reaches them all
/// (a node publishes a room's messages once it knows of members elsewhere).
async fn until_lobby_has(client: &mut Client, members: usize) {
    let wanted = format!("#lobby ({members})");
    within(&format!("{wanted} in /who"), async {
        loop {
            client.send_line("/who").await.unwrap();
            let who = expect_notice_containing(client, "#lobby (").await;
            if who.starts_with(&wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The next line a raw socket reads.
async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
) -> String {
    within("a line", lines.next_line())
        .await
        .unwrap()
        .expect("the connection is open")
}

/// Reads notices until one contains `text`; returns it.
async fn expect_notice_containing(client: &mut Client, text: &str) -> String {
    match expect_line(
        client,
        text,
        |l| matches!(l, ServerLine::Notice(t) if t.contains(text)),
    )
    .await
    {
        ServerLine::Notice(t) => t,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn fifty_clients_racing_for_one_name_on_three_nodes_exactly_one_wins() {
    let redis = Redis::start().await;
    let nodes = [
        text_node(&redis, "a").await,
        text_node(&redis, "b").await,
        text_node(&redis, "c").await,
    ];
    let mut clients = Vec::new();
    for i in 0..50 {
        let (client, _) = join(nodes[i % 3].addr(0)).await;
        clients.push(client);
    }
    for client in &mut clients {
        client.send_line("/nick alice").await.unwrap();
    }
    let mut winners = 0;
    for client in &mut clients {
        let answer = expect_line(client, "an answer to /nick", |l| {
            matches!(l, ServerLine::Error(_))
                || matches!(l, ServerLine::Notice(t) if t == "you are now known as alice")
        })
        .await;
        if let ServerLine::Notice(_) = answer {
            winners += 1;
        } else {
            assert!(
                matches!(&answer, ServerLine::Error(t) if t.contains("taken")),
                "{answer:?}"
            );
        }
    }
    assert_eq!(winners, 1, "exactly one client gets the name");
}

#[tokio::test]
async fn ten_thousand_messages_from_one_sender_arrive_in_order_on_other_nodes() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let b = text_node(&redis, "b").await;
    let c = text_node(&redis, "c").await;
    let (mut listener_b, _) = join(b.addr(0)).await;
    let (mut listener_c, _) = join(c.addr(0)).await;
    let (mut sender, _) = join(a.addr(0)).await;
    nick(&mut sender, "sender").await;
    expect_notice(&mut listener_b, "is now known as sender").await;
    expect_notice(&mut listener_c, "is now known as sender").await;
    until_lobby_has(&mut sender, 3).await;
    let sending = tokio::spawn(async move {
        for i in 0..10_000 {
            sender.say(&format!("m{i}")).await.unwrap();
        }
        sender
    });
    for listener in [&mut listener_b, &mut listener_c] {
        within("10,000 messages", async {
            let mut next = 0;
            while next < 10_000 {
                match listener.next().await.unwrap().expect("open") {
                    ServerLine::Message { from, text, .. } if from == "sender" => {
                        assert_eq!(text, format!("m{next}"), "in order");
                        next += 1;
                    }
                    ServerLine::Notice(t) if t.contains("lost") => panic!("{t}"),
                    _ => {}
                }
            }
        })
        .await;
    }
    sending.await.unwrap();
}

#[tokio::test]
async fn a_killed_node_frees_its_names_and_its_clients_are_announced_gone_when_its_lease_runs_out()
{
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let mut b = text_node(&redis, "b").await;
    let (mut watcher, _) = join(a.addr(0)).await;
    let (mut doomed, _) = join(b.addr(0)).await;
    nick(&mut doomed, "dora").await;
    expect_notice(&mut watcher, "is now known as dora").await;

    // Killed, node b says nothing: only its lease (3 s by default, well
    // within the test's patience) running out can tell node a.
    b.child.start_kill().expect("kill -9");
    expect_notice(&mut watcher, "dora left #lobby").await;
    watcher.send_line("/nick dora").await.unwrap();
    expect_notice(&mut watcher, "you are now known as dora").await;

    // Restarted at once under its name, it waits out its old lease, and
    // its clients are heard again.
    let again = text_node(&redis, "b").await;
    let (mut back, _) = join(again.addr(0)).await;
    back.say("b is back").await.unwrap();
    let (_, _, text) = expect_message(&mut watcher).await;
    assert_eq!(text, "b is back");
}

#[tokio::test]
async fn a_node_paused_past_its_lease_is_fenced_and_comes_back() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let mut b = text_node(&redis, "b").await;
    let (mut watcher, _) = join(a.addr(0)).await;
    let (mut sleeper, _) = join(b.addr(0)).await;
    nick(&mut sleeper, "sleepy").await;
    expect_notice(&mut watcher, "is now known as sleepy").await;

    signal(&b, "STOP");
    expect_notice(&mut watcher, "sleepy left #lobby").await;
    signal(&b, "CONT");
    b.expect_log("lease ran out").await;
    // It kept its name (nobody took it meanwhile), and is back in the room.
    within("sleepy to be heard again", async {
        loop {
            sleeper.say("i am back").await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            watcher.send_line("/who").await.unwrap();
            let who = expect_notice_containing(&mut watcher, "#lobby (").await;
            if who.contains("sleepy") {
                break;
            }
        }
    })
    .await;
    sleeper.say("one more").await.unwrap();
    let (_, from, text) = within("sleepy's next message", async {
        loop {
            let message = expect_message(&mut watcher).await;
            if message.2 == "one more" {
                return message;
            }
        }
    })
    .await;
    assert_eq!((from.as_str(), text.as_str()), ("sleepy", "one more"));
}

#[tokio::test]
async fn a_name_taken_while_its_node_was_fenced_is_lost_and_its_client_told() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let b = text_node(&redis, "b").await;
    let (mut taker, _) = join(a.addr(0)).await;
    let (mut sleeper, _) = join(b.addr(0)).await;
    nick(&mut sleeper, "sleepy").await;
    expect_notice(&mut taker, "is now known as sleepy").await;

    signal(&b, "STOP");
    expect_notice(&mut taker, "sleepy left #lobby").await;
    nick(&mut taker, "sleepy").await;
    signal(&b, "CONT");
    let lines = crate::common::read_to_end(&mut sleeper).await;
    assert!(
        lines.iter().any(|l| l.contains("took the name sleepy")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_subscriber_killed_in_redis_resubscribes_and_counts_what_it_missed() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let b = text_node(&redis, "b").await;
    let (mut talker, _) = join(a.addr(0)).await;
    let (mut listener, _) = join(b.addr(0)).await;
    nick(&mut talker, "talker").await;
    expect_notice(&mut listener, "is now known as talker").await;
    within("a gap to be announced", async {
        let mut i = 0;
        loop {
            // Messages sent while node b's subscriber is cut off are lost;
            // the first after it is back shows the gap.
            redis
                .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .await
                .expect("redis answers");
            for _ in 0..200 {
                talker.say(&format!("m{i}")).await.unwrap();
                i += 1;
            }
            sync(&mut talker).await;
            // Both nodes subscribed again, 'after' reaches node b.
            within("the nodes to subscribe again", async {
                loop {
                    let clients = redis
                        .command(&["CLIENT", "LIST", "TYPE", "pubsub"])
                        .await
                        .unwrap_or_default();
                    if clients.lines().count() >= 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            talker.say("after").await.unwrap();
            let announced = within("the listener to hear 'after'", async {
                let mut lost = false;
                loop {
                    match listener.next().await.unwrap().expect("open") {
                        ServerLine::Notice(t) if t.contains("may have been lost in #lobby") => {
                            lost = true
                        }
                        ServerLine::Message { text, .. } if text == "after" => return lost,
                        _ => {}
                    }
                }
            })
            .await;
            if announced {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn with_redis_gone_local_delivery_goes_on_and_the_cluster_recovers_when_it_is_back() {
    let mut redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    let b = text_node(&redis, "b").await;
    let (mut alice, _) = join(a.addr(0)).await;
    let (mut neighbour, _) = join(a.addr(0)).await;
    let (mut far, _) = join(b.addr(0)).await;
    nick(&mut alice, "alice").await;
    expect_notice(&mut far, "is now known as alice").await;

    redis.kill().await;
    expect_notice(&mut alice, "lost touch with the rest of its cluster").await;
    expect_notice(&mut neighbour, "lost touch with the rest of its cluster").await;
    alice.say("still here").await.unwrap();
    let (_, from, text) = expect_message(&mut neighbour).await;
    assert_eq!((from.as_str(), text.as_str()), ("alice", "still here"));
    // Names other than guests' cannot be claimed meanwhile.
    neighbour.send_line("/nick nora").await.unwrap();
    let refused = expect_line(&mut neighbour, "a refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(
        matches!(&refused, ServerLine::Error(t) if t.contains("degraded")),
        "{refused:?}"
    );

    redis.restart().await;
    expect_notice(&mut alice, "back in touch").await;
    expect_notice(&mut far, "back in touch").await;
    // Names were registered again: alice's is still hers.
    far.send_line("/nick alice").await.unwrap();
    let refused = expect_line(&mut far, "a refusal", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(
        matches!(&refused, ServerLine::Error(t) if t.contains("taken")),
        "{refused:?}"
    );
    // And the room spans both nodes again.
    within("alice to be heard on node b", async {
        loop {
            alice.say("across again").await.unwrap();
            match tokio::time::timeout(Duration::from_millis(300), expect_message(&mut far)).await {
                Ok((_, from, _)) if from == "alice" => break,
                _ => continue,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_shut_down_gracefully_frees_its_names_at_once() {
    let redis = Redis::start().await;
    let a = text_node(&redis, "a").await;
    // Its lease is longer than the test waits for anything: only the
    // node saying goodbye can free its names in time.
    let mut b = node_with(
        &redis,
        "b",
        &["text://127.0.0.1:0"],
        &["--cluster-lease", "60"],
    )
    .await;
    let (mut watcher, _) = join(a.addr(0)).await;
    let (mut leaving, _) = join(b.addr(0)).await;
    nick(&mut leaving, "lea").await;
    expect_notice(&mut watcher, "is now known as lea").await;

    b.terminate();
    let lines = crate::common::read_to_end(&mut leaving).await;
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
    expect_notice(&mut watcher, "lea left #lobby").await;
    nick(&mut watcher, "lea").await;
    let status = within("node b to exit", b.child.wait()).await.unwrap();
    assert!(
        status.success(),
        "a graceful shutdown exits 0, not {status}"
    );
}

#[tokio::test]
async fn status_the_api_and_metrics_show_the_nodes_and_what_crossed() {
    let redis = Redis::start().await;
    let url = redis.url();
    let a = BinaryServer::start(&[
        "--cluster",
        &url,
        "--node-name",
        "a",
        "--listen",
        "text://127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ])
    .await;
    let b = text_node(&redis, "b").await;
    let http = a.http();
    let (mut here, _) = join(a.addr(0)).await;
    let (mut there, _) = join(b.addr(0)).await;
    until_lobby_has(&mut there, 2).await;
    there.say("across").await.unwrap();
    expect_message(&mut here).await;

    let stats = within("the stats to show both nodes", async {
        loop {
            let stats = crate::http::get_json(format!("http://{http}/api/v1/stats")).await;
            let nodes = stats["cluster"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if nodes.len() == 2 && nodes.iter().all(|n| n["clients"] == 1) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let cluster = &stats["cluster"];
    assert_eq!(cluster["node"], "a");
    assert_eq!(cluster["degraded"], false);
    assert!(cluster["messages_in"].as_u64().unwrap() >= 1, "{cluster}");
    assert_eq!(cluster["gaps"], 0);

    let metrics = crate::http::metrics(&http).await;
    assert!(
        metrics.contains("switchboard_cluster_node_clients{node=\"b\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_cluster_degraded 0"),
        "{metrics}"
    );

    let status = crate::common::run(&["status", &http]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("cluster   node a") && text.contains("b (1)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_redis_that_asks_for_a_password_gets_it_from_the_url_and_a_wrong_one_stops_the_node() {
    let redis = Redis::start_with(Some("s3cret")).await;
    let a = text_node(&redis, "a").await;
    let b = text_node(&redis, "b").await;
    let (mut here, _) = join(a.addr(0)).await;
    let (mut there, _) = join(b.addr(0)).await;
    until_lobby_has(&mut there, 2).await;
    there.say("through a locked redis").await.unwrap();
    let (_, _, text) = expect_message(&mut here).await;
    assert_eq!(text, "through a locked redis");

    let wrong = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let output =
        crate::common::run(&["serve", "--listen", "127.0.0.1:0", "--cluster", &wrong]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot join the cluster") && stderr.contains("***@127.0.0.1"),
        "the error names the cluster, and not the password: {stderr}"
    );
    assert!(!stderr.contains("wrong@"), "{stderr}");
}

#[tokio::test]
async fn a_second_live_node_under_the_same_name_does_not_start() {
    let redis = Redis::start().await;
    let url = redis.url();
    let _first = BinaryServer::start(&[
        "--cluster",
        &url,
        "--node-name",
        "twin",
        "--cluster-lease",
        "1s",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    let second = crate::common::run(&[
        "serve",
        "--cluster",
        &url,
        "--node-name",
        "twin",
        "--cluster-lease",
        "1s",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already named twin"), "{stderr}");
}

#[tokio::test]
async fn nodes_meet_in_a_redis_over_tls_that_they_check_against_its_ca() {
    let dir = std::env::temp_dir().join(format!("switchboard-redis-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let made = crate::common::run(&[
        "cert",
        "--host",
        "127.0.0.1",
        "--out",
        dir.to_str().unwrap(),
    ])
    .await;
    assert!(made.status.success(), "{made:?}");
    let (cert, key) = (dir.join("127.0.0.1.pem"), dir.join("127.0.0.1-key.pem"));
    let redis = Redis::start_over_tls(cert.clone(), key).await;
    let url = redis.url();
    let ca = cert.to_str().unwrap();
    let node = |name: &'static str| {
        BinaryServer::start_owned(vec![
            "--cluster".into(),
            url.clone(),
            "--cluster-ca".into(),
            ca.into(),
            "--node-name".into(),
            name.into(),
            "--listen".into(),
            "text://127.0.0.1:0".into(),
        ])
    };
    let a = node("a").await;
    let b = node("b").await;
    let (mut here, _) = join(a.addr(0)).await;
    let (mut there, _) = join(b.addr(0)).await;
    until_lobby_has(&mut there, 2).await;
    there.say("over tls").await.unwrap();
    let (_, _, text) = expect_message(&mut here).await;
    assert_eq!(text, "over tls");

    // Without the CA, the certificate is not trusted: the node does not start.
    let untrusted =
        crate::common::run(&["serve", "--listen", "127.0.0.1:0", "--cluster", &url]).await;
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_device_that_connects_again_keeps_its_name_and_no_one_elsewhere_can_take_it() {
    let redis = Redis::start().await;
    let mut a = node(
        &redis,
        "a",
        &["text://127.0.0.1:0", "raw://127.0.0.1:0?register=imei"],
    )
    .await;
    let b = text_node(&redis, "b").await;
    let (mut app, _) = join(b.addr(0)).await;
    let device_addr = a.addr(1);
    let mut stale = tokio::net::TcpStream::connect(device_addr).await.unwrap();
    stale.write_all(b"861234567890123").await.unwrap();
    expect_notice(&mut app, "dev-861234567890123 joined #lobby").await;
    // The link dropped unseen; the device connects again to its node: its
    // name is handed over there and in Redis.
    let mut device = tokio::net::TcpStream::connect(device_addr).await.unwrap();
    let connected = a
        .expect_log(&format!("peer={}", device.local_addr().unwrap()))
        .await;
    let client = |line: &str| {
        line.split_whitespace()
            .find(|field| field.starts_with("client="))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no client id in {line}"))
    };
    device.write_all(b"861234567890123").await.unwrap();
    a.expect_log("a device connected again").await;
    let registered = a.expect_log("device registered").await;
    assert_eq!(client(&registered), client(&connected), "{registered}");
    device.write_all(b"T=21\n").await.unwrap();
    let (_, from, text) = expect_message(&mut app).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("dev-861234567890123", "T=21")
    );
    // Nobody on another node can take a name kept for devices.
    app.send_line("/nick dev-861234567890123").await.unwrap();
    let refused = expect_line(&mut app, "the refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(
        matches!(&refused, ServerLine::Error(e) if e.contains("taken") || e.contains("kept for devices")),
        "{refused:?}"
    );
}

/// Devices behind a balancer reconnect to whichever node it picks: a
/// device that connects again to another node than its stale
/// connection's replaces that connection there, as it would on one node.
#[tokio::test]
async fn a_device_that_connects_again_to_another_node_replaces_its_stale_connection_there() {
    let redis = Redis::start().await;
    let devices = ["text://127.0.0.1:0", "raw://127.0.0.1:0?register=imei"];
    let mut a = node(&redis, "a", &devices).await;
    let mut b = node(&redis, "b", &devices).await;
    let (mut app, _) = join(a.addr(0)).await;
    let mut stale = tokio::net::TcpStream::connect(a.addr(1)).await.unwrap();
    stale.write_all(b"861234567890123").await.unwrap();
    expect_notice(&mut app, "dev-861234567890123 joined #lobby").await;

    // The link dropped unseen; the balancer sends the device to node b.
    let mut device = tokio::net::TcpStream::connect(b.addr(1)).await.unwrap();
    device.write_all(b"861234567890123").await.unwrap();
    let logged = b
        .expect_logs(&["asked that node to close it", "device registered"])
        .await;
    assert!(logged[1].contains("dev-861234567890123"), "{logged:?}");
    // The stale connection is closed, saying why in node a's log.
    let mut buf = [0; 64];
    within("node a to close the stale connection", async {
        while stale.read(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await;
    a.expect_logs(&["its stale connection here is closed", "reason=replaced"])
        .await;
    // The app on node a hears the device through node b.
    device.write_all(b"T=21\n").await.unwrap();
    let (_, from, text) = expect_message(&mut app).await;
    assert_eq!(
        (from.as_str(), text.as_str()),
        ("dev-861234567890123", "T=21")
    );
    // And reaches it by name.
    app.send_line("/msg dev-861234567890123 ping")
        .await
        .unwrap();
    let mut heard = [0; 5];
    within("the device to hear the app", device.read_exact(&mut heard))
        .await
        .unwrap();
    assert_eq!(&heard, b"ping\n");
}

/// A node without device listeners keeps device names too: no client
/// there can wait under a device's name for what apps send it.
#[tokio::test]
async fn names_kept_for_devices_on_one_node_are_kept_on_every_node() {
    let redis = Redis::start().await;
    let _a = node(
        &redis,
        "a",
        &["text://127.0.0.1:0", "raw://127.0.0.1:0?register=imei"],
    )
    .await;
    let b = text_node(&redis, "b").await;
    // Node b hears of node a's device names within a heartbeat.
    within("node b to keep device names", async {
        loop {
            let (mut client, _) = join(b.addr(0)).await;
            client.send_line("/nick dev-999999999999999").await.unwrap();
            let answer = expect_line(&mut client, "the answer", |l| {
                matches!(l, ServerLine::Error(_))
                    || matches!(l, ServerLine::Notice(n) if n.starts_with("you are now known as"))
            })
            .await;
            match answer {
                ServerLine::Error(e) if e.contains("kept for devices") => return,
                ServerLine::Error(e) => panic!("{e}"),
                // Not yet: this client took it, and gives it back as it goes.
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
}
