//! The admin's view of a running server and what it may do to it: the
//! query API the HTTP layer (admin API, console, metrics, `status`) is
//! built on. Its types are the admin API's JSON, and what `switchboard
//! status` reads back.
//!
//! What each call costs: listings look at every client (or room) once
//! and page the result, so a call is linear in the server's size (a few
//! milliseconds at 10,000 clients), and bounded by [`MAX_PAGE`] in what
//! it returns. Only the admin can call any of it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::listeners::{Listener, ListenerError, Origin};
use super::monitor::{grand_total, Closed};
use super::ServerState;
use crate::config::{ListenerSpec, Mode};
use crate::hub::{
    unix_millis, Body, ClientId, ClientInfo, ClientKind, CloseReason, HubError, Name, RoomName,
    Watch, Watcher,
};

/// Most clients or rooms one page holds.
pub const MAX_PAGE: usize = 1000;

/// Entries per page when the caller does not say.
pub const DEFAULT_PAGE: usize = 100;

/// A handle on a running server for its admin. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<ServerState>,
}

/// The server at a glance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// The server's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// When it started (unix milliseconds).
    pub started_at: u64,
    /// Clients now, and since the start.
    pub clients: ClientCounts,
    /// Rooms now.
    pub rooms: usize,
    /// Messages received and delivered since the start.
    pub messages: InOut,
    /// Bytes received and written since the start.
    pub bytes: InOut,
    /// Per second, over the last second.
    pub rates: RateFigures,
    /// Disconnects since the start, by reason code.
    pub disconnects: BTreeMap<String, u64>,
    /// Clients cut off for not keeping up (slow consumer, too slow,
    /// stalled, memory budget).
    pub queue_cutoffs: u64,
    /// Failed `accept` calls (e.g. out of file descriptors).
    pub accept_errors: u64,
    /// Connections refused at the door (limits).
    pub refused: u64,
    /// TLS handshakes that failed or timed out (plaintext on a TLS port,
    /// an untrusted or missing client certificate).
    pub tls_handshake_failures: u64,
    /// Memory.
    pub memory: Memory,
    /// The listeners.
    pub listeners: Vec<ListenerView>,
    /// The cluster, if this server is a node of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

/// Clients now and in all.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientCounts {
    /// Connected now.
    pub current: usize,
    /// Connected since the start.
    pub total: u64,
}

/// A count in and out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InOut {
    /// From clients.
    #[serde(rename = "in")]
    pub received: u64,
    /// To clients.
    #[serde(rename = "out")]
    pub sent: u64,
}

/// Rates per second.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RateFigures {
    /// Messages received per second.
    pub messages_in: f64,
    /// Messages delivered per second.
    pub messages_out: f64,
    /// Bytes received per second.
    pub bytes_in: f64,
    /// Bytes written per second.
    pub bytes_out: f64,
}

/// Memory the server holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Memory {
    /// Bytes clients hold in queues and unfinished input.
    pub held: usize,
    /// The memory budget (max memory).
    pub budget: usize,
    /// The process's resident memory, in bytes (0 where unknown).
    pub rss: u64,
}

/// A listener.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListenerView {
    /// Its id.
    pub id: u32,
    /// `text`, `json`, `raw`; over TLS `tls`, `json+tls`, `raw+tls`; or
    /// `ws` / `wss` (the HTTP listener's WebSocket clients).
    pub mode: String,
    /// The address it is bound to.
    pub addr: String,
    /// The room its clients start in.
    pub room: String,
    /// Clients connected through it now.
    pub clients: usize,
    /// `config` (lives as long as the server) or `api` (opened by the admin).
    pub origin: String,
    /// It closes once unused for this long.
    pub expire_after_idle_seconds: Option<u64>,
    /// Seconds until it closes for being unused, while it is.
    pub expires_in_seconds: Option<u64>,
    /// `required`: clients must authenticate first; `none`: anyone may
    /// connect.
    pub auth: String,
    /// `v1` or `v2`: its connections come through a load balancer that
    /// names each client in a PROXY protocol header.
    pub proxy: Option<String>,
    /// A device listener's options (`register=imei&heartbeat=hex:FE`),
    /// and its room template as `room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// A client, connected or recently gone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    /// Its id, never reused.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: String,
    /// `text`, `json`, `raw`, `ws` or `ws-raw`.
    pub mode: String,
    /// The id of the listener it came through.
    pub listener: u32,
    /// Whether it is connected over TLS (or WSS).
    pub tls: bool,
    /// Whether it authenticated on an `?auth=required` listener (a
    /// login, a token or a JWT): its name is then its user's.
    pub logged_in: bool,
    /// The rooms it is in.
    pub rooms: Vec<String>,
    /// When it connected (unix milliseconds).
    pub connected_at: u64,
    /// When it last sent anything (unix milliseconds).
    pub last_activity: u64,
    /// Messages it sent.
    pub messages_in: u64,
    /// Messages and notices delivered to it.
    pub messages_out: u64,
    /// Bytes it sent.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Bytes queued for it.
    pub queue_bytes: usize,
    /// The queue's hard limit.
    pub queue_limit: usize,
    /// When it went (unix milliseconds); only for gone clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u64>,
    /// Why it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it went, as a code (`slow_consumer`, `stalled`, `idle`, `kicked`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// What it registered as, for a device on a `register=` listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceView>,
}

