//! The server: binds the listeners, admits clients within the connection
//! limits, runs a connection task per client, and shuts down gracefully.
//!
//! - `listeners`: the TCP listeners, opened at start or by the admin, and
//!   their accept loops;
//! - `admission`: whether a connection becomes a client, the same steps
//!   for every transport;
//! - `monitor`: what the server counts besides the hub (disconnects by
//!   reason, the recent disconnects, accept errors, rates);
//! - [`control`]: the query and admin API that the HTTP layer is built on;
//! - `http`: the `--http` listener (console, admin API, metrics, WebSocket
//!   clients). It is one of the server's listeners, and reads and changes
//!   the server only through [`control`], except where a WebSocket client
//!   is admitted like any other.

mod admission;
pub(crate) mod background;
pub mod control;
mod http;
pub(crate) mod listeners;
mod monitor;
pub(crate) mod playground;
mod udp;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cluster::Cluster;

use anyhow::Context;
use futures_util::FutureExt;
use socket2::{Domain, Socket, TcpKeepalive, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::{Config, ConnectionLimits, Greeting, HttpSpec, ListenerSpec, Mode, Reload};
use crate::connection::{self, Timeouts};
use crate::hub::{CloseReason, Hub};
use crate::protocol::Protocol;
use crate::storage::{HistoryDir, Saver};
use crate::throttle::{ClientRates, ConnectionRates};
use crate::transport::{ServerTls, Transport};

use admission::Leaving;
use admission::Places;
pub(crate) use admission::{AdmissionRefusal, Admitted, Arrival, Held, Proof, RefusalCause, Slot};
pub use control::Control;
use listeners::{Listener, Listeners, Origin};
use monitor::Monitor;

/// Pending connections the kernel queues per listener before we accept
/// them: enough for a burst of thousands of clients connecting at once.
const LISTEN_BACKLOG: i32 = 4096;

/// After the shutdown timeout, how long cut-off clients get for their goodbye.
const KILL_GRACE: Duration = Duration::from_secs(1);

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
    listeners: Vec<(ListenerSpec, Bound)>,
    http: Option<TcpListener>,
    tls: Option<Arc<ServerTls>>,
    auth: Option<Arc<Authenticator>>,
    /// Saves the histories to `--history-dir`.
    saver: Option<Arc<Saver>>,
    reloads: watch::Sender<Config>,
    /// Made with the sender at bind: a config handed over before `run`
    /// subscribes is seen by the reload loop, not lost.
    reloaded: watch::Receiver<Config>,
}

/// Asks a running server to take a new config (what SIGHUP does): it
/// re-reads its TLS certificate files and applies what can change live,
/// and logs what takes a restart.
#[derive(Debug, Clone)]
pub struct Reloader(watch::Sender<Config>);

impl Reloader {
    /// Hands the server `config`; a config that does not validate is
    /// refused (logged) and the running one stays.
    pub fn reload(&self, config: Config) {
        self.0.send_replace(config);
    }
}

