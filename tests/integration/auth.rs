//! Listeners that ask who clients are (`?auth=required`): nothing before
//! authenticating, users and their names, room permissions, failed
//! attempts slowed down, tokens (static and JWT) that expire, devices whose
//! first line is their token, and secrets kept out of the log.

use crate::common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use switchboard::auth::password;
use switchboard::config::{HistorySettings, HttpSettings};
use switchboard::{Client, Config, ListenerSpec, ServerLine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "device-token-0123456789";
const JWT_SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

/// A users file for one test, removed when dropped.
struct UsersFile(PathBuf);

impl UsersFile {
    /// `entries`: (user, password, extra TOML lines).
    fn new(entries: &[(&str, &str, &str)]) -> UsersFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-users-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let text: String = entries
            .iter()
            .map(|(user, pass, extra)| {
                let hash = password::hash(pass).unwrap();
                format!("[users.{user}]\npassword = \"{hash}\"\n{extra}\n")
            })
            .collect();
        std::fs::write(&path, text).unwrap();
        UsersFile(path)
    }
}

impl Drop for UsersFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server with a text listener that asks for credentials (first), an
/// open one (second), and whatever `more` listeners.
fn config(users: &UsersFile, more: &[&str]) -> Config {
    let mut listeners: Vec<ListenerSpec> = vec![
        "127.0.0.1:0?auth=required".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    ];
    listeners.extend(more.iter().map(|spec| spec.parse().unwrap()));
    let mut config = Config {
        listeners,
        ..Config::local()
    };
    config.auth.users_file = Some(users.0.clone());
    config.auth.tokens = vec![TOKEN.into()];
    config.auth.jwt_secret = Some(JWT_SECRET.into());
    config
}

/// Connects to the listener that asks for credentials and reads its
/// prompt.
async fn at_the_gate(server: &TestServer) -> Client {
    let mut client = Client::connect(server.listeners[0].addr).await.unwrap();
    let prompt = expect_line(&mut client, "the prompt", |_| true).await;
    assert!(
        matches!(&prompt, ServerLine::Notice(text) if text.contains("/login USER PASSWORD")),
        "{prompt:?}"
    );
    client
}

