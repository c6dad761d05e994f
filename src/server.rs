//! The server: binds the listeners, admits clients within the connection
//! limits, runs a connection task per client, and shuts down gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{Config, ListenerSpec, Mode};
use crate::connection::{self, Timeouts};
use crate::hub::{CloseReason, Hub};
use crate::protocol::{Json, Protocol, Raw, Text};

/// Pending connections the kernel queues per listener before we accept
/// them: enough for a burst of thousands of clients connecting at once.
const LISTEN_BACKLOG: i32 = 4096;

/// Shortest and longest pause after a failed `accept` (e.g. out of file
/// descriptors), doubling in between, so the loop neither spins nor gives up.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// After the shutdown timeout, how long cut-off clients get for their goodbye.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// How long a refused client gets to read why.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes the kernel keeps unsent for one client (`TCP_NOTSENT_LOWAT`):
/// enough to keep a fast link busy between two writes; what is beyond it
/// waits in the client's queue, where the limits see it.
const NOTSENT_LOWAT: u32 = 128 * 1024;

/// How often the hub's limits that no single message can see (the slow
/// timeout, the memory budget) are checked: a pass over all clients, some
/// 30 µs for 10,000 of them, ten times a second.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A bound, not yet running server.
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// let server = switchboard::Server::bind(switchboard::Config::local()).await?;
/// println!("listening on {}", server.local_addr(switchboard::Mode::Text).unwrap());
/// server.run(async { tokio::signal::ctrl_c().await.ok(); }).await
/// # }
/// ```
#[derive(Debug)]
pub struct Server {
    config: Config,
    hub: Hub,
    listeners: Vec<(ListenerSpec, TcpListener)>,
}

impl Server {
    /// Checks the config and binds every listener. Port 0 picks a free
    /// port; [`Server::listeners`] tells which.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let mut listeners = Vec::new();
        for spec in &config.listeners {
            let listener =
                listen(spec.addr).with_context(|| format!("cannot listen on {}", spec.addr))?;
            let addr = listener.local_addr()?;
            listeners.push((
                ListenerSpec {
                    addr,
                    ..spec.clone()
                },
                listener,
            ));
        }
        Ok(Server {
            hub: Hub::new(config.hub_settings()),
            config,
            listeners,
        })
    }

    /// The listeners, with the addresses they are bound to.
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        self.listeners
            .iter()
            .map(|(spec, _)| spec.clone())
            .collect()
    }

    /// The address of the first listener of `mode`.
    pub fn local_addr(&self, mode: Mode) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(spec, _)| spec.mode == mode)
            .map(|(spec, _)| spec.addr)
    }

    /// The routing core, e.g. to count clients.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves clients until `shutdown` completes, then stops accepting,
    /// tells every client the server is going down, gives queued data up to
    /// the shutdown timeout to reach them, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let specs: Vec<String> = self
            .listeners()
            .iter()
            .map(ListenerSpec::to_string)
            .collect();
        info!("switchboard listening on {}", specs.join(", "));
        let shared = Arc::new(Shared {
            hub: self.hub,
            slots: Arc::new(Semaphore::new(self.config.max_connections)),
            per_ip: Arc::default(),
            timeouts: Timeouts {
                stall: self.config.stall_timeout,
                idle: self.config.idle_timeout,
                line: self.config.line_timeout,
            },
            keepalive: self.config.tcp_keepalive.map(|idle| {
                let probes = (
                    self.config.tcp_keepalive_interval,
                    self.config.tcp_keepalive_retries,
                );
                (
                    TcpKeepalive::new()
                        .with_time(idle)
                        .with_interval(probes.0)
                        .with_retries(probes.1),
                    // Keepalive probes only a quiet connection: data sent to
                    // a vanished peer would be retransmitted for some 15
                    // minutes (tcp_retries2). As long as the probes may
                    // take, and no longer.
                    probes.0 * probes.1,
                )
            }),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            config: self.config,
        });
        for (spec, listener) in self.listeners {
            let config = &shared.config;
            let accepting = match spec.mode {
                Mode::Text => {
                    let text = Text::new(
                        config.max_line,
                        config.welcome.as_deref(),
                        config.ack.as_deref(),
                    );
                    shared
                        .tracker
                        .spawn(accept_loop(shared.clone(), spec, listener, text))
                }
                Mode::Json => {
                    let json = Json::new(config.max_line);
                    shared
                        .tracker
                        .spawn(accept_loop(shared.clone(), spec, listener, json))
                }
                Mode::Raw => shared
                    .tracker
                    .spawn(accept_loop(shared.clone(), spec, listener, Raw)),
            };
            drop(accepting);
        }
        let sweeping = tokio::spawn(sweep_loop(shared.clone()));

        shutdown.await;
        sweeping.abort();
        let clients = shared.hub.client_count();
        info!(
            clients,
            "shutting down: no new connections, telling clients"
        );
        shared.stop.cancel();
        shared.tracker.close();
        shared.hub.close_all(CloseReason::ServerShutdown, true);
        let deadline = shared.config.shutdown_timeout;
        if tokio::time::timeout(deadline, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = shared.tracker.len(),
                "shutdown timeout ({}) passed; cutting off the clients still being written to",
                crate::config::format_duration(deadline)
            );
            // A cut-off drops what is queued and gives the goodbye a moment.
            shared.hub.close_all(CloseReason::ServerShutdown, false);
            let _ = tokio::time::timeout(KILL_GRACE, shared.tracker.wait()).await;
        }
        info!("shut down");
        Ok(())
    }
}

