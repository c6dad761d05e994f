//! What the admin API answers: the server's figures, its listeners,
//! clients and rooms, as JSON (and as `switchboard status` reads them
//! back).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::requests::Auth;
use crate::hub::{unix_millis, ClientInfo, CloseReason};
use crate::server::listeners::{Listener, Origin};

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
    /// The history store, when history is kept on disk (`--history-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_store: Option<crate::storage::StoreStatus>,
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
    /// Bytes the rooms' histories hold (`--history`); evicted, oldest
    /// first, before any client is cut off.
    pub history: usize,
    /// Kept messages evicted, ever, to keep within the budget.
    pub history_evicted: u64,
    /// The process's resident memory, in bytes (0 where unknown).
    pub rss: u64,
}

/// A listener.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListenerView {
    /// Its id.
    pub id: u32,
    /// `text`, `json`, `raw`; over TLS `tls`, `json+tls`, `raw+tls`;
    /// `udp`; or `ws` / `wss` (the HTTP listener's WebSocket clients).
    pub mode: String,
    /// The address it is bound to.
    pub addr: String,
    /// The room its clients start in.
    pub room: String,
    /// Clients connected through it now.
    pub clients: usize,
    /// Who opened it.
    pub origin: ListenerOrigin,
    /// It closes once unused for this long.
    pub expire_after_idle_seconds: Option<u64>,
    /// Seconds until it closes for being unused, while it is.
    pub expires_in_seconds: Option<u64>,
    /// Whether its clients must authenticate first.
    pub auth: Auth,
    /// `v1` or `v2`: its connections come through a load balancer that
    /// names each client in a PROXY protocol header.
    pub proxy: Option<String>,
    /// A device listener's options (`register=imei&heartbeat=hex:FE`),
    /// and its room template as `room`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// What a UDP listener counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpView>,
}

/// What a UDP listener counted since it opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UdpView {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Messages not sent to peers whose address is not proven: they would
    /// have been sent more than three times the bytes the peer sent
    /// (the amplification cap; docs/deploy.md).
    pub capped: u64,
    /// Messages too big for a datagram (65,507 bytes), not sent.
    pub oversize: u64,
    /// Datagrams dropped as they came: their peer had 64 waiting.
    pub dropped_in: u64,
    /// Datagrams from new peers the server's limits did not admit.
    pub refused: u64,
    /// Peers served now whose address is not proven (not registered with
    /// a device's key): at most the listener's `max-unproven`.
    pub unproven: u64,
    /// How many peers whose address is not proven it takes: its
    /// `max-unproven`, or half of the server's `--max-connections`.
    pub max_unproven: u64,
    /// Datagrams from new peers dropped because `max-unproven` peers whose
    /// address is not proven were served (a flood of forged sources, or a
    /// fleet larger than the option allows).
    pub unproven_full: u64,
}

/// Who opened a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListenerOrigin {
    /// The config: it lives as long as the server.
    Config,
    /// The admin, through the API or the console: it can be closed.
    Api,
    /// A playground visitor's port (`/play`): the admin can close it too.
    Playground,
}

impl ListenerOrigin {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerOrigin::Config => "config",
            ListenerOrigin::Api => "api",
            ListenerOrigin::Playground => "playground",
        }
    }
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
    /// login, a token or a JWT), or by a client certificate: its name is
    /// then its user's, or its certificate's.
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
    /// Its members, by id (at most [`MAX_PAGE`](super::MAX_PAGE)).
    pub members: Vec<ClientView>,
}

/// What a room keeps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoomHistory {
    /// The room.
    pub room: String,
    /// Its history's epoch, in hex (`null`: it keeps none now).
    pub epoch: Option<String>,
    /// The messages, oldest first.
    pub messages: Vec<KeptView>,
    /// Whether there are more: older ones (paging back with `before`), or
    /// newer ones after `since` than `limit` allowed.
    pub more: bool,
    /// Set when `since` was given and the room no longer has all that
    /// came after it.
    pub gap: Option<GapView>,
}

/// One kept message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeptView {
    /// Its position: `EPOCH-SEQ`.
    pub offset: String,
    /// When it was said, in Unix milliseconds.
    pub at: u64,
    /// Who said it.
    pub from: String,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// The exact bytes, in base64, when they are not UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

/// Messages lost to a client resuming from an offset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GapView {
    /// The offset asked for.
    pub since: String,
    /// The oldest kept, from which it resumes (`null`: none).
    pub from: Option<String>,
    /// `too_old`, `epoch`, `not_kept` or `unrecorded`.
    pub reason: String,
}

/// How many a message was queued for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendResult {
    /// Recipients.
    pub delivered: usize,
}

pub(super) fn listener_view(listener: &Listener, http_auth: bool) -> ListenerView {
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
            Origin::Config => ListenerOrigin::Config,
            Origin::Api => ListenerOrigin::Api,
            Origin::Playground => ListenerOrigin::Playground,
        },
        expire_after_idle_seconds: listener.expire_after_idle.map(|d| d.as_secs()),
        expires_in_seconds: listener.expires_in().map(|d| d.as_secs()),
        auth: Auth::from(auth),
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
        udp: listener.udp.as_ref().map(|stats| {
            let read = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            UdpView {
                datagrams_in: read(&stats.datagrams_in),
                datagrams_out: read(&stats.datagrams_out),
                capped: read(&stats.capped),
                oversize: read(&stats.oversize),
                dropped_in: read(&stats.dropped_in),
                refused: read(&stats.refused),
                unproven: read(&stats.unproven),
                max_unproven: read(&stats.max_unproven),
                unproven_full: read(&stats.unproven_full),
            }
        }),
    }
}

pub(super) fn client_view(
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
