//! One client's connection: the read side turns bytes into requests to the
//! hub; the write side drains the client's outbox to the socket, in
//! batches, and enforces the stall timeout.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout, timeout_at, Instant};

use crate::auth::{Admitted, AuthError, Authenticator};
use crate::hub::{
    weight, Batch, Body, CloseReason, Closing, DeviceProof, Name, OutboxHandle, Pushed, RoomName,
    Session,
};
use crate::protocol::{
    apply, Decode, Input, Protocol, ProtocolError, Registration, Reply, Request, Secret,
};
use crate::throttle::{ClientRates, Throttle, Verdict};
use crate::transport::{Farewell, Transport};

/// The per-connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// See [`Config::stall_timeout`](crate::Config::stall_timeout).
    pub stall: Duration,
    /// See [`Config::idle_timeout`](crate::Config::idle_timeout).
    pub idle: Option<Duration>,
    /// See [`Config::line_timeout`](crate::Config::line_timeout).
    pub line: Option<Duration>,
    /// See [`Config::max_messages_per_second`](crate::Config::max_messages_per_second)
    /// and the settings after it.
    pub rates: ClientRates,
}

/// Most buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 64;

/// Size of the per-thread buffer every read lands in before its bytes are
/// moved to the connection's own buffer.
const READ_CHUNK: usize = 64 * 1024;

/// How long a cut-off client gets to take its last notice.
const ABORT_GOODBYE_TIMEOUT: Duration = Duration::from_millis(250);

