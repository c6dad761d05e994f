//! The seam between a server's hub and the other servers of a cluster.
//!
//! A hub on its own ([`Solo`], the default) has nothing to tell anyone. A
//! hub in a cluster is given a [`Backplane`] that carries what its clients
//! do to the other nodes: messages for rooms that have members elsewhere,
//! direct messages to clients elsewhere, and every change of a local
//! client's name and rooms, so that each node keeps a picture of the others
//! (see [`Hub::remote_change`](super::Hub::remote_change)). What arrives from
//! the other nodes comes back in through the hub's `remote_*` methods.
//!
//! The hub never waits on a backplane except to claim a name: everything
//! else is handed over and forgotten, and a backplane that cannot keep up
//! drops and counts rather than hold a client back.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::history::Kept;
use super::{Body, ClientId, DeviceProof, Name, RoomName};

/// A client connected to another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteClient {
    /// The node it is connected to.
    pub node: NodeName,
    /// Its id on that node.
    pub id: ClientId,
}

/// A node's name, unique among the live nodes of a cluster.
pub type NodeName = Arc<str>;

/// A change in where a local client is, for the other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client connected, under `name`.
    Connected {
        /// The client.
        id: ClientId,
        /// Its (guest) name.
        name: Name,
    },
    /// A client joined `room`; `first` if no other local client is in it.
    Joined {
        /// The client.
        id: ClientId,
        /// Its name.
        name: Name,
        /// The room.
        room: RoomName,
        /// No other local client was in the room.
        first: bool,
    },
    /// A client left `room`; `last` if no local client is in it now.
    Left {
        /// The client.
        id: ClientId,
        /// Its name.
        name: Name,
        /// The room.
        room: RoomName,
        /// Why, in a few words.
        reason: Arc<str>,
        /// No local client is in the room any more.
        last: bool,
    },
    /// A client took a new name (claimed through [`Backplane::claim`]).
    Renamed {
        /// The client.
        id: ClientId,
        /// The name it had.
        old: Name,
        /// The name it has.
        new: Name,
    },
    /// A client disconnected (it left its rooms first, each a [`Change::Left`]).
    Departed {
        /// The client.
        id: ClientId,
        /// Its last name.
        name: Name,
    },
}

/// Why a name could not be claimed across the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unclaimed {
    /// A client on another node holds it.
    #[error("a client on another server of the cluster has that name")]
    Taken,
    /// The cluster cannot be asked now.
    #[error("the cluster is degraded ({0}): only guest names can be given until it recovers")]
    Degraded(Arc<str>),
}

/// A future claiming a name.
pub type Claim = Pin<Box<dyn Future<Output = Result<(), Unclaimed>> + Send>>;

/// A room's history as the cluster shares it, read by
/// [`Backplane::read_history`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedHistory {
    /// The history's epoch; `None`: the cluster keeps none for the room
    /// (nothing said yet, or all of it expired or lost).
    pub epoch: Option<u64>,
    /// The sequence number the next message will get.
    pub next: u64,
    /// The newest messages it keeps, oldest first, at most as many as
    /// were asked for.
    pub kept: Vec<Kept>,
}

/// A future reading a room's shared history; the error says why the
/// cluster could not be asked.
pub type HistoryRead = Pin<Box<dyn Future<Output = Result<SharedHistory, Arc<str>>> + Send>>;

/// What the hub tells the other nodes of its cluster. Every method but
/// [`claim`](Backplane::claim) returns at once: a backplane queues, and
/// drops (and counts) what it cannot queue.
pub trait Backplane: Send + Sync + fmt::Debug {
    /// This node's name; `None` for a server on its own, where the hub
    /// calls nothing else.
    fn node(&self) -> Option<&NodeName>;

    /// Local client `from` said `bodies` in `room`, which has members on
    /// other nodes.
    fn publish(&self, room: &RoomName, from: &Name, from_id: ClientId, bodies: &[Body]);

    /// Local client `from` sent `body` to `to`, a client on another node
    /// named `to_name`.
    fn direct(
        &self,
        to: &RemoteClient,
        to_name: &Name,
        from: &Name,
        from_id: ClientId,
        body: &Body,
    );

    /// A local client's name or rooms changed.
    fn changed(&self, change: Change);

    /// Claims `name` for local client `id` on every node (it was free
    /// here). A claim that succeeds is released by the
    /// [`Change::Renamed`] or [`Change::Departed`] that follows.
    fn claim(&self, id: ClientId, name: &Name) -> Claim;

    /// Releases a claim made for `id` that was not used after all.
    fn unclaim(&self, id: ClientId, name: &Name);

    /// A device connected here under `name`, which `holder` (on another
    /// node) holds: asks that node to close `holder` if it is that
    /// device's stale connection (see [`Hub::replace_device`]).
    ///
    /// [`Hub::replace_device`]: super::Hub::replace_device
    fn replace_device(&self, holder: &RemoteClient, name: &Name, proof: DeviceProof);

    /// Names starting with `prefix` are kept for devices here: tells the
    /// other nodes to keep them too (see [`Hub::keep_device_names`]).
    ///
    /// [`Hub::keep_device_names`]: super::Hub::keep_device_names
    fn reserve_device_names(&self, prefix: &str);

    /// Whether rooms' histories live in the cluster rather than on each
    /// node: a message said in a room that keeps one is then
    /// [`append`](Backplane::append)ed, and every node (this one too)
    /// delivers it as it comes back at its position
    /// ([`Hub::kept_arrived`](super::Hub::kept_arrived)).
    fn shares_history(&self) -> bool {
        false
    }

    /// Local client `from` said `bodies` in `room`, which keeps a shared
    /// history: appended to it, then delivered by every node. Returns
    /// `false` if it could not be queued (the cluster is out of reach):
    /// the hub then delivers it here alone, unrecorded.
    fn append(&self, _room: &RoomName, _from: &Name, _from_id: ClientId, _bodies: &[Body]) -> bool {
        false
    }

    /// Reads the newest `limit` messages of `room`'s shared history,
    /// having made sure that this node hears the room's messages first,
    /// and that every message that was appended before the read has been
    /// handed to [`Hub::kept_arrived`](super::Hub::kept_arrived) before
    /// the read answers. The node keeps hearing the room until
    /// [`release_history`](Backplane::release_history).
    fn read_history(&self, _room: &RoomName, _limit: usize) -> HistoryRead {
        Box::pin(std::future::ready(Err(Arc::from(
            "this server keeps its own histories",
        ))))
    }

    /// Ends what a [`read_history`](Backplane::read_history) of `room`
    /// started: the node hears the room only while it has members there.
    fn release_history(&self, _room: &RoomName) {}
}

/// The backplane of a server on its own: there is nobody to tell.
#[derive(Debug, Default, Clone, Copy)]
pub struct Solo;

impl Backplane for Solo {
    fn node(&self) -> Option<&NodeName> {
        None
    }

    fn publish(&self, _: &RoomName, _: &Name, _: ClientId, _: &[Body]) {}

    fn direct(&self, _: &RemoteClient, _: &Name, _: &Name, _: ClientId, _: &Body) {}

    fn changed(&self, _: Change) {}

    fn claim(&self, _: ClientId, _: &Name) -> Claim {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unclaim(&self, _: ClientId, _: &Name) {}

    fn replace_device(&self, _: &RemoteClient, _: &Name, _: DeviceProof) {}

    fn reserve_device_names(&self, _: &str) {}
}
