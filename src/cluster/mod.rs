//! Several servers as one relay, joined through Redis.
//!
//! Each server (a *node*) keeps its own clients and hub; a [`Cluster`]
//! is the hub's [`Backplane`](crate::hub::Backplane) to the others. What
//! crosses between nodes, and how (the design is in docs/cluster.md):
//!
//! - a room's messages, on one Redis channel per room, which a node
//!   subscribes to while it has a member there and publishes to only while
//!   another node has one: each message is published once, and each node
//!   fans it out to its own members;
//! - direct messages, on one inbox channel per node;
//! - every change of a client's name and rooms, on one `events` channel,
//!   written beside it into the node's picture of itself in Redis, so that
//!   a node that missed some reads the picture again;
//! - names, claimed atomically in Redis; each node holds a lease, renewed
//!   every third of its length, and a name whose holder's node has lost
//!   its lease is free.
//!
//! Every frame carries its node, that node's boot epoch and a sequence
//! number per channel: a receiver counts what it missed and tells the room.
//! Nothing here waits on a client, and no client waits on Redis except to
//! claim a name.

mod backplane;
mod frame;
mod inbound;
mod keys;
mod lease;
mod node;
mod publish;
mod received;

pub use node::{Cluster, ClusterError, ClusterStatus, NodeStatus};

use std::time::Duration;

/// How a server joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis to meet in: `redis://[:PASSWORD@]HOST:PORT[/DB]` or
    /// `rediss://` for TLS.
    pub url: String,
    /// What every key and channel name starts with, so that several
    /// clusters (or other programs) can share one Redis.
    pub prefix: String,
    /// This node's name, unique among the live nodes; part of its guests'
    /// names (`guest-7-NODE`).
    pub node: String,
    /// How long a node that stops renewing its lease (it crashed, or lost
    /// Redis) keeps its names: after this, the others free them and
    /// announce its clients gone.
    pub lease: Duration,
    /// Most cross-node sends waiting for Redis at once: past it, sends are
    /// dropped and counted, so a slow Redis never holds a client back.
    pub max_pending: usize,
    /// The CA (PEM file) that signed a `rediss://` Redis's certificate,
    /// when it is not one of the system's roots.
    pub ca: Option<std::path::PathBuf>,
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "sb:";
/// The default lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
/// The default bound on sends waiting for Redis.
pub const DEFAULT_MAX_PENDING: usize = 65_536;
/// Longest node name: it is part of guest names, which are names.
pub const MAX_NODE_NAME: usize = 12;

/// Checks a node name: 1 to [`MAX_NODE_NAME`] ASCII letters, digits and
/// `-`, so that `guest-N-NODE` is a valid client name.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NODE_NAME {
        return Err(format!(
            "a node name has 1 to {MAX_NODE_NAME} characters; {name:?} has {}",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!(
            "a node name may hold ASCII letters, digits and '-', not {bad:?}"
        ));
    }
    Ok(())
}

/// A node name nobody else is likely to have: six random letters and
/// digits, for a node started without `--node-name`.
pub fn random_node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let mut bits = hasher.finish();
    (0..6)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}
