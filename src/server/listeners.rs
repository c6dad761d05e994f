//! The TCP listeners: those of the config, and those the admin opens and
//! closes while the server runs (like the online test pages that hand out
//! a port for a few minutes). Each has an accept loop that admits clients
//! within the server's limits and refuses the rest with a reason.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{AdmissionRefusal, Arrival, Bound, Greeting, Held, Proof, ServerState, Slot, Timeouts};
use crate::config::{ListenerSpec, Mode};
use crate::hub::{ClientKind, ClientMeta, CloseReason, Name};
use crate::protocol::{Datagrams, Device, Json, Protocol, Raw, Text};
use crate::transport::udp::UdpStats;
use crate::transport::{proxy, tls, TlsTransport};

/// Shortest and longest pause after a failed `accept` (e.g. out of file
/// descriptors), doubling in between, so the loop neither spins nor gives up.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How long a refused client gets to read why.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Most listeners the admin may have open at once: each holds a port and a
/// task, and the admin API must not be a way to take every port.
pub const MAX_ADMIN_LISTENERS: usize = 64;

/// Who opened a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The config (flags, file): lives as long as the server.
    Config,
    /// The admin, through the API or the console: can be closed.
    Api,
    /// A visitor of the playground (`/play`): closed with its port.
    Playground,
}

/// One listener, as the server keeps track of it.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) id: u32,
    /// The mode, address (as bound) and start room; `None` for the HTTP
    /// listener's WebSocket clients.
    pub(crate) spec: Option<ListenerSpec>,
    /// The WebSocket listener's address.
    pub(crate) addr: SocketAddr,
    pub(crate) origin: Origin,
    /// Whether the HTTP listener is HTTPS (TCP listeners: see the spec).
    tls: bool,
    clients: AtomicUsize,
    /// Closed when unused this long.
    pub(crate) expire_after_idle: Option<Duration>,
    /// What a UDP listener counts (`None`: a TCP or HTTP listener).
    pub(crate) udp: Option<Arc<UdpStats>>,
    /// Since when it has had no clients.
    idle_since: Mutex<Option<Instant>>,
    /// What its clients are held to, made from the server's timeouts of
    /// the moment (see [`ServerState::timeouts_for`]): one copy shared by
    /// its clients, not 72 bytes each.
    ///
    /// [`ServerState::timeouts_for`]: super::ServerState::timeouts_for
    pub(super) timeouts: Mutex<Option<SharedTimeouts>>,
    pub(crate) stop: CancellationToken,
}

/// A listener's timeouts, and the server's they were made from: made
/// again once a reload replaces those.
#[derive(Debug)]
pub(super) struct SharedTimeouts {
    pub(super) server: Arc<Timeouts>,
    pub(super) listener: Arc<Timeouts>,
}

impl Listener {
    pub(crate) fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub(crate) fn connected(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
        *crate::sync::lock(&self.idle_since) = None;
    }

    pub(crate) fn disconnected(&self) {
        if self.clients.fetch_sub(1, Ordering::Relaxed) == 1 {
            *crate::sync::lock(&self.idle_since) = Some(Instant::now());
        }
    }

    /// How long until it closes for being unused, if it will.
    pub(crate) fn expires_in(&self) -> Option<Duration> {
        let after = self.expire_after_idle?;
        let since = (*crate::sync::lock(&self.idle_since))?;
        Some(after.saturating_sub(since.elapsed()))
    }

    /// The mode as the admin API names it: the scheme of its spec (`text`,
    /// `tls`, `json+tls`...), or `ws` or `wss` for the HTTP listener.
    pub(crate) fn mode(&self) -> &'static str {
        match &self.spec {
            Some(spec) => spec.scheme(),
            None if self.tls => "wss",
            None => "ws",
        }
    }
}

/// Every listener.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    next_id: AtomicU32,
    all: Mutex<Vec<Arc<Listener>>>,
}

/// Why the admin could not open or close a listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The port is in use, or the address cannot be bound.
    #[error("cannot listen on {addr}: {error}")]
    CannotBind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// No such listener.
    #[error("no listener has the id {0}")]
    NoSuchListener(u32),
    /// The listener comes from the config and lives as long as the server.
    #[error("listener {0} comes from the server's config and cannot be closed")]
    NotClosable(u32),
    /// Too many admin listeners are open.
    #[error("{MAX_ADMIN_LISTENERS} listeners opened by the admin are open, the most allowed; close one first")]
    TooMany,
}

impl Listeners {
    fn add(&self, listener: Listener) -> Arc<Listener> {
        let listener = Arc::new(listener);
        crate::sync::lock(&self.all).push(listener.clone());
        listener
    }

    fn next_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Every listener, oldest first.
    pub(crate) fn all(&self) -> Vec<Arc<Listener>> {
        crate::sync::lock(&self.all).clone()
    }

