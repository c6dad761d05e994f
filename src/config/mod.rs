//! Server settings: every limit with its default and why ([`Config`]),
//! the listeners (`listener.rs`), and the one definition of each setting
//! as a config-file key, flag and variable ([`Overrides`], `overrides.rs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::hub::{HubSettings, QueueLimits};
pub use crate::units::{format_duration, Seconds, Size};

mod listener;
mod overrides;
mod sections;
mod setting;

pub(crate) use listener::options as listener_options;
use listener::parse_proxy;
pub use listener::{
    HttpSpec, ListenerList, ListenerSpec, Mode, ProxyVersion, DEFAULT_UDP_IDLE_TIMEOUT,
};
#[cfg(test)]
use overrides::suggest_known_key;
pub use overrides::Overrides;
pub use sections::{
    ClusterSettings, ConnectionLimits, Greeting, HistorySettings, HttpSettings, KeepaliveSettings,
    PlaygroundSettings, PortRange,
};
pub use setting::{Reload, Setting};

/// The port of the default listener, as in the tutorials switchboard grew from.
pub const DEFAULT_PORT: u16 = 12345;

/// Longest line (text mode) or JSON object (JSON mode) a client may send.
/// Big enough for any chat line or sensor reading, small enough that a
/// client cannot make the server buffer much: an overlong line is refused
/// and discarded as it streams in.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Queued bytes above which senders to a client pause. Four maximal lines:
/// a reader that keeps up never sees it, and a burst fits without stopping
/// anyone.
pub const DEFAULT_QUEUE_SOFT_LIMIT: usize = 256 * 1024;

/// Queued bytes above which a client is disconnected as a slow consumer.
/// Senders stop at the soft limit, so only many senders at once can push a
/// queue this far; 16 times the soft limit leaves them room, and bounds the
/// memory any one client can hold (NATS allows 64 MiB, Centrifugo 1 MiB).
pub const DEFAULT_QUEUE_HARD_LIMIT: usize = 4 * 1024 * 1024;

/// How long a client may accept no data at all while data waits for it,
/// before it is disconnected. Also the longest a stalled reader can hold
/// back the senders that feed it. NATS uses a 10 s write deadline; 5 s
/// is long for a live client's TCP stack to accept nothing at all.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long senders pause for a receiver over its soft limit that accepts
/// no bytes at all. A reader that reads keeps its senders waiting (and loses
/// nothing); one that has stopped must not keep a whole room waiting until
/// the stall timeout: past this, senders go on, its queue grows toward the
/// hard limit, and the stall timeout ends it. A quarter second covers the
/// pauses of a live reader on a slow link (a round trip, a window update).
pub const DEFAULT_PAUSE_TIMEOUT: Duration = Duration::from_millis(250);

/// Connections served at once, across all listeners. Each takes a file
/// descriptor; raise `ulimit -n` with it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Rooms one client may be in at once.
pub const DEFAULT_MAX_ROOMS_PER_CLIENT: usize = 32;

/// Rooms above this size get no join, leave or rename notices (each would
/// cost a delivery per member, and everyone joining a room of `n` costs `n²`).
pub const DEFAULT_ANNOUNCE_MAX_MEMBERS: usize = 100;

/// How long a shutdown waits for queued data to reach clients.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Most rooms one `/rooms`, or names one `/who`, lists. A hundred names or
/// rooms are a screenful, and their line stays far below the line limit
/// (a hundred 32-character CJK names are 13 KB); a pattern finds the rest.
pub const DEFAULT_MAX_LIST: usize = 100;

/// Most rooms or members one listing looks at. Looking at 10,000 short
/// names takes well under a millisecond; past that, a listing with a
/// pattern is cut short and says so, and the pattern should be narrower.
pub const DEFAULT_MAX_LIST_SCAN: usize = 10_000;

