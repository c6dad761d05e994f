//! The clients of the other nodes of a cluster, as they have told this one,
//! and what arrives from them.
//!
//! Each node tells the others every change of its clients' names and rooms
//! (a [`Change`]); each keeps the picture here, beside its own clients, so
//! that names are checked, direct messages routed, rooms listed and
//! notices sent across the cluster without asking anyone. The picture can
//! lag behind: what must be exact (who holds a name) is settled by the
//! backplane's claim, not here.

use std::collections::HashMap;
use std::sync::Arc;

use super::backplane::{Change, NodeName, RemoteClient};
use super::event::Delivery;
use super::{Body, ClientId, Event, Hub, Name, NameKeys, RoomName};

/// What this node knows of the others' clients.
#[derive(Debug, Default)]
pub(super) struct Remote {
    nodes: HashMap<NodeName, HashMap<ClientId, Entry>>,
    /// Every remote client, by both keys of its name.
    pub(super) by_name: HashMap<Arc<str>, RemoteClient>,
    /// The remote members of each room that has any.
    pub(super) rooms: HashMap<RoomName, HashMap<RemoteClient, Name>>,
}

/// A remote client: its name and rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Name,
    rooms: Vec<RoomName>,
}

/// A client as a node's picture of itself lists it, for
/// [`Hub::remote_node`] and [`Hub::local_clients`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlace {
    /// Its id on its node.
    pub id: ClientId,
    /// Its name.
    pub name: Name,
    /// Its rooms.
    pub rooms: Vec<RoomName>,
}

impl Remote {
    /// Whether a remote client holds either key of `name`.
    pub(super) fn holds(&self, name: &NameKeys) -> bool {
        self.by_name.contains_key(&name.key) || self.by_name.contains_key(&name.shape)
    }

    pub(super) fn add_name(&mut self, name: &Name, client: &RemoteClient) {
        let keys = NameKeys::of(name);
        self.by_name.insert(keys.shape, client.clone());
        self.by_name.insert(keys.key, client.clone());
    }

    pub(super) fn remove_name(&mut self, name: &Name, client: &RemoteClient) {
        let keys = NameKeys::of(name);
        for key in [keys.key, keys.shape] {
            if self.by_name.get(&key) == Some(client) {
                self.by_name.remove(&key);
            }
        }
    }

    /// Adds `client` to `room`; returns the room's remote member count.
    fn join(&mut self, room: &RoomName, client: &RemoteClient, name: &Name) -> usize {
        let members = self.rooms.entry(room.clone()).or_default();
        members.insert(client.clone(), name.clone());
        members.len()
    }

    /// Takes `client` out of `room`; returns the room's remote member count.
    fn leave(&mut self, room: &RoomName, client: &RemoteClient) -> usize {
        let Some(members) = self.rooms.get_mut(room) else {
            return 0;
        };
        members.remove(client);
        let left = members.len();
        if left == 0 {
            self.rooms.remove(room);
        }
        left
    }

    /// The nodes and how many clients each has.
    pub(super) fn nodes(&self) -> Vec<(NodeName, usize)> {
        self.nodes
            .iter()
            .map(|(node, clients)| (node.clone(), clients.len()))
            .collect()
    }
}

impl super::Directory {
    /// Takes remote `client` out of `room`, and tells the local room (if
    /// any) how many members it has elsewhere now.
    fn remote_leave(&mut self, room: &RoomName, client: &RemoteClient) {
        let count = self.remote.leave(room, client);
        if let Some(local) = self.rooms.get(room) {
            local.set_remote(count);
        }
    }
}

/// An event to tell the local members of a room, once the directory's
/// lock is let go.
struct Tell {
    room: RoomName,
    event: Event,
}