impl Server {
    /// Checks the config and binds every listener. Port 0 picks a free
    /// port; [`Server::listeners`] tells which.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let tls = if config.uses_tls() {
            let tls = ServerTls::load(&config.tls)?;
            if let Some(path) = tls.self_signed_path() {
                warn!(
                    "TLS with a self-signed certificate for localhost (--tls-self-signed), written to {}: clients must trust it (switchboard connect --tls --ca {}) or skip verification (--insecure); for a real server use --tls-cert and --tls-key",
                    path.display(),
                    path.display()
                );
            }
            Some(Arc::new(tls))
        } else {
            if config.tls.cert.is_some() || config.tls.self_signed {
                warn!("a TLS certificate is set, but no listener speaks TLS: use tls://, json+tls://, raw+tls:// or --http https://");
            }
            None
        };
        let auth = if config.auth.has_credentials() || config.auth.devices_file.is_some() {
            Some(Arc::new(
                Authenticator::load(config.auth.clone()).context("cannot load the credentials")?,
            ))
        } else {
            None
        };
        let mut listeners = Vec::new();
        for spec in &config.listeners {
            let listener =
                Bound::bind(spec).with_context(|| format!("cannot listen on {}", spec.addr))?;
            let addr = listener.local_addr()?;
            listeners.push((
                ListenerSpec {
                    addr,
                    ..spec.clone()
                },
                listener,
            ));
        }
        let http = match config.http.listen {
            Some(http) => Some(
                listen(http.addr)
                    .with_context(|| format!("cannot listen for HTTP (--http) on {}", http.addr))?,
            ),
            None => None,
        };
        let (reloads, reloaded) = watch::channel(config.clone());
        let hub = Hub::new(config.hub);
        hub.set_history_rules(config.history.rules());
        // Replays are encoded off the relay's threads: a client asking for
        // them in a loop takes its time, not anyone else's.
        let replays = background::Background::start("replay")
            .context("cannot start the thread that encodes history replays")?;
        hub.set_offload(std::sync::Arc::new(move |job| replays.spawn(job)));
        let saver = match &config.history.dir {
            Some(dir) => {
                if config.history.keep == 0 {
                    warn!(
                        dir = %dir.display(),
                        "--history-dir is set but --history is 0: rooms keep nothing, and what the directory held is forgotten"
                    );
                }
                let (store, restored) = HistoryDir::open(dir)?;
                let messages: usize = restored.iter().map(|room| room.kept.len()).sum();
                info!(
                    rooms = restored.len(),
                    messages,
                    dir = %dir.display(),
                    "history restored from --history-dir"
                );
                hub.restore_history(restored);
                Some(Arc::new(store.start(hub.clone(), config.history.sync)?))
            }
            None => None,
        };
        Ok(Server {
            saver,
            hub,
            reloads,
            reloaded,
            config,
            listeners,
            http,
            tls,
            auth,
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

    /// The address of the HTTP listener, if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle to reload the server's config once it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.reloads.clone())
    }

    /// Every listener as its spec, with the address it is bound to:
    /// `text://0.0.0.0:12345`, `tls://...`, `http://127.0.0.1:8080`.
    pub fn endpoints(&self) -> Vec<String> {
        let mut specs: Vec<String> = self
            .listeners()
            .iter()
            .map(ListenerSpec::to_string)
            .collect();
        if let (Some(addr), Some(http)) = (self.http_addr(), self.config.http.listen) {
            specs.push(HttpSpec { addr, ..http }.to_string());
        }
        specs
    }

    /// The routing core, e.g. to count clients.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Serves clients until `shutdown` completes, then stops accepting,
    /// tells every client the server is going down, gives queued data up to
    /// the shutdown timeout to reach them, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let http_addr = self.http_addr();
        // Before the first client: the hub needs its backplane from the start.
        let cluster = match self.config.cluster.config() {
            Some(config) => Some(
                Cluster::join(self.hub.clone(), &config)
                    .await
                    .context("cannot join the cluster (--cluster)")?,
            ),
            None => None,
        };
        info!("switchboard listening on {}", self.endpoints().join(", "));
        for listener in &self.config.listeners {
            warn_of_hex_lookalike(listener);
        }
        let shared = Arc::new(ServerState {
            cluster,
            hub: self.hub,
            places: Arc::new(Places::new(self.config.limits.max_connections)),
            live: RwLock::new(Live::of(&self.config.limits)),
            greeting: watch::Sender::new(self.config.greeting.clone()),
            running: Mutex::new(self.config.clone()),
            configured: Mutex::default(),
            keepalive: self.config.tcp_keepalive.idle.map(|idle| {
                let probes = (
                    self.config.tcp_keepalive.interval,
                    self.config.tcp_keepalive.retries,
                );
                (
                    TcpKeepalive::new()
                        .with_time(idle)
                        .with_interval(probes.0)
                        .with_retries(probes.1),
                    // Keepalive probes only a quiet connection: data sent to
                    // a vanished peer would be retransmitted for some 15
                    // minutes (tcp_retries2). The kernel also ends a quiet
                    // connection by this timeout, counted from the last
                    // thing received, once a probe is out: shorter than
                    // the idle time and the probes together, it ended one
                    // whose first probe was lost (on a loaded or lossy
                    // link, a healthy client after 70 s of quiet).
                    user_timeout(idle, probes.0, probes.1),
                )
            }),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            listeners: Listeners::default(),
            monitor: Monitor::new(),
            http_addr,
            tls: self.tls,
            auth: std::sync::RwLock::new(self.auth.clone()),
            saver: self.saver,
            config: self.config,
        });
        shared.hub.set_reserved_names(
            self.auth
                .map(|auth| auth as Arc<dyn crate::hub::ReservedNames>),
        );
        for ((spec, listener), configured) in
            self.listeners.into_iter().zip(&shared.config.listeners)
        {
            let listener = shared.start_listener(spec, listener, Origin::Config, None);
            shared.configured().push((configured.clone(), listener.id));
        }
        let sweeping = tokio::spawn(sweep_loop(shared.clone()));
        let reloading = tokio::spawn(reload_loop(shared.clone(), self.reloaded));
        let sampling = tokio::spawn(monitor::sample_loop(shared.clone()));
        if let Some(listener) = self.http {
            let control = Control::new(shared.clone());
            let serving = http::serve(control, listener, shared.stop.clone());
            shared.tracker.spawn(async move {
                if let Err(error) = serving.await {
                    warn!(%error, "the HTTP listener failed");
                }
            });
        }

        shutdown.await;
        // The names are freed first, so that clients reconnecting through
        // a load balancer can take them on another node at once.
        if let Some(cluster) = &shared.cluster {
            cluster.leave().await;
        }
        sweeping.abort();
        reloading.abort();
        sampling.abort();
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
        if let Some(saver) = shared.saver.clone() {
            // The last commit: what the clients said up to the end.
            let _ = tokio::task::spawn_blocking(move || saver.close()).await;
        }
        info!("shut down");
        Ok(())
    }
}