/// How long a receiver's queue may stay over the soft limit, holding back
/// everyone who sends to it, before it is cut off as a slow consumer.
/// Flow control makes a room wait for its slowest reader: this bounds the
/// wait. Ten seconds lets a reader ride out a burst or a bad patch of
/// network; a reader slower than its room for longer would only fall
/// further behind while slowing everyone.
pub const DEFAULT_SLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to finish a line it started (text and JSON
/// modes). A partial line holds memory; no person or program takes this
/// long between the first and the last byte of one line.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest admin token accepted: long enough that guessing it at the
/// login rate limit is hopeless.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Used as the memory budget where the machine's memory cannot be read.
pub const FALLBACK_MAX_MEMORY: usize = 1 << 30;

/// The memory budget for what clients hold (queues, unfinished lines,
/// unrelayed reads): half the machine's memory, so that the server is
/// refused new clients and sheds the largest holders long before the
/// kernel's OOM killer would end it for everyone.
pub fn default_max_memory() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 2)
        })
        .unwrap_or(FALLBACK_MAX_MEMORY)
}

/// Oldest a kept message may be: an hour covers a phone out of coverage,
/// a laptop asleep over lunch, a dashboard opened after a meeting
/// (Centrifugo's history is kept for a time, too).
pub const DEFAULT_HISTORY_AGE: Duration = Duration::from_secs(3600);

/// Most bytes one room's history may hold: a quarter of the default queue
/// hard limit, so that a client resuming all of it (shown as text, or as
/// hex, three times the bytes) fits its queue.
pub const DEFAULT_HISTORY_BYTES: usize = 1024 * 1024;

/// How often history changes are committed to `--history-dir`: Redis's
/// `appendfsync everysec`.
pub const DEFAULT_HISTORY_SYNC: Duration = Duration::from_secs(1);

/// Idle time before TCP keepalive probes a quiet connection. A peer that
/// vanished without a FIN or RST (power lost, a NAT's state dropped) is
/// found after this plus [`DEFAULT_TCP_KEEPALIVE_INTERVAL`] ×
/// [`DEFAULT_TCP_KEEPALIVE_RETRIES`]: two minutes, under the idle timers
/// of most NATs (often 5 minutes or more), which the probes also keep open.
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Time between unanswered keepalive probes.
pub const DEFAULT_TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Unanswered keepalive probes after which the peer counts as gone.
pub const DEFAULT_TCP_KEEPALIVE_RETRIES: u32 = 6;

/// How often the server pings a WebSocket client. Under the 60 s after
/// which nginx (and many other proxies) cut a connection that carried
/// nothing, with room for a slow pong.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(25);

/// How long a WebSocket client has, after a ping, to send anything (its
/// pong) before it is dropped as gone. Browsers answer pings at once; a
/// browser on a bad mobile link may need seconds.
pub const DEFAULT_WS_PONG_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a client on a TLS listener has to finish its handshake: a
/// handshake takes a few round trips, well under a second on any real
/// network, while a plaintext client (`nc` on the wrong port) would never
/// finish one and would hold a connection slot until it gave up.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP connection may take to send a request's headers, and
/// may sit idle between requests: nginx's `client_header_timeout` (60 s).
/// A browser sends its headers in one packet; a connection that trickles
/// them (slowloris) or keeps a socket open saying nothing is closed, so it
/// cannot hold the server's files. WebSocket connections, once upgraded,
/// have their own pings and pong timeout.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client of an `?auth=required` listener has to authenticate:
/// a program or a person pasting a token does it in well under a second or
/// two, while a connection that never does holds a slot until then.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages (requests, lines, JSON objects, frames, raw reads) one client
/// may send a second, with a burst of a second's worth. So generous that
/// no ordinary use meets it (a log streamed line by line, a device
/// catching up): NATS, Redis and Mosquitto have no per-client rate at all,
/// EMQX's default is infinity. It bounds what one client can make the
/// server do; a public server may want less (docs/deploy.md).
pub const DEFAULT_MAX_MESSAGES_PER_SECOND: u32 = 10_000;

/// Bytes one client may send a second, with a burst of a second's worth:
/// 16 MiB a second carries a file streamed through `nc` at the speed of
/// a fast uplink, and still keeps one client from taking a whole core.
pub const DEFAULT_MAX_BYTES_PER_SECOND: usize = 16 * 1024 * 1024;

/// How long a client may keep sending over its rate limit, however much it
/// is slowed down, before it is disconnected; 0 (the default): never, it is
/// only paced. A paced client costs the server nothing (it is not read), so
/// cutting it off protects nobody and loses what it sent that was not read
/// yet: `cat fw.bin | nc` must arrive whole. An operator who wants
/// cut-offs sets it.
pub const DEFAULT_RATE_LIMIT_GRACE: Duration = Duration::ZERO;

