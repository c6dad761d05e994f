//! `--http https://ADDR`: the HTTP listener over TLS. Handshakes run in
//! their own tasks, so a client that connects and says nothing delays no
//! one; axum is handed only connections that finished theirs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use crate::server::ServerState;
use crate::transport::{tls, ServerTls, TlsTransport};

/// Handshakes under way at once. Each holds a socket and a few KiB until
/// it finishes or times out; past this many, new connections are closed at
/// once, so a flood of silent connections costs a bounded amount and
/// clients that finish their handshakes still get in.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Handshakes under way at once from one address (an IPv6 /64): a
/// sixteenth of the pool, so that one address's silent connections cannot
/// take all of it and shut everyone else out.
const MAX_PENDING_PER_ADDRESS: usize = MAX_PENDING_HANDSHAKES / 16;

/// Handshakes under way, by address.
#[derive(Default)]
struct PendingByAddress(Mutex<HashMap<IpAddr, usize>>);

impl PendingByAddress {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        crate::sync::lock(&self.0)
    }

    /// Counts one more from `ip`, unless it has its share already.
    fn begin(self: &Arc<Self>, ip: IpAddr) -> Option<PendingFrom> {
        let ip = crate::throttle::address_key(ip);
        let mut counts = self.counts();
        let count = counts.entry(ip).or_default();
        if *count >= MAX_PENDING_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(PendingFrom(self.clone(), ip))
    }
}

/// One handshake under way from an address; done when dropped.
struct PendingFrom(Arc<PendingByAddress>, IpAddr);

impl Drop for PendingFrom {
    fn drop(&mut self) {
        let mut counts = self.0.counts();
        if let Some(count) = counts.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

/// How long to wait after `accept` fails for a reason other than the
/// connection (e.g. out of file descriptors), before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// TLS connections that finished their handshake, for `axum::serve`.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsTransport, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(super) fn new(
        listener: TcpListener,
        shared: Arc<ServerState>,
        tls: Arc<ServerTls>,
    ) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (ready, handed) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(listener, shared, tls, ready));
        TlsListener {
            ready: handed,
            local,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsTransport;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop ended (it does not, short of a panic): serve
            // the clients already connected, accept no more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ServerState>,
    tls: Arc<ServerTls>,
    ready: mpsc::Sender<(TlsTransport, SocketAddr)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let by_address = Arc::new(PendingByAddress::default());
    let limit = shared.config.tls_handshake_timeout;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "an HTTPS connection failed before it was accepted");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Some(from_address) = by_address.begin(peer.ip()) else {
            debug!(%peer, "closed an HTTPS connection: {MAX_PENDING_PER_ADDRESS} TLS handshakes from its address are under way already");
            continue;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            warn!(%peer, "closed an HTTPS connection: {MAX_PENDING_HANDSHAKES} TLS handshakes are under way already");
            continue;
        };
        shared.tune(&stream, peer);
        let (ready, config, shared) = (ready.clone(), tls.http(), shared.clone());
        tokio::spawn(async move {
            let handshake = tls::accept(config, stream, limit).await;
            drop((permit, from_address));
            match handshake {
                Ok((stream, _certificate)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Err(error) => {
                    shared.monitor.tls_failed();
                    debug!(%peer, %error, "closed an HTTPS connection that did not start TLS");
                }
            }
        });
    }
}
