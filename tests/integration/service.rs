//! Running as a service: the example config, `serve --check-config`, JSON
//! logs, readiness and stop notices to systemd (`NOTIFY_SOCKET`), SIGHUP
//! from `systemctl reload`, shell completions and the man pages. Each runs
//! the real binary, as systemd and the .deb's users do.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{run, switchboard, within, BinaryServer, TempDir};
use switchboard::config::{LogFormat, Overrides};
use switchboard::{Config, Mode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The example config the .deb installs as /etc/switchboard/switchboard.toml.
fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/switchboard.toml")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends `signal` (`HUP`, `TERM`) to a running child, as systemd would.
fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{signal} {pid}")])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// The next datagram on `socket`, as text.
async fn next_notice(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = vec![0; 4096];
    let len = within(what, socket.recv(&mut buf))
        .await
        .expect("read the notify socket");
    String::from_utf8(buf[..len].to_vec()).expect("notices are text")
}

// ---------------------------------------------------------------------------
// The example config
// ---------------------------------------------------------------------------

#[test]
fn the_example_config_parses_and_makes_a_valid_config() {
    let file = Overrides::load(&example_config()).expect("the example config parses");
    assert_eq!(
        file.log_format, None,
        "the example leaves log-format to its default"
    );
    let mut config = Config::default();
    file.apply(&mut config).expect("the example config applies");
    config.validate().expect("the example config is valid");

    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].mode, Mode::Text);
    assert_eq!(config.listeners[0].addr.to_string(), "0.0.0.0:12345");
    assert_eq!(
        config.http.listen.map(|http| http.to_string()).as_deref(),
        Some("http://127.0.0.1:8080")
    );
}

/// A key added to the config file must be documented in the example, set
/// or commented out: serde's refusal of an unknown key lists every known one.
#[test]
fn the_example_config_shows_every_key_the_config_file_accepts() {
    let refusal = toml::from_str::<Overrides>("no-such-key = 1")
        .expect_err("unknown keys are refused")
        .to_string();
    let known = refusal
        .split_once("expected one of")
        .map(|(_, keys)| keys)
        .unwrap_or_else(|| panic!("the refusal lists the known keys: {refusal}"));
    let keys: Vec<&str> = known
        .split(',')
        .map(|key| key.trim().trim_matches('`'))
        .filter(|key| !key.is_empty())
        .collect();
    assert!(keys.contains(&"max-line"), "keys: {keys:?}");
    assert!(keys.contains(&"log-format"), "keys: {keys:?}");

    let example = std::fs::read_to_string(example_config()).expect("read the example");
    let shown = |key: &str| {
        example.lines().any(|line| {
            let line = line.trim_start_matches('#').trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let missing: Vec<&str> = keys.into_iter().filter(|key| !shown(key)).collect();
    assert!(
        missing.is_empty(),
        "contrib/switchboard.toml does not show {missing:?}"
    );
}

// ---------------------------------------------------------------------------
// serve --check-config
// ---------------------------------------------------------------------------

#[tokio::test]
async fn check_config_prints_what_would_be_served_and_exits_zero() {
    let path = example_config();
    let output = run(&[
        "serve",
        "--check-config",
        "--config",
        path.to_str().unwrap(),
    ])
    .await;

    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let summary = stdout(&output);
    assert!(summary.starts_with("config ok: "), "{summary}");
    assert!(summary.contains("switchboard.toml"), "{summary}");
    let value = |key: &str| {
        summary
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ').map(str::trim))
            .unwrap_or_else(|| panic!("no {key}: {summary}"))
    };
    assert_eq!(value("listen"), "text://0.0.0.0:12345");
    assert!(
        value("http").starts_with("http://127.0.0.1:8080"),
        "{summary}"
    );
    assert_eq!(value("max-connections"), "10000");
}

/// Secrets are shown as set, never as themselves: the output of
/// `--check-config` ends up in tickets and chat.
#[tokio::test]
async fn check_config_shows_that_secrets_are_set_but_not_the_secrets() {
    let output = run(&[
        "serve",
        "--check-config",
        "--listen",
        "127.0.0.1:0",
        "--admin-token",
        "admin-secret-0123456789",
        "--jwt-secret",
        "jwt-secret-0123456789abcdef0123456789",
        "--token",
        "client-token-0123456789",
        "--cluster",
        "redis://:redis-password@127.0.0.1:6379",
    ])
    .await;
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let summary = stdout(&output);
    for secret in [
        "admin-secret",
        "jwt-secret-0",
        "client-token",
        "redis-password",
    ] {
        assert!(!summary.contains(secret), "{secret} shown: {summary}");
    }
    assert!(summary.contains("admin-token"), "{summary}");
    assert!(
        summary.contains("redis://:(not shown)@127.0.0.1:6379"),
        "{summary}"
    );
}

/// It binds nothing: it can check a config while the server it describes
/// holds the port.
#[tokio::test]
async fn check_config_binds_nothing_so_it_runs_beside_a_live_server() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();

    let output = run(&["serve", "--check-config", "--listen", &addr]).await;

    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(stdout(&output).contains(&format!("text://{addr}")));
}

#[tokio::test]
async fn check_config_of_a_bad_file_fails_naming_the_file_and_the_reason() {
    let dir = TempDir::new("bad-config");
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, "max-line = \"64KB\"\nqueue-soft-limit = \"1KiB\"\n").unwrap();

    let output = run(&["serve", "--check-config", "-c", path.to_str().unwrap()]).await;

    assert!(!output.status.success());
    assert!(
        stdout(&output).is_empty(),
        "no summary: {}",
        stdout(&output)
    );
    let error = stderr(&output);
    assert!(
        error.contains("queue-soft-limit (1024) must be at least max-line"),
        "{error}"
    );

    std::fs::write(&path, "max-lines = 3\n").unwrap();
    let output = run(&["serve", "--check-config", "-c", path.to_str().unwrap()]).await;

    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("bad config file"), "{error}");
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(
        error.contains("unknown key `max-lines`: did you mean `max-line`?"),
        "{error}"
    );
}