impl Hub {
    /// Applies a change another node made to one of its clients, and
    /// tells the local members of the rooms concerned (those small enough
    /// for notices).
    pub fn remote_change(&self, node: &NodeName, change: Change) {
        let mut tell = Vec::new();
        let mut renamed = None;
        {
            let mut directory = self.directory();
            let directory = &mut *directory;
            match change {
                Change::Connected { id, name } => {
                    let client = RemoteClient {
                        node: node.clone(),
                        id,
                    };
                    let entry = Entry {
                        name: name.clone(),
                        rooms: Vec::new(),
                    };
                    if let Some(old) = directory
                        .remote
                        .nodes
                        .entry(node.clone())
                        .or_default()
                        .insert(id, entry)
                    {
                        directory.remote.remove_name(&old.name, &client);
                    }
                    directory.remote.add_name(&name, &client);
                }
                Change::Joined { id, name, room, .. } => {
                    let client = RemoteClient {
                        node: node.clone(),
                        id,
                    };
                    let entry = directory
                        .remote
                        .nodes
                        .entry(node.clone())
                        .or_default()
                        .entry(id)
                        .or_insert_with(|| Entry {
                            name: name.clone(),
                            rooms: Vec::new(),
                        });
                    if !entry.rooms.contains(&room) {
                        entry.rooms.push(room.clone());
                    }
                    let count = directory.remote.join(&room, &client, &name);
                    if let Some(local) = directory.rooms.get(&room) {
                        local.set_remote(count);
                    }
                    tell.push(Tell {
                        event: Event::Joined {
                            room: room.clone(),
                            name,
                        },
                        room,
                    });
                }
                Change::Left {
                    id,
                    name,
                    room,
                    reason,
                    ..
                } => {
                    let client = RemoteClient {
                        node: node.clone(),
                        id,
                    };
                    if let Some(entry) = directory
                        .remote
                        .nodes
                        .get_mut(node)
                        .and_then(|c| c.get_mut(&id))
                    {
                        entry.rooms.retain(|r| *r != room);
                    }
                    directory.remote_leave(&room, &client);
                    tell.push(Tell {
                        event: Event::Left {
                            room: room.clone(),
                            name,
                            reason,
                        },
                        room,
                    });
                }
                Change::Renamed { id, old, new } => {
                    let client = RemoteClient {
                        node: node.clone(),
                        id,
                    };
                    directory.remote.remove_name(&old, &client);
                    directory.remote.add_name(&new, &client);
                    let rooms = match directory
                        .remote
                        .nodes
                        .get_mut(node)
                        .and_then(|c| c.get_mut(&id))
                    {
                        Some(entry) => {
                            entry.name = new.clone();
                            entry.rooms.clone()
                        }
                        None => Vec::new(),
                    };
                    for room in &rooms {
                        if let Some(members) = directory.remote.rooms.get_mut(room) {
                            members.insert(client.clone(), new.clone());
                        }
                    }
                    renamed = Some((rooms, Event::Renamed { old, new }));
                }
                Change::Departed { id, name } => {
                    let client = RemoteClient {
                        node: node.clone(),
                        id,
                    };
                    directory.remote.remove_name(&name, &client);
                    if let Some(clients) = directory.remote.nodes.get_mut(node) {
                        if let Some(entry) = clients.remove(&id) {
                            // Its rooms were left one by one before; any left
                            // over (a lost change) are cleared silently.
                            for room in entry.rooms {
                                directory.remote_leave(&room, &client);
                            }
                        }
                    }
                }
            }
        }
        for Tell { room, event } in tell {
            self.tell_room(&room, event, true);
        }
        if let Some((rooms, event)) = renamed {
            self.tell_rooms_once(&rooms, event);
        }
    }

    /// Tells the local members of `rooms` (those small enough for notices)
    /// `event`, once each however many of the rooms they are in.
    fn tell_rooms_once(&self, rooms: &[RoomName], event: Event) {
        let rooms: Vec<_> = {
            let directory = self.directory();
            rooms
                .iter()
                .filter_map(|room| directory.rooms.get(room).cloned())
                .collect()
        };
        let limit = self.shared.settings.announce_max_members;
        let delivery = Delivery::new(event);
        let mut told = std::collections::HashSet::new();
        for room in rooms {
            if limit == 0 || room.len() + room.remote() > limit {
                continue;
            }
            for member in room.members().values() {
                if told.insert(member.id) {
                    let _ = member.deliver_counted(&delivery, &self.shared.counters);
                }
            }
        }
    }

    /// Replaces what this node knows of `node`'s clients with `clients`,
    /// as that node's own picture of itself says (after a gap in its
    /// changes, or when it joins). Nobody is told: the differences are
    /// changes that were missed, not news.
    pub fn remote_node(&self, node: &NodeName, clients: Vec<ClientPlace>) {
        let mut directory = self.directory();
        let directory = &mut *directory;
        let mut touched = Vec::new();
        if let Some(old) = directory.remote.nodes.remove(node) {
            for (id, entry) in old {
                let client = RemoteClient {
                    node: node.clone(),
                    id,
                };
                directory.remote.remove_name(&entry.name, &client);
                for room in entry.rooms {
                    directory.remote.leave(&room, &client);
                    touched.push(room);
                }
            }
        }
        let mut fresh = HashMap::with_capacity(clients.len());
        for place in clients {
            let client = RemoteClient {
                node: node.clone(),
                id: place.id,
            };
            directory.remote.add_name(&place.name, &client);
            for room in &place.rooms {
                directory.remote.join(room, &client, &place.name);
                touched.push(room.clone());
            }
            fresh.insert(
                place.id,
                Entry {
                    name: place.name,
                    rooms: place.rooms,
                },
            );
        }
        directory.remote.nodes.insert(node.clone(), fresh);
        for room in touched {
            if let Some(local) = directory.rooms.get(&room) {
                local.set_remote(directory.remote.rooms.get(&room).map_or(0, HashMap::len));
            }
        }
    }

