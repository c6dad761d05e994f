//! [`Overrides`]: every setting once, as a config-file key and (with the
//! `cli` feature) a flag of `switchboard serve` and its `SWITCHBOARD_*`
//! variable; and how they are applied to a [`Config`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::{
    parse_proxy, read_token_file, Config, HttpSpec, ListenerList, ListenerSpec, LogFormat,
};
use crate::throttle::Rate;
use crate::units::{Seconds, Size};

/// Settings that override the defaults, every one optional: the one
/// definition of each setting. Each field is a key of the TOML config file
/// (`--config FILE`) and, with the `cli` feature, a flag of `switchboard
/// serve` and its `SWITCHBOARD_*` variable, whose `--help` is the field's
/// doc: a new setting is added here (and to [`Config`], with its default,
/// to [`Overrides::apply`], and to the table of [`Setting`](super::Setting)). Sizes are bytes or strings like
/// `"64KiB"`, durations seconds or strings like `"500ms"`.
///
/// ```toml
/// listen = ["0.0.0.0:12345", "raw://0.0.0.0:9000?room=devices"]
/// max-line = "64KiB"
/// stall-timeout = "5s"
/// welcome = "connect"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overrides {
    /// See [`Config::listeners`]: a list, or one string (a listener, or
    /// several separated by commas, as `SWITCHBOARD_LISTEN` takes them).
    #[serde(default, deserialize_with = "one_or_many_listeners")]
    #[cfg_attr(feature = "cli", arg(skip))]
    pub listen: Option<Vec<ListenerSpec>>,
    /// Longest line or JSON object a client may send; longer ones are refused and discarded. [default: 64KiB]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_LINE")
    )]
    pub max_line: Option<Size>,
    /// Bytes queued for one client above which its senders pause. [default: 256KiB]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_QUEUE_SOFT_LIMIT")
    )]
    pub queue_soft_limit: Option<Size>,
    /// Bytes queued for one client above which it is disconnected as a slow consumer. [default: 4MiB]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_QUEUE_HARD_LIMIT")
    )]
    pub queue_hard_limit: Option<Size>,
    /// Disconnect a client that accepts no data for this long while data waits for it. [default: 5s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_STALL_TIMEOUT")
    )]
    pub stall_timeout: Option<Seconds>,
    /// How long senders pause for a receiver over the soft limit that accepts no bytes at all; then they go on. [default: 250ms]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_PAUSE_TIMEOUT")
    )]
    pub pause_timeout: Option<Seconds>,
    /// Disconnect a client that sends nothing for this long; 0 turns it off. [default: off]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_IDLE_TIMEOUT")
    )]
    pub idle_timeout: Option<Seconds>,
    /// Connections served at once; more are refused. [default: 10000]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS")
    )]
    pub max_connections: Option<usize>,
    /// Connections served at once from one IP address; 0 means no limit. [default: 0]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")
    )]
    pub max_connections_per_ip: Option<usize>,
    /// New connections one IP address (an IPv6 /64) may open a second, burst of a second's worth; more are refused, saying when to retry. Loopback is not limited; behind a load balancer, see ?proxy=v2. 0 means no limit. [default: 20]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "N",
            env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP_PER_SECOND"
        )
    )]
    pub max_connections_per_ip_per_second: Option<u32>,
    /// Messages (requests, lines, frames, raw reads) one client may send a second, burst of a second's worth; over it, the server reads from it more slowly. 0 means no limit. [default: 10000]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_MESSAGES_PER_SECOND")
    )]
    pub max_messages_per_second: Option<u32>,
    /// Bytes one client may send a second, burst of a second's worth; over it, the server reads from it more slowly. 0 means no limit. [default: 16MiB]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_BYTES_PER_SECOND")
    )]
    pub max_bytes_per_second: Option<Size>,
    /// How long a client may keep sending over its rate limits, however much it is slowed down, before it is disconnected; 0 never disconnects it, it is only read at the limit's pace. [default: 0]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_RATE_LIMIT_GRACE")
    )]
    pub rate_limit_grace: Option<Seconds>,
    /// Rooms one client may be in at once. [default: 32]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_ROOMS_PER_CLIENT")
    )]
    pub max_rooms_per_client: Option<usize>,
    /// Send join/leave/rename notices only in rooms of at most N members; 0 never. [default: 100]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_ANNOUNCE_MAX_MEMBERS")
    )]
    pub announce_max_members: Option<usize>,
    /// First line for every text client, verbatim; '' sends none. [default: a short welcome naming the client and /help]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "TEXT", env = "SWITCHBOARD_WELCOME")
    )]
    pub welcome: Option<String>,
    /// Answer every message line of a text client with TEXT, verbatim. [default: off]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "TEXT", env = "SWITCHBOARD_ACK")
    )]
    pub ack: Option<String>,
    /// On Ctrl-C or SIGTERM, how long queued data may take to reach clients. [default: 5s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_SHUTDOWN_TIMEOUT")
    )]
    pub shutdown_timeout: Option<Seconds>,
    /// Most rooms one /rooms, or names one /who, lists (a pattern narrows the rest). [default: 100]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_LIST")
    )]
    pub max_list: Option<usize>,
    /// Most rooms or members one /rooms or /who looks at; past it, a listing is cut short and says so. [default: 10000]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_MAX_LIST_SCAN")
    )]
    pub max_list_scan: Option<usize>,
    /// Disconnect a client whose queue stays over the soft limit (holding its senders back) this long; 0 turns it off. [default: 10s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_SLOW_TIMEOUT")
    )]
    pub slow_timeout: Option<Seconds>,
    /// Disconnect a client that does not finish a line it started within this long; 0 turns it off. [default: 30s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_LINE_TIMEOUT")
    )]
    pub line_timeout: Option<Seconds>,
    /// Memory all clients together may hold in queues and unfinished input; near it new clients are refused, past it the largest holders are cut off. [default: half the machine's memory]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_MEMORY")
    )]
    pub max_memory: Option<Size>,
    /// Messages each room keeps, so a client that joins late or reconnects gets what it missed (/history, a JSON join with "since", a text listener's ?history=N); 0 keeps none. History counts against --max-memory and is evicted, oldest first, before any client is cut off. [default: 0]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_HISTORY")
    )]
    pub history: Option<usize>,
    /// Oldest a room's kept message may be. [default: 1h]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_HISTORY_AGE")
    )]
    pub history_age: Option<Seconds>,
    /// Most bytes one room's history may hold (bodies, names and about 100 bytes a message); at most a quarter of --queue-hard-limit. [default: 1MiB]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "SIZE", env = "SWITCHBOARD_HISTORY_BYTES")
    )]
    pub history_bytes: Option<Size>,
    /// Rooms that keep a history, as patterns (dev-*, ops); repeatable. [default: every room]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "PATTERN",
            env = "SWITCHBOARD_HISTORY_ROOMS",
            value_delimiter = ','
        )
    )]
    pub history_rooms: Option<Vec<String>>,
    /// Keeps rooms' histories in DIR (one file, history.redb), so that a restart keeps them with their positions: clients resume across it. Without it history is in memory only. Not with --cluster, whose history lives in Redis. [default: none]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DIR", env = "SWITCHBOARD_HISTORY_DIR")
    )]
    pub history_dir: Option<PathBuf>,
    /// How often history changes are committed (and fsynced) to --history-dir: what a crash or kill -9 can lose; 0 commits as soon as the last commit is done. [default: 1s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_HISTORY_SYNC")
    )]
    pub history_sync: Option<Seconds>,
    /// Idle time before TCP keepalive probes a quiet connection; 0 turns keepalive off. [default: 60s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_TCP_KEEPALIVE")
    )]
    pub tcp_keepalive: Option<Seconds>,
    /// Time between unanswered TCP keepalive probes. [default: 10s]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "DURATION",
            env = "SWITCHBOARD_TCP_KEEPALIVE_INTERVAL"
        )
    )]
    pub tcp_keepalive_interval: Option<Seconds>,
    /// Unanswered TCP keepalive probes after which a connection is dropped. [default: 6]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_TCP_KEEPALIVE_RETRIES")
    )]
    pub tcp_keepalive_retries: Option<u32>,
    /// Serve the web console, the admin API, /metrics and WebSocket clients (/ws) on [http://|https://]ADDR, e.g. 127.0.0.1:8080; https:// uses the TLS certificate. [default: off]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "ADDR", env = "SWITCHBOARD_HTTP")
    )]
    pub http: Option<HttpSpec>,
    /// Certificate chain (PEM, leaf first) for tls://, json+tls://, raw+tls:// listeners and --http https://; re-read on SIGHUP.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_CERT")
    )]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert; re-read on SIGHUP.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_KEY")
    )]
    pub tls_key: Option<PathBuf>,
    /// Require TLS clients to present a certificate signed by a CA in FILE (PEM); its subject's common name becomes the client's name. [default: no client certificates]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_CLIENT_CA")
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Make a self-signed certificate for localhost at start, to try TLS without one (clients must trust it or use --insecure).
    #[cfg_attr(feature = "cli", arg(long, env = "SWITCHBOARD_TLS_SELF_SIGNED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new()))]
    pub tls_self_signed: Option<bool>,
    /// Users who may log in (/login USER PASSWORD): a TOML file of entries made by `switchboard passwd USER`; their names are kept from everyone else. Re-read on SIGHUP.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_USERS")
    )]
    pub users: Option<PathBuf>,
    /// A token that lets a client in (/auth TOKEN) on ?auth=required listeners; at least 16 characters; repeatable.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "SECRET",
            env = "SWITCHBOARD_TOKEN",
            value_delimiter = ',',
            hide_env_values = true
        )
    )]
    pub token: Option<Vec<String>>,
    /// Tokens, one a line (# comments); re-read on SIGHUP.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_TOKEN_FILE")
    )]
    pub token_file: Option<PathBuf>,
    /// Accept JWTs (/auth JWT) signed with HS256 with this secret (at least 32 bytes); `sub` names the client, `rooms` says where it may go.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "SECRET",
            env = "SWITCHBOARD_JWT_SECRET",
            hide_env_values = true
        )
    )]
    pub jwt_secret: Option<String>,
    /// The HS256 JWT secret, from the first line of FILE (keeps it out of `ps`).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_JWT_SECRET_FILE")
    )]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept JWTs signed with RS256 by the key whose public half (PEM) is in FILE.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_JWT_PUBLIC_KEY")
    )]
    pub jwt_public_key: Option<PathBuf>,
    /// Devices that may register on device listeners with ?auth=required: one a line, `IDENTITY [key=KEY] [LABEL]`, # comments. Re-read on SIGHUP.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_DEVICES")
    )]
    pub devices: Option<PathBuf>,
    /// JWTs must carry this audience (`aud`). [default: JWTs with an aud are refused]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "AUD", env = "SWITCHBOARD_JWT_AUDIENCE")
    )]
    pub jwt_audience: Option<String>,
    /// Close a client of an ?auth=required listener that has not authenticated in this long. [default: 10s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_AUTH_TIMEOUT")
    )]
    pub auth_timeout: Option<Seconds>,
    /// Close a TLS client that has not finished its handshake in this long (e.g. plaintext sent to a TLS port). [default: 10s]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "DURATION",
            env = "SWITCHBOARD_TLS_HANDSHAKE_TIMEOUT"
        )
    )]
    pub tls_handshake_timeout: Option<Seconds>,
    /// Close an --http connection that takes longer than this to send a request's headers, or sits idle this long between requests (nginx's client_header_timeout); WebSocket connections, once open, have their pings instead. [default: 60s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_HTTP_HEADER_TIMEOUT")
    )]
    pub http_header_timeout: Option<Seconds>,
    /// Token that opens the console, the API and /metrics to anyone who has it, on any address; without one they answer only on loopback. At least 16 characters.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "TOKEN",
            env = "SWITCHBOARD_ADMIN_TOKEN",
            hide_env_values = true
        )
    )]
    pub admin_token: Option<String>,
    /// Read the admin token from the first line of FILE (keeps it out of `ps`).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_ADMIN_TOKEN_FILE")
    )]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// A browser origin (e.g. `https://app.example.com`) allowed to open /ws, besides the HTTP listener's own; repeatable. [default: same origin only]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "ORIGIN",
            env = "SWITCHBOARD_ALLOWED_ORIGIN",
            value_delimiter = ','
        )
    )]
    pub allowed_origin: Option<Vec<String>>,
    /// A DNS name browsers open the --http listener by directly (not through a proxy), e.g. relay.example.com; repeatable. A browser on a name not listed (nor localhost, an IP address or an --allowed-origin's host) is refused /ws: it is a page that DNS rebinding pointed here. [default: none]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "NAME",
            env = "SWITCHBOARD_SERVER_NAME",
            value_delimiter = ','
        )
    )]
    pub server_name: Option<Vec<String>>,
    /// A proxy in front of --http (an address or a CIDR block: 127.0.0.1 for nginx on this machine); repeatable. From it, X-Forwarded-For or Forwarded name the client, for bans, per-address limits, logs and the console; from anyone else, those headers are ignored. [default: none]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "CIDR",
            env = "SWITCHBOARD_TRUSTED_PROXY",
            value_delimiter = ','
        )
    )]
    pub trusted_proxy: Option<Vec<String>>,
    /// How often WebSocket clients are pinged. [default: 25s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_WS_PING_INTERVAL")
    )]
    pub ws_ping_interval: Option<Seconds>,
    /// Drop a WebSocket client that sends nothing (not even a pong) this long after a ping. [default: 20s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_WS_PONG_TIMEOUT")
    )]
    pub ws_pong_timeout: Option<Seconds>,
    /// Failed admin logins allowed per IP address per minute; more are refused until the minute is over. [default: 5]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_ADMIN_LOGIN_ATTEMPTS")
    )]
    pub admin_login_attempts: Option<u32>,
    /// Join a cluster of servers that meet in this Redis: `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://` for TLS. Rooms, names and direct messages then span every server. [default: off, no Redis needed]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "URL", env = "SWITCHBOARD_CLUSTER")
    )]
    pub cluster: Option<String>,
    /// What the cluster's keys and channels in Redis start with, so several clusters can share one Redis. [default: sb:]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "PREFIX", env = "SWITCHBOARD_CLUSTER_PREFIX")
    )]
    pub cluster_prefix: Option<String>,
    /// This server's name in its cluster (1-12 letters, digits, '-'), unique among live nodes; part of its guests' names. [default: 6 random characters]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "NAME", env = "SWITCHBOARD_NODE_NAME")
    )]
    pub node_name: Option<String>,
    /// How long a node that stops renewing its lease (crashed, cut off) keeps its names before the others free them and announce its clients gone; renewed every third of it. [default: 3s]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_CLUSTER_LEASE")
    )]
    pub cluster_lease: Option<Seconds>,
    /// Most cross-node sends waiting for Redis at once; past it they are dropped and counted, so a slow Redis never holds a client back. [default: 65536]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_CLUSTER_MAX_PENDING")
    )]
    pub cluster_max_pending: Option<usize>,
    /// The CA certificate (PEM) that signed a rediss:// Redis's certificate, when it is not one of the system's roots. [default: the system's roots]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "FILE", env = "SWITCHBOARD_CLUSTER_CA")
    )]
    pub cluster_ca: Option<PathBuf>,
    /// Serve the playground at /play on the HTTP listener: any visitor gets a port of their own for a while, sees what arrives there and sends to it, and nothing else (see docs/playground.md). [default: off]
    #[cfg_attr(feature = "cli", arg(long, env = "SWITCHBOARD_PLAYGROUND", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new()))]
    pub playground: Option<bool>,
    /// The ports the playground hands out, FIRST-LAST, on the HTTP listener's address; IP:FIRST-LAST for another (0.0.0.0:30000-30999 behind a proxy whose HTTP listener is on 127.0.0.1). [default: 30000-30999]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "RANGE", env = "SWITCHBOARD_PLAYGROUND_PORTS")
    )]
    pub playground_ports: Option<super::PortRange>,
    /// Close a playground port after this long with no client and no page watching it. [default: 10m]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "DURATION", env = "SWITCHBOARD_PLAYGROUND_TTL")
    )]
    pub playground_ttl: Option<Seconds>,
    /// Playground ports one IP address (an IPv6 /64) may hold at once. [default: 2]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "N",
            env = "SWITCHBOARD_PLAYGROUND_MAX_PORTS_PER_IP"
        )
    )]
    pub playground_max_ports_per_ip: Option<usize>,
    /// Clients one playground port takes at once. [default: 16]
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "N", env = "SWITCHBOARD_PLAYGROUND_MAX_CLIENTS")
    )]
    pub playground_max_clients: Option<usize>,
    /// Bytes a second each client of a playground port may send (0: only --max-bytes-per-second). [default: 64KiB]
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "SIZE",
            env = "SWITCHBOARD_PLAYGROUND_BYTES_PER_SECOND"
        )
    )]
    pub playground_bytes_per_second: Option<Size>,
    /// How the `switchboard` binary writes its log. Not a server setting
    /// ([`Overrides::apply`] leaves it alone): the binary reads it before
    /// its logger starts, and it is here so the file can say it too.
    #[cfg_attr(feature = "cli", arg(skip))]
    pub log_format: Option<LogFormat>,
}

