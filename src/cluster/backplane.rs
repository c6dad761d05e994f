//! The cluster as the hub sees it: [`Backplane`], what the hub asks of
//! the other nodes (publish to a room, send to a remote client, claim a
//! name, announce a change).

use std::sync::atomic::Ordering;

use redis::Script;
use tokio::sync::oneshot;
use tracing::warn;

use super::frame::{self, Payload};
use super::keys;
use super::node::Cluster;
use super::publish::{Append, Outgoing};
use crate::hub::{
    unix_millis, Backplane, Body, Change, Claim, ClientId, DeviceProof, HistoryRead, Name,
    NodeName, RemoteClient, RoomName, Unclaimed,
};
use crate::sync::lock;

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

    fn shares_history(&self) -> bool {
        true
    }

    fn append(&self, room: &RoomName, from: &Name, from_id: ClientId, bodies: &[Body]) -> bool {
        let inner = &self.inner;
        if inner.degraded.load(Ordering::Relaxed) {
            return false;
        }
        let (max_messages, max_age_ms, _) = inner.hub.history_bounds();
        let at = unix_millis(std::time::SystemTime::now());
        let payload = Payload::Kept {
            room: room.clone(),
            from: from.clone(),
            from_id,
            at,
            bodies: bodies.to_vec(),
            first: None,
        };
        let frame = inner.frame(0, &payload).freeze();
        let Payload::Kept { bodies, .. } = payload else {
            unreachable!("built above")
        };
        let queued = inner.queue(Outgoing::Append(Box::new(Append {
            room: room.clone(),
            from: from.clone(),
            from_id,
            at,
            bodies,
            frame,
            epoch: inner.hub.new_history_epoch(),
            max_messages,
            max_age_ms,
        })));
        if queued {
            inner.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    fn read_history(&self, room: &RoomName, limit: usize) -> HistoryRead {
        let inner = &self.inner;
        if inner.degraded.load(Ordering::Relaxed) {
            return Box::pin(std::future::ready(Err("its Redis is out of reach".into())));
        }
        let (done, answer) = oneshot::channel();
        let queued = inner.queue(Outgoing::Read {
            room: room.clone(),
            limit,
            done,
        });
        Box::pin(async move {
            if !queued {
                return Err("too much is waiting for its Redis".into());
            }
            answer
                .await
                .unwrap_or_else(|_| Err("this server is leaving the cluster".into()))
        })
    }

    fn release_history(&self, room: &RoomName) {
        self.inner.queue(Outgoing::Release {
            channel: self.inner.keys.room(room),
        });
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
