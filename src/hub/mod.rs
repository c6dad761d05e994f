//! The routing core: who is connected, their names, their rooms, and the
//! delivery of events to their outboxes.
//!
//! Nothing here knows about sockets or wire formats. A transport (TCP, TLS,
//! WebSocket) turns a connection into a [`Session`] with [`Hub::connect`],
//! calls its methods for what the client asks, and drains the session's
//! [`Outbox`] to the client. The [`Backplane`] joining several servers (the
//! Redis cluster, or [`Solo`] alone) sits beside the rooms: what members of
//! other nodes say comes in through [`remote`](Hub::remote_message) onto
//! the same delivery path.
//!
//! Nothing here knows a wire format either: a transport hands
//! [`Hub::connect`] its client's [`Encoding`], and the hub queues each
//! delivery already encoded for each recipient, so every queue counts the
//! bytes its client will really be sent.
//!
//! A room message takes no global lock: a session holds its rooms
//! directly, a room's member list is read-locked (written only on join and
//! leave, and when a watcher's tap is added or removed), and each
//! recipient's outbox has a lock of its own. A direct message looks its
//! recipient up in the directory, and so does a message from a client an
//! admin watches (to feed the watchers). docs/architecture.md has the
//! locks and their order. What no
//! single message can see (a reader holding its room back too long, all
//! clients together holding too much memory) is enforced by [`Hub::sweep`],
//! which the server runs ten times a second.

mod access;
mod backplane;
mod counters;
mod device;
mod error;
mod event;
mod history;
mod info;
mod listing;
mod name_index;
mod names;
mod outbox;
mod remote;
mod room;
mod session;
mod sweep;
mod tap;

pub use access::{Access, ReservedNames};
pub use backplane::{
    Backplane, Change, Claim, HistoryRead, NodeName, RemoteClient, SharedHistory, Solo, Unclaimed,
};
pub use counters::{ClientKind, KINDS};
pub use device::{DeviceInfo, DeviceProof};
pub use error::{CloseReason, HubError};
pub use event::{Body, Delivery, Encoding, Event, Framing, ENCODING_SLOTS};
pub use history::{
    BadOffset, Gap, GapReason, HistoryHold, HistoryRules, Kept, Offset, Page, Replay, Restored,
    RoomFilter, RoomHistoryView, Saved, Unsaved, KEPT_OVERHEAD,
};
pub use info::{
    unix_millis, ClientInfo, ClientMeta, PeerAddr, RoomStats, Totals, Watch, Watcher, ADMIN_NAME,
};
pub use listing::{Listing, Pattern, PatternTooLong, MAX_PATTERN_CHARS};
pub use names::{comparison_key, shape_key, Name, NameError, RoomName, MAX_NAME_CHARS};
pub(crate) use outbox::now_millis;
pub use outbox::{weight, Batch, Closing, Outbox, Pushed, QueueLimits, Queues, ITEM_OVERHEAD};
pub use remote::ClientPlace;
pub use session::{HistoryShown, ParkedSession, Session};
pub use sweep::Sweep;
pub use tap::{Seen, Sightings, Tap, TAP_MAX_BYTES, TAP_MAX_ITEMS};

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use counters::{Counters, Field};
use info::Traffic;

use crate::sync::lock;
use remote::Remote;
use room::Room;

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
    /// Most rooms or names one listing shows.
    pub max_list: usize,
    /// Most rooms or members one listing looks at: what bounds the time a
    /// listing with a pattern takes.
    pub max_list_scan: usize,
    /// How long a client's queue may stay over the soft limit (holding
    /// back everyone who sends to it) before it is cut off; `None`: as
    /// long as it makes some progress.
    pub slow_timeout: Option<Duration>,
    /// Bytes all clients together may hold in queues and unfinished input
    /// before the largest holders are cut off.
    pub max_memory: usize,
}

/// A client's identity for the lifetime of its connection; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

