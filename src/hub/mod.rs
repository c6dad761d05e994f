//! The routing core: who is connected, their names, their rooms, and the
//! delivery of events to their outboxes.
//!
//! Nothing here knows about sockets or wire formats. A transport (the TCP
//! listeners today, WebSocket later) turns a connection into a [`Session`]
//! with [`Hub::connect`], calls its methods for what the client asks, and
//! drains the session's [`Outbox`] to the client. A backplane joining
//! several servers would sit beside the rooms here, feeding remote messages
//! to the same delivery path.
//!
//! The per-message path takes no global lock: a session holds its rooms
//! directly, a room's member list is read-locked (written only on join and
//! leave), and each recipient's outbox has a lock of its own.

mod event;
mod names;
mod outbox;

pub use event::{Body, Delivery, Event, Framing, Outgoing, ENCODING_SLOTS};
pub use names::{Name, NameError, RoomName, MAX_NAME_CHARS};
pub use outbox::{Batch, Closing, Outbox, Pushed, QueueLimits};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Settings of the routing core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSettings {
    /// Limits of every client's outbound queue.
    pub queue: QueueLimits,
    /// Join, leave and rename notices are sent only in rooms with at most
    /// this many members (0: never), because in a room of `n` members they
    /// cost `n` deliveries each, `n²` for everyone joining.
    pub announce_max_members: usize,
    /// How many rooms one client may be in at once.
    pub max_rooms_per_client: usize,
}

/// A client's identity for the lifetime of its connection; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a client was disconnected. Shown to the client in its last notice,
/// in the server's log, and (shortened) to the rooms it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client asked to leave.
    Quit,
    /// The client closed its side of the connection.
    ClientClosed,
    /// Reading from the client failed.
    ReadFailed(Arc<str>),
    /// Writing to the client failed.
    WriteFailed(Arc<str>),
    /// More was queued for the client than the hard limit allows.
    SlowConsumer {
        /// Bytes the queue would have held.
        queued: usize,
        /// The hard limit.
        limit: usize,
    },
    /// The client accepted no data at all for this long while data waited.
    Stalled {
        /// The stall timeout.
        timeout: Duration,
    },
    /// The client sent nothing for this long.
    Idle {
        /// The idle timeout.
        timeout: Duration,
    },
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// Whether the disconnection is a failure rather than a goodbye.
    pub fn is_error(&self) -> bool {
        !matches!(self, CloseReason::Quit | CloseReason::ClientClosed)
    }

    /// A few words for the rooms the client leaves.
    pub fn summary(&self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::ClientClosed => "disconnected",
            CloseReason::ReadFailed(_) | CloseReason::WriteFailed(_) => "connection lost",
            CloseReason::SlowConsumer { .. } => "slow consumer",
            CloseReason::Stalled { .. } => "stalled",
            CloseReason::Idle { .. } => "idle",
            CloseReason::ServerShutdown => "server shutdown",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Quit => write!(f, "client quit"),
            CloseReason::ClientClosed => write!(f, "client closed the connection"),
            CloseReason::ReadFailed(e) => write!(f, "read error: {e}"),
            CloseReason::WriteFailed(e) => write!(f, "write error: {e}"),
            CloseReason::SlowConsumer { queued, limit } => write!(
                f,
                "slow consumer: {queued} bytes waiting for this client, over the queue hard limit of {limit} bytes"
            ),
            CloseReason::Stalled { timeout } => write!(
                f,
                "stalled: this client read nothing for {} while data waited for it (stall timeout)",
                crate::config::format_duration(*timeout)
            ),
            CloseReason::Idle { timeout } => write!(
                f,
                "idle: this client sent nothing for {} (idle timeout)",
                crate::config::format_duration(*timeout)
            ),
            CloseReason::ServerShutdown => write!(f, "server shutting down"),
        }
    }
}

/// A request the hub refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// Another client has that name (ignoring case).
    #[error("the name {0} is taken; pick another")]
    NameTaken(Name),
    /// No connected client has that name.
    #[error("no client is named {0}")]
    NoSuchClient(Name),
    /// The room does not exist (it has no members).
    #[error("there is no room #{0}")]
    NoSuchRoom(RoomName),
    /// The client is not in that room.
    #[error("you are not in #{0}")]
    NotInRoom(RoomName),
    /// The client is in no room, so a message has nowhere to go.
    #[error("you are in no room; join one first")]
    NoRoom,
    /// Joining would exceed the per-client room limit.
    #[error("you are already in {limit} rooms, the most allowed (max rooms per client); leave one first")]
    TooManyRooms {
        /// The limit.
        limit: usize,
    },
}

