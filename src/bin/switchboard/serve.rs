//! `switchboard serve`: flags, config file and environment, merged; and
//! telling a service manager (systemd) when the server is ready and when
//! it stops.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sd_notify::NotifyState;
use switchboard::config::{
    format_duration, HttpSpec, ListenerList, LogFormat, Overrides, Seconds, Size,
};
use switchboard::{Config, Server};

/// Settings come from, in order of precedence: flags, `SWITCHBOARD_*`
/// environment variables, the config file, the defaults.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen on [MODE://]ADDR[?room=ROOM]; MODE is text (default), json or
    /// raw; repeat for several listeners. [default: text://0.0.0.0:12345]
    #[arg(
        short,
        long = "listen",
        value_name = "SPEC",
        env = "SWITCHBOARD_LISTEN"
    )]
    listen: Vec<ListenerList>,

    /// TOML file with the same settings as these flags (flags win).
    #[arg(short, long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,

    /// Check the settings (flags, environment, config file) as serving
    /// would, print what would be served, and exit: 0 if they are good. Binds
    /// no socket, so it runs beside the live server.
    #[arg(long)]
    check_config: bool,

    /// Longest line or JSON object a client may send; longer ones are refused and discarded. [default: 64KiB]
    #[arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_LINE")]
    max_line: Option<Size>,

    /// Bytes queued for one client above which its senders pause. [default: 256KiB]
    #[arg(long, value_name = "SIZE", env = "SWITCHBOARD_QUEUE_SOFT_LIMIT")]
    queue_soft_limit: Option<Size>,

    /// Bytes queued for one client above which it is disconnected as a slow consumer. [default: 4MiB]
    #[arg(long, value_name = "SIZE", env = "SWITCHBOARD_QUEUE_HARD_LIMIT")]
    queue_hard_limit: Option<Size>,

    /// Disconnect a client that accepts no data for this long while data waits for it. [default: 5s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_STALL_TIMEOUT")]
    stall_timeout: Option<Seconds>,

    /// How long senders pause for a receiver over the soft limit that accepts no bytes at all; then they go on. [default: 250ms]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_PAUSE_TIMEOUT")]
    pause_timeout: Option<Seconds>,

    /// Disconnect a client that sends nothing for this long; 0 turns it off. [default: off]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_IDLE_TIMEOUT")]
    idle_timeout: Option<Seconds>,

    /// Connections served at once; more are refused. [default: 10000]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,

    /// Connections served at once from one IP address; 0 means no limit. [default: 0]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,

    /// New connections one IP address (an IPv6 /64) may open a second, burst of a second's worth; more are refused, saying when to retry. Loopback is not limited; behind a load balancer, see ?proxy=v2. 0 means no limit. [default: 20]
    #[arg(
        long,
        value_name = "N",
        env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP_PER_SECOND"
    )]
    max_connections_per_ip_per_second: Option<u32>,

    /// Messages (requests, lines, frames, raw reads) one client may send a second, burst of a second's worth; over it, the server reads from it more slowly. 0 means no limit. [default: 10000]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_MESSAGES_PER_SECOND")]
    max_messages_per_second: Option<u32>,

    /// Bytes one client may send a second, burst of a second's worth; over it, the server reads from it more slowly. 0 means no limit. [default: 16MiB]
    #[arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_BYTES_PER_SECOND")]
    max_bytes_per_second: Option<Size>,

    /// How long a client may keep sending over its rate limits, however much it is slowed down, before it is disconnected; 0 never disconnects it, it is only read at the limit's pace. [default: 0]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_RATE_LIMIT_GRACE")]
    rate_limit_grace: Option<Seconds>,

    /// Rooms one client may be in at once. [default: 32]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_ROOMS_PER_CLIENT")]
    max_rooms_per_client: Option<usize>,

    /// Send join/leave/rename notices only in rooms of at most N members; 0 never. [default: 100]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_ANNOUNCE_MAX_MEMBERS")]
    announce_max_members: Option<usize>,

    /// First line for every text client, verbatim; '' sends none. [default: a short welcome naming the client and /help]
    #[arg(long, value_name = "TEXT", env = "SWITCHBOARD_WELCOME")]
    welcome: Option<String>,

    /// Answer every message line of a text client with TEXT, verbatim. [default: off]
    #[arg(long, value_name = "TEXT", env = "SWITCHBOARD_ACK")]
    ack: Option<String>,

    /// On Ctrl-C or SIGTERM, how long queued data may take to reach clients. [default: 5s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_SHUTDOWN_TIMEOUT")]
    shutdown_timeout: Option<Seconds>,

    /// Most rooms one /rooms, or names one /who, lists (a pattern narrows the rest). [default: 100]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_LIST")]
    max_list: Option<usize>,

    /// Most rooms or members one /rooms or /who looks at; past it, a listing is cut short and says so. [default: 10000]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_MAX_LIST_SCAN")]
    max_list_scan: Option<usize>,

    /// Disconnect a client whose queue stays over the soft limit (holding its senders back) this long; 0 turns it off. [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_SLOW_TIMEOUT")]
    slow_timeout: Option<Seconds>,

    /// Disconnect a client that does not finish a line it started within this long; 0 turns it off. [default: 30s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_LINE_TIMEOUT")]
    line_timeout: Option<Seconds>,

    /// Memory all clients together may hold in queues and unfinished input; near it new clients are refused, past it the largest holders are cut off. [default: half the machine's memory]
    #[arg(long, value_name = "SIZE", env = "SWITCHBOARD_MAX_MEMORY")]
    max_memory: Option<Size>,

    /// Idle time before TCP keepalive probes a quiet connection; 0 turns keepalive off. [default: 60s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_TCP_KEEPALIVE")]
    tcp_keepalive: Option<Seconds>,

    /// Time between unanswered TCP keepalive probes. [default: 10s]
    #[arg(
        long,
        value_name = "DURATION",
        env = "SWITCHBOARD_TCP_KEEPALIVE_INTERVAL"
    )]
    tcp_keepalive_interval: Option<Seconds>,

    /// Unanswered TCP keepalive probes after which a connection is dropped. [default: 6]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_TCP_KEEPALIVE_RETRIES")]
    tcp_keepalive_retries: Option<u32>,

    /// Serve the web console, the admin API, /metrics and WebSocket clients (/ws) on [http://|https://]ADDR, e.g. 127.0.0.1:8080; https:// uses the TLS certificate. [default: off]
    #[arg(long, value_name = "ADDR", env = "SWITCHBOARD_HTTP")]
    http: Option<HttpSpec>,

    /// Certificate chain (PEM, leaf first) for tls://, json+tls://, raw+tls:// listeners and --http https://; re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert; re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// Require TLS clients to present a certificate signed by a CA in FILE (PEM); its subject's common name becomes the client's name. [default: no client certificates]
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,

    /// Make a self-signed certificate for localhost at start, to try TLS without one (clients must trust it or use --insecure).
    #[arg(long, env = "SWITCHBOARD_TLS_SELF_SIGNED")]
    tls_self_signed: bool,

    /// Users who may log in (/login USER PASSWORD): a TOML file of entries made by `switchboard passwd USER`; their names are kept from everyone else. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_USERS")]
    users: Option<PathBuf>,

    /// A token that lets a client in (/auth TOKEN) on ?auth=required listeners; at least 16 characters; repeatable.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    token: Vec<String>,

    /// Tokens, one a line (# comments); re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// Accept JWTs (/auth JWT) signed with HS256 with this secret (at least 32 bytes); `sub` names the client, `rooms` says where it may go.
    #[arg(
        long,
        value_name = "SECRET",
        env = "SWITCHBOARD_JWT_SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,

    /// The HS256 JWT secret, from the first line of FILE (keeps it out of `ps`).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_JWT_SECRET_FILE")]
    jwt_secret_file: Option<PathBuf>,

    /// Accept JWTs signed with RS256 by the key whose public half (PEM) is in FILE.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,

    /// Devices that may register on device listeners with ?auth=required: one a line, `IDENTITY [key=KEY] [LABEL]`, # comments. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_DEVICES")]
    devices: Option<PathBuf>,

    /// JWTs must carry this audience (`aud`). [default: JWTs with an aud are refused]
    #[arg(long, value_name = "AUD", env = "SWITCHBOARD_JWT_AUDIENCE")]
    jwt_audience: Option<String>,

    /// Close a client of an ?auth=required listener that has not authenticated in this long. [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_AUTH_TIMEOUT")]
    auth_timeout: Option<Seconds>,

    /// Close a TLS client that has not finished its handshake in this long (e.g. plaintext sent to a TLS port). [default: 10s]
    #[arg(
        long,
        value_name = "DURATION",
        env = "SWITCHBOARD_TLS_HANDSHAKE_TIMEOUT"
    )]
    tls_handshake_timeout: Option<Seconds>,

    /// Close an --http connection that takes longer than this to send a request's headers, or sits idle this long between requests (nginx's client_header_timeout); WebSocket connections, once open, have their pings instead. [default: 60s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_HTTP_HEADER_TIMEOUT")]
    http_header_timeout: Option<Seconds>,

    /// Token that opens the console, the API and /metrics to anyone who has it, on any address; without one they answer only on loopback. At least 16 characters.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Read the admin token from the first line of FILE (keeps it out of `ps`).
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,

    /// A browser origin (e.g. https://app.example.com) allowed to open /ws, besides the HTTP listener's own; repeatable. [default: same origin only]
    #[arg(
        long,
        value_name = "ORIGIN",
        env = "SWITCHBOARD_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    allowed_origin: Vec<String>,

    /// A DNS name browsers open the --http listener by directly (not through a proxy), e.g. relay.example.com; repeatable. A browser on a name not listed (nor localhost, an IP address or an --allowed-origin's host) is refused /ws: it is a page that DNS rebinding pointed here. [default: none]
    #[arg(
        long,
        value_name = "NAME",
        env = "SWITCHBOARD_SERVER_NAME",
        value_delimiter = ','
    )]
    server_name: Vec<String>,

    /// A proxy in front of --http (an address or a CIDR block: 127.0.0.1 for nginx on this machine); repeatable. From it, X-Forwarded-For or Forwarded name the client, for bans, per-address limits, logs and the console; from anyone else, those headers are ignored. [default: none]
    #[arg(
        long,
        value_name = "CIDR",
        env = "SWITCHBOARD_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<String>,

    /// How often WebSocket clients are pinged. [default: 25s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_WS_PING_INTERVAL")]
    ws_ping_interval: Option<Seconds>,

    /// Drop a WebSocket client that sends nothing (not even a pong) this long after a ping. [default: 20s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_WS_PONG_TIMEOUT")]
    ws_pong_timeout: Option<Seconds>,

    /// Failed admin logins allowed per IP address per minute; more are refused until the minute is over. [default: 5]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_ADMIN_LOGIN_ATTEMPTS")]
    admin_login_attempts: Option<u32>,

    /// Join a cluster of servers that meet in this Redis: redis://[:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS. Rooms, names and direct messages then span every server. [default: off, no Redis needed]
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_CLUSTER")]
    cluster: Option<String>,

    /// What the cluster's keys and channels in Redis start with, so several clusters can share one Redis. [default: sb:]
    #[arg(long, value_name = "PREFIX", env = "SWITCHBOARD_CLUSTER_PREFIX")]
    cluster_prefix: Option<String>,

    /// This server's name in its cluster (1-12 letters, digits, '-'), unique among live nodes; part of its guests' names. [default: 6 random characters]
    #[arg(long, value_name = "NAME", env = "SWITCHBOARD_NODE_NAME")]
    node_name: Option<String>,

    /// How long a node that stops renewing its lease (crashed, cut off) keeps its names before the others free them and announce its clients gone; renewed every third of it. [default: 3s]
    #[arg(long, value_name = "DURATION", env = "SWITCHBOARD_CLUSTER_LEASE")]
    cluster_lease: Option<Seconds>,

    /// Most cross-node sends waiting for Redis at once; past it they are dropped and counted, so a slow Redis never holds a client back. [default: 65536]
    #[arg(long, value_name = "N", env = "SWITCHBOARD_CLUSTER_MAX_PENDING")]
    cluster_max_pending: Option<usize>,

    /// The CA certificate (PEM) that signed a rediss:// Redis's certificate, when it is not one of the system's roots. [default: the system's roots]
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CLUSTER_CA")]
    cluster_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// The config file's `log-format`, if there is a file and it says one.
    /// The logger starts before the config is built, so this reads the file
    /// early; a file that cannot be read is reported by [`Self::config`],
    /// through the logger this chose.
    pub fn log_format_in_file(&self) -> Option<LogFormat> {
        Overrides::load(self.config.as_deref()?).ok()?.log_format
    }

    /// The config these arguments describe, on top of the file and defaults.
    fn config(&self) -> anyhow::Result<Config> {
        let args = self.clone();
        let mut config = Config::default();
        if let Some(path) = &args.config {
            Overrides::load(path)?.apply(&mut config)?;
        }
        Overrides {
            listen: Some(
                args.listen
                    .into_iter()
                    .flat_map(|list| list.0)
                    .collect::<Vec<_>>(),
            )
            .filter(|listen| !listen.is_empty()),
            max_line: args.max_line,
            queue_soft_limit: args.queue_soft_limit,
            queue_hard_limit: args.queue_hard_limit,
            stall_timeout: args.stall_timeout,
            pause_timeout: args.pause_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_connections_per_ip_per_second: args.max_connections_per_ip_per_second,
            max_messages_per_second: args.max_messages_per_second,
            max_bytes_per_second: args.max_bytes_per_second,
            rate_limit_grace: args.rate_limit_grace,
            max_rooms_per_client: args.max_rooms_per_client,
            announce_max_members: args.announce_max_members,
            welcome: args.welcome,
            ack: args.ack,
            shutdown_timeout: args.shutdown_timeout,
            max_list: args.max_list,
            max_list_scan: args.max_list_scan,
            slow_timeout: args.slow_timeout,
            line_timeout: args.line_timeout,
            max_memory: args.max_memory,
            tcp_keepalive: args.tcp_keepalive,
            tcp_keepalive_interval: args.tcp_keepalive_interval,
            tcp_keepalive_retries: args.tcp_keepalive_retries,
            http: args.http,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_client_ca: args.tls_client_ca,
            tls_self_signed: Some(args.tls_self_signed).filter(|on| *on),
            tls_handshake_timeout: args.tls_handshake_timeout,
            http_header_timeout: args.http_header_timeout,
            users: args.users,
            token: Some(args.token).filter(|tokens| !tokens.is_empty()),
            token_file: args.token_file,
            jwt_secret: args.jwt_secret,
            jwt_secret_file: args.jwt_secret_file,
            jwt_public_key: args.jwt_public_key,
            jwt_audience: args.jwt_audience,
            devices: args.devices,
            auth_timeout: args.auth_timeout,
            admin_token: args.admin_token,
            admin_token_file: args.admin_token_file,
            allowed_origin: Some(args.allowed_origin).filter(|origins| !origins.is_empty()),
            server_name: Some(args.server_name).filter(|names| !names.is_empty()),
            trusted_proxy: Some(args.trusted_proxy).filter(|proxies| !proxies.is_empty()),
            ws_ping_interval: args.ws_ping_interval,
            ws_pong_timeout: args.ws_pong_timeout,
            admin_login_attempts: args.admin_login_attempts,
            cluster: args.cluster,
            cluster_prefix: args.cluster_prefix,
            node_name: args.node_name,
            cluster_lease: args.cluster_lease,
            cluster_max_pending: args.cluster_max_pending,
            cluster_ca: args.cluster_ca,
            // The global --log-format flag, read in main before the logger starts.
            log_format: None,
        }
        .apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let check_only = args.check_config;
    let file = args.config.clone();
    let config = args.config()?;
    if check_only {
        // The credentials' files too: a broken users or devices file is
        // what a reload would refuse.
        if config.auth.has_credentials() || config.auth.devices_file.is_some() {
            switchboard::auth::Authenticator::load(config.auth.clone())
                .context("cannot load the credentials")?;
        }
        print!("{}", summary(&config, file.as_deref()));
        return Ok(ExitCode::SUCCESS);
    }
    // Handlers first: once the server says it is listening, a supervisor's
    // SIGTERM must already mean a graceful shutdown, and its SIGHUP
    // (`systemctl reload`) must not end the server.
    let shutdown = shutdown_signal()?;
    let hangups = Hangups::watch()?;
    let server = Server::bind(config).await?;
    let reloads = hangups.reload_into(args, server.reloader());
    // Bound means listening: a client connecting from now on is queued.
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&format!("listening on {}", addresses(&server))),
    ]);
    server
        .run(async {
            shutdown.await;
            notify(&[
                NotifyState::Stopping,
                NotifyState::Status("shutting down: telling clients, sending what is queued"),
            ]);
        })
        .await?;
    reloads.abort();
    Ok(ExitCode::SUCCESS)
}

