//! What a node sends to Redis: one task takes what the node queued
//! (publications, changes of its clients, name claims) and sends it in
//! order, what is waiting in one pipeline.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::keys;
use super::node::Inner;
use crate::hub::{ClientId, Unclaimed};

/// What the publisher task sends, in order.
pub(super) enum Outgoing {
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

/// Most frames sent to Redis in one pipeline.
pub(super) const BATCH: usize = 512;

/// Sends what the node queued, in order: what is waiting goes in one
/// pipeline, a round trip for all of it, claims included.
pub(super) async fn publish_loop(inner: Arc<Inner>, mut outgoing: mpsc::Receiver<Outgoing>) {
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
pub(super) fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} got no answer from Redis in time"),
    ))
}

/// What the claim script's answer means.
pub(super) fn claimed(answer: i64) -> Result<(), Unclaimed> {
    match answer {
        1 => Ok(()),
        0 => Err(Unclaimed::Taken),
        _ => Err(Unclaimed::Degraded(
            "this server's lease in the cluster ran out".into(),
        )),
    }
}
