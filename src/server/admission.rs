//! Admission: whether a connection becomes a client, the same for every
//! transport (TCP, TLS, PROXY, the HTTP listener and its `/ws` clients).
//!
//! The steps, in this order, each refusing with a reason for the client
//! and the log:
//!
//! 1. the server-wide limits: the memory budget (`--max-memory`), then a
//!    free connection slot (`--max-connections`);
//! 2. the address's limits: its rate of new connections and its count of
//!    open ones (`--max-connections-per-ip[-per-second]`);
//! 3. the address's ban for failed logins, on listeners that ask for
//!    credentials.
//!
//! Step 1 can run before the client's address is known (a PROXY header,
//! a TLS handshake, a request through a trusted proxy still to come):
//! [`ServerState::reserve`] holds the slot meanwhile, and
//! [`ServerState::admit`] finishes from there.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::debug;

use super::listeners::Listener;
use super::ServerState;
use crate::connection::AuthGate;
use crate::hub::{ClientMeta, Name, RoomName};

/// Most bytes the kernel keeps unsent for one client (`TCP_NOTSENT_LOWAT`):
/// enough to keep a fast link busy between two writes; what is beyond it
/// waits in the client's queue, where the limits see it.
const NOTSENT_LOWAT: u32 = 128 * 1024;

/// The server's places for connections: its slots (`--max-connections`),
/// and how many connections each address holds
/// (`--max-connections-per-ip`). Every [`Slot`] gives its place back here.
#[derive(Debug)]
pub(crate) struct Places {
    /// One permit a connection, forgotten as it is taken and added back
    /// as the connection goes (a slot holds no permit of its own: 16
    /// bytes less for every client's task and every UDP peer).
    pub(super) slots: Semaphore,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Places {
    pub(super) fn new(max_connections: usize) -> Places {
        Places {
            slots: Semaphore::new(max_connections),
            per_ip: Mutex::default(),
        }
    }
}

impl Places {
    /// Gives `place` back, once.
    pub(super) fn release(&self, place: &mut Place) {
        if !std::mem::take(&mut place.held) {
            return;
        }
        self.slots.add_permits(1);
        let Some(ip) = place.ip else {
            return;
        };
        let mut per_ip = crate::sync::lock(&self.per_ip);
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// What a connection holds of the server's [`Places`]: a slot, and a share
/// of its address's count if that is limited. Whoever keeps it gives it
/// back with [`Places::release`].
#[derive(Debug, Default)]
pub(crate) struct Place {
    /// The address it counts against; `None`: no per-address limit is set
    /// (or the slot is reserved before the address is known).
    ip: Option<IpAddr>,
    /// Not given back yet.
    held: bool,
}

/// A [`Place`] kept beside its address, which its keeper holds anyway (a
/// UDP peer's address is its own): whether it counts against the
/// address, and whether it is held; 2 bytes where a place holds the
/// address again. Given back with [`ServerState::release_at`], not on
/// drop: its keeper gives it back as its client ends.
#[derive(Debug, Default)]
pub(crate) struct PlaceAt {
    counted: bool,
    held: bool,
}

/// A connection's place on the server, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    places: Arc<Places>,
    place: Place,
}

impl Slot {
    /// The place, for a keeper that reaches the server's [`Places`]
    /// otherwise (a client's task: its [`Leaving`]).
    fn into_place(mut self) -> Place {
        std::mem::take(&mut self.place)
    }

    /// The place, for a keeper that holds its address `ip` (the one it
    /// was admitted from) and reaches the server's [`Places`] otherwise.
    pub(crate) fn into_place_at(self, ip: IpAddr) -> PlaceAt {
        let place = self.into_place();
        debug_assert!(place.ip.is_none_or(|counted| counted == ip));
        PlaceAt {
            counted: place.ip.is_some(),
            held: place.held,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.places.release(&mut self.place);
    }
}

/// What a client's task keeps for its end, beside the connection's
/// future: its place on the server (given back however the task ends: on
/// drop, if it never finishes), and what its last log line names. Not the
/// place's [`Slot`], whose own pointer to the server's places would be 8
/// bytes more in every client's task: the server state reaches them.
pub(super) struct Leaving {
    shared: Arc<ServerState>,
    listener: Arc<Listener>,
    place: Place,
}

impl Leaving {
    pub(super) fn new(shared: Arc<ServerState>, listener: Arc<Listener>, slot: Slot) -> Self {
        Leaving {
            shared,
            listener,
            place: slot.into_place(),
        }
    }