impl ClientId {
    /// The id as a number, as the admin API shows it.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id numbered `n`.
    pub fn new(n: u64) -> Self {
        ClientId(n)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A client's outbox, held apart from its session (see [`Session::outbox_handle`]).
#[derive(Debug, Clone)]
pub struct OutboxHandle(Arc<Member>);

/// Where a client's transport reports the bytes it holds of a message not
/// finished yet, which count against the memory budget as an unfinished
/// line does. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InputGauge(Arc<Member>);

impl InputGauge {
    /// The transport holds `bytes` of an unfinished message now.
    pub fn set(&self, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.0.unfinished.store(bytes, Ordering::Relaxed);
    }
}

impl OutboxHandle {
    /// Counts `bytes` just written to the client.
    pub fn sent(&self, bytes: usize) {
        self.0
            .traffic
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.0
            .outbox
            .counters()
            .add(self.0.meta.kind, Field::BytesOut, bytes as u64);
    }

    /// How and where the client is connected.
    pub fn meta(&self) -> &ClientMeta {
        &self.0.meta
    }

    /// The client, as an admin sees it now (without its rooms, which it
    /// may have left already).
    pub fn info(&self) -> ClientInfo {
        self.0.info(Vec::new())
    }

    /// What its registration proved, if it registered as a device.
    pub fn device_proof(&self) -> Option<DeviceProof> {
        self.0.device.get().map(|device| device.proof)
    }
}

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
    shared: Arc<HubState>,
}

#[derive(Debug)]
struct HubState {
    settings: HubSettings,
    /// The queue limits and wait lists, shared by every outbox.
    queues: Arc<Queues>,
    directory: Mutex<Directory>,
    next_id: AtomicU64,
    /// What the last sweep found all clients to hold.
    held: AtomicUsize,
    /// Where a large hub's sweep stands: which part of its clients it
    /// visits next, and what each part held when last visited.
    sweep_parts: Mutex<sweep::Parts>,
    /// Set by [`Hub::close_all`]: clients connecting later are closed at once.
    closing: Mutex<Option<(CloseReason, bool)>>,
    /// Traffic of all clients, ever.
    counters: Arc<Counters>,
    /// Times a sender waited for a congested receiver: counted when it
    /// happens, which is off the fast path.
    pauses: AtomicU64,
    /// Names kept for users who log in (read on renames only).
    reserved: std::sync::RwLock<Option<Arc<dyn ReservedNames>>>,
    /// The other nodes of the cluster, if it is part of one (unset: [`Solo`]).
    backplane: OnceLock<Arc<dyn Backplane>>,
    /// Whether the backplane keeps rooms' histories ([`Backplane::shares_history`]),
    /// read for every message: a load, not a call.
    shares_history: std::sync::atomic::AtomicBool,
    /// Names kept for devices (read on renames only).
    device_prefixes: device::DevicePrefixes,
    /// Names that client certificates gave, by comparison key: kept for
    /// their holders, as users' names are (read on renames only).
    certified: Mutex<std::collections::HashSet<Arc<str>>>,
    /// What rooms keep of what was said in them.
    histories: history::Histories,
    /// Where work too big for the message path goes (encoding a replay).
    offload: history::Offloader,
}

/// Most names kept for certificate holders: past it, a new one is not
/// kept (its holder still gets it while connected). A CA signs what it
/// signs; 100,000 names are a few megabytes.
const MAX_CERTIFIED_NAMES: usize = 100_000;

/// Names and rooms: written on connect, join, leave, rename and disconnect,
/// read to resolve a direct message. Never held while awaiting.
#[derive(Debug, Default)]
struct Directory {
    /// Every client, by the [`Name::key`] of its name, and by its
    /// [`Name::shape_key`] where that differs (for most names, both are the
    /// same): a name is free only if neither of its keys is held, as
    /// either kind of key.
    by_name: name_index::NameIndex,
    rooms: room::Rooms,
    /// The rooms, largest first, so a listing takes the first few.
    by_size: BTreeSet<(Reverse<usize>, room::BySize)>,
    /// Taps on rooms, whether or not the room exists now: a room created
    /// later starts with its watchers.
    watchers: HashMap<RoomName, Vec<Arc<Tap>>>,
    /// Taps on clients (kept here, not with each client: few are watched).
    client_watchers: HashMap<ClientId, Vec<Arc<Tap>>>,
    /// The clients of the other nodes of the cluster.
    remote: Remote,
}

impl Directory {
    /// Whether `name` (or a look-alike) is held by someone other than `me`.
    /// Each of its keys is looked for among both kinds of keys held: a
    /// key of one name equal to the shape of another is a look-alike too.
    fn name_taken(&self, name: &NameKeys, me: ClientId) -> bool {
        [&name.key, &name.shape].into_iter().any(|key| {
            self.by_name.get(key).is_some_and(|m| m.id != me)
                || self.by_name.get_shape(key).is_some_and(|m| m.id != me)
        }) || self.remote.holds(name)
    }