/// Tells the service manager about a change of state, when one started us
/// with `Type=notify` (it sets `NOTIFY_SOCKET`; without it, this does
/// nothing). A message that cannot be sent is logged, not fatal: systemd
/// would then time the start out and say so itself.
fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {error}");
    }
}

/// Every address the server listens on, as its "listening on" log line
/// gives them: `text://0.0.0.0:12345, http://127.0.0.1:8080`.
fn addresses(server: &Server) -> String {
    server.endpoints().join(", ")
}

/// What `serve --check-config` prints: where the server would listen and
/// its main limits, enough to see that the file said what was meant.
fn summary(config: &Config, file: Option<&std::path::Path>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let source = file.map_or("flags, environment and defaults".to_owned(), |file| {
        format!("{} (with flags and environment)", file.display())
    });
    let _ = writeln!(out, "config ok: {source}");
    for listener in &config.listeners {
        let _ = writeln!(out, "listen           {listener}");
    }
    let http = match config.http {
        Some(http) if config.admin_token.is_some() => format!("{http} (admin token set)"),
        Some(http) => format!("{http} (no admin token: console and API on loopback only)"),
        None => "off".to_owned(),
    };
    let _ = writeln!(out, "http             {http}");
    let per_ip = config
        .max_connections_per_ip
        .map_or("no limit".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "max-connections  {} ({per_ip} per IP)",
        config.max_connections
    );
    let messages = config
        .max_messages_per_second
        .map_or("any number of messages".to_owned(), |rate| {
            format!("{} messages", rate.get())
        });
    let volume = config
        .max_bytes_per_second
        .map_or("any number of bytes".to_owned(), |rate| {
            bytes(rate.get() as usize)
        });
    let per_ip = config
        .max_connections_per_ip_per_second
        .map_or("any number of".to_owned(), |rate| rate.get().to_string());
    let grace = match config.rate_limit_grace {
        grace if grace.is_zero() => "paced, never cut off".to_owned(),
        grace => format!("cut off after {}", format_duration(grace)),
    };
    let _ = writeln!(
        out,
        "rate limits      per client {messages} and {volume} a second ({grace}); per IP {per_ip} new connections a second",
    );
    let _ = writeln!(out, "max-line         {}", bytes(config.max_line));
    let _ = writeln!(
        out,
        "queue limits     {} soft, {} hard",
        bytes(config.queue_soft_limit),
        bytes(config.queue_hard_limit)
    );
    let _ = writeln!(out, "max-memory       {}", bytes(config.max_memory));
    let off = |timeout: Option<std::time::Duration>| timeout.map_or("off".into(), format_duration);
    let _ = writeln!(
        out,
        "timeouts         stall {}, slow {}, idle {}, line {}",
        format_duration(config.stall_timeout),
        off(config.slow_timeout),
        off(config.idle_timeout),
        off(config.line_timeout)
    );
    let shown = |text: &Option<String>, default: &str| match text.as_deref() {
        None => default.to_owned(),
        Some("") => "none".to_owned(),
        Some(text) => format!("{text:?}"),
    };
    let _ = writeln!(
        out,
        "welcome          {}",
        shown(&config.welcome, "the default, naming the client and /help")
    );
    let _ = writeln!(out, "ack              {}", shown(&config.ack, "none"));
    let _ = writeln!(
        out,
        "http timeouts    headers {}, WebSocket ping every {}, pong within {}",
        format_duration(config.http_header_timeout),
        format_duration(config.ws_ping_interval),
        format_duration(config.ws_pong_timeout)
    );
    if !config.trusted_proxies.is_empty() {
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|p| p.to_string())
            .collect();
        let _ = writeln!(out, "trusted proxies  {}", proxies.join(", "));
    }
    out
}

