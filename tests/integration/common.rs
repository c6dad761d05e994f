//! Helpers shared by the integration tests: a real server on port 0 (in
//! process, or the real binary), clients, and waiting with timeouts.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::config::ConnectionLimits;
use switchboard::{Client, Config, Mode, Server, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single expectation may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than `PATIENCE`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(PATIENCE, what, future).await
}

/// Like [`within`] with an explicit limit.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// A loopback port held for a helper process of a test (a redis-server,
/// chromedriver) until dropped: chosen below the kernel's ephemeral range,
/// so that no server's port 0 and no outgoing connection of another test
/// can take it before the helper binds it, or while the helper is down to
/// be restarted on it; and kept from the other helpers of this run.
pub struct ReservedPort(u16);

/// The ports of every [`ReservedPort`] alive.
static RESERVED_PORTS: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let (low, high) = (10_000, ephemeral.max(10_001));
        let span = u64::from(high - low);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| u64::from(t.subsec_nanos()))
            + u64::from(std::process::id());
        let mut taken = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        for i in 0..span {
            let port = low + ((seed + i) % span) as u16;
            if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                taken.insert(port);
                return ReservedPort(port);
            }
        }
        panic!("no free port between {low} and {high}");
    }

    pub fn port(&self) -> u16 {
        self.0
    }
}

impl Drop for ReservedPort {
    fn drop(&mut self) {
        RESERVED_PORTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// An address where nothing listens, and nothing will while it is held: a
/// bound socket that never listens, so a connection to it is refused.
pub fn nothing_listens() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind a port");
    let addr = socket.local_addr().expect("its address");
    (socket, addr)
}

/// The commands the stories run besides switchboard, and the Debian
/// package of each: `scripts/test.sh` installs them.
const NEEDED: [(&str, &str); 6] = [
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-server"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    ("ip", "iproute2"),
    ("openssl", "openssl"),
];

/// Ends the whole run at once, with one line saying what to install, on a
/// machine without what the stories need: better than a panic deep in the
/// first cluster or console story, minutes in. Called by every way a
/// story starts a server.
pub fn the_machine_has_what_the_tests_need() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let on_path = |command: &str| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(command).is_file())
            })
        };
        let mut missing: Vec<&str> = NEEDED
            .iter()
            .filter(|(command, _)| !on_path(command))
            .map(|(_, package)| *package)
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            // Past the test harness's capture of `eprintln!`: the run ends here.
            let _ = writeln!(
                std::io::stderr(),
                "the integration tests need {}: run scripts/test.sh (the README's test command), which installs them, or apt-get install -y {}",
                missing.join(", "),
                missing.join(" ")
            );
            std::process::exit(1);
        }
    });
}

/// A server running in this process on 127.0.0.1, port 0.
pub struct TestServer {
    pub listeners: Vec<switchboard::ListenerSpec>,
    /// The HTTP listener's address, when the config has one.
    pub http: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with `config` (its listeners should use port 0).
    pub async fn start(config: Config) -> TestServer {
        the_machine_has_what_the_tests_need();
        let server = Server::bind(config).await.expect("server binds");
        let listeners = server.listeners();
        let http = server.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            listeners,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A text-mode server with default settings.
    pub async fn text() -> TestServer {
        TestServer::start(Config::local()).await
    }

    /// The address of the first listener of `mode`.
    pub fn addr(&self, mode: Mode) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.mode == mode)
            .unwrap_or_else(|| panic!("no {mode} listener"))
            .addr
    }

    /// The first text listener.
    pub fn text_addr(&self) -> SocketAddr {
        self.addr(Mode::Text)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within("the server to stop", self.task.take().unwrap())
            .await
            .expect("server task")
            .expect("server run");
    }
}

/// [`Config::local`] without rate limits, for tests that flood on
/// purpose (flow control, hostile readers): a rate limit would slow their
/// senders down before what they test. Rate limits have their own tests.
pub fn flat_out() -> Config {
    Config {
        limits: ConnectionLimits {
            max_messages_per_second: None,
            max_bytes_per_second: None,
            ..Config::local().limits
        },
        ..Config::local()
    }
}