/// New connections one IP address (an IPv6 /64) may open a second, with a
/// burst of a second's worth; loopback is not limited. Enough for a NAT of
/// many people or devices reconnecting at once, too few for a connection
/// flood from one machine to matter.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP_PER_SECOND: u32 = 20;

/// Failed admin logins allowed from one IP address per minute, before the
/// rest of that minute's attempts are refused: guessing a token at five
/// tries a minute takes forever, and a person who mistyped it waits a
/// minute at most.
pub const DEFAULT_ADMIN_LOGIN_ATTEMPTS: u32 = 5;

/// How long a playground port stays open with no client and no page
/// watching it: the online test pages give three minutes; ten lets a
/// person walk to the device and back.
pub const DEFAULT_PLAYGROUND_TTL: Duration = Duration::from_secs(600);

/// Playground ports one address may hold at once: one to test with, one
/// beside it (a device and the app that talks to it).
pub const DEFAULT_PLAYGROUND_MAX_PORTS_PER_IP: usize = 2;

/// Clients one playground port takes: a device or two and the tools
/// around them, not a crowd.
pub const DEFAULT_PLAYGROUND_MAX_CLIENTS: usize = 16;

/// Bytes a second each client of a playground port may send: a person
/// typing, a device's readings, a file of a few hundred KB in seconds;
/// not a pipe to stream through someone else's server.
pub const DEFAULT_PLAYGROUND_BYTES_PER_SECOND: u32 = 64 * 1024;

/// Where the server's TLS certificate and key come from. Files are read at
/// start and again on every reload (SIGHUP), so a renewed certificate is
/// picked up without dropping a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first (`--tls-cert`).
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM (`--tls-key`).
    pub key: Option<PathBuf>,
    /// CA certificates, PEM, that clients' certificates must chain to
    /// (`--tls-client-ca`): with it, TLS clients must present a certificate,
    /// and its subject's common name becomes their name.
    pub client_ca: Option<PathBuf>,
    /// Make a self-signed certificate for `localhost` at start
    /// (`--tls-self-signed`), to try TLS without one.
    pub self_signed: bool,
}

/// Everything a server needs to run. `Config::default()` is what
/// `switchboard serve` uses with no flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen, and in which mode.
    pub listeners: Vec<ListenerSpec>,
    /// Longest line or JSON object a client may send, in bytes.
    pub max_line: usize,
    /// The routing core's settings: queues, listings, rooms per client,
    /// the memory budget.
    pub hub: HubSettings,
    /// The limits each connection takes as it comes.
    pub limits: ConnectionLimits,
    /// What text clients are greeted with and answered.
    pub greeting: Greeting,
    /// How long a shutdown waits for queued data to reach clients.
    pub shutdown_timeout: Duration,
    /// What rooms keep of what is said in them.
    pub history: HistorySettings,
    /// TCP keepalive for every client.
    pub tcp_keepalive: KeepaliveSettings,
    /// The HTTP listener (console, API, metrics, WebSocket clients) and
    /// who may use it.
    pub http: HttpSettings,
    /// TLS certificates for the TLS listeners and HTTPS.
    pub tls: TlsFiles,
    /// How long a client has to finish its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Where credentials come from (users file, tokens, JWT keys).
    pub auth: AuthSettings,
    /// How long a client of an `?auth=required` listener has to
    /// authenticate.
    pub auth_timeout: Duration,
    /// How this server takes part in a cluster (`url` `None`: it stands
    /// alone, and needs no Redis).
    pub cluster: ClusterSettings,
    /// The playground at `/play` (`--playground`).
    pub playground: PlaygroundSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![ListenerSpec::default()],
            max_line: DEFAULT_MAX_LINE,
            limits: ConnectionLimits::default(),
            hub: HubSettings {
                queue: QueueLimits {
                    soft: DEFAULT_QUEUE_SOFT_LIMIT,
                    hard: DEFAULT_QUEUE_HARD_LIMIT,
                    pause: DEFAULT_PAUSE_TIMEOUT,
                },
                announce_max_members: DEFAULT_ANNOUNCE_MAX_MEMBERS,
                max_rooms_per_client: DEFAULT_MAX_ROOMS_PER_CLIENT,
                max_list: DEFAULT_MAX_LIST,
                max_list_scan: DEFAULT_MAX_LIST_SCAN,
                slow_timeout: Some(DEFAULT_SLOW_TIMEOUT),
                max_memory: default_max_memory(),
            },
            greeting: Greeting::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            history: HistorySettings::default(),
            tcp_keepalive: KeepaliveSettings::default(),
            http: HttpSettings::default(),
            tls: TlsFiles::default(),
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            auth: AuthSettings::default(),
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
            cluster: ClusterSettings::default(),
            playground: PlaygroundSettings::default(),
        }
    }
}

