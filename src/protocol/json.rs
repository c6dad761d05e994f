//! The JSON mode: one JSON object per line, for programs. Requests and
//! events carry a `type`; a request's optional `id` is echoed in its answer.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    Decode, ErrorCode, Input, LineDecoder, Protocol, ProtocolError, Reply, Request, Secret, Tag,
    JSON_SLOT,
};
use crate::hub::{Body, Closing, Event, Name, NameError, Offset, Pattern, RoomName};

/// The JSON protocol of one listener.
#[derive(Debug, Clone)]
pub struct Json {
    max_line: usize,
}

impl Json {
    /// A JSON protocol refusing objects over `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Json { max_line }
    }
}

/// Splits lines and parses each as a JSON request.
#[derive(Debug)]
pub struct JsonDecoder {
    lines: LineDecoder,
}

/// A request as it appears on the wire.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Wire {
    #[serde(alias = "message", alias = "send")]
    Say {
        room: Option<String>,
        /// `{"type":"send","to":NAME,...}` is a direct message.
        to: Option<String>,
        text: Option<String>,
        bytes: Option<String>,
    },
    #[serde(alias = "msg")]
    Direct {
        to: String,
        text: Option<String>,
        bytes: Option<String>,
    },
    Join {
        room: String,
        since: Option<String>,
    },
    History {
        room: Option<String>,
        limit: Option<usize>,
        before: Option<String>,
    },
    Leave {
        room: Option<String>,
    },
    Nick {
        name: String,
    },
    Hello {
        name: Option<String>,
        room: Option<String>,
    },
    Who {
        room: Option<String>,
        pattern: Option<String>,
    },
    Rooms {
        pattern: Option<String>,
    },
    Ping {},
    Help {},
    Quit {},
    #[serde(alias = "login")]
    Auth {
        token: Option<String>,
        user: Option<String>,
        password: Option<String>,
    },
}

impl Decode for JsonDecoder {
    fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        loop {
            let line = match self.lines.next_line(buf, eof)? {
                Ok(line) => line,
                Err(too_long) => {
                    return Some(Input::Invalid {
                        error: too_long.into(),
                        tag: None,
                    })
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (request, tag) = parse_request(&line);
            return Some(match request {
                Ok(request) => Input::Request { request, tag },
                Err(error) => Input::Invalid { error, tag },
            });
        }
    }
}

/// Parses one line as a request; the `id`, if any could be read, comes
/// back even when the rest is wrong.
pub fn parse_request(line: &[u8]) -> (Result<Request, ProtocolError>, Tag) {
    let mut object = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return (
                Err(ProtocolError::new(
                    ErrorCode::BadRequest,
                    r#"expected a JSON object with a "type", e.g. {"type":"say","text":"hi"}"#,
                )),
                None,
            )
        }
        Err(error) => {
            return (
                Err(ProtocolError::new(
                    ErrorCode::BadJson,
                    format!("malformed JSON: {error}"),
                )),
                None,
            )
        }
    };
    let tag = object.remove("id").map(Box::new);
    let request = serde_json::from_value::<Wire>(Value::Object(object))
        .map_err(|error| ProtocolError::new(ErrorCode::BadRequest, format!("bad request: {error}")))
        .and_then(to_request);
    (request, tag)
}

