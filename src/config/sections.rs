//! The groups a [`Config`](super::Config) is made of: each part of the
//! server is handed its group whole, rather than picking fields from a
//! flat list. The settings table (`setting.rs`) names each field by its
//! path (`history.keep`) and says what a reload does with it.

use std::path::PathBuf;
use std::time::Duration;

use crate::throttle::Rate;

/// What text clients are greeted with, and answered after each message
/// (`--welcome`, `--ack`): a reload changes it for the connections after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Greeting {
    /// First line sent to every text client: `None` for the default
    /// welcome, `Some("")` for none, otherwise the text verbatim.
    pub welcome: Option<String>,
    /// Line sent verbatim in answer to every message line of a text client.
    pub ack: Option<String>,
}

/// What rooms keep of what is said in them (`--history*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// Most messages each room keeps for late joiners and resuming
    /// clients (0: none).
    pub keep: usize,
    /// Oldest a kept message may be.
    pub age: Duration,
    /// Most bytes one room's history may hold.
    pub bytes: usize,
    /// Patterns of the rooms that keep a history (empty: every room).
    pub rooms: Vec<String>,
    /// Where rooms' histories are kept across restarts (`None`: in memory
    /// only, lost at a restart).
    pub dir: Option<PathBuf>,
    /// How often changes to the histories are committed to `dir`: what a
    /// `kill -9` can lose (0: as soon as each commit is done).
    pub sync: Duration,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            keep: 0,
            age: super::DEFAULT_HISTORY_AGE,
            bytes: super::DEFAULT_HISTORY_BYTES,
            rooms: Vec::new(),
            dir: None,
            sync: super::DEFAULT_HISTORY_SYNC,
        }
    }
}

impl HistorySettings {
    /// What rooms keep, as the hub takes it.
    pub fn rules(&self) -> crate::hub::HistoryRules {
        crate::hub::HistoryRules {
            max_messages: self.keep,
            max_age: self.age,
            max_bytes: self.bytes,
            rooms: self.filter().expect("validated: the patterns parse"),
        }
    }

    /// `--history-rooms` as a filter (`None`: every room).
    pub(super) fn filter(&self) -> anyhow::Result<Option<crate::hub::RoomFilter>> {
        if self.rooms.is_empty() {
            return Ok(None);
        }
        let patterns = self
            .rooms
            .iter()
            .map(|raw| {
                crate::auth::Pattern::new(raw)
                    .map_err(|error| anyhow::anyhow!("history-rooms: {error}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Some(std::sync::Arc::new(
            move |room: &crate::hub::RoomName| patterns.iter().any(|pattern| pattern.matches(room)),
        )))
    }
}

/// TCP keepalive for every client (`--tcp-keepalive*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Idle time before keepalive probes (`None`: no keepalive).
    pub idle: Option<Duration>,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes after which the connection is dropped.
    pub retries: u32,
}

impl Default for KeepaliveSettings {
    fn default() -> Self {
        KeepaliveSettings {
            idle: Some(super::DEFAULT_TCP_KEEPALIVE),
            interval: super::DEFAULT_TCP_KEEPALIVE_INTERVAL,
            retries: super::DEFAULT_TCP_KEEPALIVE_RETRIES,
        }
    }
}

/// How this server takes part in a cluster (`--cluster*`, `--node-name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis a cluster of servers meets in (`None`: this server
    /// stands alone, and needs no Redis).
    pub url: Option<String>,
    /// What the cluster's keys and channels in Redis start with.
    pub prefix: String,
    /// This node's name in its cluster (`None`: six random characters).
    pub node_name: Option<String>,
    /// How long a node that stops renewing its lease keeps its names.
    pub lease: Duration,
    /// Most cross-node sends waiting for Redis at once.
    pub max_pending: usize,
    /// The CA (PEM) that signed a `rediss://` Redis's certificate, when it
    /// is not one of the system's roots.
    pub ca: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            url: None,
            prefix: crate::cluster::DEFAULT_PREFIX.to_owned(),
            node_name: None,
            lease: crate::cluster::DEFAULT_LEASE,
            max_pending: crate::cluster::DEFAULT_MAX_PENDING,
            ca: None,
        }
    }
}

impl ClusterSettings {
    /// How this server joins its cluster, if it is part of one; a node
    /// with no name given gets a random one, each time this is called.
    pub fn config(&self) -> Option<crate::cluster::ClusterConfig> {
        let url = self.url.clone()?;
        Some(crate::cluster::ClusterConfig {
            url,
            prefix: self.prefix.clone(),
            node: self
                .node_name
                .clone()
                .unwrap_or_else(crate::cluster::random_node_name),
            lease: self.lease,
            max_pending: self.max_pending,
            ca: self.ca.clone(),
        })
    }
}

