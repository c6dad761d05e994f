//! What the admin asks: which clients and rooms to list and how, a
//! message to send, a client to kick, a listener to open. Values that
//! are one of a few are enums, so that the OpenAPI document lists them and
//! a bad one is refused naming the ones there are.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::ClientView;
use crate::config::Mode;

/// Which clients to list, and how.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    /// Connected clients (default), or the recent disconnects.
    pub state: Option<ClientState>,
    /// What to sort by (default: `id`; for the recent disconnects,
    /// `closed`).
    pub sort: Option<ClientSort>,
    /// Ascending or descending (default: ascending, but newest first for
    /// the recent disconnects sorted by `closed`).
    pub order: Option<SortOrder>,
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

/// Which of a room's kept messages to show.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Everything after this offset (`EPOCH-SEQ`, as messages carry it),
    /// oldest first; with `gap` set if the room no longer has all of it.
    pub since: Option<String>,
    /// The last messages before this offset (paging backwards).
    pub before: Option<String>,
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
    /// The mode its clients speak (default `text`); the `+tls` ones and
    /// `tls` need the server to have a certificate.
    pub mode: Option<ListenerMode>,
    /// Where to listen (default `0.0.0.0:0`: any free port).
    pub addr: Option<String>,
    /// The port, if `addr` is not given (0: any free port).
    pub port: Option<u16>,
    /// The room its clients start in (default `lobby`).
    pub room: Option<String>,
    /// Close it once unused for this many seconds.
    pub expire_after_idle_seconds: Option<u64>,
    /// Whether clients must authenticate first (default `none`); `required`
    /// needs the server to have credentials (users, tokens or JWT keys),
    /// or for registering devices a devices file.
    pub auth: Option<Auth>,
    /// For a `raw` listener of devices: its device options, as in a
    /// listener spec (`register=imei&heartbeat=hex:FE&frame=gap:20`; see
    /// docs/devices.md). `room` may then hold `{id}` (`dev-{id}`).
    pub device: Option<String>,
}

/// Which clients a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// Connected now.
    #[default]
    Open,
    /// The recent disconnects, with why each went.
    Closed,
}

/// What a listing of clients is sorted by; ties go by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // Each is the client's field of that name.
pub enum ClientSort {
    Id,
    Name,
    Addr,
    Mode,
    Connected,
    Activity,
    MessagesIn,
    MessagesOut,
    BytesIn,
    BytesOut,
    Queue,
    /// When it went (the recent disconnects).
    Closed,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SortOrder {
    Asc,
    Desc,
}

/// What a listener's clients speak, and whether over TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum ListenerMode {
    /// Lines of text.
    #[default]
    #[serde(rename = "text")]
    Text,
    /// JSON, one object a line.
    #[serde(rename = "json")]
    Json,
    /// Raw bytes (devices).
    #[serde(rename = "raw")]
    Raw,
    /// Text over TLS.
    #[serde(rename = "tls", alias = "text+tls")]
    Tls,
    /// JSON over TLS.
    #[serde(rename = "json+tls")]
    JsonTls,
    /// Raw bytes over TLS.
    #[serde(rename = "raw+tls")]
    RawTls,
    /// Raw bytes over UDP: a datagram a message, a source address a client.
    #[serde(rename = "udp")]
    Udp,
}

impl ListenerMode {
    /// Its mode, and whether it speaks TLS.
    pub fn mode_and_tls(self) -> (Mode, bool) {
        match self {
            ListenerMode::Udp => (Mode::Raw, false),
            ListenerMode::Text => (Mode::Text, false),
            ListenerMode::Json => (Mode::Json, false),
            ListenerMode::Raw => (Mode::Raw, false),
            ListenerMode::Tls => (Mode::Text, true),
            ListenerMode::JsonTls => (Mode::Json, true),
            ListenerMode::RawTls => (Mode::Raw, true),
        }
    }
}

/// Whether a listener's clients must authenticate before anything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// Anyone may connect.
    #[default]
    None,
    /// Clients authenticate first (`/login`, `/auth`, a JWT, or a device's
    /// registration checked against the devices file).
    Required,
}

impl From<bool> for Auth {
    fn from(required: bool) -> Auth {
        match required {
            true => Auth::Required,
            false => Auth::None,
        }
    }
}

/// How two clients compare in a listing.
pub(super) type Order = fn(&ClientView, &ClientView) -> std::cmp::Ordering;

impl ClientSort {
    /// How clients compare by it.
    pub(super) fn order(self) -> Order {
        match self {
            ClientSort::Id => |a, b| a.id.cmp(&b.id),
            ClientSort::Name => |a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            ClientSort::Addr => |a, b| a.addr.cmp(&b.addr),
            ClientSort::Mode => |a, b| a.mode.cmp(&b.mode).then(a.id.cmp(&b.id)),
            ClientSort::Connected => {
                |a, b| a.connected_at.cmp(&b.connected_at).then(a.id.cmp(&b.id))
            }
            ClientSort::Activity => {
                |a, b| a.last_activity.cmp(&b.last_activity).then(a.id.cmp(&b.id))
            }
            ClientSort::MessagesIn => {
                |a, b| a.messages_in.cmp(&b.messages_in).then(a.id.cmp(&b.id))
            }
            ClientSort::MessagesOut => {
                |a, b| a.messages_out.cmp(&b.messages_out).then(a.id.cmp(&b.id))
            }
            ClientSort::BytesIn => |a, b| a.bytes_in.cmp(&b.bytes_in).then(a.id.cmp(&b.id)),
            ClientSort::BytesOut => |a, b| a.bytes_out.cmp(&b.bytes_out).then(a.id.cmp(&b.id)),
            ClientSort::Queue => |a, b| a.queue_bytes.cmp(&b.queue_bytes).then(a.id.cmp(&b.id)),
            ClientSort::Closed => |a, b| a.closed_at.cmp(&b.closed_at).then(a.id.cmp(&b.id)),
        }
    }
}