/// What a UDP listener asks the kernel to hold of datagrams not read yet.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// A listener's bound socket.
#[derive(Debug)]
pub(crate) enum Bound {
    /// A TCP listener's.
    Tcp(TcpListener),
    /// A UDP listener's, shared by the tasks that answer its peers.
    Udp(Arc<tokio::net::UdpSocket>),
}

impl Bound {
    /// Binds what `spec` listens on.
    pub(crate) fn bind(spec: &ListenerSpec) -> std::io::Result<Bound> {
        if !spec.udp {
            return listen(spec.addr).map(Bound::Tcp);
        }
        let socket = Socket::new(Domain::for_address(spec.addr), Type::DGRAM, None)?;
        if spec.addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Room for a burst (a fleet registering after a power cut): the
        // kernel keeps at most net.core.rmem_max of it, and drops the rest.
        let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
        socket.set_nonblocking(true)?;
        socket.bind(&spec.addr.into())?;
        let socket = tokio::net::UdpSocket::from_std(socket.into())?;
        Ok(Bound::Udp(Arc::new(socket)))
    }

    /// The address it is bound to.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Bound::Tcp(socket) => socket.local_addr(),
            Bound::Udp(socket) => socket.local_addr(),
        }
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

/// The running server's state, shared by its tasks.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub(crate) config: Config,
    pub(crate) hub: Hub,
    places: Arc<Places>,
    /// The limits a reload changes, for the connections after it.
    live: RwLock<Live>,
    /// The greeting of text listeners, which a reload changes.
    pub(crate) greeting: watch::Sender<Greeting>,
    /// The config in force: the start-up one, then each reloaded one.
    running: Mutex<Config>,
    /// The config's listeners as the config gives them (port 0 and all),
    /// with the ids they run as: what a reload compares its own to.
    configured: Mutex<Vec<(ListenerSpec, u32)>>,
    /// TCP keepalive for every client, and how long sent data may go
    /// unacknowledged (`TCP_USER_TIMEOUT`); `None`: keepalive is off.
    keepalive: Option<(TcpKeepalive, Duration)>,
    /// Saves the histories to `--history-dir`.
    pub(crate) saver: Option<Arc<Saver>>,
    /// Cancelled when shutdown begins: the accept loops stop.
    pub(crate) stop: CancellationToken,
    pub(crate) tracker: TaskTracker,
    listeners: Listeners,
    pub(crate) monitor: Monitor,
    http_addr: Option<SocketAddr>,
    /// Certificates, when any listener speaks TLS.
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// Credentials, when any are configured; swapped whole on reload.
    auth: std::sync::RwLock<Option<Arc<Authenticator>>>,
    /// The cluster this server is a node of, if any.
    pub(crate) cluster: Option<Cluster>,
}

