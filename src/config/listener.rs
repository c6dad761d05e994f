//! Listeners: `[MODE://]ADDR[?OPTIONS]` as flags, variables and the config
//! file write them, and the HTTP listener's `[http://|https://]ADDR`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::DEFAULT_PORT;

/// How long a UDP peer that sends nothing stays a client, unless its
/// listener says (`?idle-timeout=`): about what a NAT keeps a UDP mapping
/// for, after which the peer could not be reached anyway.
pub const DEFAULT_UDP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
use crate::device::DeviceSpec;
use crate::hub::RoomName;
use crate::units::{format_duration, Seconds};

/// The wire protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Newline-delimited lines for people (`nc`, telnet) and simple scripts.
    #[default]
    Text,
    /// One JSON object per line, for programs.
    Json,
    /// Transparent byte relay for devices: no framing, no notices.
    Raw,
}

impl Mode {
    /// The name used in listener specs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Text => "text",
            Mode::Json => "json",
            Mode::Raw => "raw",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "text" => Ok(Mode::Text),
            "json" => Ok(Mode::Json),
            "raw" => Ok(Mode::Raw),
            _ => anyhow::bail!("unknown mode {s:?}: expected text, json or raw"),
        }
    }
}

/// One listening socket: `[SCHEME://]ADDR[?room=ROOM]`, e.g. `0.0.0.0:12345`,
/// `json://[::1]:12346`, `raw://0.0.0.0:9000?room=devices`,
/// `tls://0.0.0.0:12443`. `SCHEME` is a mode (`text`, `json`, `raw`),
/// optionally over TLS (`tls` for text, `json+tls`, `raw+tls`). `ADDR` may
/// be a bare port, meaning all IPv4 interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The protocol spoken.
    pub mode: Mode,
    /// Whether clients speak TLS first (with `--tls-cert` and `--tls-key`).
    pub tls: bool,
    /// Whether it listens for UDP datagrams (`udp://`): each source
    /// address is a client of the raw mode, a datagram a message.
    pub udp: bool,
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The room its clients start in.
    pub room: RoomName,
    /// Whether clients must authenticate before anything else
    /// (`?auth=required`).
    pub auth: bool,
    /// The PROXY protocol header its connections start with (`?proxy=v1`
    /// or `?proxy=v2`), from a load balancer in front of it: the address
    /// it names is the client's.
    pub proxy: Option<ProxyVersion>,
    /// Drop a client that sends nothing for this long (`?idle-timeout=`),
    /// in place of the server's `--idle-timeout`: a device that stops
    /// sending heartbeats is gone, not "online".
    pub idle_timeout: Option<Duration>,
    /// How many of a room's last messages its text clients are shown as
    /// they join it (`?history=N`; 0: none), where the room keeps them.
    pub history: usize,
    /// What a raw listener knows of its devices: registration, heartbeats,
    /// framing (`?register=imei&heartbeat=hex:FE&frame=gap:20`).
    pub device: DeviceSpec,
    /// How many peers of a UDP listener may be served before their
    /// address is proven (`?max-unproven=N`; by default half of
    /// `--max-connections`): a flood of datagrams with forged source
    /// addresses takes no more of the server's connections than this.
    pub max_unproven: Option<usize>,
    /// How many clients it takes at once (`?max-clients=N`; by default
    /// only the server's `--max-connections` bounds them).
    pub max_clients: Option<usize>,
}

impl ListenerSpec {
    /// A plaintext listener of `mode` on `addr`, starting clients in the lobby.
    pub fn new(mode: Mode, addr: SocketAddr) -> Self {
        ListenerSpec {
            mode,
            tls: false,
            udp: false,
            addr,
            room: RoomName::lobby(),
            auth: false,
            proxy: None,
            idle_timeout: None,
            history: 0,
            device: DeviceSpec::default(),
            max_unproven: None,
            max_clients: None,
        }
    }