    /// Records that `member` holds `name`.
    fn claim(&mut self, name: NameKeys, member: &Arc<Member>) {
        self.by_name.insert(&name, member);
    }

    /// Frees `name` if `me` holds it; returns whether it did.
    fn release(&mut self, name: &NameKeys, me: ClientId) -> bool {
        self.by_name.remove(name, me)
    }

    /// Moves `room` in the size order: it had `before` members, now `after`.
    fn resized(&mut self, room: &Arc<Room>, before: usize, after: usize) {
        if before > 0 {
            self.by_size
                .remove(&(Reverse(before), room::BySize(room.clone())));
        }
        if after > 0 {
            self.by_size
                .insert((Reverse(after), room::BySize(room.clone())));
        }
    }
}

/// Both keys a name is unique under.
#[derive(Debug)]
struct NameKeys {
    key: Arc<str>,
    shape: Arc<str>,
}

impl NameKeys {
    /// Whether the name is, or looks like, the server's own ([`ADMIN_NAME`]).
    fn is_reserved(&self) -> bool {
        static ADMIN: std::sync::OnceLock<NameKeys> = std::sync::OnceLock::new();
        let admin = ADMIN.get_or_init(|| NameKeys::of(&Name::new(ADMIN_NAME).expect("valid")));
        [&self.key, &self.shape]
            .into_iter()
            .any(|key| *key == admin.key || *key == admin.shape)
    }

    fn of(name: &Name) -> Self {
        let key = name.key();
        let shape = name.shape_key();
        // Most names have one form for both: keep one copy.
        let shape = if shape == key { key.clone() } else { shape };
        NameKeys { key, shape }
    }
}

/// A connected client as the hub's rooms and names see it.
#[derive(Debug)]
struct Member {
    id: ClientId,
    name: Mutex<Name>,
    outbox: Outbox,
    /// The client's wire format, and the alternative it can switch to (a
    /// text client's hex display): what its queue holds is encoded in it.
    encodings: &'static [Encoding; 2],
    /// Bytes the client's connection holds of input not yet handled (an
    /// unfinished line, a read not yet relayed), as its read side reports.
    /// 32 bits, saturating: a read buffer is a few lines long.
    input: AtomicU32,
    /// Bytes its transport holds of a message not finished yet (a
    /// WebSocket message whose last fragment has not come), as the
    /// transport reports through an [`InputGauge`].
    unfinished: AtomicU32,
    /// How and where it is connected.
    meta: ClientMeta,
    /// When it connected, in Unix milliseconds.
    connected_at: u64,
    traffic: Traffic,
    /// What it registered as, if it is a device (set once; 8 bytes).
    device: once_cell::race::OnceBox<device::DeviceState>,
    /// Its yes-or-no states, in one byte.
    flags: Flags,
    /// How many of a room's last messages it is shown as it joins (a text
    /// listener's `?history=N`; 0: none).
    history_on_join: std::sync::atomic::AtomicU16,
}

/// A client's yes-or-no states, each a bit of one byte in its record
/// (five `AtomicBool`s took the member past a 256-byte block).
#[derive(Debug, Default)]
struct Flags(std::sync::atomic::AtomicU8);

/// One of a client's [`Flags`].
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Flag {
    /// Anyone watches what this client says (the taps are in the
    /// directory): looked at for every message it sends.
    Watched = 1,
    /// It authenticated (a login, a token, a JWT), for the admin.
    LoggedIn = 2,
    /// It asked for its wire format's alternative (`/hex on`).
    Alternate = 4,
    /// Its session has departed: out of its rooms, its rooms told.
    Departed = 8,
    /// It is in its listener's room unannounced, for the moment a new
    /// client has to say who it is (`/hello`).
    Unannounced = 16,
    /// Its session is being parked ([`Session::park`]): the session's
    /// drop does not depart, the parked session holds its state.
    Parking = 32,
}

impl Flags {
    fn get(&self, flag: Flag) -> bool {
        self.0.load(Ordering::Acquire) & flag as u8 != 0
    }

