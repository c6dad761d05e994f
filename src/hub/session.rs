//! One connected client's handle on the hub: what it can do, and the flow
//! control that makes whatever it does wait for its receivers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::counters::Field;
use super::event::Delivery;
use super::history::{Gap, GapReason, HistoryHold, Offset, Prepared, Replay, Resume, RoomHistory};
use super::info::unix_millis;
use super::room::Room;
use super::tap::Seen;
use super::{
    Body, Change, ClientId, CloseReason, Event, Flag, Hub, HubError, InputGauge, Member, Name,
    NameKeys, Outbox, OutboxHandle, Pushed, RoomName,
};
use identity::LoggedIn;

mod identity;

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
    pub(super) hub: Hub,
    pub(super) me: Arc<Member>,
    name: Name,
    /// Rooms joined, oldest first; the last is where plain messages go.
    rooms: Vec<Joined>,
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

/// A room a client is in, and where its history stood when the client
/// came in: what a resume asked for later replays up to, since the client
/// was queued everything after it live.
#[derive(Debug, Clone)]
struct Joined {
    room: Arc<Room>,
    /// The room's last position when the client joined (`None`: it kept
    /// no history then, or nothing yet).
    at: Option<Offset>,
}

impl std::ops::Deref for Joined {
    type Target = Arc<Room>;
    fn deref(&self) -> &Arc<Room> {
        &self.room
    }
}

