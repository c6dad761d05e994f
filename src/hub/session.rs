//! One connected client's handle on the hub: what it can do, and the flow
//! control that makes whatever it does wait for its receivers.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::counters::Field;
use super::event::Delivery;
use super::info::unix_millis;
use super::room::Room;
use super::tap::Seen;
use super::{
    lock, Access, Body, ClientId, CloseReason, Event, Hub, HubError, Listing, Member, Name,
    NameKeys, Outbox, OutboxHandle, Pattern, Pushed, RoomInfo, RoomName,
};

/// One connected client's handle on the hub. Dropping it takes the client
/// out of its rooms and frees its name.
///
/// Everything a client does that queues something for others (a message,
/// and the notices its joins, leaves and renames cause) is subject to the
/// same flow control: a receiver whose queue it pushed over the soft limit
/// is remembered, and the client's transport waits in
/// [`Session::until_receivers_keep_up`] before reading more from it.
#[derive(Debug)]
pub struct Session {
    hub: Hub,
    me: Arc<Member>,
    name: Name,
    /// Rooms joined, oldest first; the last is where plain messages go.
    rooms: Vec<Arc<Room>>,
    /// Receivers this client's notices congested, not yet waited for.
    /// Boxed, and only when there are some: a session lives as long as
    /// its client, and most never congest anyone (8 bytes, not 24).
    #[allow(clippy::box_collection)]
    congested: Option<Box<Vec<Arc<Member>>>>,
    /// Logged in: where its credentials let it go, and whether its name
    /// is its user's (`None`: anywhere, any name). Boxed: most clients
    /// never log in.
    logged_in: Option<Box<LoggedIn>>,
}

/// A logged-in client's credentials, as the hub checks them.
#[derive(Debug)]
struct LoggedIn {
    access: Box<dyn Access>,
    /// Its name is its user name, and stays.
    name_fixed: bool,
}