    /// The scheme naming its mode and transport: `text`, `json`, `raw`,
    /// `tls`, `json+tls`, `raw+tls` or `udp`.
    pub fn scheme(&self) -> &'static str {
        if self.udp {
            return "udp";
        }
        match (self.mode, self.tls) {
            (mode, false) => mode.as_str(),
            (Mode::Text, true) => "tls",
            (Mode::Json, true) => "json+tls",
            (Mode::Raw, true) => "raw+tls",
        }
    }
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec::new(
            Mode::Text,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
        )
    }
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.addr)?;
        let mut options = Vec::new();
        if self.room != RoomName::lobby() {
            options.push(format!("room={}", self.room));
        }
        if self.auth {
            options.push("auth=required".to_owned());
        }
        if let Some(proxy) = self.proxy {
            options.push(format!("proxy={proxy}"));
        }
        if let Some(idle) = self.idle_timeout {
            options.push(format!("idle-timeout={}", format_duration(idle)));
        }
        if self.history > 0 {
            options.push(format!("history={}", self.history));
        }
        if let Some(max) = self.max_unproven {
            options.push(format!("max-unproven={max}"));
        }
        if let Some(max) = self.max_clients {
            options.push(format!("max-clients={max}"));
        }
        options.extend(self.device.options());
        if !options.is_empty() {
            write!(f, "?{}", options.join("&"))?;
        }
        Ok(())
    }
}

impl FromStr for ListenerSpec {
    type Err = anyhow::Error;
    /// One message says all that is wrong, whoever shows it (clap shows
    /// only an error's outermost line).
    fn from_str(spec: &str) -> anyhow::Result<Self> {
        parse_listener(spec).map_err(|e| match format!("{e:#}") {
            why if why.contains("in listener") => anyhow::anyhow!(why),
            why => anyhow::anyhow!("in listener {spec:?}: {why}"),
        })
    }
}

