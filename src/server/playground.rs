//! The playground (`--playground`): ports handed to visitors of `/play`,
//! as the online TCP test pages hand out a temporary address. Each port is
//! a listener of its own whose clients are in a sealed room (`~play-PORT`),
//! so they reach nobody else and nobody else reaches them; a visitor sees
//! and talks to their own ports only, and has no other power.
//!
//! What bounds it: the range of ports (`--playground-ports`), ports per
//! address (`--playground-max-ports-per-ip`), clients per port
//! (`--playground-max-clients`), and a port's life: it closes after
//! `--playground-ttl` with no client and no page watching it. Its clients
//! count against `--max-connections` and `--max-memory` as any other.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::info;

use super::control::{ClientView, Control, SendRequest};
use super::listeners::{Listener, ListenerError, Origin};
use super::ServerState;
use crate::config::{ListenerSpec, Mode, PlaygroundSettings};
use crate::device::Frame;
use crate::hub::{unix_millis, RoomName, Watcher};

/// How a visitor's port takes its clients' bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayMode {
    /// TCP, a message a line (what `nc` and the tutorials' clients send).
    Text,
    /// TCP, bytes as they come (a DTU's packets).
    Raw,
    /// UDP, a message a datagram.
    Udp,
}

/// A visitor: the value of their cookie (or of a port's share link).
pub type VisitorId = String;

/// One port handed out.
#[derive(Debug)]
struct Port {
    listener: Arc<Listener>,
    mode: PlayMode,
    room: RoomName,
    owner: VisitorId,
    /// Visitors who came by its share link: they watch and send as its
    /// owner does, but do not close it.
    guests: Vec<VisitorId>,
    /// The share link's secret (`/play/w/TOKEN`): it ends with the port.
    share: String,
    /// Who asked for it: an address holds at most so many ports.
    from: IpAddr,
    /// Pages watching it now: while one is, it stays open.
    watching: usize,
    /// When it was last in use (a client, a page, the visitor's extend).
    used: Instant,
}

impl Port {
    /// Whether it still listens (the admin may have closed it; the
    /// expiry then forgets it).
    fn is_open(&self) -> bool {
        !self.listener.stop.is_cancelled()
    }

    /// Whether `visitor` may use it: its owner, or a guest by its link.
    fn is_visited_by(&self, visitor: &str) -> bool {
        self.is_open() && (self.owner == visitor || self.guests.iter().any(|g| g == visitor))
    }
}

/// Why a visitor's request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayError {
    /// No such port, or not this visitor's.
    NotFound,
    /// This address holds its ports already; one frees up within `retry`.
    TooManyPorts {
        /// Ports per address.
        max: usize,
        /// When one of them would close if left alone.
        retry: Duration,
    },
    /// Every port of the range is in use.
    NoneFree {
        /// When one would close if left alone.
        retry: Duration,
    },
    /// [`MAX_FEEDS`] pages watch the port already.
    TooManyPages,
    /// The request itself is wrong.
    Bad(String),
}

impl std::fmt::Display for PlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlayError::NotFound => f.write_str("no such port of yours (ports close after their time with no client and no page watching)"),
            PlayError::TooManyPorts { max, retry } => write!(
                f,
                "your address holds {max} ports already, the most allowed (playground max ports per ip): close one, or try again in {}s",
                retry.as_secs().max(1)
            ),
            PlayError::NoneFree { retry } => write!(
                f,
                "every playground port is in use; one frees up within {}s",
                retry.as_secs().max(1)
            ),
            PlayError::TooManyPages => write!(
                f,
                "{MAX_FEEDS} pages watch this port already, the most allowed: close one"
            ),
            PlayError::Bad(why) => f.write_str(why),
        }
    }
}

/// Most visitors a share link lets in, besides the port's owner: a phone
/// or two beside the device, not an audience.
pub const MAX_GUESTS: usize = 4;

/// Most pages watching one port at once: each holds a feed and a tap of
/// the port's traffic (up to 4 MiB while it falls behind), so their number
/// is bounded, not their visitors' patience.
pub const MAX_FEEDS: usize = 8;

