//! The HTTP listener (`--http`): the web console, the admin API, metrics,
//! and WebSocket clients, from the one binary with every asset embedded.
//!
//! - `/`: the console (`console`), and `/login`, `/logout` (`auth`);
//! - `/ws`: WebSocket clients of the relay (`ws`), open to anyone the
//!   relay's own rules let in, from an allowed origin;
//! - `/api/v1/...`: the admin API (`api`), and `/api/v1/live`, the
//!   console's live feed (`live`);
//! - `/metrics`: Prometheus text format (`metrics`); `/healthz`;
//! - `/play/api/...`: the playground (`play`), with `--playground`, open to
//!   anyone: each visitor sees only the ports it was given.
//!
//! Everything but `/ws`, `/healthz` and the login page is for the admin:
//! answered on loopback, or to whoever presents the admin token.
//! Handlers are thin: they call [`Control`], the server's query API, and
//! never the hub itself.

mod api;
mod auth;
mod connections;
mod console;
mod forwarded;
mod https;
mod live;
mod metrics;
mod play;
mod ws;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::control::{Control, ControlError, ErrorKind};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) control: Control,
    pub(crate) auth: auth::AdminGate,
    pub(crate) metrics: metrics::HttpMetrics,
    /// The listener WebSocket clients count under.
    pub(crate) ws_listener: Arc<crate::server::listeners::Listener>,
    /// Whether this is HTTPS.
    pub(crate) https: bool,
    /// Where snapshots, traffic and metrics are built.
    pub(crate) background: crate::server::background::Background,
    /// The playground's ports, with `--playground`.
    pub(crate) playground: Option<Arc<crate::server::playground::Playground>>,
}

pub(crate) type AppState = State<Arc<App>>;

/// Serves HTTP on `listener` until `stop` is cancelled.
pub(crate) async fn serve(
    control: Control,
    listener: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let shared = control.shared().clone();
    let tls = match shared.config.http.listen {
        Some(http) if http.tls => shared.tls.clone(),
        _ => None,
    };
    let playground = control
        .config()
        .playground
        .enabled
        .then(|| crate::server::playground::Playground::new(control.clone()));
    if let Some(playground) = &playground {
        play::expire_ports(playground.clone(), stop.clone());
    }
    let app = Arc::new(App {
        playground,
        auth: auth::AdminGate::new(control.config()),
        metrics: metrics::HttpMetrics::default(),
        ws_listener: control.websocket_listener(addr, tls.is_some()),
        https: tls.is_some(),
        background: crate::server::background::Background::start("admin")?,
        control,
    });
    let router = router(app);
    match tls {
        Some(tls) => {
            let listener = https::TlsListener::new(listener, shared.clone(), tls);
            connections::serve(listener, router, shared, stop).await;
        }
        None => {
            // The same socket options as TCP clients: browsers are clients too.
            let tuning = shared.clone();
            let listener = listener.tap_io(move |tcp| {
                if let Ok(peer) = tcp.peer_addr() {
                    tuning.tune(tcp, peer);
                }
            });
            connections::serve(listener, router, shared, stop).await;
        }
    }
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    let admin = Router::new()
        .merge(api::routes())
        .route("/api/v1/live", get(live::upgrade))
        .route("/metrics", get(metrics::scrape))
        .merge(console::routes())
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_admin,
        ));
    Router::new()
        .merge(admin)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(play::routes())
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .merge(console::public_routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .with_state(app)
}

/// Counts each request for `/metrics`, by route and status class.
async fn count_requests(State(app): AppState, request: Request, next: Next) -> Response {
    let route = metrics::route_label(request.uri().path());
    let response = next.run(request).await;
    app.metrics.count(route, response.status());
    response
}

/// An error as the API reports it: `{"error":{"code":..,"message":..}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
        };
        error(status, self.code, self.message)
    }
}
