//! Who a client is, and where it may go: logins with a user name and
//! password, static tokens and JWTs, failed attempts counted per address,
//! and room permissions.
//!
//! - [`grants`]: room patterns (`team-*`) and what they allow;
//! - [`guard`]: failures per address, back-off and bans.

mod error;
pub mod grants;
pub mod guard;

pub use error::{AuthError, LoadError};
pub use grants::{Action, Forbidden, Grants, Pattern};
pub use guard::{Guard, GuardPolicy};