/// What [`Session::history`] showed a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryShown {
    /// The room.
    pub room: RoomName,
    /// How many messages were shown.
    pub count: usize,
    /// Whether the room keeps older ones.
    pub more: bool,
    /// The oldest shown: the `before` of the next page back.
    pub before: Option<super::Offset>,
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
        OutboxHandle(self.me.clone())
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
        self.me.flags.get(Flag::Watched)
    }

    /// Tells the hub how many bytes of this client's input its transport
    /// holds unhandled (an unfinished line, a read not yet relayed): they
    /// count against the server's memory budget.
    pub fn set_input_held(&self, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.me.input.store(bytes, Ordering::Relaxed);
    }

    /// Where this client's transport reports what it holds of a message
    /// not finished yet.
    pub fn input_gauge(&self) -> InputGauge {
        InputGauge(self.me.clone())
    }

    /// How many rooms' entries its list of rooms has room for.
    #[cfg(test)]
    pub(super) fn rooms_capacity(&self) -> usize {
        self.rooms.capacity()
    }

    /// The room plain messages go to: the one joined last.
    pub fn current_room(&self) -> Option<&RoomName> {
        self.rooms.last().map(|room| &room.name)
    }

    fn joined(&self, name: &RoomName) -> Result<&Arc<Room>, HubError> {
        self.rooms
            .iter()
            .find(|room| room.name == *name)
            .map(|joined| &joined.room)
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
            None => &self.rooms.last().ok_or(HubError::NoRoom)?.room,
        };
        if let Some(logged_in) = &self.logged_in {
            logged_in
                .access
                .may_send(&room.name)
                .map_err(HubError::Forbidden)?;
        }
        self.device_sent();
        // In a cluster sharing histories, a room that keeps one hears its
        // messages back from the cluster, numbered, as every node does.
        let shared = self.hub.shares_history() && room.members().history.is_some();
        let appended = shared
            && self
                .hub
                .backplane()
                .append(&room.name, &self.name, self.me.id, &bodies);
        if !shared && room.remote() > 0 {
            self.hub
                .backplane()
                .publish(&room.name, &self.name, self.me.id, &bodies);
        }
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
                    offset: None,
                });
            }
        }
        let mut congested = Vec::new();
        if appended {
            return Ok(());
        } else if shared {
            room.say_unrecorded(&self.name, bodies, Some(self.me.id), &mut congested);
        } else {
            room.say(&self.name, bodies, Some(self.me.id), &mut congested);
        }
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
        if self.me.meta.sealed {
            return Err(HubError::Forbidden(
                "a client of a sealed room speaks only in it".into(),
            ));
        }
        // A user kept to some rooms reaches only the names it is granted.
        if let Some(logged_in) = &self.logged_in {
            logged_in
                .access
                .may_direct(to)
                .map_err(HubError::Forbidden)?;
        }
        self.me.traffic.messages_in.fetch_add(1, Ordering::Relaxed);
        let counters = &self.hub.shared.counters;
        counters.add(self.me.meta.kind, Field::MessagesIn, 1);
        let key = to.key();
        let target = {
            let directory = self.hub.directory();
            match directory.by_name.get_named(to, &key) {
                // A sealed room's client is not the others' to reach.
                Some(member) if member.meta.sealed => {
                    return Err(HubError::NoSuchClient(to.clone()))
                }
                Some(member) => member.clone(),
                None => {
                    let remote = directory
                        .remote
                        .by_name
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| HubError::NoSuchClient(to.clone()))?;
                    drop(directory);
                    if self.watched() {
                        self.hub.show_client_watchers(self.me.id, || Seen {
                            at: SystemTime::now(),
                            room: None,
                            from: self.name.clone(),
                            from_id: Some(self.me.id),
                            to: Some(to.clone()),
                            body: body.clone(),
                            offset: None,
                        });
                    }
                    self.hub
                        .backplane()
                        .direct(&remote, to, &self.name, self.me.id, &body);
                    return Ok(());
                }
            }
        };
        let seen = || Seen {
            at: SystemTime::now(),
            room: None,
            from: self.name.clone(),
            from_id: Some(self.me.id),
            to: Some(target.name()),
            body: body.clone(),
            offset: None,
        };
        if self.watched() {
            self.hub.show_client_watchers(self.me.id, seen);
        }
        if target.flags.get(Flag::Watched) {
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
        let replay = self.replay_on_join();
        self.join_room(name, true, replay)
    }

    /// Joins `room` as [`join`](Session::join) does, resuming from
    /// `since`: the client is first queued everything the room said after
    /// that position (or told of the gap, and queued what is kept), then
    /// what is said from now on, with no message twice and none missing
    /// at the seam.
    pub async fn join_since(&mut self, name: RoomName, since: Offset) -> Result<usize, HubError> {
        self.join_resuming(name, since).await
    }

    /// Gets ready to [`join`](Session::join) `room` (or arrive in it): in
    /// a cluster sharing histories, this node's copy of the room's
    /// history is made whole first (see [`Hub::fresh_history`]); keep the
    /// hold until the join is done. Nothing to wait for elsewhere.
    pub async fn ready_to_join(&self, room: &RoomName) -> Option<HistoryHold> {
        if self.rooms.iter().any(|joined| joined.name == *room) {
            return None;
        }
        self.hub.fresh_history(room).await
    }

    /// Shows this client the last `count` messages of each room it joins
    /// from now on (a text listener's `?history=N`; 0: none).
    pub fn show_history_on_join(&self, count: usize) {
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        self.me.history_on_join.store(count, Ordering::Relaxed);
    }

    fn replay_on_join(&self) -> Replay {
        match self.me.history_on_join.load(Ordering::Relaxed) {
            0 => Replay::Nothing,
            n => Replay::Last(usize::from(n)),
        }
    }

    /// Shows this client the last `limit` messages of `room` (default: the
    /// current room) before `before` (default: the newest), oldest first,
    /// queued like any delivery; returns what the page held.
    pub async fn history(
        &self,
        room: Option<&RoomName>,
        limit: usize,
        before: Option<super::Offset>,
    ) -> Result<HistoryShown, HubError> {
        let room = match room {
            Some(name) => self.joined(name)?,
            None => &self.rooms.last().ok_or(HubError::NoRoom)?.room,
        };
        let history = room.members().history.clone();
        let history = history.ok_or_else(|| HubError::NoHistory(room.name.clone()))?;
        let _hold = self.hub.fresh_history(&room.name).await;
        let limit = limit.clamp(1, self.hub.shared.settings.max_list.max(1));
        let page = history.log().page(limit, before);
        let shown = HistoryShown {
            room: room.name.clone(),
            count: page.kept.len(),
            more: page.more,
            before: page.kept.first().map(|kept| kept.offset),
        };
        let delivery = Arc::new(
            Resume {
                kept: page.kept,
                gap: None,
            }
            .into_delivery(&room.name),
        );
        // Encoded off the relay's threads, as a resume is: a client may
        // ask for it again and again.
        let encoding = self.me.encoding();
        self.hub.shared.offload.encode(&delivery, encoding).await;
        self.show(&delivery);
        Ok(shown)
    }

    /// A new client's arrival: in `room`, unannounced, for the moment it
    /// has to say who it is and where it goes (`/hello`); its arrival is
    /// told by [`Session::announce_arrival`], or never, if its hello takes
    /// it elsewhere. Only on a server of its own: in a cluster, every node
    /// hears of a join at once, so the client is announced as it comes.
    pub fn arrive_quietly(&mut self, room: RoomName) -> Result<usize, HubError> {
        if self.hub.node().is_some() || !self.rooms.is_empty() {
            return self.join(room);
        }
        let replay = self.replay_on_join();
        let members = self.join_room(room, false, replay)?;
        self.me.flags.set(Flag::Unannounced, true);
        Ok(members)
    }

    /// Whether the client's arrival has not been told yet.
    pub fn arriving(&self) -> bool {
        self.me.flags.get(Flag::Unannounced)
    }

    /// Tells the rooms of a client that arrived quietly that it is there.
    pub fn announce_arrival(&mut self) {
        if !self.me.flags.swap(Flag::Unannounced, false) {
            return;
        }
        let rooms = self.rooms.clone();
        for room in rooms {
            self.announce(
                &room,
                Event::Joined {
                    room: room.name.clone(),
                    name: self.name.clone(),
                },
            );
        }
    }

    /// A client's hello: it takes `name` and goes to `room` (instead of its
    /// listener's). Said as it arrives, the rooms it leaves never hear of
    /// it, and the one it goes to hears of it once, by its new name; said
    /// later, it is `/nick` and `/join`. Returns its name and where it is
    /// now, with that room's members. Whatever fails, the client ends up
    /// announced in a room (its listener's, if it went nowhere else), and
    /// the failure is returned.
    pub async fn hello(
        &mut self,
        name: Option<Name>,
        room: Option<RoomName>,
    ) -> Result<(Name, RoomName, usize), HubError> {
        let arriving = self.arriving();
        let listener_room = self.current_room().cloned();
        if arriving {
            // Out of the rooms it never was announced in, quietly.
            for room in std::mem::take(&mut self.rooms) {
                self.remove_from(&room);
            }
            self.me.flags.set(Flag::Unannounced, false);
        }
        let renamed = match name {
            Some(name) if name != self.name => self.rename(name).await.map(|_| ()),
            _ => Ok(()),
        };
        let target = room.clone().or_else(|| listener_room.clone());
        let _hold = match &target {
            Some(target) => self.ready_to_join(target).await,
            None => None,
        };
        let joined = match target {
            // Back where it arrived: it was shown that room's history then.
            Some(target) if arriving && Some(&target) == listener_room.as_ref() => {
                self.join_room(target, true, Replay::Nothing)
            }
            Some(target) if arriving || room.is_some() => self.join(target),
            Some(_) => Ok(self.current_room().map_or(0, |r| self.members_of(r))),
            None => Err(HubError::NoRoom),
        };
        // A refused room: back to the listener's, announced.
        let joined = match (joined, listener_room) {
            (Err(error), Some(fallback)) if arriving => {
                let _ = self.join(fallback);
                Err(error)
            }
            (joined, _) => joined,
        };
        let members = joined?;
        renamed?;
        let here = self.current_room().cloned().ok_or(HubError::NoRoom)?;
        Ok((self.name.clone(), here, members))
    }

    /// Members of a room this client is in, counting every node's.
    fn members_of(&self, room: &RoomName) -> usize {
        self.rooms
            .iter()
            .find(|r| r.name == *room)
            .map_or(0, |r| r.len() + r.remote())
    }

    fn join_room(
        &mut self,
        name: RoomName,
        announce: bool,
        replay: Replay,
    ) -> Result<usize, HubError> {
        // A sealed room's client is put there by its listener, first; no
        // one joins it after.
        let its_sealed_room = name.is_sealed() && self.me.meta.sealed && self.rooms.is_empty();
        if self.me.meta.sealed && !its_sealed_room {
            return Err(HubError::Forbidden(
                "a client of a sealed room stays in it".into(),
            ));
        }
        if !its_sealed_room {
            self.may_join(&name)?;
        }
        if let Some(members) = self.make_current(&name) {
            return Ok(members);
        }
        self.room_for_one_more()?;
        // A text listener's `?history=N`: N is the operator's, and small.
        let prepared = (replay != Replay::Nothing).then(|| {
            let history = self.hub.shared.histories.for_room(&name);
            let prepared = Prepared::read(&name, history.as_deref(), replay);
            self.me.encode(prepared.head());
            prepared
        });
        self.enter(name, announce, prepared)
    }

    /// Joins `name` as [`join`](Session::join) does, resuming from `since`
    /// (see [`join_since`](Session::join_since)): the replay is read,
    /// then encoded off the relay's threads, then queued with whatever
    /// was said meanwhile as the client enters the room.
    async fn join_resuming(&mut self, name: RoomName, since: Offset) -> Result<usize, HubError> {
        self.may_join(&name)?;
        let _hold = self.hub.fresh_history(&name).await;
        let encoding = self.me.encoding();
        if let Some(i) = self.rooms.iter().position(|room| room.name == name) {
            // In it already (its listener's room): what came before it did.
            let joined = &self.rooms[i];
            let (history, at) = (joined.members().history.clone(), joined.at);
            let room = name.clone();
            let delivery = self
                .hub
                .shared
                .offload
                .run(move || {
                    let delivery = missed_before(&room, history.as_deref(), at, since);
                    delivery.encoded(encoding);
                    delivery
                })
                .await;
            self.show(&delivery);
            return Ok(self.make_current(&name).unwrap_or(0));
        }
        self.room_for_one_more()?;
        let history = self.hub.shared.histories.for_room(&name);
        let room = name.clone();
        // Read, copied and encoded off the relay's threads: thousands of
        // messages, which a client may ask for again and again.
        let prepared = self
            .hub
            .shared
            .offload
            .run(move || {
                let prepared = Prepared::read(&room, history.as_deref(), Replay::Since(since));
                prepared.head().encoded(encoding);
                prepared
            })
            .await;
        // Another request of this client cannot have come in between: a
        // session handles one at a time.
        if let Some(members) = self.make_current(&name) {
            return Ok(members);
        }
        self.enter(name, true, Some(prepared))
    }

    /// Refuses a room the client's credentials keep it out of.
    pub(super) fn may_join(&self, name: &RoomName) -> Result<(), HubError> {
        if name.is_sealed() {
            return Err(HubError::Forbidden(format!(
                "#{name} is sealed: only the clients its listener puts there are in it"
            )));
        }
        match &self.logged_in {
            Some(logged_in) => logged_in.access.may_join(name).map_err(HubError::Forbidden),
            None => Ok(()),
        }
    }

    /// Makes `name` the current room if the client is in it; returns its
    /// members (here), or `None` if it is not in it.
    fn make_current(&mut self, name: &RoomName) -> Option<usize> {
        let i = self.rooms.iter().position(|room| room.name == *name)?;
        let joined = self.rooms.remove(i);
        let members = joined.len();
        self.rooms.push(joined);
        Some(members)
    }

    /// Refuses a join past the rooms one client may be in.
    fn room_for_one_more(&self) -> Result<(), HubError> {
        let limit = self.hub.shared.settings.max_rooms_per_client;
        match self.rooms.len() >= limit {
            true => Err(HubError::TooManyRooms { limit }),
            false => Ok(()),
        }
    }

    /// Puts the client in `name` (made if new), queuing it `prepared`
    /// first and what was said since it was read, under the room's lock,
    /// so that no message is missed or queued twice at the seam.
    fn enter(
        &mut self,
        name: RoomName,
        announce: bool,
        prepared: Option<Prepared>,
    ) -> Result<usize, HubError> {
        let histories = &self.hub.shared.histories;
        // Most clients stay in one room: no room for four.
        self.rooms.reserve_exact(1);
        let (room, members, at) = {
            let mut guard = self.hub.directory();
            let directory = &mut *guard;
            let (watchers, remote) = (&directory.watchers, &directory.remote);
            let room = directory.rooms.get_or_insert_with(&name, || {
                let taps = watchers.get(&name).cloned().unwrap_or_default();
                let remote = remote.rooms.get(&name).map_or(0, |m| m.len());
                let history = histories.for_room(&name);
                Room::new(
                    name.clone(),
                    taps,
                    self.hub.shared.counters.clone(),
                    remote,
                    history,
                )
            });
            let (members, at) = {
                let mut inside = room.members_mut();
                let history = inside.history.clone();
                let log = history.as_ref().map(|history| (history, history.log()));
                if let Some(prepared) = prepared {
                    let locked = log.as_ref().map(|(history, log)| (&***history, &**log));
                    for delivery in prepared.finish(locked) {
                        self.show(&delivery);
                    }
                }
                let at = log.as_ref().and_then(|(_, log)| log.last());
                drop(log);
                inside.insert(self.me.clone());
                (inside.len(), at)
            };
            directory.resized(&room, members - 1, members);
            (room, members, at)
        };
        if self.hub.node().is_some() {
            self.hub.backplane().changed(Change::Joined {
                id: self.me.id,
                name: self.name.clone(),
                room: room.name.clone(),
                first: members == 1,
            });
        }
        let members = members + room.remote();
        if announce {
            self.announce(
                &room,
                Event::Joined {
                    room: room.name.clone(),
                    name: self.name.clone(),
                },
            );
        }
        self.rooms.push(Joined { room, at });
        Ok(members)
    }

    /// Queues `delivery` for this client itself (what it asked to see of
    /// a history). Its own queue is its own business: its transport waits
    /// for it to drain before reading the next request.
    fn show(&self, delivery: &Delivery) {
        let _ = self.me.deliver_counted(delivery, &self.hub.shared.counters);
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
        let anyone_left = self.remove_from(room);
        // Its arrival was never told: neither is its leaving.
        if self.arriving() {
            return;
        }
        if self.hub.node().is_some() {
            self.hub.backplane().changed(Change::Left {
                id: self.me.id,
                name: self.name.clone(),
                room: room.name.clone(),
                reason: reason.clone(),
                last: !anyone_left,
            });
        }
        if anyone_left {
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
        directory.resized(room, left + 1, left);
        if left == 0 {
            directory.rooms.remove(&room.name);
            if self.hub.shares_history() {
                // Nobody here hears the room now: its copy may miss some.
                if let Some(history) = &room.members().history {
                    history.log().mark_incomplete();
                }
            }
        }
        left > 0
    }

    /// Tells the room `event`, if it is small enough for notices (in a room
    /// of `n` members each notice costs `n` deliveries), and remembers whom
    /// it congested.
    fn announce(&mut self, room: &Room, event: Event) {
        let limit = self.hub.shared.settings.announce_max_members;
        if limit > 0 && room.len() + room.remote() <= limit {
            let congested = self.congested.get_or_insert_with(Box::default);
            room.broadcast(&Delivery::new(event), Some(self.me.id), congested);
            if congested.is_empty() {
                self.congested = None;
            }
        }
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
        // The first departure frees the name; a second finds it free.
        let departing = self.hub.directory().release(&keys, self.me.id);
        let reason: Arc<str> = Arc::from(reason.summary());
        let rooms = std::mem::take(&mut self.rooms);
        for room in rooms {
            self.leave_room(&room, reason.clone());
        }
        if departing && self.hub.node().is_some() {
            self.hub.backplane().changed(Change::Departed {
                id: self.me.id,
                name: self.name.clone(),
            });
        }
        self.me.flags.set(Flag::Departed, true);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Parked: its state lives on in a `ParkedSession`.
        if self.me.flags.swap(Flag::Parking, false) {
            return;
        }
        self.depart();
    }
}

