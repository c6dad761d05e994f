//! A room: its members, and delivery to all of them at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use super::counters::{Counters, Field, KINDS};
use super::event::{Body, Delivery};
use super::history::RoomHistory;
use super::info::RoomStats;
use super::tap::{Seen, Tap};
use super::{ClientId, Event, Member, Name, Pushed, RoomName};

/// A room and its members. The member list is read-locked for each
/// message (written only on join and leave, and when a watcher's tap is
/// added or removed), so senders to one room never wait on each other.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) name: RoomName,
    inside: RwLock<Inside>,
    /// Messages said in the room: one shared counter per room, bumped once
    /// per delivery (a run of messages counts its length at once).
    messages: AtomicU64,
    /// The hub's traffic counters.
    counters: Arc<Counters>,
    /// Members on other nodes of the cluster (always 0 on a server on its
    /// own): a message is handed to the backplane only if there are any.
    remote: AtomicUsize,
}

/// A room's members, each found by its id, which its record holds: a set
/// of pointers, 8 bytes an entry, where a map from id to member held the
/// id again (16; a room of one, as `room=dev-{id}` makes one per device,
/// keeps a table of four entries: a 64-byte block, not a 96-byte one).
/// The ids are the server's own, handed out in order, so no client
/// chooses what is hashed: the hasher is a fixed one, not one seeded per
/// set against collisions a client could aim at (its seed was 16 bytes
/// in every room).
#[derive(Debug, Default)]
pub(super) struct Members(HashSet<ById, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>);

/// A member in its room's set, found by its id.
#[derive(Debug)]
struct ById(Arc<Member>);

impl std::borrow::Borrow<ClientId> for ById {
    fn borrow(&self) -> &ClientId {
        &self.0.id
    }
}

impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the id hashes: the set is searched by id.
        self.0.id.hash(state)
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl Members {
    /// Adds `member`; returns the record it replaced, if its id was in.
    pub(super) fn insert(&mut self, member: Arc<Member>) -> Option<Arc<Member>> {
        self.0.replace(ById(member)).map(|ById(member)| member)
    }

    /// Takes the member `id` out, if it is in.
    pub(super) fn remove(&mut self, id: &ClientId) -> Option<Arc<Member>> {
        self.0.take(id).map(|ById(member)| member)
    }

    pub(super) fn contains_key(&self, id: &ClientId) -> bool {
        self.0.contains(id)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The members, in no order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.0.iter().map(|ById(member)| member)
    }

    /// The members' ids, in no order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &ClientId> {
        self.values().map(|member| &member.id)
    }
}

/// Who is in a room, who watches it, and what it keeps; under one lock,
/// so a message costs one lock whether or not anyone watches.
#[derive(Debug, Default)]
pub(super) struct Inside {
    pub(super) members: Members,
    taps: Vec<Arc<Tap>>,
    /// The room's history, if it keeps one: its lock is taken under this
    /// one as messages are said, so positions follow delivery order.
    pub(super) history: Option<Arc<RoomHistory>>,
}

impl std::ops::Deref for Inside {
    type Target = Members;
    fn deref(&self) -> &Self::Target {
        &self.members
    }
}

impl std::ops::DerefMut for Inside {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.members
    }
}

impl Room {
    /// A new room, watched by `taps` from the start, with `remote`
    /// members on other nodes.
    pub(super) fn new(
        name: RoomName,
        taps: Vec<Arc<Tap>>,
        counters: Arc<Counters>,
        remote: usize,
        history: Option<Arc<RoomHistory>>,
    ) -> Self {
        Room {
            name,
            inside: RwLock::new(Inside {
                members: Members::default(),
                taps,
                history,
            }),
            messages: AtomicU64::new(0),
            counters,
            remote: AtomicUsize::new(remote),
        }
    }

    /// How many members the room has on other nodes.
    pub(super) fn remote(&self) -> usize {
        self.remote.load(Ordering::Relaxed)
    }

    /// Records that the room has `count` members on other nodes.
    pub(super) fn set_remote(&self, count: usize) {
        self.remote.store(count, Ordering::Relaxed);
    }

