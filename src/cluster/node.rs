//! One node of a cluster: its connections to Redis, the task that
//! publishes for it, the one that keeps its lease, and what it does with
//! what arrives.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Script, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::frame::{self, Header, Payload};
use super::keys::{self, Keys};
use super::received::{FrameOrder, Sequences};
use super::ClusterConfig;
use crate::hub::{
    Backplane, Body, Change, Claim, ClientId, CloseReason, DeviceProof, Hub, Name, NodeName,
    RemoteClient, RoomName, Unclaimed,
};
use crate::sync::lock;

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL was not one Redis takes.
    #[error("--cluster {url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// Redis did not answer.
    #[error("cannot reach the cluster's Redis at {url}: {source}")]
    Connect {
        /// The URL (without its password).
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// The CA file could not be read.
    #[error("--cluster-ca {}: {source}", path.display())]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A live node has this node's name.
    #[error("a live node of this cluster is already named {0} (its lease was renewed all the while this one waited): give this one another --node-name")]
    NameTaken(String),
}

/// How the cluster looks from one node, for the admin API, `status` and
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// This node's boot epoch.
    pub epoch: u64,
    /// Whether Redis is out of reach: local delivery goes on, cross-node
    /// delivery does not.
    pub degraded: bool,
    /// The live nodes, this one included, with their clients.
    pub nodes: Vec<NodeStatus>,
    /// Frames published to the other nodes.
    pub messages_out: u64,
    /// Frames received from the other nodes.
    pub messages_in: u64,
    /// Cross-node sends dropped: Redis was out of reach, or too slow.
    pub send_failures: u64,
    /// Frames from other nodes that never arrived, as sequence gaps showed.
    pub gaps: u64,
    /// Times this node found its lease gone (paused, cut off) and joined again.
    pub fenced: u64,
    /// The last lease renewal's round trip to Redis, in microseconds.
    pub redis_rtt_us: u64,
}

/// A live node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// Its clients.
    pub clients: u64,
}

/// What the publisher task sends, in order.
enum Outgoing {
    /// A frame for a channel.
    Publish { channel: String, frame: Bytes },
    /// A local client's change: its place written, the frame published on
    /// `events`, and the room's channel subscribed before (or unsubscribed
    /// after).
    Change {
        seq: u64,
        id: ClientId,
        place: Option<Bytes>,
        frame: Bytes,
        subscribe: Option<String>,
        unsubscribe: Option<String>,
        release: Option<Vec<String>>,
        owner: String,
    },
    /// Claims name keys, after everything queued before (a release of the
    /// same name by a client that left).
    Claim {
        keys: Vec<String>,
        owner: String,
        done: oneshot::Sender<Result<(), Unclaimed>>,
    },
}

/// A node of a cluster: the hub's backplane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    keys: Keys,
    node: NodeName,
    epoch: u64,
    lease: Duration,
    url: String,
    /// Publications, changes, claims and reads.
    commands: ConnectionManager,
    /// The lease alone, so that its renewal never waits behind a burst of
    /// publications.
    heartbeat: ConnectionManager,
    subscriber: ConnectionManager,
    outgoing: mpsc::Sender<Outgoing>,
    /// The starts of this node's device names (`dev-`), written again to
    /// Redis with each heartbeat (a Redis restarted empty learns them).
    device_prefixes: Mutex<Vec<String>>,
    /// Sequence numbers and the picture of this node, written in the order
    /// frames are queued.
    order: Mutex<Order>,
    /// Where the other nodes' sequences stand.
    received: Arc<Mutex<Sequences>>,
    resync: mpsc::UnboundedSender<Resync>,
    stats: Arc<Stats>,
    /// Set when Redis is out of reach.
    degraded: AtomicBool,
    /// Set when a change could not be queued: the node's picture in Redis
    /// must be written again.
    stale: AtomicBool,
    /// Set once the node has left: nothing more is sent.
    left: AtomicBool,
    /// The live nodes and their clients, as the last heartbeat saw them.
    live: Mutex<Vec<NodeStatus>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Order {
    /// The last change's number, on `events`.
    events: u64,
    /// Each room channel's sequence: its stream and last number.
    rooms: HashMap<String, (u64, u64)>,
    /// Streams given out so far.
    streams: u64,
    /// The last number on each inbox this node sent to.
    inboxes: HashMap<NodeName, u64>,
    /// Where each local client is: the picture kept in Redis.
    places: HashMap<ClientId, (Name, Vec<RoomName>)>,
}

#[derive(Debug, Default)]
struct Stats {
    messages_out: AtomicU64,
    messages_in: AtomicU64,
    send_failures: AtomicU64,
    gaps: AtomicU64,
    fenced: AtomicU64,
    rtt_us: AtomicU64,
}

/// A node's picture to read again.
#[derive(Debug)]
enum Resync {
    Node(NodeName),
    All,
}

/// Most frames sent to Redis in one pipeline.
const BATCH: usize = 512;

