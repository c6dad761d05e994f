//! Why a client's connection ended ([`CloseReason`]) and why the hub
//! refused a request ([`HubError`]): each says it to the client, the log
//! and the admin in words, and to programs as a stable code.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{ClientId, Name, PatternTooLong, RoomName, Unclaimed};
use crate::throttle::Limit;

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
    /// The client's queue stayed over the soft limit for this long: it
    /// reads, but slower than its rooms talk, and was holding them back.
    TooSlow {
        /// The slow timeout.
        timeout: Duration,
    },
    /// The server was over its memory budget, and this client held the
    /// most of it.
    MemoryBudget {
        /// Bytes this client held in its queue and unfinished input.
        held: usize,
        /// The budget.
        budget: usize,
    },
    /// The client started a line and did not finish it in this long.
    LineTimeout {
        /// The line timeout.
        timeout: Duration,
    },
    /// The client sent nothing for this long.
    Idle {
        /// The idle timeout.
        timeout: Duration,
    },
    /// The server is shutting down.
    ServerShutdown,
    /// The server's admin disconnected the client, saying why.
    Kicked(Arc<str>),
    /// The listener the client came through was closed.
    ListenerClosed,
    /// The server would not serve the client as it came, saying why: e.g.
    /// its certificate names a client already connected.
    Refused(Arc<str>),
    /// The listener asks for credentials, and none came in this long.
    AuthTimeout {
        /// The auth timeout.
        timeout: Duration,
    },
    /// The client's credentials (a JWT) expired.
    CredentialsExpired,
    /// The same device connected again: this is its stale connection.
    Replaced,
    /// A device did not register (or registered wrongly) in this long.
    NotRegistered {
        /// The listener's register grace.
        grace: Duration,
    },
    /// The client sent faster than `limit` allows for the whole grace
    /// period, however much it was slowed down.
    RateLimited {
        /// The limit it kept over.
        limit: Limit,
        /// The grace period.
        grace: Duration,
    },
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
            CloseReason::SlowConsumer { .. } | CloseReason::TooSlow { .. } => "slow consumer",
            CloseReason::MemoryBudget { .. } => "memory budget",
            CloseReason::LineTimeout { .. } => "line timeout",
            CloseReason::Stalled { .. } => "stalled",
            CloseReason::Idle { .. } => "idle",
            CloseReason::ServerShutdown => "server shutdown",
            CloseReason::Kicked(_) => "kicked",
            CloseReason::ListenerClosed => "listener closed",
            CloseReason::Refused(_) => "refused",
            CloseReason::AuthTimeout { .. } => "auth timeout",
            CloseReason::CredentialsExpired => "credentials expired",
            CloseReason::Replaced => "replaced by a new connection",
            CloseReason::NotRegistered { .. } => "not registered",
            CloseReason::RateLimited { .. } => "rate limited",
        }
    }

    /// A stable machine-readable code for the reason, as metrics and the
    /// admin API show it.
    pub fn code(&self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ReadFailed(_) => "read_error",
            CloseReason::WriteFailed(_) => "write_error",
            CloseReason::SlowConsumer { .. } => "slow_consumer",
            CloseReason::Stalled { .. } => "stalled",
            CloseReason::TooSlow { .. } => "too_slow",
            CloseReason::MemoryBudget { .. } => "memory_budget",
            CloseReason::LineTimeout { .. } => "line_timeout",
            CloseReason::Idle { .. } => "idle",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::Kicked(_) => "kicked",
            CloseReason::ListenerClosed => "listener_closed",
            CloseReason::Refused(_) => "refused",
            CloseReason::AuthTimeout { .. } => "auth_timeout",
            CloseReason::CredentialsExpired => "credentials_expired",
            CloseReason::Replaced => "replaced",
            CloseReason::NotRegistered { .. } => "not_registered",
            CloseReason::RateLimited { .. } => "rate_limited",
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
                crate::units::format_duration(*timeout)
            ),
            CloseReason::TooSlow { timeout } => write!(
                f,
                "slow consumer: more than the queue soft limit waited for this client for {} on end, holding back its senders (slow timeout)",
                crate::units::format_duration(*timeout)
            ),
            CloseReason::MemoryBudget { held, budget } => write!(
                f,
                "server memory budget: the server held more than its budget of {budget} bytes for clients, and this client held the most ({held} bytes queued or unfinished) (max memory)"
            ),
            CloseReason::LineTimeout { timeout } => write!(
                f,
                "line timeout: a line was started and not finished within {} (line timeout)",
                crate::units::format_duration(*timeout)
            ),
            CloseReason::Idle { timeout } => write!(
                f,
                "idle: this client sent nothing for {} (idle timeout)",
                crate::units::format_duration(*timeout)
            ),
            CloseReason::ServerShutdown => write!(f, "server shutting down"),
            CloseReason::Kicked(why) if why.is_empty() => {
                write!(f, "kicked by the server's admin")
            }
            CloseReason::Kicked(why) => write!(f, "kicked by the server's admin: {why}"),
            CloseReason::ListenerClosed => write!(
                f,
                "the listener this client connected to was closed by the server's admin"
            ),
            CloseReason::Refused(why) => write!(f, "refused: {why}"),
            CloseReason::AuthTimeout { timeout } => write!(
                f,
                "not authenticated within {} (auth timeout): this listener needs /login USER PASSWORD or /auth TOKEN first",
                crate::units::format_duration(*timeout)
            ),
            CloseReason::CredentialsExpired => {
                write!(f, "credentials expired: your token is no longer valid; connect again with a new one")
            }
            CloseReason::Replaced => write!(
                f,
                "replaced: the same device connected again, and its new connection has its name"
            ),
            CloseReason::NotRegistered { grace } => write!(
                f,
                "not registered: no registration packet came within {} (register grace)",
                crate::units::format_duration(*grace)
            ),
            CloseReason::RateLimited { limit, grace } => write!(
                f,
                "rate limited: sent faster than {limit} for {} on end, however much it was slowed down (rate limit grace)",
                crate::units::format_duration(*grace)
            ),
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
    /// No connected client has that id.
    #[error("no client has the id {}", .0.get())]
    NoSuchClientId(ClientId),
    /// The name is kept for the server itself.
    #[error("the name {0} is reserved for the server; pick another")]
    NameReserved(Name),
    /// The name (or one that looks like it) belongs to a user who logs in.
    #[error("the name {0} belongs to a user of this server: log in as that user to use it, or pick another")]
    UserName(Name),
    /// The client logged in: its name is its user name.
    #[error("you are logged in as {0}: your name is your user name")]
    NameLocked(Name),
    /// The client's credentials do not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The name is a client certificate's.
    #[error("the name {0} belongs to the holder of a client certificate: connect with it to use it, or pick another")]
    CertificateName(Name),
    /// `guest-` names are given out by the server, to new clients.
    #[error("names starting with guest- are given out by the server to new clients; pick another")]
    GuestName(Name),
    /// The cluster could not be asked.
    #[error(transparent)]
    Cluster(Unclaimed),
    /// Names under a device listener's name template are for its devices.
    #[error("names starting with {prefix} are kept for devices; pick another")]
    DeviceName {
        /// The name asked for.
        name: Name,
        /// The fixed start it is under.
        prefix: String,
    },
    /// The device is connected with a registration that proved more (its
    /// key): one that proves less does not replace it.
    #[error("the device {0} is connected with more proof of who it is (its key from the devices file): a registration without it cannot replace that connection")]
    DeviceProved(Name),
    /// A device registers once per connection.
    #[error("this connection registered as a device already")]
    AlreadyRegistered,
    /// The room does not exist (it has no members).
    #[error("there is no room #{0}")]
    NoSuchRoom(RoomName),
    /// The client is not in that room.
    #[error("you are not in #{0}")]
    NotInRoom(RoomName),
    /// The room keeps no history.
    #[error("#{0} keeps no history: this server keeps the history of the rooms --history-rooms names, when --history is set")]
    NoHistory(RoomName),
    /// The client is in no room, so a message has nowhere to go.
    #[error("you are in no room; join one first")]
    NoRoom,
    /// A listing's pattern was too long.
    #[error(transparent)]
    BadPattern(#[from] PatternTooLong),
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
            HubError::NameTaken(_) | HubError::DeviceProved(_) => "name_taken",
            HubError::NoSuchClient(_) | HubError::NoSuchClientId(_) => "no_such_client",
            HubError::NameReserved(_)
            | HubError::UserName(_)
            | HubError::GuestName(_)
            | HubError::CertificateName(_)
            | HubError::DeviceName { .. } => "name_reserved",
            HubError::AlreadyRegistered => "already_registered",
            HubError::Cluster(_) => "cluster_degraded",
            HubError::NameLocked(_) => "name_locked",
            HubError::Forbidden(_) => "forbidden",
            HubError::NoSuchRoom(_) => "no_such_room",
            HubError::NotInRoom(_) => "not_in_room",
            HubError::NoHistory(_) => "no_history",
            HubError::NoRoom => "no_room",
            HubError::TooManyRooms { .. } => "too_many_rooms",
            HubError::BadPattern(_) => "bad_pattern",
        }
    }
}
