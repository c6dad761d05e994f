//! The text mode: one line per message or command, for people at `nc` or
//! telnet and for simple scripts.
//!
//! The server's lines are told apart by their first character (see
//! docs/protocol.md): `[` a message (`[#room] name: text` or
//! `[dm] name: text`), `*` a notice, `!` an error. Welcome and ack lines set
//! by the operator are sent verbatim.

use bytes::{BufMut, Bytes, BytesMut};

use super::terminal::put_inert;
use super::{
    Decode, ErrorCode, Input, LineDecoder, Protocol, ProtocolError, Reply, Request, Secret, Tag,
    TEXT_HEX_SLOT, TEXT_SLOT,
};
use crate::hub::{
    Body, CloseReason, Closing, Encoding, Event, Framing, Listing, Name, NameError, Pattern,
    RoomName,
};

/// The text protocol of one listener.
#[derive(Debug, Clone)]
pub struct Text {
    max_line: usize,
    welcome: Option<Bytes>,
    ack: Option<Bytes>,
}

impl Text {
    /// A text protocol refusing lines over `max_line` bytes. `welcome`:
    /// `None` for the default welcome, `Some("")` for none, else sent
    /// verbatim. `ack`: sent verbatim after every message relayed (plain
    /// lines and `/msg`).
    pub fn new(max_line: usize, welcome: Option<&str>, ack: Option<&str>) -> Self {
        let verbatim = |text: &str| {
            if text.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(format!("{text}\n"))
            }
        };
        Text {
            max_line,
            welcome: welcome.map(verbatim),
            ack: ack.map(verbatim),
        }
    }
}

/// Splits text lines and parses them into requests.
#[derive(Debug)]
pub struct TextDecoder {
    lines: LineDecoder,
    /// Whether the client was told that it sends bytes that are not text.
    binary: BinaryNotice,
}

/// A text client that sends binary (a Modbus frame, a device's packet) is
/// told once where such bytes belong; its lines are relayed as ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryNotice {
    NotSeen,
    /// Seen: the notice follows the line that had them.
    Due,
    Told,
}

impl Decode for TextDecoder {
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        if self.binary == BinaryNotice::Due {
            self.binary = BinaryNotice::Told;
            let error = ProtocolError::new(
                ErrorCode::NotText,
                "you sent bytes that are not text (control characters, or not UTF-8): they were relayed as a line, which text clients see escaped (^A); a device or a binary protocol belongs on a raw listener (raw://HOST:PORT), which relays bytes exactly (said once)",
            );
            return Some(Input::Invalid { error, tag: None });
        }
        loop {
            let parsed = match self.lines.next_line(buf, eof)? {
                Ok(line) => parse_line(line),
                Err(too_long) => Some(Err(too_long.into())),
            };
            if let Some(Ok(Request::Say { body, .. })) = &parsed {
                if self.binary == BinaryNotice::NotSeen && !is_typed_text(&body.bytes) {
                    self.binary = BinaryNotice::Due;
                }
            }
            match parsed {
                Some(Ok(request)) => return Some(Input::Request { request, tag: None }),
                Some(Err(error)) => return Some(Input::Invalid { error, tag: None }),
                None => continue,
            }
        }
    }
}