/// How long a node leaving waits for Redis to free its names.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The URL without its password, for messages and logs.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Cluster {
    /// Connects `hub` to the cluster `config` describes: registers this
    /// node (refused if a live node has its name), reads the others'
    /// pictures, and starts the tasks that keep it in. The hub must have
    /// no clients yet.
    pub async fn join(hub: Hub, config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let url = redacted(&config.url);
        let client = match &config.ca {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|source| ClusterError::Ca {
                    path: path.clone(),
                    source,
                })?;
                redis::Client::build_with_tls(
                    config.url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(config.url.as_str()),
        }
        .map_err(|source| ClusterError::Url {
            url: url.clone(),
            source,
        })?;
        let connect = |source| ClusterError::Connect {
            url: url.clone(),
            source,
        };
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500))
        };
        let commands = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .map_err(connect)?;
        let heartbeat = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .map_err(connect)?;
        let keys = Keys::new(&config.prefix);
        let node: NodeName = config.node.as_str().into();
        let epoch: u64 = redis::cmd("INCR")
            .arg(keys.epoch())
            .query_async(&mut commands.clone())
            .await
            .map_err(connect)?;

        // The subscriber speaks RESP3, so that what arrives is pushed to
        // `Inbound::arrive` and its subscriptions are made again when it
        // reconnects.
        let (resync_tx, resync_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let received = Arc::new(Mutex::new(Sequences::default()));
        let inbound = Arc::new(Inbound {
            hub: hub.clone(),
            node: node.clone(),
            stats: stats.clone(),
            received: received.clone(),
            resync: resync_tx.clone(),
        });
        let mut info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        info = info.set_redis_settings(settings);
        let sub_client = redis::Client::open(info).map_err(connect)?;
        let push = inbound.clone();
        let subscriber = ConnectionManager::new_with_config(
            sub_client,
            manager_config()
                .set_push_sender(move |message: PushInfo| {
                    push.arrive(message);
                    Ok::<(), std::convert::Infallible>(())
                })
                .set_automatic_resubscription(),
        )
        .await
        .map_err(connect)?;

        let (outgoing, outgoing_rx) = mpsc::channel(config.max_pending.max(1));
        let inner = Arc::new(Inner {
            hub: hub.clone(),
            keys,
            node,
            epoch,
            lease: config.lease,
            url: url.clone(),
            commands,
            heartbeat,
            subscriber,
            outgoing,
            device_prefixes: Mutex::default(),
            order: Mutex::default(),
            received,
            resync: resync_tx,
            stats,
            degraded: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            left: AtomicBool::new(false),
            live: Mutex::default(),
        });
        // A node restarted at once under its name finds its old lease
        // still there: it waits for it to run out. A live node renews it,
        // and this one gives up.
        let started = Instant::now();
        loop {
            if inner.register().await.map_err(connect)? {
                break;
            }
            if started.elapsed() > inner.lease + Duration::from_secs(1) {
                return Err(ClusterError::NameTaken(config.node.clone()));
            }
            if started.elapsed() < Duration::from_millis(300) {
                info!(node = %inner.node, "a node of this name holds a lease: waiting for it to run out (it may be this node's previous run)");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut subscriber = inner.subscriber.clone();
        subscriber
            .subscribe(&[inner.keys.events(), inner.keys.inbox(&inner.node)])
            .await
            .map_err(connect)?;
        inner.write_picture().await.map_err(connect)?;
        hub.set_backplane(Arc::new(Cluster {
            inner: inner.clone(),
        }));
        inner.reload_all().await.map_err(connect)?;
        tokio::spawn(publish_loop(inner.clone(), outgoing_rx));
        tokio::spawn(resync_loop(inner.clone(), resync_rx));
        tokio::spawn(heartbeat_loop(inner.clone()));
        info!(node = %inner.node, epoch, redis = %inner.url, "joined the cluster");
        Ok(Cluster { inner })
    }

    /// Leaves the cluster at once: frees this node's names and tells the
    /// others its clients are gone, so they can reconnect to another node.
    /// Nothing is sent after this.
    pub async fn leave(&self) {
        let inner = &self.inner;
        if inner.left.swap(true, Ordering::SeqCst) {
            return;
        }
        let goodbye = inner.frame(
            0,
            &Payload::Gone {
                node: inner.node.clone(),
                reason: "server shut down".into(),
            },
        );
        let left: Result<i64, _> = tokio::time::timeout(
            LEAVE_TIMEOUT,
            Script::new(keys::LEAVE)
                .key(inner.keys.lease(&inner.node))
                .key(inner.keys.nodes())
                .key(inner.keys.names(&inner.node))
                .key(inner.keys.clients(&inner.node))
                .key(inner.keys.seq(&inner.node))
                .arg(inner.epoch)
                .arg(&*inner.node)
                .arg(inner.keys.events())
                .arg(goodbye.as_ref())
                .invoke_async(&mut inner.commands.clone()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match left {
            Ok(_) => info!(node = %inner.node, "left the cluster: names freed"),
            Err(error) => {
                warn!(node = %inner.node, %error, "could not tell the cluster this node left; its lease will run out")
            }
        }
    }

    /// How the cluster looks from this node.
    pub fn status(&self) -> ClusterStatus {
        self.inner.status()
    }
}

impl Inner {
    fn status(&self) -> ClusterStatus {
        let stats = &self.stats;
        ClusterStatus {
            node: self.node.to_string(),
            epoch: self.epoch,
            degraded: self.degraded.load(Ordering::Relaxed),
            nodes: lock(&self.live).clone(),
            messages_out: stats.messages_out.load(Ordering::Relaxed),
            messages_in: stats.messages_in.load(Ordering::Relaxed),
            send_failures: stats.send_failures.load(Ordering::Relaxed),
            gaps: stats.gaps.load(Ordering::Relaxed),
            fenced: stats.fenced.load(Ordering::Relaxed),
            redis_rtt_us: stats.rtt_us.load(Ordering::Relaxed),
        }
    }

    /// Publishes `payload` to the inbox of `to`'s node, numbered in this
    /// node's sequence for that inbox.
    fn to_inbox(&self, to: &RemoteClient, payload: &Payload) {
        let mut frame = self.frame(0, payload);
        let mut order = lock(&self.order);
        let seq = order.inboxes.entry(to.node.clone()).or_insert(0);
        *seq += 1;
        frame::set_seq(&mut frame, &self.node, *seq);
        if self.queue(Outgoing::Publish {
            channel: self.keys.inbox(&to.node),
            frame: frame.freeze(),
        }) {
            self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn frame(&self, stream: u64, payload: &Payload) -> bytes::BytesMut {
        frame::encode(
            &Header {
                origin: self.node.clone(),
                epoch: self.epoch,
                stream,
                seq: 0,
            },
            payload,
        )
    }

    /// Takes (or renews) this node's lease, if no other live node holds
    /// its name; returns whether it did.
    async fn register(&self) -> redis::RedisResult<bool> {
        let registered: i64 = Script::new(keys::REGISTER)
            .key(self.keys.lease(&self.node))
            .key(self.keys.nodes())
            .arg(self.epoch)
            .arg(self.lease.as_millis() as u64)
            .arg(&*self.node)
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(registered == 1)
    }

    /// The frame telling the others to read this node's picture again,
    /// numbered as the last change it covers.
    fn read_me_again(&self) -> Bytes {
        let mut hello = self.frame(0, &Payload::Resync);
        frame::set_seq(&mut hello, &self.node, lock(&self.order).events);
        hello.freeze()
    }

    /// The owner string of local client `id`'s names.
    fn owner(&self, id: ClientId) -> String {
        format!("{}:{}:{}", self.epoch, id.get(), self.node)
    }

    /// The Redis keys of `name`'s one or two comparison keys.
    fn name_keys(&self, name: &Name) -> Vec<String> {
        let (key, shape) = (name.key(), name.shape_key());
        let mut keys = vec![self.keys.name(&key)];
        if shape != key {
            keys.push(self.keys.name(&shape));
        }
        keys
    }

    fn queue(&self, item: Outgoing) -> bool {
        if self.left.load(Ordering::Relaxed) {
            return false;
        }
        match self.outgoing.try_send(item) {
            Ok(()) => true,
            Err(_) => {
                self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Marks the cluster degraded, telling the clients once.
    fn degrade(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::SeqCst) {
            warn!(node = %self.node, redis = %self.url, "cluster degraded: {why}; local delivery goes on");
            self.hub.notify_all(
                "cluster_degraded",
                "this server lost touch with the rest of its cluster: clients of other servers cannot hear you, nor you them, until it recovers",
            );
        }
    }

    /// Writes this node's picture of itself into Redis from scratch.
    async fn write_picture(&self) -> redis::RedisResult<()> {
        let (seq, places) = {
            let mut order = lock(&self.order);
            let seq = order.events;
            order.places = self
                .hub
                .local_clients()
                .into_iter()
                .map(|place| (place.id, (place.name, place.rooms)))
                .collect();
            let places: Vec<(u64, Bytes)> = order
                .places
                .iter()
                .map(|(id, (name, rooms))| (id.get(), frame::encode_place(name, rooms)))
                .collect();
            (seq, places)
        };
        let clients = self.keys.clients(&self.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&clients).ignore();
        for chunk in places.chunks(1000) {
            let pairs: Vec<(u64, &[u8])> = chunk.iter().map(|(id, p)| (*id, p.as_ref())).collect();
            pipe.hset_multiple(&clients, &pairs).ignore();
        }
        pipe.set(self.keys.seq(&self.node), seq).ignore();
        pipe.exec_async(&mut self.commands.clone()).await?;
        self.stale.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Reads `node`'s picture of itself, and replaces what this node knew
    /// of it.
    async fn reload(&self, node: &NodeName) -> redis::RedisResult<()> {
        let (seq, epoch, flat): (u64, Option<u64>, Vec<Vec<u8>>) = Script::new(keys::PICTURE)
            .key(self.keys.clients(node))
            .key(self.keys.seq(node))
            .key(self.keys.lease(node))
            .invoke_async(&mut self.commands.clone())
            .await?;
        let Some(epoch) = epoch else {
            self.gone(node, "its server left the cluster");
            return Ok(());
        };
        let mut places = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let id = std::str::from_utf8(&pair[0])
                .ok()
                .and_then(|id| id.parse::<u64>().ok());
            let Some(id) = id else { continue };
            match frame::decode_place(ClientId::new(id), Bytes::from(pair[1].clone())) {
                Ok(place) => places.push(place),
                Err(error) => warn!(%node, %error, "skipped a client of another node's picture"),
            }
        }
        let events = self.keys.events();
        let mut received = lock(&self.received);
        self.hub.remote_node(node, places);
        received.set(node, &events, epoch, seq);
        debug!(%node, seq, "read another node's picture");
        Ok(())
    }

    /// Reads every live node's picture.
    async fn reload_all(&self) -> redis::RedisResult<()> {
        let nodes: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.nodes())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.commands.clone())
            .await?;
        // Nodes known here but gone from the list are left to the
        // heartbeat, which makes sure (one that joined since is not).
        for node in nodes {
            if node != *self.node {
                self.reload(&node.as_str().into()).await?;
            }
        }
        Ok(())
    }

    fn gone(&self, node: &NodeName, reason: &str) {
        lock(&self.received).forget_node(node);
        self.hub.remote_node_gone(node, reason);
    }

    /// Joins again after losing the lease or Redis: takes the lease,
    /// claims the local clients' names again (a client whose name was
    /// taken meanwhile is disconnected, saying so), writes this node's
    /// picture, subscribes again and reads the others'.
    async fn rejoin(&self) -> redis::RedisResult<()> {
        if !self.register().await? {
            warn!(node = %self.node, "another live node has this node's name; trying again");
            return Err(redis::RedisError::from(std::io::Error::other(
                "node name taken",
            )));
        }
        // Every local name claimed again, a thousand to a round trip.
        let mut lost = 0;
        let named: Vec<_> = self
            .hub
            .local_clients()
            .into_iter()
            .filter(|place| !place.name.key().starts_with("guest-"))
            .collect();
        for chunk in named.chunks(1000) {
            let mut pipe = redis::pipe();
            for place in chunk {
                pipe.add_command(self.name_script(
                    keys::CLAIM,
                    &self.name_keys(&place.name),
                    &self.owner(place.id),
                    true,
                ));
            }
            let answers: Vec<i64> = pipe.query_async(&mut self.commands.clone()).await?;
            for (place, answer) in chunk.iter().zip(answers) {
                match claimed(answer) {
                    Ok(()) => {}
                    Err(Unclaimed::Taken) => {
                        lost += 1;
                        let why = format!(
                            "while this server was cut off from its cluster, a client of another server took the name {}; connect again",
                            place.name
                        );
                        warn!(name = %place.name, client = %place.id, "a client lost its name to another node: disconnected");
                        self.hub
                            .disconnect(place.id, CloseReason::Refused(why.into()));
                    }
                    Err(Unclaimed::Degraded(why)) => {
                        return Err(redis::RedisError::from(std::io::Error::other(
                            why.to_string(),
                        )))
                    }
                }
            }
        }
        self.write_picture().await?;
        let mut channels = vec![self.keys.events(), self.keys.inbox(&self.node)];
        channels.extend(
            self.hub
                .local_clients()
                .into_iter()
                .flat_map(|place| place.rooms)
                .collect::<HashSet<_>>()
                .iter()
                .map(|room| self.keys.room(room)),
        );
        self.subscriber.clone().subscribe(&channels).await?;
        redis::cmd("PUBLISH")
            .arg(self.keys.events())
            .arg(self.read_me_again().as_ref())
            .exec_async(&mut self.commands.clone())
            .await?;
        self.reload_all().await?;
        if lost > 0 {
            info!(node = %self.node, lost, "rejoined the cluster; some clients lost their names");
        }
        Ok(())
    }

    /// An `EVAL` of the claim or release script for name `keys`, held by
    /// `owner`.
    fn name_script(&self, script: &str, keys: &[String], owner: &str, claim: bool) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        let extra = if claim { 2 } else { 1 };
        cmd.arg(script).arg(keys.len() + extra);
        for key in keys {
            cmd.arg(key);
        }
        cmd.arg(self.keys.names(&self.node));
        if claim {
            cmd.arg(self.keys.lease(&self.node))
                .arg(owner)
                .arg(self.keys.prefix())
                .arg(self.epoch);
        } else {
            cmd.arg(owner);
        }
        cmd
    }
}

impl Backplane for Cluster {
    fn node(&self) -> Option<&NodeName> {
        Some(&self.inner.node)
    }

    fn publish(&self, room: &RoomName, from: &Name, _from_id: ClientId, bodies: &[Body]) {
        let inner = &self.inner;
        let channel = inner.keys.room(room);
        let payload = Payload::Message {
            room: room.clone(),
            from: from.clone(),
            bodies: bodies.to_vec(),
        };
        let mut frame = inner.frame(0, &payload);
        let mut order = lock(&inner.order);
        let order = &mut *order;
        let streams = &mut order.streams;
        let (stream, seq) = order.rooms.entry(channel.clone()).or_insert_with(|| {
            *streams += 1;
            (*streams, 0)
        });
        *seq += 1;
        frame::set_position(&mut frame, &inner.node, *stream, *seq);
        if inner.queue(Outgoing::Publish {
            channel,
            frame: frame.freeze(),
        }) {
            inner.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn direct(&self, to: &RemoteClient, to_name: &Name, from: &Name, _: ClientId, body: &Body) {
        let payload = Payload::Direct {
            to: to.id,
            to_name: to_name.clone(),
            from: from.clone(),
            body: body.clone(),
        };
        self.inner.to_inbox(to, &payload);
    }

    fn reserve_device_names(&self, prefix: &str) {
        let inner = &self.inner;
        {
            let mut prefixes = lock(&inner.device_prefixes);
            if prefixes.iter().any(|p| p == prefix) {
                return;
            }
            prefixes.push(prefix.to_owned());
        }
        let mut commands = inner.commands.clone();
        let key = inner.keys.device_prefixes();
        let prefix = prefix.to_owned();
        tokio::spawn(async move {
            let added: redis::RedisResult<i64> = redis::cmd("SADD")
                .arg(&key)
                .arg(&prefix)
                .query_async(&mut commands)
                .await;
            if let Err(error) = added {
                warn!(%prefix, %error, "could not tell the cluster that names under this prefix are kept for devices");
            }
        });
    }

    fn replace_device(&self, holder: &RemoteClient, name: &Name, proof: DeviceProof) {
        let payload = Payload::ReplaceDevice {
            to: holder.id,
            name: name.clone(),
            proof: proof.as_u8(),
        };
        self.inner.to_inbox(holder, &payload);
    }

    fn changed(&self, change: Change) {
        let inner = &self.inner;
        let mut order = lock(&inner.order);
        order.events += 1;
        let seq = order.events;
        let (mut subscribe, mut unsubscribe, mut release) = (None, None, None);
        let id = match &change {
            Change::Connected { id, name } => {
                order.places.insert(*id, (name.clone(), Vec::new()));
                *id
            }
            Change::Joined {
                id, room, first, ..
            } => {
                if let Some((_, rooms)) = order.places.get_mut(id) {
                    if !rooms.contains(room) {
                        rooms.push(room.clone());
                    }
                }
                if *first {
                    subscribe = Some(inner.keys.room(room));
                }
                *id
            }
            Change::Left { id, room, last, .. } => {
                if let Some((_, rooms)) = order.places.get_mut(id) {
                    rooms.retain(|r| r != room);
                }
                if *last {
                    let channel = inner.keys.room(room);
                    order.rooms.remove(&channel);
                    lock(&inner.received).forget_channel(&channel);
                    unsubscribe = Some(channel);
                }
                *id
            }
            Change::Renamed { id, old, new } => {
                if let Some((name, _)) = order.places.get_mut(id) {
                    *name = new.clone();
                }
                if old.key() != new.key() && !old.key().starts_with("guest-") {
                    release = Some(inner.name_keys(old));
                }
                *id
            }
            Change::Departed { id, name } => {
                order.places.remove(id);
                if !name.key().starts_with("guest-") {
                    release = Some(inner.name_keys(name));
                }
                *id
            }
        };
        let place = order
            .places
            .get(&id)
            .map(|(name, rooms)| frame::encode_place(name, rooms));
        let mut frame = inner.frame(0, &Payload::Change(change));
        frame::set_seq(&mut frame, &inner.node, seq);
        if !inner.queue(Outgoing::Change {
            seq,
            id,
            place,
            frame: frame.freeze(),
            subscribe,
            unsubscribe,
            release,
            owner: inner.owner(id),
        }) {
            inner.stale.store(true, Ordering::Relaxed);
        }
    }

    fn claim(&self, id: ClientId, name: &Name) -> Claim {
        let inner = &self.inner;
        if inner.degraded.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err(Unclaimed::Degraded(
                "its Redis is out of reach".into(),
            ))));
        }
        let (done, answer) = oneshot::channel();
        let queued = inner.queue(Outgoing::Claim {
            keys: inner.name_keys(name),
            owner: inner.owner(id),
            done,
        });
        Box::pin(async move {
            if !queued {
                return Err(Unclaimed::Degraded(
                    "too much is waiting for its Redis".into(),
                ));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(Unclaimed::Degraded("this server is leaving it".into())))
        })
    }

    fn unclaim(&self, id: ClientId, name: &Name) {
        let inner = &self.inner;
        let keys = inner.name_keys(name);
        let owner = inner.owner(id);
        let mut commands = inner.commands.clone();
        let names = inner.keys.names(&inner.node);
        tokio::spawn(async move {
            let script = Script::new(keys::RELEASE);
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation.key(names).arg(owner);
            let _: redis::RedisResult<i64> = invocation.invoke_async(&mut commands).await;
        });
    }
}

/// Sends what the node queued, in order: what is waiting goes in one
/// pipeline, a round trip for all of it, claims included.
async fn publish_loop(inner: Arc<Inner>, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut subscriber = inner.subscriber.clone();
    let mut items = Vec::with_capacity(BATCH);
    let mut batch = PublishBatch::new(inner.commands.clone());
    while outgoing.recv_many(&mut items, BATCH).await > 0 {
        let degraded = inner.degraded.load(Ordering::Relaxed) || inner.left.load(Ordering::Relaxed);
        for item in items.drain(..) {
            if degraded {
                match item {
                    Outgoing::Claim { done, .. } => {
                        let _ =
                            done.send(Err(Unclaimed::Degraded("its Redis is out of reach".into())));
                    }
                    Outgoing::Change { .. } => inner.stale.store(true, Ordering::Relaxed),
                    Outgoing::Publish { .. } => {
                        inner.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            match item {
                Outgoing::Publish { channel, frame } => {
                    batch.pipe.publish(channel, frame.as_ref()).ignore();
                    batch.count += 1;
                }
                Outgoing::Change {
                    seq,
                    id,
                    place,
                    frame,
                    subscribe,
                    unsubscribe,
                    release,
                    owner,
                } => {
                    // The room's channel is subscribed before anyone hears
                    // of the join, and unsubscribed after the leave.
                    if let Some(channel) = subscribe {
                        batch.send(&inner).await;
                        if let Err(error) = subscriber.subscribe(&channel).await {
                            inner.degrade(&error.to_string());
                        }
                    }
                    // Its place, its number and its frame together: one
                    // transaction per change, not per batch, which would
                    // hold Redis up.
                    let clients = inner.keys.clients(&inner.node);
                    let pipe = &mut batch.pipe;
                    pipe.cmd("MULTI").ignore();
                    match place {
                        Some(place) => pipe.hset(&clients, id.get(), place.as_ref()).ignore(),
                        None => pipe.hdel(&clients, id.get()).ignore(),
                    };
                    pipe.set(inner.keys.seq(&inner.node), seq).ignore();
                    pipe.publish(inner.keys.events(), frame.as_ref()).ignore();
                    if let Some(keys) = release {
                        pipe.add_command(inner.name_script(keys::RELEASE, &keys, &owner, false))
                            .ignore();
                    }
                    pipe.cmd("EXEC").ignore();
                    batch.count += 1;
                    if let Some(channel) = unsubscribe {
                        batch.send(&inner).await;
                        if let Err(error) = subscriber.unsubscribe(&channel).await {
                            inner.degrade(&error.to_string());
                        }
                    }
                }
                Outgoing::Claim { keys, owner, done } => {
                    // After whatever was queued before it (a release of
                    // the same name by a client that left), in the same
                    // round trip.
                    batch
                        .pipe
                        .add_command(inner.name_script(keys::CLAIM, &keys, &owner, true));
                    batch.claims.push(done);
                    batch.count += 1;
                }
            }
        }
        batch.send(&inner).await;
    }
}

/// What the publisher sends in one round trip.
struct PublishBatch {
    pipe: redis::Pipeline,
    /// Items in the pipeline, for the count of failures.
    count: usize,
    /// The claims in it, in order: each answers with the script's result.
    claims: Vec<oneshot::Sender<Result<(), Unclaimed>>>,
    commands: ConnectionManager,
}

impl PublishBatch {
    fn new(commands: ConnectionManager) -> Self {
        PublishBatch {
            pipe: redis::pipe(),
            count: 0,
            claims: Vec::new(),
            commands,
        }
    }

    /// Sends what the batch holds, if anything, and answers its claims; a
    /// failure marks the cluster degraded and counts what was lost.
    async fn send(&mut self, inner: &Inner) {
        if self.count == 0 {
            return;
        }
        let pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        let count = std::mem::take(&mut self.count);
        let claims = std::mem::take(&mut self.claims);
        match pipe.query_async::<Vec<i64>>(&mut self.commands).await {
            Ok(answers) => {
                for (done, answer) in claims.into_iter().zip(answers) {
                    let _ = done.send(claimed(answer));
                }
            }
            Err(error) => {
                inner
                    .stats
                    .send_failures
                    .fetch_add(count as u64, Ordering::Relaxed);
                inner.stale.store(true, Ordering::Relaxed);
                inner.degrade(&error.to_string());
                for done in claims {
                    let _ = done.send(Err(Unclaimed::Degraded("its Redis is out of reach".into())));
                }
            }
        }
    }
}

/// An error for a Redis call that took longer than it may.
fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} got no answer from Redis in time"),
    ))
}

/// What the claim script's answer means.
fn claimed(answer: i64) -> Result<(), Unclaimed> {
    match answer {
        1 => Ok(()),
        0 => Err(Unclaimed::Taken),
        _ => Err(Unclaimed::Degraded(
            "this server's lease in the cluster ran out".into(),
        )),
    }
}

/// Reads other nodes' pictures again when asked.
async fn resync_loop(inner: Arc<Inner>, mut requests: mpsc::UnboundedReceiver<Resync>) {
    while let Some(request) = requests.recv().await {
        if inner.left.load(Ordering::Relaxed) {
            return;
        }
        // Several requests at once: one pass does for all.
        let mut all = matches!(request, Resync::All);
        let mut nodes = HashSet::new();
        if let Resync::Node(node) = request {
            nodes.insert(node);
        }
        while let Ok(more) = requests.try_recv() {
            match more {
                Resync::All => all = true,
                Resync::Node(node) => {
                    nodes.insert(node);
                }
            }
        }
        let result = if all {
            inner.reload_all().await
        } else {
            let mut result = Ok(());
            for node in &nodes {
                result = result.and(inner.reload(node).await);
            }
            result
        };
        if let Err(error) = result {
            // The heartbeat finds Redis back, and rejoins: which reads all.
            debug!(%error, "could not read the other nodes' pictures");
        }
    }
}

/// Renews this node's lease every third of its length, reaps nodes whose
/// leases ran out, and notices when this node was fenced or Redis came
/// back.
async fn heartbeat_loop(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let script = Script::new(keys::HEARTBEAT);
    let mut commands = inner.heartbeat.clone();
    let mut missing: HashSet<NodeName> = HashSet::new();
    loop {
        tick.tick().await;
        if inner.left.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        // Bounded: a Redis that does not answer (a reconnect that hangs)
        // makes the cluster degraded, never stops the heartbeat.
        let patience = inner.lease / 3;
        let beat: redis::RedisResult<(i64, Vec<String>, Vec<Value>)> = tokio::time::timeout(
            patience,
            script
                .key(inner.keys.lease(&inner.node))
                .key(inner.keys.nodes())
                .arg(inner.epoch)
                .arg(inner.lease.as_millis() as u64)
                .arg(&*inner.node)
                .arg(inner.keys.prefix())
                .invoke_async(&mut commands),
        )
        .await
        .unwrap_or_else(|_| Err(timed_out("the lease renewal")));
        // The subscriber reconnects on its own only when used.
        let _ = tokio::time::timeout(
            patience,
            redis::cmd("PING").query_async::<Value>(&mut inner.subscriber.clone()),
        )
        .await;
        let (status, reaped, live) = match beat {
            Ok(beat) => beat,
            Err(error) => {
                inner.degrade(&error.to_string());
                continue;
            }
        };
        inner
            .stats
            .rtt_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        // Names kept for devices on any node are kept here too (a node
        // without device listeners would let a client wait under a
        // device's name for its traffic).
        let ours = lock(&inner.device_prefixes).clone();
        let mut exchange = redis::pipe();
        if !ours.is_empty() {
            exchange
                .cmd("SADD")
                .arg(inner.keys.device_prefixes())
                .arg(&ours)
                .ignore();
        }
        exchange.cmd("SMEMBERS").arg(inner.keys.device_prefixes());
        let prefixes: redis::RedisResult<(Vec<String>,)> =
            tokio::time::timeout(patience, exchange.query_async(&mut commands))
                .await
                .unwrap_or_else(|_| Err(timed_out("reading the device name prefixes")));
        match prefixes {
            Ok((prefixes,)) => inner.hub.keep_device_names(&prefixes),
            Err(error) => debug!(%error, "could not read the device name prefixes"),
        }
        for node in reaped {
            if node != *inner.node {
                info!(%node, "a node of the cluster stopped renewing its lease: its clients are gone");
                let reason = "its server stopped answering";
                inner.gone(&node.as_str().into(), reason);
                // The others hear it now, not at their next heartbeat.
                let gone = inner.frame(
                    0,
                    &Payload::Gone {
                        node: node.as_str().into(),
                        reason: reason.into(),
                    },
                );
                inner.queue(Outgoing::Publish {
                    channel: inner.keys.events(),
                    frame: gone.freeze(),
                });
            }
        }
        let mut nodes = Vec::new();
        for pair in live.chunks_exact(2) {
            let name: Option<String> = redis::from_redis_value_ref(&pair[0]).ok();
            let clients: Option<u64> = redis::from_redis_value_ref(&pair[1]).ok();
            if let (Some(name), Some(clients)) = (name, clients) {
                nodes.push(NodeStatus { name, clients });
            }
        }
        // A renewal answered a lease's length after it was sent (this
        // process was paused while it waited) renewed a lease that has run
        // out since: the others have reaped this node already.
        let fenced = status == 0 || started.elapsed() >= inner.lease;
        let recovering = inner.degraded.load(Ordering::Relaxed);
        if !fenced && !recovering && inner.stale.load(Ordering::Relaxed) {
            // A change could not be sent, but the lease and the names held:
            // writing the picture again is enough.
            if let Err(error) = inner.write_picture().await {
                debug!(%error, "could not write this node's picture");
            } else {
                inner.queue(Outgoing::Publish {
                    channel: inner.keys.events(),
                    frame: inner.read_me_again(),
                });
            }
        } else if fenced || recovering {
            if fenced {
                inner.stats.fenced.fetch_add(1, Ordering::Relaxed);
                warn!(node = %inner.node, "this node's lease ran out (it was paused or cut off): joining the cluster again");
            }
            match inner.rejoin().await {
                Ok(()) => {
                    if inner.degraded.swap(false, Ordering::SeqCst) {
                        info!(node = %inner.node, "cluster recovered");
                        inner.hub.notify_all(
                            "cluster_recovered",
                            "this server is back in touch with the rest of its cluster",
                        );
                    }
                }
                Err(error) => {
                    inner.degrade(&error.to_string());
                    continue;
                }
            }
        } else {
            // Nodes this one has not heard of, or has forgotten: read them.
            let known: HashSet<NodeName> = inner
                .hub
                .remote_nodes()
                .into_iter()
                .map(|(node, _)| node)
                .collect();
            for status in &nodes {
                if status.name != *inner.node && !known.contains(status.name.as_str()) {
                    let _ = inner.resync.send(Resync::Node(status.name.as_str().into()));
                }
            }
            // A node missing from two heartbeats in a row is gone (its
            // goodbye was lost); once could be a node that joined since
            // this heartbeat read the list.
            let live: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            let now_missing: HashSet<NodeName> = known
                .into_iter()
                .filter(|node| !live.contains(&**node))
                .collect();
            for node in now_missing.intersection(&missing) {
                inner.gone(node, "its server left the cluster");
            }
            missing = now_missing;
        }
        *lock(&inner.live) = nodes;
    }
}

/// What handles frames pushed by the subscriber connection: runs on that
/// connection's task, so it never waits.
struct Inbound {
    hub: Hub,
    node: NodeName,
    stats: Arc<Stats>,
    received: Arc<Mutex<Sequences>>,
    resync: mpsc::UnboundedSender<Resync>,
}

impl Inbound {
    fn arrive(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let mut data = push.data.into_iter();
                let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
                    return;
                };
                let (Value::BulkString(channel), Value::BulkString(payload)) = (channel, payload)
                else {
                    return;
                };
                let channel = String::from_utf8_lossy(&channel).into_owned();
                self.frame(&channel, Bytes::from(payload));
            }
            PushKind::Disconnection => {
                // What was published meanwhile is lost: room gaps show
                // when the next message comes; changes are read again.
                debug!(node = %self.node, "the cluster subscriber lost its connection");
                let _ = self.resync.send(Resync::All);
            }
            _ => {}
        }
    }

    fn frame(&self, channel: &str, frame: Bytes) {
        let (header, payload) = match frame::decode(frame) {
            Ok(decoded) => decoded,
            Err(error) => {
                warn!(%channel, %error, "dropped a frame from the cluster");
                return;
            }
        };
        // A node hears its own room messages: it subscribes where it publishes.
        if header.origin == self.node {
            return;
        }
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        match payload {
            Payload::Message { room, from, bodies } => {
                let arrival = lock(&self.received).arrive(channel, &header);
                match arrival {
                    FrameOrder::Stale => return,
                    FrameOrder::AfterGap { missed } => {
                        self.stats.gaps.fetch_add(missed, Ordering::Relaxed);
                        warn!(room = %room, origin = %header.origin, missed, "messages from another node were lost");
                        self.hub.notify_room(
                            &room,
                            "messages_lost",
                            &format!("{missed} message(s) from another server of the cluster may have been lost in #{room}"),
                        );
                    }
                    FrameOrder::InOrder => {}
                }
                self.hub.remote_message(&room, from, bodies);
            }
            Payload::Direct {
                to,
                to_name,
                from,
                body,
            } => {
                if let FrameOrder::AfterGap { missed } =
                    lock(&self.received).arrive(channel, &header)
                {
                    self.stats.gaps.fetch_add(missed, Ordering::Relaxed);
                    warn!(origin = %header.origin, missed, "direct messages from another node were lost");
                }
                if !self.hub.remote_direct(to, &to_name, from, body) {
                    debug!(to = %to_name, "a direct message from another node found nobody");
                }
            }
            Payload::Change(change) => {
                let mut received = lock(&self.received);
                match received.arrive(channel, &header) {
                    FrameOrder::Stale => {}
                    FrameOrder::InOrder => self.hub.remote_change(&header.origin, change),
                    FrameOrder::AfterGap { missed } => {
                        self.stats.gaps.fetch_add(missed, Ordering::Relaxed);
                        self.hub.remote_change(&header.origin, change);
                        let _ = self.resync.send(Resync::Node(header.origin.clone()));
                    }
                }
            }
            Payload::Resync => {
                let _ = self.resync.send(Resync::Node(header.origin));
            }
            Payload::Gone { node, reason } => {
                lock(&self.received).forget_node(&node);
                self.hub.remote_node_gone(&node, &reason);
            }
            Payload::ReplaceDevice { to, name, proof } => {
                if let FrameOrder::AfterGap { missed } =
                    lock(&self.received).arrive(channel, &header)
                {
                    self.stats.gaps.fetch_add(missed, Ordering::Relaxed);
                    warn!(origin = %header.origin, missed, "direct messages from another node were lost");
                }
                if self
                    .hub
                    .replace_device(to, &name, DeviceProof::from_u8(proof))
                {
                    info!(%name, client = %to, node = %header.origin, "a device connected again on another node: its stale connection here is closed");
                } else {
                    debug!(%name, node = %header.origin, "another node asked to replace a device that is not here");
                }
            }
        }
    }
}
