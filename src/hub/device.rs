//! Registered devices, as the hub keeps them: a device's identity and
//! heartbeats, the names kept for devices, and a device that connects
//! again taking its name over from its stale connection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::SystemTime;

use super::backplane::RemoteClient;
use super::info::unix_millis;
use super::names::{comparison_key, shape_key};
use super::{ClientId, CloseReason, Hub, HubError, Name, NameKeys, Session};

/// How often, and how far apart, a device's name is claimed again in a
/// cluster while its stale connection's claim is being released: a Redis
/// round trip takes well under the second this allows.
const CLUSTER_HANDOVER_TRIES: u32 = 50;
/// The same, when the stale connection is on another node: that node
/// hears the request, closes it and releases its claim, and this one hears
/// of it, a few Redis round trips; 3 s allows for a busy cluster.
const REMOTE_HANDOVER_TRIES: u32 = 150;
const CLUSTER_HANDOVER_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// How long a device's new connection waits for its stale one to leave its
/// rooms, so that they hear the departure before the arrival: a stale
/// connection departs as soon as its goodbye is handed to the kernel, a few
/// milliseconds. One whose socket buffer is full may take until its stall
/// timeout; the new connection does not wait for that.
const STALE_DEPARTURE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
const STALE_DEPARTURE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// How much a device's registration proved of who it is. A registration
/// may replace a connection of the same device (its stale one) only if it
/// proved at least as much: an open listener's `register=imei` must not
/// take over a device that registered with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceProof {
    /// Its registration alone, on a listener without `auth=required`.
    Open,
    /// Its identity is in the devices file, which gives it no key.
    Listed,
    /// Its identity and its key, from the devices file.
    Keyed,
}

impl DeviceProof {
    /// As a byte, for the cluster's frames.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// From a byte of a cluster frame; anything unknown is the least.
    pub fn from_u8(byte: u8) -> DeviceProof {
        match byte {
            2 => DeviceProof::Keyed,
            1 => DeviceProof::Listed,
            _ => DeviceProof::Open,
        }
    }
}

/// What the hub knows of a registered device: 56 bytes, a 64-byte block
/// of jemalloc's in every registered device's record (80 while its id and
/// label were two strings and its counts 64 bits).
#[derive(Debug)]
pub(super) struct DeviceState {
    /// Its identity (an IMEI, a MAC, ...), as its registration gave it,
    /// then what the devices file calls it, if it says: one allocation.
    text: Box<str>,
    /// Where its identity ends in `text`.
    id_len: u32,
    /// Whether `text` holds a label after its identity.
    labelled: bool,
    /// What its registration proved.
    pub(super) proof: DeviceProof,
    /// When it registered, in Unix milliseconds.
    pub(super) registered_at: u64,
    /// When it last sent a heartbeat; 0: never.
    pub(super) last_heartbeat: AtomicU64,
    /// When it last sent data (not a heartbeat); 0: never.
    pub(super) last_data: AtomicU64,
    /// Heartbeats it sent (32 bits: one a second for 136 years).
    pub(super) heartbeats: AtomicU32,
    /// Frames it sent that failed their Modbus CRC.
    pub(super) bad_frames: AtomicU32,
}

/// A registered device, as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its identity.
    pub id: String,
    /// What the devices file calls it, if it says.
    pub label: Option<String>,
    /// When it registered.
    pub registered_at: SystemTime,
    /// When it last sent a heartbeat, if it has.
    pub last_heartbeat: Option<SystemTime>,
    /// When it last sent data, if it has.
    pub last_data: Option<SystemTime>,
    /// Heartbeats it sent.
    pub heartbeats: u64,
    /// Frames it sent that failed their Modbus CRC (`modbus=rtu`).
    pub bad_frames: u64,
}

