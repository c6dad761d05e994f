//! The admin's view of a running server and what it may do to it: the
//! query API the HTTP layer (admin API, console, metrics, `status`) is
//! built on. Its types are the admin API's JSON, and what `switchboard
//! status` reads back.
//!
//! What each call costs: listings look at every client (or room) once
//! and page the result, so a call is linear in the server's size (a few
//! milliseconds at 10,000 clients), and bounded by [`MAX_PAGE`] in what
//! it returns. Only the admin can call any of it.
//!
//! The operations are here; what they are asked is in `requests`, what
//! they answer in `views`.

mod requests;
mod views;

pub use requests::{
    Auth, ClientQuery, ClientSort, ClientState, HistoryQuery, KickRequest, ListenerMode,
    OpenListener, RoomQuery, SendRequest, SortOrder,
};
use views::{client_view, listener_view};
pub use views::{
    ClientCounts, ClientPage, ClientView, DeviceView, GapView, InOut, KeptView, ListenerOrigin,
    ListenerView, Memory, RateFigures, RoomDetail, RoomHistory, RoomPage, RoomView, SendResult,
    Stats, UdpView,
};

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;

use super::listeners::{Listener, ListenerError};
use super::monitor::{grand_total, Closed};
use super::ServerState;
use crate::config::{ListenerSpec, Mode};
use crate::hub::{
    unix_millis, Body, ClientId, ClientKind, CloseReason, HubError, Name, RoomName, Watch, Watcher,
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

    /// Cancelled when the server begins to shut down: long-lived views
    /// (the console's live feed) end then, rather than outlive it.
    pub(crate) fn stopping(&self) -> tokio_util::sync::CancellationToken {
        self.shared.stop.clone()
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
                budget: shared.config.hub.max_memory,
                history: shared.hub.history_bytes(),
                history_evicted: shared.hub.history_evicted(),
                rss: resident_memory(),
            },
            listeners: self.listeners(),
            cluster: shared.cluster.as_ref().map(|cluster| cluster.status()),
            history_store: shared.saver.as_ref().map(|saver| saver.status()),
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
        let queue_limit = self.shared.config.hub.queue.hard;
        let state = query.state.unwrap_or_default();
        let mut views: Vec<ClientView> = match state {
            ClientState::Open => self
                .shared
                .hub
                .clients()
                .into_iter()
                .map(|client| client_view(client, queue_limit, None))
                .collect(),
            ClientState::Closed => self
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
        };
        if let Some(filter) = query.filter.as_deref().filter(|f| !f.is_empty()) {
            let filter = filter.to_lowercase();
            views.retain(|c| c.name.to_lowercase().contains(&filter) || c.addr.contains(&filter));
        }
        if let Some(room) = query.room.as_deref().filter(|r| !r.is_empty()) {
            let room = RoomName::parse_admin(room.strip_prefix('#').unwrap_or(room))
                .map_err(|e| ControlError::bad("invalid_room", e.to_string()))?;
            views.retain(|c| c.rooms.iter().any(|r| r == room.as_str()));
        }
        let closed = state == ClientState::Closed;
        let sort = query.sort.unwrap_or(match closed {
            true => ClientSort::Closed,
            false => ClientSort::Id,
        });
        views.sort_by(sort.order());
        let descending = match query.order {
            None => closed && sort == ClientSort::Closed,
            Some(order) => order == SortOrder::Desc,
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
        Ok(client_view(client, self.shared.config.hub.queue.hard, None))
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
        let queue_limit = self.shared.config.hub.queue.hard;
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

    /// What `room` keeps: after `since`, or the last before `before`.
    pub async fn room_history(
        &self,
        name: &str,
        query: &HistoryQuery,
    ) -> Result<RoomHistory, ControlError> {
        let name = parse_room(name)?;
        let offset = |text: &Option<String>| {
            text.as_deref()
                .map(|text| {
                    text.parse::<crate::hub::Offset>()
                        .map_err(|e| ControlError::bad("bad_offset", e.to_string()))
                })
                .transpose()
        };
        let (since, before) = (offset(&query.since)?, offset(&query.before)?);
        if since.is_some() && before.is_some() {
            return Err(ControlError::bad(
                "bad_request",
                "give since (what came after it) or before (the page before it), not both",
            ));
        }
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        // In a cluster sharing histories, this node's copy is made whole
        // first (a room nobody here is in is read from Redis).
        let hold = self.shared.hub.fresh_history(&name).await;
        let view = self.shared.hub.room_history(&name, since, before, limit);
        drop(hold);
        let exact = |body: &crate::hub::Body| {
            std::str::from_utf8(&body.bytes)
                .is_err()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&body.bytes))
        };
        Ok(RoomHistory {
            room: name.as_str().to_owned(),
            epoch: view.epoch.map(|epoch| format!("{epoch:016x}")),
            messages: view
                .kept
                .iter()
                .map(|kept| KeptView {
                    offset: kept.offset.to_string(),
                    at: kept.at,
                    from: kept.from.as_str().to_owned(),
                    text: String::from_utf8_lossy(&kept.body.bytes).into_owned(),
                    bytes: exact(&kept.body),
                })
                .collect(),
            more: view.more,
            gap: view.gap.map(|gap| GapView {
                since: gap.since.to_string(),
                from: gap.from.map(|from| from.to_string()),
                reason: gap.reason.code().to_owned(),
            }),
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
        Ok(client_view(client, self.shared.config.hub.queue.hard, None))
    }

    /// Opens a TCP or UDP listener.
    pub fn open_listener(&self, request: &OpenListener) -> Result<ListenerView, ControlError> {
        let (mode, tls) = request.mode.unwrap_or_default().mode_and_tls();
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
        let bad_device = |why: String| ControlError::bad("bad_device_options", why);
        let bad_option = |error: crate::device::OptionError| bad_device(error.to_string());
        if let Some(options) = request.device.as_deref().filter(|o| !o.is_empty()) {
            if mode != Mode::Raw {
                return Err(bad_device(
                    "device options are for raw listeners (\"mode\": \"raw\")".into(),
                ));
            }
            for (pair, key, value) in crate::config::listener_options(options) {
                if !device.set(key, value).map_err(bad_option)? {
                    return Err(bad_device(format!(
                        "unknown device option {pair:?}: expected register=, register-each, name=, register-grace=, heartbeat=, frame= or modbus=rtu"
                    )));
                }
            }
        }
        let room = match &request.room {
            Some(template) if template.contains("{id}") => {
                device.room = Some(crate::device::Template::parse(template).map_err(bad_option)?);
                RoomName::lobby()
            }
            Some(room) => parse_room(room)?,
            None => RoomName::lobby(),
        };
        device.check().map_err(bad_option)?;
        let settings = self.shared.authenticator().map(|a| a.settings().clone());
        let auth = match request.auth.unwrap_or_default() {
            Auth::None => false,
            // A device that registers authenticates with the devices file.
            Auth::Required if device.register.is_some() => {
                if settings.as_ref().is_none_or(|s| s.devices_file.is_none()) {
                    return Err(ControlError::bad(
                        "no_devices_list",
                        "this server has no devices list to check registrations against: start it with --devices FILE to open device listeners with auth required",
                    ));
                }
                true
            }
            Auth::Required if settings.as_ref().is_some_and(|s| s.has_credentials()) => true,
            Auth::Required => {
                return Err(ControlError::bad(
                    "no_credentials",
                    "this server has no credentials to check: start it with --users, --token, --token-file or a JWT key to open listeners with auth required",
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
            udp: request.mode == Some(ListenerMode::Udp),
            addr,
            room,
            auth,
            // Balancers are set up with the server, not pointed at a port
            // opened for a few minutes.
            proxy: None,
            idle_timeout: None,
            history: 0,
            device,
            // Half of --max-connections, as for one without the option.
            max_unproven: None,
            max_clients: None,
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
    RoomName::parse_admin(name.strip_prefix('#').unwrap_or(name))
        .map_err(|e| ControlError::bad("invalid_room", e.to_string()))
}

impl Control {
    fn listener_view(&self, listener: &Listener) -> ListenerView {
        // The HTTP listener's WebSocket clients: as `--http` says.
        let http_auth = self.shared.config.http.listen.is_some_and(|http| http.auth);
        listener_view(listener, http_auth)
    }
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
