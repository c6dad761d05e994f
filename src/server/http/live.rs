//! `/api/v1/live`: the console's live feed, a WebSocket. Once a second it
//! sends a snapshot (stats, listeners, and the windows of clients, rooms
//! and recent disconnects the page shows); while the page watches a room
//! or a client, the messages seen there, at most every 100 ms.
//!
//! The feed never slows the relay: snapshots are read like any API call,
//! and traffic comes from a lossy tap (see the hub's `tap`): when the page
//! falls behind, messages are dropped and counted, and the page is told.

use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::AppState;
use crate::hub::{unix_millis, Seen, Watcher};
use crate::server::background::Background;
use crate::server::control::{ClientQuery, Control, RoomQuery};

/// How often a snapshot is sent.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest time between two traffic messages.
pub(super) const TRAFFIC_INTERVAL: Duration = Duration::from_millis(100);

/// Most messages in one traffic message; the rest wait in the tap (which
/// drops what does not fit). Small, so that encoding one takes the
/// runtime's thread from the relay for a moment only.
const TRAFFIC_BATCH: usize = 100;

/// Most bytes of a message's body shown; its size is shown in full.
const SHOWN_BYTES: usize = 16 * 1024;

/// The WebSocket close code of a server going down (RFC 6455, 7.4.1).
pub(super) const GOING_AWAY: u16 = 1001;

/// Largest frame the page may send (its requests are small).
const MAX_REQUEST: usize = 16 * 1024;

/// The feed's read buffer: the page's requests are small (tungstenite's
/// default is 128 KiB).
const READ_BUFFER: usize = 4 * 1024;

pub(crate) async fn upgrade(State(app): AppState, upgrade: WebSocketUpgrade) -> Response {
    let (control, background) = (app.control.clone(), app.background.clone());
    upgrade
        .max_message_size(MAX_REQUEST)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| feed(control, background, socket))
}

/// What the page shows: which windows of the lists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct View {
    clients: ClientQuery,
    rooms: RoomQuery,
    closed: ClientQuery,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Request {
    View {
        clients: Option<Box<ClientQuery>>,
        rooms: Option<Box<RoomQuery>>,
        closed: Option<Box<ClientQuery>>,
    },
    Watch {
        room: Option<String>,
        client: Option<u64>,
    },
    Unwatch {},
}