    /// The client is gone: its place is given back first (a client waiting
    /// for it may come in), then it is logged and recorded.
    pub(super) fn left(mut self, gone: crate::connection::Gone) {
        self.shared.places.release(&mut self.place);
        self.shared
            .client_left(&self.listener, &gone.client, gone.name, gone.closing);
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.shared.places.release(&mut self.place);
    }
}

/// What a connection holds already when its client is admitted.
#[derive(Debug)]
pub(crate) enum Held {
    /// Nothing: every step is taken now.
    Nothing,
    /// A server slot taken before the client's address was known
    /// ([`ServerState::reserve`]), not counted against an address yet.
    Reserved(Slot),
    /// A whole slot: the HTTP connection a `/ws` client upgrades from was
    /// admitted from the same address (one connection, counted once).
    Slot(Slot),
}

/// A client let in: its slot, and what it must do first.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) slot: Slot,
    /// Its listener asks for credentials first.
    pub(crate) gate: Option<AuthGate>,
}

/// Why a connection is not served.
#[derive(Debug)]
pub(crate) struct AdmissionRefusal {
    /// Which step refused it.
    pub(crate) cause: RefusalCause,
    /// For the client and the log.
    pub(crate) reason: String,
    /// Worth a log line: not one more of a flood from the same address.
    pub(crate) log: bool,
}

/// Which step of admission refused a connection: the server's state (try
/// again later) or the address's own doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusalCause {
    /// The clients hold nearly all of the memory budget.
    MemoryNearlyFull,
    /// Every connection slot is taken.
    Full,
    /// The address opens connections faster than allowed.
    TooFast,
    /// The address has as many connections open as allowed.
    TooMany,
    /// The address is banned for failed logins.
    Banned,
    /// Its listener has as many clients as it takes (`?max-clients=`).
    ListenerFull,
}

impl AdmissionRefusal {
    fn new(cause: RefusalCause, reason: String) -> AdmissionRefusal {
        AdmissionRefusal {
            cause,
            reason,
            log: true,
        }
    }
}

/// A client at the door: who it is as far as its transport tells, where it
/// starts, and its admitted place.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub(crate) meta: ClientMeta,
    pub(crate) room: RoomName,
    pub(crate) proof: Proof,
    pub(crate) admitted: Admitted,
}

/// What a client's transport proved about who it is.
#[derive(Debug)]
pub(crate) enum Proof {
    /// Nothing: it is a guest until it picks a name.
    Nothing,
    /// Its TLS client certificate names it.
    Name(Name),
    /// It proved something that cannot name it, and is refused, told why.
    Unusable(String),
}

impl ServerState {
    /// Admits a client from `ip`, taking what `held` does not hold yet;
    /// `auth`: its listener asks for credentials, so a banned address is
    /// refused and the rest are gated.
    /// Refuses a client of `listener` when it has as many as it takes
    /// (`?max-clients=N`): a playground port holds a few, not the server.
    pub(crate) fn listener_has_room(
        &self,
        listener: &super::listeners::Listener,
    ) -> Result<(), AdmissionRefusal> {
        let Some(max) = listener.spec.as_ref().and_then(|spec| spec.max_clients) else {
            return Ok(());
        };
        if listener.clients() < max {
            return Ok(());
        }
        self.monitor.refused();
        Err(AdmissionRefusal::new(
            RefusalCause::ListenerFull,
            format!("this port takes at most {max} clients at once (max clients); try again later"),
        ))
    }

    pub(crate) fn admit(
        &self,
        held: Held,
        ip: IpAddr,
        auth: bool,
    ) -> Result<Admitted, AdmissionRefusal> {
        let slot = match held {
            Held::Nothing => {
                let server = self.reserve()?;
                self.slot_from(server, ip)?
            }
            Held::Reserved(server) => self.slot_from(server, ip)?,
            Held::Slot(slot) => slot,
        };
        let gate = self.gate(auth, ip)?;
        Ok(Admitted { slot, gate })
    }

