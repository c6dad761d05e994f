//! The hub's query API: what is connected, what each client has done, the
//! rooms, and the few admin actions (send, kick, watch). This is all an
//! admin interface (the HTTP API, the console, metrics) sees of the hub.
//!
//! Counters live with the client they count and are written by the task
//! already touching that client: nothing global is written on the path of
//! a message. Totals are sums taken when asked, plus what departed clients
//! had done, added once as each goes.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::counters::ClientKind;
use super::event::Delivery;
use super::tap::{Seen, Tap};
use super::{Body, ClientId, CloseReason, Event, Flag, Hub, HubError, Member, Name, RoomName};

/// Who a client is, as its transport tells the hub when it connects: for
/// listings and metrics, never for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMeta {
    /// How the client is connected.
    pub kind: ClientKind,
    /// Whether its connection is encrypted (TLS, HTTPS).
    pub tls: bool,
    /// The client's address.
    pub peer: PeerAddr,
    /// The id of the listener it came through.
    pub listener: u32,
    /// Whether it is a client of a sealed room (a playground port's): no
    /// other client may send to it by name, as none may join its room.
    pub sealed: bool,
}

impl Default for ClientMeta {
    fn default() -> Self {
        ClientMeta {
            kind: ClientKind::Text,
            tls: false,
            peer: SocketAddr::from(([127, 0, 0, 1], 0)).into(),
            sealed: false,
            listener: 0,
        }
    }
}

/// A client's address and port, as listings and logs show it: 20 bytes in
/// every client's record, where a `SocketAddr` is 32 (an IPv6 address's
/// flow label and scope, which nothing here shows, are not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    ip: IpAddr,
    port: u16,
}

impl PeerAddr {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr {
            ip: addr.ip(),
            port: addr.port(),
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(peer: PeerAddr) -> Self {
        SocketAddr::new(peer.ip, peer.port)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::from(*self).fmt(f)
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// What one client has done so far. Each counter is written by one task
/// (its reader, its writer) or under its outbox's lock, and read with
/// relaxed loads: figures for people, not for synchronisation.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub(super) messages_in: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) messages_out: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    /// When the client last sent anything (unix milliseconds).
    pub(super) last_activity: AtomicU64,
}

/// Counters summed over clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Clients counted.
    pub clients: u64,
    /// Messages received from them.
    pub messages_in: u64,
    /// Bytes received from them.
    pub bytes_in: u64,
    /// Messages (and notices) delivered to them.
    pub messages_out: u64,
    /// Bytes written to them.
    pub bytes_out: u64,
}

impl Totals {
    /// Adds `other` to these.
    pub fn merge(&mut self, other: &Totals) {
        self.clients += other.clients;
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
    }
}

/// One connected client, as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its id, never reused.
    pub id: ClientId,
    /// Its name now.
    pub name: Name,
    /// How and where it is connected.
    pub meta: ClientMeta,
    /// Whether it authenticated (a login, a token, a JWT).
    pub logged_in: bool,
    /// The rooms it is in, in no particular order.
    pub rooms: Vec<RoomName>,
    /// When it connected.
    pub connected_at: SystemTime,
    /// When it last sent anything.
    pub last_activity: SystemTime,
    /// Messages it sent.
    pub messages_in: u64,
    /// Bytes it sent.
    pub bytes_in: u64,
    /// Messages and notices delivered to it.
    pub messages_out: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Bytes queued for it, not yet written.
    pub queue_bytes: usize,
    /// What it registered as, if it is a device.
    pub device: Option<super::DeviceInfo>,
}

/// A room, as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStats {
    /// The room.
    pub name: RoomName,
    /// How many are in it.
    pub members: usize,
    /// Messages said in it since it was created.
    pub messages: u64,
}

/// What a client, or the admin, can be watched in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// Every message said in a room (whether or not it exists yet).
    Room(RoomName),
    /// Every message a client says, in any room, and direct messages to it.
    Client(ClientId),
}

/// A watcher's end of a [`Tap`]; unhooked from the hub when dropped.
#[derive(Debug)]
pub struct Watcher {
    hub: Hub,
    watch: Watch,
    tap: Arc<Tap>,
}

impl Watcher {
    /// What is being watched.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// The tap to take sightings from.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.hub.unwatch(&self.watch, &self.tap);
    }
}