/// A byte count the way sizes are written in flags (`64KiB`, `4MiB`,
/// `1536`), or rounded to a tenth of its unit when not a whole number of
/// it (`11.8GiB`, as half a machine's memory usually is).
fn bytes(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(unit, _)| n >= *unit) {
        Some((unit, name)) if n % unit == 0 => format!("{}{name}", n / unit),
        Some((unit, name)) => format!("{:.1}{name}", n as f64 / *unit as f64),
        None => n.to_string(),
    }
}

/// SIGHUP, watched from before the server binds, so that `systemctl
/// reload` (the unit's `ExecReload`) can never end the server: without a
/// handler, SIGHUP kills the process.
struct Hangups {
    #[cfg(unix)]
    signals: tokio::signal::unix::Signal,
}

impl Hangups {
    #[cfg(unix)]
    fn watch() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let signals = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
        Ok(Hangups { signals })
    }

    #[cfg(not(unix))]
    fn watch() -> anyhow::Result<Self> {
        Ok(Hangups {})
    }

    /// On every SIGHUP, reads the config again (file, environment, flags)
    /// and hands it to the server; a config that does not load is logged,
    /// and the running one stays.
    fn reload_into(
        self,
        args: ServeArgs,
        reloader: switchboard::Reloader,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            #[cfg(unix)]
            {
                let mut signals = self.signals;
                while signals.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the config");
                    match args.config() {
                        Ok(config) => reloader.reload(config),
                        Err(error) => {
                            tracing::warn!("reload refused, the running config stays: {error:#}")
                        }
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = (self, args, reloader);
        })
    }
}

/// Installs the Ctrl-C and SIGTERM handlers now; the future completes when
/// either signal arrives.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("Ctrl-C received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