/// A registered device, as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// Its identity, from its registration (an IMEI, an ICCID, a MAC...).
    pub id: String,
    /// What the devices file (`--devices`) calls it; none: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it registered (unix milliseconds).
    pub registered_at: u64,
    /// When it last sent a heartbeat (unix milliseconds); none yet: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<u64>,
    /// When it last sent data (unix milliseconds); none yet: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_data: Option<u64>,
    /// Heartbeats it sent.
    pub heartbeats: u64,
    /// Frames it sent that failed their Modbus CRC (on a `modbus=rtu`
    /// listener).
    pub bad_frames: u64,
}

/// A page of clients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientPage {
    /// How many match, in all.
    pub total: usize,
    /// Where this page starts.
    pub offset: usize,
    /// Most entries on this page.
    pub limit: usize,
    /// The clients.
    pub clients: Vec<ClientView>,
}

/// A room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomView {
    /// Its name.
    pub name: String,
    /// How many are in it.
    pub members: usize,
    /// Messages said in it since it was created.
    pub messages: u64,
    /// Messages per second over the last second.
    pub rate: f64,
}

/// A page of rooms, largest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomPage {
    /// How many match, in all.
    pub total: usize,
    /// Where this page starts.
    pub offset: usize,
    /// Most entries on this page.
    pub limit: usize,
    /// The rooms.
    pub rooms: Vec<RoomView>,
}

/// A room and its members.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomDetail {
    /// The room.
    pub room: RoomView,
    /// Its members, by id (at most [`MAX_PAGE`]).
    pub members: Vec<ClientView>,
}

/// Which clients to list, and how.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    /// `open` (default) or `closed`: the recent disconnects, newest first.
    pub state: Option<String>,
    /// `id` (default), `name`, `addr`, `mode`, `connected`, `activity`,
    /// `messages_in`, `messages_out`, `bytes_in`, `bytes_out`, `queue`.
    pub sort: Option<String>,
    /// `asc` or `desc` (default for `id`: `asc`).
    pub order: Option<String>,
    /// Only clients whose name or address contains this (any case).
    pub filter: Option<String>,
    /// Only clients in this room.
    pub room: Option<String>,
    /// Skip this many.
    pub offset: Option<usize>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Which rooms to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct RoomQuery {
    /// Only rooms whose name contains this (any case).
    pub filter: Option<String>,
    /// Skip this many.
    pub offset: Option<usize>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A message from the admin: to a room or a client, text or bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The room to say it in.
    pub room: Option<String>,
    /// The client to send it to, by name.
    pub to: Option<String>,
    /// The message, as text.
    pub text: Option<String>,
    /// The message, as base64 bytes.
    pub bytes: Option<String>,
}

/// How many a message was queued for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// Recipients.
    pub delivered: usize,
}

/// Why the admin disconnects a client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KickRequest {
    /// Told to the client, and logged.
    pub reason: Option<String>,
}

