//! What arrives from the other nodes: frames pushed by the subscriber
//! connection, put in order, counted when some were missed, and handed to
//! the hub.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::frame::{self, Payload};
use super::node::{Resync, Stats};
use super::received::{FrameOrder, Sequences};
use crate::hub::{DeviceProof, Hub, NodeName};
use crate::sync::lock;

/// What handles frames pushed by the subscriber connection: runs on that
/// connection's task, so it never waits.
pub(super) struct Inbound {
    pub(super) hub: Hub,
    pub(super) node: NodeName,
    pub(super) stats: Arc<Stats>,
    pub(super) received: Arc<Mutex<Sequences>>,
    pub(super) resync: mpsc::UnboundedSender<Resync>,
}

impl Inbound {
    pub(super) fn arrive(&self, push: PushInfo) {
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
                // when the next message comes; changes are read again,
                // and so are rooms' histories, before they are shown.
                debug!(node = %self.node, "the cluster subscriber lost its connection");
                self.hub.shared_history_interrupted();
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
        // A room's shared history comes back to every node, this one too:
        // each delivers it at the position the cluster gave it.
        if let Payload::Kept {
            room,
            from,
            from_id,
            at,
            bodies,
            first: Some(first),
        } = payload
        {
            let sender = (header.origin == self.node).then_some(from_id);
            if sender.is_none() {
                self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
            }
            let missed = self
                .hub
                .kept_arrived(&room, from, sender, at, bodies, first);
            self.stats.gaps.fetch_add(missed, Ordering::Relaxed);
            return;
        }
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
            // Handled above; a frame that lacks its position is garbage.
            Payload::Kept { room, .. } => {
                warn!(%channel, %room, "dropped a room's message from the cluster: it has no position");
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