impl HubError {
    /// A stable machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::NameTaken(_) => "name_taken",
            HubError::NoSuchClient(_) => "no_such_client",
            HubError::NoSuchRoom(_) => "no_such_room",
            HubError::NotInRoom(_) => "not_in_room",
            HubError::NoRoom => "no_room",
            HubError::TooManyRooms { .. } => "too_many_rooms",
        }
    }
}

/// A client's outbox, held apart from its session (see [`Session::outbox_handle`]).
#[derive(Debug, Clone)]
pub struct OutboxHandle(Arc<Member>);

impl std::ops::Deref for OutboxHandle {
    type Target = Outbox;
    fn deref(&self) -> &Outbox {
        &self.0.outbox
    }
}

/// A room and how many are in it, as listed by [`Session::rooms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room.
    pub name: RoomName,
    /// How many clients are in it.
    pub members: usize,
}

/// The routing core shared by every connection of a server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: HubSettings,
    directory: Mutex<Directory>,
    next_id: AtomicU64,
    /// Set by [`Hub::close_all`]: clients connecting later are closed at once.
    closing: Mutex<Option<(CloseReason, bool)>>,
}

/// Names and rooms: written on connect, join, leave, rename and disconnect,
/// read to resolve a direct message. Never held while awaiting.
#[derive(Debug, Default)]
struct Directory {
    by_name: HashMap<Arc<str>, Arc<Member>>,
    rooms: HashMap<RoomName, Arc<Room>>,
}

#[derive(Debug)]
struct Member {
    id: ClientId,
    name: Mutex<Name>,
    outbox: Outbox,
}

impl Member {
    fn name(&self) -> Name {
        lock(&self.name).clone()
    }
}

#[derive(Debug)]
struct Room {
    name: RoomName,
    members: RwLock<HashMap<ClientId, Arc<Member>>>,
}

impl Room {
    /// Queues `item` for every member but `except`; returns the members
    /// whose queues are now congested.
    fn broadcast(&self, item: &Outgoing, except: ClientId) -> Vec<Arc<Member>> {
        let mut congested = Vec::new();
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        for (id, member) in members.iter() {
            if *id != except && member.outbox.push(item.clone()) == Pushed::Congested {
                congested.push(member.clone());
            }
        }
        congested
    }

    fn len(&self) -> usize {
        self.members.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub with no clients.
    pub fn new(settings: HubSettings) -> Self {
        Hub {
            shared: Arc::new(Shared {
                settings,
                directory: Mutex::default(),
                next_id: AtomicU64::new(1),
                closing: Mutex::new(None),
            }),
        }
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        lock(&self.shared.directory)
    }

    /// Registers a new client under a fresh default name (`guest-N`) and,
    /// if given, puts it in `room`.
    pub fn connect(&self, room: Option<RoomName>) -> Session {
        let mut directory = self.directory();
        let (id, name) = loop {
            let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let name = Name::new(&format!("guest-{n}")).expect("guest names are valid");
            // Someone may have picked this guest name with /nick.
            if !directory.by_name.contains_key(&name.key()) {
                break (ClientId(n), name);
            }
        };
        let me = Arc::new(Member {
            id,
            name: Mutex::new(name.clone()),
            outbox: Outbox::new(self.shared.settings.queue),
        });
        directory.by_name.insert(name.key(), me.clone());
        drop(directory);
        if let Some((reason, flush)) = lock(&self.shared.closing).clone() {
            me.outbox.close(reason, flush);
        }
        let mut session = Session {
            hub: self.clone(),
            me,
            name,
            rooms: Vec::new(),
        };
        if let Some(room) = room {
            session
                .join(room)
                .expect("a first room is within any room limit");
        }
        session
    }

    /// Closes every client's outbox, and those of clients connecting from
    /// now on: with `flush`, each client gets what is queued for it and a
    /// goodbye; without, only the goodbye. This is how a server shuts down:
    /// every connection watches its own outbox, and nothing else.
    pub fn close_all(&self, reason: CloseReason, flush: bool) {
        *lock(&self.shared.closing) = Some((reason.clone(), flush));
        let members: Vec<Arc<Member>> = self.directory().by_name.values().cloned().collect();
        for member in members {
            member.outbox.close(reason.clone(), flush);
        }
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.directory().by_name.len()
    }

    fn announce(&self, room: &Room, event: Event, except: ClientId) {
        let limit = self.shared.settings.announce_max_members;
        if limit > 0 && room.len() <= limit {
            // Notices are small and rare; they count against the hard limit
            // but never make anyone wait.
            let _ = room.broadcast(&Outgoing::Shared(Delivery::new(event)), except);
        }
    }
}

/// One connected client's handle on the hub. Dropping it takes the client
/// out of its rooms and frees its name.
#[derive(Debug)]
pub struct Session {
    hub: Hub,
    me: Arc<Member>,
    name: Name,
    /// Rooms joined, oldest first; the last is where plain messages go.
    rooms: Vec<Arc<Room>>,
}

impl Session {
    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.me.id
    }