impl Config {
    /// A default config listening on `127.0.0.1:0` in text mode: what tests
    /// and embedders usually want.
    pub fn local() -> Self {
        Config {
            listeners: vec![ListenerSpec::new(
                Mode::Text,
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            )],
            ..Config::default()
        }
    }

    /// Checks that the limits make sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.listeners.is_empty(), "no listener given");
        anyhow::ensure!(
            !self.playground.enabled || self.http.listen.is_some(),
            "--playground serves its page on the HTTP listener: give --http ADDR too"
        );
        anyhow::ensure!(
            self.playground.max_ports_per_ip > 0 && self.playground.max_clients > 0,
            "--playground-max-ports-per-ip and --playground-max-clients must be at least 1"
        );
        anyhow::ensure!(
            self.history.dir.is_none() || self.cluster.url.is_none(),
            "--history-dir is for a server on its own: with --cluster, rooms' histories live in Redis (see docs/cluster.md)"
        );
        anyhow::ensure!(self.max_line > 0, "max-line must be at least 1 byte");
        anyhow::ensure!(
            self.hub.queue.soft >= self.max_line,
            "queue-soft-limit ({}) must be at least max-line ({}), or one long line would block its sender",
            self.hub.queue.soft,
            self.max_line
        );
        anyhow::ensure!(
            self.hub.queue.hard >= 2 * self.hub.queue.soft,
            "queue-hard-limit ({}) must be at least twice queue-soft-limit ({})",
            self.hub.queue.hard,
            self.hub.queue.soft
        );
        anyhow::ensure!(
            !self.limits.stall_timeout.is_zero(),
            "stall-timeout must be more than 0"
        );
        anyhow::ensure!(
            self.hub.queue.pause <= self.limits.stall_timeout,
            "pause-timeout ({}) must not be longer than stall-timeout ({})",
            format_duration(self.hub.queue.pause),
            format_duration(self.limits.stall_timeout)
        );
        anyhow::ensure!(
            self.limits.max_connections > 0,
            "max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.hub.max_rooms_per_client > 0,
            "max-rooms-per-client must be at least 1"
        );
        anyhow::ensure!(self.hub.max_list > 0, "max-list must be at least 1");
        anyhow::ensure!(
            self.hub.max_list_scan >= self.hub.max_list,
            "max-list-scan ({}) must be at least max-list ({})",
            self.hub.max_list_scan,
            self.hub.max_list
        );
        anyhow::ensure!(
            self.hub.max_memory >= self.hub.queue.hard,
            "max-memory ({}) must be at least queue-hard-limit ({}), or one client could use it all",
            self.hub.max_memory,
            self.hub.queue.hard
        );
        let history = &self.history;
        anyhow::ensure!(
            history.keep == 0 || history.bytes.saturating_mul(4) <= self.hub.queue.hard,
            "history-bytes ({}) may be at most a quarter of queue-hard-limit ({}): a client resuming a room is queued all of its history at once (as hex, three times the bytes)",
            history.bytes,
            self.hub.queue.hard
        );
        anyhow::ensure!(
            history.keep == 0 || !history.age.is_zero(),
            "history-age must be more than 0 when --history is set"
        );
        history.filter()?;
        anyhow::ensure!(
            !self.tcp_keepalive.interval.is_zero() && self.tcp_keepalive.retries > 0,
            "tcp-keepalive-interval and tcp-keepalive-retries must be more than 0 (turn keepalive off with tcp-keepalive = 0)"
        );
        anyhow::ensure!(
            !self.http.ws_ping_interval.is_zero() && !self.http.ws_pong_timeout.is_zero(),
            "ws-ping-interval and ws-pong-timeout must be more than 0"
        );
        if let Some(token) = &self.http.admin_token {
            anyhow::ensure!(
                token.len() >= MIN_ADMIN_TOKEN_LEN,
                "the admin token is {} characters long; use at least {MIN_ADMIN_TOKEN_LEN} (e.g. from `openssl rand -hex 32`)",
                token.len()
            );
            // Spaces (or a line end in a file) would be trimmed where the
            // token is typed, and sixteen spaces are no secret.
            anyhow::ensure!(
                !token.chars().any(char::is_whitespace),
                "the admin token holds spaces or other whitespace; use a token without (e.g. from `openssl rand -hex 32`)"
            );
        }
        self.validate_tls()?;
        // Devices that register authenticate with the devices file; every
        // other client with a password or a token.
        let devices_ask = self
            .listeners
            .iter()
            .filter(|l| l.auth && l.device.register.is_some())
            .map(|l| l.to_string())
            .collect::<Vec<_>>();
        anyhow::ensure!(
            devices_ask.is_empty() || self.auth.devices_file.is_some(),
            "{} asks devices to authenticate, but no devices file is configured: give --devices FILE, listing the devices that may register",
            devices_ask.join(", ")
        );
        let asks = self
            .listeners
            .iter()
            .filter(|l| l.auth && l.device.register.is_none())
            .map(|l| l.to_string())
            .chain(self.http.listen.filter(|h| h.auth).map(|h| h.to_string()))
            .collect::<Vec<_>>();
        anyhow::ensure!(
            asks.is_empty() || self.auth.has_credentials(),
            "{} asks for authentication, but no credentials are configured: give --users FILE, --token SECRET, --token-file FILE or a JWT key (--jwt-secret, --jwt-public-key)",
            asks.join(", ")
        );
        anyhow::ensure!(
            !self.auth_timeout.is_zero(),
            "auth-timeout must be more than 0"
        );
        if let Some(HttpSpec { addr: http, .. }) = self.http.listen {
            // The playground is for the public; without a token the admin
            // side still answers only requests from this machine itself.
            anyhow::ensure!(
                http.ip().is_loopback()
                    || self.http.admin_token.is_some()
                    || self.playground.enabled,
                "--http {http} is not a loopback address, and no admin token is set: anyone who can reach it could run the server. Set --admin-token TOKEN (or --admin-token-file FILE), or listen on 127.0.0.1"
            );
        }
        Ok(())
    }

    /// Whether any listener, or the HTTP one, speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.listeners.iter().any(|l| l.tls) || self.http.listen.is_some_and(|h| h.tls)
    }

    fn validate_tls(&self) -> anyhow::Result<()> {
        let tls = &self.tls;
        anyhow::ensure!(
            tls.cert.is_some() == tls.key.is_some(),
            "--tls-cert and --tls-key go together: give both, the certificate chain and its private key"
        );
        anyhow::ensure!(
            !(tls.self_signed && tls.cert.is_some()),
            "--tls-self-signed and --tls-cert both given: use one, a self-signed certificate or yours"
        );
        let has_certificate = tls.cert.is_some() || tls.self_signed;
        if self.uses_tls() {
            let which = self
                .listeners
                .iter()
                .filter(|l| l.tls)
                .map(|l| l.to_string())
                .chain(self.http.listen.filter(|h| h.tls).map(|h| h.to_string()))
                .collect::<Vec<_>>()
                .join(", ");
            anyhow::ensure!(
                has_certificate,
                "{which} needs a certificate: give --tls-cert FILE --tls-key FILE (PEM), or --tls-self-signed to try it out"
            );
        } else {
            anyhow::ensure!(
                tls.client_ca.is_none(),
                "--tls-client-ca is set, but no listener speaks TLS (tls://, json+tls://, raw+tls:// or --http https://)"
            );
        }
        anyhow::ensure!(
            !self.tls_handshake_timeout.is_zero(),
            "tls-handshake-timeout must be more than 0"
        );
        anyhow::ensure!(
            !self.http.header_timeout.is_zero(),
            "http-header-timeout must be more than 0"
        );
        Ok(())
    }
}