impl DeviceState {
    /// A device registered as `id` (`label`: what the devices file calls
    /// it) at `now` (Unix milliseconds), having proved `proof`.
    fn new(id: &str, label: Option<&str>, proof: DeviceProof, now: u64) -> Self {
        DeviceState {
            text: [id, label.unwrap_or_default()].concat().into(),
            id_len: u32::try_from(id.len()).expect("a registration is shorter than 4 GiB"),
            labelled: label.is_some(),
            proof,
            registered_at: now,
            last_heartbeat: AtomicU64::new(0),
            last_data: AtomicU64::new(0),
            heartbeats: AtomicU32::new(0),
            bad_frames: AtomicU32::new(0),
        }
    }

    /// Its identity.
    fn id(&self) -> &str {
        &self.text[..self.id_len as usize]
    }

    /// What the devices file calls it, if it says.
    fn label(&self) -> Option<&str> {
        self.labelled.then(|| &self.text[self.id_len as usize..])
    }

    pub(super) fn info(&self) -> DeviceInfo {
        let at = |millis: u64| {
            (millis > 0).then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(millis))
        };
        DeviceInfo {
            id: self.id().to_owned(),
            label: self.label().map(str::to_owned),
            registered_at: at(self.registered_at).unwrap_or(SystemTime::UNIX_EPOCH),
            last_heartbeat: at(self.last_heartbeat.load(Ordering::Relaxed)),
            last_data: at(self.last_data.load(Ordering::Relaxed)),
            heartbeats: self.heartbeats.load(Ordering::Relaxed).into(),
            bad_frames: self.bad_frames.load(Ordering::Relaxed).into(),
        }
    }
}

/// The fixed starts of device names (`dev-` of `dev-{id}`), in both
/// comparison forms: no client but a device may take a name under one.
#[derive(Debug, Default)]
pub(super) struct DevicePrefixes(RwLock<Vec<(String, String)>>);

/// Most prefixes kept: each is a comparison on every claim of a name, and
/// a cluster's set of them is read from Redis.
const MAX_DEVICE_PREFIXES: usize = 64;

impl DevicePrefixes {
    fn add(&self, prefix: &str) {
        // An empty prefix would keep every name; a template's fixed part
        // is never empty, nor longer than a name.
        if prefix.is_empty() || prefix.chars().count() > super::names::MAX_NAME_CHARS {
            return;
        }
        let keys = (comparison_key(prefix), shape_key(prefix));
        if crate::sync::read(&self.0).contains(&keys) {
            return;
        }
        let mut prefixes = crate::sync::write(&self.0);
        if prefixes.len() >= MAX_DEVICE_PREFIXES {
            tracing::warn!(
                prefix,
                "too many device name templates: names under this one are not kept for devices"
            );
            return;
        }
        if !prefixes.contains(&keys) {
            prefixes.push(keys);
        }
    }

    fn holds(&self, name: &NameKeys) -> Option<String> {
        let prefixes = crate::sync::read(&self.0);
        prefixes
            .iter()
            .find(|(key, shape)| {
                name.key.starts_with(key.as_str()) || name.shape.starts_with(shape.as_str())
            })
            .map(|(key, _)| key.clone())
    }
}

impl Hub {
    /// Keeps names starting with `prefix` for devices (that of a device
    /// listener's name template): other clients cannot take them, so
    /// nobody can wait under a device's name for its traffic.
    ///
    /// In a cluster, the other nodes keep them too, once they hear of it.
    pub fn reserve_device_names(&self, prefix: &str) {
        self.shared.device_prefixes.add(prefix);
        self.backplane().reserve_device_names(prefix);
    }

    /// Keeps names starting with each of `prefixes` for devices, as other
    /// nodes of the cluster do (their device listeners' templates).
    pub fn keep_device_names(&self, prefixes: &[String]) {
        for prefix in prefixes {
            self.shared.device_prefixes.add(prefix);
        }
    }

    /// Another node asks: a device connected to it under `name`, which
    /// local client `id` holds, so `id` is that device's stale connection.
    /// If `id` is indeed a device of that name, whose registration proved
    /// no more than the new one's (`proof`), it is closed (replaced) and
    /// its name released here and in the cluster; returns whether it was.
    pub fn replace_device(&self, id: ClientId, name: &Name, proof: DeviceProof) -> bool {
        let keys = NameKeys::of(name);
        let stale = {
            let mut directory = self.directory();
            let holder = directory
                .by_name
                .get(&keys.key)
                .cloned()
                .filter(|m| m.id == id && m.device.get().is_some_and(|d| d.proof <= proof));
            let Some(holder) = holder else {
                return false;
            };
            holder.outbox.close(CloseReason::Replaced, true);
            directory.release(&keys, holder.id);
            holder.id
        };
        self.backplane().unclaim(stale, name);
        true
    }

