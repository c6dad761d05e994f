//! [`Setting`]: every setting of a [`Config`] by name, and what a reload
//! (SIGHUP) does when it changes. The table below is the one place that
//! says so: a new setting gets a row (the compiler insists, see
//! [`Config::differences`]).

use super::Config;

/// What a reload does with a setting that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The config's listeners: new ones start, removed ones stop
    /// accepting (their clients stay).
    Listeners,
    /// The greeting of text clients, for the connections after it.
    Greeting,
    /// A limit each connection takes as it comes, for the connections
    /// after it.
    Limits,
    /// Credentials (users, tokens, JWT keys, devices): re-read, when the
    /// server started with some.
    Credentials,
    /// The TLS certificate: re-read, when the server speaks TLS.
    Certificates,
    /// What rooms keep: at once, for every room (a room no longer kept
    /// loses its history; a smaller bound trims it).
    History,
    /// Takes effect only at the next start.
    Restart,
}

/// The table's formatting of values, one function per kind of value.
mod show {
    use std::fmt::Display;
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::ListenerSpec;
    use crate::throttle::Rate;
    use crate::units::{format_duration, format_size};

    pub(super) fn listeners(listeners: &[ListenerSpec]) -> String {
        list(listeners)
    }
    pub(super) fn size(n: &usize) -> String {
        format_size(*n)
    }
    pub(super) fn number(n: &impl Display) -> String {
        n.to_string()
    }
    pub(super) fn number_or_no_limit(n: &Option<usize>) -> String {
        n.map_or("no limit".into(), |n| n.to_string())
    }
    pub(super) fn duration(d: &Duration) -> String {
        format_duration(*d)
    }
    pub(super) fn duration_or_off(d: &Option<Duration>) -> String {
        d.map_or("off".into(), format_duration)
    }
    pub(super) fn grace(d: &Duration) -> String {
        match d.is_zero() {
            true => "0 (paced, never cut off)".into(),
            false => format_duration(*d),
        }
    }
    pub(super) fn rate(rate: &Option<Rate>) -> String {
        rate.map_or("no limit".into(), |rate| rate.get().to_string())
    }
    pub(super) fn byte_rate(rate: &Option<Rate>) -> String {
        rate.map_or("no limit".into(), |rate| format_size(rate.get() as usize))
    }
    pub(super) fn welcome(text: &Option<String>) -> String {
        match text.as_deref() {
            None => "the default, naming the client and /help".into(),
            Some("") => "none".into(),
            Some(text) => format!("{text:?}"),
        }
    }
    pub(super) fn text_or_none(text: &Option<String>) -> String {
        text.as_ref()
            .map_or("none".into(), |text| format!("{text:?}"))
    }
    pub(super) fn text(text: &String) -> String {
        format!("{text:?}")
    }
    pub(super) fn number_or_off(n: &usize) -> String {
        match n {
            0 => "0 (off)".into(),
            n => n.to_string(),
        }
    }
    pub(super) fn every_room_or(patterns: &[String]) -> String {
        match patterns.is_empty() {
            true => "every room".into(),
            false => patterns.join(", "),
        }
    }
    pub(super) fn or_off(value: &Option<impl Display>) -> String {
        value
            .as_ref()
            .map_or("off".into(), |value| value.to_string())
    }
    pub(super) fn path_or_none(path: &Option<PathBuf>) -> String {
        path.as_ref()
            .map_or("none".into(), |path| path.display().to_string())
    }
    pub(super) fn yes_no(yes: &bool) -> String {
        if *yes { "yes" } else { "no" }.into()
    }
    pub(super) fn secret(secret: &Option<String>) -> String {
        secret
            .as_ref()
            .map_or("none".into(), |_| "set (not shown)".into())
    }
    pub(super) fn secrets(secrets: &[String]) -> String {
        match secrets.len() {
            0 => "none".into(),
            n => format!("{n} set (not shown)"),
        }
    }
    pub(super) fn list(items: &[impl Display]) -> String {
        match items.is_empty() {
            true => "none".into(),
            false => items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
    /// A Redis URL without its password.
    pub(super) fn redis_url(url: &Option<String>) -> String {
        let Some(url) = url else {
            return "off".into();
        };
        match url.split_once("://").and_then(|(scheme, rest)| {
            let (credentials, host) = rest.rsplit_once('@')?;
            let user = credentials.split(':').next().unwrap_or_default();
            Some(format!("{scheme}://{user}:(not shown)@{host}"))
        }) {
            Some(hidden) => hidden,
            None => url.clone(),
        }
    }
    pub(super) fn node_name(name: &Option<String>) -> String {
        name.clone()
            .unwrap_or_else(|| "random (6 characters, new at each start)".into())
    }
}

macro_rules! settings {
    ($($($field:ident).+ => $variant:ident, $key:literal, $reload:ident, $show:ident;)*) => {
        /// A setting of the config, by the name it has as a config-file key
        /// and a flag of `switchboard serve`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)] // Each is its config-file key: see `key`.
        pub enum Setting {
            $($variant,)*
        }

        impl Setting {
            /// Every setting, in the order of `--help`.
            pub const ALL: &[Setting] = &[$(Setting::$variant,)*];

            /// Its config-file key (its flag without the `--`).
            pub fn key(self) -> &'static str {
                match self {
                    $(Setting::$variant => $key,)*
                }
            }

            /// What a reload does when it changes.
            pub fn reload(self) -> Reload {
                match self {
                    $(Setting::$variant => Reload::$reload,)*
                }
            }

            /// Its value in `config`, as it is written in flags (`30m`,
            /// `64KiB`), words where there is none (`off`), and secrets
            /// as whether they are set.
            pub fn value(self, config: &Config) -> String {
                match self {
                    $(Setting::$variant => show::$show(&config.$($field).+),)*
                }
            }
        }

        /// The settings that differ between `a` and `b`.
        fn compare(a: &Config, b: &Config) -> Vec<Setting> {
            let mut changed = Vec::new();
            $(if a.$($field).+ != b.$($field).+ {
                changed.push(Setting::$variant);
            })*
            changed
        }
    };
}

settings! {
    listeners => Listen, "listen", Listeners, listeners;
    max_line => MaxLine, "max-line", Restart, size;
    hub.queue.soft => QueueSoftLimit, "queue-soft-limit", Restart, size;
    hub.queue.hard => QueueHardLimit, "queue-hard-limit", Restart, size;
    limits.stall_timeout => StallTimeout, "stall-timeout", Limits, duration;
    hub.queue.pause => PauseTimeout, "pause-timeout", Restart, duration;
    limits.idle_timeout => IdleTimeout, "idle-timeout", Limits, duration_or_off;
    limits.max_connections => MaxConnections, "max-connections", Limits, number;
    limits.max_connections_per_ip => MaxConnectionsPerIp, "max-connections-per-ip", Limits, number_or_no_limit;
    limits.max_connections_per_ip_per_second => MaxConnectionsPerIpPerSecond, "max-connections-per-ip-per-second", Limits, rate;
    limits.max_messages_per_second => MaxMessagesPerSecond, "max-messages-per-second", Limits, rate;
    limits.max_bytes_per_second => MaxBytesPerSecond, "max-bytes-per-second", Limits, byte_rate;
    limits.rate_limit_grace => RateLimitGrace, "rate-limit-grace", Limits, grace;
    hub.max_rooms_per_client => MaxRoomsPerClient, "max-rooms-per-client", Restart, number;
    hub.announce_max_members => AnnounceMaxMembers, "announce-max-members", Restart, number;
    greeting.welcome => Welcome, "welcome", Greeting, welcome;
    greeting.ack => Ack, "ack", Greeting, text_or_none;
    shutdown_timeout => ShutdownTimeout, "shutdown-timeout", Restart, duration;
    hub.max_list => MaxList, "max-list", Restart, number;
    hub.max_list_scan => MaxListScan, "max-list-scan", Restart, number;
    hub.slow_timeout => SlowTimeout, "slow-timeout", Restart, duration_or_off;
    limits.line_timeout => LineTimeout, "line-timeout", Limits, duration_or_off;
    hub.max_memory => MaxMemory, "max-memory", Restart, size;
    history.keep => History, "history", History, number_or_off;
    history.age => HistoryAge, "history-age", History, duration;
    history.bytes => HistoryBytes, "history-bytes", History, size;
    history.rooms => HistoryRooms, "history-rooms", History, every_room_or;
    history.dir => HistoryDir, "history-dir", Restart, path_or_none;
    history.sync => HistorySync, "history-sync", Restart, duration;
    tcp_keepalive.idle => TcpKeepalive, "tcp-keepalive", Restart, duration_or_off;
    tcp_keepalive.interval => TcpKeepaliveInterval, "tcp-keepalive-interval", Restart, duration;
    tcp_keepalive.retries => TcpKeepaliveRetries, "tcp-keepalive-retries", Restart, number;
    http.listen => Http, "http", Restart, or_off;
    tls.cert => TlsCert, "tls-cert", Certificates, path_or_none;
    tls.key => TlsKey, "tls-key", Certificates, path_or_none;
    tls.client_ca => TlsClientCa, "tls-client-ca", Certificates, path_or_none;
    tls.self_signed => TlsSelfSigned, "tls-self-signed", Restart, yes_no;
    tls_handshake_timeout => TlsHandshakeTimeout, "tls-handshake-timeout", Restart, duration;
    http.header_timeout => HttpHeaderTimeout, "http-header-timeout", Restart, duration;
    auth.users_file => Users, "users", Credentials, path_or_none;
    auth.tokens => Token, "token", Credentials, secrets;
    auth.token_file => TokenFile, "token-file", Credentials, path_or_none;
    auth.jwt_secret => JwtSecret, "jwt-secret", Credentials, secret;
    auth.jwt_secret_file => JwtSecretFile, "jwt-secret-file", Credentials, path_or_none;
    auth.jwt_public_key_file => JwtPublicKey, "jwt-public-key", Credentials, path_or_none;
    auth.jwt_audience => JwtAudience, "jwt-audience", Credentials, text_or_none;
    auth.devices_file => Devices, "devices", Credentials, path_or_none;
    auth_timeout => AuthTimeout, "auth-timeout", Restart, duration;
    http.admin_token => AdminToken, "admin-token", Restart, secret;
    http.allowed_origins => AllowedOrigin, "allowed-origin", Restart, list;
    http.server_names => ServerName, "server-name", Restart, list;
    http.trusted_proxies => TrustedProxy, "trusted-proxy", Restart, list;
    http.ws_ping_interval => WsPingInterval, "ws-ping-interval", Restart, duration;
    http.ws_pong_timeout => WsPongTimeout, "ws-pong-timeout", Restart, duration;
    http.admin_login_attempts => AdminLoginAttempts, "admin-login-attempts", Restart, number;
    cluster.url => Cluster, "cluster", Restart, redis_url;
    cluster.prefix => ClusterPrefix, "cluster-prefix", Restart, text;
    cluster.node_name => NodeName, "node-name", Restart, node_name;
    cluster.lease => ClusterLease, "cluster-lease", Restart, duration;
    cluster.max_pending => ClusterMaxPending, "cluster-max-pending", Restart, number;
    cluster.ca => ClusterCa, "cluster-ca", Restart, path_or_none;
    playground.enabled => Playground, "playground", Restart, yes_no;
    playground.ports => PlaygroundPorts, "playground-ports", Restart, number;
    playground.ttl => PlaygroundTtl, "playground-ttl", Restart, duration;
    playground.max_ports_per_ip => PlaygroundMaxPortsPerIp, "playground-max-ports-per-ip", Restart, number;
    playground.max_clients => PlaygroundMaxClients, "playground-max-clients", Restart, number;
    playground.bytes_per_second => PlaygroundBytesPerSecond, "playground-bytes-per-second", Restart, byte_rate;
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl Config {
    /// The settings that differ in `other`.
    pub fn differences(&self, other: &Config) -> Vec<Setting> {
        // Every field, so that a new one cannot be forgotten in the table.
        let Config {
            listeners: _,
            max_line: _,
            hub: _,
            limits: _,
            greeting: _,
            shutdown_timeout: _,
            history: _,
            tcp_keepalive: _,
            http: _,
            tls: _,
            tls_handshake_timeout: _,
            auth: _,
            auth_timeout: _,
            cluster: _,
            playground: _,
        } = self;
        let crate::hub::HubSettings {
            queue:
                crate::hub::QueueLimits {
                    soft: _,
                    hard: _,
                    pause: _,
                },
            announce_max_members: _,
            max_rooms_per_client: _,
            max_list: _,
            max_list_scan: _,
            slow_timeout: _,
            max_memory: _,
        } = &self.hub;
        let super::ConnectionLimits {
            stall_timeout: _,
            idle_timeout: _,
            line_timeout: _,
            max_connections: _,
            max_connections_per_ip: _,
            max_connections_per_ip_per_second: _,
            max_messages_per_second: _,
            max_bytes_per_second: _,
            rate_limit_grace: _,
        } = &self.limits;
        let super::Greeting { welcome: _, ack: _ } = &self.greeting;
        let super::HistorySettings {
            keep: _,
            age: _,
            bytes: _,
            rooms: _,
            dir: _,
            sync: _,
        } = &self.history;
        let super::KeepaliveSettings {
            idle: _,
            interval: _,
            retries: _,
        } = &self.tcp_keepalive;
        let super::HttpSettings {
            listen: _,
            header_timeout: _,
            admin_token: _,
            allowed_origins: _,
            server_names: _,
            trusted_proxies: _,
            ws_ping_interval: _,
            ws_pong_timeout: _,
            admin_login_attempts: _,
        } = &self.http;
        let super::ClusterSettings {
            url: _,
            prefix: _,
            node_name: _,
            lease: _,
            max_pending: _,
            ca: _,
        } = &self.cluster;
        let super::PlaygroundSettings {
            enabled: _,
            ports: _,
            ttl: _,
            max_ports_per_ip: _,
            max_clients: _,
            bytes_per_second: _,
        } = &self.playground;
        let super::TlsFiles {
            cert: _,
            key: _,
            client_ca: _,
            self_signed: _,
        } = &self.tls;
        let crate::auth::AuthSettings {
            users_file: _,
            tokens: _,
            token_file: _,
            jwt_secret: _,
            jwt_secret_file: _,
            jwt_public_key_file: _,
            jwt_audience: _,
            devices_file: _,
        } = &self.auth;
        compare(self, other)
    }
}
