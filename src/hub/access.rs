//! What clients may do, as decided outside the hub (the `auth` module, from
//! credentials), and checked by it: which rooms a client may join and send
//! to, and which names nobody may take without logging in.

use std::fmt;

use super::{Name, RoomName};

/// The rooms one client may join and send to. A client without one (no
/// credentials asked for) may go anywhere.
pub trait Access: Send + Sync + fmt::Debug {
    /// `Err` with the message for the client if it may not join `room`.
    fn may_join(&self, room: &RoomName) -> Result<(), String>;
    /// `Err` with the message for the client if it may not send to `room`.
    fn may_send(&self, room: &RoomName) -> Result<(), String>;
    /// `Err` with the message for the client if it may not send to the
    /// client `to` directly.
    fn may_direct(&self, to: &Name) -> Result<(), String>;
}

/// Names kept for the users who log in with them: nobody else may take
/// them (or a look-alike) with `/nick`.
pub trait ReservedNames: Send + Sync + fmt::Debug {
    /// Whether `name` is kept for a user.
    fn is_reserved(&self, name: &Name) -> bool;
}