    /// This client's current name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// This client's outbound queue, drained by its transport's writer.
    pub fn outbox(&self) -> &Outbox {
        &self.me.outbox
    }

    /// A handle on this client's outbound queue that outlives the session:
    /// the writer keeps flushing after the client has left its rooms.
    pub fn outbox_handle(&self) -> OutboxHandle {
        OutboxHandle(self.me.clone())
    }

    /// The room plain messages go to: the one joined last.
    pub fn current_room(&self) -> Option<&RoomName> {
        self.rooms.last().map(|room| &room.name)
    }

    fn joined(&self, name: &RoomName) -> Result<&Arc<Room>, HubError> {
        self.rooms
            .iter()
            .find(|room| room.name == *name)
            .ok_or_else(|| HubError::NotInRoom(name.clone()))
    }

    /// Says `body` to `room` (default: the current room), then waits until
    /// every recipient it congested has drained below its soft limit or
    /// been cut off. Recipients are everyone in the room but the sender.
    pub async fn say(&self, room: Option<&RoomName>, body: Body) -> Result<(), HubError> {
        self.say_all(room, vec![body]).await
    }

    /// Says each of `bodies`, in order, as one delivery: what [`say`]
    /// does for one message, at the cost of one.
    ///
    /// [`say`]: Session::say
    pub async fn say_all(
        &self,
        room: Option<&RoomName>,
        bodies: Vec<Body>,
    ) -> Result<(), HubError> {
        let room = match room {
            Some(name) => self.joined(name)?,
            None => self.rooms.last().ok_or(HubError::NoRoom)?,
        };
        let delivery = Delivery::batch(
            bodies
                .into_iter()
                .map(|body| Event::Message {
                    room: room.name.clone(),
                    from: self.name.clone(),
                    body,
                })
                .collect(),
        );
        let congested = room.broadcast(&Outgoing::Shared(delivery), self.me.id);
        for member in congested {
            member.outbox.until_uncongested().await;
        }
        Ok(())
    }

    /// Sends `body` to the client named `to` alone, then waits if that
    /// client's queue is congested.
    pub async fn direct(&self, to: &Name, body: Body) -> Result<(), HubError> {
        let target = self
            .hub
            .directory()
            .by_name
            .get(&to.key())
            .cloned()
            .ok_or_else(|| HubError::NoSuchClient(to.clone()))?;
        let delivery = Delivery::new(Event::Direct {
            from: self.name.clone(),
            body,
        });
        if target.outbox.push(Outgoing::Shared(delivery)) == Pushed::Congested {
            target.outbox.until_uncongested().await;
        }
        Ok(())
    }

