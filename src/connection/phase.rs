//! Where a connection stands before it is simply served, what each input
//! does there, and by when the next must come: a client of a listener that
//! asks for credentials authenticates; a device on a `register=` listener
//! registers; a new client's arrival waits a moment for a hello; a client
//! whose credentials expire is served until they do.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::read::{answer_client, Deadline, Why, Work};
use crate::auth::{Admitted, AuthError, Authenticator};
use crate::hub::{Body, CloseReason, DeviceProof, Name, RoomName, Session};
use crate::protocol::{
    ErrorCode, Input, Protocol, ProtocolError, Registration, Reply, Request, Secret,
};

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

/// How long a new client's arrival waits to be announced for its first
/// input, which may be a hello (`send --name logger --room ops`): a script
/// writes it at once, so it is there within a round trip; a person's
/// arrival is announced a moment later, which nobody notices.
pub(super) const ARRIVAL_WINDOW: Duration = Duration::from_millis(500);

/// Where a connection stands, when it is not simply served. A client
/// served with nothing to wait for has no phase (`None`): most clients,
/// most of the time; that is why a phase is boxed, and why the read side
/// looks at it only when there is one.
pub(super) enum Phase {
    /// Its listener asks for credentials: nothing but them is taken until
    /// `until`; then it goes to `room`.
    Authenticating {
        gate: AuthGate,
        room: RoomName,
        until: Instant,
    },
    /// A device that must register by `by`: nothing but its registration
    /// is taken, nor anything after a refused one (`refused`: why; it is
    /// closed at the deadline). With `gate`, its registration is checked
    /// against the devices file.
    Registering {
        by: Deadline,
        refused: Option<String>,
        gate: Option<AuthGate>,
    },
    /// In its listener's room, not announced yet, until then: its first
    /// input may be a hello that takes it elsewhere, by another name.
    Arriving(Instant),
    /// Served, with credentials that end then (a JWT's expiry).
    Expiring(Instant),
}

/// What became of one input given to a phase.
pub(super) enum Taken {
    /// Not the phase's: the client is served, and this is for the hub.
    Serve(Work),
    /// The phase took it (credentials, a registration, or nothing that
    /// counts before them).
    Done,
    /// The connection ends, for this reason.
    Close(CloseReason),
}

impl Phase {
    /// The phase a client starts in, once it is greeted (as it must be:
    /// the welcome comes first, before the room's news). A client refused
    /// as it came (closed already) only hears why; one that must
    /// authenticate first, how to.
    pub(super) fn start<P: Protocol>(
        protocol: &P,
        session: &mut Session,
        room: RoomName,
        gate: Option<AuthGate>,
    ) -> Option<Box<Phase>> {
        if session.outbox().is_closed() {
            return None;
        }
        if let Some(limit) = protocol.register_within() {
            // A device's registration is its credentials: checked when it
            // comes, against the devices file if its listener asks.
            welcome(protocol, session, room, gate.is_none());
            return Some(Box::new(Phase::Registering {
                by: Deadline {
                    at: Instant::now() + limit,
                    limit,
                    why: Why::Register,
                },
                refused: None,
                gate,
            }));
        }
        match gate {
            Some(gate) => {
                let prompt = protocol.auth_required(gate.within);
                if !prompt.is_empty() {
                    let _ = session.reply(prompt);
                }
                Some(Box::new(Phase::Authenticating {
                    until: Instant::now() + gate.within,
                    gate,
                    room,
                }))
            }
            None => welcome(protocol, session, room, true),
        }
    }

    /// By when the next input must come, and what happens then.
    pub(super) fn deadline(&self) -> Deadline {
        match self {
            Phase::Authenticating { gate, until, .. } => Deadline {
                at: *until,
                limit: gate.within,
                why: Why::Auth,
            },
            Phase::Registering { by, .. } => *by,
            Phase::Arriving(at) => Deadline {
                at: *at,
                limit: ARRIVAL_WINDOW,
                why: Why::Arrival,
            },
            Phase::Expiring(at) => Deadline {
                at: *at,
                limit: Duration::ZERO,
                why: Why::Expired,
            },
        }
    }