/// A config listening on 127.0.0.1:0 in each of `modes`.
pub fn config_with(modes: &[&str]) -> Config {
    Config {
        listeners: modes
            .iter()
            .map(|spec| spec.parse().expect("listener spec"))
            .collect(),
        ..Config::local()
    }
}

/// A text client that has read its welcome line. Returns it and its name.
pub async fn join(addr: SocketAddr) -> (Client, String) {
    let mut client = Client::connect(addr).await.expect("connects");
    let name = read_welcome(&mut client).await;
    (client, name)
}

/// Reads a text client's welcome line; returns the name it gives.
pub async fn read_welcome<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Client<R, W>,
) -> String {
    let welcome = within("the welcome line", client.next())
        .await
        .expect("read")
        .expect("a welcome");
    let ServerLine::Notice(text) = welcome else {
        panic!("expected a welcome notice, got {welcome:?}")
    };
    text.strip_prefix("welcome ")
        .and_then(|rest| rest.split('!').next())
        .expect("the welcome names the client")
        .to_owned()
}

/// Reads lines until one satisfies `wanted`; fails on EOF or timeout.
pub async fn expect_line<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Client<R, W>,
    what: &str,
    wanted: impl Fn(&ServerLine) -> bool,
) -> ServerLine {
    within(what, async {
        loop {
            match client.next().await.expect("read") {
                Some(line) if wanted(&line) => return line,
                Some(_) => continue,
                None => panic!("connection closed while waiting for {what}"),
            }
        }
    })
    .await
}

/// Reads until a room message; returns (room, from, text).
pub async fn expect_message<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Client<R, W>,
) -> (String, String, String) {
    match expect_line(client, "a room message", |l| {
        matches!(l, ServerLine::Message { .. })
    })
    .await
    {
        ServerLine::Message { room, from, text } => (room, from, text),
        _ => unreachable!(),
    }
}

/// Round-trips a `/ping`, so everything sent before it has been handled.
pub async fn sync<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(client: &mut Client<R, W>) {
    client.send_line("/ping").await.expect("send ping");
    expect_line(client, "pong", |l| *l == ServerLine::Notice("pong".into())).await;
}

/// Round-trips a `/ping` and returns every line heard before the pong:
/// for stories that say a client "hears nothing" of something, which a
/// [`sync`] (it skips what comes first) cannot check.
pub async fn heard_until_pong<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Client<R, W>,
) -> Vec<ServerLine> {
    client.send_line("/ping").await.expect("send ping");
    within("pong", async {
        let mut heard = Vec::new();
        loop {
            match client.next().await.expect("read") {
                Some(ServerLine::Notice(text)) if text == "pong" => return heard,
                Some(line) => heard.push(line),
                None => panic!("connection closed while waiting for pong, after {heard:?}"),
            }
        }
    })
    .await
}

/// Reads until the server closes the connection; returns the lines read.
pub async fn read_to_end<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    client: &mut Client<R, W>,
) -> Vec<String> {
    within("the server to close the connection", async {
        let mut lines = Vec::new();
        while let Some(line) = client.next_line().await.expect("read") {
            lines.push(line);
        }
        lines
    })
    .await
}

/// `switchboard ARGS` with no `SWITCHBOARD_*` setting, `RUST_LOG` or
/// `NOTIFY_SOCKET` of the test's own environment inherited, stdin closed,
/// output captured, killed if the test fails.
pub fn switchboard(args: &[&str]) -> Command {
    the_machine_has_what_the_tests_need();
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (var, _) in std::env::vars().filter(|(var, _)| var.starts_with("SWITCHBOARD_")) {
        command.env_remove(var);
    }
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `switchboard ARGS` (see [`switchboard`]) and waits for it to exit.
pub async fn run(args: &[&str]) -> std::process::Output {
    let what = format!("`switchboard {}` to exit", args.join(" "));
    within(&what, switchboard(args).output())
        .await
        .expect("the switchboard binary runs")
}

/// The real `switchboard` binary running `serve` with `args`, and the
/// addresses it reported listening on.
pub struct BinaryServer {
    pub child: Child,
    pub listeners: Vec<String>,
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// When a test fails, what the server logged that the test did not read
/// is shown with the failure: it tells what the server was doing.
impl Drop for BinaryServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pid = self.child.id().unwrap_or_default();
            while let Ok(line) = self.log.try_recv() {
                eprintln!("[server {pid}] {line}");
            }
        }
    }
}