    /// Joins `room` (creating it if nobody is in it) and makes it the
    /// current room. Joining a room already joined only makes it current.
    /// Returns how many are in the room now.
    pub fn join(&mut self, name: RoomName) -> Result<usize, HubError> {
        if let Some(i) = self.rooms.iter().position(|room| room.name == name) {
            let room = self.rooms.remove(i);
            let members = room.len();
            self.rooms.push(room);
            return Ok(members);
        }
        let limit = self.hub.shared.settings.max_rooms_per_client;
        if self.rooms.len() >= limit {
            return Err(HubError::TooManyRooms { limit });
        }
        // Most clients stay in one room: no room for four.
        self.rooms.reserve_exact(1);
        let mut directory = self.hub.directory();
        let room = directory
            .rooms
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Room {
                    name: name.clone(),
                    members: RwLock::default(),
                })
            })
            .clone();
        let members = {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            members.insert(self.me.id, self.me.clone());
            members.len()
        };
        drop(directory);
        self.hub.announce(
            &room,
            Event::Joined {
                room: name,
                name: self.name.clone(),
            },
            self.me.id,
        );
        self.rooms.push(room);
        Ok(members)
    }

    /// Leaves `room`; the room disappears when its last member leaves.
    pub fn leave(&mut self, name: &RoomName) -> Result<(), HubError> {
        let i = self
            .rooms
            .iter()
            .position(|room| room.name == *name)
            .ok_or_else(|| HubError::NotInRoom(name.clone()))?;
        let room = self.rooms.remove(i);
        self.remove_from(&room, "left");
        Ok(())
    }

    fn remove_from(&self, room: &Arc<Room>, reason: &str) {
        let mut directory = self.hub.directory();
        let empty = {
            let mut members = room.members.write().unwrap_or_else(|e| e.into_inner());
            members.remove(&self.me.id);
            members.is_empty()
        };
        if empty {
            directory.rooms.remove(&room.name);
        }
        drop(directory);
        if !empty {
            self.hub.announce(
                room,
                Event::Left {
                    room: room.name.clone(),
                    name: self.name.clone(),
                    reason: Arc::from(reason),
                },
                self.me.id,
            );
        }
    }

    /// Takes the name `new`, unless another client has it. Returns the old
    /// name. Everyone sharing a room with this client is told once.
    pub fn rename(&mut self, new: Name) -> Result<Name, HubError> {
        let mut directory = self.hub.directory();
        let key = new.key();
        if let Some(holder) = directory.by_name.get(&key) {
            if holder.id != self.me.id {
                return Err(HubError::NameTaken(new));
            }
        }
        directory.by_name.remove(&self.name.key());
        directory.by_name.insert(key, self.me.clone());
        *lock(&self.me.name) = new.clone();
        drop(directory);
        let old = std::mem::replace(&mut self.name, new.clone());
        if old != new {
            self.announce_rename(&old, &new);
        }
        Ok(old)
    }

    fn announce_rename(&self, old: &Name, new: &Name) {
        let limit = self.hub.shared.settings.announce_max_members;
        let delivery = Outgoing::Shared(Delivery::new(Event::Renamed {
            old: old.clone(),
            new: new.clone(),
        }));
        let mut told = HashSet::from([self.me.id]);
        for room in &self.rooms {
            let members = room.members.read().unwrap_or_else(|e| e.into_inner());
            if limit == 0 || members.len() > limit {
                continue;
            }
            for (id, member) in members.iter() {
                if told.insert(*id) {
                    let _ = member.outbox.push(delivery.clone());
                }
            }
        }
    }

    /// The names in `room` (default: the current room), sorted.
    pub fn who(&self, room: Option<&RoomName>) -> Result<(RoomName, Vec<Name>), HubError> {
        let name = match room {
            Some(name) => name.clone(),
            None => self.current_room().cloned().ok_or(HubError::NoRoom)?,
        };
        let room = self
            .hub
            .directory()
            .rooms
            .get(&name)
            .cloned()
            .ok_or_else(|| HubError::NoSuchRoom(name.clone()))?;
        let mut names: Vec<Name> = room
            .members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|member| member.name())
            .collect();
        names.sort_by_key(|name| name.key());
        Ok((name, names))
    }

    /// Every room on the server with its member count, sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.hub.directory().rooms.values().cloned().collect();
        let mut list: Vec<RoomInfo> = rooms
            .iter()
            .map(|room| RoomInfo {
                name: room.name.clone(),
                members: room.len(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Queues bytes already encoded for this client (a reply to its own
    /// request). Returns whether this client's own queue is now congested.
    pub fn reply(&self, bytes: bytes::Bytes) -> Pushed {
        self.me.outbox.push(Outgoing::Encoded(bytes))
    }

    /// Closes this client's outbox; the rooms it leaves are told `reason`
    /// when the session is dropped.
    pub fn close(&mut self, reason: CloseReason, flush: bool) {
        self.me.outbox.close(reason, flush);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let reason = self
            .me
            .outbox
            .closing()
            .map_or(CloseReason::ClientClosed, |closing| closing.reason);
        {
            let mut directory = self.hub.directory();
            if let Some(holder) = directory.by_name.get(&self.name.key()) {
                if holder.id == self.me.id {
                    directory.by_name.remove(&self.name.key());
                }
            }
        }
        for room in std::mem::take(&mut self.rooms) {
            self.remove_from(&room, reason.summary());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(HubSettings {
            queue: QueueLimits {
                soft: 1 << 16,
                hard: 1 << 20,
            },
            announce_max_members: 64,
            max_rooms_per_client: 4,
        })
    }

    fn drain(session: &Session) -> Vec<Event> {
        session
            .outbox()
            .take()
            .items
            .into_iter()
            .flat_map(|item| match item {
                Outgoing::Shared(d) => d.events().to_vec(),
                Outgoing::Encoded(_) => Vec::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_room_message_reaches_everyone_in_the_room_but_the_sender() {
        let hub = hub();
        let a = hub.connect(Some(RoomName::lobby()));
        let b = hub.connect(Some(RoomName::lobby()));
        drain(&a);
        a.say(None, Body::line("hi")).await.unwrap();
        assert!(drain(&a).is_empty());
        assert_eq!(
            drain(&b),
            vec![Event::Message {
                room: RoomName::lobby(),
                from: a.name().clone(),
                body: Body::line("hi")
            }]
        );
    }

    #[tokio::test]
    async fn rooms_are_kept_apart() {
        let hub = hub();
        let mut a = hub.connect(None);
        let mut b = hub.connect(None);
        let c = hub.connect(Some(RoomName::lobby()));
        a.join(RoomName::new("x").unwrap()).unwrap();
        b.join(RoomName::new("x").unwrap()).unwrap();
        drain(&b);
        a.say(None, Body::line("in x")).await.unwrap();
        assert_eq!(drain(&b).len(), 1);
        assert!(drain(&c).is_empty());
    }

    #[test]
    fn names_are_unique_ignoring_case_and_freed_on_disconnect() {
        let hub = hub();
        let mut a = hub.connect(None);
        let mut b = hub.connect(None);
        a.rename(Name::new("Alice").unwrap()).unwrap();
        assert_eq!(
            b.rename(Name::new("alice").unwrap()),
            Err(HubError::NameTaken(Name::new("alice").unwrap()))
        );
        drop(a);
        assert!(b.rename(Name::new("alice").unwrap()).is_ok());
    }

    #[test]
    fn a_guest_name_taken_by_nick_is_skipped() {
        let hub = hub();
        let mut a = hub.connect(None);
        a.rename(Name::new("guest-2").unwrap()).unwrap();
        let b = hub.connect(None);
        assert_eq!(b.name().as_str(), "guest-3");
    }

    #[test]
    fn leaving_tells_the_room_and_an_empty_room_disappears() {
        let hub = hub();
        let mut a = hub.connect(Some(RoomName::lobby()));
        let b = hub.connect(Some(RoomName::lobby()));
        drain(&a);
        drop(b);
        assert!(
            matches!(&drain(&a)[..], [Event::Left { reason, .. }] if &**reason == "disconnected")
        );
        a.leave(&RoomName::lobby()).unwrap();
        assert!(a.rooms().is_empty());
    }

    #[test]
    fn the_room_limit_is_enforced() {
        let hub = hub();
        let mut a = hub.connect(None);
        for i in 0..4 {
            a.join(RoomName::new(&format!("r{i}")).unwrap()).unwrap();
        }
        assert_eq!(
            a.join(RoomName::new("r4").unwrap()),
            Err(HubError::TooManyRooms { limit: 4 })
        );
        // Re-joining a room already joined only makes it current.
        a.join(RoomName::new("r0").unwrap()).unwrap();
        assert_eq!(a.current_room().unwrap().as_str(), "r0");
    }
}
