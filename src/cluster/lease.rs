//! A node's lease and its picture in Redis: renewing the lease, reaping
//! nodes whose leases ran out, rejoining after losing Redis or the lease,
//! and reading the other nodes' pictures again when frames were missed.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis::{Script, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::frame::{self, Payload};
use super::keys;
use super::node::{Inner, NodeStatus, Resync};
use super::publish::{claimed, timed_out, Outgoing};
use crate::hub::{ClientId, CloseReason, NodeName, Unclaimed};
use crate::sync::lock;

impl Inner {
    /// Writes this node's picture of itself into Redis from scratch.
    pub(super) async fn write_picture(&self) -> redis::RedisResult<()> {
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
    pub(super) async fn reload_all(&self) -> redis::RedisResult<()> {
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
        let rooms: HashSet<String> = self
            .hub
            .local_clients()
            .into_iter()
            .flat_map(|place| place.rooms)
            .collect::<HashSet<_>>()
            .iter()
            .map(|room| self.keys.room(room))
            .collect();
        // The publisher's reckoning of why each room is heard follows:
        // changes dropped while Redis was away never reached it.
        crate::sync::lock(&self.hearing).members_in(&rooms);
        let mut channels = vec![self.keys.events(), self.keys.inbox(&self.node)];
        channels.extend(rooms);
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
}

/// Reads other nodes' pictures again when asked.
pub(super) async fn resync_loop(inner: Arc<Inner>, mut requests: mpsc::UnboundedReceiver<Resync>) {
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
pub(super) async fn heartbeat_loop(inner: Arc<Inner>) {
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
                    let recovered = inner.degraded.swap(false, Ordering::SeqCst);
                    // Joins dropped while the rejoin was under way are
                    // heard now (queued after the flag is down, so every
                    // change after it goes through).
                    inner.queue(Outgoing::Rehear);
                    if recovered {
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