thread_local! {
    /// Idle connections hold no read buffer of their own: reads land here,
    /// and only the bytes actually read are copied into the connection.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Welcomes a client, puts it in `room`, and serves it until it leaves or
/// is disconnected; returns its final name and why the connection closed.
///
/// The read side ends the connection by closing the outbox (the client
/// left, or sent garbage the socket cannot survive); everything else (a
/// cut-off, a server shutdown) closes the outbox from outside. Either way
/// the write side ends once it has said goodbye, and whatever the read side
/// was doing is dropped. So an idle connection waits on its socket and its
/// outbox's wake-up, nothing more: this future lives as long as the
/// connection, and its size is memory per client. What is needed only while
/// handling input or writing is boxed for that time.
pub(crate) fn serve<P, S>(
    protocol: Arc<P>,
    mut session: Session,
    room: RoomName,
    stream: S,
    timeouts: Timeouts,
    gate: Option<AuthGate>,
) -> impl std::future::Future<Output = (Name, Closing)> + Send
where
    P: Protocol,
    S: Transport,
{
    // Done before the future, so that it does not keep what it needs only
    // to begin with (the room, the welcome).
    // The welcome comes first, before the room's news.
    // A client refused as it came (closed already) only hears why; one
    // that must authenticate first, how to.
    let pending = match gate {
        _ if session.outbox().is_closed() => None,
        // A device's registration is its credentials: checked when it
        // comes, against the devices file.
        Some(gate) if protocol.register_within().is_some() => {
            welcome(&*protocol, &mut session, room, false);
            Some(Box::new(Gatekeeping::Device(gate)))
        }
        Some(gate) => {
            let prompt = protocol.auth_required(gate.within);
            if !prompt.is_empty() {
                let _ = session.reply(prompt);
            }
            Some(Box::new(Gatekeeping::Pending {
                until: Instant::now() + gate.within,
                gate,
                room,
            }))
        }
        None => welcome(&*protocol, &mut session, room, true),
    };
    let stall = timeouts.stall;
    async move {
        let mut stream = stream;
        let (reader, writer) = stream.halves();
        let outbox = session.outbox_handle();
        let protocol = &*protocol;
        let writing = write_side(protocol, &outbox, writer, stall);
        let mut writing = std::pin::pin!(writing);
        let reading_ended_first = {
            let reading = read_side(protocol, &mut session, reader, &timeouts, pending);
            tokio::select! {
                () = reading => true,
                () = &mut writing => false,
            }
        };
        // Out of its rooms now, while the writer may still be flushing.
        let name = session.name().clone();
        session.set_input_held(0);
        session.depart();
        if reading_ended_first {
            writing.await;
        }
        // The rooms were told this client left: like anything a client
        // causes, that waits for receivers its notice congested (a bounded
        // time: a stalled one is cut off), so a client connecting and
        // leaving in a loop cannot flood a room faster than it reads.
        // Boxed, as everything this future awaits only once.
        let _ = Box::pin(timeout(stall, session.until_receivers_keep_up())).await;
        drop(session);
        let closing = outbox.closing().unwrap_or(Closing {
            reason: CloseReason::ClientClosed,
            flush: true,
        });
        (name, closing)
    }
}

/// A listener's demand for credentials (`?auth=required`), as one client
/// meets it.
#[derive(Debug)]
pub(crate) struct AuthGate {
    /// Checks the credentials.
    pub(crate) auth: Arc<Authenticator>,
    /// Where the client comes from: failures are counted per address.
    pub(crate) ip: IpAddr,
    /// How long it has.
    pub(crate) within: Duration,
}

/// A client of a listener that asks for credentials: not in yet, or in
/// until its credentials expire.
enum Gatekeeping {
    /// Not authenticated yet: it has until `until`, then goes to `room`.
    Pending {
        gate: AuthGate,
        room: RoomName,
        until: Instant,
    },
    /// In, with credentials that end then (a JWT's expiry).
    Expires(Instant),
    /// A device that must register: its registration is checked against
    /// the devices file (the read side hands this to the registration).
    Device(AuthGate),
    /// In its listener's room, not announced yet: until then, its first
    /// input may be a hello that takes it elsewhere, by another name.
    Arriving(Instant),
}

/// How long a new client's arrival waits to be announced for its first
/// input, which may be a hello (`send --name logger --room ops`): a script
/// writes it at once, so it is there within a round trip; a person's
/// arrival is announced a moment later, which nobody notices.
pub(crate) const ARRIVAL_WINDOW: Duration = Duration::from_millis(500);

impl Gatekeeping {
    fn deadline(&self) -> Deadline {
        match self {
            Gatekeeping::Pending { gate, until, .. } => Deadline {
                at: *until,
                limit: gate.within,
                why: Why::Auth,
            },
            Gatekeeping::Expires(at) => Deadline {
                at: *at,
                limit: Duration::ZERO,
                why: Why::Expired,
            },
            // Its deadline is the registration's.
            Gatekeeping::Device(gate) => Deadline {
                at: Instant::now() + gate.within,
                limit: gate.within,
                why: Why::Register,
            },
            Gatekeeping::Arriving(at) => Deadline {
                at: *at,
                limit: ARRIVAL_WINDOW,
                why: Why::Arrival,
            },
        }
    }
}

/// Where a client at the gate stands after one input.
enum Gated {
    /// Not in yet (told why).
    Waiting,
    /// In: its credentials end at `expires_at`; a device's data that came
    /// with its token follows.
    In {
        expires_at: Option<SystemTime>,
        data: Vec<Body>,
    },
    /// Turned away.
    Out(CloseReason),
}

/// Takes one input of a client that has not authenticated: credentials
/// are checked (failures are counted, throttled and banned per address by
/// the authenticator), anything else is refused, saying how to log in.
async fn authenticate<P: Protocol>(
    protocol: &P,
    session: &mut Session,
    gate: &AuthGate,
    work: Work,
) -> Gated {
    let mut data = Vec::new();
    let (request, tag) = match work {
        Work::Say(_, bodies) if protocol.credentials_in_data() => {
            // A device has no commands: its first line is its token, and
            // what came after it is its first data.
            let mut bodies = bodies.into_iter();
            let first = bodies.next().map(|body| body.bytes).unwrap_or_default();
            let end = memchr::memchr(b'\n', &first).unwrap_or(first.len());
            let token = String::from_utf8_lossy(&first[..end]).trim().to_owned();
            let rest = first.slice((end + 1).min(first.len())..);
            data.extend((!rest.is_empty()).then(|| Body::chunk(rest)));
            data.extend(bodies);
            (Request::Auth(Secret(token)), None)
        }
        Work::Say(..) => (Request::Help, None),
        Work::One(Input::Request { request, tag }) => (request, tag),
        Work::One(Input::Invalid { error, tag }) => {
            answer_client(session, protocol.error(&error, &tag)).await;
            return Gated::Waiting;
        }
        Work::One(Input::Refused(why)) => return Gated::Out(CloseReason::Refused(why.into())),
    };
    let result = match request {
        Request::Auth(Secret(token)) => gate.auth.token(&token, gate.ip).await,
        Request::Login { user, password } => gate.auth.login(&user, &password.0, gate.ip).await,
        Request::Quit => return Gated::Out(CloseReason::Quit),
        Request::Ping => {
            answer_client(session, protocol.reply(&Reply::Pong, &tag)).await;
            return Gated::Waiting;
        }
        _ => {
            let error = ProtocolError::new(
                "auth_required",
                "authenticate first: /login USER PASSWORD or /auth TOKEN (JSON: {\"type\":\"auth\",...})",
            );
            answer_client(session, protocol.error(&error, &tag)).await;
            return Gated::Waiting;
        }
    };
    let identity = match result {
        Ok(identity) => identity,
        Err(error @ AuthError::Banned { .. }) => {
            return Gated::Out(CloseReason::Refused(error.to_string().into()))
        }
        Err(error) => {
            let error = ProtocolError::new(error.code(), error.to_string());
            answer_client(session, protocol.error(&error, &tag)).await;
            return Gated::Waiting;
        }
    };
    let user = match gate.auth.connect(&identity) {
        Ok(user) => user,
        Err(error) => return Gated::Out(CloseReason::Refused(error.to_string().into())),
    };
    let name = match user.as_ref().map(|user| Name::new(user.name())).transpose() {
        Ok(name) => name,
        Err(error) => {
            return Gated::Out(CloseReason::Refused(
                format!("your user name cannot be a client name: {error}").into(),
            ))
        }
    };
    let user_name = identity.user.clone();
    let (method, expires_at) = (identity.method, identity.expires_at);
    let admitted = Admitted {
        identity,
        place: user,
    };
    if let Err(error) = session.log_in(name, Box::new(admitted)).await {
        return Gated::Out(CloseReason::Refused(
            format!("cannot take your user name: {error}").into(),
        ));
    }
    tracing::info!(name = %session.name(), user = ?user_name, ?method, "client authenticated");
    let reply = Reply::Authenticated {
        name: session.name().clone(),
        user: user_name,
    };
    answer_client(session, protocol.reply(&reply, &tag)).await;
    Gated::In { expires_at, data }
}

/// Greets a client that is in and puts it in its listener's room; with
/// `quietly`, unannounced for a moment, if its protocol takes a hello
/// (returned: the wait for it).
fn welcome<P: Protocol>(
    protocol: &P,
    session: &mut Session,
    room: RoomName,
    quietly: bool,
) -> Option<Box<Gatekeeping>> {
    let welcome = protocol.welcome(session.name(), Some(&room));
    if !welcome.is_empty() {
        let _ = session.reply(welcome);
    }
    if !protocol.joins_on_arrival() {
        return None;
    }
    let quietly = quietly && !protocol.credentials_in_data();
    let joined = match quietly {
        true => session.arrive_quietly(room),
        false => session.join(room),
    };
    if let Err(error) = joined {
        tracing::debug!(%error, "cannot put a new client in its listener's room");
        let _ = session.reply(protocol.error(&error.into(), &None));
    }
    session
        .arriving()
        .then(|| Box::new(Gatekeeping::Arriving(Instant::now() + ARRIVAL_WINDOW)))
}

/// Why a device's registration was refused.
enum RegistrationRefusal {
    /// Close the connection now, for this reason (its address is banned).
    Now(CloseReason),
    /// Take nothing more from it, and close it when its grace ends; the
    /// reason, and whether it has been logged already.
    Later { why: String, logged: bool },
}

impl From<String> for RegistrationRefusal {
    fn from(why: String) -> Self {
        RegistrationRefusal::Later { why, logged: false }
    }
}

/// Registers a device under the name and in the room its registration
/// gives it, once the devices file lets it in if the listener asks for
/// authentication (`gate`).
async fn register(
    session: &mut Session,
    registration: Registration,
    gate: Option<&AuthGate>,
) -> Result<(), RegistrationRefusal> {
    let Registration {
        identity,
        name,
        room,
    } = registration;
    let (label, proof) = match gate {
        None => (None, DeviceProof::Open),
        Some(gate) => match gate
            .auth
            .device(&identity.id, identity.key.as_deref(), gate.ip)
        {
            Ok(known) => (
                known.label().map(str::to_owned),
                match known.has_key() {
                    true => DeviceProof::Keyed,
                    false => DeviceProof::Listed,
                },
            ),
            Err(error @ AuthError::Banned { .. }) => {
                return Err(RegistrationRefusal::Now(CloseReason::Refused(
                    error.to_string().into(),
                )))
            }
            Err(error) => {
                return Err(RegistrationRefusal::Later {
                    why: format!("device {}: {error}", identity.id),
                    // The authenticator logs its failures, saying which.
                    logged: matches!(error, AuthError::UnknownDevice),
                });
            }
        },
    };
    // A stale connection of the same device is closed (and logged) there.
    session
        .register_device(&identity.id, label.as_deref(), name.clone(), proof)
        .await
        .map_err(|error| format!("cannot give it the name {name}: {error}"))?;
    session
        .join(room.clone())
        .map_err(|error| format!("cannot put it in #{room}: {error}"))?;
    match label {
        Some(label) => {
            tracing::info!(%name, client = %session.id(), device = %identity.id, label, %room, "device registered")
        }
        None => {
            tracing::info!(%name, client = %session.id(), device = %identity.id, %room, "device registered")
        }
    }
    Ok(())
}

enum Step {
    Continue,
    /// Stop reading; close the outbox for this reason, flushing or not.
    Stop(CloseReason, bool),
}

/// Reads and handles the client's input until it leaves, then closes the
/// outbox saying why.
///
/// Each piece of input is one unit of work, and the connection gives way
/// to others when tokio's cooperative budget says so: a client with a
/// backlog of cheap requests cannot keep a worker thread to itself. Once
/// the outbox is closed (the client is being cut off or the server is
/// shutting down), nothing more it sent is done.
async fn read_side<P: Protocol, R: AsyncRead + Unpin>(
    protocol: &P,
    session: &mut Session,
    mut reader: R,
    limits: &Timeouts,
    mut gatekeeping: Option<Box<Gatekeeping>>,
) {
    // A device's gate is its registration's.
    let device_gate = match gatekeeping.take().map(|g| *g) {
        Some(Gatekeeping::Device(gate)) => Some(gate),
        other => {
            gatekeeping = other.map(Box::new);
            None
        }
    };
    let rates = &limits.rates;
    let mut throttle = Throttle::default();
    // The last read was made with no bytes allowed: if it brought any,
    // the client is pushing past its limit.
    let mut read_at_limit = false;
    let mut decoder = protocol.decoder();
    let mut buf = BytesMut::new();
    // Set once the client's input has ended: what was read before the
    // end is still handled (a one-shot client's last line often has no
    // newline), then the connection closes for this reason. Boxed: this
    // future lives as long as the connection, and a connection ends once.
    let mut ended: Option<Box<CloseReason>> = None;
    // When the client started the line it has not finished yet.
    let mut line_started: Option<Instant> = None;
    // A device that must register, until it has (boxed: this future lives
    // as long as the connection, and most never register).
    let mut registering = protocol.register_within().map(|limit| {
        Box::new(Registering {
            by: Deadline {
                at: Instant::now() + limit,
                limit,
                why: Why::Register,
            },
            refused: None,
            gate: device_gate,
        })
    });
    // The input paused for the gap that ends a device's packet.
    let mut paused = false;
    // A new client's arrival is news to its room: wait like for anything
    // else it causes.
    Box::pin(session.until_receivers_keep_up()).await;
    let (reason, flush) = 'connection: loop {
        // What was read is handled even after the client hung up.
        let mut held = None;
        loop {
            // The clock is read only for a limit there is.
            let now = rates.messages.map(|_| Instant::now());
            let allowed = now.and_then(|now| throttle.messages_allowed(rates, now));
            let most = allowed.map_or(MAX_BATCH, |n| (n as usize).clamp(1, MAX_BATCH));
            let held_back = allowed == Some(0);
            let eof = ended.is_some();
            let Some(work) = next_work(&mut decoder, &mut buf, eof || paused, &mut held, most)
            else {
                break;
            };
            // A line was finished: what is left is a new one.
            line_started = None;
            if session.outbox().is_closed() {
                return;
            }
            if held_back {
                let slowing = slow_down(protocol, session, &mut throttle, rates, false);
                if let Err(reason) = Box::pin(slowing).await {
                    break 'connection (reason, true);
                }
            }
            if let Some(now) = now {
                // Paid from when it was allowed: after a pause, the bucket
                // is already paid past `now`.
                throttle.took_messages(rates, work.messages(), now);
            }
            if let Some(Gatekeeping::Arriving(_)) = gatekeeping.as_deref() {
                // Its first input: a hello takes it where it says, quietly;
                // anything else is said after its arrival is.
                gatekeeping = None;
                if !matches!(
                    work,
                    Work::One(Input::Request {
                        request: Request::Hello { .. },
                        ..
                    })
                ) {
                    session.announce_arrival();
                }
            }
            if let Some(Gatekeeping::Pending { gate, .. }) = gatekeeping.as_deref() {
                match Box::pin(authenticate(protocol, session, gate, work)).await {
                    Gated::Waiting => {}
                    Gated::In { expires_at, data } => {
                        let room = match gatekeeping.take().map(|g| *g) {
                            Some(Gatekeeping::Pending { room, .. }) => room,
                            _ => unreachable!("the client was at the gate"),
                        };
                        gatekeeping = expires_at.and_then(|at| {
                            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                            // Past what an instant holds: never, to a connection.
                            let at = Instant::now().checked_add(left)?;
                            Some(Box::new(Gatekeeping::Expires(at)))
                        });
                        // Its arrival may wait for a hello too, unless its
                        // credentials' expiry already holds the gate's place.
                        let arriving = welcome(protocol, session, room, gatekeeping.is_none());
                        if gatekeeping.is_none() {
                            gatekeeping = arriving;
                        }
                        if !data.is_empty() {
                            let _ = Box::pin(session.say_all(None, data)).await;
                        }
                    }
                    Gated::Out(reason) => break 'connection (reason, true),
                }
                tokio::task::coop::consume_budget().await;
                continue;
            }
            if let Some(pending) = registering.as_deref_mut() {
                match work {
                    Work::One(Input::Refused(why)) => {
                        tracing::warn!(client = %session.id(), "refused a device: {why}");
                        pending.refused = Some(why);
                    }
                    Work::One(Input::Request {
                        request: Request::Register(registration),
                        ..
                    }) if pending.refused.is_none() => {
                        let gate = pending.gate.as_ref();
                        match Box::pin(register(session, *registration, gate)).await {
                            Ok(()) => registering = None,
                            Err(RegistrationRefusal::Now(reason)) => {
                                break 'connection (reason, true)
                            }
                            Err(RegistrationRefusal::Later { why, logged }) => {
                                if !logged {
                                    tracing::warn!(client = %session.id(), "refused a device: {why}");
                                }
                                pending.refused = Some(why);
                            }
                        }
                    }
                    // Nothing else counts before a registration, or after
                    // a refused one.
                    _ => {}
                }
                tokio::task::coop::consume_budget().await;
                continue;
            }
            if let Step::Stop(reason, flush) = Box::pin(handle(protocol, session, work)).await {
                break 'connection (reason, flush);
            }
            tokio::task::coop::consume_budget().await;
        }
        if let Some(reason) = ended {
            break (*reason, true);
        }
        paused = false;
        if buf.is_empty() {
            // Give the memory back while the client is quiet.
            buf = BytesMut::new();
            line_started = None;
        } else if line_started.is_none() {
            // The line timeout runs for the line left unfinished, from
            // when it was first seen unfinished: a fast sender whose reads
            // all end mid-line finishes each of its lines in time.
            line_started = Some(Instant::now());
        }
        session.set_input_held(buf.capacity());
        if read_at_limit {
            match Box::pin(slow_down(protocol, session, &mut throttle, rates, true)).await {
                // The time held back is not the client's to finish its line in.
                Ok(paused) => line_started = line_started.map(|at| at + paused),
                Err(reason) => break (reason, true),
            }
        }
        let allowed = rates
            .bytes
            .and_then(|_| throttle.bytes_allowed(rates, Instant::now()));
        read_at_limit = allowed == Some(0);
        let most = allowed.map_or(READ_CHUNK, |n| (n as usize).clamp(1, READ_CHUNK));
        let until = gatekeeping.as_deref().map(Gatekeeping::deadline);
        let line_timeout = limits.line.zip(line_started);
        let gap = decoder
            .gap()
            .filter(|_| !buf.is_empty())
            .map(|limit| Deadline {
                at: Instant::now() + limit,
                limit,
                why: Why::Gap,
            });
        let register_by = registering.as_deref().map(|r| r.by);
        let read = match Deadline::next(limits.idle, line_timeout, [until, register_by, gap]) {
            // Boxed: a timer is memory an idle client holds, when configured.
            Some(deadline) => Box::pin(timeout_at(
                deadline.at,
                read_some(&mut reader, &mut buf, most),
            ))
            .await
            .map_err(|_| deadline),
            None => Ok(read_some(&mut reader, &mut buf, most).await),
        };
        match read {
            Ok(Ok(0)) => ended = Some(Box::new(CloseReason::ClientClosed)),
            Ok(Ok(read)) => {
                if rates.bytes.is_some() {
                    throttle.took_bytes(rates, read, Instant::now());
                }
                session.received(read);
                session.set_input_held(buf.capacity());
            }
            // A reset (a client closing with the server's words unread)
            // ends its input as a close does: what came before it counts.
            Ok(Err(e)) => ended = Some(Box::new(CloseReason::ReadFailed(e.to_string().into()))),
            // A pause: what the device sent before it is a packet.
            Err(Deadline { why: Why::Gap, .. }) => paused = true,
            // Nothing came in the arrival window: the client is announced.
            Err(Deadline {
                why: Why::Arrival, ..
            }) => {
                gatekeeping = None;
                session.announce_arrival();
            }
            Err(Deadline {
                why: Why::Register,
                limit,
                ..
            }) => {
                let reason = match registering.and_then(|r| r.refused) {
                    Some(why) => CloseReason::Refused(why.into()),
                    None => CloseReason::NotRegistered { grace: limit },
                };
                break (reason, true);
            }
            Err(deadline) => break (deadline.reason(), true),
        }
    };
    session.close(reason, flush);
}