const HELP: &str = "\
* commands:
*   TEXT              say TEXT to your current room
*   //TEXT            say /TEXT (double a leading slash)
*   /nick NAME        change your name
*   /hello [name=NAME] [room=ROOM]  as the first line: arrive named, in ROOM
*   /join ROOM        join ROOM (made if new); your messages go there
*   /leave [ROOM]     leave ROOM (default: the current room)
*   /msg NAME TEXT    send TEXT to NAME alone
*   /hex NAME|#ROOM HEX  send bytes, written in hex (01 03 0A), to a device or room
*   /hex on|off       show every message as hex bytes, or as text again
*   /who [ROOM [PAT]] who is in ROOM (default: the current room)
*   /rooms [PATTERN]  list the rooms, largest first (PATTERN: dev-* or a part)
*   /history [N]      show the last N messages of your room (default 20), where it keeps them
*   /login USER PASS  log in (where the server asks for it)
*   /auth TOKEN       authenticate with a token (where the server asks for it)
*   /ping             check the connection (answer: * pong)
*   /quit             disconnect
* server lines: [#room] name: text | [dm] name: text | * notice | ! error
";

/// Parses one line (without its newline). `None` for an empty line.
pub fn parse_line(line: Bytes) -> Option<Result<Request, ProtocolError>> {
    if line.is_empty() {
        return None;
    }
    if line.starts_with(b"//") {
        return Some(Ok(Request::Say {
            room: None,
            body: Body::line(line.slice(1..)),
        }));
    }
    if line[0] != b'/' {
        return Some(Ok(Request::Say {
            room: None,
            body: Body::line(line),
        }));
    }
    let (command, args) = split_word(line.slice(1..));
    let command = String::from_utf8_lossy(&command).to_lowercase();
    let one_word = |args: &Bytes| {
        let (word, rest) = split_word(args.clone());
        (!word.is_empty() && rest.is_empty()).then_some(word)
    };
    let optional_room =
        |args: &Bytes, usage_text: &str| -> Result<Option<RoomName>, ProtocolError> {
            if args.is_empty() {
                return Ok(None);
            }
            match one_word(args) {
                Some(word) => room(&word).map(Some),
                None => usage(usage_text),
            }
        };
    Some(match command.as_str() {
        "nick" | "name" => match one_word(&args) {
            Some(word) => Name::from_bytes(&word)
                .map(Request::Nick)
                .map_err(invalid(ErrorCode::InvalidName)),
            None => usage("/nick NAME (a name has no spaces)"),
        },
        "join" => match one_word(&args) {
            Some(word) => room(&word).map(Request::Join),
            None => usage("/join ROOM"),
        },
        "hello" => hello_request(args),
        "leave" | "part" => optional_room(&args, "/leave [ROOM]").map(Request::Leave),
        "msg" | "dm" => {
            let (to, text) = split_word(args);
            if to.is_empty() || text.is_empty() {
                usage("/msg NAME TEXT")
            } else {
                Name::from_bytes(&to)
                    .map(|to| Request::Direct {
                        to,
                        body: Body::line(text),
                    })
                    .map_err(invalid(ErrorCode::InvalidName))
            }
        }
        "hex" => {
            let (target, hex) = split_word(args);
            if hex.is_empty() && (&target[..] == b"on" || &target[..] == b"off") {
                return Some(Ok(Request::ShowHex(&target[..] == b"on")));
            }
            if target.is_empty() || hex.is_empty() {
                usage("/hex NAME HEX or /hex #ROOM HEX, e.g. /hex dev-7 01 03 00 00 00 0A C5 CD")
            } else {
                hex_request(&target, &hex)
            }
        }
        "who" | "names" => {
            let (target, pattern_text) = split_word(args.clone());
            let (pattern_word, rest) = split_word(pattern_text);
            if !rest.is_empty() {
                usage("/who [ROOM [PATTERN]]")
            } else {
                optional_room(&target, "/who [ROOM [PATTERN]]").and_then(|room| {
                    Ok(Request::Who(room, optional_pattern(&pattern_word)?))
                })
            }
        }
        "rooms" | "list" => match one_word(&args) {
            Some(word) => optional_pattern(&word).map(Request::Rooms),
            None if args.is_empty() => Ok(Request::Rooms(None)),
            None => usage("/rooms [PATTERN] (a pattern has no spaces)"),
        },
        "auth" | "token" => match one_word(&args) {
            Some(token) => Ok(Request::Auth(Secret(
                String::from_utf8_lossy(&token).into_owned(),
            ))),
            None => usage("/auth TOKEN"),
        },
        "login" => {
            let (user, password) = split_word(args);
            if user.is_empty() || password.is_empty() {
                usage("/login USER PASSWORD")
            } else {
                Ok(Request::Login {
                    user: String::from_utf8_lossy(&user).into_owned(),
                    password: Secret(String::from_utf8_lossy(&password).into_owned()),
                })
            }
        }
        "history" | "hist" => match one_word(&args) {
            None if args.is_empty() => Ok(Request::History {
                room: None,
                limit: None,
                before: None,
            }),
            Some(word) => match std::str::from_utf8(&word).ok().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => Ok(Request::History {
                    room: None,
                    limit: Some(n),
                    before: None,
                }),
                _ => usage("/history [N] (N: how many messages, 1 or more)"),
            },
            None => usage("/history [N]"),
        },
        "ping" => no_args(&args, Request::Ping, "/ping"),
        "help" => no_args(&args, Request::Help, "/help"),
        // IRC clients send a parting message with /quit; it is not shown.
        "quit" | "exit" => Ok(Request::Quit),
        _ => Err(ProtocolError::new(
            ErrorCode::UnknownCommand,
            format!(
                "unknown command /{command}; type /help for the list of commands, or start the line with // to say it"
            ),
        )),
    })
}