    fn remove(&self, id: u32) -> Option<Arc<Listener>> {
        let mut all = crate::sync::lock(&self.all);
        let at = all.iter().position(|l| l.id == id)?;
        Some(all.remove(at))
    }

    /// Registers the HTTP listener, whose clients come over WebSocket.
    pub(crate) fn add_websocket(&self, addr: SocketAddr, tls: bool) -> Arc<Listener> {
        self.add(Listener {
            id: self.next_id(),
            spec: None,
            addr,
            tls,
            origin: Origin::Config,
            clients: AtomicUsize::new(0),
            expire_after_idle: None,
            udp: None,
            idle_since: Mutex::new(None),
            timeouts: Mutex::new(None),
            stop: CancellationToken::new(),
        })
    }

    /// Closes the admin's listeners that were unused for their expiry.
    pub(crate) fn expire(&self, shared: &Arc<ServerState>) {
        let expired: Vec<u32> = self
            .all()
            .iter()
            .filter(|l| l.expires_in().is_some_and(|left| left.is_zero()))
            .map(|l| l.id)
            .collect();
        for id in expired {
            if let Ok(listener) = shared.close_listener(id) {
                info!(listener = %listener.addr, "closed a listener unused for its expiry");
            }
        }
    }
}

impl ServerState {
    /// Starts accepting clients on a bound listener.
    pub(crate) fn start_listener(
        self: &Arc<Self>,
        spec: ListenerSpec,
        socket: Bound,
        origin: Origin,
        expire_after_idle: Option<Duration>,
    ) -> Arc<Listener> {
        let socket = match socket {
            Bound::Tcp(socket) => socket,
            Bound::Udp(socket) => {
                return self.start_udp_listener(spec, socket, origin, expire_after_idle)
            }
        };
        let stop = self.stop.child_token();
        let listener = self.listeners.add(Listener {
            id: self.listeners.next_id(),
            addr: spec.addr,
            spec: Some(spec.clone()),
            tls: spec.tls,
            origin,
            clients: AtomicUsize::new(0),
            expire_after_idle,
            udp: None,
            idle_since: Mutex::new(Some(Instant::now())),
            timeouts: Mutex::new(None),
            stop,
        });
        let max_line = self.config.max_line;
        let (shared, listening) = (self.clone(), listener.clone());
        let task = match spec.mode {
            Mode::Text => self
                .tracker
                .spawn(accept_loop(shared, listening, socket, move |g| {
                    Text::new(max_line, g.welcome.as_deref(), g.ack.as_deref())
                })),
            Mode::Json => self
                .tracker
                .spawn(accept_loop(shared, listening, socket, move |_| {
                    Json::new(max_line)
                })),
            Mode::Raw if spec.device.is_plain() => {
                self.tracker
                    .spawn(accept_loop(shared, listening, socket, |_| Raw))
            }
            Mode::Raw => {
                self.hub.reserve_device_names(spec.device.name.prefix());
                let device = Device::new(spec.device.clone(), spec.room.clone(), max_line);
                self.tracker
                    .spawn(accept_loop(shared, listening, socket, move |_| {
                        device.clone()
                    }))
            }
        };
        drop(task);
        listener
    }

    /// Starts receiving datagrams on a bound UDP listener.
    fn start_udp_listener(
        self: &Arc<Self>,
        spec: ListenerSpec,
        socket: Arc<UdpSocket>,
        origin: Origin,
        expire_after_idle: Option<Duration>,
    ) -> Arc<Listener> {
        let stats = Arc::new(UdpStats::default());
        let listener = self.listeners.add(Listener {
            id: self.listeners.next_id(),
            addr: spec.addr,
            spec: Some(spec.clone()),
            tls: false,
            origin,
            clients: AtomicUsize::new(0),
            expire_after_idle,
            udp: Some(stats.clone()),
            idle_since: Mutex::new(Some(Instant::now())),
            timeouts: Mutex::new(None),
            stop: self.stop.child_token(),
        });
        let (shared, listening) = (self.clone(), listener.clone());
        if spec.device.is_plain() {
            self.tracker.spawn(super::udp::receive_loop(
                shared,
                listening,
                socket,
                stats,
                |_| Datagrams(Raw),
            ));
        } else {
            self.hub.reserve_device_names(spec.device.name.prefix());
            let device = Device::new(spec.device.clone(), spec.room.clone(), self.config.max_line);
            self.tracker.spawn(super::udp::receive_loop(
                shared,
                listening,
                socket,
                stats,
                move |_| Datagrams(device.clone()),
            ));
        }
        listener
    }

