//! The core user stories of relaying between text clients.

use crate::common;

use common::*;
use switchboard::config::Greeting;
use switchboard::{Client, Config, ServerLine};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn two_clients_relay_to_each_other_and_not_back_to_the_sender() {
    let server = TestServer::text().await;
    let (mut a, a_name) = join(server.text_addr()).await;
    let (mut b, b_name) = join(server.text_addr()).await;

    a.send_line("hello from a").await.unwrap();
    assert_eq!(
        expect_message(&mut b).await,
        ("lobby".into(), a_name.clone(), "hello from a".into())
    );
    b.send_line("hello from b").await.unwrap();
    assert_eq!(
        expect_message(&mut a).await,
        ("lobby".into(), b_name, "hello from b".into())
    );
    // The first message a receives is b's: its own never came back.
    sync(&mut a).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_writes_and_hangs_up_at_once_is_still_heard() {
    let server = TestServer::text().await;
    let (mut listener, _) = join(server.text_addr()).await;

    for message in ["Hello World\n", "no newline before hanging up"] {
        let mut one_shot = TcpStream::connect(server.text_addr()).await.unwrap();
        one_shot.write_all(message.as_bytes()).await.unwrap();
        drop(one_shot);
        let (_, _, text) = expect_message(&mut listener).await;
        assert_eq!(text, message.trim_end());
    }
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_kept_apart() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    let (mut c, _) = join(server.text_addr()).await;
    for client in [&mut a, &mut b] {
        client.send_line("/join devices").await.unwrap();
        expect_line(
            client,
            "the join confirmation",
            |l| matches!(l, ServerLine::Notice(t) if t.starts_with("you joined #devices")),
        )
        .await;
    }
    a.send_line("for devices only").await.unwrap();
    let (room, _, text) = expect_message(&mut b).await;
    assert_eq!(
        (room.as_str(), text.as_str()),
        ("devices", "for devices only")
    );

    // c, still in the lobby, hears nothing of it (the others' arrivals
    // and joins are all it hears).
    let heard = heard_until_pong(&mut c).await;
    assert!(
        !heard
            .iter()
            .any(|l| matches!(l, ServerLine::Message { .. })),
        "c heard {heard:?}"
    );
    c.send_line("/who devices").await.unwrap();
    let who = expect_line(&mut c, "who", |l| matches!(l, ServerLine::Notice(_))).await;
    assert!(who.to_string().starts_with("* #devices (2):"), "{who}");
    server.stop().await;
}

#[tokio::test]
async fn a_direct_message_reaches_only_its_addressee() {
    let server = TestServer::text().await;
    let (mut a, a_name) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    let (mut c, _) = join(server.text_addr()).await;
    b.send_line("/nick bob").await.unwrap();
    sync(&mut b).await;

    a.send_line("/msg bob psst").await.unwrap();
    let line = expect_line(&mut b, "a direct message", |l| {
        matches!(l, ServerLine::Direct { .. })
    })
    .await;
    assert_eq!(
        line,
        ServerLine::Direct {
            from: a_name,
            text: "psst".into()
        }
    );

    // c hears the others arrive and bob's rename, but not the message.
    let heard = heard_until_pong(&mut c).await;
    assert!(
        heard.iter().all(|l| matches!(l, ServerLine::Notice(_))),
        "c heard {heard:?}"
    );

    a.send_line("/msg nobody hello?").await.unwrap();
    let error = expect_line(&mut a, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert_eq!(error, ServerLine::Error("no client is named nobody".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_taken_name_is_refused_and_the_old_name_kept() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    let (mut b, b_name) = join(server.text_addr()).await;
    a.send_line("/nick alice").await.unwrap();
    sync(&mut a).await;

    b.send_line("/nick ALICE").await.unwrap();
    let error = expect_line(&mut b, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(error.to_string().contains("taken"), "{error}");

    b.send_line("still me").await.unwrap();
    let (_, from, _) = expect_message(&mut a).await;
    assert_eq!(from, b_name);

    b.send_line("/nick a:b").await.unwrap();
    let error = expect_line(&mut b, "an error", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(error.to_string().contains("not ':'"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn chinese_names_and_text_pass_through() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    a.send_line("/nick 小明").await.unwrap();
    sync(&mut a).await;
    a.send_line("你好，世界").await.unwrap();
    assert_eq!(
        expect_message(&mut b).await,
        ("lobby".into(), "小明".into(), "你好，世界".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn telnet_crlf_lines_are_relayed_without_the_cr() {
    let server = TestServer::text().await;
    let (mut a, a_name) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    a.send_line("one\r").await.unwrap();
    a.send_line("/nick telnet\r").await.unwrap();
    a.send_line("two\r").await.unwrap();
    assert_eq!(expect_message(&mut b).await.1, a_name);
    let raw = b.next_line_bytes().await.unwrap().unwrap();
    assert_eq!(raw, format!("* {a_name} is now known as telnet").as_bytes());
    let raw = b.next_line_bytes().await.unwrap().unwrap();
    assert_eq!(raw, b"[#lobby] telnet: two");
    server.stop().await;
}

#[tokio::test]
async fn a_megabyte_line_without_newline_is_refused_and_the_connection_stays_usable() {
    let server = TestServer::text().await;
    let (a, a_name) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;

    let huge = vec![b'x'; 1 << 20];
    let (mut reader, mut writer) = a.into_split();
    let write = tokio::spawn(async move {
        writer.write_all(&huge).await.unwrap();
        writer.write_all(b"\nafter the flood\n").await.unwrap();
        writer
    });
    let mut line = String::new();
    within("the line-too-long error", async {
        use tokio::io::AsyncBufReadExt;
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            if line.starts_with('!') {
                break;
            }
        }
    })
    .await;
    assert!(
        line.contains("line too long") && line.contains("65536"),
        "{line}"
    );
    within("the writer", write).await.unwrap();

    let (_, from, text) = expect_message(&mut b).await;
    assert_eq!((from, text), (a_name, "after the flood".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn unknown_commands_and_bad_arguments_get_an_error_pointing_to_help() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    for (input, expected) in [
        ("/dance", "unknown command /dance"),
        ("/join", "usage: /join ROOM"),
        ("/msg bob", "usage: /msg NAME TEXT"),
        ("/leave nowhere", "you are not in #nowhere"),
    ] {
        a.send_line(input).await.unwrap();
        let error = expect_line(&mut a, "an error", |l| matches!(l, ServerLine::Error(_))).await;
        let text = error.to_string();
        assert!(text.contains(expected), "{input}: {text}");
    }
    a.send_line("/help").await.unwrap();
    expect_line(
        &mut a,
        "help",
        |l| matches!(l, ServerLine::Notice(t) if t.contains("/msg NAME TEXT")),
    )
    .await;
    sync(&mut a).await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_and_controls_reach_text_clients_made_harmless() {
    let server = TestServer::text().await;
    let (mut a, a_name) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    a.send_line(b"caf\xe9 \xff\x00\x1b[2J").await.unwrap();
    // After a's arrival, which its first line announces.
    let line = within("the message", async {
        loop {
            let line = b.next_line_bytes().await.unwrap().unwrap();
            if line.starts_with(b"[") {
                return line;
            }
        }
    })
    .await;
    let expected = format!("[#lobby] {a_name}: caf\u{fffd} \u{fffd}^@^[[2J").into_bytes();
    assert_eq!(line, expected);
    server.stop().await;
}

#[tokio::test]
async fn messages_from_one_sender_arrive_in_order() {
    let server = TestServer::text().await;
    let (a, _) = join(server.text_addr()).await;
    let (mut b, _) = join(server.text_addr()).await;
    let (_reader, mut writer) = a.into_split();
    let mut batch = String::new();
    for i in 0..5000 {
        batch.push_str(&format!("message {i}\n"));
    }
    writer.write_all(batch.as_bytes()).await.unwrap();
    for i in 0..5000 {
        let (_, _, text) = expect_message(&mut b).await;
        assert_eq!(text, format!("message {i}"));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_legacy_client_reads_the_welcome_writes_a_line_and_reads_the_ack() {
    let config = Config {
        greeting: Greeting {
            welcome: Some("connect".into()),
            ack: Some("received".into()),
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let mut other = Client::connect(server.text_addr()).await.unwrap();
    assert_eq!(other.next_line().await.unwrap().as_deref(), Some("connect"));
    sync(&mut other).await;

    let mut legacy = Client::connect(server.text_addr()).await.unwrap();
    assert_eq!(
        within("welcome", legacy.next_line())
            .await
            .unwrap()
            .as_deref(),
        Some("connect")
    );
    legacy.send_line("hello").await.unwrap();
    assert_eq!(
        within("ack", legacy.next_line()).await.unwrap().as_deref(),
        Some("received")
    );
    let (_, _, text) = expect_message(&mut other).await;
    assert_eq!(text, "hello");
    server.stop().await;
}

#[tokio::test]
async fn joining_and_leaving_are_announced_to_the_room() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    let (b, b_name) = join(server.text_addr()).await;
    expect_line(&mut a, "the join notice", |l| {
        *l == ServerLine::Notice(format!("{b_name} joined #lobby"))
    })
    .await;
    drop(b);
    expect_line(&mut a, "the leave notice", |l| {
        *l == ServerLine::Notice(format!("{b_name} left #lobby (disconnected)"))
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn quitting_says_bye_and_closes() {
    let server = TestServer::text().await;
    let (mut a, _) = join(server.text_addr()).await;
    a.send_line("/quit").await.unwrap();
    assert_eq!(read_to_end(&mut a).await, vec!["* bye".to_string()]);
    server.stop().await;
}