impl Overrides {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", suggest_known_key(&e.to_string())))
            .with_context(|| format!("bad config file {}", path.display()))
    }

    /// Overrides `config` with every setting given here.
    pub fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(http) = self.http {
            config.http.listen = Some(http);
        }
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key;
        }
        if self.tls_client_ca.is_some() {
            config.tls.client_ca = self.tls_client_ca;
        }
        set(&mut config.tls.self_signed, self.tls_self_signed);
        set(
            &mut config.tls_handshake_timeout,
            self.tls_handshake_timeout.map(|s| s.0),
        );
        set(
            &mut config.http.header_timeout,
            self.http_header_timeout.map(|s| s.0),
        );
        let auth = &mut config.auth;
        if self.users.is_some() {
            auth.users_file = self.users;
        }
        set(&mut auth.tokens, self.token);
        if self.token_file.is_some() {
            auth.token_file = self.token_file;
        }
        if self.jwt_secret.is_some() {
            auth.jwt_secret = self.jwt_secret;
        }
        if self.jwt_secret_file.is_some() {
            auth.jwt_secret_file = self.jwt_secret_file;
        }
        if self.jwt_public_key.is_some() {
            auth.jwt_public_key_file = self.jwt_public_key;
        }
        if self.jwt_audience.is_some() {
            auth.jwt_audience = self.jwt_audience;
        }
        if self.devices.is_some() {
            auth.devices_file = self.devices;
        }
        set(&mut config.auth_timeout, self.auth_timeout.map(|s| s.0));
        if let Some(path) = &self.admin_token_file {
            config.http.admin_token = Some(read_token_file(path)?);
        }
        if self.admin_token.is_some() {
            config.http.admin_token = self.admin_token;
        }
        set(&mut config.http.allowed_origins, self.allowed_origin);
        set(&mut config.http.server_names, self.server_name);
        if let Some(proxies) = self.trusted_proxy {
            config.http.trusted_proxies = proxies
                .iter()
                .map(|p| parse_proxy(p))
                .collect::<anyhow::Result<_>>()?;
        }
        set(
            &mut config.http.ws_ping_interval,
            self.ws_ping_interval.map(|s| s.0),
        );
        set(
            &mut config.http.ws_pong_timeout,
            self.ws_pong_timeout.map(|s| s.0),
        );
        set(
            &mut config.http.admin_login_attempts,
            self.admin_login_attempts,
        );
        if let Some(url) = self.cluster {
            anyhow::ensure!(
                url.starts_with("redis://") || url.starts_with("rediss://") || url.is_empty(),
                "--cluster {url:?}: expected a Redis URL, redis://HOST:PORT or rediss://HOST:PORT (TLS)"
            );
            config.cluster.url = Some(url).filter(|url| !url.is_empty());
        }
        set(&mut config.cluster.prefix, self.cluster_prefix);
        if let Some(node) = self.node_name {
            crate::cluster::check_node_name(&node)
                .map_err(|why| anyhow::anyhow!("--node-name {node:?}: {why}"))?;
            config.cluster.node_name = Some(node);
        }
        if let Some(Seconds(lease)) = self.cluster_lease {
            anyhow::ensure!(
                lease >= Duration::from_millis(300),
                "--cluster-lease must be at least 300ms: it is renewed every third of it"
            );
            config.cluster.lease = lease;
        }
        set(&mut config.cluster.max_pending, self.cluster_max_pending);
        if self.cluster_ca.is_some() {
            config.cluster.ca = self.cluster_ca;
        }
        set(&mut config.playground.enabled, self.playground);
        set(&mut config.playground.ports, self.playground_ports);
        set(&mut config.playground.ttl, self.playground_ttl.map(|s| s.0));
        set(
            &mut config.playground.max_ports_per_ip,
            self.playground_max_ports_per_ip,
        );
        set(
            &mut config.playground.max_clients,
            self.playground_max_clients,
        );
        if let Some(Size(rate)) = self.playground_bytes_per_second {
            let rate = u32::try_from(rate).map_err(|_| {
                anyhow::anyhow!(
                    "playground-bytes-per-second {rate} is more than 4 GiB a second; use 0 for no limit of its own"
                )
            })?;
            config.playground.bytes_per_second = Rate::per_second(rate);
        }
        set(&mut config.listeners, self.listen);
        set(&mut config.max_line, self.max_line.map(|s| s.0));
        set(
            &mut config.hub.queue.soft,
            self.queue_soft_limit.map(|s| s.0),
        );
        set(
            &mut config.hub.queue.hard,
            self.queue_hard_limit.map(|s| s.0),
        );
        set(
            &mut config.limits.stall_timeout,
            self.stall_timeout.map(|s| s.0),
        );
        set(&mut config.hub.queue.pause, self.pause_timeout.map(|s| s.0));
        if let Some(idle) = self.idle_timeout {
            config.limits.idle_timeout = Some(idle.0).filter(|d| !d.is_zero());
        }
        set(&mut config.limits.max_connections, self.max_connections);
        if let Some(per_ip) = self.max_connections_per_ip {
            config.limits.max_connections_per_ip = Some(per_ip).filter(|n| *n > 0);
        }
        if let Some(rate) = self.max_connections_per_ip_per_second {
            config.limits.max_connections_per_ip_per_second = Rate::per_second(rate);
        }
        if let Some(rate) = self.max_messages_per_second {
            config.limits.max_messages_per_second = Rate::per_second(rate);
        }
        if let Some(Size(rate)) = self.max_bytes_per_second {
            let rate = u32::try_from(rate).map_err(|_| {
                anyhow::anyhow!(
                    "max-bytes-per-second {rate} is more than 4 GiB a second; use 0 for no limit"
                )
            })?;
            config.limits.max_bytes_per_second = Rate::per_second(rate);
        }
        set(
            &mut config.limits.rate_limit_grace,
            self.rate_limit_grace.map(|s| s.0),
        );
        set(
            &mut config.hub.max_rooms_per_client,
            self.max_rooms_per_client,
        );
        set(
            &mut config.hub.announce_max_members,
            self.announce_max_members,
        );
        if self.welcome.is_some() {
            config.greeting.welcome = self.welcome;
        }
        if self.ack.is_some() {
            config.greeting.ack = self.ack;
        }
        set(
            &mut config.shutdown_timeout,
            self.shutdown_timeout.map(|s| s.0),
        );
        set(&mut config.hub.max_list, self.max_list);
        set(&mut config.hub.max_list_scan, self.max_list_scan);
        set_optional(&mut config.hub.slow_timeout, self.slow_timeout);
        set_optional(&mut config.limits.line_timeout, self.line_timeout);
        set(&mut config.hub.max_memory, self.max_memory.map(|s| s.0));
        set(&mut config.history.keep, self.history);
        set(&mut config.history.age, self.history_age.map(|s| s.0));
        set(&mut config.history.bytes, self.history_bytes.map(|s| s.0));
        set(&mut config.history.rooms, self.history_rooms);
        if self.history_dir.is_some() {
            config.history.dir = self.history_dir;
        }
        set(&mut config.history.sync, self.history_sync.map(|s| s.0));
        set_optional(&mut config.tcp_keepalive.idle, self.tcp_keepalive);
        set(
            &mut config.tcp_keepalive.interval,
            self.tcp_keepalive_interval.map(|s| s.0),
        );
        set(
            &mut config.tcp_keepalive.retries,
            self.tcp_keepalive_retries,
        );
        Ok(())
    }
}