/// `/hello [name=NAME] [room=ROOM]`, in any order.
fn hello_request(mut args: Bytes) -> Result<Request, ProtocolError> {
    const USAGE: &str = "/hello [name=NAME] [room=ROOM]";
    let (mut name, mut room_to) = (None, None);
    loop {
        let (word, rest) = split_word(args);
        if word.is_empty() {
            break;
        }
        args = rest;
        match word.iter().position(|&b| b == b'=') {
            Some(4) if word.starts_with(b"name") && name.is_none() => {
                name = Some(Name::from_bytes(&word[5..]).map_err(invalid(ErrorCode::InvalidName))?);
            }
            Some(4) if word.starts_with(b"room") && room_to.is_none() => {
                room_to = Some(room(&word.slice(5..))?);
            }
            _ => return usage(USAGE),
        }
    }
    Ok(Request::Hello {
        name,
        room: room_to,
    })
}

/// `/hex TARGET BYTES`: the bytes, exactly, to a client or a room.
fn hex_request(target: &[u8], hex: &[u8]) -> Result<Request, ProtocolError> {
    let bytes = crate::device::hex::parse(&String::from_utf8_lossy(hex))
        .map_err(|why| ProtocolError::new(ErrorCode::BadHex, why.to_string()))?;
    let body = Body::chunk(bytes);
    match target.strip_prefix(b"#") {
        Some(room_name) => Ok(Request::Say {
            room: Some(room(room_name)?),
            body,
        }),
        None => Name::from_bytes(target)
            .map(|to| Request::Direct { to, body })
            .map_err(invalid(ErrorCode::InvalidName)),
    }
}

fn usage<T>(text: &str) -> Result<T, ProtocolError> {
    Err(ProtocolError::new(
        ErrorCode::BadArguments,
        format!("usage: {text}; type /help for the list of commands"),
    ))
}

fn no_args(args: &Bytes, request: Request, usage: &str) -> Result<Request, ProtocolError> {
    if args.is_empty() {
        Ok(request)
    } else {
        Err(ProtocolError::new(
            ErrorCode::BadArguments,
            format!("usage: {usage} (no arguments); type /help for the list of commands"),
        ))
    }
}

fn optional_pattern(word: &[u8]) -> Result<Option<Pattern>, ProtocolError> {
    if word.is_empty() {
        return Ok(None);
    }
    Ok(Some(Pattern::new(&String::from_utf8_lossy(word))?))
}

fn room(word: &[u8]) -> Result<RoomName, ProtocolError> {
    RoomName::parse_user(word).map_err(invalid(ErrorCode::InvalidRoom))
}

fn invalid(code: ErrorCode) -> impl Fn(NameError) -> ProtocolError {
    move |error| ProtocolError::new(code, error.to_string())
}

