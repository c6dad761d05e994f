//! Who a client is, and where it may go: logins with a user name and
//! password (the users file), static tokens and JWTs, failed attempts
//! counted per address, and room permissions.
//!
//! The pieces, one per file:
//!
//! - [`users`]: the users file (`--users FILE`), TOML, argon2id hashes;
//! - [`password`]: hashing and checking passwords, a few at a time;
//! - [`tokens`]: static tokens (`--token`, `--token-file`) and JWTs;
//! - [`grants`]: room patterns (`team-*`) and what they allow;
//! - [`guard`]: failures per address, back-off and bans;
//! - [`connections`]: a user's connections at once, and their names;
//! - [`devices`]: the devices file (`--devices FILE`), which devices may
//!   register where devices must authenticate.
//!
//! # What the caller does
//!
//! Build an [`Authenticator`] from [`AuthSettings`] at start, and again
//! with [`Authenticator::reload`] on SIGHUP (swap it in; connections keep
//! the [`Identity`] they have). Then, on a listener with `?auth=required`:
//!
//! 1. On accept: [`Guard::check`] (via [`Authenticator::guard`]) refuses a
//!    banned address before any other work: tell it the error, close.
//! 2. Until the client authenticates (within the deadline, default 10 s),
//!    answer everything else with "authenticate first". For `/login USER
//!    PASSWORD`, call [`Authenticator::login`]; for `/auth TOKEN`,
//!    [`Authenticator::token`]. On an error, send its message (it is
//!    written for the client and holds no secret) and let the client try
//!    again; [`AuthError::Banned`] means close. Failures are counted and
//!    throttled inside: the caller does not wait or count.
//! 3. On success, [`Authenticator::connect`] takes the user's place among
//!    its connections and gives the client's name (`alice`, `alice-2`) or
//!    [`AuthError::TooManyConnections`]; keep the [`UserConnection`] for as
//!    long as the client is connected. A static token has no user: the
//!    client is a guest as usual.
//! 4. Before a join or a send: [`Identity::may_join`] /
//!    [`Identity::may_send`]; send the [`Forbidden`] message on refusal.
//! 5. If [`Identity::expires_at`] is set (a JWT), close the connection
//!    then, with [`AuthError::TokenExpired`] as the reason.
//! 6. A device on a device listener (`register=`) authenticates with its
//!    registration: call [`Authenticator::device`] with the identity and
//!    key it gave.
//! 7. On `/nick` (and any other claim of a name): refuse names for which
//!    [`Authenticator::is_reserved`] is true, unless the name is the
//!    client's own.

pub mod connections;
pub mod devices;
mod error;
pub mod grants;
pub mod guard;
pub mod password;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::hub::{comparison_key, Name, RoomName};

pub use connections::{Connections, UserConnection};
pub use devices::{Devices, KnownDevice};
pub use error::{AuthError, LoadError};
pub use grants::{Action, Forbidden, Grants, Pattern};
pub use guard::{Guard, GuardPolicy};
pub use password::Verifier;
pub use tokens::{JwtVerifier, StaticTokens};
pub use users::{User, Users, DEFAULT_MAX_CONNECTIONS};

/// Where credentials come from. Each field is one of `switchboard
/// serve`'s settings; files are read again by [`Authenticator::reload`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `--users FILE`: the users file (see [`users`]), for `/login`.
    pub users_file: Option<PathBuf>,
    /// `--token SECRET` (repeatable): static tokens, for `/auth`.
    pub tokens: Vec<String>,
    /// `--token-file FILE`: more static tokens, one a line; `#` starts a
    /// comment line, blank lines are skipped.
    pub token_file: Option<PathBuf>,
    /// `--jwt-secret SECRET`: accept JWTs signed with HS256 with this
    /// secret (at least 32 bytes).
    pub jwt_secret: Option<String>,
    /// `--jwt-secret-file FILE`: the same, read from the first line of a
    /// file (so it does not show in `ps`); wins over `jwt_secret`.
    pub jwt_secret_file: Option<PathBuf>,
    /// `--jwt-public-key FILE`: accept JWTs signed with RS256 by the
    /// private half of this RSA public key (PEM).
    pub jwt_public_key_file: Option<PathBuf>,
    /// `--jwt-audience AUD`: JWTs must have this `aud`; without it, JWTs
    /// that have an `aud` are refused.
    pub jwt_audience: Option<String>,
    /// `--devices FILE`: the devices file (see [`devices`]), for device
    /// listeners with `?auth=required`.
    pub devices_file: Option<PathBuf>,
}