    /// Why a device that did not register in time is closed.
    pub(super) fn not_registered(self, grace: Duration) -> CloseReason {
        match self {
            Phase::Registering {
                refused: Some(why), ..
            } => CloseReason::Refused(why.into()),
            _ => CloseReason::NotRegistered { grace },
        }
    }
}

/// Gives one input to the connection's `phase`, which takes what is its
/// own and moves on when it is done.
pub(super) async fn take<P: Protocol>(
    phase: &mut Option<Box<Phase>>,
    protocol: &P,
    session: &mut Session,
    work: Work,
) -> Taken {
    match phase.as_deref_mut() {
        None | Some(Phase::Expiring(_)) => Taken::Serve(work),
        Some(Phase::Arriving(_)) => {
            // Its first input: a hello takes it where it says, quietly;
            // anything else is said after its arrival is.
            *phase = None;
            let hello = matches!(
                work,
                Work::One(Input::Request {
                    request: Request::Hello { .. },
                    ..
                })
            );
            if !hello {
                session.announce_arrival();
            }
            Taken::Serve(work)
        }
        Some(Phase::Authenticating { gate, .. }) => {
            match Box::pin(authenticate(protocol, session, gate, work)).await {
                Gated::Waiting => Taken::Done,
                Gated::In { expires_at, data } => {
                    let Some(Phase::Authenticating { room, .. }) = phase.take().map(|p| *p) else {
                        unreachable!("the client was authenticating");
                    };
                    let expiring = expires_at.and_then(|at| {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        // Past what an instant holds: never, to a connection.
                        let at = Instant::now().checked_add(left)?;
                        Some(Box::new(Phase::Expiring(at)))
                    });
                    // Its arrival may wait for a hello too, unless its
                    // credentials expire (a connection has one phase).
                    let hold = session.ready_to_join(&room).await;
                    let arriving = welcome(protocol, session, room, expiring.is_none());
                    drop(hold);
                    *phase = expiring.or(arriving);
                    if !data.is_empty() {
                        let _ = Box::pin(session.say_all(None, data)).await;
                    }
                    Taken::Done
                }
                Gated::Out(reason) => Taken::Close(reason),
            }
        }
        Some(Phase::Registering { refused, gate, .. }) => {
            match work {
                Work::One(Input::Refused(why)) => {
                    tracing::warn!(client = %session.id(), "refused a device: {why}");
                    *refused = Some(why);
                }
                Work::One(Input::Request {
                    request: Request::Register(registration),
                    ..
                }) if refused.is_none() => {
                    match Box::pin(register(session, *registration, gate.as_ref())).await {
                        Ok(()) => *phase = None,
                        Err(RegistrationRefusal::Now(reason)) => return Taken::Close(reason),
                        Err(RegistrationRefusal::Later { why, logged }) => {
                            if !logged {
                                tracing::warn!(client = %session.id(), "refused a device: {why}");
                            }
                            *refused = Some(why);
                        }
                    }
                }
                // Nothing else counts before a registration, or after a
                // refused one.
                _ => {}
            }
            Taken::Done
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
                ErrorCode::AuthRequired,
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
            let error = ProtocolError::from(error);
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
) -> Option<Box<Phase>> {
    let welcome = protocol.welcome(session.name(), Some(&room));
    if !welcome.is_empty() {
        let _ = session.reply(welcome);
    }
    if protocol.register_within().is_some() {
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
        .then(|| Box::new(Phase::Arriving(Instant::now() + ARRIVAL_WINDOW)))
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
    let hold = session.ready_to_join(&room).await;
    session
        .join(room.clone())
        .map_err(|error| format!("cannot put it in #{room}: {error}"))?;
    drop(hold);
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