fn to_request(wire: Wire) -> Result<Request, ProtocolError> {
    let room =
        |raw: String| RoomName::parse_user(raw.as_bytes()).map_err(invalid(ErrorCode::InvalidRoom));
    let name = |raw: String| Name::new(&raw).map_err(invalid(ErrorCode::InvalidName));
    let pattern = |raw: String| Pattern::new(&raw).map_err(ProtocolError::from);
    Ok(match wire {
        Wire::Say {
            room: Some(_),
            to: Some(_),
            ..
        } => {
            return Err(ProtocolError::new(
                ErrorCode::BadRequest,
                r#"send to a "room" or to one client ("to"), not both"#,
            ))
        }
        Wire::Say {
            to: Some(to),
            text,
            bytes,
            ..
        } => Request::Direct {
            to: name(to)?,
            body: body(text, bytes)?,
        },
        Wire::Say {
            room: target,
            to: None,
            text,
            bytes,
        } => Request::Say {
            room: target.map(room).transpose()?,
            body: body(text, bytes)?,
        },
        Wire::Direct { to, text, bytes } => Request::Direct {
            to: name(to)?,
            body: body(text, bytes)?,
        },
        Wire::Join {
            room: target,
            since: None,
        } => Request::Join(room(target)?),
        Wire::Join {
            room: target,
            since: Some(since),
        } => Request::JoinSince {
            room: room(target)?,
            since: offset(&since)?,
        },
        Wire::History {
            room: target,
            limit,
            before,
        } => Request::History {
            room: target.map(room).transpose()?,
            limit,
            before: before.as_deref().map(offset).transpose()?.map(Box::new),
        },
        Wire::Leave { room: target } => Request::Leave(target.map(room).transpose()?),
        Wire::Nick { name: new } => Request::Nick(name(new)?),
        Wire::Hello {
            name: new,
            room: target,
        } => Request::Hello {
            name: new.map(name).transpose()?,
            room: target.map(room).transpose()?,
        },
        Wire::Who {
            room: target,
            pattern: filter,
        } => Request::Who(
            target.map(room).transpose()?,
            filter.map(pattern).transpose()?,
        ),
        Wire::Rooms { pattern: filter } => Request::Rooms(filter.map(pattern).transpose()?),
        Wire::Ping {} => Request::Ping,
        Wire::Help {} => Request::Help,
        Wire::Quit {} => Request::Quit,
        Wire::Auth {
            token,
            user,
            password,
        } => match (token, user, password) {
            (Some(token), None, None) => Request::Auth(Secret(token)),
            (None, Some(user), Some(password)) => Request::Login {
                user,
                password: Secret(password),
            },
            _ => {
                return Err(ProtocolError::new(
                    ErrorCode::BadRequest,
                    r#"authenticate with {"type":"auth","token":"..."} or {"type":"auth","user":"...","password":"..."}"#,
                ))
            }
        },
    })
}

/// A message given as `text`, or as base64 `bytes` (which may be anything,
/// e.g. a command for a device): exactly one of them.
fn body(text: Option<String>, bytes: Option<String>) -> Result<Body, ProtocolError> {
    match (text, bytes) {
        (Some(text), None) => Ok(Body::line(text)),
        (None, Some(encoded)) => BASE64
            .decode(encoded.as_bytes())
            .map(Body::chunk)
            .map_err(|e| {
                ProtocolError::new(ErrorCode::BadBytes, format!("\"bytes\" is not base64: {e}"))
            }),
        _ => Err(ProtocolError::new(
            ErrorCode::BadRequest,
            r#"give the message as "text", or as base64 "bytes": one of them"#,
        )),
    }
}

fn offset(text: &str) -> Result<Offset, ProtocolError> {
    text.parse().map_err(|error: crate::hub::BadOffset| {
        ProtocolError::new(ErrorCode::BadOffset, error.to_string())
    })
}

fn invalid(code: ErrorCode) -> impl Fn(NameError) -> ProtocolError {
    move |error| ProtocolError::new(code, error.to_string())
}

/// An event as JSON clients see it; `type` comes first.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum JsonEvent<'a> {
    Message {
        room: &'a RoomName,
        from: &'a Name,
        text: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<String>,
        /// When it was said (Unix milliseconds): only on messages shown
        /// again from history.
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        history: bool,
    },
    Direct {
        from: &'a Name,
        text: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<String>,
    },
    Joined {
        room: &'a RoomName,
        name: &'a Name,
    },
    Left {
        room: &'a RoomName,
        name: &'a Name,
        reason: &'a str,
    },
    Renamed {
        old: &'a Name,
        new: &'a Name,
    },
    Notice {
        code: &'a str,
        text: &'a str,
    },
    Gap {
        room: &'a RoomName,
        since: String,
        from: Option<String>,
        reason: &'static str,
        message: &'static str,
    },
}

/// One JSON object and its newline.
fn line(value: impl Serialize) -> Bytes {
    let mut out = serde_json::to_vec(&value).expect("events serialize");
    out.push(b'\n');
    Bytes::from(out)
}

fn with_tag(mut value: Value, tag: &Tag) -> Bytes {
    if let (Some(tag), Value::Object(object)) = (tag, &mut value) {
        object.insert("id".into(), (**tag).clone());
    }
    line(value)
}

fn text(body: &Body) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&body.bytes)
}

/// The exact bytes, in base64, of a body that is not UTF-8: its `text`
/// shows them with replacement characters, `bytes` as they are.
fn exact(body: &Body) -> Option<String> {
    match std::str::from_utf8(&body.bytes) {
        Ok(_) => None,
        Err(_) => Some(BASE64.encode(&body.bytes)),
    }
}