/// The HTTP listener (console, API, metrics, WebSocket clients) and who
/// may use it (`--http`, `--admin-token`, `--allowed-origin`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Where it listens, and whether over TLS (`None`: no HTTP).
    pub listen: Option<super::HttpSpec>,
    /// How long an HTTP connection may take to send a request's headers,
    /// or sit idle between requests.
    pub header_timeout: Duration,
    /// The admin token: with it, the console, API and metrics answer on
    /// any address to whoever has it; without it, only on loopback.
    pub admin_token: Option<String>,
    /// Origins (`https://host:port`) allowed to open `/ws` from a browser,
    /// besides the HTTP listener's own.
    pub allowed_origins: Vec<String>,
    /// The DNS names browsers reach the HTTP listener by, directly (not
    /// through a proxy): a page whose `Host` is a name not listed here,
    /// nor `localhost`, an IP address or an allowed origin's, is one that
    /// DNS rebinding pointed at this server, and is refused `/ws`.
    pub server_names: Vec<String>,
    /// The proxies in front of the HTTP listener (nginx on this machine,
    /// a load balancer): from them, `X-Forwarded-For` (or `Forwarded`)
    /// names the client, for bans, per-address limits, logs and the
    /// console. From anyone else those headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How often WebSocket clients are pinged.
    pub ws_ping_interval: Duration,
    /// How long a pinged WebSocket client has to answer.
    pub ws_pong_timeout: Duration,
    /// Failed admin logins allowed per IP address per minute.
    pub admin_login_attempts: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: None,
            header_timeout: super::DEFAULT_HTTP_HEADER_TIMEOUT,
            admin_token: None,
            allowed_origins: Vec::new(),
            server_names: Vec::new(),
            trusted_proxies: Vec::new(),
            ws_ping_interval: super::DEFAULT_WS_PING_INTERVAL,
            ws_pong_timeout: super::DEFAULT_WS_PONG_TIMEOUT,
            admin_login_attempts: super::DEFAULT_ADMIN_LOGIN_ATTEMPTS,
        }
    }
}

/// The limits each connection takes as it comes (`--stall-timeout`,
/// `--max-connections`, the rate limits, ...): a reload changes them for
/// the connections after it ([`Reload::Limits`](super::Reload::Limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may accept nothing while data waits for it.
    pub stall_timeout: Duration,
    /// Disconnect clients that send nothing for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Disconnect a client that does not finish a line it started within
    /// this long (`None`: never).
    pub line_timeout: Option<Duration>,
    /// Connections served at once, across all listeners.
    pub max_connections: usize,
    /// Connections served at once from one IP address (`None`: no limit).
    pub max_connections_per_ip: Option<usize>,
    /// New connections one IP address (an IPv6 /64) may open a second
    /// (`None`: no limit). Loopback is not limited.
    pub max_connections_per_ip_per_second: Option<Rate>,
    /// Messages one client may send a second (`None`: no limit); a client
    /// over it is slowed down.
    pub max_messages_per_second: Option<Rate>,
    /// Bytes one client may send a second (`None`: no limit); a client
    /// over it is slowed down.
    pub max_bytes_per_second: Option<Rate>,
    /// How long a client may stay over its rate limits before it is
    /// disconnected; zero: never, it is only paced.
    pub rate_limit_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            stall_timeout: super::DEFAULT_STALL_TIMEOUT,
            idle_timeout: None,
            line_timeout: Some(super::DEFAULT_LINE_TIMEOUT),
            max_connections: super::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: None,
            max_connections_per_ip_per_second: Rate::per_second(
                super::DEFAULT_MAX_CONNECTIONS_PER_IP_PER_SECOND,
            ),
            max_messages_per_second: Rate::per_second(super::DEFAULT_MAX_MESSAGES_PER_SECOND),
            max_bytes_per_second: Rate::per_second(super::DEFAULT_MAX_BYTES_PER_SECOND as u32),
            rate_limit_grace: super::DEFAULT_RATE_LIMIT_GRACE,
        }
    }
}

/// The playground (`--playground`): a page at `/play` that hands any
/// visitor a port of their own for a while, shows what arrives there and
/// sends to it, as the online TCP test pages do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaygroundSettings {
    /// Whether `/play` is served (off by default).
    pub enabled: bool,
    /// The ports it hands out.
    pub ports: PortRange,
    /// How long a port stays open with no client and no page watching it.
    pub ttl: Duration,
    /// Ports one address (an IPv6 /64) may hold at once.
    pub max_ports_per_ip: usize,
    /// Clients one port takes at once.
    pub max_clients: usize,
    /// Bytes a second each client of a port may send (`None`: only the
    /// server's `--max-bytes-per-second`); a port takes at most
    /// `max_clients` times it.
    pub bytes_per_second: Option<crate::throttle::Rate>,
}

impl Default for PlaygroundSettings {
    fn default() -> Self {
        PlaygroundSettings {
            enabled: false,
            ports: PortRange {
                ip: None,
                first: 30000,
                last: 30999,
            },
            ttl: super::DEFAULT_PLAYGROUND_TTL,
            max_ports_per_ip: super::DEFAULT_PLAYGROUND_MAX_PORTS_PER_IP,
            max_clients: super::DEFAULT_PLAYGROUND_MAX_CLIENTS,
            bytes_per_second: crate::throttle::Rate::per_second(
                super::DEFAULT_PLAYGROUND_BYTES_PER_SECOND,
            ),
        }
    }
}

/// A range of ports, `FIRST-LAST` (both included), or one port; with
/// `IP:` before it, on that address (`0.0.0.0:30000-30999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// Where they listen (`None`: the HTTP listener's address).
    pub ip: Option<std::net::IpAddr>,
    /// The first port.
    pub first: u16,
    /// The last port, included.
    pub last: u16,
}

impl PortRange {
    /// How many ports it holds.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Whether it holds no port (never: a range has at least one).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Its ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + Clone {
        self.first..=self.last
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            Some(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for PortRange {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (ip, range) = match s.rsplit_once(':') {
            Some((ip, range)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip = ip.parse::<std::net::IpAddr>().map_err(|_| {
                    anyhow::anyhow!("bad address {ip:?} in port range {s:?}: expected IP:FIRST-LAST, e.g. 0.0.0.0:30000-30999")
                })?;
                (Some(ip), range)
            }
            None => (None, s),
        };
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| anyhow::anyhow!("bad port range {s:?}: expected FIRST-LAST, ports from 1 to 65535 (30000-30999)"))
        };
        let (first, last) = (port(first)?, port(last)?);
        anyhow::ensure!(
            first <= last,
            "bad port range {s:?}: the first port comes first (30000-30999)"
        );
        Ok(PortRange { ip, first, last })
    }
}

impl<'de> serde::Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
