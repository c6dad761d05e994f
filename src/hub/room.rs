//! A room: its members, and delivery to all of them at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::event::Delivery;
use super::{ClientId, Member, Pushed, RoomName};

/// A room and its members. The member list is read-locked for each
/// message (written only on join and leave), so senders to one room never
/// wait on each other.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) name: RoomName,
    members: RwLock<HashMap<ClientId, Arc<Member>>>,
}

impl Room {
    pub(super) fn new(name: RoomName) -> Self {
        Room {
            name,
            members: RwLock::default(),
        }
    }

    pub(super) fn members(&self) -> RwLockReadGuard<'_, HashMap<ClientId, Arc<Member>>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn members_mut(&self) -> RwLockWriteGuard<'_, HashMap<ClientId, Arc<Member>>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `delivery` for every member but `except`, each in its own
    /// wire format; adds the members whose queues are now congested to
    /// `congested`.
    pub(super) fn broadcast(
        &self,
        delivery: &Delivery,
        except: ClientId,
        congested: &mut Vec<Arc<Member>>,
    ) {
        for (id, member) in self.members().iter() {
            if *id != except && member.deliver(delivery) == Pushed::Congested {
                congested.push(member.clone());
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.members().len()
    }
}