/// Most messages relayed as one delivery.
const MAX_BATCH: usize = 1024;

/// Holds a client over its rate limit back (messages, or `bytes`) until
/// it may go on; returns how long it was held. `Err`: it has been over its
/// limit for the whole grace period, and is disconnected.
async fn slow_down<P: Protocol>(
    protocol: &P,
    session: &Session,
    throttle: &mut Throttle,
    rates: &ClientRates,
    bytes: bool,
) -> Result<Duration, CloseReason> {
    let now = Instant::now();
    match throttle.hold(rates, bytes, now) {
        Verdict::CutOff(limit) => Err(CloseReason::RateLimited {
            limit,
            grace: rates.grace,
        }),
        Verdict::Pause {
            until,
            limit,
            first,
        } => {
            if first {
                tracing::info!(name = %session.name(), client = %session.id(), "slowing a client down: over {limit}");
                let then = match rates.grace {
                    grace if grace.is_zero() => {
                        "the server reads from you at that pace; nothing you sent is lost"
                            .to_owned()
                    }
                    grace => format!(
                        "keep it up for {} and you are disconnected (rate limit grace)",
                        crate::units::format_duration(grace)
                    ),
                };
                let notice = ProtocolError::new(
                    "rate_limited",
                    format!("slowed down: you send faster than {limit}; {then}"),
                );
                // Nothing, for raw clients: their bytes are never mixed
                // with the server's words.
                let notice = protocol.error(&notice, &None);
                if !notice.is_empty() {
                    let _ = session.reply(notice);
                }
            }
            tokio::time::sleep_until(until).await;
            Ok(until - now)
        }
    }
}

