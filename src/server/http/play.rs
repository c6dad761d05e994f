//! `/play/api/...`: the playground's API (`--playground`), open to anyone:
//! a visitor is a cookie (`switchboard_play`: HttpOnly, SameSite=Strict,
//! Secure over HTTPS), made when they first ask for a port, and sees and
//! uses only the ports it was given; another visitor's port is a 404, as
//! is a port that closed. Requests from another site's page are refused,
//! as `/ws` refuses them. See [`crate::server::playground`] for what
//! bounds it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{error, App, AppState};
use crate::server::background::Background;
use crate::server::playground::{
    new_visitor, PlayError, PlayMode, Playground, PortView, PortWatch,
};

/// The visitor's cookie.
const COOKIE: &str = "switchboard_play";

/// How long the cookie lasts: a day of tinkering; ports end much sooner.
const COOKIE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How often a watching page is sent its port's state.
const PORT_INTERVAL: Duration = Duration::from_secs(1);

/// How often the playground closes ports left alone.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Largest request a page may send over the live feed (it sends none but
/// pings and its close).
const MAX_REQUEST: usize = 4 * 1024;

/// The feed's read buffer: the page sends next to nothing, and a port in
/// use holds one feed per page (tungstenite's default is 128 KiB).
const FEED_READ_BUFFER: usize = 1024;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/play", get(page))
        .route("/play/w/{share}", get(page))
        .route("/play/api/join", post(join))
        .route("/play/api/ports", post(open))
        .route("/play/api/ports/{port}/clients/{id}", delete(kick))
        .route("/play/api/ports/{port}", get(view).delete(close))
        .route("/play/api/ports/{port}/send", post(send))
        .route("/play/api/ports/{port}/extend", post(extend))
        .route("/play/api/ports/{port}/live", get(live))
}

/// Closes ports left alone, every second, until the server stops.
pub(super) fn expire_ports(playground: Arc<Playground>, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EXPIRE_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => playground.expire(),
            }
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    mode: Option<PlayMode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    /// The share link, or its last part.
    watch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    text: Option<String>,
    bytes: Option<String>,
    to: Option<u64>,
}

/// Why a playground request is refused.
#[derive(Debug)]
enum Refusal {
    /// The playground is off: there is no such page.
    Off,
    /// From another site's page.
    ForeignPage,
    /// The playground said no.
    Play(PlayError),
}

impl From<PlayError> for Refusal {
    fn from(e: PlayError) -> Self {
        Refusal::Play(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let e = match self {
            Refusal::Off => return error(StatusCode::NOT_FOUND, "not_found", "no such page"),
            Refusal::ForeignPage => {
                return error(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    "the playground answers its own page, not another site's",
                )
            }
            Refusal::Play(e) => e,
        };
        let message = e.to_string();
        match e {
            PlayError::NotFound => error(StatusCode::NOT_FOUND, "no_such_port", message),
            PlayError::TooManyPorts { retry, .. } | PlayError::NoneFree { retry } => {
                let code = match e {
                    PlayError::NoneFree { .. } => "no_free_port",
                    _ => "too_many_ports",
                };
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, code, message);
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry.as_secs().max(1)),
                );
                response
            }
            PlayError::TooManyPages => {
                error(StatusCode::TOO_MANY_REQUESTS, "too_many_pages", message)
            }
            PlayError::Bad(_) => error(StatusCode::BAD_REQUEST, "bad_request", message),
        }
    }
}

/// The playground, if it is on, for a request from its own page (or from
/// no page at all: a script).
fn playground<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a Arc<Playground>, Refusal> {
    let playground = app.playground.as_ref().ok_or(Refusal::Off)?;
    match app.auth.foreign_page(headers) {
        None => Ok(playground),
        Some(_) => Err(Refusal::ForeignPage),
    }
}

/// The visitor's id, from their cookie.
fn visitor(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && value.len() == 64)
        .map(|(_, value)| value.to_owned())
}

/// The page (`/play`, and `/play/w/TOKEN` for a share link, which the
/// page then asks to join: a GET changes nothing).
async fn page(State(app): AppState) -> Response {
    match app.playground {
        Some(_) => super::console::page("play.html"),
        None => Refusal::Off.into_response(),
    }
}

/// The visitor's cookie, for a response to a visitor who had none.
fn cookie_for(app: &App, id: &str) -> Option<HeaderValue> {
    let secure = if app.https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/play; Max-Age={}{secure}",
        COOKIE_LIFETIME.as_secs()
    ))
    .ok()
}