#[tokio::test]
async fn check_config_of_a_missing_file_fails_and_says_so() {
    let output = run(&[
        "serve",
        "--check-config",
        "-c",
        "/nonexistent/switchboard.toml",
    ])
    .await;

    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("cannot read config file /nonexistent/switchboard.toml"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// --log-format json
// ---------------------------------------------------------------------------

/// Starts `serve` on a free port with `args` and `env`, and returns the
/// first log line that mentions listening, parsed as JSON.
async fn first_json_listening_line(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let mut child = switchboard(&[&["serve", "--listen", "127.0.0.1:0"], args].concat())
        .envs(env.iter().copied())
        .spawn()
        .expect("the switchboard binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = within("the listening line", async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("the server exited before listening");
            if line.contains("listening on") {
                return line;
            }
        }
    })
    .await;
    send_signal(&child, "TERM");
    let _ = within("the server to exit", child.wait()).await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_message_at_the_top() {
    let event = first_json_listening_line(&["--log-format", "json"], &[]).await;

    assert_eq!(event["level"], "INFO", "{event}");
    assert_eq!(event["target"], "switchboard::server", "{event}");
    assert!(event["timestamp"].is_string(), "{event}");
    let message = event["message"].as_str().expect("a message field");
    assert!(message.starts_with("switchboard listening on text://127.0.0.1:"));
}

#[tokio::test]
async fn the_log_format_can_come_from_the_environment_or_the_config_file() {
    let event = first_json_listening_line(&[], &[("SWITCHBOARD_LOG_FORMAT", "json")]).await;
    assert_eq!(event["level"], "INFO", "{event}");

    let dir = TempDir::new("log-format");
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, "log-format = \"json\"\n").unwrap();
    let file = Overrides::load(&path).expect("log-format is a config key");
    assert_eq!(file.log_format, Some(LogFormat::Json));
    let event = first_json_listening_line(&["--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(event["level"], "INFO", "{event}");
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_with_the_choices() {
    let output = run(&["serve", "--check-config", "--log-format", "xml"]).await;

    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("[possible values: text, json]"), "{error}");
}

// ---------------------------------------------------------------------------
// systemd: readiness, stopping, reload
// ---------------------------------------------------------------------------

/// `Type=notify`: `systemctl start` returns when READY=1 arrives, so by
/// then clients must be able to connect.
#[tokio::test]
async fn under_systemd_ready_comes_once_clients_can_connect_and_stopping_on_sigterm() {
    let dir = TempDir::new("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let mut child = switchboard(&["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .spawn()
        .expect("the switchboard binary starts");

    let ready = next_notice(&socket, "READY=1").await;

    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    let status = lines
        .iter()
        .find_map(|line| line.strip_prefix("STATUS=listening on text://"))
        .unwrap_or_else(|| panic!("a STATUS naming the listener: {ready:?}"));
    let addr: std::net::SocketAddr = status.parse().expect("the listener's address");
    let (_client, name) = common::join(addr).await;
    assert!(name.starts_with("guest-"), "{name}");

    send_signal(&child, "TERM");

    let stopping = next_notice(&socket, "STOPPING=1").await;
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let exit = within("the server to exit", child.wait())
        .await
        .expect("wait for the server");
    assert!(exit.success(), "server exited with {exit}");
}

/// `systemctl reload` sends SIGHUP; without a handler it would end the server.
#[tokio::test]
async fn sighup_from_systemctl_reload_keeps_the_server_and_its_clients() {
    let mut server = BinaryServer::start(&["--listen", "127.0.0.1:0"]).await;
    let (mut client, _) = common::join(server.addr(0)).await;

    send_signal(&server.child, "HUP");

    server.expect_log("SIGHUP received").await;
    common::sync(&mut client).await;
    let (_other, name) = common::join(server.addr(0)).await;
    assert!(name.starts_with("guest-"), "{name}");
    assert!(
        server.child.try_wait().expect("poll the server").is_none(),
        "the server is still running"
    );
}

/// The address in a log line's `listener=MODE://ADDR?OPTIONS`.
fn listener_in(line: &str) -> std::net::SocketAddr {
    let spec = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("listener="))
        .unwrap_or_else(|| panic!("no listener in {line:?}"));
    let spec = spec.split_once("://").map_or(spec, |(_, rest)| rest);
    spec.split('?').next().unwrap().parse().expect("an address")
}

/// An edited config and `systemctl reload`: a listener goes (its clients
/// stay), another comes, and new clients get the new greeting and limits
/// while those already connected keep theirs.
/// `systemctl reload` right as the server starts: a config handed over
/// after the listeners are bound but before the server runs is applied,
/// not lost.
#[tokio::test]
async fn a_reload_handed_over_before_the_server_runs_is_applied() {
    let server = switchboard::Server::bind(Config::local()).await.unwrap();
    let addr = server.local_addr(Mode::Text).unwrap();
    let mut reloaded = Config::local();
    reloaded.greeting.welcome = Some("hello after the reload".to_owned());
    server.reloader().reload(reloaded);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        stopped.await.ok();
    }));
    within("a client greeted with the reloaded welcome", async {
        loop {
            let mut client = switchboard::Client::connect(addr).await.unwrap();
            if client.next_line().await.unwrap().as_deref() == Some("hello after the reload") {
                return;
            }
        }
    })
    .await;
    stop.send(()).unwrap();
    within("the server to stop", running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_reload_changes_listeners_greeting_and_limits_for_new_clients() {
    let dir = TempDir::new("reload");
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\", \"127.0.0.1:0?room=b\"]\nwelcome = \"hello\"\n",
    )
    .unwrap();
    let mut server = BinaryServer::start(&["--config", config.to_str().unwrap()]).await;
    let (first, second) = (server.addr(0), server.addr(1));
    let mut before = switchboard::Client::connect(first).await.unwrap();
    let greeting = within("the welcome", before.next_line()).await.unwrap();
    assert_eq!(greeting.as_deref(), Some("hello"));

    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0?room=b\", \"127.0.0.1:0?room=c\"]\nwelcome = \"hello again\"\nmax-messages-per-second = 5\n",
    )
    .unwrap();
    send_signal(&server.child, "HUP");
    // The new listener binds after the reload's summary.
    let reloaded = server.expect_log("reloaded the config").await;
    let added = listener_in(&server.expect_log("listening (added to the config)").await);
    assert!(
        reloaded.contains("max-messages-per-second (for new connections)")
            && reloaded.contains("welcome and ack")
            && reloaded.contains("listeners"),
        "{reloaded}"
    );

    // The first listener takes nobody new; its client stays, with the
    // limits it came with: 20 messages at once are not slowed down.
    within("the removed listener to refuse", async {
        while tokio::net::TcpStream::connect(first).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for i in 0..20 {
        before.say(&format!("burst {i}")).await.unwrap();
    }
    before.send_line("/ping").await.unwrap();
    let answer = within("pong", async {
        loop {
            let line = before.next_line().await.unwrap().expect("a line");
            if line.starts_with('!') || line == "* pong" {
                return line;
            }
        }
    })
    .await;
    assert_eq!(answer, "* pong");

    // New clients, on the kept and the added listener: the new welcome,
    // and the new limit.
    for addr in [second, added] {
        let mut after = switchboard::Client::connect(addr).await.unwrap();
        let greeting = within("the new welcome", after.next_line()).await.unwrap();
        assert_eq!(greeting.as_deref(), Some("hello again"));
        for i in 0..20 {
            after.say(&format!("burst {i}")).await.unwrap();
        }
        let slowed = within("the slow-down notice", async {
            loop {
                let line = after.next_line().await.unwrap().expect("a line");
                if line.starts_with('!') {
                    return line;
                }
            }
        })
        .await;
        assert!(slowed.contains("5 messages a second"), "{slowed}");
    }
}

// ---------------------------------------------------------------------------
// Completions and the manual
// ---------------------------------------------------------------------------

#[tokio::test]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _switchboard"),
        ("zsh", "#compdef switchboard"),
        ("fish", "complete -c switchboard"),
    ] {
        let output = run(&["completions", shell]).await;
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(script.contains("check-config"), "{shell}: serve's flags");
    }
}

#[tokio::test]
async fn the_manual_has_a_page_for_each_command() {
    let output = run(&["manpage"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH switchboard 1"), "{page}");
    assert!(page.contains("serve"), "{page}");

    let dir = TempDir::new("man");
    let output = run(&["manpage", "--out-dir", dir.path().to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    // Every command `--help` lists (but help itself) has its page.
    let help = run(&["--help"]).await;
    let help = stdout(&help);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 9, "{help}");
    assert!(dir.join("switchboard.1").is_file(), "no switchboard.1");
    for command in commands {
        let page = format!("switchboard-{command}.1");
        assert!(dir.join(&page).is_file(), "no {page}");
    }
    let serve = std::fs::read_to_string(dir.join("switchboard-serve.1")).unwrap();
    assert!(
        serve.contains("check\\-config"),
        "serve's page lists its flags"
    );
    assert!(
        !dir.join("switchboard-manpage.1").exists(),
        "the hidden command has no page"
    );
}