/// What to do next with a client's input.
enum Work {
    /// A run of messages to one room, in order: relayed as one delivery.
    Say(Option<RoomName>, Vec<Body>),
    /// Anything else, one at a time.
    One(Input),
}

impl Work {
    /// How many messages it is, for the rate limit.
    fn messages(&self) -> usize {
        match self {
            Work::Say(_, bodies) => bodies.len(),
            Work::One(_) => 1,
        }
    }
}

/// Takes the next piece of work from what has been read. Consecutive
/// messages to the same room (as one read of a fast sender holds many)
/// become one [`Work::Say`]; `held` keeps an input read past the run.
fn next_work<D: Decode>(
    decoder: &mut D,
    buf: &mut BytesMut,
    eof: bool,
    held: &mut Option<Box<Input>>,
    most: usize,
) -> Option<Work> {
    let first = held
        .take()
        .map(|input| *input)
        .or_else(|| decoder.decode(buf, eof))?;
    let (room, body) = match first {
        Input::Request {
            request: Request::Say { room, body },
            tag: None,
        } => (room, body),
        other => return Some(Work::One(other)),
    };
    // A message of several lines (JSON text, a raw chunk) goes alone: text
    // clients are shown each of its lines with a prefix, and a batch of
    // many such would cost them more than its size suggests.
    let multiline = |body: &Body| memchr::memchr(b'\n', &body.bytes).is_some();
    if multiline(&body) {
        return Some(Work::Say(room, vec![body]));
    }
    let mut bodies = vec![body];
    while bodies.len() < most {
        match decoder.decode(buf, eof) {
            Some(Input::Request {
                request:
                    Request::Say {
                        room: next_room,
                        body,
                    },
                tag: None,
            }) if next_room == room && !multiline(&body) => bodies.push(body),
            Some(other) => {
                *held = Some(Box::new(other));
                break;
            }
            None => break,
        }
    }
    Some(Work::Say(room, bodies))
}

