//! The admin API, `/api/v1/...`: the same truth as the console, for
//! scripts and operators. Errors are JSON, `{"error":{"code","message"}}`,
//! with the status code that fits (400, 401, 403, 404, 409, 429).

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use utoipa::OpenApi;

use super::{error, App, AppState};
use crate::server::control::{
    ClientCounts, ClientPage, ClientQuery, ClientSort, ClientState, ClientView, DeviceView,
    GapView, HistoryQuery, InOut, KeptView, KickRequest, ListenerView, Memory, OpenListener,
    RateFigures, RoomDetail, RoomHistory, RoomPage, RoomQuery, RoomView, SendRequest, SendResult,
    SortOrder, Stats, UdpView,
};

/// The admin API's OpenAPI description, served at `/api/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard admin API",
        description = "The state of a switchboard relay, and what its admin can do to it. Needs the admin token (Authorization: Bearer) unless called on loopback of a server without one."
    ),
    paths(stats, clients, client, kick, rooms, room, room_history, send, listeners, open_listener, close_listener),
    components(schemas(
        Stats, ClientCounts, InOut, RateFigures, Memory, ListenerView, UdpView, ClientView, DeviceView, ClientPage,
        RoomView, RoomPage, RoomDetail, RoomHistory, KeptView, GapView, SendRequest, SendResult, KickRequest, OpenListener, ApiError,
        ClientState, ClientSort, SortOrder, crate::cluster::ClusterStatus, crate::cluster::NodeStatus
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// An error.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ApiError {
    /// What went wrong.
    error: ApiErrorBody,
}

/// The error itself.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct ApiErrorBody {
    /// A stable code, e.g. `no_such_client`, `port_taken`.
    code: String,
    /// For people.
    message: String,
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/clients", get(clients))
        .route("/api/v1/clients/{id}", get(client).delete(kick))
        .route("/api/v1/rooms", get(rooms))
        .route("/api/v1/rooms/{room}", get(room))
        .route("/api/v1/rooms/{room}/history", get(room_history))
        .route("/api/v1/send", post(send))
        .route("/api/v1/listeners", get(listeners).post(open_listener))
        .route("/api/v1/listeners/{id}", delete(close_listener))
        .route("/api/v1/openapi.json", get(openapi))
}

fn bad_json(rejection: JsonRejection) -> Response {
    unreadable(rejection.status(), rejection.body_text())
}

fn bad_query(rejection: QueryRejection) -> Response {
    unreadable(StatusCode::BAD_REQUEST, rejection.body_text())
}

/// The fields that take one of a few values (enums in `control`): one that
/// has another is refused with its own code, `bad_sort`, `bad_auth`...
const CHOICES: [&str; 5] = ["state", "sort", "order", "mode", "auth"];

/// A request the API could not read, told why: serde's message names the
/// field and, for a field of [`CHOICES`], the values it takes (a `400`,
/// as any other bad value the API checks itself).
fn unreadable(status: StatusCode, why: String) -> Response {
    match CHOICES
        .iter()
        .find(|field| why.contains(&format!(": {field}: unknown variant")))
    {
        Some(field) => error(StatusCode::BAD_REQUEST, &format!("bad_{field}"), why),
        None => error(status, "bad_request", why),
    }
}

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The server at a glance.
#[utoipa::path(get, path = "/api/v1/stats", responses((status = 200, body = Stats)))]
async fn stats(State(app): AppState) -> Json<Stats> {
    Json(app.control.stats())
}

/// Clients, connected (or recently gone, with `state=closed`): filtered,
/// sorted and paged, like NATS's `/connz`.
#[utoipa::path(get, path = "/api/v1/clients", params(ClientQuery),
    responses((status = 200, body = ClientPage), (status = 400, body = ApiError)))]
async fn clients(
    State(app): AppState,
    query: Result<Query<ClientQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_query(rejection),
    };
    match app.control.clients(&query) {
        Ok(page) => Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One connected client.
#[utoipa::path(get, path = "/api/v1/clients/{id}", params(("id" = u64, Path, description = "The client's id")),
    responses((status = 200, body = ClientView), (status = 404, body = ApiError)))]