impl Session {
    pub(super) fn new(hub: Hub, me: Arc<Member>, name: Name) -> Self {
        Session {
            hub,
            me,
            name,
            rooms: Vec::new(),
            congested: None,
            logged_in: None,
        }
    }

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
        OutboxHandle(self.me.clone(), self.hub.shared.counters.clone())
    }

    /// Counts `bytes` just read from this client: it is active now.
    pub fn received(&self, bytes: usize) {
        let traffic = &self.me.traffic;
        traffic.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.hub
            .shared
            .counters
            .add(self.me.meta.kind, Field::BytesIn, bytes as u64);
        traffic
            .last_activity
            .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
    }

    /// Whether anyone watches this client.
    fn watched(&self) -> bool {
        self.me.watched.load(Ordering::Relaxed)
    }

    /// Tells the hub how many bytes of this client's input its transport
    /// holds unhandled (an unfinished line, a read not yet relayed): they
    /// count against the server's memory budget.
    pub fn set_input_held(&self, bytes: usize) {
        self.me.input.store(bytes, Ordering::Relaxed);
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
        let count = bodies.len() as u64;
        self.me
            .traffic
            .messages_in
            .fetch_add(count, Ordering::Relaxed);
        self.hub
            .shared
            .counters
            .add(self.me.meta.kind, Field::MessagesIn, count);
        let room = match room {
            Some(name) => self.joined(name)?,
            None => self.rooms.last().ok_or(HubError::NoRoom)?,
        };
        if let Some(logged_in) = &self.logged_in {
            logged_in
                .access
                .may_send(&room.name)
                .map_err(HubError::Forbidden)?;
        }
        room.count_messages(bodies.len());
        if self.watched() {
            let at = SystemTime::now();
            for body in &bodies {
                self.hub.show_client_watchers(self.me.id, || Seen {
                    at,
                    room: Some(room.name.clone()),
                    from: self.name.clone(),
                    from_id: Some(self.me.id),
                    to: None,
                    body: body.clone(),
                });
            }
        }
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
        let mut congested = Vec::new();
        room.broadcast(&delivery, Some(self.me.id), &mut congested);
        if !congested.is_empty() {
            self.hub.paused(congested.len());
        }
        for member in congested {
            member.outbox.until_receiver_keeps_up().await;
        }
        Ok(())
    }

    /// Sends `body` to the client named `to` alone, then waits if that
    /// client's queue is congested.
    pub async fn direct(&self, to: &Name, body: Body) -> Result<(), HubError> {
        self.me.traffic.messages_in.fetch_add(1, Ordering::Relaxed);
        let counters = &self.hub.shared.counters;
        counters.add(self.me.meta.kind, Field::MessagesIn, 1);
        let target = self
            .hub
            .directory()
            .by_name
            .get(&to.key())
            .cloned()
            .ok_or_else(|| HubError::NoSuchClient(to.clone()))?;
        let seen = || Seen {
            at: SystemTime::now(),
            room: None,
            from: self.name.clone(),
            from_id: Some(self.me.id),
            to: Some(target.name()),
            body: body.clone(),
        };
        if self.watched() {
            self.hub.show_client_watchers(self.me.id, seen);
        }
        if target.watched.load(Ordering::Relaxed) {
            self.hub.show_client_watchers(target.id, seen);
        }
        let delivery = Delivery::new(Event::Direct {
            from: self.name.clone(),
            body,
        });
        if target.deliver_counted(&delivery, counters) == Pushed::Congested {
            self.hub.paused(1);
            target.outbox.until_receiver_keeps_up().await;
        }
        Ok(())
    }

    /// Waits until every receiver this client's actions pushed over its
    /// soft limit has drained below it (or been cut off). A transport
    /// calls this before reading more from the client, so TCP pushes back
    /// on a client whose notices (joins, leaves, renames) flood others,
    /// just as on one whose messages do.
    pub async fn until_receivers_keep_up(&mut self) {
        for member in self
            .congested
            .take()
            .into_iter()
            .flat_map(|members| *members)
        {
            member.outbox.until_receiver_keeps_up().await;
        }
    }

    /// Joins `room` (creating it if nobody is in it) and makes it the
    /// current room. Joining a room already joined only makes it current.
    /// Returns how many are in the room now.
    pub fn join(&mut self, name: RoomName) -> Result<usize, HubError> {
        if let Some(logged_in) = &self.logged_in {
            logged_in
                .access
                .may_join(&name)
                .map_err(HubError::Forbidden)?;
        }
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
        let (room, members) = {
            let mut guard = self.hub.directory();
            let directory = &mut *guard;
            let room = directory
                .rooms
                .entry(name.clone())
                .or_insert_with(|| {
                    let taps = directory.watchers.get(&name).cloned().unwrap_or_default();
                    Arc::new(Room::new(name, taps, self.hub.shared.counters.clone()))
                })
                .clone();
            let members = {
                let mut members = room.members_mut();
                members.insert(self.me.id, self.me.clone());
                members.len()
            };
            directory.resized(&room.name, members - 1, members);
            (room, members)
        };
        self.announce(
            &room,
            Event::Joined {
                room: room.name.clone(),
                name: self.name.clone(),
            },
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
        self.leave_room(&room, Arc::from("left"));
        Ok(())
    }

    /// Takes this client out of `room` and tells those left why.
    fn leave_room(&mut self, room: &Arc<Room>, reason: Arc<str>) {
        if self.remove_from(room) {
            self.announce(
                room,
                Event::Left {
                    room: room.name.clone(),
                    name: self.name.clone(),
                    reason,
                },
            );
        }
    }

    /// Takes this client out of `room`; returns whether anyone is left.
    fn remove_from(&self, room: &Arc<Room>) -> bool {
        let mut directory = self.hub.directory();
        let left = {
            let mut members = room.members_mut();
            members.remove(&self.me.id);
            members.len()
        };
        directory.resized(&room.name, left + 1, left);
        if left == 0 {
            directory.rooms.remove(&room.name);
        }
        left > 0
    }

    /// Tells the room `event`, if it is small enough for notices (in a room
    /// of `n` members each notice costs `n` deliveries), and remembers whom
    /// it congested.
    fn announce(&mut self, room: &Room, event: Event) {
        let limit = self.hub.shared.settings.announce_max_members;
        if limit > 0 && room.len() <= limit {
            let congested = self.congested.get_or_insert_with(Box::default);
            room.broadcast(&Delivery::new(event), Some(self.me.id), congested);
            if congested.is_empty() {
                self.congested = None;
            }
        }
    }

    /// Takes the name `new`, unless another client has it (or one that
    /// looks the same). Returns the old name. Everyone sharing a room with
    /// this client is told once.
    pub fn rename(&mut self, new: Name) -> Result<Name, HubError> {
        if self.logged_in.as_ref().is_some_and(|l| l.name_fixed) {
            return Err(HubError::NameLocked(self.name.clone()));
        }
        if self.hub.is_user_name(&new) {
            return Err(HubError::UserName(new));
        }
        self.take_name(new)
    }

    /// Logs the client in: it takes its user's `name` (kept from others,
    /// and from then on its own for good, `None`: it keeps its name) and
    /// may go only where `access` allows.
    /// `access` is kept as long as the session: whatever the caller ties
    /// to the client's lifetime (a user's place among its connections) can
    /// live in it.
    pub fn log_in(&mut self, name: Option<Name>, access: Box<dyn Access>) -> Result<(), HubError> {
        let name_fixed = name.is_some();
        if let Some(name) = name {
            self.take_name(name)?;
        }
        self.logged_in = Some(Box::new(LoggedIn { access, name_fixed }));
        self.me
            .logged_in
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn take_name(&mut self, new: Name) -> Result<Name, HubError> {
        let keys = NameKeys::of(&new);
        if keys.is_reserved() {
            return Err(HubError::NameReserved(new));
        }
        let old_keys = NameKeys::of(&self.name);
        let mut directory = self.hub.directory();
        if directory.name_taken(&keys, self.me.id) {
            return Err(HubError::NameTaken(new));
        }
        directory.release(&old_keys, self.me.id);
        directory.claim(keys, &self.me);
        *lock(&self.me.name) = new.clone();
        drop(directory);
        let old = std::mem::replace(&mut self.name, new.clone());
        if old != new {
            self.announce_rename(&old, &new);
        }
        Ok(old)
    }

    fn announce_rename(&mut self, old: &Name, new: &Name) {
        let limit = self.hub.shared.settings.announce_max_members;
        let delivery = Delivery::new(Event::Renamed {
            old: old.clone(),
            new: new.clone(),
        });
        let mut told = HashSet::from([self.me.id]);
        for room in &self.rooms {
            let members = room.members();
            if limit == 0 || members.len() > limit {
                continue;
            }
            for (id, member) in members.iter() {
                if told.insert(*id)
                    && member.deliver_counted(&delivery, &self.hub.shared.counters)
                        == Pushed::Congested
                {
                    self.congested
                        .get_or_insert_with(Box::default)
                        .push(member.clone());
                }
            }
        }
    }

    /// The names in `room` (default: the current room) that match
    /// `pattern`: at most the list limit of them, sorted, out of the
    /// room's total.
    pub fn who(
        &self,
        room: Option<&RoomName>,
        pattern: Option<&Pattern>,
    ) -> Result<(RoomName, Listing<Name>), HubError> {
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
        let limit = self.hub.shared.settings.max_list;
        let members = room.members();
        let total = members.len();
        let mut names = Vec::new();
        let mut more = false;
        for (scanned, member) in members.values().enumerate() {
            if scanned == self.hub.shared.settings.max_list_scan {
                more = true;
                break;
            }
            let name = member.name();
            if pattern.is_none_or(|pattern| pattern.matches(name.as_str())) {
                if names.len() == limit {
                    more = true;
                    break;
                }
                names.push(name);
            }
        }
        drop(members);
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        Ok((
            room.name.clone(),
            Listing {
                items: names,
                total,
                more,
            },
        ))
    }

    /// The rooms on the server that match `pattern`, largest first: at
    /// most the list limit of them, out of the server's total.
    pub fn rooms(&self, pattern: Option<&Pattern>) -> Listing<RoomInfo> {
        let limit = self.hub.shared.settings.max_list;
        let directory = self.hub.directory();
        let total = directory.rooms.len();
        let mut items = Vec::new();
        let mut more = false;
        for (scanned, (members, name)) in directory.by_size.iter().enumerate() {
            if scanned == self.hub.shared.settings.max_list_scan {
                more = true;
                break;
            }
            if pattern.is_none_or(|pattern| pattern.matches(name.as_str())) {
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(RoomInfo {
                    name: name.clone(),
                    members: members.0,
                });
            }
        }
        Listing { items, total, more }
    }

    /// Queues bytes already encoded for this client (a reply to its own
    /// request). Returns whether this client's own queue is now congested.
    pub fn reply(&self, bytes: Bytes) -> Pushed {
        // Nothing to send (a raw client's notice) is not an item: a writer
        // takes a write of nothing for a closed connection.
        if bytes.is_empty() {
            return Pushed::Queued;
        }
        self.me.outbox.push(bytes)
    }

    /// Closes this client's outbox; the rooms it leaves are told `reason`
    /// when it departs.
    pub fn close(&mut self, reason: CloseReason, flush: bool) {
        self.me.outbox.close(reason, flush);
    }

    /// Frees this client's name and takes it out of its rooms, telling
    /// them why it left (the reason its outbox was closed with). Its
    /// transport may still flush what is queued for it, and should then
    /// wait in [`Session::until_receivers_keep_up`], so that a client
    /// connecting and leaving in a loop is held back by the rooms it
    /// floods with notices. Dropping a session departs too.
    pub fn depart(&mut self) {
        let reason = self
            .me
            .outbox
            .closing()
            .map_or(CloseReason::ClientClosed, |closing| closing.reason);
        let keys = NameKeys::of(&self.name);
        self.hub.directory().release(&keys, self.me.id);
        let reason: Arc<str> = Arc::from(reason.summary());
        for room in std::mem::take(&mut self.rooms) {
            self.leave_room(&room, reason.clone());
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.depart();
    }
}