    /// Opens a listener for the admin; with `expire_after_idle`, it closes
    /// once it has had no clients for that long.
    pub(crate) fn open_listener(
        self: &Arc<Self>,
        spec: ListenerSpec,
        expire_after_idle: Option<Duration>,
    ) -> Result<Arc<Listener>, ListenerError> {
        let opened = self
            .listeners
            .all()
            .iter()
            .filter(|l| l.origin == Origin::Api)
            .count();
        if opened >= MAX_ADMIN_LISTENERS {
            return Err(ListenerError::TooMany);
        }
        super::warn_of_hex_lookalike(&spec);
        let listener = self.bind_and_start(spec, Origin::Api, expire_after_idle)?;
        info!(listener = %listener.spec.as_ref().expect("a spec"), "the admin opened a listener");
        Ok(listener)
    }

    /// Opens a listener of `origin` other than the admin's (the
    /// playground's ports, bounded by their own range).
    pub(crate) fn open_listener_of(
        self: &Arc<Self>,
        spec: ListenerSpec,
        origin: Origin,
    ) -> Result<Arc<Listener>, ListenerError> {
        self.bind_and_start(spec, origin, None)
    }

    fn bind_and_start(
        self: &Arc<Self>,
        spec: ListenerSpec,
        origin: Origin,
        expire_after_idle: Option<Duration>,
    ) -> Result<Arc<Listener>, ListenerError> {
        let socket = Bound::bind(&spec).map_err(|error| ListenerError::CannotBind {
            addr: spec.addr,
            error,
        })?;
        let addr = socket
            .local_addr()
            .map_err(|error| ListenerError::CannotBind {
                addr: spec.addr,
                error,
            })?;
        let spec = ListenerSpec { addr, ..spec };
        Ok(self.start_listener(spec, socket, origin, expire_after_idle))
    }

    /// Closes a listener the admin opened, and disconnects its clients.
    pub(crate) fn close_listener(&self, id: u32) -> Result<Arc<Listener>, ListenerError> {
        let listener = self
            .listeners
            .all()
            .into_iter()
            .find(|l| l.id == id)
            .ok_or(ListenerError::NoSuchListener(id))?;
        if listener.origin == Origin::Config {
            return Err(ListenerError::NotClosable(id));
        }
        self.listeners.remove(id);
        listener.stop.cancel();
        for client in self.hub.clients() {
            if client.meta.listener == id {
                self.hub.disconnect(client.id, CloseReason::ListenerClosed);
            }
        }
        info!(listener = %listener.addr, "closed a listener");
        Ok(listener)
    }

    /// Stops accepting on a listener, leaving its clients connected.
    pub(crate) fn stop_listener(&self, id: u32) -> Option<Arc<Listener>> {
        let listener = self.listeners.remove(id)?;
        listener.stop.cancel();
        Some(listener)
    }

    pub(crate) fn listeners(&self) -> &Listeners {
        &self.listeners
    }
}

