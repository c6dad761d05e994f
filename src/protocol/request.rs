//! What a client can ask for, whatever its wire format, and how the hub
//! answers.

use crate::hub::{
    Body, HistoryShown, HubError, Listing, Name, Offset, Pattern, RoomInfo, RoomName, Session,
};

/// How many messages `/history` shows when not told.
pub const HISTORY_PAGE: usize = 20;

/// A client's request, decoded from any wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Say something to a room (default: the current room).
    Say {
        /// The room, if named.
        room: Option<RoomName>,
        /// What to say.
        body: Body,
    },
    /// Say something to one client.
    Direct {
        /// The recipient.
        to: Name,
        /// What to say.
        body: Body,
    },
    /// Join a room and make it current.
    Join(RoomName),
    /// Join a room (or resume one joined already), first shown what it
    /// said after `since`, or told of the gap.
    JoinSince {
        /// The room.
        room: RoomName,
        /// The position of the last message the client has.
        since: Offset,
    },
    /// Show the last messages a room keeps (default: the current room),
    /// before `before` (default: the newest).
    History {
        /// The room, if named.
        room: Option<RoomName>,
        /// How many (default 20, at most the list limit).
        limit: Option<usize>,
        /// Page back from this position. Boxed: a request is held in the
        /// future of every connection.
        before: Option<Box<Offset>>,
    },
    /// Leave a room (default: the current room).
    Leave(Option<RoomName>),
    /// Change name.
    Nick(Name),
    /// Say who the client is and where it goes, as it arrives: its name
    /// and room, announced only there (later, it is `Nick` and `Join`).
    Hello {
        /// The name to take.
        name: Option<Name>,
        /// The room to go to instead of the listener's.
        room: Option<RoomName>,
    },
    /// List the members of a room (default: the current room) whose names
    /// match the pattern.
    Who(Option<RoomName>, Option<Pattern>),
    /// List the rooms whose names match the pattern, largest first.
    Rooms(Option<Pattern>),
    /// Check the connection.
    Ping,
    /// List the commands.
    Help,
    /// Disconnect.
    Quit,
    /// Prove who the client is with a token: static, or a JWT.
    Auth(Secret),
    /// A device's registration packet: who it is, and where it goes.
    Register(Box<Registration>),
    /// A device's heartbeat packet: it is alive, and says nothing.
    Heartbeat,
    /// A device's Modbus frame failed its CRC (it was relayed all the same).
    BadFrame,
    /// Show message bodies as hex bytes from now on, or not (`/hex on`).
    ShowHex(bool),
    /// Log in as a user of the users file.
    Login {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// A registered device's identity, and the name and room its listener
/// gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Who it is, as its registration said.
    pub identity: crate::device::Identity,
    /// Its name (`dev-{id}`).
    pub name: Name,
    /// Its room.
    pub room: RoomName,
}

/// A password or token: never shown, in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The answer to a request the hub carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A message went out (to a room or a client).
    Sent,
    /// The client is now in `room`, with `members` members counting itself.
    Joined {
        /// The room.
        room: RoomName,
        /// Members now, including the client.
        members: usize,
    },
    /// The client left `room`; messages now go to `current`.
    Left {
        /// The room left.
        room: RoomName,
        /// Where plain messages go now.
        current: Option<RoomName>,
    },
    /// The client's name changed.
    Renamed {
        /// The name before.
        old: Name,
        /// The name now.
        new: Name,
    },
    /// The client said hello: its name, the room it is in, and that
    /// room's members counting itself.
    Hello {
        /// Its name.
        name: Name,
        /// Where it is.
        room: RoomName,
        /// Members there now.
        members: usize,
    },
    /// Members of a room: at most the list limit, sorted.
    Who {
        /// The room.
        room: RoomName,
        /// Its members, or those matching the pattern.
        names: Listing<Name>,
    },
    /// Rooms, largest first: at most the list limit.
    Rooms(Listing<RoomInfo>),
    /// What a room's history showed the client (the messages were queued
    /// before this answer). Boxed: a reply is held across the await of a
    /// client's queue, in the future of every connection.
    History(Box<HistoryShown>),
    /// Answer to [`Request::Ping`].
    Pong,
    /// Message bodies are shown as hex now, or not.
    ShowHex(bool),
    /// Answer to [`Request::Help`].
    Help,
    /// The client asked to leave; the connection closes after this.
    Quit,
    /// The client proved who it is; it goes by `name`.
    Authenticated {
        /// Its name now.
        name: Name,
        /// The user it logged in as, if its credentials name one.
        user: Option<String>,
    },
}

