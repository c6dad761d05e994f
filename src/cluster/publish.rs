//! What a node sends to Redis: one task takes what the node queued
//! (publications, changes of its clients, name claims) and sends it in
//! order, what is waiting in one pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::keys;
use super::node::Inner;
use crate::hub::{
    unix_millis, Body, ClientId, Framing, Kept, Name, Offset, RoomName, SharedHistory, Unclaimed,
};
use crate::sync::lock;

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
    /// A message for a room's shared history (boxed: the rare big item).
    Append(Box<Append>),
    /// Reads a room's shared history, once the node hears the room: it
    /// hears it until the matching `Release`.
    Read {
        room: RoomName,
        limit: usize,
        done: oneshot::Sender<Result<SharedHistory, Arc<str>>>,
    },
    /// Ends what a `Read` began.
    Release { channel: String },
    /// After a rejoin: hears every room the node's clients are in now.
    /// A join whose change was dropped while Redis was away, after the
    /// rejoin had listed the rooms to subscribe, would not be heard.
    Rehear,
}

/// A message appended to a room's shared history, then published.
pub(super) struct Append {
    pub(super) room: RoomName,
    pub(super) from: Name,
    pub(super) from_id: ClientId,
    pub(super) at: u64,
    pub(super) bodies: Vec<Body>,
    /// The frame every node receives, its position still to be written.
    pub(super) frame: Bytes,
    /// The epoch for the history, if it does not exist yet.
    pub(super) epoch: u64,
    pub(super) max_messages: usize,
    pub(super) max_age_ms: u64,
}

/// Why this node hears a room's channel: members of its own there, and
/// reads of the room's history in progress. It subscribes when the first
/// reason comes and unsubscribes when the last goes.
#[derive(Debug, Default)]
pub(super) struct Hearing {
    rooms: HashMap<String, (bool, usize)>,
}

impl Hearing {
    /// After a rejoin, which subscribed to exactly `channels` for the
    /// node's members: those are heard for members, no other is (reads
    /// in progress keep theirs).
    pub(super) fn members_in(&mut self, channels: &HashSet<String>) {
        self.rooms.retain(|channel, (members, reads)| {
            *members = channels.contains(channel);
            *members || *reads > 0
        });
        for channel in channels {
            self.rooms.entry(channel.clone()).or_default().0 = true;
        }
    }

    /// Adds a reason (`member`, or a read); returns whether the channel
    /// must be subscribed now.
    fn start(&mut self, channel: &str, member: bool) -> bool {
        let (members, reads) = self.rooms.entry(channel.to_owned()).or_default();
        let was = *members || *reads > 0;
        match member {
            true => *members = true,
            false => *reads += 1,
        }
        !was
    }