async fn handle<P: Protocol>(protocol: &P, session: &mut Session, work: Work) -> Step {
    let input = match work {
        Work::Say(room, bodies) => {
            let count = bodies.len();
            let answer = match session.say_all(room.as_ref(), bodies).await {
                Ok(()) => protocol.reply(&Reply::Sent, &None),
                Err(error) => protocol.error(&error.into(), &None),
            };
            // One answer (an ack, or the error) per message.
            for _ in 0..count {
                answer_client(session, answer.clone()).await;
            }
            return Step::Continue;
        }
        Work::One(input) => input,
    };
    let (outcome, tag) = match input {
        Input::Request { request, tag } => (apply(session, request).await, tag),
        Input::Invalid { error, tag } => (Err(error), tag),
        Input::Refused(why) => return Step::Stop(CloseReason::Refused(why.into()), true),
    };
    let answer = match &outcome {
        Ok(Reply::Quit) => return Step::Stop(CloseReason::Quit, true),
        Ok(reply) => protocol.reply(reply, &tag),
        Err(error) => {
            tracing::debug!(name = %session.name(), code = error.code, "request refused: {}", error.message);
            protocol.error(error, &tag)
        }
    };
    answer_client(session, answer).await;
    Step::Continue
}

/// Queues an answer for the client. A client that asks and never reads its
/// answers is throttled like any other slow reader.
async fn answer_client(session: &Session, answer: Bytes) {
    if !answer.is_empty() && session.reply(answer) == Pushed::Congested {
        session.outbox().until_uncongested().await;
    }
}