/// A listener to open.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenListener {
    /// `text` (default), `json` or `raw`; over TLS `tls`, `json+tls` or
    /// `raw+tls` (if the server has a certificate).
    pub mode: Option<String>,
    /// Where to listen (default `0.0.0.0:0`: any free port).
    pub addr: Option<String>,
    /// The port, if `addr` is not given (0: any free port).
    pub port: Option<u16>,
    /// The room its clients start in (default `lobby`).
    pub room: Option<String>,
    /// Close it once unused for this many seconds.
    pub expire_after_idle_seconds: Option<u64>,
    /// `none` (default) or `required`: clients must authenticate first
    /// (the server must have credentials: users, tokens or JWT keys).
    pub auth: Option<String>,
    /// For a `raw` listener of devices: its device options, as in a
    /// listener spec (`register=imei&heartbeat=hex:FE&frame=gap:20`; see
    /// docs/devices.md). `room` may then hold `{id}` (`dev-{id}`).
    pub device: Option<String>,
}

/// What went wrong with an admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// What kind of failure: how HTTP reports it.
    pub kind: ErrorKind,
    /// A stable code.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// Kinds of [`ControlError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong.
    BadRequest,
    /// What it names does not exist.
    NotFound,
    /// It conflicts with the server's state (a port taken).
    Conflict,
}

impl ControlError {
    fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ControlError {
            kind,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ControlError::new(ErrorKind::BadRequest, code, message)
    }
}

impl From<HubError> for ControlError {
    fn from(error: HubError) -> Self {
        let kind = match error {
            HubError::NoSuchClient(_) | HubError::NoSuchClientId(_) | HubError::NoSuchRoom(_) => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::BadRequest,
        };
        ControlError::new(kind, error.code(), error.to_string())
    }
}

impl From<ListenerError> for ControlError {
    fn from(error: ListenerError) -> Self {
        let (kind, code) = match &error {
            ListenerError::CannotBind { .. } => (ErrorKind::Conflict, "port_taken"),
            ListenerError::NoSuchListener(_) => (ErrorKind::NotFound, "no_such_listener"),
            ListenerError::NotClosable(_) => (ErrorKind::Conflict, "not_closable"),
            ListenerError::TooMany => (ErrorKind::Conflict, "too_many_listeners"),
        };
        ControlError::new(kind, code, error.to_string())
    }
}

/// Longest reason the admin may give a kick: it is shown to the client
/// and logged.
pub const MAX_KICK_REASON: usize = 200;

impl Control {
    pub(crate) fn new(shared: Arc<ServerState>) -> Self {
        Control { shared }
    }

    /// The server's config.
    pub fn config(&self) -> &crate::Config {
        &self.shared.config
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.shared.http_addr
    }