impl Member {
    pub(super) fn info(&self, rooms: Vec<RoomName>) -> ClientInfo {
        let traffic = &self.traffic;
        ClientInfo {
            id: self.id,
            name: self.name(),
            meta: self.meta,
            logged_in: self.flags.get(Flag::LoggedIn),
            rooms,
            connected_at: UNIX_EPOCH + std::time::Duration::from_millis(self.connected_at),
            last_activity: UNIX_EPOCH
                + std::time::Duration::from_millis(traffic.last_activity.load(Ordering::Relaxed)),
            messages_in: traffic.messages_in.load(Ordering::Relaxed),
            bytes_in: traffic.bytes_in.load(Ordering::Relaxed),
            messages_out: traffic.messages_out.load(Ordering::Relaxed),
            bytes_out: traffic.bytes_out.load(Ordering::Relaxed),
            queue_bytes: self.outbox.pending(),
            device: self.device.get().map(|device| device.info()),
        }
    }
}

/// The name the server's admin speaks under (the HTTP API's `send`, the
/// console): reserved, so that no client can pass itself off as the admin.
pub const ADMIN_NAME: &str = "admin";

impl Hub {
    /// Every connected client, with its rooms and counters, in no
    /// particular order. Takes the directory lock only to collect handles:
    /// the counters are read after.
    pub fn clients(&self) -> Vec<ClientInfo> {
        let (members, rooms) = {
            let directory = self.directory();
            let members: Vec<Arc<Member>> = directory.by_name.values().cloned().collect();
            let rooms: Vec<_> = directory.rooms.values().cloned().collect();
            (members, rooms)
        };
        let mut joined: HashMap<ClientId, Vec<RoomName>> = HashMap::new();
        for room in rooms {
            for id in room.members().keys() {
                joined.entry(*id).or_default().push(room.name.clone());
            }
        }
        members
            .iter()
            .map(|member| member.info(joined.remove(&member.id).unwrap_or_default()))
            .collect()
    }

    /// Connected clients of each kind, and the bytes queued for them all:
    /// one pass over the clients, reading two figures of each (what
    /// metrics need, without building a listing).
    pub fn load(&self) -> (std::collections::BTreeMap<ClientKind, usize>, usize) {
        let mut kinds = std::collections::BTreeMap::new();
        let mut queued = 0;
        for member in self.directory().by_name.values() {
            *kinds.entry(member.meta.kind).or_default() += 1;
            queued += member.outbox.pending();
        }
        (kinds, queued)
    }

    /// One connected client.
    pub fn client(&self, id: ClientId) -> Option<ClientInfo> {
        let member = self.member(id)?;
        let rooms = self
            .directory()
            .rooms
            .values()
            .filter(|room| room.members().contains_key(&id))
            .map(|room| room.name.clone())
            .collect();
        Some(member.info(rooms))
    }

    fn member(&self, id: ClientId) -> Option<Arc<Member>> {
        self.directory()
            .by_name
            .values()
            .find(|member| member.id == id)
            .cloned()
    }

    /// Every room, with its size and message count, in no particular order.
    pub fn room_stats(&self) -> Vec<RoomStats> {
        self.directory()
            .rooms
            .values()
            .map(|room| room.stats())
            .collect()
    }

    /// One room and its members.
    pub fn room(&self, name: &RoomName) -> Option<(RoomStats, Vec<ClientInfo>)> {
        let room = self.directory().rooms.get(name).cloned()?;
        let members: Vec<Arc<Member>> = room.members().values().cloned().collect();
        let stats = RoomStats {
            members: members.len(),
            ..room.stats()
        };
        let members = members
            .iter()
            .map(|member| member.info(vec![name.clone()]))
            .collect();
        Some((stats, members))
    }

    /// Traffic counters of every client since the hub started, connected
    /// or gone, by kind: monotonic, for metrics.
    pub fn totals(&self) -> Vec<(ClientKind, Totals)> {
        self.shared.counters.totals()
    }

    /// Shows `seen` to whoever watches client `id`.
    pub(super) fn show_client_watchers(&self, id: ClientId, seen: impl FnOnce() -> Seen) {
        let directory = self.directory();
        if let Some((last, others)) = directory
            .client_watchers
            .get(&id)
            .and_then(|t| t.split_last())
        {
            let seen = seen();
            for tap in others {
                tap.push(seen.clone());
            }
            last.push(seen);
        }
    }

    /// Disconnects client `id` for `reason`, dropping what is queued for
    /// it; returns what it was.
    pub fn disconnect(&self, id: ClientId, reason: CloseReason) -> Option<ClientInfo> {
        let info = self.client(id)?;
        let member = self.member(id)?;
        member.outbox.close(reason, false);
        Some(info)
    }