/// A session put away while its client has nothing to do (a UDP peer
/// between datagrams): what a [`Session`] keeps that the client's record
/// in the hub does not (its rooms, its login, the receivers it has yet to
/// wait for), and nothing it needs only while working. 32 bytes where a
/// session is 72: its name is its record's, read again as it resumes, and
/// its hub is reached through its record too; a client in one room that
/// keeps no history holds that room inline, with no list allocated.
/// Dropping it departs, as dropping a session does.
#[derive(Debug)]
pub struct ParkedSession {
    /// `None` once resumed: the session it became departs, not this.
    me: Option<Arc<Member>>,
    rooms: ParkedRooms,
    /// As [`Session`]'s, boxed together and only when either is set:
    /// most clients log in to nothing and congest no one.
    rest: Option<Box<Unsettled>>,
}

/// A parked session's rooms, in the order joined.
#[derive(Debug)]
enum ParkedRooms {
    /// One room, joined while it kept no history: as most devices are.
    One(Arc<Room>),
    /// Any others, as a slice (8 bytes less than a `Vec`; none allocated
    /// for no room).
    Any(Box<[Joined]>),
}

/// What a parked session keeps that few sessions have.
#[derive(Debug)]
struct Unsettled {
    /// As [`Session`]'s: receivers its notices congested, not yet waited for.
    #[allow(clippy::box_collection)]
    congested: Option<Box<Vec<Arc<Member>>>>,
    /// As [`Session`]'s: where its credentials let it go.
    logged_in: Option<Box<LoggedIn>>,
}