/// A device that has not registered: by when it must, and why it was
/// refused if it was (nothing it sends is then taken, and it is closed at
/// the deadline).
struct Registering {
    by: Deadline,
    refused: Option<String>,
    /// The listener asks for authentication: the registration is checked
    /// against the devices file.
    gate: Option<AuthGate>,
}

/// When the next read must have come by, and which limit says so.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    limit: Duration,
    why: Why,
}

/// Which limit a deadline is.
#[derive(Clone, Copy)]
enum Why {
    Idle,
    Line,
    Auth,
    Expired,
    /// A device's time to register.
    Register,
    /// A device's pause that ends a packet: not a limit.
    Gap,
    /// The end of a new client's arrival window: not a limit.
    Arrival,
}

impl Deadline {
    /// The earliest of: the idle timeout from now, the line timeout of a
    /// line started at `line.1`, and `others` (authentication's deadline,
    /// or when the credentials expire; a device's time to register; the
    /// gap that ends its packet).
    fn next(
        idle: Option<Duration>,
        line: Option<(Duration, Instant)>,
        others: [Option<Deadline>; 3],
    ) -> Option<Deadline> {
        let idle = idle.map(|limit| Deadline {
            at: Instant::now() + limit,
            limit,
            why: Why::Idle,
        });
        let line = line.map(|(limit, started)| Deadline {
            at: started + limit,
            limit,
            why: Why::Line,
        });
        [idle, line]
            .into_iter()
            .chain(others)
            .flatten()
            .min_by_key(|d| d.at)
    }