/// Splits off the first space-separated word; the rest has its leading
/// spaces removed.
fn split_word(text: Bytes) -> (Bytes, Bytes) {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let text = text.slice(start..);
    let end = text.iter().position(is_space).unwrap_or(text.len());
    let word = text.slice(..end);
    let rest = text.slice(end..);
    let skip = rest.iter().position(|b| !is_space(b)).unwrap_or(rest.len());
    (word, rest.slice(skip..))
}

/// Most lines one message is shown as. A message holding line breaks (a
/// raw chunk, a JSON text) is shown one line per line, each after the
/// sender's prefix so no line can pass for another sender's; past this
/// many, the rest is summed up in one line. This bounds what one message
/// can cost a text client's queue: 64 KiB of line breaks would otherwise
/// become 32,768 prefixed lines.
pub const MAX_LINES_PER_MESSAGE: usize = 1000;

/// Appends `event` as text clients see it; with `hex`, every message
/// body as hex bytes (`/hex on`).
fn encode(event: &Event, out: &mut BytesMut, hex: bool) {
    match event {
        Event::Message {
            room, from, body, ..
        } => {
            let (room, from) = (room.as_str().as_bytes(), from.as_str().as_bytes());
            message_lines(&[b"[#", room, b"] ", from, b": "], body, hex, out)
        }
        Event::Replayed { room, kept } => {
            let now = crate::hub::unix_millis(std::time::SystemTime::now());
            let clock = crate::units::format_clock(kept.at, now);
            let (room, from) = (room.as_str().as_bytes(), kept.from.as_str().as_bytes());
            let prefix: [&[u8]; 7] = [b"[#", room, b" ", clock.as_bytes(), b"] ", from, b": "];
            message_lines(&prefix, &kept.body, hex, out)
        }
        Event::HistoryEnd { room, count } => out.put(notice(format_args!(
            "end of history (#{room}, {count} {})",
            plural(*count, "message", "messages")
        ))),
        Event::Gap { room, gap } => out.put(notice(format_args!(
            "messages of #{room} were lost: {}",
            gap_reason(gap.reason)
        ))),
        Event::Direct { from, body } => {
            message_lines(&[b"[dm] ", from.as_str().as_bytes(), b": "], body, hex, out)
        }
        Event::Joined { room, name } => out.put(notice(format_args!("{name} joined #{room}"))),
        Event::Left { room, name, reason } => {
            out.put(notice(format_args!("{name} left #{room} ({reason})")))
        }
        Event::Renamed { old, new } => out.put(notice(format_args!("{old} is now known as {new}"))),
        Event::Notice { text, .. } => out.put(notice(format_args!("{text}"))),
    }
}

/// Writes `body` as one or more lines, each after `prefix` (the parts of
/// `prefix` in a row), made safe for a terminal (see [`super::terminal`]);
/// as hex on one line if it is bytes that are not readable text, or if
/// `hex` says so.
fn message_lines(prefix: &[&[u8]], body: &Body, hex: bool, out: &mut BytesMut) {
    if hex || shown_as_hex(body) {
        for part in prefix {
            out.put_slice(part);
        }
        out.put_slice(b"<hex ");
        out.put_slice(crate::device::hex::format(&body.bytes).as_bytes());
        out.put_slice(b">\n");
        return;
    }
    let bytes = &body.bytes[..];
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let prefix_len: usize = prefix.iter().map(|part| part.len()).sum();
    out.reserve(prefix_len + bytes.len() + 1);
    let put_prefix = |out: &mut BytesMut| {
        for part in prefix {
            out.put_slice(part);
        }
    };
    for (shown, segment) in bytes.split(|b| *b == b'\n').enumerate() {
        if shown + 1 == MAX_LINES_PER_MESSAGE {
            let rest = memchr::memchr_iter(b'\n', bytes).count() + 1 - shown;
            if rest > 1 {
                put_prefix(out);
                out.put_slice(
                    format!(
                        "[{rest} more lines not shown: text clients see at most {MAX_LINES_PER_MESSAGE} lines of one message]\n"
                    )
                    .as_bytes(),
                );
                return;
            }
        }
        let segment = segment.strip_suffix(b"\r").unwrap_or(segment);
        put_prefix(out);
        put_inert(out, segment);
        out.put_u8(b'\n');
    }
}