    /// Forgets `node` and all its clients (it shut down, or its lease ran
    /// out), telling the local members of their rooms they left for
    /// `reason`.
    pub fn remote_node_gone(&self, node: &NodeName, reason: &str) {
        let reason: Arc<str> = Arc::from(reason);
        let mut tell = Vec::new();
        {
            let mut directory = self.directory();
            let directory = &mut *directory;
            let Some(clients) = directory.remote.nodes.remove(node) else {
                return;
            };
            for (id, entry) in clients {
                let client = RemoteClient {
                    node: node.clone(),
                    id,
                };
                directory.remote.remove_name(&entry.name, &client);
                for room in entry.rooms {
                    directory.remote_leave(&room, &client);
                    tell.push(Tell {
                        event: Event::Left {
                            room: room.clone(),
                            name: entry.name.clone(),
                            reason: reason.clone(),
                        },
                        room,
                    });
                }
            }
        }
        for Tell { room, event } in tell {
            self.tell_room(&room, event, true);
        }
    }

    /// Delivers to the local members of `room` what `from` (a client of
    /// another node) said there; nothing if no local client is in it. No
    /// one waits: a member it congests is held to its limits like for any
    /// other message.
    pub fn remote_message(&self, room: &RoomName, from: Name, bodies: Vec<Body>) -> usize {
        let Some(room) = self.directory().rooms.get(room).cloned() else {
            return 0;
        };
        let mut congested = Vec::new();
        if self.shares_history() {
            // Not numbered by the cluster (its sender's node keeps no
            // history of the room): relayed, and not kept.
            return room.broadcast_messages(&from, bodies, None, &mut congested);
        }
        room.say(&from, bodies, None, &mut congested)
    }

    /// Delivers to local client `to`, named `to_name`, what `from` (a
    /// client of another node) sent it; returns whether `to` is here under
    /// that name still.
    pub fn remote_direct(&self, to: ClientId, to_name: &Name, from: Name, body: Body) -> bool {
        let target = self.directory().by_name.get(&to_name.key()).cloned();
        let Some(target) = target.filter(|member| member.id == to) else {
            return false;
        };
        self.direct_from_elsewhere(&target, from, body);
        true
    }

    /// Tells every local client `text` (raw clients are shown nothing).
    pub fn notify_all(&self, code: &'static str, text: &str) {
        let delivery = Delivery::new(Event::Notice {
            code,
            text: Arc::from(text),
        });
        let members: Vec<_> = self.directory().by_name.values().cloned().collect();
        for member in members {
            let _ = member.deliver_counted(&delivery, &self.shared.counters);
        }
    }

    /// Tells the local members of `room` `text`.
    pub fn notify_room(&self, room: &RoomName, code: &'static str, text: &str) {
        self.tell_room(
            room,
            Event::Notice {
                code,
                text: Arc::from(text),
            },
            false,
        );
    }

    /// Tells the local members of `room` `event`; if `notice`, only when
    /// the room is small enough for notices.
    fn tell_room(&self, room: &RoomName, event: Event, notice: bool) {
        let Some(room) = self.directory().rooms.get(room).cloned() else {
            return;
        };
        let limit = self.shared.settings.announce_max_members;
        if notice && (limit == 0 || room.len() + room.remote() > limit) {
            return;
        }
        let mut congested = Vec::new();
        room.broadcast(&Delivery::new(event), None, &mut congested);
    }

    /// This node's clients, their names and rooms: its picture of itself,
    /// for the other nodes.
    pub fn local_clients(&self) -> Vec<ClientPlace> {
        let directory = self.directory();
        let mut places: HashMap<ClientId, ClientPlace> = directory
            .by_name
            .values()
            .map(|member| {
                (
                    member.id,
                    ClientPlace {
                        id: member.id,
                        name: member.name(),
                        rooms: Vec::new(),
                    },
                )
            })
            .collect();
        for room in directory.rooms.values() {
            for id in room.members().keys() {
                if let Some(place) = places.get_mut(id) {
                    place.rooms.push(room.name.clone());
                }
            }
        }
        places.into_values().collect()
    }

    /// The other nodes this one knows, with how many clients each has.
    pub fn remote_nodes(&self) -> Vec<(NodeName, usize)> {
        self.directory().remote.nodes()
    }
}