impl BinaryServer {
    /// The address of its HTTP listener (`--http`), `HOST:PORT`.
    pub fn http(&self) -> String {
        self.listeners
            .iter()
            .find_map(|l| l.strip_prefix("http://"))
            .expect("an HTTP listener")
            .to_owned()
    }

    /// Starts `switchboard serve ARGS` and waits for its "listening on" line.
    pub async fn start(args: &[&str]) -> BinaryServer {
        BinaryServer::start_with_env(args, &[]).await
    }

    /// Like [`BinaryServer::start`], with arguments owned by the caller.
    pub async fn start_owned(args: Vec<String>) -> BinaryServer {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        BinaryServer::start_with_env(&args, &[]).await
    }

    /// Like [`BinaryServer::start`], with `env` set for the server; no
    /// `SWITCHBOARD_*` setting of the test's own environment is inherited.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> BinaryServer {
        let mut serve = vec!["serve"];
        serve.extend_from_slice(args);
        let mut command = switchboard(&serve);
        // -v and -vv say how much to log; otherwise the info lines the
        // stories wait for.
        if !args.iter().any(|arg| arg.starts_with("-v")) {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("the switchboard binary starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let listening = within("the server's listening line", async {
            loop {
                let line = stderr
                    .next_line()
                    .await
                    .expect("read stderr")
                    .expect("the server exited before listening");
                if let Some(at) = line.find("listening on ") {
                    return line[at + "listening on ".len()..].to_owned();
                }
            }
        })
        .await;
        let (tx, log) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        BinaryServer {
            child,
            listeners: listening.split(", ").map(str::to_owned).collect(),
            log,
        }
    }

    /// The socket address of listener `i` (its spec without mode and options).
    pub fn addr(&self, i: usize) -> SocketAddr {
        let spec = &self.listeners[i];
        let spec = spec
            .split_once("://")
            .map_or(spec.as_str(), |(_, rest)| rest);
        let spec = spec.split('?').next().unwrap();
        spec.parse().expect("a socket address")
    }

    /// Waits for a log line containing `needle`.
    pub async fn expect_log(&mut self, needle: &str) -> String {
        let mut passed = Vec::new();
        let waiting = async {
            loop {
                let line = self.log.recv().await.expect("the server's log ended");
                if line.contains(needle) {
                    return line;
                }
                passed.push(line);
            }
        };
        match tokio::time::timeout(PATIENCE, waiting).await {
            Ok(line) => line,
            // What the server said instead tells why.
            Err(_) => panic!(
                "timed out after {PATIENCE:?} waiting for a log line with {needle:?}; meanwhile the server logged:\n{}",
                passed.join("\n")
            ),
        }
    }

    /// Waits for a log line containing each of `needles`, in any order;
    /// returns them in the order of `needles`.
    pub async fn expect_logs(&mut self, needles: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        within(&format!("log lines with {needles:?}"), async {
            while found.iter().any(Option::is_none) {
                let line = self.log.recv().await.expect("the server's log ended");
                for (needle, slot) in needles.iter().zip(found.iter_mut()) {
                    if slot.is_none() && line.contains(needle) {
                        *slot = Some(line.clone());
                    }
                }
            }
        })
        .await;
        found.into_iter().flatten().collect()
    }

    /// The server's resident memory high-water mark, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Sends SIGHUP: the server reloads its config and credentials.
    pub fn hang_up(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -HUP {pid}")])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// A fresh directory under the system's temp directory, removed when
/// dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new directory, its name starting `switchboard-TAG-`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "switchboard-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("make a temp directory");
        TempDir(path)
    }

    /// The path of `name` in it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