    /// Says `body` in `room` as the server's admin ([`ADMIN_NAME`]), to every
    /// member; returns how many it was queued for. No one waits: a member
    /// it congests is held to its limits like for any other message.
    pub fn admin_say(&self, room: &RoomName, body: Body) -> Result<usize, HubError> {
        let from = Name::new(ADMIN_NAME).expect("the admin name is valid");
        // In a cluster, the room's members on other nodes hear it too.
        let (local, remote) = {
            let directory = self.directory();
            let remote = directory.remote.rooms.get(room).map_or(0, |m| m.len());
            (directory.rooms.get(room).cloned(), remote)
        };
        if remote > 0 {
            self.backplane()
                .publish(room, &from, ClientId(0), std::slice::from_ref(&body));
        }
        let Some(room) = local else {
            return if remote > 0 {
                Ok(remote)
            } else {
                Err(HubError::NoSuchRoom(room.clone()))
            };
        };
        let mut congested = Vec::new();
        Ok(room.say(&from, vec![body], None, &mut congested) + remote)
    }

    /// Sends `body` to the client named `to` as the server's admin.
    pub fn admin_direct(&self, to: &Name, body: Body) -> Result<(), HubError> {
        let from = Name::new(ADMIN_NAME).expect("the admin name is valid");
        let target = {
            let directory = self.directory();
            match directory.by_name.get_named(to, &to.key()) {
                Some(member) => member.clone(),
                None => {
                    let remote = directory
                        .remote
                        .by_name
                        .get(&to.key())
                        .cloned()
                        .ok_or_else(|| HubError::NoSuchClient(to.clone()))?;
                    drop(directory);
                    self.backplane()
                        .direct(&remote, to, &from, ClientId(0), &body);
                    return Ok(());
                }
            }
        };
        self.direct_from_elsewhere(&target, from, body);
        Ok(())
    }

    /// Queues for `target` what `from`, not a client of this server (its
    /// admin, a client of another node), sent it alone; its watchers see it.
    /// No one waits: a congested target is held to its limits.
    pub(super) fn direct_from_elsewhere(&self, target: &Member, from: Name, body: Body) {
        if target.flags.get(Flag::Watched) {
            self.show_client_watchers(target.id, || Seen {
                at: SystemTime::now(),
                room: None,
                from: from.clone(),
                from_id: None,
                to: Some(target.name()),
                body: body.clone(),
                offset: None,
            });
        }
        let _ = target.deliver_counted(
            &Delivery::new(Event::Direct { from, body }),
            &self.shared.counters,
        );
    }

    /// Starts watching a room or a client. The tap sees messages from now
    /// on, until the [`Watcher`] is dropped.
    pub fn watch(&self, watch: Watch) -> Result<Watcher, HubError> {
        let tap = Tap::new();
        match &watch {
            Watch::Room(name) => {
                let mut directory = self.directory();
                directory
                    .watchers
                    .entry(name.clone())
                    .or_default()
                    .push(tap.clone());
                if let Some(room) = directory.rooms.get(name) {
                    room.add_tap(tap.clone());
                }
            }
            Watch::Client(id) => {
                let member = self.member(*id).ok_or(HubError::NoSuchClientId(*id))?;
                self.directory()
                    .client_watchers
                    .entry(*id)
                    .or_default()
                    .push(tap.clone());
                member.flags.set(Flag::Watched, true);
            }
        }
        Ok(Watcher {
            hub: self.clone(),
            watch,
            tap,
        })
    }

    fn unwatch(&self, watch: &Watch, tap: &Arc<Tap>) {
        match watch {
            Watch::Room(name) => {
                let mut directory = self.directory();
                if let Some(taps) = directory.watchers.get_mut(name) {
                    taps.retain(|t| !Arc::ptr_eq(t, tap));
                    if taps.is_empty() {
                        directory.watchers.remove(name);
                    }
                }
                if let Some(room) = directory.rooms.get(name) {
                    room.remove_tap(tap);
                }
            }
            Watch::Client(id) => {
                let member = self.member(*id);
                let mut directory = self.directory();
                let left = match directory.client_watchers.get_mut(id) {
                    Some(taps) => {
                        taps.retain(|t| !Arc::ptr_eq(t, tap));
                        taps.len()
                    }
                    None => 0,
                };
                if left == 0 {
                    directory.client_watchers.remove(id);
                }
                if let Some(member) = member {
                    member.flags.set(Flag::Watched, left > 0);
                }
            }
        }
    }
}