impl Session {
    /// Puts the session away until its client has something to do again
    /// ([`ParkedSession::resume`]).
    pub fn park(mut self) -> ParkedSession {
        let mut rooms = std::mem::take(&mut self.rooms);
        let rooms = match rooms.as_slice() {
            [Joined { at: None, .. }] => ParkedRooms::One(rooms.pop().expect("one room").room),
            _ => ParkedRooms::Any(rooms.into_boxed_slice()),
        };
        let (congested, logged_in) = (self.congested.take(), self.logged_in.take());
        let parked = ParkedSession {
            me: Some(self.me.clone()),
            rooms,
            rest: (congested.is_some() || logged_in.is_some()).then(|| {
                Box::new(Unsettled {
                    congested,
                    logged_in,
                })
            }),
        };
        // Its state is the parked session's now: dropped, it does not
        // depart.
        self.me.flags.set(Flag::Parking, true);
        drop(self);
        parked
    }
}

impl ParkedSession {
    /// The session again, as it was parked.
    pub fn resume(mut self) -> Session {
        self.unpark()
            .expect("a parked session resumes once, while its hub is")
    }

    /// Its state as a session again, the first time (while its hub is).
    fn unpark(&mut self) -> Option<Session> {
        let me = self.me.take()?;
        let hub = Hub {
            shared: me.outbox.hub()?,
        };
        let rooms = match std::mem::replace(&mut self.rooms, ParkedRooms::Any(Box::default())) {
            ParkedRooms::One(room) => vec![Joined { room, at: None }],
            ParkedRooms::Any(rooms) => rooms.into_vec(),
        };
        let Unsettled {
            congested,
            logged_in,
        } = self.rest.take().map_or(
            Unsettled {
                congested: None,
                logged_in: None,
            },
            |rest| *rest,
        );
        Some(Session {
            hub,
            name: me.name(),
            me,
            rooms,
            congested,
            logged_in,
        })
    }
}

impl Drop for ParkedSession {
    fn drop(&mut self) {
        // Never resumed: the session departs as it is dropped.
        drop(self.unpark());
    }
}

/// What a client resuming a room it is in already (its listener's, which
/// it was put in as it connected) missed: what the room said after `since`
/// up to the moment it came in (`at`: it was queued all that came after
/// live), or the gap. No lock but the history's is needed: nothing said
/// from now on belongs to it.
fn missed_before(
    room: &RoomName,
    history: Option<&RoomHistory>,
    at: Option<Offset>,
    since: Offset,
) -> Arc<Delivery> {
    let resume = match history {
        None => Resume {
            kept: Vec::new(),
            gap: Some(Gap {
                since,
                from: None,
                reason: GapReason::NotKept,
            }),
        },
        Some(history) => {
            let log = history.log();
            let mut resume = log.since(since);
            // Said after it came in (or after its room began keeping
            // history): queued live already.
            let upto = at
                .filter(|at| at.epoch == log.epoch())
                .map_or(0, |at| at.seq);
            resume.kept.retain(|kept| kept.offset.seq <= upto);
            resume
        }
    };
    Arc::new(resume.into_delivery(room))
}
