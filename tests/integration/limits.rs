//! Connection limits, idle clients, many clients at once, and an accept
//! loop that survives running out of file descriptors.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use switchboard::config::ConnectionLimits;
use switchboard::hub::HubSettings;
use switchboard::{Client, Config, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test]
async fn the_connection_after_max_connections_is_refused_with_a_reason() {
    let config = Config {
        limits: ConnectionLimits {
            max_connections: 3,
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(join(server.text_addr()).await.0);
    }
    let mut fourth = Client::connect(server.text_addr()).await.unwrap();
    let lines = read_to_end(&mut fourth).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("! refused: server full: 3 connections"),
        "{lines:?}"
    );

    // A slot freed is a slot taken.
    let mut leaving = clients.pop().unwrap();
    leaving.send_line("/quit").await.unwrap();
    read_to_end(&mut leaving).await;
    within("a slot to free up", async {
        loop {
            let mut client = Client::connect(server.text_addr()).await.unwrap();
            if let Some(ServerLine::Notice(welcome)) = client.next().await.unwrap() {
                assert!(welcome.starts_with("welcome"));
                break;
            }
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn too_many_connections_from_one_address_are_refused() {
    let config = Config {
        limits: ConnectionLimits {
            max_connections_per_ip: Some(2),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let _a = join(server.text_addr()).await;
    let _b = join(server.text_addr()).await;
    let mut third = Client::connect(server.text_addr()).await.unwrap();
    let lines = read_to_end(&mut third).await;
    assert!(
        lines[0].contains("too many connections from 127.0.0.1"),
        "{lines:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_client_is_disconnected_with_the_reason() {
    let config = Config {
        limits: ConnectionLimits {
            idle_timeout: Some(Duration::from_millis(300)),
            ..Config::local().limits
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let (mut idle, _) = join(server.text_addr()).await;
    let lines = read_to_end(&mut idle).await;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("! disconnected: idle: this client sent nothing for 300ms (idle timeout)")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_all_receive_one_broadcast() {
    const CLIENTS: usize = 1000;
    let config = Config {
        // No join notices: each of the thousand would go to everyone.
        hub: HubSettings {
            announce_max_members: 0,
            ..Config::local().hub
        },
        ..Config::local()
    };
    let server = TestServer::start(config).await;
    let addr = server.text_addr();
    let mut receivers = Vec::new();
    for _ in 0..CLIENTS {
        receivers.push(join(addr).await.0);
    }
    let (mut sender, sender_name) = join(addr).await;
    sender.send_line("/who").await.unwrap();
    let who = expect_line(&mut sender, "who", |l| matches!(l, ServerLine::Notice(_))).await;
    // A listing shows at most 100 names, and how many there are in all.
    assert!(
        who.to_string()
            .starts_with(&format!("* #lobby (100 of {}):", CLIENTS + 1)),
        "{who}"
    );

    sender.send_line("to all of you").await.unwrap();
    let receiving = receivers.into_iter().map(|mut client| {
        let sender_name = sender_name.clone();
        tokio::spawn(async move {
            let message = expect_message(&mut client).await;
            assert_eq!(
                message,
                ("lobby".into(), sender_name, "to all of you".into())
            );
        })
    });
    for task in receiving.collect::<Vec<_>>() {
        within("every client to receive the broadcast", task)
            .await
            .unwrap();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_loop_survives_running_out_of_file_descriptors() {
    // The server may hold 40 files; 60 clients exhaust that.
    let mut child = tokio::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 40 && exec \"$0\" serve --listen 127.0.0.1:0",
        ])
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: std::net::SocketAddr = within("the listening line", async {
        loop {
            let line = log.next_line().await.unwrap().expect("server running");
            if let Some(at) = line.find("text://") {
                return line[at + 7..].trim().parse().unwrap();
            }
        }
    })
    .await;

    // Connections beyond the limit wait in the backlog while accept fails.
    let mut crowd = Vec::new();
    for _ in 0..60 {
        crowd.push(TcpStream::connect(addr).await.unwrap());
    }
    within("the accept error in the log", async {
        loop {
            let line = log.next_line().await.unwrap().expect("server running");
            if line.contains("accept failed") {
                assert!(line.contains("retrying"), "{line}");
                break;
            }
        }
    })
    .await;
    // Freeing descriptors lets the server take new clients again.
    drop(crowd);
    within("a client to be served again", async {
        loop {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut first = [0u8; 9];
            if stream.read_exact(&mut first).await.is_ok() && &first == b"* welcome" {
                break;
            }
        }
    })
    .await;
    child.start_kill().unwrap();
}
