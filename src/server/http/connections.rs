//! The `--http` listener's connections: admitted as TCP clients are
//! (counted in `--max-connections` and, but for a trusted proxy's, in the
//! per-address limits), each given `--http-header-timeout` to send a
//! request's headers and no longer to sit idle between requests, and
//! closed gracefully when the server stops.
//!
//! A connection that becomes a `/ws` client hands its slot over to it
//! ([`HeldSlot`]): a browser is one connection, counted once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::server::{Held, ServerState};

/// The connection slot of the HTTP connection a request came on, for the
/// `/ws` upgrade to take over (the connection then is the client).
#[derive(Clone, Debug, Default)]
pub(crate) struct HeldSlot(Arc<Mutex<Option<Held>>>);

impl HeldSlot {
    /// The slot, once: the first upgrade on the connection takes it; the
    /// others hold nothing.
    pub(crate) fn take(&self) -> Held {
        crate::sync::lock(&self.0).take().unwrap_or(Held::Nothing)
    }
}

/// How long a refused connection has to send its request before it is
/// told why anyway.
const REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a connection refused at the door `503` with the reason (as a
/// refused TCP client is told), after reading its request's headers (so
/// that closing does not reset it before it reads the answer), and closes.
async fn turn_away<Io>(mut io: Io, reason: String)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = [0u8; 4096];
    let mut read = 0;
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        while read < request.len() {
            match io.read(&mut request[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if memchr::memmem::find(&request[..read], b"\r\n\r\n").is_some() {
                break;
            }
        }
    })
    .await;
    let body = serde_json::json!({"error": {"code": "refused", "message": reason}}).to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        let _ = io.write_all(answer.as_bytes()).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// Serves the connections `listener` accepts with `router` until `stop`;
/// then lets each finish the request it is in, and returns once all have.
pub(super) async fn serve<L>(
    mut listener: L,
    router: Router,
    shared: Arc<ServerState>,
    stop: CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        // Counted as a TCP client is: a browser holds a socket and memory
        // like one. A trusted proxy's connections carry many clients: only
        // the total counts them, and `/ws` counts each by its address.
        let proxied = shared
            .config
            .http
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer.ip()));
        let admitted = match proxied {
            true => shared.reserve().map(Held::Reserved),
            false => shared
                .admit(Held::Nothing, peer.ip(), false)
                .map(|admitted| Held::Slot(admitted.slot)),
        };
        let held = match admitted {
            Ok(held) => held,
            Err(refusal) => {
                if refusal.log {
                    warn!(%peer, "refused an HTTP connection: {}", refusal.reason);
                }
                connections.spawn(turn_away(io, refusal.reason));
                continue;
            }
        };
        let held = HeldSlot(Arc::new(Mutex::new(Some(held))));
        let service = router.clone().map_request({
            let held = held.clone();
            move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.extensions_mut().insert(held.clone());
                request.map(Body::new)
            }
        });
        let header_timeout = shared.config.http.header_timeout;
        let stop = stop.clone();
        connections.spawn(async move {
            // HTTP/1.1 alone (what the TLS side offers by ALPN, and what a
            // WebSocket upgrade needs): its header timer runs from the
            // first moment, where protocol detection would wait unbounded
            // for a first byte.
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                debug!(%peer, %error, "an HTTP connection ended with an error");
            }
            // Its slot goes with it, unless a WebSocket client took it.
            drop(held);
        });
    }
    connections.close();
    connections.wait().await;
}
