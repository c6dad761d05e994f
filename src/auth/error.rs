//! What goes wrong: a client's attempt to authenticate ([`AuthError`],
//! worded to be shown to that client) and the server's loading of its
//! credentials ([`LoadError`], worded for the operator).

use std::path::PathBuf;
use std::time::Duration;

/// Why a client was not let in, or is let go. The message (its `Display`)
/// is meant to be sent to the client as it is: it never holds the
/// password or token tried, and it never tells whether a user exists (an
/// unknown user and a wrong password are both [`AuthError::BadCredentials`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The user does not exist, or the password is wrong: deliberately
    /// the same answer.
    #[error("wrong user name or password")]
    BadCredentials,
    /// The token is not one the server accepts (unknown static token, or
    /// a JWT that is malformed, badly signed or for another audience).
    #[error("invalid token")]
    BadToken,
    /// The JWT's `exp` has passed: at login, or later on a connection
    /// that logged in with it (the connection is then closed).
    #[error("the token has expired")]
    TokenExpired,
    /// The JWT's `nbf` has not come yet.
    #[error("the token is not valid yet")]
    TokenNotYetValid,
    /// The server accepts no credentials of this kind (e.g. `/login`
    /// without a users file).
    #[error("{0}")]
    MethodNotEnabled(&'static str),
    /// Too many recent failures from this address: this attempt comes
    /// before the back-off is over and was not tried.
    #[error("too many failed attempts from your address: try again in {} s", whole_seconds(*retry_in))]
    Throttled {
        /// When the next attempt may come.
        retry_in: Duration,
    },
    /// Far too many failures from this address: it is refused for a while.
    #[error("too many failed attempts from your address: refused for {} s", whole_seconds(*retry_in))]
    Banned {
        /// How long the address is still refused.
        retry_in: Duration,
    },
    /// The user already has as many connections as its entry allows.
    #[error("{user} already has {max} connection{} open, the most allowed", if *max == 1 { "" } else { "s" })]
    TooManyConnections {
        /// The user.
        user: String,
        /// Its `max-connections`.
        max: u32,
    },
    /// A device registered with an identity the devices file does not
    /// list, or without the key its entry has: deliberately the same
    /// answer.
    #[error("this device is not in the server's devices list, or its key is wrong")]
    UnknownDevice,
    /// A device listener asks for authentication, and no devices file is
    /// configured (a reload took it away).
    #[error("this server has no devices list: no device may register")]
    NoDevicesList,
    /// The credentials could not be checked (the server is shutting down).
    #[error("the server could not check the credentials; try again")]
    Unavailable,
}

impl AuthError {
    /// A short, stable name for the error, for protocols that carry one
    /// apart from the message (e.g. a JSON `"code"`).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::BadCredentials => "bad_credentials",
            AuthError::BadToken => "bad_token",
            AuthError::TokenExpired => "token_expired",
            AuthError::TokenNotYetValid => "token_not_yet_valid",
            AuthError::MethodNotEnabled(_) => "method_not_enabled",
            AuthError::Throttled { .. } => "throttled",
            AuthError::Banned { .. } => "banned",
            AuthError::TooManyConnections { .. } => "too_many_connections",
            AuthError::UnknownDevice => "unknown_device",
            AuthError::NoDevicesList => "no_devices_list",
            AuthError::Unavailable => "unavailable",
        }
    }

    /// How long the client should wait before trying again, when waiting
    /// helps.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            AuthError::Throttled { retry_in } | AuthError::Banned { retry_in } => Some(*retry_in),
            _ => None,
        }
    }
}

/// A duration in whole seconds, rounded up so "0 s" is never shown for a
/// wait that is not over.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Why the credentials could not be loaded. Names the file (or flag), and
/// for the users file the user and the field, so the operator can go
/// straight to the mistake; never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        /// "users file", "token file", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The users file is not valid TOML, or not shaped as documented.
    #[error("{what} {}: {message}", path.display())]
    Syntax {
        /// "users file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line where it has one.
        message: String,
    },
    /// One user's entry is wrong.
    #[error("users file {}: user {user:?}: {field}: {message}", path.display())]
    User {
        /// The file.
        path: PathBuf,
        /// The user (the name as written in the file).
        user: String,
        /// The field (`password`, `join`, `send`, `max-connections`, or
        /// `name` for the user name itself).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A line of the devices file is wrong.
    #[error("devices file {}, line {line}: {message}", path.display())]
    Device {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A static token is unusable (given on the command line or in a file).
    #[error("{source_name}: {message}")]
    Token {
        /// Where it came from: `--token #2`, or `token file F, line 3`.
        source_name: String,
        /// What is wrong (never the token itself).
        message: String,
    },
    /// The JWT key or secret is unusable.
    #[error("{source_name}: {message}")]
    Jwt {
        /// Where it came from: `--jwt-secret`, or the key file.
        source_name: String,
        /// What is wrong (never the secret itself).
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_shown_in_whole_seconds_rounded_up() {
        let throttled = AuthError::Throttled {
            retry_in: Duration::from_millis(1_200),
        };
        assert_eq!(
            throttled.to_string(),
            "too many failed attempts from your address: try again in 2 s"
        );
        assert_eq!(throttled.retry_in(), Some(Duration::from_millis(1_200)));
        let banned = AuthError::Banned {
            retry_in: Duration::from_secs(600),
        };
        assert_eq!(
            banned.to_string(),
            "too many failed attempts from your address: refused for 600 s"
        );
    }

    #[test]
    fn refusals_read_well() {
        let one = AuthError::TooManyConnections {
            user: "alice".into(),
            max: 1,
        };
        assert_eq!(
            one.to_string(),
            "alice already has 1 connection open, the most allowed"
        );
        let two = AuthError::TooManyConnections {
            user: "alice".into(),
            max: 2,
        };
        assert!(two.to_string().contains("2 connections"));
        assert_eq!(two.code(), "too_many_connections");
    }
}