    fn set(&self, flag: Flag, on: bool) {
        self.swap(flag, on);
    }

    /// Sets `flag` to `on`; returns what it was.
    fn swap(&self, flag: Flag, on: bool) -> bool {
        let before = match on {
            true => self.0.fetch_or(flag as u8, Ordering::AcqRel),
            false => self.0.fetch_and(!(flag as u8), Ordering::AcqRel),
        };
        before & flag as u8 != 0
    }
}

impl Member {
    fn name(&self) -> Name {
        lock(&self.name).clone()
    }

    /// Encodes `delivery` in this client's wire format now (it is cached
    /// for every recipient of that format): before taking a lock that
    /// holds others up while it is queued.
    fn encode(&self, delivery: &Delivery) {
        delivery.encoded(self.encoding());
    }

    /// The wire format this client is shown deliveries in now.
    fn encoding(&self) -> Encoding {
        let alternate = self.flags.get(Flag::Alternate);
        self.encodings[usize::from(alternate)]
    }

    /// Queues `delivery` in this client's wire format; nothing if the
    /// format does not show it (raw clients get no notices).
    fn deliver(&self, delivery: &Delivery) -> Pushed {
        let alternate = self.flags.get(Flag::Alternate);
        let bytes = delivery.encoded(self.encodings[usize::from(alternate)]);
        if bytes.is_empty() {
            return Pushed::Queued;
        }
        let pushed = self.outbox.push(bytes);
        if pushed != Pushed::Closed {
            let events = delivery.events().len() as u64;
            self.traffic
                .messages_out
                .fetch_add(events, Ordering::Relaxed);
        }
        pushed
    }

    /// Queues `delivery` for this one client, counting it for the hub.
    fn deliver_counted(&self, delivery: &Delivery, counters: &Counters) -> Pushed {
        let pushed = self.deliver(delivery);
        if pushed != Pushed::Closed {
            let events = delivery.events().len() as u64;
            counters.add(self.meta.kind, Field::MessagesOut, events);
        }
        pushed
    }

    /// Bytes of server memory this client holds for now.
    fn held(&self) -> usize {
        self.outbox.pending()
            + self.input.load(Ordering::Relaxed) as usize
            + self.unfinished.load(Ordering::Relaxed) as usize
    }
}

impl Hub {
    /// Keeps the names `reserved` says for the users who log in with them
    /// (`None`: no users); replaces what was kept before.
    pub fn set_reserved_names(&self, reserved: Option<Arc<dyn ReservedNames>>) {
        *crate::sync::write(&self.shared.reserved) = reserved;
    }