    /// The server at a glance.
    pub fn stats(&self) -> Stats {
        let shared = &self.shared;
        let monitor = &shared.monitor;
        let totals = grand_total(&shared.hub.totals());
        let disconnects = monitor.disconnects();
        let cutoffs = ["slow_consumer", "too_slow", "stalled", "memory_budget"]
            .iter()
            .filter_map(|code| disconnects.get(code))
            .sum();
        let rates = monitor.rates();
        Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: monitor.started_instant.elapsed().as_secs(),
            started_at: unix_millis(monitor.started),
            clients: ClientCounts {
                current: shared.hub.client_count(),
                total: totals.clients,
            },
            rooms: shared.hub.room_count(),
            messages: InOut {
                received: totals.messages_in,
                sent: totals.messages_out,
            },
            bytes: InOut {
                received: totals.bytes_in,
                sent: totals.bytes_out,
            },
            rates: RateFigures {
                messages_in: rates.messages_in,
                messages_out: rates.messages_out,
                bytes_in: rates.bytes_in,
                bytes_out: rates.bytes_out,
            },
            disconnects: disconnects
                .into_iter()
                .map(|(code, n)| (code.to_owned(), n))
                .collect(),
            queue_cutoffs: cutoffs,
            accept_errors: monitor.accept_errors(),
            refused: monitor.refused_count(),
            tls_handshake_failures: monitor.tls_failures(),
            memory: Memory {
                held: shared.hub.memory_held(),
                budget: shared.config.max_memory,
                rss: resident_memory(),
            },
            listeners: self.listeners(),
            cluster: shared.cluster.as_ref().map(|cluster| cluster.status()),
        }
    }

    /// Traffic of every client since the start, connected or gone, by
    /// kind of client.
    pub fn totals_by_kind(&self) -> Vec<(ClientKind, crate::hub::Totals)> {
        self.shared.hub.totals()
    }

    /// Connected clients per kind, and the bytes queued for them all.
    pub fn load(&self) -> (BTreeMap<ClientKind, usize>, usize) {
        self.shared.hub.load()
    }

    /// Times a sender waited for a receiver over its soft limit.
    pub fn flow_control_pauses(&self) -> u64 {
        self.shared.hub.flow_control_pauses()
    }

    /// Disconnects since the start, by reason code.
    pub fn disconnects(&self) -> BTreeMap<&'static str, u64> {
        self.shared.monitor.disconnects().into_iter().collect()
    }

    /// The listeners, oldest first.
    pub fn listeners(&self) -> Vec<ListenerView> {
        self.shared
            .listeners()
            .all()
            .iter()
            .map(|l| self.listener_view(l))
            .collect()
    }

    /// Clients, connected or recently gone, filtered, sorted and paged.
    pub fn clients(&self, query: &ClientQuery) -> Result<ClientPage, ControlError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        let offset = query.offset.unwrap_or(0);
        let queue_limit = self.shared.config.queue_hard_limit;
        let mut views: Vec<ClientView> = match query.state.as_deref() {
            None | Some("open") => self
                .shared
                .hub
                .clients()
                .into_iter()
                .map(|client| client_view(client, queue_limit, None))
                .collect(),
            Some("closed") => self
                .shared
                .monitor
                .recent()
                .into_iter()
                .map(|closed| {
                    let Closed {
                        client,
                        closed_at,
                        reason,
                    } = closed;
                    client_view(client, queue_limit, Some((closed_at, reason)))
                })
                .collect(),
            Some(other) => {
                return Err(ControlError::bad(
                    "bad_state",
                    format!("unknown state {other:?}: expected open or closed"),
                ))
            }
        };
        if let Some(filter) = query.filter.as_deref().filter(|f| !f.is_empty()) {
            let filter = filter.to_lowercase();
            views.retain(|c| c.name.to_lowercase().contains(&filter) || c.addr.contains(&filter));
        }
        if let Some(room) = query.room.as_deref().filter(|r| !r.is_empty()) {
            let room = RoomName::parse_user(room.as_bytes())
                .map_err(|e| ControlError::bad("invalid_room", e.to_string()))?;
            views.retain(|c| c.rooms.iter().any(|r| r == room.as_str()));
        }
        let closed = query.state.as_deref() == Some("closed");
        let sort = query
            .sort
            .as_deref()
            .unwrap_or(if closed { "closed" } else { "id" });
        let key = sort_key(sort)?;
        views.sort_by(key);
        let descending = match query.order.as_deref() {
            None => closed && sort == "closed",
            Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ControlError::bad(
                    "bad_order",
                    format!("unknown order {other:?}: expected asc or desc"),
                ))
            }
        };
        if descending {
            views.reverse();
        }
        let total = views.len();
        let clients = views.into_iter().skip(offset).take(limit).collect();
        Ok(ClientPage {
            total,
            offset,
            limit,
            clients,
        })
    }

    /// One connected client.
    pub fn client(&self, id: u64) -> Result<ClientView, ControlError> {
        let client = self
            .shared
            .hub
            .client(ClientId::new(id))
            .ok_or(HubError::NoSuchClientId(ClientId::new(id)))?;
        Ok(client_view(
            client,
            self.shared.config.queue_hard_limit,
            None,
        ))
    }

    /// Rooms, largest first, filtered and paged.
    pub fn rooms(&self, query: &RoomQuery) -> RoomPage {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
        let offset = query.offset.unwrap_or(0);
        let mut rooms = self.shared.hub.room_stats();
        if let Some(filter) = query.filter.as_deref().filter(|f| !f.is_empty()) {
            let filter = filter.to_lowercase();
            rooms.retain(|room| room.name.as_str().contains(&filter));
        }
        rooms.sort_by(|a, b| {
            b.members
                .cmp(&a.members)
                .then(a.name.as_str().cmp(b.name.as_str()))
        });
        let total = rooms.len();
        let monitor = &self.shared.monitor;
        RoomPage {
            total,
            offset,
            limit,
            rooms: rooms
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|room| RoomView {
                    rate: monitor.room_rate(&room.name),
                    name: room.name.as_str().to_owned(),
                    members: room.members,
                    messages: room.messages,
                })
                .collect(),
        }
    }

    /// One room and its members.
    pub fn room(&self, name: &str) -> Result<RoomDetail, ControlError> {
        let name = parse_room(name)?;
        let (stats, mut members) = self
            .shared
            .hub
            .room(&name)
            .ok_or_else(|| HubError::NoSuchRoom(name.clone()))?;
        members.sort_by_key(|m| m.id);
        let queue_limit = self.shared.config.queue_hard_limit;
        Ok(RoomDetail {
            room: RoomView {
                rate: self.shared.monitor.room_rate(&name),
                name: stats.name.as_str().to_owned(),
                members: stats.members,
                messages: stats.messages,
            },
            members: members
                .into_iter()
                .take(MAX_PAGE)
                .map(|m| client_view(m, queue_limit, None))
                .collect(),
        })
    }

    /// Sends a message as the admin.
    pub fn send(&self, request: &SendRequest) -> Result<SendResult, ControlError> {
        let bytes = match (&request.text, &request.bytes) {
            (Some(text), None) => Bytes::from(text.clone()),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(Bytes::from)
                .map_err(|e| ControlError::bad("bad_bytes", format!("bytes is not base64: {e}")))?,
            _ => {
                return Err(ControlError::bad(
                    "bad_request",
                    r#"give the message as "text" or as base64 "bytes", not both"#,
                ))
            }
        };
        if bytes.len() > self.shared.config.max_line {
            return Err(ControlError::bad(
                "too_long",
                format!(
                    "the message is {} bytes, over the line limit of {} bytes (max line)",
                    bytes.len(),
                    self.shared.config.max_line
                ),
            ));
        }
        let body = if request.bytes.is_some() {
            Body::chunk(bytes)
        } else {
            Body::line(bytes)
        };
        match (&request.room, &request.to) {
            (Some(room), None) => {
                let room = parse_room(room)?;
                let delivered = self.shared.hub.admin_say(&room, body)?;
                Ok(SendResult { delivered })
            }
            (None, Some(to)) => {
                let to =
                    Name::new(to).map_err(|e| ControlError::bad("invalid_name", e.to_string()))?;
                self.shared.hub.admin_direct(&to, body)?;
                Ok(SendResult { delivered: 1 })
            }
            _ => Err(ControlError::bad(
                "bad_request",
                r#"say where the message goes: "room" or "to", not both"#,
            )),
        }
    }

    /// Disconnects a client, telling it why.
    pub fn kick(&self, id: u64, reason: Option<&str>) -> Result<ClientView, ControlError> {
        let reason = reason.unwrap_or("").trim();
        if reason.len() > MAX_KICK_REASON {
            return Err(ControlError::bad(
                "too_long",
                format!("a kick reason can be at most {MAX_KICK_REASON} bytes"),
            ));
        }
        // Shown to text clients: no control characters.
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        let client = self
            .shared
            .hub
            .disconnect(
                ClientId::new(id),
                CloseReason::Kicked(reason.as_str().into()),
            )
            .ok_or(HubError::NoSuchClientId(ClientId::new(id)))?;
        tracing::info!(client = %client.id, name = %client.name, %reason, "the admin kicked a client");
        Ok(client_view(
            client,
            self.shared.config.queue_hard_limit,
            None,
        ))
    }

    /// Opens a TCP listener.
    pub fn open_listener(&self, request: &OpenListener) -> Result<ListenerView, ControlError> {
        let (mode, tls) = crate::config::parse_scheme(request.mode.as_deref().unwrap_or("text"))
            .map_err(|e| ControlError::bad("bad_mode", e.to_string()))?;
        if tls && self.shared.tls.is_none() {
            return Err(ControlError::bad(
                "no_certificate",
                "this server has no TLS certificate: start it with --tls-cert and --tls-key (or a TLS listener) to open TLS listeners",
            ));
        }
        let addr = match (&request.addr, request.port) {
            (Some(addr), None) => addr.parse::<SocketAddr>().map_err(|_| {
                ControlError::bad(
                    "bad_addr",
                    format!("bad address {addr:?}: expected IP:PORT, e.g. 0.0.0.0:9000"),
                )
            })?,
            (None, port) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port.unwrap_or(0))),
            (Some(_), Some(_)) => {
                return Err(ControlError::bad(
                    "bad_request",
                    r#"give "addr" or "port", not both"#,
                ))
            }
        };
        let mut device = crate::device::DeviceSpec::default();
        let bad_device = |e: String| ControlError::bad("bad_device_options", e);
        if let Some(options) = request.device.as_deref().filter(|o| !o.is_empty()) {
            if mode != Mode::Raw {
                return Err(bad_device(
                    "device options are for raw listeners (\"mode\": \"raw\")".into(),
                ));
            }
            for (pair, key, value) in crate::config::listener_options(options) {
                if !device.set(key, value).map_err(bad_device)? {
                    return Err(bad_device(format!(
                        "unknown device option {pair:?}: expected register=, register-each, name=, register-grace=, heartbeat=, frame= or modbus=rtu"
                    )));
                }
            }
        }
        let room = match &request.room {
            Some(template) if template.contains("{id}") => {
                device.room = Some(crate::device::Template::parse(template).map_err(bad_device)?);
                RoomName::lobby()
            }
            Some(room) => parse_room(room)?,
            None => RoomName::lobby(),
        };
        device.check().map_err(bad_device)?;
        let settings = self.shared.authenticator().map(|a| a.settings().clone());
        let auth = match request.auth.as_deref() {
            None | Some("none") => false,
            // A device that registers authenticates with the devices file.
            Some("required") if device.register.is_some() => {
                if settings.as_ref().is_none_or(|s| s.devices_file.is_none()) {
                    return Err(ControlError::bad(
                        "no_devices_list",
                        "this server has no devices list to check registrations against: start it with --devices FILE to open device listeners with auth required",
                    ));
                }
                true
            }
            Some("required") if settings.as_ref().is_some_and(|s| s.has_credentials()) => true,
            Some("required") => {
                return Err(ControlError::bad(
                    "no_credentials",
                    "this server has no credentials to check: start it with --users, --token, --token-file or a JWT key to open listeners with auth required",
                ))
            }
            Some(other) => {
                return Err(ControlError::bad(
                    "bad_auth",
                    format!("unknown auth {other:?}: expected none or required"),
                ))
            }
        };
        let expiry = match request.expire_after_idle_seconds {
            Some(0) => {
                return Err(ControlError::bad(
                    "bad_expiry",
                    "expire_after_idle_seconds must be at least 1 (leave it out for no expiry)",
                ))
            }
            other => other.map(Duration::from_secs),
        };
        let spec = ListenerSpec {
            mode,
            tls,
            addr,
            room,
            auth,
            // Balancers are set up with the server, not pointed at a port
            // opened for a few minutes.
            proxy: None,
            idle_timeout: None,
            device,
        };
        let listener = self.shared.open_listener(spec, expiry)?;
        Ok(self.listener_view(&listener))
    }

    /// Closes a listener the admin opened, and disconnects its clients.
    pub fn close_listener(&self, id: u32) -> Result<ListenerView, ControlError> {
        let listener = self.shared.close_listener(id)?;
        Ok(self.listener_view(&listener))
    }

    /// Starts watching a room (by name) or a client (by id).
    pub fn watch(&self, room: Option<&str>, client: Option<u64>) -> Result<Watcher, ControlError> {
        let watch = match (room, client) {
            (Some(room), None) => Watch::Room(parse_room(room)?),
            (None, Some(id)) => Watch::Client(ClientId::new(id)),
            _ => {
                return Err(ControlError::bad(
                    "bad_request",
                    r#"watch a "room" or a "client", one of them"#,
                ))
            }
        };
        Ok(self.shared.hub.watch(watch)?)
    }

    /// Registers the HTTP listener, whose clients come over WebSocket.
    pub(crate) fn websocket_listener(&self, addr: SocketAddr, tls: bool) -> Arc<Listener> {
        self.shared.listeners().add_websocket(addr, tls)
    }

    pub(crate) fn shared(&self) -> &Arc<ServerState> {
        &self.shared
    }
}