/// `[MODE://]ADDR[?OPTIONS]`.
fn parse_listener(spec: &str) -> anyhow::Result<ListenerSpec> {
    {
        let ((mode, tls), rest) = match spec.split_once("://") {
            Some(("udp", rest)) => ((Mode::Raw, false), rest),
            Some((scheme, rest)) => (parse_scheme(scheme)?, rest),
            None => ((Mode::Text, false), spec),
        };
        let udp = spec.starts_with("udp://");
        let (addr, query) = match rest.split_once('?') {
            Some((addr, query)) => (addr, Some(query)),
            None => (rest, None),
        };
        let addr = parse_addr(addr)?;
        let mut listener = ListenerSpec {
            tls,
            udp,
            ..ListenerSpec::new(mode, addr)
        };
        for (pair, key, value) in query.into_iter().flat_map(options) {
            match (key, value) {
                ("room", Some(room)) if room.contains("{id}") => {
                    listener.device.room = Some(
                        crate::device::Template::parse(room)
                            .map_err(|e| anyhow::anyhow!("bad room in listener {spec:?}: {e}"))?,
                    )
                }
                ("room", Some(room)) => {
                    listener.room = RoomName::parse_user(room.as_bytes())
                        .with_context(|| format!("bad room in listener {spec:?}"))?
                }
                ("auth", Some(auth)) => {
                    listener.auth =
                        parse_auth(auth).with_context(|| format!("in listener {spec:?}"))?
                }
                ("proxy", Some(_)) if udp => anyhow::bail!(
                    "proxy= is for TCP listeners: a UDP datagram carries its sender's address, in listener {spec:?}"
                ),
                ("proxy", Some(proxy)) => {
                    listener.proxy = Some(
                        proxy
                            .parse()
                            .with_context(|| format!("in listener {spec:?}"))?,
                    )
                }
                ("idle-timeout", Some(idle)) => {
                    let idle: Seconds = idle
                        .parse()
                        .with_context(|| format!("in listener {spec:?}"))?;
                    listener.idle_timeout = Some(idle.0).filter(|d| !d.is_zero());
                }
                ("max-unproven", Some(_)) if !udp => anyhow::bail!(
                    "max-unproven= is for UDP listeners (udp://ADDR?max-unproven=N): a TCP client's address is proven by its handshake, in listener {spec:?}"
                ),
                ("max-unproven", Some(count)) => {
                    listener.max_unproven = Some(
                        count.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            anyhow::anyhow!(
                                "bad max-unproven={count:?} in listener {spec:?}: how many peers may be served before their address is proven, at least 1"
                            )
                        })?,
                    )
                }
                ("max-clients", Some(count)) => {
                    listener.max_clients = Some(
                        count.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                            anyhow::anyhow!(
                                "bad max-clients={count:?} in listener {spec:?}: how many clients it takes at once, at least 1"
                            )
                        })?,
                    )
                }
                ("history", Some(count)) => {
                    anyhow::ensure!(
                        mode == Mode::Text,
                        "history= is for text listeners (text://ADDR?history=20): JSON and /ws clients ask with {{\"type\":\"history\"}} or a join with \"since\", in listener {spec:?}"
                    );
                    listener.history = count
                        .parse::<u16>()
                        .ok()
                        .filter(|n| *n > 0)
                        .map(usize::from)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "bad history={count:?} in listener {spec:?}: how many messages to show, from 1 to 65535"
                            )
                        })?;
                }
                _ => {
                    let known = listener
                        .device
                        .set(key, value)
                        .map_err(|e| anyhow::anyhow!("{e}, in listener {spec:?}"))?;
                    if !known {
                        anyhow::bail!(
                            "unknown option {pair:?} in listener {spec:?}: expected room=NAME, auth=required, proxy=v1|v2, idle-timeout=DURATION, max-clients=N, history=N (text), max-unproven=N (udp), or for raw devices register=, register-each, name=, register-grace=, heartbeat=, frame=, modbus=rtu"
                        )
                    }
                    if mode != Mode::Raw {
                        anyhow::bail!(
                            "{key}= is for devices, on raw listeners (raw://ADDR?{pair}), not on {} listener {spec:?}",
                            mode.as_str()
                        )
                    }
                }
            }
        }
        listener
            .device
            .check()
            .map_err(|e| anyhow::anyhow!("{e}, in listener {spec:?}"))?;
        anyhow::ensure!(
            !udp || matches!(listener.device.frame, crate::device::Frame::None),
            "frame= is for TCP device listeners: over UDP each datagram is one packet, in listener {spec:?}"
        );
        Ok(listener)
    }
}

/// A listener scheme: its mode, and whether it is over TLS.
pub(crate) fn parse_scheme(scheme: &str) -> anyhow::Result<(Mode, bool)> {
    match scheme {
        "tls" | "text+tls" => Ok((Mode::Text, true)),
        _ => match scheme.strip_suffix("+tls") {
            Some(mode) => Ok((mode.parse()?, true)),
            None => scheme.parse().map(|mode| (mode, false)).map_err(|_| {
                anyhow::anyhow!(
                    "unknown mode {scheme:?}: expected text, json, raw, tls, json+tls, raw+tls or udp"
                )
            }),
        },
    }
}

/// Which PROXY protocol header a listener expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text header: `PROXY TCP4 203.0.113.7 192.0.2.1 51234 12345\r\n`.
    V1,
    /// The binary header.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        })
    }
}

impl FromStr for ProxyVersion {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "v1" => Ok(ProxyVersion::V1),
            "v2" => Ok(ProxyVersion::V2),
            _ => anyhow::bail!("unknown proxy={s:?}: expected proxy=v1 or proxy=v2"),
        }
    }
}

/// `auth=required` or `auth=none`.
fn parse_auth(value: &str) -> anyhow::Result<bool> {
    match value {
        "required" => Ok(true),
        "none" => Ok(false),
        _ => anyhow::bail!("unknown auth={value:?}: expected auth=required or auth=none"),
    }
}