/// Why a request was refused or input not understood. The connection goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// Stable, machine-readable, e.g. `name_taken`, `line_too_long`.
    pub code: &'static str,
    /// For people: what was wrong and what to do instead.
    pub message: String,
}

/// The codes of the errors the protocol layer itself finds (the hub's
/// and the credentials' come with their errors: [`HubError::code`],
/// [`crate::auth::AuthError::code`]). Each is a row of docs/protocol.md's
/// table of error codes, which a test holds to this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A line over `--max-line`.
    LineTooLong,
    /// A JSON line that is not JSON.
    BadJson,
    /// JSON that is not a request this server knows.
    BadRequest,
    /// `bytes` that are not base64.
    BadBytes,
    /// `/hex` with what is not hex.
    BadHex,
    /// A listing's pattern too long.
    BadPattern,
    /// A name that breaks the naming rules.
    InvalidName,
    /// A room name that breaks the naming rules.
    InvalidRoom,
    /// A client over its rate limits (said once per spell).
    RateLimited,
    /// A text `/command` that does not exist.
    UnknownCommand,
    /// A text `/command` with the wrong arguments.
    BadArguments,
    /// A request before authenticating where credentials are asked for.
    AuthRequired,
    /// Credentials where none are asked for, or a second time.
    AuthNotNeeded,
    /// Bytes that are not text, sent to a text listener (said once).
    NotText,
    /// A registration from a client that is not a device.
    NotADevice,
    /// An offset (`since`, `before`) that is not a position.
    BadOffset,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::LineTooLong,
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::BadBytes,
        ErrorCode::BadHex,
        ErrorCode::BadPattern,
        ErrorCode::InvalidName,
        ErrorCode::InvalidRoom,
        ErrorCode::RateLimited,
        ErrorCode::UnknownCommand,
        ErrorCode::BadArguments,
        ErrorCode::AuthRequired,
        ErrorCode::AuthNotNeeded,
        ErrorCode::NotText,
        ErrorCode::NotADevice,
        ErrorCode::BadOffset,
    ];

    /// As clients see it: `line_too_long`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadBytes => "bad_bytes",
            ErrorCode::BadHex => "bad_hex",
            ErrorCode::BadPattern => "bad_pattern",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::BadArguments => "bad_arguments",
            ErrorCode::AuthRequired => "auth_required",
            ErrorCode::AuthNotNeeded => "auth_not_needed",
            ErrorCode::NotText => "not_text",
            ErrorCode::NotADevice => "not_a_device",
            ErrorCode::BadOffset => "bad_offset",
        }
    }
}

impl ProtocolError {
    /// An error the protocol layer found.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError::coded(code.as_str(), message)
    }

    /// An error with the code another layer gave it.
    fn coded(code: &'static str, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
        }
    }
}

impl From<HubError> for ProtocolError {
    fn from(error: HubError) -> Self {
        ProtocolError::coded(error.code(), error.to_string())
    }
}

impl From<crate::auth::AuthError> for ProtocolError {
    fn from(error: crate::auth::AuthError) -> Self {
        ProtocolError::coded(error.code(), error.to_string())
    }
}

impl From<crate::hub::PatternTooLong> for ProtocolError {
    fn from(error: crate::hub::PatternTooLong) -> Self {
        ProtocolError::new(ErrorCode::BadPattern, error.to_string())
    }
}

impl From<super::LineError> for ProtocolError {
    fn from(error: super::LineError) -> Self {
        ProtocolError::new(
            ErrorCode::LineTooLong,
            format!(
                "line too long: the most a line may have is {} bytes (max line); it was discarded",
                error.max_line
            ),
        )
    }
}

