//! Peers that vanish without a FIN or RST (a device losing power, a NAT
//! dropping its state) are found and dropped in a bounded time. The client
//! runs in a network namespace of its own, joined to the server's by a veth
//! pair; taking the link down makes it vanish, exactly as a dead device
//! does: nothing is sent, nothing comes back.
//!
//! Needs root and `ip` (iproute2), as CI has.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A network namespace with one end of a veth pair; the other end, in the
/// server's namespace, has `host_ip`. Removed on drop.
struct Island {
    name: String,
    host_link: String,
    host_ip: String,
    clients: Vec<std::process::Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e} (install iproute2)"));
    assert!(
        status.success(),
        "ip {args:?} failed (this test needs root)"
    );
}

/// A 10.x.y.0/30 that no interface of this machine (nor another run's
/// island) has an address in, trying from one picked by this process's id.
fn free_subnet(tag: u8, id: u32) -> String {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip runs");
    let in_use = String::from_utf8_lossy(&output.stdout).into_owned();
    (0..250)
        .map(|k| format!("10.{}.{}", 200 + tag, (id + k) % 250))
        .find(|net| !in_use.contains(&format!(" {net}.")))
        .expect("a free 10.x.y.0/30 subnet")
}

impl Island {
    fn new(tag: u8) -> Island {
        let id = std::process::id() % 10_000;
        let name = format!("sb-dead-{id}-{tag}");
        let (host_link, far_link) = (format!("sbh{id}x{tag}"), format!("sbp{id}x{tag}"));
        let net = free_subnet(tag, id);
        let (host_ip, far_ip) = (format!("{net}.1"), format!("{net}.2"));
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let island = Island {
            name: name.clone(),
            host_link: host_link.clone(),
            host_ip: host_ip.clone(),
            clients: Vec::new(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &far_link,
        ]);
        ip(&["link", "set", &far_link, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{far_ip}/30"),
            "dev",
            &far_link,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &far_link, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        island
    }

    /// Starts `switchboard connect ADDR` inside the island; it stays
    /// connected while its stdin is open.
    fn connect(&mut self, addr: std::net::SocketAddr) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_switchboard"))
            .args(["connect", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("switchboard connect starts in the namespace");
        self.clients.push(child);
    }

    /// The island vanishes: its link goes down, so nothing it was sent
    /// arrives and nothing comes back, not even a reset.
    fn vanish(&self) {
        ip(&["link", "set", &self.host_link, "down"]);
    }

    /// The island is back: what is sent arrives again.
    fn reappear(&self) {
        ip(&["link", "set", &self.host_link, "up"]);
    }
}

/// The keepalive probes out on the server's connection from `port`, as
/// `ss` shows them (`timer:(keepalive,1.2sec,1)`); `None` with no
/// connection.
fn keepalive_probes(port: u16) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .expect("ss runs (iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next()?;
    let timer = line.split("timer:(").nth(1)?;
    let probes = timer.split(')').next()?.rsplit(',').next()?;
    Some(
        probes
            .parse()
            .unwrap_or_else(|_| panic!("ss said {line:?}")),
    )
}

/// Waits until `ready` holds of the server's connection from `port`.
async fn until_probes(port: u16, what: &str, ready: impl Fn(Option<u32>) -> bool) {
    within(what, async {
        while !ready(keepalive_probes(port)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

impl Drop for Island {
    fn drop(&mut self) {
        for child in &mut self.clients {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Waits for the server to log that a client was disconnected; returns
/// the line and how long it took from `since`.
async fn disconnected(server: &mut BinaryServer, since: Instant) -> (String, Duration) {
    let line = server.expect_log("client disconnected").await;
    (line, since.elapsed())
}

/// A server listening on the island's link (listener 0) and on loopback
/// (listener 1), keepalive after `idle` and then `probes` probes 1 s
/// apart, with one client of the island connected.
async fn serve_island(island: &mut Island, idle: &str, probes: &str) -> BinaryServer {
    let listen = format!("{}:0", island.host_ip);
    let mut server = BinaryServer::start(&[
        "--listen",
        &listen,
        "--listen",
        "127.0.0.1:0",
        "--tcp-keepalive",
        idle,
        "--tcp-keepalive-interval",
        "1s",
        "--tcp-keepalive-retries",
        probes,
    ])
    .await;
    island.connect(server.addr(0));
    server.expect_log("client connected").await;
    server
}

#[tokio::test]
async fn a_quiet_peer_that_vanishes_is_dropped_by_keepalive() {
    let mut island = Island::new(1);
    let mut server = serve_island(&mut island, "1s", "2").await;
    let cut = Instant::now();
    island.vanish();
    // Keepalive: 1 s idle, then 2 probes 1 s apart: about 3 s.
    let (line, took) = disconnected(&mut server, cut).await;
    eprintln!("dropped after {took:?}: {line}");
    // Without keepalive it would never be dropped: the wait above fails.
    assert!(line.contains("timed out"), "{line}");
}

#[tokio::test]
async fn a_peer_that_vanishes_with_data_on_its_way_is_dropped_when_it_goes_unacknowledged() {
    let mut island = Island::new(2);
    // Unacknowledged data is given keepalive's time (3 s, then 2 probes
    // 1 s apart) and no more.
    let mut server = serve_island(&mut island, "3s", "2").await;
    let (mut local, _) = join(server.addr(1)).await;
    server.expect_log("client connected").await;
    island.vanish();
    let cut = Instant::now();
    local.say("are you there?").await.unwrap();
    let (line, took) = disconnected(&mut server, cut).await;
    eprintln!("dropped after {took:?}: {line}");
    // Retransmitted to for some 15 minutes without TCP_USER_TIMEOUT (and
    // keepalive waits while data is out): the wait above fails.
    assert!(line.contains("timed out"), "{line}");
}

/// A probe lost on the way (a lossy radio link, a loaded one) is not a
/// lost client: the next probe goes, and is answered. With a probe out,
/// the kernel ends a quiet connection by `TCP_USER_TIMEOUT` alone, counted
/// from the last thing received; set to the probes' time only (shorter
/// than the idle time and the probes), it ended this client at the second
/// probe's time, unasked.
#[tokio::test]
async fn a_quiet_peer_that_misses_one_keepalive_probe_stays() {
    let mut island = Island::new(3);
    // Quiet for 2 s, then up to 3 probes 1 s apart.
    let server = serve_island(&mut island, "2s", "3").await;
    let port = server.addr(0).port();
    until_probes(port, "the connection, quiet", |probes| probes == Some(0)).await;
    island.vanish();
    until_probes(port, "the first probe, lost", |probes| probes != Some(0)).await;
    island.reappear();
    until_probes(port, "the next probe answered", |probes| probes == Some(0)).await;
    // A connection the kernel ended is gone from ss: `probes` would be
    // None, and the wait above would fail.
    assert_eq!(keepalive_probes(port), Some(0));
}