    pub(super) fn members(&self) -> RwLockReadGuard<'_, Inside> {
        crate::sync::read(&self.inside)
    }

    pub(super) fn members_mut(&self) -> RwLockWriteGuard<'_, Inside> {
        crate::sync::write(&self.inside)
    }

    /// `from` says `bodies` in the room: kept in its history if it keeps
    /// one (each at the next position), then queued for every member but
    /// `except` (the sender) as [`broadcast`](Room::broadcast) does.
    /// Returns how many members it was queued for.
    pub(super) fn say(
        &self,
        from: &Name,
        bodies: Vec<Body>,
        except: Option<ClientId>,
        congested: &mut Vec<Arc<Member>>,
    ) -> usize {
        self.count_messages(bodies.len());
        let inside = self.members();
        // Held until every member has it queued: a message is numbered in
        // the order members receive it, and a client joining with an
        // offset (under the write lock) sees each exactly once.
        let mut log = inside
            .history
            .as_ref()
            .map(|history| (history, history.log()));
        let events = bodies
            .into_iter()
            .map(|body| {
                let offset = log
                    .as_mut()
                    .map(|(history, log)| log.push(history, from, &body));
                Event::Message {
                    room: self.name.clone(),
                    from: from.clone(),
                    body,
                    offset,
                }
            })
            .collect();
        let queued = self.deliver(&inside, &Delivery::batch(events), except, congested);
        drop(log);
        queued
    }

    /// `from` says `bodies` here, not kept: delivered to every member but
    /// `except` without positions (a message another node relays into a
    /// room whose history the cluster keeps, which that node does not
    /// number; one said while the cluster is out of reach).
    pub(super) fn broadcast_messages(
        &self,
        from: &Name,
        bodies: Vec<Body>,
        except: Option<ClientId>,
        congested: &mut Vec<Arc<Member>>,
    ) -> usize {
        self.count_messages(bodies.len());
        let events = bodies
            .into_iter()
            .map(|body| Event::Message {
                room: self.name.clone(),
                from: from.clone(),
                body,
                offset: None,
            })
            .collect();
        self.broadcast(&Delivery::batch(events), except, congested)
    }

    /// Queues `delivery` for every member but `except` (its sender),
    /// each in its own wire format, and shows its messages to the room's
    /// watchers; adds the members whose queues are now congested to
    /// `congested`. Returns how many members it was queued for.
    pub(super) fn broadcast(
        &self,
        delivery: &Delivery,
        except: Option<ClientId>,
        congested: &mut Vec<Arc<Member>>,
    ) -> usize {
        self.deliver(&self.members(), delivery, except, congested)
    }

    pub(super) fn deliver(
        &self,
        inside: &Inside,
        delivery: &Delivery,
        except: Option<ClientId>,
        congested: &mut Vec<Arc<Member>>,
    ) -> usize {
        let mut queued = 0;
        let mut by_kind = [0u64; KINDS.len()];
        for member in inside.values() {
            if Some(member.id) == except {
                continue;
            }
            match member.deliver(delivery) {
                Pushed::Queued => {}
                Pushed::Congested => congested.push(member.clone()),
                Pushed::Closed => continue,
            }
            queued += 1;
            by_kind[member.meta.kind as usize] += 1;
        }
        let events = delivery.events().len() as u64;
        for n in by_kind.iter_mut() {
            *n *= events;
        }
        self.counters.add_all(Field::MessagesOut, &by_kind);
        if !inside.taps.is_empty() {
            let at = SystemTime::now();
            for event in delivery.events() {
                if let Event::Message {
                    room,
                    from,
                    body,
                    offset,
                } = event
                {
                    let seen = Seen {
                        at,
                        room: Some(room.clone()),
                        from: from.clone(),
                        from_id: except,
                        to: None,
                        body: body.clone(),
                        offset: *offset,
                    };
                    for tap in &inside.taps {
                        tap.push(seen.clone());
                    }
                }
            }
        }
        queued
    }

    /// Counts `count` messages said in the room.
    pub(super) fn count_messages(&self, count: usize) {
        self.messages.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(super) fn add_tap(&self, tap: Arc<Tap>) {
        self.members_mut().taps.push(tap);
    }

    pub(super) fn remove_tap(&self, tap: &Arc<Tap>) {
        self.members_mut().taps.retain(|t| !Arc::ptr_eq(t, tap));
    }

    pub(super) fn len(&self) -> usize {
        self.members().len()
    }

    pub(super) fn stats(&self) -> RoomStats {
        RoomStats {
            name: self.name.clone(),
            members: self.len() + self.remote(),
            messages: self.messages.load(Ordering::Relaxed),
        }
    }
}

/// The hub's rooms, each found by its name. The name is the room's own,
/// so the table holds a pointer to each room where a map from name to
/// room held the name again: 8 bytes an entry, not 40 (about 18 bytes a
/// room with the table's free room, not 84: with a room per device, as
/// `room=dev-{id}` makes, that is per device).
#[derive(Debug, Default)]
pub(super) struct Rooms(std::collections::HashSet<ByName>);

/// A room in [`Rooms`], hashed and compared as its name is.
#[derive(Debug)]
struct ByName(Arc<Room>);

impl std::borrow::Borrow<RoomName> for ByName {
    fn borrow(&self) -> &RoomName {
        &self.0.name
    }
}

impl std::hash::Hash for ByName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As the name hashes: the table is searched by name.
        self.0.name.hash(state)
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl Rooms {
    /// The room called `name`, if anyone is in it.
    pub(super) fn get(&self, name: &RoomName) -> Option<&Arc<Room>> {
        self.0.get(name).map(|room| &room.0)
    }

    pub(super) fn contains_key(&self, name: &RoomName) -> bool {
        self.0.contains(name)
    }

    /// The room called `name`, made by `make` if there is none.
    pub(super) fn get_or_insert_with(
        &mut self,
        name: &RoomName,
        make: impl FnOnce() -> Room,
    ) -> Arc<Room> {
        if let Some(room) = self.get(name) {
            return room.clone();
        }
        let room = Arc::new(make());
        self.0.insert(ByName(room.clone()));
        room
    }

    pub(super) fn remove(&mut self, name: &RoomName) -> Option<Arc<Room>> {
        self.0.take(name).map(|room| room.0)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Room>> {
        self.0.iter().map(|room| &room.0)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// A room in the hub's size order, ordered by its name among rooms of
/// one size: a pointer where the order held the name again (16 bytes an
/// entry with its size, not 40).
#[derive(Debug, Clone)]
pub(super) struct BySize(pub(super) Arc<Room>);

impl PartialEq for BySize {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for BySize {}

impl PartialOrd for BySize {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BySize {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.name.cmp(&other.0.name)
    }
}