    fn reason(self) -> CloseReason {
        let timeout = self.limit;
        match self.why {
            Why::Idle => CloseReason::Idle { timeout },
            Why::Line => CloseReason::LineTimeout { timeout },
            Why::Auth => CloseReason::AuthTimeout { timeout },
            Why::Expired => CloseReason::CredentialsExpired,
            Why::Register => CloseReason::NotRegistered { grace: timeout },
            Why::Gap | Why::Arrival => unreachable!("not a limit"),
        }
    }
}

/// Reads what is available, `most` bytes at most, into `buf`, through the
/// thread's scratch buffer.
/// `buf` grows by an eighth at a time beyond what it must hold, not by
/// doubling: an unfinished line costs little more than its length.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    most: usize,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read_buf = ReadBuf::new(&mut scratch[..most]);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut read_buf))?;
            let read = read_buf.filled();
            if buf.capacity() - buf.len() < read.len() {
                let needed = buf.len() + read.len();
                let mut grown = BytesMut::with_capacity(needed + needed / 8);
                grown.extend_from_slice(buf);
                *buf = grown;
            }
            buf.extend_from_slice(read);
            Poll::Ready(Ok(read.len()))
        })
    })
    .await
}

async fn write_side<P: Protocol, W: AsyncWrite + Farewell + Unpin>(
    protocol: &P,
    outbox: &OutboxHandle,
    mut writer: W,
    stall: Duration,
) {
    // Set while a message is written in part: a cut-off can come then, and
    // the goodbye must not be glued to the torn message.
    let mut torn = false;
    loop {
        let Batch { items, closing } = outbox.take();
        if items.is_empty() {
            if let Some(closing) = closing {
                return Box::pin(goodbye(protocol, &closing, torn, &mut writer, stall)).await;
            }
            // Nothing kept across the wait: its size is memory per idle client.
            drop(items);
            outbox.ready().await;
            // Let every task that is ready run first (readers with input
            // waiting push more to this outbox), then write all of it in
            // one syscall: under load, several messages per write.
            tokio::task::yield_now().await;
            continue;
        }
        // A flushing close is acted on once the queue is empty.
        drop(closing);
        let written = Box::pin(write_batch::<W>(
            items,
            &mut writer,
            &mut torn,
            outbox,
            stall,
        ))
        .await;
        if let Err(reason) = written {
            outbox.close(reason, false);
        }
    }
}

/// Writes one batch, unless the client is cut off meanwhile.
async fn write_batch<W: AsyncWrite + Unpin>(
    items: VecDeque<Bytes>,
    writer: &mut W,
    torn: &mut bool,
    outbox: &OutboxHandle,
    stall: Duration,
) -> Result<(), CloseReason> {
    let mut chunks: VecDeque<(Bytes, usize)> = items
        .into_iter()
        .map(|bytes| {
            let weight = weight(&bytes);
            (bytes, weight)
        })
        .collect();
    tokio::select! {
        biased;
        _ = outbox.aborted() => Ok(()),
        written = write_chunks(writer, &mut chunks, torn, outbox, stall) => written,
    }
}

/// Writes `chunks` (bytes and their queue weight) with vectored writes,
/// reporting progress to the outbox; `torn` tells whether the first chunk
/// is partly written. Fails if the client accepts nothing for `stall`.
async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    chunks: &mut VecDeque<(Bytes, usize)>,
    torn: &mut bool,
    outbox: &OutboxHandle,
    stall: Duration,
) -> Result<(), CloseReason> {
    while !chunks.is_empty() {
        let slices: Vec<IoSlice<'_>> = chunks
            .iter()
            .take(MAX_WRITE_SLICES)
            .map(|(bytes, _)| IoSlice::new(bytes))
            .collect();
        let written = match timeout(stall, writer.write_vectored(&slices)).await {
            Err(_) => return Err(CloseReason::Stalled { timeout: stall }),
            Ok(Err(e)) => return Err(CloseReason::WriteFailed(e.to_string().into())),
            Ok(Ok(0)) => return Err(CloseReason::WriteFailed("connection closed".into())),
            Ok(Ok(n)) => n,
        };
        drop(slices);
        outbox.progressed();
        outbox.sent(written);
        let mut left = written;
        let mut done = 0;
        while left > 0 {
            let (bytes, weight) = chunks.front_mut().expect("wrote no more than was given");
            if left >= bytes.len() {
                left -= bytes.len();
                done += *weight;
                chunks.pop_front();
                *torn = false;
            } else {
                bytes.advance(left);
                left = 0;
                *torn = true;
            }
        }
        outbox.written(done);
    }
    // What a transport buffers (a WebSocket's frames) goes out now; TCP
    // buffers nothing, and this costs it nothing.
    match timeout(stall, writer.flush()).await {
        Err(_) => Err(CloseReason::Stalled { timeout: stall }),
        Ok(Err(e)) => Err(CloseReason::WriteFailed(e.to_string().into())),
        Ok(Ok(())) => Ok(()),
    }
}