/// Logs in and reads up to the welcome; returns the name given.
async fn log_in(client: &mut Client, command: &str) -> String {
    client.send_line(command).await.unwrap();
    let line = expect_line(client, "the welcome", |l| {
        matches!(l, ServerLine::Notice(t) if t.starts_with("welcome"))
            || matches!(l, ServerLine::Error(_))
    })
    .await;
    let ServerLine::Notice(text) = line else {
        panic!("not let in: {line:?}")
    };
    text["welcome ".len()..]
        .split('!')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_client_can_do_nothing_before_it_authenticates() {
    let users = UsersFile::new(&[("alice", "correct horse", "")]);
    let server = TestServer::start(config(&users, &[])).await;
    let (mut watcher, _) = join(server.listeners[1].addr).await;
    let mut client = at_the_gate(&server).await;

    for attempt in [
        "hello?",
        "/join lobby",
        "/msg guest-1 hi",
        "/nick mallory",
        "/who",
    ] {
        client.send_line(attempt).await.unwrap();
        let answer = expect_line(&mut client, "a refusal", |_| true).await;
        assert!(
            matches!(&answer, ServerLine::Error(e) if e.starts_with("authenticate first")),
            "{attempt}: {answer:?}"
        );
    }
    // Nobody heard anything, and it is in no room.
    watcher.send_line("/who").await.unwrap();
    let who = expect_line(
        &mut watcher,
        "the member list",
        |l| matches!(l, ServerLine::Notice(t) if t.starts_with("#lobby")),
    )
    .await;
    assert!(!who.to_string().contains("guest-2"), "{who}");

    let name = log_in(&mut client, "/login alice correct horse").await;
    assert_eq!(name, "alice");
    client.say("now I can talk").await.unwrap();
    let (_, from, text) = expect_message(&mut watcher).await;
    assert_eq!((from.as_str(), text.as_str()), ("alice", "now I can talk"));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_authenticates_is_told_why_and_closed() {
    let users = UsersFile::new(&[("alice", "pw-alice", "")]);
    let server = TestServer::start(Config {
        auth_timeout: Duration::from_millis(500),
        ..config(&users, &[])
    })
    .await;
    let mut client = at_the_gate(&server).await;
    let said = read_to_end(&mut client).await.join("\n");
    assert!(said.contains("not authenticated within 500ms"), "{said}");
    server.stop().await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_slowed_down() {
    let users = UsersFile::new(&[("alice", "right", "")]);
    let server = TestServer::start(config(&users, &[])).await;
    let mut client = at_the_gate(&server).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        client.send_line("/login alice wrong").await.unwrap();
        let answer = expect_line(&mut client, "an answer", |_| true).await;
        answers.push(answer.to_string());
    }
    assert_eq!(answers[0], "! wrong user name or password");
    assert!(
        answers
            .iter()
            .any(|a| a.contains("too many failed attempts from your address: try again in")),
        "attempts after the first few are slowed down: {answers:?}"
    );
    // A user that does not exist gets the same answer as a wrong password
    // (asked from another address, which the back-off does not hold).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(server.listeners[0].addr).await.unwrap();
    let mut other = Client::from_stream(stream);
    expect_line(&mut other, "the prompt", |_| true).await;
    other.send_line("/login nobody wrong").await.unwrap();
    let answer = expect_line(&mut other, "an answer", |_| true).await;
    assert_eq!(answer.to_string(), answers[0]);
    server.stop().await;
}

#[tokio::test]
async fn users_may_go_only_where_their_entry_allows() {
    let users = UsersFile::new(&[(
        "bob",
        "pw-bob",
        r#"join = ["lobby", "team-*"]
send = ["team-*"]"#,
    )]);
    let server = TestServer::start(config(&users, &[])).await;
    let mut bob = at_the_gate(&server).await;
    log_in(&mut bob, "/login bob pw-bob").await;

    bob.say("in the lobby").await.unwrap();
    let refusal = expect_line(&mut bob, "a refusal", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(refusal.to_string().contains("may not send to"), "{refusal}");
    bob.send_line("/join ops").await.unwrap();
    let refusal = expect_line(&mut bob, "a refusal", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(refusal.to_string().contains("may not join"), "{refusal}");

    let (mut teammate, _) = join(server.listeners[1].addr).await;
    teammate.send_line("/join team-red").await.unwrap();
    sync(&mut teammate).await;
    bob.send_line("/join team-red").await.unwrap();
    bob.say("hello team").await.unwrap();
    let (room, from, text) = expect_message(&mut teammate).await;
    assert_eq!(
        (room.as_str(), from.as_str(), text.as_str()),
        ("team-red", "bob", "hello team")
    );
    server.stop().await;
}

/// A room's history is read only from inside it: a user who may not join
/// the room cannot read what was said there, by any request.
#[tokio::test]
async fn who_may_not_join_a_room_may_not_read_its_history() {
    let users = UsersFile::new(&[("bob", "pw-bob", "join = [\"lobby\"]\nmax-connections = 2")]);
    let server = TestServer::start(Config {
        history: HistorySettings {
            keep: 100,
            ..Default::default()
        },
        ..config(&users, &["json://127.0.0.1:0?auth=required"])
    })
    .await;
    let (mut insider, _) = join(server.listeners[1].addr).await;
    insider.send_line("/join secret").await.unwrap();
    insider.say("the code is 1234").await.unwrap();
    sync(&mut insider).await;

    let mut bob = at_the_gate(&server).await;
    log_in(&mut bob, "/login bob pw-bob").await;
    bob.send_line("/join secret").await.unwrap();
    let refusal = expect_line(&mut bob, "a refusal", |l| matches!(l, ServerLine::Error(_))).await;
    assert!(refusal.to_string().contains("may not join"), "{refusal}");
    // /history reads the current room only: still the lobby.
    bob.send_line("/history").await.unwrap();
    let heard = heard_until_pong(&mut bob).await;
    assert!(
        !heard.iter().any(|l| l.to_string().contains("1234")),
        "{heard:?}"
    );

    // Over JSON: a history of the room, and a join with since, refused.
    let mut json_bob = Client::connect(server.listeners[2].addr).await.unwrap();
    json_bob
        .send_line(json!({"type": "auth", "user": "bob", "password": "pw-bob"}).to_string())
        .await
        .unwrap();
    within("bob's welcome", async {
        loop {
            let event: Value = json_bob.next_json().await.unwrap().expect("open");
            if event["type"] == "welcome" {
                return;
            }
            assert_ne!(event["type"], "error", "{event}");
        }
    })
    .await;
    let reads = [
        json!({"type": "history", "room": "secret", "id": 1}),
        json!({"type": "join", "room": "secret", "since": "0000000000000001-1", "id": 2}),
        json!({"type": "ping", "id": 3}),
    ];
    for read in reads {
        json_bob.send_line(read.to_string()).await.unwrap();
    }
    let mut answers = Vec::new();
    within("the answers", async {
        loop {
            let event: Value = json_bob.next_json().await.unwrap().expect("open");
            assert!(!event.to_string().contains("1234"), "{event}");
            if event.get("id").is_some() {
                answers.push(event.clone());
            }
            if event["type"] == "pong" {
                return;
            }
        }
    })
    .await;
    assert_eq!(answers[0]["code"], "not_in_room", "{answers:?}");
    assert_eq!(answers[1]["code"], "forbidden", "{answers:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_users_name_is_kept_for_it_and_its_further_connections_are_numbered() {
    let users = UsersFile::new(&[("carol", "pw-carol", "max-connections = 2")]);
    let server = TestServer::start(Config {
        http: HttpSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        ..config(&users, &[])
    })
    .await;

    // Nobody else can take the name, nor one that looks like it.
    let (mut guest, _) = join(server.listeners[1].addr).await;
    for name in ["carol", "Carol", "caro1", "carol-2"] {
        guest.send_line(format!("/nick {name}")).await.unwrap();
        let refusal = expect_line(&mut guest, "a refusal", |l| {
            matches!(l, ServerLine::Error(_))
        })
        .await;
        assert!(
            refusal.to_string().contains("belongs to a user"),
            "{name}: {refusal}"
        );
    }

    let mut first = at_the_gate(&server).await;
    assert_eq!(log_in(&mut first, "/login carol pw-carol").await, "carol");
    let mut second = at_the_gate(&server).await;
    assert_eq!(
        log_in(&mut second, "/login carol pw-carol").await,
        "carol-2"
    );
    second.send_line("/nick someone-else").await.unwrap();
    let refusal = expect_line(&mut second, "a refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert!(
        refusal.to_string().contains("your name is your user name"),
        "{refusal}"
    );

    let mut third = at_the_gate(&server).await;
    third.send_line("/login carol pw-carol").await.unwrap();
    let said = read_to_end(&mut third).await.join("\n");
    assert!(
        said.contains("carol already has 2 connections open, the most allowed"),
        "{said}"
    );

    // The admin sees who logged in.
    let mut api = TcpStream::connect(server.http.unwrap()).await.unwrap();
    api.write_all(
        b"GET /api/v1/clients?sort=name HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    within("the API's answer", api.read_to_string(&mut answer))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let logged_in: Vec<(&str, bool)> = body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["logged_in"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(logged_in.contains(&("carol", true)), "{logged_in:?}");
    assert!(logged_in.contains(&("carol-2", true)), "{logged_in:?}");
    assert!(
        logged_in
            .iter()
            .any(|(name, logged)| name.starts_with("guest-") && !logged),
        "{logged_in:?}"
    );
    server.stop().await;
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_jwt_names_its_client_and_its_expiry_disconnects_it_with_the_reason() {
    let users = UsersFile::new(&[("alice", "pw", "")]);
    let server = TestServer::start(config(&users, &[])).await;
    let mut client = at_the_gate(&server).await;
    // Expiring in 2 s (1 s and some, in whole seconds): a machine that
    // stalls past it refuses the token as expired, and then one with
    // twice the time is tried.
    let mut ttl = 2;
    loop {
        let token = jwt(json!({"sub": "dave", "exp": now() + ttl, "rooms": ["lobby"]}));
        client.send_line(format!("/auth {token}")).await.unwrap();
        let answer = expect_line(&mut client, "the welcome", |l| {
            matches!(l, ServerLine::Notice(t) if t.starts_with("welcome"))
                || matches!(l, ServerLine::Error(_))
        })
        .await;
        match answer {
            ServerLine::Notice(welcome) => {
                assert!(welcome.starts_with("welcome dave"), "{welcome}");
                break;
            }
            ServerLine::Error(e) if e.contains("expired") && ttl < 30 => ttl *= 2,
            other => panic!("not let in: {other:?}"),
        }
    }
    let said = read_to_end(&mut client).await.join("\n");
    assert!(said.contains("credentials expired"), "{said}");

    let mut late = at_the_gate(&server).await;
    let expired = jwt(json!({"sub": "dave", "exp": now() - 60}));
    late.send_line(format!("/auth {expired}")).await.unwrap();
    let refusal = expect_line(&mut late, "a refusal", |l| {
        matches!(l, ServerLine::Error(_))
    })
    .await;
    assert_eq!(refusal.to_string(), "! the token has expired");
    server.stop().await;
}

#[tokio::test]
async fn json_clients_authenticate_with_an_auth_request() {
    let users = UsersFile::new(&[("erin", "pw-erin", "")]);
    let server = TestServer::start(config(&users, &["json://127.0.0.1:0?auth=required"])).await;
    let mut client = Client::connect(server.listeners[2].addr).await.unwrap();
    let prompt = within("the prompt", client.next_json())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(prompt["type"], "auth_required");
    client
        .send_line(r#"{"type":"say","text":"too early"}"#)
        .await
        .unwrap();
    let refusal = within("a refusal", client.next_json())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(refusal["code"], "auth_required");
    client
        .send_line(r#"{"type":"auth","user":"erin","password":"pw-erin","id":1}"#)
        .await
        .unwrap();
    let authenticated = within("the answer", client.next_json())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            &authenticated["type"],
            &authenticated["name"],
            &authenticated["id"]
        ),
        (&json!("authenticated"), &json!("erin"), &json!(1))
    );
    let welcome = within("the welcome", client.next_json())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(welcome["type"], "welcome");
    server.stop().await;
}

#[tokio::test]
async fn a_device_sends_its_token_as_its_first_line_then_data() {
    let users = UsersFile::new(&[("alice", "pw", "")]);
    let server = TestServer::start(config(
        &users,
        &["raw://127.0.0.1:0?auth=required&room=devices"],
    ))
    .await;
    let (mut app, _) = join(server.listeners[1].addr).await;
    app.send_line("/join devices").await.unwrap();
    sync(&mut app).await;

    let mut device = TcpStream::connect(server.listeners[2].addr).await.unwrap();
    device
        .write_all(format!("{TOKEN}\n21.5C\n").as_bytes())
        .await
        .unwrap();
    let (room, _, text) = expect_message(&mut app).await;
    assert_eq!((room.as_str(), text.as_str()), ("devices", "21.5C"));

    // A wrong token: nothing relayed.
    let mut impostor = TcpStream::connect(server.listeners[2].addr).await.unwrap();
    impostor
        .write_all(b"not-the-token\nforged\n")
        .await
        .unwrap();
    app.say("checkpoint").await.unwrap();
    let heard = heard_until_pong(&mut app).await;
    assert!(
        !heard.iter().any(|l| l.to_string().contains("forged")),
        "the impostor was relayed: {heard:?}"
    );
    device.write_all(b"22.0C\n").await.unwrap();
    let (_, _, text) = expect_message(&mut app).await;
    assert_eq!(text, "22.0C", "the impostor's data never arrived");
    server.stop().await;
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_log() {
    let users = UsersFile::new(&[("frank", "frank-password", "")]);
    let mut server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0?auth=required",
        "--users",
        users.0.to_str().unwrap(),
        "--token",
        TOKEN,
    ])
    .await;
    let mut client = Client::connect(server.addr(0)).await.unwrap();
    client
        .send_line("/login frank guessed-password-123")
        .await
        .unwrap();
    let failure = server.expect_log("failed login").await;
    client
        .send_line("/auth wrong-token-4567890123")
        .await
        .unwrap();
    let bad_token = server.expect_log("failed").await;
    client.send_line(format!("/auth {TOKEN}")).await.unwrap();
    let success = server.expect_log("client authenticated").await;
    for line in [&failure, &bad_token, &success] {
        for secret in ["guessed-password-123", "wrong-token-4567890123", TOKEN] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

#[test]
fn asking_for_credentials_without_any_configured_is_refused_at_start() {
    let config = Config {
        listeners: vec!["127.0.0.1:0?auth=required".parse().unwrap()],
        ..Config::local()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("--users FILE") && error.contains("--token"),
        "{error}"
    );
}

#[tokio::test]
async fn scripts_log_in_with_a_password_file_the_environment_or_a_token_file() {
    let users = UsersFile::new(&[("logger", "logger-password", "")]);
    let dir = TempDir::new("script-login");
    let password_file = dir.join("password");
    std::fs::write(&password_file, "logger-password\n").unwrap();
    let wrong_file = dir.join("wrong");
    std::fs::write(&wrong_file, "not-the-password\n").unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = BinaryServer::start(&[
        "--listen",
        "127.0.0.1:0?auth=required",
        "--listen",
        "127.0.0.1:0",
        "--users",
        users.0.to_str().unwrap(),
        "--token",
        TOKEN,
    ])
    .await;
    let gated = server.addr(0).to_string();
    let mut listener = Client::connect(server.addr(1)).await.unwrap();
    sync(&mut listener).await;
    let send = |args: Vec<String>, env: Option<(&'static str, &'static str)>| async move {
        let mut all = vec!["send".to_owned(), "--timeout".into(), "3s".into()];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut command = switchboard(&all);
        if let Some((var, value)) = env {
            command.env(var, value);
        }
        let output = within("send to exit", command.output()).await.unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    // Without credentials, nothing gets through, and send says so.
    let (ok, stderr) = send(vec![gated.clone(), "anonymous".into()], None).await;
    assert!(!ok && stderr.contains("authenticate first"), "{stderr}");
    // A password from a file, from the environment; a token from a file.
    for (args, env) in [
        (
            vec![
                "--user".into(),
                "logger".into(),
                "--password-file".into(),
                path(&password_file),
            ],
            None,
        ),
        (
            vec!["--user".into(), "logger".into()],
            Some(("SWITCHBOARD_PASSWORD", "logger-password")),
        ),
        (vec!["--token-file".into(), path(&token_file)], None),
    ] {
        let mut all = args.clone();
        all.extend([gated.clone(), "logged in".into()]);
        assert_eq!(send(all, env).await, (true, String::new()), "{args:?}");
        assert_eq!(expect_message(&mut listener).await.2, "logged in");
    }
    // A wrong password: non-zero, with the server's reason.
    let (ok, stderr) = send(
        vec![
            "--user".into(),
            "logger".into(),
            "--password-file".into(),
            path(&wrong_file),
            gated.clone(),
            "x".into(),
        ],
        None,
    )
    .await;
    assert!(
        !ok && stderr.contains("wrong user name or password"),
        "{stderr}"
    );
    // No terminal to ask on: told where a password can come from.
    let (ok, stderr) = send(
        vec!["--user".into(), "logger".into(), gated.clone(), "x".into()],
        None,
    )
    .await;
    assert!(
        !ok && stderr.contains("--password-file FILE or SWITCHBOARD_PASSWORD"),
        "{stderr}"
    );
}

#[tokio::test]
async fn no_password_or_token_reaches_the_log_even_at_trace_level() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    const PASSWORD: &str = "frank-secret-password";
    const ADMIN: &str = "an-admin-token-0123456789";
    let users = UsersFile::new(&[("frank", PASSWORD, "max-connections = 2")]);
    let mut server = BinaryServer::start(&[
        "-vv",
        "--listen",
        "127.0.0.1:0?auth=required",
        "--http",
        "127.0.0.1:0?auth=required",
        "--users",
        users.0.to_str().unwrap(),
        "--token",
        TOKEN,
        "--admin-token",
        ADMIN,
    ])
    .await;
    let http = server.listeners[1]
        .strip_prefix("http://")
        .and_then(|rest| rest.split('?').next())
        .expect("the HTTP listener")
        .to_owned();

    // A TCP login, a /ws login, a token, and the admin API with its token;
    // every line the server logs is kept.
    let mut logged = Vec::new();
    let mut client = Client::connect(server.addr(0)).await.unwrap();
    client
        .send_line(format!("/login frank {PASSWORD}"))
        .await
        .unwrap();
    logged_until(&mut server, &mut logged, "client authenticated").await;
    // A refused request is a debug line: proof that -vv took effect.
    client.send_line("/no-such-command").await.unwrap();
    logged_until(&mut server, &mut logged, "request refused").await;
    let (mut ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(format!("ws://{http}/ws")),
    )
    .await
    .unwrap();
    ws.send(Message::text(
        json!({"type": "auth", "user": "frank", "password": PASSWORD}).to_string(),
    ))
    .await
    .unwrap();
    ws.send(Message::text(
        json!({"type": "say", "text": "x"}).to_string(),
    ))
    .await
    .unwrap();
    logged_until(&mut server, &mut logged, "client authenticated").await;
    let mut by_token = Client::connect(server.addr(0)).await.unwrap();
    by_token.send_line(format!("/auth {TOKEN}")).await.unwrap();
    logged_until(&mut server, &mut logged, "client authenticated").await;
    let stats = crate::http::http()
        .get(format!("http://{http}/api/v1/stats"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let _ = ws.next().await;

    // Everything the server logged, to its end.
    server.terminate();
    within("the server's log to end", async {
        while let Some(line) = server.log.recv().await {
            logged.push(line);
        }
    })
    .await;
    // -vv took effect (the crates whose traces hold secrets are capped
    // at debug; without the cap, tungstenite traces the /ws login frame).
    assert!(
        logged.iter().any(|line| line.contains("DEBUG")),
        "the server logged verbosely"
    );
    for line in &logged {
        for secret in [PASSWORD, TOKEN, ADMIN] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

/// Waits for a log line with `needle`, keeping every line in `logged`.
async fn logged_until(server: &mut BinaryServer, logged: &mut Vec<String>, needle: &str) {
    within(&format!("a log line with {needle:?}"), async {
        loop {
            let line = server.log.recv().await.expect("the server's log ended");
            let found = line.contains(needle);
            logged.push(line);
            if found {
                return;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_jwt_subject_passes_what_a_chosen_name_passes() {
    let users = UsersFile::new(&[("alice", "pw-alice", "")]);
    // A device listener keeps dev- names for devices.
    let server = TestServer::start(config(
        &users,
        &["raw://127.0.0.1:0?register=imei&room=dev-{id}"],
    ))
    .await;
    for (sub, why) in [
        ("dev-861234567890123", "kept for devices"),
        ("guest-7", "given out by the server"),
        ("AIice", "invalid token"),
        ("ALICE", "invalid token"),
    ] {
        let mut client = at_the_gate(&server).await;
        let token = jwt(json!({"sub": sub, "exp": now() + 60}));
        client.send_line(format!("/auth {token}")).await.unwrap();
        client.send_line("/ping").await.unwrap();
        // Up to the pong (still at the gate) or the close (turned away).
        let said = within("the answer", async {
            let mut said = Vec::new();
            while let Some(line) = client.next_line().await.unwrap_or(None) {
                if line == "* pong" {
                    break;
                }
                said.push(line);
            }
            said.join("\n")
        })
        .await;
        assert!(said.contains(why), "{sub}: {said}");
        assert!(!said.contains("welcome"), "{sub} was let in: {said}");
    }
    // An expiry past what a clock holds is a long life, not a panic.
    let mut client = at_the_gate(&server).await;
    let token = jwt(json!({"sub": "dave", "exp": 9_223_372_036_854_775_808u64}));
    assert_eq!(log_in(&mut client, &format!("/auth {token}")).await, "dave");
    sync(&mut client).await;
    drop(client);
    // The listener counts it gone: nobody is left at the gate.
    let mut last = at_the_gate(&server).await;
    let token = jwt(json!({"sub": "erin", "exp": now() + 60}));
    assert_eq!(log_in(&mut last, &format!("/auth {token}")).await, "erin");
    last.send_line("/who").await.unwrap();
    let who = expect_line(
        &mut last,
        "who",
        |l| matches!(l, ServerLine::Notice(t) if t.starts_with("#lobby")),
    )
    .await;
    assert!(!who.to_string().contains("dave"), "{who}");
    server.stop().await;
}

#[tokio::test]
async fn a_user_kept_to_some_rooms_reaches_only_the_names_it_is_granted() {
    let users = UsersFile::new(&[
        (
            "bob",
            "pw-bob",
            "join = [\"team-*\"]\nsend = [\"team-*\"]\nmax-connections = 2",
        ),
        (
            "carol",
            "pw-carol",
            "join = [\"team-*\"]\nsend = [\"team-*\"]\ndirect = [\"ops-*\"]",
        ),
    ]);
    let server = TestServer::start(config(&users, &["json://127.0.0.1:0?auth=required"])).await;
    // Others, in the lobby and in #secret, reachable by name.
    let (mut alice, _) = join(server.listeners[1].addr).await;
    alice.send_line("/nick alice").await.unwrap();
    alice.send_line("/join secret").await.unwrap();
    let (mut ops, _) = join(server.listeners[1].addr).await;
    ops.send_line("/nick ops-1").await.unwrap();
    sync(&mut alice).await;
    sync(&mut ops).await;

    let mut bob = at_the_gate(&server).await;
    log_in(&mut bob, "/login bob pw-bob").await;
    for (line, refused) in [
        ("/msg alice hi", "bob may not send directly to alice"),
        ("/hex alice 01 03", "bob may not send directly to alice"),
        ("/who secret", "bob may not join #secret"),
    ] {
        bob.send_line(line).await.unwrap();
        // (Its listener's #lobby is not among its rooms: it was told so first.)
        expect_line(
            &mut bob,
            refused,
            |l| matches!(l, ServerLine::Error(t) if t.contains(refused)),
        )
        .await;
    }
    // Listings show only the rooms it may join.
    bob.send_line("/join team-red").await.unwrap();
    bob.send_line("/rooms").await.unwrap();
    let rooms = expect_line(
        &mut bob,
        "the rooms",
        |l| matches!(l, ServerLine::Notice(t) if t.starts_with("rooms")),
    )
    .await;
    assert!(rooms.to_string().contains("#team-red"), "{rooms}");
    assert!(
        !rooms.to_string().contains("#secret") && !rooms.to_string().contains("#lobby"),
        "{rooms}"
    );
    // JSON's send with "to" is a direct message too.
    let mut json = Client::connect(server.listeners[2].addr).await.unwrap();
    json.send_line(r#"{"type":"auth","user":"bob","password":"pw-bob"}"#)
        .await
        .unwrap();
    json.send_line(r#"{"type":"send","to":"alice","text":"hi","id":1}"#)
        .await
        .unwrap();
    let refusal = within("the JSON refusal", async {
        loop {
            let event = json.next_json().await.unwrap().expect("an event");
            if event["id"] == 1 {
                return event;
            }
        }
    })
    .await;
    assert_eq!(refusal["code"], "forbidden", "{refusal}");
    // A user granted some names reaches those.
    let mut carol = at_the_gate(&server).await;
    log_in(&mut carol, "/login carol pw-carol").await;
    carol.send_line("/msg ops-1 deploy done").await.unwrap();
    let heard = expect_line(&mut ops, "carol's message", |l| {
        matches!(l, ServerLine::Direct { .. })
    })
    .await;
    assert_eq!(
        heard,
        ServerLine::Direct {
            from: "carol".into(),
            text: "deploy done".into()
        }
    );
    carol.send_line("/msg alice hi").await.unwrap();
    expect_line(
        &mut carol,
        "the refusal",
        |l| matches!(l, ServerLine::Error(t) if t.contains("carol may not send directly to alice")),
    )
    .await;
    // Alice heard nothing of any of it.
    let heard = heard_until_pong(&mut alice).await;
    assert!(
        !heard.iter().any(|l| matches!(l, ServerLine::Direct { .. })),
        "{heard:?}"
    );
    server.stop().await;
}