/// The limits a reload changes: each connection takes them as it comes,
/// and keeps them.
#[derive(Debug)]
struct Live {
    /// Shared: each listener's clients hold theirs (see
    /// [`ServerState::timeouts_for`]), remade when these are replaced.
    timeouts: Arc<Timeouts>,
    max_connections: usize,
    max_connections_per_ip: Option<usize>,
    connection_rates: Option<Arc<ConnectionRates>>,
}

impl Live {
    fn of(limits: &ConnectionLimits) -> Live {
        Live {
            timeouts: Arc::new(Timeouts {
                stall: limits.stall_timeout,
                idle: limits.idle_timeout,
                line: limits.line_timeout,
                rates: ClientRates {
                    messages: limits.max_messages_per_second,
                    bytes: limits.max_bytes_per_second,
                    grace: limits.rate_limit_grace,
                },
            }),
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            connection_rates: limits
                .max_connections_per_ip_per_second
                .map(|rate| Arc::new(ConnectionRates::new(rate))),
        }
    }
}

/// Applies each config handed to the [`Reloader`].
async fn reload_loop(shared: Arc<ServerState>, mut reloads: watch::Receiver<Config>) {
    while reloads.changed().await.is_ok() {
        let config = reloads.borrow_and_update().clone();
        // It reads files (users, devices, certificates: a fleet's devices
        // file is megabytes): off the threads that serve clients.
        let reloading = shared.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || reloading.reload(&config)).await {
            warn!(%error, "the reload failed; the running config stays");
        }
    }
}

/// How long a reload waits for a port a removed listener is giving up
/// (the same address with other options) before it gives up itself.
const REBIND_PATIENCE: Duration = Duration::from_secs(2);