fn parse_room(name: &str) -> Result<RoomName, ControlError> {
    RoomName::parse_user(name.as_bytes())
        .map_err(|e| ControlError::bad("invalid_room", e.to_string()))
}

impl Control {
    fn listener_view(&self, listener: &Listener) -> ListenerView {
        // The HTTP listener's WebSocket clients: as `--http` says.
        let http_auth = self.shared.config.http.is_some_and(|http| http.auth);
        listener_view(listener, http_auth)
    }
}

fn listener_view(listener: &Listener, http_auth: bool) -> ListenerView {
    let auth = match &listener.spec {
        Some(spec) => spec.auth,
        None => http_auth,
    };
    ListenerView {
        id: listener.id,
        mode: listener.mode().to_owned(),
        addr: listener.addr.to_string(),
        room: listener.spec.as_ref().map_or_else(
            || "lobby".to_owned(),
            |spec| match &spec.device.room {
                Some(template) => template.to_string(),
                None => spec.room.as_str().to_owned(),
            },
        ),
        clients: listener.clients(),
        origin: match listener.origin {
            Origin::Config => "config",
            Origin::Api => "api",
        }
        .to_owned(),
        expire_after_idle_seconds: listener.expire_after_idle.map(|d| d.as_secs()),
        expires_in_seconds: listener.expires_in().map(|d| d.as_secs()),
        auth: if auth { "required" } else { "none" }.to_owned(),
        proxy: listener
            .spec
            .as_ref()
            .and_then(|spec| spec.proxy)
            .map(|proxy| proxy.to_string()),
        device: listener.spec.as_ref().and_then(|spec| {
            let options: Vec<String> = spec
                .device
                .options()
                .into_iter()
                .filter(|option| !option.starts_with("room="))
                .collect();
            (!options.is_empty()).then(|| options.join("&"))
        }),
    }
}