    /// Keeps `name` for the holders of certificates that give it.
    fn certify(&self, name: &Name) {
        let mut certified = lock(&self.shared.certified);
        if certified.len() < MAX_CERTIFIED_NAMES {
            certified.insert(name.key());
        }
    }

    /// Takes `name` (and its look-alikes) back from the local clients that
    /// took it before a holder of the certificate that gives it first
    /// connected, when nothing told them it was one: each is disconnected,
    /// told why. One that proved a claim of its own (logged in, another
    /// holder of the certificate, a device) keeps it, and `owner` is then
    /// refused the name as taken.
    fn reclaim_for_certificate(&self, name: &Name, owner: ClientId) {
        let keys = NameKeys::of(name);
        let squatters: Vec<Arc<Member>> = {
            let mut directory = self.directory();
            let by_name = &directory.by_name;
            let mut squatters: Vec<Arc<Member>> = [&keys.key, &keys.shape]
                .into_iter()
                .flat_map(|key| [by_name.get(key), by_name.get_shape(key)])
                .flatten()
                .filter(|m| {
                    m.id != owner && !m.flags.get(Flag::LoggedIn) && m.device.get().is_none()
                })
                .cloned()
                .collect();
            squatters.sort_by_key(|m| m.id);
            squatters.dedup_by_key(|m| m.id);
            for squatter in &squatters {
                let why = format!(
                    "the name {name} is given by a client certificate, and its holder connected; connect again and pick another name"
                );
                squatter
                    .outbox
                    .close(CloseReason::Refused(why.into()), true);
                let held = NameKeys::of(&lock(&squatter.name));
                directory.release(&held, squatter.id);
            }
            squatters
        };
        for squatter in squatters {
            let held = lock(&squatter.name).clone();
            tracing::warn!(name = %held, client = %squatter.id, "a client that held a certificate's name before its holder connected is disconnected");
            self.backplane().unclaim(squatter.id, &held);
        }
    }

    /// Whether a client certificate gave `name` (or a look-alike of it).
    fn is_certified_name(&self, name: &Name) -> bool {
        let keys = NameKeys::of(name);
        let certified = lock(&self.shared.certified);
        certified.contains(&*keys.key) || certified.contains(&*keys.shape)
    }

    fn is_user_name(&self, name: &Name) -> bool {
        crate::sync::read(&self.shared.reserved)
            .as_ref()
            .is_some_and(|reserved| reserved.is_reserved(name))
    }

    /// A hub with no clients.
    pub fn new(settings: HubSettings) -> Self {
        let counters: Arc<Counters> = Arc::default();
        Hub {
            shared: Arc::new_cyclic(|hub| HubState {
                queues: Arc::new(Queues::of_hub(
                    settings.queue,
                    counters.clone(),
                    hub.clone(),
                )),
                settings,
                directory: Mutex::default(),
                next_id: AtomicU64::new(1),
                held: AtomicUsize::new(0),
                sweep_parts: Mutex::default(),
                closing: Mutex::new(None),
                counters,
                pauses: AtomicU64::new(0),
                reserved: std::sync::RwLock::new(None),
                backplane: OnceLock::new(),
                shares_history: std::sync::atomic::AtomicBool::new(false),
                device_prefixes: Default::default(),
                certified: Mutex::default(),
                histories: history::Histories::new(HistoryRules::off()),
                offload: Default::default(),
            }),
        }
    }

    /// Makes this hub a node of a cluster, joined through `backplane`.
    /// Done once, before any client connects; a hub without one stands
    /// alone ([`Solo`]).
    pub fn set_backplane(&self, backplane: Arc<dyn Backplane>) {
        let shares = backplane.shares_history();
        if self.shared.backplane.set(backplane).is_err() {
            panic!("a hub joins one cluster, once");
        }
        self.shared.shares_history.store(shares, Ordering::Relaxed);
    }