/// Whether a line is what a person or a script could have typed: UTF-8,
/// with no control characters but those keyboards and terminals send (tab,
/// backspace, escape sequences, DEL). Telnet's option negotiation (0xFF
/// ...) is not taken for binary either.
fn is_typed_text(line: &[u8]) -> bool {
    // Most lines are printable ASCII: one pass over the bytes says so.
    if line.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t') {
        return true;
    }
    let typed = |c: char| !c.is_control() || matches!(c, '\t' | '\r' | '\x08' | '\x1b' | '\x7f');
    match std::str::from_utf8(line) {
        Ok(text) => text.chars().all(typed),
        Err(_) => line.first() == Some(&0xFF),
    }
}

/// Whether a body is bytes from a stream (a device, a raw client) that are
/// not text a person can read: not UTF-8, or with control characters other
/// than tabs and line endings. Text clients see those as hex, like a
/// serial tool shows them: `<hex 01 03 02 00 0A>`.
fn shown_as_hex(body: &Body) -> bool {
    if body.framing != Framing::Chunk {
        return false;
    }
    let readable = |b: &u8| (0x20..0x7f).contains(b) || matches!(b, b'\t' | b'\n' | b'\r');
    if body.bytes.iter().all(readable) {
        return false;
    }
    match std::str::from_utf8(&body.bytes) {
        Ok(text) => text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        Err(_) => true,
    }
}

fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 {
        one
    } else {
        many
    }
}

/// Why a resuming client lost messages, for a person.
pub(super) fn gap_reason(reason: crate::hub::GapReason) -> &'static str {
    match reason {
        crate::hub::GapReason::TooOld => {
            "the room no longer keeps all that came after your position (history limits)"
        }
        crate::hub::GapReason::Epoch => {
            "the room's history was lost since your position (a restart, or all of it expired)"
        }
        crate::hub::GapReason::NotKept => "the room keeps no history",
        crate::hub::GapReason::Unrecorded => {
            "messages said while the cluster's Redis was out of reach were delivered then but never kept"
        }
    }
}

fn notice(text: std::fmt::Arguments<'_>) -> Bytes {
    Bytes::from(format!("* {text}\n"))
}

/// How many a listing shows: `5`, or `100 of 64001` when it shows part.
fn count<T>(listing: &Listing<T>) -> String {
    if listing.items.len() == listing.total {
        listing.total.to_string()
    } else {
        format!("{} of {}", listing.items.len(), listing.total)
    }
}

/// What to add to a listing that left matches out.
fn narrow<T>(listing: &Listing<T>, how: &str) -> String {
    if listing.more {
        format!("; more not shown, narrow with {how}")
    } else {
        String::new()
    }
}

impl Protocol for Text {
    type Decoder = TextDecoder;
    const SLOT: usize = TEXT_SLOT;

    fn decode(&self, decoder: &mut Self::Decoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        decoder.decode(buf, eof)
    }

    fn decoder(&self) -> TextDecoder {
        TextDecoder {
            lines: LineDecoder::new(self.max_line),
            binary: BinaryNotice::NotSeen,
        }
    }

    fn auth_required(&self, within: std::time::Duration) -> Bytes {
        notice(format_args!(
            "this server asks who you are: /login USER PASSWORD or /auth TOKEN, within {}",
            crate::units::format_duration(within)
        ))
    }

    fn welcome(&self, name: &Name, room: Option<&RoomName>) -> Bytes {
        if let Some(welcome) = &self.welcome {
            return welcome.clone();
        }
        match room {
            Some(room) => notice(format_args!(
                "welcome {name}! you are in #{room}; type /help for commands"
            )),
            None => notice(format_args!(
                "welcome {name}! you are in no room; type /help for commands"
            )),
        }
    }