async fn feed(control: Control, background: Background, mut socket: WebSocket) {
    let hello = json!({ "type": "hello", "version": env!("CARGO_PKG_VERSION") });
    if send(&mut socket, &hello).await.is_err() {
        return;
    }
    let mut view = View::default();
    let mut watcher: Option<Watcher> = None;
    let mut snapshots = tokio::time::interval(SNAPSHOT_INTERVAL);
    snapshots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopping = control.stopping();
    loop {
        let tapped = async {
            match &watcher {
                Some(watcher) => watcher.tap().ready().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stopping.cancelled() => {
                // The page reconnects with its backoff, and says so.
                let close = CloseFrame { code: GOING_AWAY, reason: Utf8Bytes::from_static("the server is shutting down") };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
            _ = snapshots.tick() => {
                let text = snapshot_off_runtime(&background, &control, &view).await;
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            () = tapped => {
                let Some(watcher) = &watcher else { continue };
                // What came in the last interval, a batch at a time, giving
                // way to the relay between batches.
                loop {
                    let (text, more) = traffic_off_runtime(&background, watcher).await;
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                    if !more {
                        break;
                    }
                }
                tokio::time::sleep(TRAFFIC_INTERVAL).await;
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let answer = match serde_json::from_str::<Request>(&text) {
                    Err(e) => Some(json!({ "type": "error", "code": "bad_request", "message": e.to_string() }).to_string()),
                    Ok(Request::View { clients, rooms, closed }) => {
                        if let Some(clients) = clients { view.clients = *clients; }
                        if let Some(rooms) = rooms { view.rooms = *rooms; }
                        if let Some(closed) = closed { view.closed = *closed; }
                        Some(snapshot_off_runtime(&background, &control, &view).await)
                    }
                    Ok(Request::Watch { room, client }) => {
                        watcher = None;
                        match control.watch(room.as_deref(), client) {
                            Ok(w) => {
                                watcher = Some(w);
                                Some(json!({ "type": "watching", "room": room, "client": client }).to_string())
                            }
                            Err(e) => Some(json!({ "type": "error", "code": e.code, "message": e.message }).to_string()),
                        }
                    }
                    Ok(Request::Unwatch {}) => {
                        watcher = None;
                        Some(json!({ "type": "watching", "room": null, "client": null }).to_string())
                    }
                };
                if let Some(answer) = answer {
                    if socket.send(Message::Text(answer.into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn send(socket: &mut WebSocket, value: &Value) -> Result<(), axum::Error> {
    socket
        .send(Message::Text(Utf8Bytes::from(value.to_string())))
        .await
}

/// The page's periodic picture of the server, serialized straight from
/// the query API's answers: no intermediate JSON tree, as this runs every
/// second per console on a runtime thread the relay shares.
#[derive(Serialize)]
struct Snapshot<T: Serialize, C: Serialize, R: Serialize> {
    r#type: &'static str,
    at: u64,
    stats: T,
    listeners: Vec<crate::server::control::ListenerView>,
    clients: C,
    rooms: R,
    closed: C,
}

/// A listing, or why the page's query for it was refused.
#[derive(Serialize)]
#[serde(untagged)]
enum Listed<T> {
    Page(T),
    Error { error: String },
}

fn listed<T>(result: Result<T, crate::server::control::ControlError>) -> Listed<T> {
    match result {
        Ok(page) => Listed::Page(page),
        Err(e) => Listed::Error { error: e.message },
    }
}

/// A snapshot built on the admin thread: listing the clients sorts all of
/// them (35 to 40 ms at 9,000 clients), time a runtime thread the relay
/// shares should not spend.
async fn snapshot_off_runtime(background: &Background, control: &Control, view: &View) -> String {
    let (control, view) = (control.clone(), view.clone());
    background
        .run(move || snapshot(&control, &view))
        .await
        .unwrap_or_else(internal_error)
}

fn internal_error() -> String {
    json!({ "type": "error", "code": "internal", "message": "the admin thread failed" }).to_string()
}

fn snapshot(control: &Control, view: &View) -> String {
    let mut closed = view.closed.clone();
    closed.state = Some(crate::server::control::ClientState::Closed);
    let snapshot = Snapshot {
        r#type: "snapshot",
        at: unix_millis(SystemTime::now()),
        stats: control.stats(),
        listeners: control.listeners(),
        clients: listed(control.clients(&view.clients)),
        rooms: control.rooms(&view.rooms),
        closed: listed(control.clients(&closed)),
    };
    serde_json::to_string(&snapshot).expect("snapshots serialize")
}

/// One message as the page sees it: its (first) bytes as `text` when
/// they are UTF-8 (the page encodes them back for its hex view), in
/// base64 as `bytes` when they are not. Never both: each item costs the
/// relay's runtime its encoding, thousands a second in a busy room.
#[derive(Serialize)]
struct Item<'a> {
    at: u64,
    room: Option<&'a str>,
    from: &'a str,
    from_id: Option<u64>,
    to: Option<&'a str>,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<String>,
    text: Option<&'a str>,
    /// The message's position in its room's history (rooms that keep one).
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<String>,
}

#[derive(Serialize)]
struct Traffic<'a> {
    r#type: &'static str,
    items: Vec<Item<'a>>,
    dropped: u64,
}

/// The next traffic message, and whether the tap held more. Encoded on
/// the admin thread: a batch takes a few hundred microseconds, which on a
/// runtime thread would hold back every client that thread serves.
pub(super) async fn traffic_off_runtime(
    background: &Background,
    watcher: &Watcher,
) -> (String, bool) {
    let sightings = watcher.tap().take_some(TRAFFIC_BATCH);
    let more = sightings.items.len() == TRAFFIC_BATCH;
    let text = background
        .run(move || traffic(&sightings))
        .await
        .unwrap_or_else(internal_error);
    (text, more)
}

/// A traffic message of `sightings`.
fn traffic(sightings: &crate::hub::Sightings) -> String {
    let items = sightings.items.iter().map(item).collect();
    let message = Traffic {
        r#type: "traffic",
        items,
        dropped: sightings.dropped,
    };
    serde_json::to_string(&message).expect("traffic serializes")
}

fn item(seen: &Seen) -> Item<'_> {
    let bytes = &seen.body.bytes;
    let shown = &bytes[..bytes.len().min(SHOWN_BYTES)];
    let text = std::str::from_utf8(shown).ok();
    Item {
        at: unix_millis(seen.at),
        room: seen.room.as_ref().map(|r| r.as_str()),
        from: seen.from.as_str(),
        from_id: seen.from_id.map(|id| id.get()),
        to: seen.to.as_ref().map(|n| n.as_str()),
        size: bytes.len(),
        bytes: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(shown)),
        text,
        offset: seen.offset.map(|offset| offset.to_string()),
    }
}