/// Several listener specs in one string, separated by commas: the value
/// of one `--listen` or of `SWITCHBOARD_LISTEN`. A comma splits only where
/// a new spec starts (`MODE://` or an address), so a comma inside an
/// option (`register=regex:(?<id>[0-9]{15}),(?<key>...)`) stays in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerList(pub Vec<ListenerSpec>);

impl FromStr for ListenerList {
    type Err = anyhow::Error;
    fn from_str(list: &str) -> anyhow::Result<Self> {
        let mut specs = Vec::new();
        let mut start = 0;
        for (at, _) in list.match_indices(',') {
            if starts_a_listener(&list[at + 1..]) {
                specs.push(list[start..at].parse()?);
                start = at + 1;
            }
        }
        specs.push(list[start..].parse()?);
        Ok(ListenerList(specs))
    }
}

/// Whether `text` begins with a listener spec: a scheme, or an address
/// followed by its options or the next spec.
fn starts_a_listener(text: &str) -> bool {
    if let Some((scheme, _)) = text.split_once("://") {
        if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_lowercase() || b == b'+') {
            return true;
        }
    }
    let end = text.find(['?', ',']).unwrap_or(text.len());
    parse_addr(&text[..end]).is_ok()
}

/// A trusted proxy: an address (`127.0.0.1`, `::1`) or a CIDR block
/// (`10.0.0.0/8`).
pub(super) fn parse_proxy(text: &str) -> anyhow::Result<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            anyhow::anyhow!(
                "bad trusted proxy {text:?}: expected an address or a CIDR block, e.g. 127.0.0.1 or 10.0.0.0/8"
            )
        })
}

/// A listener's address: see [`crate::address::listen_addr`].
fn parse_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    Ok(crate::address::listen_addr(addr)?)
}

/// The HTTP listener: `[http://|https://]ADDR`. `https` serves the console,
/// the API, metrics and `/ws` over TLS (WSS), with the TCP listeners'
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSpec {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// HTTPS rather than HTTP.
    pub tls: bool,
    /// Whether WebSocket clients (`/ws`) must authenticate first
    /// (`?auth=required`); the admin side has its own token.
    pub auth: bool,
}

impl fmt::Display for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.addr)?;
        if self.auth {
            f.write_str("?auth=required")?;
        }
        Ok(())
    }
}

impl FromStr for HttpSpec {
    type Err = anyhow::Error;
    fn from_str(spec: &str) -> anyhow::Result<Self> {
        let (tls, addr) = match spec.split_once("://") {
            Some(("http", addr)) => (false, addr),
            Some(("https", addr)) => (true, addr),
            Some((scheme, _)) => {
                anyhow::bail!(
                    "unknown scheme {scheme:?} in --http {spec:?}: expected http or https"
                )
            }
            None => (false, spec),
        };
        let (addr, query) = match addr.split_once('?') {
            Some((addr, query)) => (addr, Some(query)),
            None => (addr, None),
        };
        let addr = parse_addr(addr).with_context(|| format!("in --http {spec:?}"))?;
        let mut auth = false;
        for (pair, key, value) in query.into_iter().flat_map(options) {
            match (key, value) {
                ("auth", Some(value)) => {
                    auth = parse_auth(value).with_context(|| format!("in --http {spec:?}"))?
                }
                _ => anyhow::bail!(
                    "unknown option {pair:?} in --http {spec:?}: expected auth=required"
                ),
            }
        }
        Ok(HttpSpec { addr, tls, auth })
    }
}

/// The options of a listener, `KEY[=VALUE]` joined by `&` (what follows
/// the `?` of `raw://0.0.0.0:9000?register=imei&frame=line`, or the API's
/// `options`): each as written, its key, and its value if it has one.
pub(crate) fn options(query: &str) -> impl Iterator<Item = (&str, &str, Option<&str>)> {
    query.split('&').map(|pair| match pair.split_once('=') {
        Some((key, value)) => (pair, key, Some(value)),
        None => (pair, pair, None),
    })
}

impl<'de> Deserialize<'de> for HttpSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ListenerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