async fn client(State(app): AppState, Path(id): Path<u64>) -> Response {
    match app.control.client(id) {
        Ok(client) => Json(client).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Disconnects a client, telling it why (optional JSON body `{"reason": ...}`).
#[utoipa::path(delete, path = "/api/v1/clients/{id}", params(("id" = u64, Path, description = "The client's id")),
    request_body(content = KickRequest, description = "Optional"),
    responses((status = 200, description = "The client, as it was"), (status = 404, body = ApiError)))]
async fn kick(State(app): AppState, Path(id): Path<u64>, body: Bytes) -> Response {
    let request: KickRequest = if body.iter().all(u8::is_ascii_whitespace) {
        KickRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("bad JSON body: {e}; expected {{\"reason\": \"...\"}}"),
                )
            }
        }
    };
    match app.control.kick(id, request.reason.as_deref()) {
        Ok(client) => Json(serde_json::json!({ "kicked": client })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Rooms, largest first.
#[utoipa::path(get, path = "/api/v1/rooms", params(RoomQuery), responses((status = 200, body = RoomPage)))]
async fn rooms(State(app): AppState, query: Result<Query<RoomQuery>, QueryRejection>) -> Response {
    match query {
        Ok(Query(query)) => Json(app.control.rooms(&query)).into_response(),
        Err(rejection) => bad_query(rejection),
    }
}

/// One room and its members.
#[utoipa::path(get, path = "/api/v1/rooms/{room}", params(("room" = String, Path, description = "The room's name")),
    responses((status = 200, body = RoomDetail), (status = 404, body = ApiError)))]
async fn room(State(app): AppState, Path(room): Path<String>) -> Response {
    match app.control.room(&room) {
        Ok(room) => Json(room).into_response(),
        Err(e) => e.into_response(),
    }
}

/// What a room keeps of what was said in it (with `--history`): the last
/// messages, a page before an offset, or everything after one.
#[utoipa::path(get, path = "/api/v1/rooms/{room}/history",
    params(("room" = String, Path, description = "The room's name"), HistoryQuery),
    responses((status = 200, body = RoomHistory), (status = 400, body = ApiError)))]
async fn room_history(
    State(app): AppState,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_query(rejection),
    };
    match app.control.room_history(&room, &query).await {
        Ok(history) => Json(history).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Sends a message as the admin (named `admin`), to a room or a client.
#[utoipa::path(post, path = "/api/v1/send", request_body = SendRequest,
    responses((status = 200, body = SendResult), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn send(State(app): AppState, request: Result<Json<SendRequest>, JsonRejection>) -> Response {
    let Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return bad_json(rejection),
    };
    match app.control.send(&request) {
        Ok(result) => Json(result).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The listeners.
#[utoipa::path(get, path = "/api/v1/listeners", responses((status = 200, body = Vec<ListenerView>)))]
async fn listeners(State(app): AppState) -> Json<Vec<ListenerView>> {
    Json(app.control.listeners())
}

/// Opens a TCP listener (port 0: any free port), optionally closed once
/// unused for a while.
#[utoipa::path(post, path = "/api/v1/listeners", request_body = OpenListener,
    responses((status = 201, body = ListenerView), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
async fn open_listener(
    State(app): AppState,
    request: Result<Json<OpenListener>, JsonRejection>,
) -> Response {
    let Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return bad_json(rejection),
    };
    match app.control.open_listener(&request) {
        Ok(listener) => (StatusCode::CREATED, Json(listener)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Closes a listener the admin opened, and disconnects its clients.
#[utoipa::path(delete, path = "/api/v1/listeners/{id}", params(("id" = u32, Path, description = "The listener's id")),
    responses((status = 200, body = ListenerView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn close_listener(State(app): AppState, Path(id): Path<u32>) -> Response {
    match app.control.close_listener(id) {
        Ok(listener) => Json(listener).into_response(),
        Err(e) => e.into_response(),
    }
}