/// A port as its visitor sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortView {
    /// The port, on the server's address.
    pub port: u16,
    /// The share link: another device opens it to watch and send too.
    pub watch: String,
    /// Whether the one asking owns it (may close it) or came by its link.
    pub owner: bool,
    /// How it takes its clients' bytes.
    pub mode: PlayMode,
    /// When it closes if nobody uses it (Unix milliseconds); a client or
    /// a page watching keeps it open.
    pub expires_at: u64,
    /// Its clients now.
    pub clients: Vec<ClientView>,
}

/// The playground's ports and their visitors.
#[derive(Debug)]
pub(crate) struct Playground {
    control: Control,
    settings: PlaygroundSettings,
    ports: Mutex<HashMap<u16, Port>>,
}

impl Playground {
    pub(crate) fn new(control: Control) -> Arc<Playground> {
        let settings = control.config().playground.clone();
        Arc::new(Playground {
            control,
            settings,
            ports: Mutex::default(),
        })
    }

    fn shared(&self) -> &Arc<ServerState> {
        self.control.shared()
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Port>> {
        crate::sync::lock(&self.ports)
    }

    /// Hands `visitor`, asking from `from`, a port of `mode`.
    pub(crate) fn open(
        &self,
        visitor: &str,
        from: IpAddr,
        mode: PlayMode,
    ) -> Result<PortView, PlayError> {
        let mut ports = self.ports();
        let key = address_key(from);
        let theirs: Vec<&Port> = ports
            .values()
            .filter(|p| address_key(p.from) == key)
            .collect();
        if theirs.len() >= self.settings.max_ports_per_ip {
            let retry = theirs
                .iter()
                .map(|p| self.left(p))
                .min()
                .unwrap_or_default();
            return Err(PlayError::TooManyPorts {
                max: self.settings.max_ports_per_ip,
                retry,
            });
        }
        // From a random place in the range, so that ports are not handed
        // out in an order a stranger could follow.
        let range = self.settings.ports;
        let start = random_below(range.len());
        let candidates = range.ports().cycle().skip(start).take(range.len());
        for number in candidates {
            if ports.contains_key(&number) {
                continue;
            }
            match self.bind(number, mode) {
                Ok((listener, room)) => {
                    info!(port = number, mode = ?mode, visitor = %from, "the playground handed out a port");
                    let port = Port {
                        listener,
                        mode,
                        room,
                        owner: visitor.to_owned(),
                        guests: Vec::new(),
                        share: new_visitor(),
                        from,
                        watching: 0,
                        used: Instant::now(),
                    };
                    let view = self.view_of(number, &port, true);
                    ports.insert(number, port);
                    return Ok(view);
                }
                // Taken by another program: the next one.
                Err(ListenerError::CannotBind { .. }) => continue,
                Err(other) => return Err(PlayError::Bad(other.to_string())),
            }
        }
        let retry = ports
            .values()
            .map(|p| self.left(p))
            .min()
            .unwrap_or_default();
        Err(PlayError::NoneFree { retry })
    }

    /// Opens the listener of port `number`.
    fn bind(
        &self,
        number: u16,
        mode: PlayMode,
    ) -> Result<(Arc<Listener>, RoomName), ListenerError> {
        let room = RoomName::sealed(&format!("play-{number}")).expect("a valid label");
        let ip = match (self.settings.ports.ip, self.shared().config.http.listen) {
            (Some(ip), _) => ip,
            (None, Some(http)) => http.addr.ip(),
            (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let addr = SocketAddr::new(ip, number);
        let mut spec = ListenerSpec {
            room: room.clone(),
            udp: mode == PlayMode::Udp,
            max_unproven: Some(self.settings.max_clients),
            ..ListenerSpec::new(Mode::Raw, addr)
        };
        if mode == PlayMode::Text {
            spec.device.frame = Frame::Line;
        }
        spec.max_clients = Some(self.settings.max_clients);
        let listener = self.shared().open_listener_of(spec, Origin::Playground)?;
        Ok((listener, room))
    }

    /// What `visitor` sees of their port `number`.
    pub(crate) fn view(&self, visitor: &str, number: u16) -> Result<PortView, PlayError> {
        let ports = self.ports();
        let port = visited(&ports, visitor, number)?;
        Ok(self.view_of(number, port, port.owner == visitor))
    }

    fn view_of(&self, number: u16, port: &Port, owner: bool) -> PortView {
        // The room's members only (at most max-clients): a page asks
        // every second, and the server may have many other clients.
        let clients = self
            .control
            .room(port.room.as_str())
            .map(|room| room.members)
            .unwrap_or_default();
        let closes_at = SystemTime::now() + self.left(port);
        PortView {
            port: number,
            watch: format!("/play/w/{}", port.share),
            owner,
            mode: port.mode,
            expires_at: unix_millis(closes_at),
            clients,
        }
    }

    /// How long `port` has before it closes, if left alone.
    fn left(&self, port: &Port) -> Duration {
        if port.watching > 0 || port.listener.clients() > 0 {
            return self.settings.ttl;
        }
        self.settings.ttl.saturating_sub(port.used.elapsed())
    }

    /// Sends `visitor`'s message to their port's clients, or to one of
    /// them (`to`, a client id).
    pub(crate) fn send(
        &self,
        visitor: &str,
        number: u16,
        text: Option<String>,
        bytes: Option<String>,
        to: Option<u64>,
    ) -> Result<usize, PlayError> {
        let request = {
            let mut ports = self.ports();
            let port = visited_mut(&mut ports, visitor, number)?;
            port.used = Instant::now();
            let to = match to {
                None => None,
                Some(id) => {
                    let client = self.control.client(id).map_err(|_| PlayError::NotFound)?;
                    // Only a client of this port.
                    if client.listener != port.listener.id || client.closed_at.is_some() {
                        return Err(PlayError::NotFound);
                    }
                    Some(client.name)
                }
            };
            SendRequest {
                room: to.is_none().then(|| port.room.to_string()),
                to,
                text,
                bytes,
            }
        };
        self.control
            .send(&request)
            .map(|sent| sent.delivered)
            .map_err(|e| PlayError::Bad(e.message))
    }

    /// Closes `visitor`'s port `number` now, and its clients.
    pub(crate) fn close(&self, visitor: &str, number: u16) -> Result<(), PlayError> {
        let port = {
            let mut ports = self.ports();
            owned(&ports, visitor, number)?;
            ports.remove(&number).expect("found above")
        };
        let _ = self.shared().close_listener(port.listener.id);
        info!(port = number, "a visitor closed their playground port");
        Ok(())
    }

    /// Gives `visitor`'s port `number` its whole time again.
    pub(crate) fn extend(&self, visitor: &str, number: u16) -> Result<PortView, PlayError> {
        let mut ports = self.ports();
        let port = visited_mut(&mut ports, visitor, number)?;
        port.used = Instant::now();
        Ok(self.view_of(number, port, port.owner == visitor))
    }

    /// Lets `visitor` in on the port whose share link holds `share`.
    pub(crate) fn join(&self, visitor: &str, share: &str) -> Result<PortView, PlayError> {
        let mut ports = self.ports();
        let (&number, port) = ports
            .iter_mut()
            .find(|(_, p)| constant_time_eq(p.share.as_bytes(), share.as_bytes()))
            .ok_or(PlayError::NotFound)?;
        if port.owner != visitor && !port.guests.iter().any(|g| g == visitor) {
            if port.guests.len() >= MAX_GUESTS {
                return Err(PlayError::Bad(format!(
                    "{MAX_GUESTS} visitors came by this port's link already, the most allowed"
                )));
            }
            port.guests.push(visitor.to_owned());
        }
        port.used = Instant::now();
        Ok(self.view_of(number, port, port.owner == visitor))
    }

    /// Disconnects client `id` of `visitor`'s port `number`.
    pub(crate) fn kick(&self, visitor: &str, number: u16, id: u64) -> Result<(), PlayError> {
        let listener = {
            let ports = self.ports();
            visited(&ports, visitor, number)?.listener.id
        };
        let client = self.control.client(id).map_err(|_| PlayError::NotFound)?;
        if client.listener != listener || client.closed_at.is_some() {
            return Err(PlayError::NotFound);
        }
        self.control
            .kick(id, Some("closed from the playground page"))
            .map(|_| ())
            .map_err(|_| PlayError::NotFound)
    }

    /// Starts watching `visitor`'s port `number`: what its clients say,
    /// as the console's traffic. The port stays open while watched.
    pub(crate) fn watch(
        self: &Arc<Self>,
        visitor: &str,
        number: u16,
    ) -> Result<PortWatch, PlayError> {
        let mut ports = self.ports();
        let port = visited_mut(&mut ports, visitor, number)?;
        if port.watching >= MAX_FEEDS {
            return Err(PlayError::TooManyPages);
        }
        let watcher = self
            .control
            .watch(Some(&port.room.to_string()), None)
            .map_err(|e| PlayError::Bad(e.message))?;
        port.watching += 1;
        port.used = Instant::now();
        Ok(PortWatch {
            playground: self.clone(),
            number,
            listener: port.listener.id,
            owner: port.owner == visitor,
            watcher,
        })
    }

    /// Closes the ports left alone for their time.
    pub(crate) fn expire(&self) {
        let expired: Vec<(u16, Port)> = {
            let mut ports = self.ports();
            let now = Instant::now();
            for port in ports.values_mut() {
                if port.watching > 0 || port.listener.clients() > 0 {
                    port.used = now;
                }
            }
            // Left alone for its time, or closed by the admin.
            let gone: Vec<u16> = ports
                .iter()
                .filter(|(_, p)| self.left(p).is_zero() || !p.is_open())
                .map(|(n, _)| *n)
                .collect();
            gone.into_iter()
                .filter_map(|n| ports.remove(&n).map(|p| (n, p)))
                .collect()
        };
        for (number, port) in expired {
            let _ = self.shared().close_listener(port.listener.id);
            info!(
                port = number,
                "closed a playground port left alone for its time"
            );
        }
    }
}

/// A page watching a port: its traffic, and the port kept open meanwhile.
#[derive(Debug)]
pub(crate) struct PortWatch {
    playground: Arc<Playground>,
    number: u16,
    listener: u32,
    /// Whether the page is its owner's (or a guest's, by its link).
    owner: bool,
    /// What the port's clients say.
    pub(crate) watcher: Watcher,
}

impl PortWatch {
    /// The port as its page shows it now; `None` once it closed (the
    /// visitor, the admin or its time closed it; its number may be
    /// another's port by now).
    pub(crate) fn view(&self) -> Option<PortView> {
        let ports = self.playground.ports();
        let port = ports
            .get(&self.number)
            .filter(|p| p.listener.id == self.listener && p.is_open())?;
        Some(self.playground.view_of(self.number, port, self.owner))
    }
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        let mut ports = self.playground.ports();
        if let Some(port) = ports.get_mut(&self.number) {
            if port.listener.id == self.listener {
                port.watching = port.watching.saturating_sub(1);
                port.used = Instant::now();
            }
        }
    }
}

/// The port `number` if it is `visitor`'s.
fn owned<'a>(
    ports: &'a HashMap<u16, Port>,
    visitor: &str,
    number: u16,
) -> Result<&'a Port, PlayError> {
    ports
        .get(&number)
        .filter(|p| p.owner == visitor && p.is_open())
        .ok_or(PlayError::NotFound)
}

/// The port `number` if `visitor` owns it or came by its link.
fn visited<'a>(
    ports: &'a HashMap<u16, Port>,
    visitor: &str,
    number: u16,
) -> Result<&'a Port, PlayError> {
    ports
        .get(&number)
        .filter(|p| p.is_visited_by(visitor))
        .ok_or(PlayError::NotFound)
}

fn visited_mut<'a>(
    ports: &'a mut HashMap<u16, Port>,
    visitor: &str,
    number: u16,
) -> Result<&'a mut Port, PlayError> {
    ports
        .get_mut(&number)
        .filter(|p| p.is_visited_by(visitor))
        .ok_or(PlayError::NotFound)
}

/// Compares secrets without telling, by how long it takes, how much of
/// one matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Addresses that count as one: an IPv4 address, or an IPv6 /64 (what one
/// subscriber is usually given).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// A random number below `n` (n > 0).
fn random_below(n: usize) -> usize {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    (OsRng.next_u64() % n as u64) as usize
}

/// A new visitor's id: 32 random bytes, in hex.
pub(crate) fn new_visitor() -> VisitorId {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut value = [0u8; 32];
    OsRng.fill_bytes(&mut value);
    value.iter().map(|b| format!("{b:02x}")).collect()
}
