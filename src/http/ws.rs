//! `/ws`: WebSocket clients of the relay. A browser is a client like any
//! other (a name, rooms, direct messages, the same limits and flow
//! control), speaking the JSON mode one request or event per text frame
//! (`/ws`), or raw bytes as binary frames (`/ws?mode=raw&room=R`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tracing::warn;

use super::{error, AppState};
use crate::hub::{ClientKind, ClientMeta, RoomName};
use crate::protocol::{Json, Raw};
use crate::transport::{WebSocketTransport, WsMode, WsSettings};

/// The read buffer of each WebSocket client: frames are read through it,
/// and idle clients hold it, so it is small.
const READ_BUFFER: usize = 1024;

/// What a WebSocket client's frames are buffered up to before a write; a
/// batch of the client's queue is flushed at its end anyway.
const WRITE_BUFFER: usize = 64 * 1024;

/// Largest frame read, as a multiple of the line limit: a frame over the
/// line limit but under this gets an error and the connection goes on, as
/// an overlong line does; past it, the connection is closed (1009).
const FRAME_LIMIT_LINES: usize = 4;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    mode: Option<String>,
    room: Option<String>,
}

/// Admits a WebSocket client and serves it.
pub(crate) async fn upgrade(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        if !app.auth.origin_allowed(origin, host) {
            warn!(%peer, %origin, "refused a WebSocket client from another site (allowed origin)");
            return error(
                StatusCode::FORBIDDEN,
                "bad_origin",
                format!("pages from {origin} may not connect here; the server's admin can allow it with --allowed-origin"),
            );
        }
    }
    let mode = match query.mode.as_deref() {
        None | Some("json") => WsMode::Json,
        Some("raw") => WsMode::Raw,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_mode",
                format!("unknown mode {other:?}: expected json (default) or raw"),
            )
        }
    };
    let room = match query.room.as_deref() {
        None => RoomName::lobby(),
        Some(room) => match RoomName::parse_user(room.as_bytes()) {
            Ok(room) => room,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_room", e.to_string()),
        },
    };
    let shared = app.control.shared().clone();
    let slot = match shared.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(reason) => {
            warn!(%peer, "refused WebSocket connection: {reason}");
            return error(StatusCode::SERVICE_UNAVAILABLE, "refused", reason);
        }
    };
    let config = &shared.config;
    let settings = WsSettings {
        ping_interval: config.ws_ping_interval,
        pong_timeout: config.ws_pong_timeout,
    };
    let max_line = config.max_line;
    let frame_limit = max_line.saturating_mul(FRAME_LIMIT_LINES);
    let listener = app.ws_listener.clone();
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .on_upgrade(move |socket| {
            let transport = WebSocketTransport::new(socket, mode, settings);
            let kind = match mode {
                WsMode::Json => ClientKind::WebSocket,
                WsMode::Raw => ClientKind::WebSocketRaw,
            };
            let meta = ClientMeta {
                kind,
                peer,
                listener: listener.id,
            };
            let serving: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
                match mode {
                    WsMode::Json => Box::pin(shared.client(
                        &listener,
                        Arc::new(Json::new(max_line)),
                        transport,
                        meta,
                        room,
                        slot,
                    )),
                    WsMode::Raw => Box::pin(shared.client(
                        &listener,
                        Arc::new(Raw),
                        transport,
                        meta,
                        room,
                        slot,
                    )),
                };
            // Tracked like every client, so a shutdown waits for it.
            shared.tracker.track_future(serving)
        })
}