    fn encode_event(event: &Event, out: &mut BytesMut) {
        encode(event, out, false)
    }

    const ENCODINGS: [Encoding; 2] = [
        Self::ENCODING,
        Encoding {
            slot: TEXT_HEX_SLOT,
            encode: |event, out| encode(event, out, true),
        },
    ];

    fn reply(&self, reply: &Reply, _tag: &Tag) -> Bytes {
        match reply {
            Reply::Sent => self.ack.clone().unwrap_or_default(),
            Reply::Joined { room, members } => notice(format_args!(
                "you joined #{room} ({members} {}); your messages go there now",
                if *members == 1 { "member" } else { "members" }
            )),
            Reply::Left {
                room,
                current: Some(current),
            } => notice(format_args!(
                "you left #{room}; your messages go to #{current} now"
            )),
            Reply::Left {
                room,
                current: None,
            } => notice(format_args!(
                "you left #{room}; you are in no room now, /join one to talk"
            )),
            Reply::Renamed { new, .. } => notice(format_args!("you are now known as {new}")),
            Reply::Hello {
                name,
                room,
                members,
            } => notice(format_args!(
                "hello {name}: you are in #{room} ({members} {}); your messages go there",
                if *members == 1 { "member" } else { "members" }
            )),
            Reply::Who { room, names } => {
                let list: Vec<&str> = names.items.iter().map(Name::as_str).collect();
                notice(format_args!(
                    "#{room} ({}): {}{}",
                    count(names),
                    list.join(", "),
                    narrow(names, &format!("/who {room} PATTERN"))
                ))
            }
            Reply::Rooms(rooms) if rooms.total == 0 => notice(format_args!("no rooms")),
            Reply::Rooms(rooms) if rooms.items.is_empty() => {
                notice(format_args!("no rooms match (of {})", rooms.total))
            }
            Reply::Rooms(rooms) => {
                let list: Vec<String> = rooms
                    .items
                    .iter()
                    .map(|room| format!("#{} ({})", room.name, room.members))
                    .collect();
                notice(format_args!(
                    "rooms ({}): {}{}",
                    count(rooms),
                    list.join(", "),
                    narrow(rooms, "/rooms PATTERN")
                ))
            }
            Reply::History(shown) => notice(format_args!(
                "end of history (#{}, {} {}{})",
                shown.room,
                shown.count,
                plural(shown.count, "message", "messages"),
                if shown.more {
                    "; older ones are kept: /history with a larger N"
                } else {
                    ""
                }
            )),
            Reply::Pong => notice(format_args!("pong")),
            Reply::ShowHex(true) => notice(format_args!(
                "hex on: every message is shown as hex bytes (<hex 48 69>); /hex off to go back"
            )),
            Reply::ShowHex(false) => notice(format_args!("hex off: messages are shown as text")),
            Reply::Authenticated {
                name,
                user: Some(user),
            } if user != name.as_str() => {
                notice(format_args!("authenticated as {user}; your name is {name}"))
            }
            Reply::Authenticated { name, .. } => {
                notice(format_args!("authenticated; your name is {name}"))
            }
            Reply::Help => Bytes::from_static(HELP.as_bytes()),
            Reply::Quit => Bytes::new(),
        }
    }

    fn error(&self, error: &ProtocolError, _tag: &Tag) -> Bytes {
        Bytes::from(format!("! {}\n", error.message))
    }

    fn goodbye(&self, closing: &Closing) -> Bytes {
        match &closing.reason {
            CloseReason::Quit | CloseReason::ClientClosed => notice(format_args!("bye")),
            reason => Bytes::from(format!("! disconnected: {reason}\n")),
        }
    }

    fn refusal(&self, reason: &str) -> Bytes {
        Bytes::from(format!("! refused: {reason}\n"))
    }
}

#[cfg(test)]
mod tests;