    /// The prefix kept for devices that `name` is under, if any.
    pub(super) fn device_prefix_of(&self, name: &NameKeys) -> Option<String> {
        self.shared.device_prefixes.holds(name)
    }
}

impl Session {
    /// Switches this client to its wire format's alternative, or back: a
    /// text client's hex display (`/hex on`), for people debugging
    /// devices. What is queued already stays as it was.
    pub fn use_alternate_encoding(&self, on: bool) {
        self.me.flags.set(super::Flag::Alternate, on);
    }

    /// Whether this client registered as a device.
    pub fn is_device(&self) -> bool {
        self.me.device.get().is_some()
    }

    /// Registers this client as the device `id` (`label`: what the
    /// devices file calls it), named `name`, its registration having
    /// proved `proof`. A device already connected under that name is this
    /// one's stale connection (the link dropped, the device connected
    /// again): it is disconnected, and this one takes the name. Returns the
    /// stale connection's id.
    ///
    /// A name held by a client that is not a device, or by a device whose
    /// registration proved more (a key), is not taken over.
    pub async fn register_device(
        &mut self,
        id: &str,
        label: Option<&str>,
        name: Name,
        proof: DeviceProof,
    ) -> Result<Option<ClientId>, HubError> {
        if self.is_device() {
            return Err(HubError::AlreadyRegistered);
        }
        let keys = NameKeys::of(&name);
        let (stale, elsewhere) = {
            let mut directory = self.hub.directory();
            let holder = directory
                .by_name
                .get(&keys.key)
                .cloned()
                .filter(|m| m.id != self.me.id);
            match holder {
                Some(holder) if holder.device.get().is_some_and(|d| d.proof <= proof) => {
                    holder.outbox.close(CloseReason::Replaced, true);
                    directory.release(&keys, holder.id);
                    (Some(holder), None)
                }
                Some(holder) if holder.device.get().is_some() => {
                    return Err(HubError::DeviceProved(name))
                }
                Some(_) => return Err(HubError::NameTaken(name)),
                // Held on another node: if it is a device there, it is this
                // one's stale connection, and that node is asked to close
                // it. Meanwhile it is out of this node's picture, so that
                // the claim below is not refused on its account.
                None => match directory.remote.by_name.get(&keys.key).cloned() {
                    Some(remote) if self.hub.node().is_some() => {
                        directory.remote.remove_name(&name, &remote);
                        (None, Some(remote))
                    }
                    _ => (None, None),
                },
            }
        };
        if let Some(stale) = &stale {
            tracing::info!(%name, client = %self.me.id, stale = %stale.id, "a device connected again: its stale connection is closed");
        }
        if let Some(stale) = stale.as_ref().filter(|_| self.hub.node().is_some()) {
            // In a cluster the stale connection's claim is Redis's too:
            // released on its behalf, then claimed for this one. The
            // release runs beside the claim, so the claim is tried again
            // for a moment.
            self.hub.backplane().unclaim(stale.id, &name);
            self.claim_handed_over(&name, CLUSTER_HANDOVER_TRIES)
                .await?;
        } else if let Some(remote) = elsewhere {
            self.replace_elsewhere(&name, remote, proof).await?;
        } else {
            match self.take_name(name.clone()).await {
                // Claimed in Redis by a connection whose news has not come
                // yet: once it has, that node is asked as above.
                Err(HubError::NameTaken(_)) if self.hub.node().is_some() => {
                    let remote = self
                        .news_of_holder(&name)
                        .await
                        .ok_or_else(|| HubError::NameTaken(name.clone()))?;
                    self.replace_elsewhere(&name, remote, proof).await?;
                }
                result => {
                    result?;
                }
            }
        }
        let now = unix_millis(SystemTime::now());
        let _ = self
            .me
            .device
            .set(Box::new(DeviceState::new(id, label, proof, now)));
        let Some(stale) = stale else {
            return Ok(None);
        };
        // Its rooms hear "left (replaced)" before this one joins them: an
        // app that follows presence by those notices ends with the device
        // online.
        let give_up = tokio::time::Instant::now() + STALE_DEPARTURE_WAIT;
        while !stale.flags.get(super::Flag::Departed) && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(STALE_DEPARTURE_POLL).await;
        }
        Ok(Some(stale.id))
    }

    /// Asks the node of `remote`, which holds `name` (and is out of this
    /// node's picture already), to close it, and takes `name` once it has.
    async fn replace_elsewhere(
        &mut self,
        name: &Name,
        remote: RemoteClient,
        proof: DeviceProof,
    ) -> Result<(), HubError> {
        tracing::info!(%name, node = %remote.node, "a device connected again here while its stale connection is on another node: asked that node to close it");
        self.hub.backplane().replace_device(&remote, name, proof);
        if let Err(error) = self.claim_handed_over(name, REMOTE_HANDOVER_TRIES).await {
            // The other node did not let it go: it holds the name still.
            self.hub.directory().remote.add_name(name, &remote);
            return Err(error);
        }
        Ok(())
    }

    /// Waits, for as long as a handover may take, until this node hears
    /// which client of another node holds `name`; takes it out of this
    /// node's picture then.
    async fn news_of_holder(&self, name: &Name) -> Option<RemoteClient> {
        let key = name.key();
        for _ in 0..CLUSTER_HANDOVER_TRIES {
            {
                let mut directory = self.hub.directory();
                if let Some(remote) = directory.remote.by_name.get(&key).cloned() {
                    directory.remote.remove_name(name, &remote);
                    return Some(remote);
                }
            }
            tokio::time::sleep(CLUSTER_HANDOVER_PAUSE).await;
        }
        None
    }

    /// Takes `name` while its stale holder's claim is being released,
    /// trying again `tries` times, [`CLUSTER_HANDOVER_PAUSE`] apart.
    async fn claim_handed_over(&mut self, name: &Name, tries: u32) -> Result<(), HubError> {
        let mut tried = 0;
        loop {
            match self.take_name(name.clone()).await {
                Err(HubError::NameTaken(_)) if tried < tries => {
                    tried += 1;
                    tokio::time::sleep(CLUSTER_HANDOVER_PAUSE).await;
                }
                result => return result.map(drop),
            }
        }
    }

    /// Records a heartbeat: the device is alive, and said nothing.
    pub fn heartbeat(&self) {
        if let Some(device) = self.me.device.get() {
            device.heartbeats.fetch_add(1, Ordering::Relaxed);
            device
                .last_heartbeat
                .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
        }
    }

    /// Records that a device sent a Modbus frame that failed its CRC.
    pub fn bad_frame(&self) {
        if let Some(device) = self.me.device.get() {
            device.bad_frames.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that a device sent data.
    pub(super) fn device_sent(&self) {
        if let Some(device) = self.me.device.get() {
            device
                .last_data
                .store(unix_millis(SystemTime::now()), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device's identity and label share one allocation, and a record
    /// in a 64-byte block: each reads back as it was given, an empty label
    /// too.
    #[test]
    fn a_devices_identity_and_label_read_back_from_one_string() {
        let size = std::mem::size_of::<DeviceState>();
        println!("a device's registration: {size} bytes");
        assert!(size <= 56, "DeviceState is {size} bytes");
        for (id, label) in [
            ("861234567890123", Some("pump house 3")),
            ("861234567890123", None),
            ("AA:BB:CC:DD:EE:FF", Some("")),
            ("小明-1", Some("泵")),
        ] {
            let device = DeviceState::new(id, label, DeviceProof::Open, 1);
            assert_eq!((device.id(), device.label()), (id, label));
            let info = device.info();
            assert_eq!((info.id.as_str(), info.label.as_deref()), (id, label));
        }
    }
}
