//! Client names and room names: what is allowed, and why.

use std::fmt;
use std::sync::Arc;

/// Longest client or room name, in characters (not bytes), so a name fits
/// comfortably on one line of a terminal next to the message it labels.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a proposed name or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("a {0} cannot be empty")]
    Empty(&'static str),
    /// The name had more than [`MAX_NAME_CHARS`] characters.
    #[error("a {what} can have at most {MAX_NAME_CHARS} characters, this one has {len}")]
    TooLong {
        /// "name" or "room name".
        what: &'static str,
        /// How many characters it had.
        len: usize,
    },
    /// The name held a character outside letters, digits, `-`, `_` and `.`.
    #[error("a {what} may hold letters (any script), digits, '-', '_' and '.', not {found:?}")]
    BadChar {
        /// "name" or "room name".
        what: &'static str,
        /// The first character refused.
        found: char,
    },
    /// The name was not valid UTF-8.
    #[error("a {0} must be valid UTF-8")]
    NotUtf8(&'static str),
}

/// Checks the rules shared by client names and room names: 1 to
/// [`MAX_NAME_CHARS`] characters, each a letter or digit of any script
/// (so `小明` and `José` are fine) or one of `-`, `_`, `.`. Spaces, `:`,
/// `[`, `]` and control characters are refused because the text protocol
/// uses them to frame a message line.
fn validate(raw: &str, what: &'static str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty(what));
    }
    let len = raw.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(NameError::TooLong { what, len });
    }
    if let Some(found) = raw
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(NameError::BadChar { what, found });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal, lower_case: $lower:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// Checks `raw` against the naming rules and wraps it.
            pub fn new(raw: &str) -> Result<Self, NameError> {
                validate(raw, $what)?;
                if $lower {
                    Ok(Self(Arc::from(raw.to_lowercase())))
                } else {
                    Ok(Self(Arc::from(raw)))
                }
            }

            /// Like [`Self::new`], for bytes straight off the wire.
            pub fn from_bytes(raw: &[u8]) -> Result<Self, NameError> {
                let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8($what))?;
                Self::new(raw)
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The key under which the name is unique: case does not count,
            /// so `Alice` cannot pose as `alice`. Shares the name's own
            /// text when it is lower case already, as most names are.
            pub fn key(&self) -> Arc<str> {
                if self.0.chars().any(char::is_uppercase) {
                    Arc::from(self.0.to_lowercase())
                } else {
                    self.0.clone()
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A client's name, unique on the server (ignoring case), e.g. `guest-7` or `小明`.
    Name,
    "name",
    lower_case: false
);

name_type!(
    /// A room's name, e.g. `lobby`. Protocols may show it as `#lobby`; a
    /// leading `#` typed by a user is not part of the name. Room names are
    /// not case-sensitive: they are kept in lower case.
    RoomName,
    "room name",
    lower_case: true
);

impl RoomName {
    /// The room every client starts in unless its listener says otherwise.
    pub fn lobby() -> Self {
        Self(Arc::from("lobby"))
    }

    /// Parses a room name as a user types it: `#lobby` and `lobby` are the same room.
    /// Case does not matter: the name is kept in lower case.
    pub fn parse_user(raw: &[u8]) -> Result<Self, NameError> {
        let raw = raw.strip_prefix(b"#").unwrap_or(raw);
        let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8("room name"))?;
        Self::new(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_script_are_accepted() {
        for ok in ["alice", "guest-7", "小明", "José", "a.b_c-d", "ü"] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_that_would_break_a_message_line_are_refused() {
        assert_eq!(Name::new(""), Err(NameError::Empty("name")));
        assert!(matches!(
            Name::new("a b"),
            Err(NameError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            Name::new("a:b"),
            Err(NameError::BadChar { found: ':', .. })
        ));
        assert!(matches!(
            Name::new(&"x".repeat(33)),
            Err(NameError::TooLong { len: 33, .. })
        ));
        assert!(Name::new(&"名".repeat(32)).is_ok());
        assert_eq!(Name::from_bytes(b"\xff"), Err(NameError::NotUtf8("name")));
    }

    #[test]
    fn case_does_not_make_a_name_unique() {
        assert_eq!(
            Name::new("Alice").unwrap().key(),
            Name::new("alice").unwrap().key()
        );
    }

    #[test]
    fn a_leading_hash_or_capitals_name_the_same_room() {
        assert_eq!(RoomName::parse_user(b"#lobby").unwrap(), RoomName::lobby());
        assert_eq!(RoomName::parse_user(b"Lobby").unwrap(), RoomName::lobby());
    }
}