/// Tells the client why it is being disconnected (as far as its protocol
/// says such things), then closes the write side. After a torn message the
/// goodbye starts on a line of its own.
async fn goodbye<P: Protocol, W: AsyncWrite + Farewell + Unpin>(
    protocol: &P,
    closing: &Closing,
    torn: bool,
    writer: &mut W,
    stall: Duration,
) {
    if matches!(closing.reason, CloseReason::WriteFailed(_)) {
        return;
    }
    let mut bytes = protocol.goodbye(closing);
    if torn && !bytes.is_empty() {
        bytes = [&b"\n"[..], &bytes].concat().into();
    }
    writer.closing(closing);
    let deadline = if closing.flush {
        stall
    } else {
        ABORT_GOODBYE_TIMEOUT
    };
    let _ = timeout(deadline, async {
        if !bytes.is_empty() {
            writer.write_all(&bytes).await?;
        }
        writer.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Text;

    /// See [`the_connection_of_an_idle_client_stays_small`].
    const CONNECTION_FUTURE_BYTES: usize = 1008;

    fn stalled() -> Closing {
        Closing {
            reason: CloseReason::Stalled {
                timeout: Duration::from_secs(1),
            },
            flush: false,
        }
    }

    /// The connection's future is the memory every idle client holds
    /// (with its session and outbox): what it needs only while handling
    /// input or writing is boxed for that time. A change that grows it
    /// shows here first; raise the bound only knowingly, with the
    /// idle-memory figure of `bench/ab.sh` in the commit.
    #[tokio::test]
    async fn the_connection_of_an_idle_client_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, stream) = (client.unwrap(), accepted.unwrap().0);
        let hub = crate::hub::Hub::new(crate::Config::local().hub_settings());
        let session = hub.connect(None, &Text::ENCODINGS, crate::hub::ClientMeta::default());
        let timeouts = Timeouts {
            stall: Duration::from_secs(5),
            idle: None,
            line: None,
            rates: ClientRates::default(),
        };
        let text = Arc::new(Text::new(1024, None, None));
        let connection = serve(text, session, RoomName::lobby(), stream, timeouts, None);
        let size = std::mem::size_of_val(&connection);
        println!("a text connection's future: {size} bytes");
        assert!(size <= CONNECTION_FUTURE_BYTES, "{size} bytes");
    }

    #[tokio::test]
    async fn a_goodbye_after_a_torn_message_starts_on_its_own_line() {
        let text = Text::new(1024, None, None);
        let mut out = Vec::new();
        goodbye(&text, &stalled(), true, &mut out, Duration::from_secs(1)).await;
        assert!(
            out.starts_with(b"\n! disconnected: stalled"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let mut out = Vec::new();
        goodbye(&text, &stalled(), false, &mut out, Duration::from_secs(1)).await;
        assert!(out.starts_with(b"! disconnected: stalled"));
    }

    #[tokio::test]
    async fn a_partial_write_marks_the_message_torn_until_it_is_finished() {
        let hub = crate::hub::Hub::new(crate::Config::local().hub_settings());
        let session = hub.connect(None, &Text::ENCODINGS, crate::hub::ClientMeta::default());
        let outbox = session.outbox_handle();
        // A pipe that holds 3 bytes: "hello\n" cannot go in one write.
        let (mut near, mut far) = tokio::io::duplex(3);
        let mut chunks = VecDeque::from([(Bytes::from_static(b"hello\n"), 6)]);
        let mut torn = false;
        {
            let writing = write_chunks(
                &mut near,
                &mut chunks,
                &mut torn,
                &outbox,
                Duration::from_secs(5),
            );
            tokio::pin!(writing);
            tokio::select! {
                biased;
                _ = &mut writing => panic!("wrote 6 bytes into a 3-byte pipe"),
                _ = std::future::ready(()) => {}
            }
        }
        assert!(torn);
        let mut first = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut first)
            .await
            .unwrap();
        write_chunks(
            &mut near,
            &mut chunks,
            &mut torn,
            &outbox,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(!torn);
        assert!(chunks.is_empty());
    }
}
