//! How many connections each user holds, and the name each one gets.
//!
//! The policy: a user's first connection is named after the user
//! (`alice`); while it is open, the next ones are `alice-2`, `alice-3`,
//! ... up to the user's `max-connections` (each takes the lowest number
//! free, so a reconnecting client gets its old name back); one more is
//! refused with [`AuthError::TooManyConnections`]. A client holds its
//! place for as long as it keeps the [`UserConnection`], and gives it back
//! by dropping it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hub::comparison_key;

use super::users::connection_name;
use super::AuthError;

/// The connections users hold, across every listener. One per server,
/// kept across reloads of the credentials.
#[derive(Debug, Default)]
pub struct Connections {
    /// By the [`comparison_key`] of the user's name: which numbers are
    /// taken (`true`), from 1.
    held: Mutex<HashMap<String, Vec<bool>>>,
}

impl Connections {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Vec<bool>>> {
        crate::sync::lock(&self.held)
    }

    /// Takes a place for a connection of `user`, who may hold `max` at
    /// once: the lowest number free, and the name that goes with it.
    pub fn claim(self: &Arc<Self>, user: &str, max: u32) -> Result<UserConnection, AuthError> {
        let key = comparison_key(user);
        let mut held = self.held();
        let slots = held.entry(key.clone()).or_default();
        let open = slots.iter().filter(|taken| **taken).count();
        if open >= max as usize {
            return Err(AuthError::TooManyConnections {
                user: user.to_owned(),
                max,
            });
        }
        // Fewer than `max` open, so one of the first `max` numbers is free
        // (even if the limit went down in a reload while some were open).
        let index = slots.iter().position(|taken| !taken).unwrap_or(slots.len());
        if index == slots.len() {
            slots.push(false);
        }
        slots[index] = true;
        let number = index as u32 + 1;
        Ok(UserConnection {
            connections: Arc::clone(self),
            key,
            number,
            name: connection_name(user, number),
        })
    }

    /// How many connections `user` holds now.
    pub fn count(&self, user: &str) -> usize {
        self.held()
            .get(&comparison_key(user))
            .map_or(0, |slots| slots.iter().filter(|taken| **taken).count())
    }

    /// Whether a user of this name (compared as the hub compares names)
    /// holds any connection now.
    pub fn is_connected(&self, user: &str) -> bool {
        self.count(user) > 0
    }

    /// Whether a user whose name has this [`comparison_key`] holds any
    /// connection now.
    pub(crate) fn is_connected_key(&self, key: &str) -> bool {
        self.held()
            .get(key)
            .is_some_and(|slots| slots.iter().any(|taken| *taken))
    }

    fn release(&self, key: &str, number: u32) {
        let mut held = self.held();
        if let Some(slots) = held.get_mut(key) {
            if let Some(slot) = slots.get_mut(number as usize - 1) {
                *slot = false;
            }
            while slots.last() == Some(&false) {
                slots.pop();
            }
            if slots.is_empty() {
                held.remove(key);
            }
        }
    }
}

/// One connection's place among its user's connections. Dropping it
/// frees the place (and the name) for the user's next connection.
#[derive(Debug)]
pub struct UserConnection {
    connections: Arc<Connections>,
    key: String,
    number: u32,
    name: String,
}

impl UserConnection {
    /// The name this connection goes by: the user's own for the first,
    /// `USER-N` for the `N`th open at once.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which of the user's connections this is, from 1.
    pub fn number(&self) -> u32 {
        self.number
    }
}

impl Drop for UserConnection {
    fn drop(&mut self) {
        self.connections.release(&self.key, self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_has_the_users_name_and_the_next_ones_a_number() {
        let connections = Arc::new(Connections::default());
        let first = connections.claim("alice", 3).unwrap();
        let second = connections.claim("alice", 3).unwrap();
        let third = connections.claim("Alice", 3).unwrap();
        assert_eq!(first.name(), "alice");
        assert_eq!(second.name(), "alice-2");
        assert_eq!(third.name(), "Alice-3");
        assert_eq!(connections.count("alice"), 3);
    }

    #[test]
    fn one_more_than_allowed_is_refused() {
        let connections = Arc::new(Connections::default());
        let _only = connections.claim("alice", 1).unwrap();
        assert_eq!(
            connections.claim("alice", 1).unwrap_err(),
            AuthError::TooManyConnections {
                user: "alice".into(),
                max: 1
            }
        );
        let _bob = connections
            .claim("bob", 1)
            .expect("other users are not counted");
    }

    #[test]
    fn a_closed_connection_frees_its_place_and_name() {
        let connections = Arc::new(Connections::default());
        let first = connections.claim("alice", 2).unwrap();
        let second = connections.claim("alice", 2).unwrap();
        drop(first);
        let again = connections.claim("alice", 2).unwrap();
        assert_eq!(again.name(), "alice", "the lowest number free");
        drop(second);
        drop(again);
        assert!(!connections.is_connected("alice"));
        assert!(connections.held().is_empty(), "nothing left behind");
    }

    #[test]
    fn a_lowered_limit_counts_the_connections_already_open() {
        let connections = Arc::new(Connections::default());
        let first = connections.claim("alice", 3).unwrap();
        let _second = connections.claim("alice", 3).unwrap();
        let _third = connections.claim("alice", 3).unwrap();
        drop(first);
        // Reloaded with max-connections = 2 while alice-2 and alice-3 are
        // open: no more until one closes.
        assert!(connections.claim("alice", 2).is_err());
        assert_eq!(connections.claim("alice", 3).unwrap().name(), "alice");
    }
}