fn client_view(
    client: ClientInfo,
    queue_limit: usize,
    closed: Option<(std::time::SystemTime, CloseReason)>,
) -> ClientView {
    let mut rooms: Vec<String> = client.rooms.iter().map(|r| r.as_str().to_owned()).collect();
    rooms.sort();
    let (closed_at, reason, reason_code) = match closed {
        Some((at, reason)) => (
            Some(unix_millis(at)),
            Some(reason.to_string()),
            Some(reason.code().to_owned()),
        ),
        None => (None, None, None),
    };
    let device = client.device.map(|device| DeviceView {
        id: device.id,
        label: device.label,
        registered_at: unix_millis(device.registered_at),
        last_heartbeat: device.last_heartbeat.map(unix_millis),
        last_data: device.last_data.map(unix_millis),
        heartbeats: device.heartbeats,
        bad_frames: device.bad_frames,
    });
    ClientView {
        device,
        id: client.id.get(),
        name: client.name.as_str().to_owned(),
        addr: client.meta.peer.to_string(),
        mode: client.meta.kind.as_str().to_owned(),
        listener: client.meta.listener,
        tls: client.meta.tls,
        logged_in: client.logged_in,
        rooms,
        connected_at: unix_millis(client.connected_at),
        last_activity: unix_millis(client.last_activity),
        messages_in: client.messages_in,
        messages_out: client.messages_out,
        bytes_in: client.bytes_in,
        bytes_out: client.bytes_out,
        queue_bytes: client.queue_bytes,
        queue_limit,
        closed_at,
        reason,
        reason_code,
    }
}