/// How log lines are written: for people, or for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event, as people read them (the default).
    #[default]
    Text,
    /// One JSON object per line, for journald exports, Loki, Elasticsearch
    /// and the like: nothing to parse with regular expressions.
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => anyhow::bail!("unknown log format {s:?}: expected text or json"),
        }
    }
}

/// The admin token kept in `path`: its first line, trimmed.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "the admin token file {} is empty",
        path.display()
    );
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_takes_one_listener_as_a_string() {
        let one: Overrides = toml::from_str(r#"listen = "0.0.0.0:12345""#).unwrap();
        assert_eq!(one.listen.unwrap().len(), 1);
        let two: Overrides =
            toml::from_str(r#"listen = "0.0.0.0:12345,raw://0.0.0.0:9000""#).unwrap();
        assert_eq!(two.listen.unwrap().len(), 2);
        let list: Overrides = toml::from_str(r#"listen = ["0.0.0.0:1", "json://[::]:2"]"#).unwrap();
        assert_eq!(list.listen.unwrap().len(), 2);
        let bad = toml::from_str::<Overrides>(r#"listen = "0.0.0.0""#).unwrap_err();
        assert!(bad.to_string().contains("has no port"), "{bad}");
    }

    #[test]
    fn an_unknown_key_is_told_the_key_it_was_meant_to_be() {
        for (typo, meant) in [
            ("lisen", "listen"),
            ("max_line", "max-line"),
            ("idle-timout", "idle-timeout"),
            ("welcom", "welcome"),
        ] {
            let error = toml::from_str::<Overrides>(&format!("{typo} = 1")).unwrap_err();
            let told = suggest_known_key(&error.to_string());
            assert!(
                told.contains(&format!("did you mean `{meant}`?")),
                "{typo}: {told}"
            );
            assert!(!told.contains("expected one of"), "{told}");
        }
        let error = toml::from_str::<Overrides>("frobnicate = 1").unwrap_err();
        let told = suggest_known_key(&error.to_string());
        assert!(
            told.contains("unknown key `frobnicate`: every key"),
            "{told}"
        );
    }

    #[test]
    fn listener_specs_name_mode_address_and_room() {
        let spec: ListenerSpec = "raw://0.0.0.0:9000?room=devices".parse().unwrap();
        assert_eq!(spec.mode, Mode::Raw);
        assert_eq!(spec.addr.port(), 9000);
        assert_eq!(spec.room.as_str(), "devices");
        let spec: ListenerSpec = "[::1]:7".parse().unwrap();
        assert_eq!((spec.mode, spec.addr.is_ipv6()), (Mode::Text, true));
        let spec: ListenerSpec = "12345".parse().unwrap();
        assert_eq!(spec, ListenerSpec::default());
        assert_eq!(spec.to_string(), "text://0.0.0.0:12345");
        for (text, mode, shown) in [
            ("tls://0.0.0.0:12443", Mode::Text, "tls://0.0.0.0:12443"),
            (
                "text+tls://0.0.0.0:12443",
                Mode::Text,
                "tls://0.0.0.0:12443",
            ),
            ("json+tls://0.0.0.0:1", Mode::Json, "json+tls://0.0.0.0:1"),
            (
                "raw+tls://0.0.0.0:2?room=d",
                Mode::Raw,
                "raw+tls://0.0.0.0:2?room=d",
            ),
        ] {
            let spec: ListenerSpec = text.parse().unwrap();
            assert_eq!((spec.mode, spec.tls), (mode, true), "{text}");
            assert_eq!(spec.to_string(), shown);
        }
        let spec: ListenerSpec = "0.0.0.0:1?auth=required&room=x".parse().unwrap();
        assert!(spec.auth);
        assert_eq!(spec.to_string(), "text://0.0.0.0:1?room=x&auth=required");
        let http: HttpSpec = "https://127.0.0.1:8443?auth=required".parse().unwrap();
        assert!(http.tls && http.auth);
        let http: HttpSpec = "127.0.0.1:8080".parse().unwrap();
        assert!(!http.tls && !http.auth);
    }

    #[test]
    fn device_listeners_read_back_as_written() {
        let written = "raw://0.0.0.0:9000?idle-timeout=90s&register=imei&register-each&room=dev-{id}&heartbeat=hex:FE&frame=gap:20&modbus=rtu";
        let spec: ListenerSpec = written.parse().unwrap();
        assert_eq!(spec.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(
            spec.device.frame,
            crate::device::Frame::Gap(Duration::from_millis(20))
        );
        assert_eq!(spec.to_string(), written);
        assert_eq!(spec.to_string().parse::<ListenerSpec>().unwrap(), spec);
    }

    #[test]
    fn device_options_that_do_not_fit_say_why() {
        for (spec, says) in [
            ("0.0.0.0:1?register=imei", "for devices, on raw listeners"),
            (
                "json://0.0.0.0:1?frame=line",
                "for devices, on raw listeners",
            ),
            ("raw://0.0.0.0:1?register=imsi", "unknown register"),
            ("raw://0.0.0.0:1?frame=len:3", "unknown length prefix"),
            ("raw://0.0.0.0:1?register-each", "needs register="),
            ("raw://0.0.0.0:1?room=dev-{id}", "needs register="),
            ("raw://0.0.0.0:1?register=imei&name={id}", "fixed part"),
            ("raw://0.0.0.0:1?heartbeat", "needs a value"),
            ("raw://0.0.0.0:1?modbus=rtu", "needs frame=gap"),
            (
                "raw://0.0.0.0:1?frame=gap:5&modbus=tcp",
                "expected modbus=rtu",
            ),
        ] {
            let err = spec.parse::<ListenerSpec>().unwrap_err();
            assert!(format!("{err:#}").contains(says), "{spec}: {err:#}");
        }
    }

    #[test]
    fn a_list_of_listeners_splits_at_commas_that_start_a_new_one() {
        let list: ListenerList = "127.0.0.1:1,raw://127.0.0.1:2?register=regex:(?<id>[0-9]{15}),(?<key>[^,]+),json://127.0.0.1:3,4"
            .parse()
            .unwrap();
        let specs: Vec<String> = list.0.iter().map(ToString::to_string).collect();
        assert_eq!(specs.len(), 4, "{specs:?}");
        assert!(specs[1].contains("{15}),(?<key>[^,]+)"), "{specs:?}");
        assert_eq!(specs[3], "text://0.0.0.0:4");
        assert!("127.0.0.1:1,".parse::<ListenerList>().is_err());
    }

    #[test]
    fn a_udp_listener_is_raw_over_udp_and_takes_device_options() {
        let spec: ListenerSpec = "udp://0.0.0.0:9001?register=imei&heartbeat=hex:FE"
            .parse()
            .unwrap();
        assert!(spec.udp && !spec.tls);
        assert_eq!(spec.mode, Mode::Raw);
        assert_eq!(spec.scheme(), "udp");
        assert_eq!(
            spec.to_string(),
            "udp://0.0.0.0:9001?register=imei&heartbeat=hex:FE"
        );
        assert_eq!(spec.to_string().parse::<ListenerSpec>().unwrap(), spec);
        let err = "udp://0.0.0.0:9001?proxy=v1"
            .parse::<ListenerSpec>()
            .unwrap_err();
        assert!(format!("{err:#}").contains("proxy= is for TCP"), "{err:#}");
        let err = "udp://0.0.0.0:9001?frame=line"
            .parse::<ListenerSpec>()
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("each datagram is one packet"),
            "{err:#}"
        );
        let spec: ListenerSpec = "udp://0.0.0.0:9001?max-unproven=50000".parse().unwrap();
        assert_eq!(spec.max_unproven, Some(50_000));
        assert_eq!(spec.to_string().parse::<ListenerSpec>().unwrap(), spec);
        for (bad, why) in [
            ("raw://0.0.0.0:9001?max-unproven=5", "is for UDP listeners"),
            ("udp://0.0.0.0:9001?max-unproven=0", "at least 1"),
            ("udp://0.0.0.0:9001?max-unproven=many", "at least 1"),
        ] {
            let err = bad.parse::<ListenerSpec>().unwrap_err();
            assert!(format!("{err:#}").contains(why), "{bad}: {err:#}");
        }
    }

    #[test]
    fn bad_listener_specs_say_what_is_wrong() {
        let err = "sctp://1.2.3.4:5".parse::<ListenerSpec>().unwrap_err();
        assert!(err.to_string().contains("unknown mode"), "{err}");
        // Each says what is wrong in its first line: clap shows no more.
        for (spec, says) in [
            ("json://nowhere", "\"nowhere\" has no port"),
            (":21360x", "is not a port"),
            (
                "text://0.0.0.0",
                "has no port: expected IP:PORT, e.g. 0.0.0.0:12345",
            ),
            ("127.0.0.1:99999", "a port from 0 to 65535"),
            ("relay.example.com:80", "is a host name"),
        ] {
            let err = spec.parse::<ListenerSpec>().unwrap_err().to_string();
            assert!(err.contains(says), "{spec}: {err}");
            assert!(err.contains(&format!("in listener {spec:?}")), "{err}");
        }
        let err = "ws+tls://1.2.3.4:5".parse::<ListenerSpec>().unwrap_err();
        assert!(err.to_string().contains("unknown mode"), "{err}");
        let err = "1.2.3.4:5?auth=maybe".parse::<ListenerSpec>().unwrap_err();
        assert!(err.to_string().contains("auth=required"), "{err}");
        let err = "ftp://1.2.3.4:5".parse::<HttpSpec>().unwrap_err();
        assert!(err.to_string().contains("http or https"), "{err}");
        let err = "raw://1.2.3.4:5?colour=red"
            .parse::<ListenerSpec>()
            .unwrap_err();
        assert!(err.to_string().contains("unknown option"), "{err}");
    }

    #[test]
    fn a_config_file_overrides_defaults() {
        let file: Overrides = toml::from_str(
            r#"
            listen = ["json://127.0.0.1:0"]
            max-line = "1KiB"
            stall-timeout = 2
            idle-timeout = "0"
            welcome = "connect"
            "#,
        )
        .unwrap();
        let mut config = Config::default();
        file.apply(&mut config).unwrap();
        assert_eq!(config.listeners[0].mode, Mode::Json);
        assert_eq!(config.max_line, 1024);
        assert_eq!(config.limits.stall_timeout, Duration::from_secs(2));
        assert_eq!(config.limits.idle_timeout, None);
        assert_eq!(config.greeting.welcome.as_deref(), Some("connect"));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        assert!(toml::from_str::<Overrides>("max_lines = 3").is_err());
    }

    #[test]
    fn an_admin_token_of_spaces_is_refused() {
        for token in [" ".repeat(16), format!("{} x", "a".repeat(16))] {
            let config = Config {
                http: HttpSettings {
                    admin_token: Some(token.clone()),
                    ..Default::default()
                },
                ..Config::local()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("whitespace"), "{token:?}: {error}");
        }
    }

    #[test]
    fn a_history_dir_on_a_node_of_a_cluster_is_refused_and_says_where_history_lives() {
        let mut config = Config::local();
        config.history.dir = Some("/var/lib/switchboard".into());
        assert!(config.validate().is_ok(), "on a server of its own");
        config.cluster.url = Some("redis://127.0.0.1:6379".into());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("live in Redis"), "{error}");
    }

    /// The playground is for the public: it may listen on any address
    /// without an admin token (the admin side then answers only this
    /// machine); the console alone may not.
    #[test]
    fn a_public_http_listener_needs_a_token_unless_it_serves_the_playground() {
        let mut config = Config::local();
        config.http.listen = Some("0.0.0.0:8080".parse().unwrap());
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("no admin token is set"), "{error}");
        config.playground.enabled = true;
        config.validate().unwrap();
        config.http.listen = None;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("give --http"), "{error}");
        let ports: PortRange = "30000-30999".parse().unwrap();
        assert_eq!(
            (ports.len(), ports.to_string().as_str()),
            (1000, "30000-30999")
        );
        assert_eq!("40000".parse::<PortRange>().unwrap().len(), 1);
        for (text, ip) in [
            ("0.0.0.0:30000-30999", "0.0.0.0"),
            ("[::]:30000-30999", "::"),
        ] {
            let ports: PortRange = text.parse().unwrap();
            assert_eq!(ports.ip, Some(ip.parse().unwrap()));
            assert_eq!(ports.to_string(), text);
        }
        for bad in ["30999-30000", "0-10", "a-b", "70000", "host:1-2"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        let mut config = Config::default();
        config.hub.queue.soft = 1024;
        assert!(config.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }
}