/// Secrets are left out.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("users_file", &self.users_file)
            .field("tokens", &format_args!("<{} tokens>", self.tokens.len()))
            .field("token_file", &self.token_file)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<secret>"))
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwt_audience", &self.jwt_audience)
            .field("devices_file", &self.devices_file)
            .finish()
    }
}

impl AuthSettings {
    /// Whether any way for a client to authenticate is configured:
    /// `?auth=required` without one would let nobody in, and should be
    /// refused at start. (Devices that register authenticate with the
    /// devices file alone.)
    pub fn has_credentials(&self) -> bool {
        self.users_file.is_some()
            || !self.tokens.is_empty()
            || self.token_file.is_some()
            || self.jwt_secret.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key_file.is_some()
    }
}

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A user name and password from the users file (`/login`).
    Password,
    /// A static token (`/auth` with a `--token`).
    Token,
    /// A JWT (`/auth` with a signed token).
    Jwt,
}

/// Who an authenticated client is, and what it may do.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user, as the users file (or the JWT's `sub`) spells it; `None`
    /// for a static token, which names nobody (the client is a guest).
    pub user: Option<String>,
    /// The rooms it may join.
    pub join: Grants,
    /// The rooms it may send to.
    pub send: Grants,
    /// The clients it may send to directly (patterns of names).
    pub direct: Grants,
    /// How many connections the user may hold at once (`None`: no user,
    /// no limit).
    pub max_connections: Option<u32>,
    /// When the credentials end (a JWT's `exp`): the connection is closed
    /// then.
    pub expires_at: Option<SystemTime>,
    /// How it authenticated.
    pub method: Method,
}

impl Identity {
    /// Whether it may join `room`; the error is the message for the client.
    pub fn may_join(&self, room: &RoomName) -> Result<(), Forbidden> {
        self.may(Action::Join, &self.join, room)
    }

    /// Whether it may send to `room`; the error is the message for the client.
    pub fn may_send(&self, room: &RoomName) -> Result<(), Forbidden> {
        self.may(Action::Send, &self.send, room)
    }

    /// Whether it may send to `to` directly; the error is the message for
    /// the client.
    pub fn may_direct(&self, to: &Name) -> Result<(), Forbidden> {
        if self.direct.allows_name(to) {
            Ok(())
        } else {
            Err(Forbidden {
                user: self.user.clone(),
                action: Action::Direct,
                room: to.as_str().to_owned(),
            })
        }
    }

    fn may(&self, action: Action, grants: &Grants, room: &RoomName) -> Result<(), Forbidden> {
        if grants.allows(room) {
            Ok(())
        } else {
            Err(Forbidden {
                user: self.user.clone(),
                action,
                room: room.as_str().to_owned(),
            })
        }
    }

    /// How long until the credentials expire, from `now` (zero if they
    /// have); `None` if they do not.
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// What a logged-in client holds while it is connected: who it is (the
/// hub checks its joins and sends against it) and its user's place among
/// the user's connections, given back when the client goes.
#[derive(Debug)]
pub struct Admitted {
    /// Who it is.
    pub identity: Identity,
    /// Its place among its user's connections (`None`: no user).
    pub place: Option<UserConnection>,
}

impl crate::hub::Access for Admitted {
    fn may_join(&self, room: &RoomName) -> Result<(), String> {
        self.identity
            .may_join(room)
            .map_err(|forbidden| forbidden.to_string())
    }

    fn may_send(&self, room: &RoomName) -> Result<(), String> {
        self.identity
            .may_send(room)
            .map_err(|forbidden| forbidden.to_string())
    }