type Order = fn(&ClientView, &ClientView) -> std::cmp::Ordering;

fn sort_key(sort: &str) -> Result<Order, ControlError> {
    Ok(match sort {
        "id" => |a, b| a.id.cmp(&b.id),
        "name" => |a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()),
        "addr" => |a, b| a.addr.cmp(&b.addr),
        "mode" => |a, b| a.mode.cmp(&b.mode).then(a.id.cmp(&b.id)),
        "connected" => |a, b| a.connected_at.cmp(&b.connected_at).then(a.id.cmp(&b.id)),
        "activity" => |a, b| a.last_activity.cmp(&b.last_activity).then(a.id.cmp(&b.id)),
        "messages_in" => |a, b| a.messages_in.cmp(&b.messages_in).then(a.id.cmp(&b.id)),
        "messages_out" => |a, b| a.messages_out.cmp(&b.messages_out).then(a.id.cmp(&b.id)),
        "bytes_in" => |a, b| a.bytes_in.cmp(&b.bytes_in).then(a.id.cmp(&b.id)),
        "bytes_out" => |a, b| a.bytes_out.cmp(&b.bytes_out).then(a.id.cmp(&b.id)),
        "queue" => |a, b| a.queue_bytes.cmp(&b.queue_bytes).then(a.id.cmp(&b.id)),
        "closed" => |a, b| a.closed_at.cmp(&b.closed_at).then(a.id.cmp(&b.id)),
        other => {
            return Err(ControlError::bad(
                "bad_sort",
                format!("cannot sort by {other:?}: use id, name, addr, mode, connected, activity, messages_in, messages_out, bytes_in, bytes_out or queue"),
            ))
        }
    })
}

/// The process's resident memory, from `/proc/self/status` (0 elsewhere).
fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}