impl ServerState {
    /// The limits in force.
    fn live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        crate::sync::read(&self.live)
    }

    /// How long a client may leave a line unfinished, as in force now.
    pub(crate) fn line_timeout(&self) -> Option<std::time::Duration> {
        self.live().timeouts.line
    }

    /// A client's rate limits, as in force now.
    pub(crate) fn client_rates(&self) -> crate::throttle::ClientRates {
        self.live().timeouts.rates
    }

    fn configured(&self) -> std::sync::MutexGuard<'_, Vec<(ListenerSpec, u32)>> {
        crate::sync::lock(&self.configured)
    }

    /// Applies what can change live of `new`, and names what cannot.
    fn reload(self: &Arc<Self>, new: &Config) {
        if let Err(error) = new.validate() {
            warn!("reload refused, the running config stays: {error:#}");
            return;
        }
        let mut running = crate::sync::lock(&self.running);
        let changed = running.differences(new);
        let keys = |reload: Reload| -> Vec<&str> {
            changed
                .iter()
                .filter(|setting| setting.reload() == reload)
                .map(|setting| setting.key())
                .collect()
        };
        let mut applied = Vec::new();
        let auth = self.authenticator();
        if let Some(auth) = &auth {
            match auth.reload_with(new.auth.clone()) {
                Ok(reloaded) => {
                    let reloaded = Arc::new(reloaded);
                    *crate::sync::write(&self.auth) = Some(reloaded.clone());
                    self.hub.set_reserved_names(Some(reloaded));
                    applied.push("users, tokens and devices".to_owned());
                }
                Err(error) => {
                    warn!("cannot reload the users, tokens and devices, the current ones stay: {error:#}")
                }
            }
        }
        if let Some(tls) = &self.tls {
            match tls.reload(&new.tls) {
                Ok(()) => applied.push("TLS certificate".to_owned()),
                Err(error) => {
                    warn!("cannot reload the TLS certificate, the current one stays: {error:#}")
                }
            }
        }
        let limits = keys(Reload::Limits);
        if !limits.is_empty() {
            let mut next = Live::of(&new.limits);
            let mut current = crate::sync::write(&self.live);
            if running.limits.max_connections_per_ip_per_second
                == new.limits.max_connections_per_ip_per_second
            {
                // The same rate: each address keeps what it has used.
                next.connection_rates = current.connection_rates.clone();
            }
            self.resize_slots(current.max_connections, next.max_connections);
            *current = next;
            applied.push(format!("{} (for new connections)", limits.join(", ")));
        }
        let history = keys(Reload::History);
        if !history.is_empty() {
            self.hub.set_history_rules(new.history.rules());
            applied.push(history.join(", "));
        }
        if !keys(Reload::Greeting).is_empty() {
            self.greeting.send_replace(new.greeting.clone());
            applied.push("welcome and ack (for new connections)".to_owned());
        }
        let mut added = Vec::new();
        if !keys(Reload::Listeners).is_empty() {
            added = self.reload_listeners(&new.listeners);
            applied.push("listeners".to_owned());
        }
        // Credentials and certificates the server started without wait
        // for a restart too: what would check them is not running.
        let later: Vec<&str> = changed
            .iter()
            .filter(|setting| match setting.reload() {
                Reload::Restart => true,
                Reload::Credentials => auth.is_none(),
                Reload::Certificates => self.tls.is_none(),
                Reload::Listeners | Reload::Greeting | Reload::Limits | Reload::History => false,
            })
            .map(|setting| setting.key())
            .collect();
        if !later.is_empty() {
            warn!(
                "reload: changed, but taking effect only at restart: {}",
                later.join(", ")
            );
        }
        *running = new.clone();
        info!(
            "reloaded the config: {}",
            if applied.is_empty() {
                "nothing to apply".to_owned()
            } else {
                applied.join("; ")
            }
        );
        // After the summary, so that the log reads in the order of events.
        for (spec, patient) in added {
            let shared = self.clone();
            tokio::spawn(async move { shared.add_listener(spec, patient).await });
        }
    }

    /// Grows or shrinks the connection slots from `from` to `to`. Slots
    /// clients hold are taken away as those clients leave: nobody is
    /// disconnected for it.
    fn resize_slots(&self, from: usize, to: usize) {
        if to > from {
            self.places.slots.add_permits(to - from);
            return;
        }
        let excess = from - to;
        let forgotten = self.places.slots.forget_permits(excess);
        if forgotten < excess {
            let places = self.places.clone();
            let rest = u32::try_from(excess - forgotten).unwrap_or(u32::MAX);
            // Not tracked: a shutdown does not wait for it.
            tokio::spawn(async move {
                if let Ok(permits) = places.slots.acquire_many(rest).await {
                    permits.forget();
                }
            });
        }
    }

    /// Stops the config's listeners that `specs` no longer has (their
    /// clients stay connected); returns the new ones to start, each with
    /// whether its address is being given up by a listener just stopped.
    fn reload_listeners(&self, specs: &[ListenerSpec]) -> Vec<(ListenerSpec, bool)> {
        let mut released = Vec::new();
        self.configured().retain(|(spec, id)| {
            if specs.contains(spec) {
                return true;
            }
            if self.stop_listener(*id).is_some() {
                released.push(spec.addr);
                info!(listener = %spec, "stopped listening (no longer in the config); its clients stay connected");
            }
            false
        });
        let configured = self.configured();
        specs
            .iter()
            .filter(|spec| !configured.iter().any(|(running, _)| running == *spec))
            .map(|spec| (spec.clone(), released.contains(&spec.addr)))
            .collect()
    }

    /// Binds and starts a listener the config gained. `patient`: its
    /// address is being given up by a listener just stopped, so a port in
    /// use is waited for a little.
    async fn add_listener(self: Arc<Self>, spec: ListenerSpec, patient: bool) {
        let give_up = tokio::time::Instant::now() + REBIND_PATIENCE;
        let socket = loop {
            match Bound::bind(&spec) {
                Ok(socket) => break socket,
                Err(error)
                    if patient
                        && error.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    warn!(listener = %spec, "reload: cannot listen on {}: {error}", spec.addr);
                    return;
                }
            }
        };
        let Ok(addr) = socket.local_addr() else {
            return;
        };
        let bound = ListenerSpec {
            addr,
            ..spec.clone()
        };
        if self.stop.is_cancelled() {
            return;
        }
        let listener = self.start_listener(bound.clone(), socket, Origin::Config, None);
        self.configured().push((spec, listener.id));
        info!(listener = %bound, "listening (added to the config)");
    }
}