/// Sets a duration that 0 turns off.
fn set_optional(slot: &mut Option<Duration>, value: Option<Seconds>) {
    if let Some(value) = value {
        *slot = Some(value.0).filter(|d| !d.is_zero());
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// `listen = "0.0.0.0:12345"` as well as `listen = ["0.0.0.0:12345"]`.
fn one_or_many_listeners<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<ListenerSpec>>, D::Error> {
    struct Listeners;
    impl<'de> serde::de::Visitor<'de> for Listeners {
        type Value = Vec<ListenerSpec>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a listener (\"0.0.0.0:12345\") or a list of them")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.parse::<ListenerList>()
                .map(|list| list.0)
                .map_err(|e| E::custom(format!("{e:#}")))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut specs = Vec::new();
            while let Some(spec) = seq.next_element()? {
                specs.push(spec);
            }
            Ok(specs)
        }
    }
    d.deserialize_any(Listeners).map(Some)
}

/// serde's "unknown field `lisen`, expected one of `listen`, ..." (fifty
/// keys) becomes "unknown key `lisen`: did you mean `listen`?" when one
/// key is close; the rest of the message (where in the file) is kept.
pub(super) fn suggest_known_key(message: &str) -> String {
    let Some(at) = message.find("unknown field `") else {
        return message.to_owned();
    };
    let rest = &message[at + "unknown field `".len()..];
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let Some(list) = rest.strip_prefix(", expected one of ") else {
        return message.to_owned();
    };
    let line_end = list.find('\n').unwrap_or(list.len());
    let known = list[..line_end].split(", ").map(|k| k.trim_matches('`'));
    let closest = known
        .map(|key| (strsim::damerau_levenshtein(unknown, key), key))
        .min()
        .filter(|(distance, key)| *distance <= 2.max(key.len() / 4));
    let hint = match closest {
        Some((_, key)) => format!("unknown key `{unknown}`: did you mean `{key}`?"),
        None => format!("unknown key `{unknown}`: every key is listed in `switchboard serve --help` and contrib/switchboard.toml"),
    };
    format!("{}{hint}{}", &message[..at], &list[line_end..])
}

#[cfg(all(test, feature = "cli"))]
mod tests {
    use clap::{Args, FromArgMatches};

    use super::*;
    use crate::config::Setting;

    /// `serve`'s flags, as `--help` shows them.
    fn flags() -> clap::Command {
        Overrides::augment_args(clap::Command::new("serve").no_binary_name(true))
    }

    /// The config `serve --FLAG VALUE` runs with.
    fn config_with(flag: &str, value: &str) -> anyhow::Result<Config> {
        let matches = flags().try_get_matches_from([format!("--{flag}"), value.to_owned()])?;
        let mut config = Config::default();
        Overrides::from_arg_matches(&matches)?.apply(&mut config)?;
        Ok(config)
    }

    #[test]
    fn every_default_that_help_shows_is_the_one_the_server_runs_with() {
        let mut checked = 0;
        for arg in flags().get_arguments() {
            let flag = arg.get_long().expect("every setting is a long flag");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some((_, default)) = help.rsplit_once("[default: ") else {
                continue;
            };
            let default = default.trim_end_matches(']');
            // "off" is the value that turns a setting off, where there is
            // one; words ("half the machine's memory") describe a default
            // that is not a value.
            let value = match default {
                "off" if help.contains("0 turns") => "0",
                value
                    if value.starts_with(|c: char| c.is_ascii_digit()) && !value.contains(' ') =>
                {
                    value
                }
                _ => continue,
            };
            let config = config_with(flag, value)
                .unwrap_or_else(|e| panic!("--{flag}'s default {default:?} is not a value: {e:#}"));
            let changed = Config::default().differences(&config);
            assert!(
                changed.is_empty(),
                "--help says --{flag} defaults to {default}, but the server's default differs ({changed:?})"
            );
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} defaults were checked");
    }

    #[test]
    fn every_setting_a_reload_compares_is_a_flag_of_serve() {
        let command = flags();
        let longs: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        for setting in Setting::ALL {
            // Listeners are positional arguments and `--listen`, of `serve` itself.
            if *setting == Setting::Listen {
                continue;
            }
            assert!(
                longs.contains(&setting.key()),
                "the reload names {} a setting, but serve has no --{}",
                setting.key(),
                setting.key()
            );
        }
    }
}