const COMMANDS: [&str; 13] = [
    "say", "direct", "join", "leave", "nick", "hello", "who", "rooms", "history", "ping", "help",
    "quit", "auth",
];

impl Protocol for Json {
    type Decoder = JsonDecoder;
    const SLOT: usize = JSON_SLOT;

    fn decode(&self, decoder: &mut Self::Decoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        decoder.decode(buf, eof)
    }

    fn decoder(&self) -> JsonDecoder {
        JsonDecoder {
            lines: LineDecoder::new(self.max_line),
        }
    }

    fn welcome(&self, name: &Name, room: Option<&RoomName>) -> Bytes {
        line(json!({ "type": "welcome", "name": name, "room": room }))
    }

    fn auth_required(&self, within: std::time::Duration) -> Bytes {
        line(json!({
            "type": "auth_required",
            "methods": ["password", "token"],
            "timeout_ms": within.as_millis() as u64,
        }))
    }

    fn encode_event(event: &Event, out: &mut BytesMut) {
        let event = match event {
            Event::Message {
                room,
                from,
                body,
                offset,
            } => JsonEvent::Message {
                room,
                from,
                text: text(body),
                bytes: exact(body),
                offset: offset.map(|offset| offset.to_string()),
                at: None,
                history: false,
            },
            Event::Replayed { room, kept } => JsonEvent::Message {
                room,
                from: &kept.from,
                text: text(&kept.body),
                bytes: exact(&kept.body),
                offset: Some(kept.offset.to_string()),
                at: Some(kept.at),
                history: true,
            },
            // The end of `?history=N`, a text listener's option.
            Event::HistoryEnd { .. } => return,
            Event::Gap { room, gap } => JsonEvent::Gap {
                room,
                since: gap.since.to_string(),
                from: gap.from.map(|from| from.to_string()),
                reason: gap.reason.code(),
                message: super::text::gap_reason(gap.reason),
            },
            Event::Direct { from, body } => JsonEvent::Direct {
                from,
                text: text(body),
                bytes: exact(body),
            },
            Event::Joined { room, name } => JsonEvent::Joined { room, name },
            Event::Left { room, name, reason } => JsonEvent::Left { room, name, reason },
            Event::Renamed { old, new } => JsonEvent::Renamed { old, new },
            Event::Notice { code, text } => JsonEvent::Notice { code, text },
        };
        let mut writer = bytes::BufMut::writer(out);
        serde_json::to_writer(&mut writer, &event).expect("events serialize");
        writer.into_inner().extend_from_slice(b"\n");
    }

    fn reply(&self, reply: &Reply, tag: &Tag) -> Bytes {
        let value = match reply {
            // A message is answered only when the client asked to be, with an id.
            Reply::Sent if tag.is_none() => return Bytes::new(),
            Reply::Sent => json!({ "type": "sent" }),
            Reply::Joined { room, members } => {
                json!({ "type": "joined", "room": room, "members": members, "you": true })
            }
            Reply::Left { room, current } => {
                json!({ "type": "left", "room": room, "current": current, "you": true })
            }
            Reply::Renamed { old, new } => {
                json!({ "type": "renamed", "old": old, "new": new, "you": true })
            }
            Reply::Hello {
                name,
                room,
                members,
            } => json!({ "type": "hello", "name": name, "room": room, "members": members }),
            Reply::Who { room, names } => json!({
                "type": "who",
                "room": room,
                "names": names.items,
                "total": names.total,
                "more": names.more,
            }),
            Reply::Rooms(rooms) => {
                let list: Vec<Value> = rooms
                    .items
                    .iter()
                    .map(|room| json!({ "name": room.name, "members": room.members }))
                    .collect();
                json!({ "type": "rooms", "rooms": list, "total": rooms.total, "more": rooms.more })
            }
            Reply::History(shown) => json!({
                "type": "history",
                "room": shown.room,
                "count": shown.count,
                "more": shown.more,
                "before": shown.before.map(|offset| offset.to_string()),
            }),
            Reply::Pong => json!({ "type": "pong" }),
            Reply::ShowHex(on) => json!({ "type": "hex", "on": on }),
            Reply::Authenticated { name, user } => {
                json!({ "type": "authenticated", "name": name, "user": user })
            }
            Reply::Help => json!({ "type": "help", "commands": COMMANDS }),
            Reply::Quit => return Bytes::new(),
        };
        with_tag(value, tag)
    }