/// A client's task, as [`ServerState::client`] makes it: served in its own
/// future (the common start), or boxed because it waits for something
/// first. Spawned as two kinds of task, not one sized for both: an idle
/// client's task is memory it holds all its life.
pub(crate) enum ClientTask<F> {
    /// Served from the start: the connection's future, inline in the task.
    Served(F),
    /// Waits first (a certificate's name to claim, a room's history to
    /// make whole), then is served.
    Waits(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl<F: Future<Output = ()> + Send + 'static> ClientTask<F> {
    /// Runs it as a task of its own, tracked for the shutdown.
    pub(crate) fn spawn(self, tracker: &TaskTracker) {
        match self {
            ClientTask::Served(serving) => tracker.spawn(serving),
            ClientTask::Waits(serving) => tracker.spawn(serving),
        };
    }

    /// For a task that already has one (a `/ws` client's, its upgrade's).
    pub(crate) fn boxed(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self {
            ClientTask::Served(serving) => Box::pin(serving),
            ClientTask::Waits(serving) => serving,
        }
    }
}

/// Enforces the slow timeout and the memory budget, until shutdown.
async fn sweep_loop(shared: Arc<ServerState>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Some(rates) = shared.live().connection_rates.clone() {
            rates.sweep(tokio::time::Instant::now());
        }
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
                budget = shared.config.hub.max_memory,
                "over the memory budget (max memory): cut off the clients holding the most"
            );
        }
        shared.listeners.expire(&shared);
    }
}

impl ServerState {
    /// The credentials in force, if any are configured.
    pub(crate) fn authenticator(&self) -> Option<Arc<Authenticator>> {
        crate::sync::read(&self.auth).clone()
    }