    fn may_direct(&self, to: &Name) -> Result<(), String> {
        self.identity
            .may_direct(to)
            .map_err(|forbidden| forbidden.to_string())
    }
}

/// Whom a user may message directly when its entry or token does not say:
/// anyone if it may send to every room, nobody if its rooms are
/// restricted (a user kept to `team-*` must not reach everyone by `/msg`).
pub(crate) fn direct_default(send: &Grants) -> Grants {
    if send.allows_all() {
        Grants::all()
    } else {
        Grants::none()
    }
}

/// The hub keeps users' names from everyone else.
impl crate::hub::ReservedNames for Authenticator {
    fn is_reserved(&self, name: &Name) -> bool {
        Authenticator::is_reserved(self, name.as_str())
    }
}

/// What outlives a reload: counts of failures, password checks running,
/// connections open.
#[derive(Debug, Clone)]
struct Lasting {
    guard: Arc<Guard>,
    verifier: Verifier,
    connections: Arc<Connections>,
}

/// Checks credentials against the configured users, tokens and JWT keys.
/// Immutable once built: to take changed files into account, build a new
/// one with [`Authenticator::reload`] and swap it in (e.g. behind an
/// `ArcSwap` or a `RwLock<Arc<_>>`); it keeps the failure counts, the
/// password-check slots and the connections of the old one.
#[derive(Debug)]
pub struct Authenticator {
    settings: AuthSettings,
    users: Option<Users>,
    tokens: StaticTokens,
    jwt: Option<JwtVerifier>,
    devices: Option<Devices>,
    shared: Lasting,
}

impl Authenticator {
    /// Reads the files `settings` names and checks everything; an error
    /// names the file, flag, user or field at fault.
    pub fn load(settings: AuthSettings) -> Result<Self, LoadError> {
        Authenticator::load_with(
            settings,
            Lasting {
                guard: Arc::default(),
                verifier: Verifier::per_cpu(),
                connections: Arc::default(),
            },
        )
    }

    /// Like [`Authenticator::load`], with a guard of other limits.
    pub fn with_guard(settings: AuthSettings, policy: GuardPolicy) -> Result<Self, LoadError> {
        Authenticator::load_with(
            settings,
            Lasting {
                guard: Arc::new(Guard::new(policy)),
                verifier: Verifier::per_cpu(),
                connections: Arc::default(),
            },
        )
    }

    /// Reads the files again, keeping what outlives a reload (see
    /// [`Authenticator`]). On error, keep using `self`.
    pub fn reload(&self) -> Result<Self, LoadError> {
        self.reload_with(self.settings.clone())
    }