/// Binds a listening socket. IPv6 sockets are IPv6-only, so that
/// `0.0.0.0:P` and `[::]:P` can both be listened on.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[derive(Debug)]
struct Shared {
    config: Config,
    hub: Hub,
    slots: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    timeouts: Timeouts,
    /// TCP keepalive for every client, and how long sent data may go
    /// unacknowledged (`TCP_USER_TIMEOUT`); `None`: keepalive is off.
    keepalive: Option<(TcpKeepalive, Duration)>,
    /// Cancelled when shutdown begins: the accept loops stop.
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// A connection's share of the per-IP count, given back on drop.
struct IpSlot {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Enforces the slow timeout and the memory budget, until shutdown.
async fn sweep_loop(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sweep = shared.hub.sweep();
        let over_budget = sweep
            .cut
            .iter()
            .filter(|(_, _, reason)| matches!(reason, CloseReason::MemoryBudget { .. }))
            .count();
        if over_budget > 0 {
            warn!(
                clients = over_budget,
                held = sweep.held,
                budget = shared.config.max_memory,
                "over the memory budget (max memory): cut off the clients holding the most"
            );
        }
    }
}

impl Shared {
    /// Takes a connection slot for a client from `ip`, or says why not.
    fn admit(&self, ip: IpAddr) -> Result<(OwnedSemaphorePermit, Option<IpSlot>), String> {
        if self.hub.memory_nearly_full() {
            return Err(format!(
                "server busy: its clients hold nearly all of its memory budget of {} bytes (max memory); try again later",
                self.config.max_memory
            ));
        }
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            format!(
                "server full: {} connections, the most it serves at once (max connections); try again later",
                self.config.max_connections
            )
        })?;
        let Some(limit) = self.config.max_connections_per_ip else {
            return Ok((permit, None));
        };
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= limit {
            return Err(format!(
                "too many connections from {ip}: {limit} at once is the most allowed (max connections per ip)"
            ));
        }
        *count += 1;
        Ok((
            permit,
            Some(IpSlot {
                per_ip: self.per_ip.clone(),
                ip,
            }),
        ))
    }
}

async fn accept_loop<P: Protocol>(
    shared: Arc<Shared>,
    spec: ListenerSpec,
    listener: TcpListener,
    protocol: P,
) {
    let protocol = Arc::new(protocol);
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
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
                warn!(%error, listener = %spec, "accept failed; retrying in {}ms", backoff.as_millis());
                tokio::select! {
                    _ = shared.stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        match shared.admit(peer.ip()) {
            Ok(slot) => {
                let task = client(&shared, &spec, protocol.clone(), stream, peer, slot);
                shared.tracker.spawn(task);
            }
            Err(reason) => {
                warn!(%peer, listener = %spec, "refused connection: {reason}");
                let refusal = protocol.refusal(&reason);
                shared.tracker.spawn(refuse(stream, refusal));
            }
        }
    }
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

/// Sets up a client's session and returns the task that serves it. The
/// task lives as long as the client, so it holds only what it needs: the
/// connection's own future (boxed, so its arguments are not kept twice)
/// and what the last log line names.
fn client<P: Protocol>(
    shared: &Shared,
    spec: &ListenerSpec,
    protocol: Arc<P>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: (OwnedSemaphorePermit, Option<IpSlot>),
) -> impl Future<Output = ()> + Send + 'static {
    // Writes are batched already; waiting to fill a segment only adds latency.
    let _ = stream.set_nodelay(true);
    // Keeps what the kernel holds unsent for a client small, so that a
    // reader that reads, however slowly, is seen to make progress (a write
    // goes through) every time it reads: see `pause-timeout`. Without it,
    // Linux wakes a writer only when half of a multi-megabyte send buffer
    // is free, which a slow reader takes seconds to make.
    let socket = SockRef::from(&stream);
    let _ = socket.set_tcp_notsent_lowat(NOTSENT_LOWAT);
    if let Some((keepalive, unacknowledged)) = &shared.keepalive {
        if let Err(error) = socket.set_tcp_keepalive(keepalive) {
            debug!(%peer, %error, "cannot turn on TCP keepalive");
        }
        if let Err(error) = socket.set_tcp_user_timeout(Some(*unacknowledged)) {
            debug!(%peer, %error, "cannot set TCP_USER_TIMEOUT");
        }
    }
    let session = shared.hub.connect(None, &P::ENCODING);
    let id = session.id();
    info!(%peer, name = %session.name(), client = %id, mode = %spec.mode, "client connected");
    let (room, timeouts) = (spec.room.clone(), shared.timeouts);
    let serving = Box::pin(connection::serve(protocol, session, room, stream, timeouts));
    async move {
        let (name, closing) = serving.await;
        drop(slot);
        let reason = closing.reason;
        if matches!(
            reason,
            CloseReason::SlowConsumer { .. }
                | CloseReason::TooSlow { .. }
                | CloseReason::MemoryBudget { .. }
                | CloseReason::LineTimeout { .. }
                | CloseReason::Stalled { .. }
                | CloseReason::ReadFailed(_)
                | CloseReason::WriteFailed(_)
        ) {
            warn!(%peer, %name, client = %id, %reason, "client disconnected");
        } else {
            info!(%peer, %name, client = %id, %reason, "client disconnected");
        }
    }
}
