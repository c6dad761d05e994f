//! `/ws`: WebSocket clients of the relay. A browser is a client like any
//! other (a name, rooms, direct messages, the same limits and flow
//! control), speaking the JSON mode one request or event per text frame
//! (`/ws`), or raw bytes as binary frames (`/ws?mode=raw&room=R`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tracing::warn;

use super::auth::ForeignPage;
use super::{connections, forwarded};
use super::{error, AppState};
use crate::hub::{ClientKind, ClientMeta, RoomName};
use crate::protocol::{Json, Raw};
use crate::server::{Arrival, Held, Proof, RefusalCause};
use crate::transport::{WebSocketTransport, WsMode, WsSettings};

/// The read buffer of each WebSocket client: frames are read through it,
/// and idle clients hold it, so it is small.
const READ_BUFFER: usize = 512;

/// Largest frame read, as a multiple of the line limit: a frame over the
/// line limit but under this gets an error and the connection goes on, as
/// an overlong line does; past it, the connection is closed (1009).
const FRAME_LIMIT_LINES: usize = 4;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    mode: Option<String>,
    room: Option<String>,
}

/// Whether `name` lists `token` (comma-separated, any case).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Admits a WebSocket client and serves it. The opening handshake is
/// checked and answered here (RFC 6455, 4.2), so that the connection is
/// ours once hyper hands it over: see `transport::websocket` for why.
pub(crate) async fn upgrade(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<WsQuery>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    // Behind a trusted proxy, the client it names: for bans, per-address
    // limits, the log and the console.
    let peer = forwarded::client_addr(
        peer,
        headers,
        &app.control.shared().config.http.trusted_proxies,
    );
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key)
            if lists(headers, header::CONNECTION, "upgrade")
                && lists(headers, header::UPGRADE, "websocket") =>
        {
            key.clone()
        }
        _ => {
            return error(
                StatusCode::UPGRADE_REQUIRED,
                "not_websocket",
                "this is the WebSocket endpoint: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket)",
            )
        }
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        let mut response = error(
            StatusCode::BAD_REQUEST,
            "bad_version",
            "WebSocket version 13 is the one spoken here",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    match app.auth.foreign_page(headers) {
        None => {}
        Some(ForeignPage::Origin(origin)) => {
            warn!(%peer, %origin, "refused a WebSocket client from another site (allowed origin)");
            return error(
                StatusCode::FORBIDDEN,
                "bad_origin",
                format!("pages from {origin} may not connect here; the server's admin can allow it with --allowed-origin"),
            );
        }
        Some(ForeignPage::UnknownName(name)) => {
            warn!(%peer, host = %name, "refused a WebSocket client of a page on a name this server does not know (DNS rebinding?); if it is this server's, give it with --server-name");
            return error(
                StatusCode::FORBIDDEN,
                "unknown_host",
                format!("this server does not know itself as {name:?}: a page that reached it by that name may be one DNS rebinding pointed here; the server's admin can add the name with --server-name {name}"),
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
    let asks_credentials = shared.config.http.listen.is_some_and(|http| http.auth);
    // The HTTP connection's slot becomes the client's: one connection,
    // counted once. Behind a trusted proxy, the client's own address is
    // counted now.
    let held = request
        .extensions()
        .get::<connections::HeldSlot>()
        .map_or(Held::Nothing, connections::HeldSlot::take);
    let admitted = match shared.admit(held, peer.ip(), asks_credentials) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            if refusal.log {
                warn!(%peer, "refused WebSocket connection: {}", refusal.reason);
            }
            let status = match refusal.cause {
                RefusalCause::Banned => (StatusCode::FORBIDDEN, "banned"),
                _ => (StatusCode::SERVICE_UNAVAILABLE, "refused"),
            };
            return error(status.0, status.1, refusal.reason);
        }
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "not_websocket",
            "this connection cannot be upgraded to WebSocket (HTTP/1.1 is needed)",
        );
    };
    let config = &shared.config;
    let max_line = config.max_line;
    let settings = WsSettings {
        ping_interval: config.http.ws_ping_interval,
        pong_timeout: config.http.ws_pong_timeout,
        max_frame: max_line.saturating_mul(FRAME_LIMIT_LINES),
        read_buffer: READ_BUFFER,
        rates: shared.client_rates(),
        line_timeout: shared.line_timeout(),
    };
    let listener = app.ws_listener.clone();
    let https = app.https;
    let tracker = shared.tracker.clone();
    // Tracked like every client, so a shutdown waits for it.
    // The task lives as long as the client: what only setting up needs
    // (the upgrade, tungstenite's start, and what it is given) is boxed
    // and freed once done. Made here, not in the task: the task's future
    // would keep the room of all it captured for the setup.
    let setup = Box::pin(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%peer, %error, "a WebSocket upgrade failed");
                return None;
            }
        };
        let transport = WebSocketTransport::new(TokioIo::new(upgraded), mode, settings).await;
        let kind = match mode {
            WsMode::Json => ClientKind::WebSocket,
            WsMode::Raw => ClientKind::WebSocketRaw,
        };
        let meta = ClientMeta {
            kind,
            tls: https,
            peer: peer.into(),
            listener: listener.id,
            sealed: false,
        };
        let arrival = Arrival {
            meta,
            room,
            proof: Proof::Nothing,
            admitted,
        };
        let serving: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match mode {
            WsMode::Json => shared
                .client(&listener, Arc::new(Json::new(max_line)), transport, arrival)
                .boxed(),
            WsMode::Raw => shared
                .client(&listener, Arc::new(Raw), transport, arrival)
                .boxed(),
        };
        Some(serving)
    });
    tracker.spawn(async move {
        // Its own statement: the box goes at the semicolon.
        let serving = setup.await;
        if let Some(serving) = serving {
            serving.await;
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