    /// Takes a reason away; returns whether the channel must be
    /// unsubscribed now.
    fn stop(&mut self, channel: &str, member: bool) -> bool {
        let Some((members, reads)) = self.rooms.get_mut(channel) else {
            return member;
        };
        match member {
            true => *members = false,
            false => *reads = reads.saturating_sub(1),
        }
        let done = !*members && *reads == 0;
        if done {
            self.rooms.remove(channel);
        }
        done
    }
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
                    Outgoing::Append(append) => {
                        inner.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                        unrecorded(&inner, *append);
                    }
                    Outgoing::Read { done, .. } => {
                        let _ = done.send(Err("its Redis is out of reach".into()));
                    }
                    Outgoing::Release { channel } => {
                        if lock(&inner.hearing).stop(&channel, false) {
                            let _ = subscriber.unsubscribe(&channel).await;
                        }
                    }
                    // The next rejoin subscribes them all.
                    Outgoing::Rehear => {}
                }
                continue;
            }
            match item {
                Outgoing::Append(append) => {
                    let cmd = append_script(&inner, &append);
                    batch.pipe.add_command(cmd).ignore();
                    batch.appends.push(*append);
                    batch.count += 1;
                }
                Outgoing::Read { room, limit, done } => {
                    let channel = inner.keys.room(&room);
                    if lock(&inner.hearing).start(&channel, false) {
                        batch.send(&inner).await;
                        if let Err(error) = subscriber.subscribe(&channel).await {
                            lock(&inner.hearing).stop(&channel, false);
                            inner.degrade(&error.to_string());
                            let _ = done.send(Err("its Redis is out of reach".into()));
                            continue;
                        }
                    }
                    // On the subscriber's connection, after its
                    // subscription: what was published before the read
                    // arrives before its answer.
                    tokio::spawn(read(inner.clone(), room, limit, done));
                }
                Outgoing::Release { channel } => {
                    if lock(&inner.hearing).stop(&channel, false) {
                        batch.send(&inner).await;
                        if let Err(error) = subscriber.unsubscribe(&channel).await {
                            inner.degrade(&error.to_string());
                        }
                    }
                }
                Outgoing::Rehear => {
                    // The rooms of now, in the queue's order: a join after
                    // this is a change of its own, and a leave before it
                    // is in it already.
                    let rooms: HashSet<String> = inner
                        .hub
                        .local_clients()
                        .into_iter()
                        .flat_map(|place| place.rooms)
                        .map(|room| inner.keys.room(&room))
                        .collect();
                    for channel in rooms {
                        if lock(&inner.hearing).start(&channel, true) {
                            batch.send(&inner).await;
                            if let Err(error) = subscriber.subscribe(&channel).await {
                                inner.degrade(&error.to_string());
                            }
                        }
                    }
                }
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
                    if let Some(channel) = subscribe.filter(|c| lock(&inner.hearing).start(c, true))
                    {
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
                    if let Some(channel) =
                        unsubscribe.filter(|c| lock(&inner.hearing).stop(c, true))
                    {
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
    /// The appends in it: delivered here alone if the batch fails.
    appends: Vec<Append>,
    commands: ConnectionManager,
}

impl PublishBatch {
    fn new(commands: ConnectionManager) -> Self {
        PublishBatch {
            pipe: redis::pipe(),
            count: 0,
            claims: Vec::new(),
            appends: Vec::new(),
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
        let appends = std::mem::take(&mut self.appends);
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
                for append in appends {
                    unrecorded(inner, append);
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

/// The append script's call for `append`.
fn append_script(inner: &Inner, append: &Append) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(keys::APPEND)
        .arg(2)
        .arg(inner.keys.history_meta(&append.room))
        .arg(inner.keys.history(&append.room))
        .arg(format!("{:016x}", append.epoch))
        .arg(append.max_messages)
        .arg(append.at)
        .arg(append.max_age_ms.clamp(1, i64::MAX as u64))
        .arg(inner.keys.room(&append.room))
        .arg(append.frame.as_ref())
        .arg(append.from.as_str())
        .arg(append.bodies.len());
    for body in &append.bodies {
        cmd.arg(match body.framing {
            Framing::Line => 0,
            Framing::Chunk => 1,
        })
        .arg(body.bytes.as_ref());
    }
    cmd
}

/// A message the cluster could not keep is delivered here alone.
fn unrecorded(inner: &Inner, append: Append) {
    inner
        .hub
        .unrecorded(&append.room, &append.from, append.from_id, append.bodies);
}

/// Reads a room's shared history on the subscriber's connection and
/// answers `done`; a failed read lets go of the room at once.
async fn read(
    inner: Arc<Inner>,
    room: RoomName,
    limit: usize,
    done: oneshot::Sender<Result<SharedHistory, Arc<str>>>,
) {
    let mut subscriber = inner.subscriber.clone();
    let mut cmd = redis::cmd("EVAL");
    let (_, max_age_ms, max_bytes) = inner.hub.history_bounds();
    cmd.arg(keys::READ)
        .arg(2)
        .arg(inner.keys.history_meta(&room))
        .arg(inner.keys.history(&room))
        .arg(limit.max(1))
        .arg(max_bytes)
        .arg(crate::hub::KEPT_OVERHEAD);
    let answer = tokio::time::timeout(inner.lease, cmd.query_async::<Value>(&mut subscriber)).await;
    let read = match answer {
        Ok(Ok(value)) => parse_history(value, max_age_ms)
            .map_err(|why| Arc::from(format!("its answer was not a history: {why}"))),
        Ok(Err(error)) => Err(Arc::from(error.to_string())),
        Err(_) => Err(Arc::from(timed_out("reading a room's history").to_string())),
    };
    if read.is_err() {
        inner.queue(Outgoing::Release {
            channel: inner.keys.room(&room),
        });
    }
    let _ = done.send(read);
}

/// Reads what the read script answered: messages older than
/// `max_age_ms` are left out.
fn parse_history(value: Value, max_age_ms: u64) -> Result<SharedHistory, &'static str> {
    let items = match value {
        Value::Nil => {
            return Ok(SharedHistory {
                epoch: None,
                next: 1,
                kept: Vec::new(),
            })
        }
        Value::Array(items) => items,
        _ => return Err("not a list"),
    };
    let mut items = items.into_iter();
    let (Some(epoch), Some(next), Some(Value::Array(entries))) =
        (items.next(), items.next(), items.next())
    else {
        return Err("not epoch, next and entries");
    };
    let epoch = text(&epoch)
        .and_then(|e| u64::from_str_radix(&e, 16).ok())
        .ok_or("bad epoch")?;
    let next = text(&next)
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or("bad next")?;
    let oldest = unix_millis(std::time::SystemTime::now()).saturating_sub(max_age_ms);
    let mut kept = Vec::with_capacity(entries.len());
    // Newest first: the run ends at the first that is too old.
    for entry in entries {
        let kept_entry = parse_entry(entry, epoch)?;
        if kept_entry.at < oldest {
            break;
        }
        kept.push(kept_entry);
    }
    kept.reverse();
    Ok(SharedHistory {
        epoch: Some(epoch),
        next,
        kept,
    })
}

/// One stream entry: `[0-SEQ, [f, FROM, a, AT, k, FRAMING, b, BODY]]`.
fn parse_entry(entry: Value, epoch: u64) -> Result<Kept, &'static str> {
    let Value::Array(entry) = entry else {
        return Err("bad entry");
    };
    let [id, Value::Array(fields)] = &entry[..] else {
        return Err("bad entry");
    };
    let seq = text(id)
        .and_then(|id| id.strip_prefix("0-").and_then(|s| s.parse::<u64>().ok()))
        .ok_or("bad entry id")?;
    let (mut from, mut at, mut framing, mut bytes) = (None, None, Framing::Line, None);
    for pair in fields.chunks(2) {
        let [field, value] = pair else { break };
        match text(field).as_deref() {
            Some("f") => from = text(value).and_then(|n| Name::new(&n).ok()),
            Some("a") => at = text(value).and_then(|a| a.parse::<u64>().ok()),
            Some("k") if text(value).as_deref() == Some("1") => framing = Framing::Chunk,
            Some("b") => {
                if let Value::BulkString(body) = value {
                    bytes = Some(Bytes::copy_from_slice(body));
                }
            }
            _ => {}
        }
    }
    let (Some(from), Some(at), Some(bytes)) = (from, at, bytes) else {
        return Err("entry lacks a field");
    };
    Ok(Kept {
        offset: Offset { epoch, seq },
        at,
        from,
        body: Body { bytes, framing },
    })
}

/// A reply as text, if it is one.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_is_heard_while_a_member_or_a_read_needs_it() {
        let mut hearing = Hearing::default();
        assert!(hearing.start("room:a", true), "the first member subscribes");
        assert!(!hearing.start("room:a", false), "a read rides along");
        assert!(!hearing.stop("room:a", true), "the read still needs it");
        assert!(hearing.stop("room:a", false), "the last reason goes");
        assert!(hearing.start("room:b", false), "a read alone subscribes");
        assert!(!hearing.start("room:b", true));
        assert!(!hearing.stop("room:b", false), "a member is still there");
    }

    #[test]
    fn a_rejoin_sets_which_rooms_members_need_and_keeps_reads() {
        let mut hearing = Hearing::default();
        hearing.start("room:left-meanwhile", true);
        hearing.start("room:read", false);
        // Redis was away: a join to room:new and the leave of
        // room:left-meanwhile never reached the publisher.
        let rooms: HashSet<String> = ["room:new".to_owned()].into();
        hearing.members_in(&rooms);
        assert!(
            hearing.stop("room:read", false),
            "the read was kept: its end is the room's last reason"
        );
        assert!(!hearing.start("room:new", false), "heard for its members");
        assert!(
            !hearing.stop("room:new", false),
            "a read ending does not stop a room with members"
        );
        assert!(
            hearing.start("room:left-meanwhile", false),
            "no longer heard"
        );
    }
}
