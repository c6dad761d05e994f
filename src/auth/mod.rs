//! Who a client is, and where it may go: logins with a user name and
//! password, static tokens and JWTs, failed attempts counted per address,
//! and room permissions.
//!
//! - [`users`]: the users file (`--users FILE`), TOML, argon2id hashes;
//! - [`password`]: hashing and checking passwords, a few at a time;
//! - [`tokens`]: static tokens (`--token`, `--token-file`) and JWTs;
//! - [`grants`]: room patterns (`team-*`) and what they allow;
//! - [`guard`]: failures per address, back-off and bans.

mod error;
pub mod grants;
pub mod guard;
pub mod password;
pub mod tokens;
pub mod users;

pub use error::{AuthError, LoadError};
pub use grants::{Action, Forbidden, Grants, Pattern};
pub use guard::{Guard, GuardPolicy};
pub use password::Verifier;
pub use tokens::{JwtVerifier, StaticTokens};
pub use users::{User, Users, DEFAULT_MAX_CONNECTIONS};