    /// Like [`Authenticator::reload`], from changed settings (a reloaded
    /// config may name other files).
    pub fn reload_with(&self, settings: AuthSettings) -> Result<Self, LoadError> {
        Authenticator::load_with(settings, self.shared.clone())
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    fn load_with(settings: AuthSettings, shared: Lasting) -> Result<Self, LoadError> {
        let users = settings
            .users_file
            .as_deref()
            .map(Users::load)
            .transpose()?;
        let tokens = StaticTokens::load(&settings.tokens, settings.token_file.as_deref())?;
        let secret = match &settings.jwt_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                    what: "JWT secret file",
                    path: path.clone(),
                    source,
                })?;
                Some((
                    text.lines().next().unwrap_or("").trim().to_owned(),
                    path.display().to_string(),
                ))
            }
            None => settings
                .jwt_secret
                .clone()
                .map(|secret| (secret, "--jwt-secret".to_owned())),
        };
        let public_key = match &settings.jwt_public_key_file {
            Some(path) => Some((
                std::fs::read(path).map_err(|source| LoadError::Read {
                    what: "JWT public key file",
                    path: path.clone(),
                    source,
                })?,
                path.display().to_string(),
            )),
            None => None,
        };
        let jwt = if secret.is_some() || public_key.is_some() {
            Some(JwtVerifier::new(
                secret
                    .as_ref()
                    .map(|(s, name)| (s.as_bytes(), name.as_str())),
                public_key
                    .as_ref()
                    .map(|(k, name)| (k.as_slice(), name.as_str())),
                settings.jwt_audience.clone(),
            )?)
        } else {
            None
        };
        let devices = settings
            .devices_file
            .as_deref()
            .map(Devices::load)
            .transpose()?;
        if users.is_some() {
            shared.verifier.prepare();
        }
        Ok(Authenticator {
            settings,
            users,
            tokens,
            jwt,
            devices,
            shared,
        })
    }

    /// The failure counter: the accept loop calls [`Guard::check`] on it.
    pub fn guard(&self) -> &Guard {
        &self.shared.guard
    }

    /// The users file, if one is configured.
    pub fn users(&self) -> Option<&Users> {
        self.users.as_ref()
    }

    /// Checks a user name and password (`/login USER PASSWORD`). An
    /// unknown user and a wrong password give the same error, after the
    /// same work. Refused at once if `ip` is banned or must still wait
    /// after its last failure; a failure is counted against `ip`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Identity, AuthError> {
        self.shared.guard.ready(ip)?;
        let Some(users) = &self.users else {
            return Err(AuthError::MethodNotEnabled(
                "this server takes no passwords: authenticate with a token",
            ));
        };
        let entry = users.find(user);
        let matched = self
            .shared
            .verifier
            .verify(password, entry.and_then(User::password_hash))
            .await
            .map_err(|_| AuthError::Unavailable)?;
        match entry {
            Some(entry) if matched => Ok(Identity {
                user: Some(entry.name().to_owned()),
                join: entry.join().clone(),
                send: entry.send().clone(),
                direct: entry.direct().clone(),
                max_connections: Some(entry.max_connections()),
                expires_at: None,
                method: Method::Password,
            }),
            _ => {
                let wait = self.shared.guard.failed(ip);
                // The name tried is logged only if it is a user's: an
                // unknown one may be a password typed in the wrong place.
                match entry {
                    Some(entry) => {
                        warn!(%ip, user = entry.name(), backoff_secs = wait.as_secs(), "failed login: wrong password")
                    }
                    None => warn!(%ip, backoff_secs = wait.as_secs(), "failed login: unknown user"),
                }
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// The devices file, if one is configured.
    pub fn devices(&self) -> Option<&Devices> {
        self.devices.as_ref()
    }

    /// Checks a device's registration (its identity `id`, and the `key`
    /// it carried, if any) against the devices file; gives its entry.
    /// Refused at once if `ip` is banned; a device not listed, or with
    /// the wrong key, is a failure counted against `ip`, so that guessing
    /// gets the address banned. Unlike a login, a failure does not make
    /// the next attempt from `ip` wait: many devices share one address
    /// behind a mobile carrier's NAT, and one misconfigured device must
    /// not hold the others back (each attempt already costs its sender a
    /// connection held for the listener's `register-grace`).
    pub fn device(
        &self,
        id: &str,
        key: Option<&[u8]>,
        ip: IpAddr,
    ) -> Result<&KnownDevice, AuthError> {
        self.shared.guard.check(ip)?;
        let Some(devices) = &self.devices else {
            return Err(AuthError::NoDevicesList);
        };
        match devices.admit(id, key) {
            Some(device) => Ok(device),
            None => {
                // Counted toward a ban; the wait it gives is not applied
                // (see above).
                let _ = self.shared.guard.failed(ip);
                match devices.find(id) {
                    Some(_) => warn!(%ip, device = id, "device refused: wrong key"),
                    None => warn!(%ip, device = id, "device refused: not in the devices file"),
                }
                Err(AuthError::UnknownDevice)
            }
        }
    }

    /// Checks a token (`/auth TOKEN`): a static token, or a JWT. Refused
    /// at once if `ip` is banned or must still wait after its last
    /// failure; an invalid token is counted against `ip` (an expired or
    /// not-yet-valid JWT, correctly signed, is not).
    pub async fn token(&self, token: &str, ip: IpAddr) -> Result<Identity, AuthError> {
        self.shared.guard.ready(ip)?;
        if self.tokens.is_empty() && self.jwt.is_none() {
            return Err(AuthError::MethodNotEnabled(
                "this server takes no tokens: log in with a user name and password",
            ));
        }
        if self.tokens.matches(token) {
            return Ok(Identity {
                user: None,
                join: Grants::all(),
                send: Grants::all(),
                direct: Grants::all(),
                max_connections: None,
                expires_at: None,
                method: Method::Token,
            });
        }
        if let Some(jwt) = self
            .jwt
            .as_ref()
            .filter(|_| JwtVerifier::looks_like_jwt(token))
        {
            match jwt.verify(token) {
                Ok(claims) => return self.jwt_identity(claims, ip),
                Err(error @ (AuthError::TokenExpired | AuthError::TokenNotYetValid)) => {
                    return Err(error)
                }
                Err(_) => {}
            }
        }
        let wait = self.shared.guard.failed(ip);
        warn!(%ip, backoff_secs = wait.as_secs(), "failed login: invalid token");
        Err(AuthError::BadToken)
    }

    /// The identity a valid JWT gives: a user of the users file keeps its
    /// name, connection limit and grants, which the token can narrow but
    /// not widen; any other subject gets the token's rooms (every room if
    /// it names none) and [`DEFAULT_MAX_CONNECTIONS`].
    fn jwt_identity(&self, claims: tokens::JwtClaims, ip: IpAddr) -> Result<Identity, AuthError> {
        let narrow = |file: &Grants, token: Option<Grants>| match token {
            Some(token) => file.intersect(&token),
            None => file.clone(),
        };
        let entry = self
            .users
            .as_ref()
            .and_then(|users| users.find(&claims.subject));
        let identity = match entry {
            // Found by look-alike (`AIice`, `ALICE` for `alice`): a token
            // for a name that could pass for a user's is not that user's.
            Some(entry) if entry.name() != claims.subject => {
                warn!(%ip, user = entry.name(), "JWT refused: its subject looks like a user of the users file without being that user's name");
                return Err(AuthError::BadToken);
            }
            Some(entry) => Identity {
                user: Some(entry.name().to_owned()),
                join: narrow(entry.join(), claims.join),
                send: narrow(entry.send(), claims.send),
                direct: narrow(entry.direct(), claims.direct),
                max_connections: Some(entry.max_connections()),
                expires_at: Some(claims.expires_at),
                method: Method::Jwt,
            },
            None => {
                let name = Name::new(&claims.subject).ok().filter(|name| {
                    // `bob-2` beside a user `bob` would take bob's name.
                    !self
                        .users
                        .as_ref()
                        .is_some_and(|u| u.is_reserved(name.as_str()))
                });
                let Some(name) = name else {
                    warn!(%ip, "JWT refused: its subject is not a valid name, or is reserved");
                    return Err(AuthError::BadToken);
                };
                let send = claims.send.unwrap_or_default();
                Identity {
                    user: Some(name.as_str().to_owned()),
                    join: claims.join.unwrap_or_default(),
                    direct: claims.direct.unwrap_or_else(|| direct_default(&send)),
                    send,
                    max_connections: Some(DEFAULT_MAX_CONNECTIONS),
                    expires_at: Some(claims.expires_at),
                    method: Method::Jwt,
                }
            }
        };
        Ok(identity)
    }

    /// Takes a place for a newly authenticated connection of `identity`'s
    /// user and gives the name it goes by (see [`connections`]): `None`
    /// for an identity without a user (a static token). Keep the
    /// [`UserConnection`] while the client is connected.
    pub fn connect(&self, identity: &Identity) -> Result<Option<UserConnection>, AuthError> {
        match (&identity.user, identity.max_connections) {
            (Some(user), max) => self
                .shared
                .connections
                .claim(user, max.unwrap_or(DEFAULT_MAX_CONNECTIONS))
                .map(Some),
            (None, _) => Ok(None),
        }
    }

    /// Whether `name` is kept for a user, so that nobody else may take it:
    /// the name of a user of the users file or of a user connected now
    /// (by JWT), or one of the names their further connections get
    /// (`alice-2`), or a name that could be mistaken for one of these
    /// (compared as the hub compares names: `Alice`, `AIice`, `аlice`).
    pub fn is_reserved(&self, name: &str) -> bool {
        if self
            .users
            .as_ref()
            .is_some_and(|users| users.is_reserved(name))
        {
            return true;
        }
        let connections = &self.shared.connections;
        connections.is_connected(name)
            || users::strip_counter(&comparison_key(name))
                .is_some_and(|base| connections.is_connected_key(base))
    }
}

#[cfg(test)]
mod tests;