    /// Takes a connection slot for a client whose address is not known
    /// yet (step 1), or says why not.
    pub(crate) fn reserve(&self) -> Result<Slot, AdmissionRefusal> {
        let refused = |cause, reason: String| {
            self.monitor.refused();
            AdmissionRefusal::new(cause, reason)
        };
        if self.hub.memory_nearly_full() {
            return Err(refused(RefusalCause::MemoryNearlyFull, format!(
                "server busy: its clients hold nearly all of its memory budget of {} bytes (max memory); try again later",
                self.config.hub.max_memory
            )));
        }
        match self.places.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                return Err(refused(RefusalCause::Full, format!(
                    "server full: {} connections, the most it serves at once (max connections); try again later",
                    self.live().max_connections
                )))
            }
        }
        Ok(Slot {
            places: self.places.clone(),
            place: Place {
                ip: None,
                held: true,
            },
        })
    }

    /// Gives back `place`, kept beside its address `ip`, once.
    pub(crate) fn release_at(&self, place: &mut PlaceAt, ip: IpAddr) {
        let mut whole = Place {
            ip: place.counted.then_some(ip),
            held: std::mem::take(&mut place.held),
        };
        self.places.release(&mut whole);
    }

    /// A whole slot for a connection whose address is known: its server
    /// slot, and its address's if it may open one more (step 2).
    fn slot_from(&self, mut reserved: Slot, ip: IpAddr) -> Result<Slot, AdmissionRefusal> {
        if self.count_address(ip)? {
            reserved.place.ip = Some(ip);
        }
        Ok(reserved)
    }

    /// Counts a client from `ip` against the per-address limits; `true`:
    /// it holds a share of the address's connections, given back when it
    /// goes.
    fn count_address(&self, ip: IpAddr) -> Result<bool, AdmissionRefusal> {
        let (rates, per_ip_limit) = {
            let live = self.live();
            (live.connection_rates.clone(), live.max_connections_per_ip)
        };
        if let Some(rates) = rates {
            if let Err(too_fast) = rates.admit(ip, tokio::time::Instant::now()) {
                self.monitor.refused();
                let rate = rates.rate().get();
                let retry = too_fast.retry_in.as_millis().max(1);
                return Err(AdmissionRefusal {
                    cause: RefusalCause::TooFast,
                    reason: format!(
                        "too many new connections from {ip}: {rate} a second is the most allowed (max connections per ip per second); try again in {retry} ms"
                    ),
                    log: too_fast.first,
                });
            }
        }
        let Some(limit) = per_ip_limit else {
            return Ok(false);
        };
        let mut per_ip = crate::sync::lock(&self.places.per_ip);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= limit {
            self.monitor.refused();
            return Err(AdmissionRefusal::new(RefusalCause::TooMany, format!(
                "too many connections from {ip}: {limit} at once is the most allowed (max connections per ip)"
            )));
        }
        *count += 1;
        Ok(true)
    }

    /// What a client of a listener that asks for credentials (`auth`)
    /// meets first (step 3); refused: the address is banned for failed
    /// attempts.
    fn gate(&self, auth: bool, ip: IpAddr) -> Result<Option<AuthGate>, AdmissionRefusal> {
        if !auth {
            return Ok(None);
        }
        let auth = self
            .authenticator()
            .expect("listeners that ask for credentials have them (checked at start)");
        if let Err(banned) = auth.guard().check(ip) {
            return Err(AdmissionRefusal::new(
                RefusalCause::Banned,
                banned.to_string(),
            ));
        }
        Ok(Some(AuthGate {
            auth,
            ip,
            within: self.config.auth_timeout,
        }))
    }

    /// Socket options for a client's TCP connection, whatever it speaks
    /// over it (a TCP mode, HTTP, WebSocket).
    pub(crate) fn tune(&self, stream: &TcpStream, peer: SocketAddr) {
        // Writes are batched already; waiting to fill a segment only adds latency.
        let _ = stream.set_nodelay(true);
        // Keeps what the kernel holds unsent for a client small, so that a
        // reader that reads, however slowly, is seen to make progress (a
        // write goes through) every time it reads: see `pause-timeout`.
        // Without it, Linux wakes a writer only when half of a
        // multi-megabyte send buffer is free, which a slow reader takes
        // seconds to make.
        let socket = SockRef::from(stream);
        let _ = socket.set_tcp_notsent_lowat(NOTSENT_LOWAT);
        if let Some((keepalive, unacknowledged)) = &self.keepalive {
            if let Err(error) = socket.set_tcp_keepalive(keepalive) {
                debug!(%peer, %error, "cannot turn on TCP keepalive");
            }
            if let Err(error) = socket.set_tcp_user_timeout(Some(*unacknowledged)) {
                debug!(%peer, %error, "cannot set TCP_USER_TIMEOUT");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client's task keeps beside the connection's future (see
    /// `the_connection_of_an_idle_client_stays_small`): its cell is 512
    /// bytes with both as they are, 640 with 8 bytes more. Its place's
    /// [`Slot`] is held by every UDP peer too.
    #[test]
    fn what_a_client_keeps_for_its_end_stays_small() {
        let (leaving, slot) = (std::mem::size_of::<Leaving>(), std::mem::size_of::<Slot>());
        println!("a client's keeper: {leaving} bytes; a slot: {slot}");
        assert!(leaving <= 40, "Leaving is {leaving} bytes");
        assert!(slot <= 32, "Slot is {slot} bytes");
    }
}