    fn error(&self, error: &ProtocolError, tag: &Tag) -> Bytes {
        with_tag(
            json!({ "type": "error", "code": error.code, "message": error.message }),
            tag,
        )
    }

    fn goodbye(&self, closing: &Closing) -> Bytes {
        line(json!({
            "type": "bye",
            "reason": closing.reason.to_string(),
            "error": closing.reason.is_error(),
        }))
    }

    fn refusal(&self, reason: &str) -> Bytes {
        line(json!({ "type": "error", "code": "refused", "message": reason }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_keep_their_id() {
        let (request, tag) = parse_request(br#"{"type":"say","text":"hi","id":7}"#);
        assert_eq!(
            request,
            Ok(Request::Say {
                room: None,
                body: Body::line("hi")
            })
        );
        assert_eq!(tag.as_deref(), Some(&json!(7)));
        let (request, _) = parse_request(br#"{"type":"direct","to":"bob","text":"psst"}"#);
        assert!(matches!(request, Ok(Request::Direct { .. })));
        let (request, _) = parse_request(br#"{"type":"rooms"}"#);
        assert_eq!(request, Ok(Request::Rooms(None)));
        let (request, _) = parse_request(br#"{"type":"rooms","pattern":"dev-*"}"#);
        assert_eq!(
            request,
            Ok(Request::Rooms(Some(Pattern::new("dev-*").unwrap())))
        );
    }

    #[test]
    fn malformed_or_misshapen_json_gets_a_specific_error() {
        for (input, code) in [
            (&b"{not json"[..], "bad_json"),
            (b"[1,2]", "bad_request"),
            (br#"{"type":"fly"}"#, "bad_request"),
            (br#"{"type":"say"}"#, "bad_request"),
            (br#"{"type":"say","text":"x","extra":1}"#, "bad_request"),
            (br#"{"type":"nick","name":"a b"}"#, "invalid_name"),
        ] {
            let (request, _) = parse_request(input);
            assert_eq!(
                request.unwrap_err().code,
                code,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let (_, tag) = parse_request(br#"{"type":"fly","id":"x"}"#);
        assert_eq!(tag.as_deref(), Some(&json!("x")));
    }

    #[test]
    fn invalid_utf8_reaches_json_clients_with_replacement() {
        let event = Event::Message {
            offset: None,
            room: RoomName::lobby(),
            from: Name::new("dev").unwrap(),
            body: Body::chunk(&b"\xff\x00ok"[..]),
        };
        let value: Value = serde_json::from_slice(&Json::event(&event)).unwrap();
        assert_eq!(value["text"], "\u{fffd}\u{0}ok");
        assert_eq!(value["bytes"], "/wBvaw==");
    }

    /// A JSON client's stream: one request per line, blank lines skipped,
    /// what is over the line limit refused, and a last line without its
    /// newline taken at the end of the stream.
    #[test]
    fn the_decoder_reads_a_request_a_line() {
        let mut decoder = Json::new(64).decoder();
        let mut buf = BytesMut::from(
            &b"{\"type\":\"ping\",\"id\":1}\n\n  \n{\"type\":\"say\",\"text\":\"hi\"}\n"[..],
        );
        let first = decoder.decode(&mut buf, false);
        assert!(
            matches!(&first, Some(Input::Request { request: Request::Ping, tag }) if tag.as_deref() == Some(&json!(1))),
            "{first:?}"
        );
        let second = decoder.decode(&mut buf, false);
        assert!(
            matches!(
                &second,
                Some(Input::Request {
                    request: Request::Say { .. },
                    ..
                })
            ),
            "{second:?}"
        );
        assert!(decoder.decode(&mut buf, false).is_none());
        buf.extend_from_slice(
            format!("{{\"type\":\"say\",\"text\":\"{}\"}}\n", "x".repeat(100)).as_bytes(),
        );
        let long = decoder.decode(&mut buf, false);
        assert!(
            matches!(&long, Some(Input::Invalid { error, .. }) if error.code == "line_too_long"),
            "{long:?}"
        );
        buf.extend_from_slice(b"{\"type\":\"quit\"}");
        assert!(
            decoder.decode(&mut buf, false).is_none(),
            "not finished yet"
        );
        let last = decoder.decode(&mut buf, true);
        assert!(
            matches!(
                &last,
                Some(Input::Request {
                    request: Request::Quit,
                    ..
                })
            ),
            "{last:?}"
        );
    }

    #[test]
    fn a_client_authenticates_with_a_token_or_a_user_and_password() {
        let (token, _) = parse_request(br#"{"type":"auth","token":"t0ken"}"#);
        assert!(matches!(token, Ok(Request::Auth(Secret(t))) if t == "t0ken"));
        let (login, _) = parse_request(br#"{"type":"login","user":"alice","password":"pw"}"#);
        assert!(
            matches!(&login, Ok(Request::Login { user, password: Secret(p) }) if user == "alice" && p == "pw"),
            "{login:?}"
        );
        for both in [
            &br#"{"type":"auth","token":"t","user":"alice","password":"pw"}"#[..],
            br#"{"type":"auth","user":"alice"}"#,
            br#"{"type":"auth"}"#,
        ] {
            let (refused, _) = parse_request(both);
            assert_eq!(refused.unwrap_err().code, "bad_request");
        }
    }

    /// Events and answers are one JSON object a line; an answer carries
    /// the request's `id` back.
    #[test]
    fn answers_are_a_line_each_with_the_requests_id() {
        let json = Json::new(64);
        let pong = json.reply(&Reply::Pong, &Some(Box::new(json!(9))));
        assert!(pong.ends_with(b"\n") && pong.iter().filter(|b| **b == b'\n').count() == 1);
        let pong: Value = serde_json::from_slice(&pong).unwrap();
        assert_eq!(pong, json!({"type": "pong", "id": 9}));
        let error = ProtocolError::new(ErrorCode::BadJson, "malformed");
        let error: Value = serde_json::from_slice(&json.error(&error, &None)).unwrap();
        assert_eq!(
            error,
            json!({"type": "error", "code": "bad_json", "message": "malformed"})
        );
    }

    /// What a JSON client is told first: its name and room, or that it
    /// must authenticate and how long it has.
    #[test]
    fn a_json_client_is_greeted_with_its_name_or_asked_to_authenticate() {
        let json = Json::new(64);
        let name = Name::new("guest-1").unwrap();
        let welcome: Value =
            serde_json::from_slice(&json.welcome(&name, Some(&RoomName::lobby()))).unwrap();
        assert_eq!(
            welcome,
            json!({"type": "welcome", "name": "guest-1", "room": "lobby"})
        );
        let asked = json.auth_required(std::time::Duration::from_secs(10));
        let asked: Value = serde_json::from_slice(&asked).unwrap();
        assert_eq!(
            asked,
            json!({"type": "auth_required", "methods": ["password", "token"], "timeout_ms": 10_000})
        );
    }

    /// A message is answered only when its request had an id; a client
    /// leaving or turned away is told why, with whether it was an error.
    #[test]
    fn sent_is_said_only_when_asked_and_goodbyes_say_why() {
        let json = Json::new(64);
        assert!(json.reply(&Reply::Sent, &None).is_empty());
        let sent: Value =
            serde_json::from_slice(&json.reply(&Reply::Sent, &Some(Box::new(json!("m1")))))
                .unwrap();
        assert_eq!(sent, json!({"type": "sent", "id": "m1"}));
        let quit = Closing {
            reason: crate::hub::CloseReason::Quit,
            flush: true,
        };
        let bye: Value = serde_json::from_slice(&json.goodbye(&quit)).unwrap();
        assert_eq!(
            bye,
            json!({"type": "bye", "reason": "client quit", "error": false})
        );
        let refused: Value = serde_json::from_slice(&json.refusal("server full")).unwrap();
        assert_eq!(
            refused,
            json!({"type": "error", "code": "refused", "message": "server full"})
        );
    }

    #[test]
    fn messages_can_be_sent_as_base64_bytes() {
        let (request, _) = parse_request(br#"{"type":"say","bytes":"AQMAAAAKxc0="}"#);
        assert_eq!(
            request,
            Ok(Request::Say {
                room: None,
                body: Body::chunk(&b"\x01\x03\x00\x00\x00\x0a\xc5\xcd"[..])
            })
        );
        for bad in [
            &br#"{"type":"say","bytes":"not base64!"}"#[..],
            br#"{"type":"say","text":"a","bytes":"AA=="}"#,
            br#"{"type":"direct","to":"bob"}"#,
        ] {
            assert!(
                parse_request(bad).0.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