/// Carries out `request` for `session`. Messages wait here while a
/// recipient's queue is congested: that is how flow control reaches the
/// sender's socket.
pub async fn apply(session: &mut Session, request: Request) -> Result<Reply, ProtocolError> {
    let reply = match request {
        Request::Say { room, body } => {
            session.say(room.as_ref(), body).await?;
            Reply::Sent
        }
        Request::Direct { to, body } => {
            session.direct(&to, body).await?;
            Reply::Sent
        }
        Request::Join(room) => {
            let hold = session.ready_to_join(&room).await;
            let members = session.join(room.clone())?;
            drop(hold);
            Reply::Joined { room, members }
        }
        Request::JoinSince { room, since } => {
            let members = session.join_since(room.clone(), since).await?;
            Reply::Joined { room, members }
        }
        Request::History {
            room,
            limit,
            before,
        } => Reply::History(Box::new(
            session
                .history(
                    room.as_ref(),
                    limit.unwrap_or(HISTORY_PAGE),
                    before.map(|before| *before),
                )
                .await?,
        )),
        Request::Leave(room) => {
            let room = match room {
                Some(room) => room,
                None => session.current_room().cloned().ok_or(HubError::NoRoom)?,
            };
            session.leave(&room)?;
            Reply::Left {
                room,
                current: session.current_room().cloned(),
            }
        }
        Request::Nick(name) => {
            let old = session.rename(name.clone()).await?;
            Reply::Renamed { old, new: name }
        }
        Request::Hello { name, room } => {
            let (name, room, members) = session.hello(name, room).await?;
            Reply::Hello {
                name,
                room,
                members,
            }
        }
        Request::Who(room, pattern) => {
            let (room, names) = session.who(room.as_ref(), pattern.as_ref())?;
            Reply::Who { room, names }
        }
        Request::Rooms(pattern) => Reply::Rooms(session.rooms(pattern.as_ref())),
        Request::Ping => Reply::Pong,
        Request::BadFrame => {
            tracing::debug!(name = %session.name(), client = %session.id(), "a Modbus frame failed its CRC");
            session.bad_frame();
            Reply::Pong
        }
        Request::ShowHex(on) => {
            session.use_alternate_encoding(on);
            Reply::ShowHex(on)
        }
        Request::Heartbeat => {
            session.heartbeat();
            Reply::Pong
        }
        // The connection registers its device, where its listener asks.
        Request::Register(_) => {
            return Err(ProtocolError::new(
                ErrorCode::NotADevice,
                "registrations are for devices on raw listeners with register=",
            ))
        }
        Request::Help => Reply::Help,
        Request::Quit => Reply::Quit,
        // The connection handles credentials where a listener asks for
        // them; anywhere else, they are not taken.
        Request::Auth(_) | Request::Login { .. } => {
            return Err(ProtocolError::new(
                ErrorCode::AuthNotNeeded,
                "no credentials are asked for here: this listener is open, or you authenticated already",
            ))
        }
    };
    // Joins, leaves and renames are news to others: their notices are
    // flow-controlled like messages.
    session.until_receivers_keep_up().await;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// The codes in docs/protocol.md's table of error codes.
    fn documented() -> Vec<&'static str> {
        let doc = include_str!("../../docs/protocol.md");
        let (_, table) = doc
            .split_once("### Error codes")
            .expect("docs/protocol.md has a table of error codes");
        table
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter_map(|row| row.split('|').nth(1))
            .flat_map(|cell| cell.split(',').map(|code| code.trim().trim_matches('`')))
            .filter(|code| !code.is_empty() && *code != "code" && !code.starts_with("---"))
            .collect()
    }

    #[test]
    fn every_error_code_the_protocol_sends_is_in_the_documents_table() {
        let table = documented();
        assert!(table.len() >= 20, "{table:?}");
        for code in ErrorCode::ALL {
            assert!(
                table.contains(&code.as_str()),
                "{} is not in docs/protocol.md's table of error codes",
                code.as_str()
            );
        }
    }
}