    /// Serves one admitted client of `listener` over `stream` until it
    /// goes, then logs why and records it among the recent disconnects.
    /// Returns the task to spawn; it holds only what it needs for the
    /// client's lifetime: the connection's own future, and what gives the
    /// client's place back as it goes.
    pub(crate) fn client<P: Protocol, T: Transport + 'static>(
        self: &Arc<Self>,
        listener: &Arc<Listener>,
        protocol: Arc<P>,
        mut stream: T,
        arrival: Arrival,
    ) -> ClientTask<impl Future<Output = ()> + Send + 'static> {
        let Arrival {
            meta,
            room,
            proof,
            admitted: Admitted { slot, gate },
        } = arrival;
        let mut session = self.hub.connect(None, &P::ENCODINGS, meta);
        self.settle(listener, &mut session);
        stream.gauge_input(session.input_gauge());
        let timeouts = self.timeouts_for(listener);
        listener.connected();
        let leaving = Leaving::new(self.clone(), listener.clone(), slot);
        // Lives as long as the client. A map, not an async block: that
        // would hold the connection's future twice (captured, and moved
        // into its await).
        let leave = move |gone: connection::Gone| leaving.left(gone);
        let connected = move |session: &crate::hub::Session| {
            info!(peer = %meta.peer, name = %session.name(), client = %session.id(), mode = %meta.kind, tls = meta.tls, "client connected");
        };
        // The common start (nothing to prove, nothing to wait for) is
        // served in the task's own future; the others wait first, so
        // theirs is boxed.
        match proof {
            // A name the client proved is its name, or it is not served:
            // anything else would let it pass for someone it is not. (In a
            // cluster, claiming it takes a round trip: the connection
            // starts with it.)
            Proof::Name(name) => ClientTask::Waits(Box::pin(async move {
                if let Err(error) = session.take_certified_name(name.clone()).await {
                    let why =
                        format!("the name {name} of your certificate is not available: {error}");
                    warn!(peer = %meta.peer, "refused a client: {why}");
                    session.close(CloseReason::Refused(why.into()), true);
                }
                connected(&session);
                let hold = session.ready_to_join(&room).await;
                let serving = connection::serve(protocol, session, room, stream, timeouts, gate);
                drop(hold);
                leave(serving.await);
            })),
            Proof::Unusable(why) => {
                warn!(peer = %meta.peer, "refused a client: {why}");
                session.close(CloseReason::Refused(why.into()), true);
                ClientTask::Served(
                    connection::serve(protocol, session, room, stream, timeouts, gate).map(leave),
                )
            }
            // In a cluster sharing histories, the room's copy is made
            // whole before the client arrives in it (it is shown it).
            Proof::Nothing if self.hub.shares_history() => {
                connected(&session);
                ClientTask::Waits(Box::pin(async move {
                    let hold = session.ready_to_join(&room).await;
                    let serving =
                        connection::serve(protocol, session, room, stream, timeouts, gate);
                    drop(hold);
                    leave(serving.await);
                }))
            }
            Proof::Nothing => {
                connected(&session);
                ClientTask::Served(
                    connection::serve(protocol, session, room, stream, timeouts, gate).map(leave),
                )
            }
        }
    }

    /// What a listener's clients are held to: the server's timeouts and
    /// rates, with the listener's own idle timeout (a UDP listener's
    /// default one), and a playground port's byte rate. One copy for all
    /// of the listener's clients while the server's stay the same.
    pub(crate) fn timeouts_for(&self, listener: &Listener) -> Arc<Timeouts> {
        let server = self.live().timeouts.clone();
        let mut cached = crate::sync::lock(&listener.timeouts);
        match &*cached {
            Some(shared) if Arc::ptr_eq(&shared.server, &server) => shared.listener.clone(),
            _ => {
                let own = Arc::new(self.listener_timeouts(listener, &server));
                *cached = Some(listeners::SharedTimeouts {
                    server,
                    listener: own.clone(),
                });
                own
            }
        }
    }

    /// `server`'s timeouts as `listener` changes them.
    fn listener_timeouts(&self, listener: &Listener, server: &Timeouts) -> Timeouts {
        let mut timeouts = *server;
        if let Some(idle) = listener.spec.as_ref().and_then(|spec| spec.idle_timeout) {
            timeouts.idle = Some(idle);
        } else if listener.spec.as_ref().is_some_and(|spec| spec.udp) {
            timeouts.idle = Some(udp::DEFAULT_UDP_IDLE_TIMEOUT);
        }
        // A playground port's clients send at most its rate each.
        if listener.origin == listeners::Origin::Playground {
            let port = self.config.playground.bytes_per_second;
            timeouts.rates.bytes = match (timeouts.rates.bytes, port) {
                (Some(server), Some(port)) => Some(if port.get() < server.get() {
                    port
                } else {
                    server
                }),
                (server, port) => server.or(port),
            };
        }
        timeouts
    }

    /// Sets up a new client's session as its listener says.
    pub(crate) fn settle(&self, listener: &Listener, session: &mut crate::hub::Session) {
        if let Some(count) = listener.spec.as_ref().map(|spec| spec.history) {
            session.show_history_on_join(count);
        }
    }

    /// A client of `listener` is gone, as `closing` says: counted, logged,
    /// and told to the admin's monitor. (Its admission slot is given back
    /// by its caller.)
    pub(crate) fn client_left(
        &self,
        listener: &Listener,
        handle: &crate::hub::OutboxHandle,
        name: crate::hub::Name,
        closing: crate::hub::Closing,
    ) {
        listener.disconnected();
        let reason = closing.reason;
        let client = handle.info();
        let (peer, id) = (client.meta.peer, client.id);
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
        self.monitor.closed(client, reason);
    }
}

/// `heartbeat=FE` is the text "FE"; a device sending the byte 0xFE would
/// have every heartbeat relayed as data. Said at start, and for each
/// listener opened later.
pub(crate) fn warn_of_hex_lookalike(listener: &crate::ListenerSpec) {
    let Some(heartbeat) = &listener.device.heartbeat else {
        return;
    };
    if let Some(meant) = heartbeat.hex_lookalike() {
        warn!(
            listener = %listener,
            "heartbeat={heartbeat} is the text {heartbeat:?} ({} bytes); for those bytes write heartbeat={meant}",
            heartbeat.bytes().len()
        );
    }
}

/// `TCP_USER_TIMEOUT` for TCP keepalive after `idle`, then `retries`
/// probes `interval` apart: how long data sent may go unacknowledged, and
/// how long a quiet connection lasts without an answer to its probes. The
/// kernel counts it from the last thing received and, with it set, ends a
/// quiet connection by it alone: so it leaves every probe its turn.
fn user_timeout(idle: Duration, interval: Duration, retries: u32) -> Duration {
    idle + interval * retries
}
