//! Who a client is: the name it takes (`/nick`, a certificate's, a
//! user's) and what logging in lets it do. A name is unique under both of
//! its keys, here and, in a cluster, on every node.

use std::collections::HashSet;

use super::Session;
use crate::hub::event::Delivery;
use crate::hub::{
    lock, Access, Change, Event, HubError, Name, NameKeys, Pushed, RoomName, Unclaimed,
};

/// Where a certificate holder may go: anywhere its listener lets it (a
/// certificate names a client; it grants no rooms).
#[derive(Debug)]
struct Anywhere;

impl Access for Anywhere {
    fn may_join(&self, _: &RoomName) -> Result<(), String> {
        Ok(())
    }
    fn may_send(&self, _: &RoomName) -> Result<(), String> {
        Ok(())
    }
    fn may_direct(&self, _: &Name) -> Result<(), String> {
        Ok(())
    }
}

/// A logged-in client's credentials, as the hub checks them.
#[derive(Debug)]
pub(super) struct LoggedIn {
    pub(super) access: Box<dyn Access>,
    /// Its name is its user name, and stays.
    name_fixed: bool,
}

impl Session {
    /// Takes the name `new`, unless another client has it (or one that
    /// looks the same). Returns the old name. Everyone sharing a room with
    /// this client is told once.
    pub async fn rename(&mut self, new: Name) -> Result<Name, HubError> {
        if self.logged_in.as_ref().is_some_and(|l| l.name_fixed) {
            return Err(HubError::NameLocked(self.name.clone()));
        }
        if self.hub.is_user_name(&new) {
            return Err(HubError::UserName(new));
        }
        if self.hub.is_certified_name(&new) {
            return Err(HubError::CertificateName(new));
        }
        if let Some(prefix) = self.hub.device_prefix_of(&NameKeys::of(&new)) {
            return Err(HubError::DeviceName { name: new, prefix });
        }
        self.take_name(new).await
    }

    /// Gives the client the name its TLS client certificate proved: kept
    /// for the certificate's holders from then on (nobody else may `/nick`
    /// it), and the client's for good (it cannot `/nick` away from it).
    pub async fn take_certified_name(&mut self, name: Name) -> Result<(), HubError> {
        if self.hub.is_user_name(&name) {
            return Err(HubError::UserName(name));
        }
        if let Some(prefix) = self.hub.device_prefix_of(&NameKeys::of(&name)) {
            return Err(HubError::DeviceName { name, prefix });
        }
        self.hub.reclaim_for_certificate(&name, self.me.id);
        self.take_name(name.clone()).await?;
        self.hub.certify(&name);
        self.logged_in = Some(Box::new(LoggedIn {
            access: Box::new(Anywhere),
            name_fixed: true,
        }));
        // It proved who it is: another holder of the certificate does not
        // take the name from it.
        self.me.flags.set(super::super::Flag::LoggedIn, true);
        Ok(())
    }

    /// Logs the client in: it takes its user's `name` (kept from others,
    /// and from then on its own for good, `None`: it keeps its name) and
    /// may go only where `access` allows.
    /// `access` is kept as long as the session: whatever the caller ties
    /// to the client's lifetime (a user's place among its connections) can
    /// live in it.
    pub async fn log_in(
        &mut self,
        name: Option<Name>,
        access: Box<dyn Access>,
    ) -> Result<(), HubError> {
        let name_fixed = name.is_some();
        if let Some(name) = name {
            // A user's name passes what a chosen name passes: a JWT's
            // subject is the token issuer's to choose, and names under a
            // device template are the devices'.
            if let Some(prefix) = self.hub.device_prefix_of(&NameKeys::of(&name)) {
                return Err(HubError::DeviceName { name, prefix });
            }
            self.take_name(name).await?;
        }
        self.logged_in = Some(Box::new(LoggedIn { access, name_fixed }));
        self.me.flags.set(super::super::Flag::LoggedIn, true);
        Ok(())
    }

    pub(in crate::hub) async fn take_name(&mut self, new: Name) -> Result<Name, HubError> {
        let keys = NameKeys::of(&new);
        if keys.is_reserved() {
            return Err(HubError::NameReserved(new));
        }
        let old_keys = NameKeys::of(&self.name);
        // Guest names are the server's to give (a new client's, unique by
        // the node's name in a cluster): taking one would pose as a
        // newcomer, and hold a name the server is about to hand out.
        let guest = |key: &str| key.starts_with("guest-");
        if (guest(&keys.key) || guest(&keys.shape)) && keys.key != old_keys.key {
            return Err(HubError::GuestName(new));
        }
        let clustered = self.hub.node().is_some();
        if clustered {
            // Taken here, or known taken elsewhere: no need to ask.
            if self.hub.directory().name_taken(&keys, self.me.id) {
                return Err(HubError::NameTaken(new));
            }
            self.hub.backplane().claim(self.me.id, &new).await.map_err(
                |unclaimed| match unclaimed {
                    Unclaimed::Taken => HubError::NameTaken(new.clone()),
                    degraded => HubError::Cluster(degraded),
                },
            )?;
        }
        let mut directory = self.hub.directory();
        if directory.name_taken(&keys, self.me.id) {
            drop(directory);
            if clustered {
                self.hub.backplane().unclaim(self.me.id, &new);
            }
            return Err(HubError::NameTaken(new));
        }
        directory.release(&old_keys, self.me.id);
        directory.claim(keys, &self.me);
        *lock(&self.me.name) = new.clone();
        drop(directory);
        let old = std::mem::replace(&mut self.name, new.clone());
        if clustered {
            self.hub.backplane().changed(Change::Renamed {
                id: self.me.id,
                old: old.clone(),
                new: new.clone(),
            });
        }
        if old != new {
            self.announce_rename(&old, &new);
        }
        Ok(old)
    }

    fn announce_rename(&mut self, old: &Name, new: &Name) {
        if self.arriving() {
            return;
        }
        let limit = self.hub.shared.settings.announce_max_members;
        let delivery = Delivery::new(Event::Renamed {
            old: old.clone(),
            new: new.clone(),
        });
        let mut told = HashSet::from([self.me.id]);
        for room in &self.rooms {
            let members = room.members();
            if limit == 0 || members.len() + room.remote() > limit {
                continue;
            }
            for member in members.values() {
                if told.insert(member.id)
                    && member.deliver_counted(&delivery, &self.hub.shared.counters)
                        == Pushed::Congested
                {
                    self.congested
                        .get_or_insert_with(Box::default)
                        .push(member.clone());
                }
            }
        }
    }
}
