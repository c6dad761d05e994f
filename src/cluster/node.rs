//! One node of a cluster: joining (its connections to Redis, its lease
//! taken, the others' pictures read, its tasks started), leaving, its
//! status, and the state its tasks share ([`Inner`]). The tasks live
//! beside it: `publish` (what it sends), `lease` (its lease and picture),
//! `inbound` (what arrives); `backplane` is what the hub asks of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, Script};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::frame::{self, Header, Payload};
use super::inbound::Inbound;
use super::keys::{self, Keys};
use super::lease::{heartbeat_loop, resync_loop};
use super::publish::{publish_loop, Hearing, Outgoing};
use super::received::Sequences;
use super::ClusterConfig;
use crate::hub::{ClientId, Hub, Name, NodeName, RemoteClient, RoomName};
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

/// A node of a cluster: the hub's backplane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) hub: Hub,
    pub(super) keys: Keys,
    pub(super) node: NodeName,
    pub(super) epoch: u64,
    pub(super) lease: Duration,
    pub(super) url: String,
    /// Publications, changes, claims and reads.
    pub(super) commands: ConnectionManager,
    /// The lease alone, so that its renewal never waits behind a burst of
    /// publications.
    pub(super) heartbeat: ConnectionManager,
    pub(super) subscriber: ConnectionManager,
    pub(super) outgoing: mpsc::Sender<Outgoing>,
    /// The starts of this node's device names (`dev-`), written again to
    /// Redis with each heartbeat (a Redis restarted empty learns them).
    pub(super) device_prefixes: Mutex<Vec<String>>,
    /// Sequence numbers and the picture of this node, written in the order
    /// frames are queued.
    pub(super) order: Mutex<Order>,
    /// Where the other nodes' sequences stand.
    pub(super) received: Arc<Mutex<Sequences>>,
    pub(super) resync: mpsc::UnboundedSender<Resync>,
    pub(super) stats: Arc<Stats>,
    /// Set when Redis is out of reach.
    pub(super) degraded: AtomicBool,
    /// Set when a change could not be queued: the node's picture in Redis
    /// must be written again.
    pub(super) stale: AtomicBool,
    /// Set once the node has left: nothing more is sent.
    pub(super) left: AtomicBool,
    /// The live nodes and their clients, as the last heartbeat saw them.
    pub(super) live: Mutex<Vec<NodeStatus>>,
    /// Why the node hears each room channel it is subscribed to (its
    /// members, history reads): changed by the publisher, and by a rejoin.
    pub(super) hearing: Mutex<Hearing>,
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
pub(super) struct Order {
    /// The last change's number, on `events`.
    pub(super) events: u64,
    /// Each room channel's sequence: its stream and last number.
    pub(super) rooms: HashMap<String, (u64, u64)>,
    /// Streams given out so far.
    pub(super) streams: u64,
    /// The last number on each inbox this node sent to.
    pub(super) inboxes: HashMap<NodeName, u64>,
    /// Where each local client is: the picture kept in Redis.
    pub(super) places: HashMap<ClientId, (Name, Vec<RoomName>)>,
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) messages_out: AtomicU64,
    pub(super) messages_in: AtomicU64,
    pub(super) send_failures: AtomicU64,
    pub(super) gaps: AtomicU64,
    pub(super) fenced: AtomicU64,
    pub(super) rtt_us: AtomicU64,
}

/// A node's picture to read again.
#[derive(Debug)]
pub(super) enum Resync {
    Node(NodeName),
    All,
}

/// How long a node leaving waits for Redis to free its names.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The URL without its password, for messages and logs.
pub(super) fn redacted(url: &str) -> String {
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
            hearing: Mutex::default(),
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
    pub(super) fn status(&self) -> ClusterStatus {
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
    pub(super) fn to_inbox(&self, to: &RemoteClient, payload: &Payload) {
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

    pub(super) fn frame(&self, stream: u64, payload: &Payload) -> bytes::BytesMut {
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
    pub(super) async fn register(&self) -> redis::RedisResult<bool> {
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
    pub(super) fn read_me_again(&self) -> Bytes {
        let mut hello = self.frame(0, &Payload::Resync);
        frame::set_seq(&mut hello, &self.node, lock(&self.order).events);
        hello.freeze()
    }

    /// The owner string of local client `id`'s names.
    pub(super) fn owner(&self, id: ClientId) -> String {
        format!("{}:{}:{}", self.epoch, id.get(), self.node)
    }

    /// The Redis keys of `name`'s one or two comparison keys.
    pub(super) fn name_keys(&self, name: &Name) -> Vec<String> {
        let (key, shape) = (name.key(), name.shape_key());
        let mut keys = vec![self.keys.name(&key)];
        if shape != key {
            keys.push(self.keys.name(&shape));
        }
        keys
    }

    pub(super) fn queue(&self, item: Outgoing) -> bool {
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
    pub(super) fn degrade(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::SeqCst) {
            warn!(node = %self.node, redis = %self.url, "cluster degraded: {why}; local delivery goes on");
            self.hub.notify_all(
                "cluster_degraded",
                "this server lost touch with the rest of its cluster: clients of other servers cannot hear you, nor you them, until it recovers",
            );
        }
    }

    /// An `EVAL` of the claim or release script for name `keys`, held by
    /// `owner`.
    pub(super) fn name_script(
        &self,
        script: &str,
        keys: &[String],
        owner: &str,
        claim: bool,
    ) -> redis::Cmd {
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