    /// Whether rooms' histories live in the cluster (see
    /// [`Backplane::shares_history`]).
    pub fn shares_history(&self) -> bool {
        self.shared.shares_history.load(Ordering::Relaxed)
    }

    /// How this hub reaches the other nodes of its cluster.
    pub fn backplane(&self) -> &dyn Backplane {
        match self.shared.backplane.get() {
            Some(backplane) => &**backplane,
            None => &Solo,
        }
    }

    /// This node's name in its cluster, if it is part of one.
    pub fn node(&self) -> Option<&NodeName> {
        self.backplane().node()
    }

    fn directory(&self) -> MutexGuard<'_, Directory> {
        lock(&self.shared.directory)
    }

    /// Registers a new client, whose wire format is `encodings[0]` (and
    /// `encodings[1]` the one it may switch to), under a
    /// fresh default name (`guest-N`) and, if given, puts it in `room`.
    /// Wait on [`Session::until_receivers_keep_up`] before reading from
    /// it: its arrival is news to the room.
    pub fn connect(
        &self,
        room: Option<RoomName>,
        encodings: &'static [Encoding; 2],
        meta: ClientMeta,
    ) -> Session {
        let outbox = Outbox::new(self.shared.queues.clone());
        self.connect_with(room, encodings, meta, outbox)
    }

    /// Registers a new client as [`Hub::connect`] does, whose outbox a
    /// shared writer drains ([`Outbox::shared`]: a UDP listener's peers
    /// have no task each); the writer attaches with [`Outbox::attach`].
    pub fn connect_drained(&self, encodings: &'static [Encoding; 2], meta: ClientMeta) -> Session {
        let outbox = Outbox::shared(self.shared.queues.clone());
        self.connect_with(None, encodings, meta, outbox)
    }

    fn connect_with(
        &self,
        room: Option<RoomName>,
        encodings: &'static [Encoding; 2],
        meta: ClientMeta,
        outbox: Outbox,
    ) -> Session {
        let mut directory = self.directory();
        let (id, name, keys) = loop {
            let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            // In a cluster, the node's name makes guest names unique
            // without asking anyone.
            let name = match self.node() {
                Some(node) => Name::new(&format!("guest-{n}-{node}")),
                None => Name::new(&format!("guest-{n}")),
            }
            .expect("guest names are valid");
            let keys = NameKeys::of(&name);
            // Someone may have picked this guest name (or a look-alike) with /nick.
            if !directory.name_taken(&keys, ClientId(n)) {
                break (ClientId(n), name, keys);
            }
        };
        let me = Arc::new(Member {
            id,
            name: Mutex::new(name.clone()),
            outbox,
            encodings,
            input: AtomicU32::new(0),
            unfinished: AtomicU32::new(0),
            meta,
            connected_at: unix_millis(SystemTime::now()),
            traffic: Traffic::default(),
            device: Default::default(),
            flags: Flags::default(),
            history_on_join: Default::default(),
        });
        me.traffic
            .last_activity
            .store(me.connected_at, Ordering::Relaxed);
        self.shared.counters.add(meta.kind, Field::Clients, 1);
        directory.claim(keys, &me);
        drop(directory);
        if self.node().is_some() {
            self.backplane().changed(Change::Connected {
                id,
                name: name.clone(),
            });
        }
        if let Some((reason, flush)) = lock(&self.shared.closing).clone() {
            me.outbox.close(reason, flush);
        }
        let mut session = Session::new(self.clone(), me, name);
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

    /// How many rooms there are.
    pub fn room_count(&self) -> usize {
        self.directory().rooms.len()
    }

    /// Times a sender has waited for a receiver over its soft limit.
    pub fn flow_control_pauses(&self) -> u64 {
        self.shared.pauses.load(Ordering::Relaxed)
    }

    fn paused(&self, senders: usize) {
        self.shared
            .pauses
            .fetch_add(senders as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