/// Accepts clients until the listener is stopped; `make` makes the
/// protocol its clients speak, again after a reload changes the greeting.
async fn accept_loop<P: Protocol>(
    shared: Arc<ServerState>,
    listener: Arc<Listener>,
    socket: TcpListener,
    make: impl Fn(&Greeting) -> P + Send + 'static,
) {
    let mut greeting = shared.greeting.subscribe();
    let mut protocol = Arc::new(make(&greeting.borrow_and_update()));
    let spec = listener.spec.clone().expect("TCP listeners have a spec");
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            _ = listener.stop.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        if greeting.has_changed().unwrap_or(false) {
            protocol = Arc::new(make(&greeting.borrow_and_update()));
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(error) if is_per_connection(&error) => {
                debug!(%error, "a connection failed before it was accepted");
                continue;
            }
            Err(error) => {
                shared.monitor.accept_failed();
                warn!(%error, listener = %spec, "accept failed; retrying in {}ms", backoff.as_millis());
                tokio::select! {
                    _ = listener.stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        if let Err(refusal) = shared.listener_has_room(&listener) {
            turn_away(&shared, &spec, &*protocol, stream, peer, refusal);
            continue;
        }
        if spec.proxy.is_some() || spec.tls {
            // Its client is known only after the PROXY header, or served
            // only after the TLS handshake: both in the client's own task,
            // once it has a slot.
            match shared.reserve() {
                Ok(reserved) => {
                    let arriving = arrive(
                        shared.clone(),
                        listener.clone(),
                        protocol.clone(),
                        stream,
                        peer,
                        reserved,
                    );
                    shared.tracker.spawn(arriving);
                }
                Err(refusal) => turn_away(&shared, &spec, &*protocol, stream, peer, refusal),
            }
            continue;
        }
        match shared.admit(Held::Nothing, peer.ip(), spec.auth) {
            Ok(admitted) => {
                shared.tune(&stream, peer);
                let arrival = Arrival {
                    meta: meta(&spec, &listener, peer),
                    room: spec.room.clone(),
                    proof: Proof::Nothing,
                    admitted,
                };
                let task = shared.client(&listener, protocol.clone(), stream, arrival);
                task.spawn(&shared.tracker);
            }
            Err(refusal) => turn_away(&shared, &spec, &*protocol, stream, peer, refusal),
        }
    }
}

/// What the server knows of a client of `spec` from `peer` as it comes.
fn meta(spec: &ListenerSpec, listener: &Listener, peer: SocketAddr) -> ClientMeta {
    ClientMeta {
        kind: match spec.mode {
            Mode::Text => ClientKind::Text,
            Mode::Json => ClientKind::Json,
            Mode::Raw => ClientKind::Raw,
        },
        tls: spec.tls,
        peer: peer.into(),
        listener: listener.id,
        sealed: spec.room.is_sealed(),
    }
}

/// Refuses a connection, telling a plaintext client why.
fn turn_away<P: Protocol>(
    shared: &ServerState,
    spec: &ListenerSpec,
    protocol: &P,
    stream: TcpStream,
    peer: SocketAddr,
    refusal: AdmissionRefusal,
) {
    if refusal.log {
        warn!(%peer, listener = %spec, "refused connection: {}", refusal.reason);
    }
    if spec.tls {
        // A refusal in plaintext means nothing to a TLS client, and a
        // handshake costs what a full server cannot spare.
        drop(stream);
    } else {
        let refusal = protocol.refusal(&refusal.reason);
        shared.tracker.spawn(refuse(stream, refusal));
    }
}

/// Serves a connection that has something to say before its client is
/// known (the PROXY header of `?proxy=`) or served (a TLS handshake),
/// holding a connection slot.
async fn arrive<P: Protocol>(
    shared: Arc<ServerState>,
    listener: Arc<Listener>,
    protocol: Arc<P>,
    mut stream: TcpStream,
    mut peer: SocketAddr,
    reserved: Slot,
) {
    let spec = listener.spec.clone().expect("TCP listeners have a spec");
    if let Some(version) = spec.proxy {
        let within = shared.config.tls_handshake_timeout;
        match Box::pin(proxy::read_header(&mut stream, version, within)).await {
            Ok(Some(client)) => peer = client,
            // The balancer's own connection (a health check).
            Ok(None) => {}
            Err(error) => {
                info!(%peer, listener = %spec, %error, "closed a connection that did not start with a PROXY header");
                return;
            }
        }
    }
    let admitted = match shared.admit(Held::Reserved(reserved), peer.ip(), spec.auth) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            turn_away(&shared, &spec, &*protocol, stream, peer, refusal);
            return;
        }
    };
    shared.tune(&stream, peer);
    let arrival = |proof| Arrival {
        meta: meta(&spec, &listener, peer),
        room: spec.room.clone(),
        proof,
        admitted,
    };
    // The client is served by a task of its own: this one's state (the
    // header, the handshake) is not kept for the client's whole life.
    if !spec.tls {
        let arrival = arrival(Proof::Nothing);
        let task = shared.client(&listener, protocol, stream, arrival);
        task.spawn(&shared.tracker);
        return;
    }
    let Some((transport, proof)) = Box::pin(tls_handshake(&shared, stream, peer)).await else {
        return;
    };
    let task = shared.client(&listener, protocol, transport, arrival(proof));
    task.spawn(&shared.tracker);
}

/// Runs a TLS client's handshake; `None` (logged) if it fails. With a
/// client CA, also the name its certificate gives it.
async fn tls_handshake(
    shared: &ServerState,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsTransport, Proof)> {
    let tls = shared
        .tls
        .as_ref()
        .expect("TLS listeners have certificates");
    let limit = shared.config.tls_handshake_timeout;
    let (transport, certificate) = match tls::accept(tls.streams(), stream, limit).await {
        Ok(accepted) => accepted,
        Err(error) => {
            shared.monitor.tls_failed();
            info!(%peer, %error, "closed a connection that did not start TLS");
            return None;
        }
    };
    if shared.config.tls.client_ca.is_none() {
        return Some((transport, Proof::Nothing));
    }
    let common_name = certificate.and_then(|der| tls::common_name(&der));
    let proof = match common_name {
        None => Proof::Unusable(
            "your certificate's subject has no common name (CN) to name you by".into(),
        ),
        Some(cn) => match Name::new(&cn) {
            Ok(name) => Proof::Name(name),
            Err(error) => Proof::Unusable(format!(
                "your certificate's common name {cn:?} cannot be a client name: {error}"
            )),
        },
    };
    Some((transport, proof))
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

async fn refuse(mut stream: TcpStream, refusal: bytes::Bytes) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(&refusal).await?;
        stream.shutdown().await
    })
    .await;
}