/// Lets the visitor in on a port by its share link.
async fn join(
    State(app): AppState,
    headers: HeaderMap,
    Json(request): Json<JoinRequest>,
) -> Result<Response, Refusal> {
    let playground = playground(&app, &headers)?;
    let share = request.watch.rsplit('/').next().unwrap_or_default();
    let (id, fresh) = match visitor(&headers) {
        Some(id) => (id, false),
        None => (new_visitor(), true),
    };
    let view = playground.join(&id, share)?;
    let mut response = Json(view).into_response();
    if let Some(cookie) = fresh.then(|| cookie_for(&app, &id)).flatten() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn kick(
    State(app): AppState,
    Path((port, id)): Path<(u16, u64)>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    let (playground, visitor) = caller(&app, &headers)?;
    playground.kick(&visitor, port, id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn open(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<OpenRequest>,
) -> Result<Response, Refusal> {
    let playground = playground(&app, &headers)?;
    let peer = super::forwarded::client_addr(peer, &headers, &app.auth.trusted_proxies);
    let (id, fresh) = match visitor(&headers) {
        Some(id) => (id, false),
        None => (new_visitor(), true),
    };
    let mode = request.mode.unwrap_or(PlayMode::Text);
    let view = playground.open(&id, peer.ip(), mode)?;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Some(cookie) = fresh.then(|| cookie_for(&app, &id)).flatten() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The visitor and the playground, for a request about one of their ports.
fn caller<'a>(app: &'a App, headers: &HeaderMap) -> Result<(&'a Arc<Playground>, String), Refusal> {
    let playground = playground(app, headers)?;
    let visitor = visitor(headers).ok_or(Refusal::Play(PlayError::NotFound))?;
    Ok((playground, visitor))
}

async fn view(
    State(app): AppState,
    Path(port): Path<u16>,
    headers: HeaderMap,
) -> Result<Json<PortView>, Refusal> {
    let (playground, visitor) = caller(&app, &headers)?;
    Ok(Json(playground.view(&visitor, port)?))
}

async fn extend(
    State(app): AppState,
    Path(port): Path<u16>,
    headers: HeaderMap,
) -> Result<Json<PortView>, Refusal> {
    let (playground, visitor) = caller(&app, &headers)?;
    Ok(Json(playground.extend(&visitor, port)?))
}

async fn close(
    State(app): AppState,
    Path(port): Path<u16>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    let (playground, visitor) = caller(&app, &headers)?;
    playground.close(&visitor, port)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn send(
    State(app): AppState,
    Path(port): Path<u16>,
    headers: HeaderMap,
    Json(request): Json<SendRequest>,
) -> Result<Json<serde_json::Value>, Refusal> {
    let (playground, visitor) = caller(&app, &headers)?;
    let delivered = playground.send(&visitor, port, request.text, request.bytes, request.to)?;
    Ok(Json(serde_json::json!({ "delivered": delivered })))
}

/// The live feed of a port: `{"type":"port",...}` once a second (its
/// clients, when it closes), and `{"type":"traffic",...}` as the console's
/// feed shows a room's, until the port closes (`{"type":"closed"}`).
async fn live(
    State(app): AppState,
    Path(port): Path<u16>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (playground, visitor) = match caller(&app, &headers) {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let watch = match playground.watch(&visitor, port) {
        Ok(watch) => watch,
        Err(e) => return Refusal::from(e).into_response(),
    };
    let background = app.background.clone();
    let stopping = app.control.stopping();
    upgrade
        .max_message_size(MAX_REQUEST)
        .read_buffer_size(FEED_READ_BUFFER)
        .on_upgrade(move |socket| feed(watch, background, stopping, socket))
}

async fn feed(
    watch: PortWatch,
    background: Background,
    stopping: tokio_util::sync::CancellationToken,
    mut socket: WebSocket,
) {
    let mut ticks = tokio::time::interval(PORT_INTERVAL);
    loop {
        tokio::select! {
            () = stopping.cancelled() => {
                let close = CloseFrame { code: super::live::GOING_AWAY, reason: Utf8Bytes::from_static("the server is shutting down") };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
            _ = ticks.tick() => {
                let text = match watch.view() {
                    Some(view) => serde_json::json!({ "type": "port", "port": view }).to_string(),
                    None => {
                        let _ = socket.send(Message::Text(r#"{"type":"closed"}"#.into())).await;
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            () = watch.watcher.tap().ready() => {
                loop {
                    let (text, more) = super::live::traffic_off_runtime(&background, &watch.watcher).await;
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    if !more {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(super::live::TRAFFIC_INTERVAL).await;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
