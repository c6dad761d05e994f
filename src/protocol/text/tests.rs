//! What text clients send and see, line by line.
use super::*;

fn parse(line: &str) -> Result<Request, ProtocolError> {
    parse_line(Bytes::copy_from_slice(line.as_bytes())).expect("not empty")
}

#[test]
fn a_client_sending_binary_is_told_once_where_it_belongs_and_its_lines_still_go() {
    let text = Text::new(1024, None, None);
    let mut decoder = text.decoder();
    let mut buf = BytesMut::from(&b"hello\n\x01\x03\x00\x00\x00\x0a\xc5\xcd\nagain\x00\nbye\n"[..]);
    let mut inputs = Vec::new();
    while let Some(input) = decoder.decode(&mut buf, false) {
        inputs.push(input);
    }
    let kinds: Vec<&str> = inputs
        .iter()
        .map(|input| match input {
            Input::Request {
                request: Request::Say { .. },
                ..
            } => "say",
            Input::Invalid { error, .. } => error.code,
            _ => "other",
        })
        .collect();
    // The frame goes (as two lines: its 0x0A is a line end here, one
    // more reason it belongs on a raw listener); the notice follows
    // its first part, once.
    assert_eq!(kinds, ["say", "say", "not_text", "say", "say", "say"]);
    let Input::Invalid { error, .. } = &inputs[2] else {
        unreachable!()
    };
    assert!(error.message.contains("raw listener"), "{}", error.message);
}

#[test]
fn what_people_type_is_text() {
    for typed in [
        &b"hello"[..],
        "小明 说".as_bytes(),
        b"tab\there",
        b"arrow \x1b[A",
        b"oops\x08",
        b"\xff\xfd\x18",
    ] {
        assert!(is_typed_text(typed), "{typed:?}");
    }
    for binary in [&b"\x01\x03\x00"[..], b"\x00", b"abc\xc5\xcd", b"\x02STX"] {
        assert!(!is_typed_text(binary), "{binary:?}");
    }
}

#[test]
fn plain_lines_are_said_to_the_current_room() {
    assert_eq!(
        parse("hello there"),
        Ok(Request::Say {
            room: None,
            body: Body::line("hello there")
        })
    );
    assert_eq!(
        parse("//etc/passwd"),
        Ok(Request::Say {
            room: None,
            body: Body::line("/etc/passwd")
        })
    );
    assert_eq!(parse_line(Bytes::new()), None);
}

#[test]
fn commands_parse_with_their_arguments() {
    assert_eq!(
        parse("/nick 小明"),
        Ok(Request::Nick(Name::new("小明").unwrap()))
    );
    assert_eq!(
        parse("/JOIN #devices"),
        Ok(Request::Join(RoomName::new("devices").unwrap()))
    );
    assert_eq!(parse("/leave"), Ok(Request::Leave(None)));
    assert_eq!(
        parse("/msg bob  hi  there"),
        Ok(Request::Direct {
            to: Name::new("bob").unwrap(),
            body: Body::line("hi  there")
        })
    );
    assert_eq!(
        parse("/who lobby"),
        Ok(Request::Who(Some(RoomName::lobby()), None))
    );
    assert_eq!(
        parse("/who lobby al*"),
        Ok(Request::Who(
            Some(RoomName::lobby()),
            Some(Pattern::new("al*").unwrap())
        ))
    );
    assert_eq!(parse("/rooms"), Ok(Request::Rooms(None)));
    assert_eq!(
        parse("/rooms dev-*"),
        Ok(Request::Rooms(Some(Pattern::new("dev-*").unwrap())))
    );
    assert_eq!(parse("/ping"), Ok(Request::Ping));
    assert_eq!(parse("/quit"), Ok(Request::Quit));
    assert_eq!(parse("/help"), Ok(Request::Help));
    assert_eq!(
        parse("/hello name=pump-7 room=ops"),
        Ok(Request::Hello {
            name: Some(Name::new("pump-7").unwrap()),
            room: Some(RoomName::new("ops").unwrap()),
        })
    );
    assert!(
        matches!(parse("/auth t0ken-t0ken"), Ok(Request::Auth(Secret(t))) if t == "t0ken-t0ken")
    );
    assert!(matches!(parse("/token t0ken-t0ken"), Ok(Request::Auth(_))));
    assert!(matches!(
        parse("/login alice s3cret"),
        Ok(Request::Login { user, password: Secret(p) }) if user == "alice" && p == "s3cret"
    ));
    assert_eq!(
        parse("/hello room=ops"),
        Ok(Request::Hello {
            name: None,
            room: Some(RoomName::new("ops").unwrap()),
        })
    );
    for bad in [
        "/login alice",
        "/hello abcd=red",
        "/hello name=a name=b",
        "/hello room=a room=b",
    ] {
        assert_eq!(parse(bad).unwrap_err().code, "bad_arguments", "{bad}");
    }
}

#[test]
fn hex_sends_exact_bytes_to_a_client_or_a_room() {
    assert_eq!(
        parse("/hex dev-7 01 03 00 0A"),
        Ok(Request::Direct {
            to: Name::new("dev-7").unwrap(),
            body: Body::chunk(vec![0x01, 0x03, 0x00, 0x0A])
        })
    );
    assert_eq!(
        parse("/hex #devices FE"),
        Ok(Request::Say {
            room: Some(RoomName::new("devices").unwrap()),
            body: Body::chunk(vec![0xFE])
        })
    );
    assert_eq!(parse("/hex dev-7 0").unwrap_err().code, "bad_hex");
    assert_eq!(parse("/hex on"), Ok(Request::ShowHex(true)));
    assert_eq!(parse("/hex off"), Ok(Request::ShowHex(false)));
    assert_eq!(parse("/hex dev-7").unwrap_err().code, "bad_arguments");
}

#[test]
fn stream_bytes_that_are_not_readable_text_are_shown_as_hex() {
    let shown = |bytes: &[u8]| {
        let event = Event::Message {
            offset: None,
            room: RoomName::lobby(),
            from: Name::new("dev-1").unwrap(),
            body: Body::chunk(bytes.to_vec()),
        };
        String::from_utf8(Text::event(&event).to_vec()).unwrap()
    };
    assert_eq!(
        shown(b"\x01\x03\x02\x00\x0a"),
        "[#lobby] dev-1: <hex 01 03 02 00 0A>\n"
    );
    assert_eq!(
        shown(b"temp=21\xff"),
        "[#lobby] dev-1: <hex 74 65 6D 70 3D 32 31 FF>\n"
    );
    assert_eq!(
        shown(b"T=21\r\nT=22\n"),
        "[#lobby] dev-1: T=21\n[#lobby] dev-1: T=22\n"
    );
    assert_eq!(shown("温度=21\n".as_bytes()), "[#lobby] dev-1: 温度=21\n");
    // With the hex display on, everything is hex.
    let hello = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("bob").unwrap(),
        body: Body::line(&b"Hi"[..]),
    };
    let mut out = BytesMut::new();
    (Text::ENCODINGS[1].encode)(&hello, &mut out);
    assert_eq!(&out[..], b"[#lobby] bob: <hex 48 69>\n");
    // A person's line with a control character keeps caret notation.
    let line = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("bob").unwrap(),
        body: Body::line(&b"a\x07"[..]),
    };
    assert_eq!(&Text::event(&line)[..], b"[#lobby] bob: a^G\n");
}

#[test]
fn bad_commands_name_the_problem_and_point_to_help() {
    for (line, code) in [
        ("/frobnicate", "unknown_command"),
        ("/nick", "bad_arguments"),
        ("/nick two words", "bad_arguments"),
        ("/nick a:b", "invalid_name"),
        ("/join", "bad_arguments"),
        ("/join bad]room", "invalid_room"),
        ("/msg bob", "bad_arguments"),
        ("/ping now", "bad_arguments"),
        ("/rooms a b", "bad_arguments"),
        ("/who lobby a b", "bad_arguments"),
    ] {
        let error = parse(line).unwrap_err();
        assert_eq!(error.code, code, "{line}");
    }
    assert!(parse("/frobnicate").unwrap_err().message.contains("/help"));
}

/// What a text client is told of itself and of listings, as
/// docs/protocol.md shows it.
#[test]
fn greetings_and_listings_read_as_documented() {
    let text = Text::new(64, None, None);
    let name = Name::new("guest-1").unwrap();
    assert_eq!(
        text.welcome(&name, Some(&RoomName::lobby())),
        "* welcome guest-1! you are in #lobby; type /help for commands\n"
    );
    assert_eq!(
        text.auth_required(std::time::Duration::from_secs(10)),
        "* this server asks who you are: /login USER PASSWORD or /auth TOKEN, within 10s\n"
    );
    assert_eq!(
        Text::event(&Event::Notice {
            code: "x",
            text: "hi".into()
        }),
        "* hi\n"
    );
    let who = |items: &[&str], total, more| Reply::Who {
        room: RoomName::lobby(),
        names: Listing {
            items: items.iter().map(|n| Name::new(n).unwrap()).collect(),
            total,
            more,
        },
    };
    assert_eq!(
        text.reply(&who(&["alice", "bob"], 2, false), &None),
        "* #lobby (2): alice, bob\n"
    );
    assert_eq!(
        text.reply(&who(&["alice", "bob"], 5, true), &None),
        "* #lobby (2 of 5): alice, bob; more not shown, narrow with /who lobby PATTERN\n"
    );
    let rooms = |total| {
        Reply::Rooms(Listing {
            items: Vec::new(),
            total,
            more: false,
        })
    };
    assert_eq!(text.reply(&rooms(0), &None), "* no rooms\n");
    assert_eq!(text.reply(&rooms(3), &None), "* no rooms match (of 3)\n");
    let some = Reply::Rooms(Listing {
        items: vec![crate::hub::RoomInfo {
            name: RoomName::lobby(),
            members: 3,
        }],
        total: 1,
        more: false,
    });
    assert_eq!(text.reply(&some, &None), "* rooms (1): #lobby (3)\n");
    let authenticated = |user: Option<&str>| Reply::Authenticated {
        name: Name::new("alice").unwrap(),
        user: user.map(str::to_owned),
    };
    assert_eq!(
        text.reply(&authenticated(Some("alice")), &None),
        "* authenticated; your name is alice\n"
    );
    assert_eq!(
        text.reply(&authenticated(Some("ops")), &None),
        "* authenticated as ops; your name is alice\n"
    );
    let error = ProtocolError::new(ErrorCode::UnknownCommand, "unknown command /x");
    assert_eq!(text.error(&error, &None), "! unknown command /x\n");
    assert_eq!(text.refusal("server full"), "! refused: server full\n");
}

#[test]
fn messages_follow_the_documented_shape() {
    let event = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("alice").unwrap(),
        body: Body::line("hi"),
    };
    assert_eq!(Text::event(&event), "[#lobby] alice: hi\n");
    let event = Event::Direct {
        from: Name::new("bob").unwrap(),
        body: Body::chunk("a\r\nb\n"),
    };
    assert_eq!(Text::event(&event), "[dm] bob: a\n[dm] bob: b\n");
}

#[test]
fn a_message_cannot_forge_a_prefix_or_drive_a_terminal() {
    let event = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("mallory").unwrap(),
        body: Body::line(&b"hi\r[#lobby] admin: your password?\x1b[2J"[..]),
    };
    assert_eq!(
        Text::event(&event),
        "[#lobby] mallory: hi^M[#lobby] admin: your password?^[[2J\n"
    );
}

#[test]
fn a_message_of_many_lines_is_shown_as_at_most_the_line_cap() {
    let event = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("m").unwrap(),
        body: Body::line("x\n".repeat(5000)),
    };
    let shown = Text::event(&event);
    let lines: Vec<&str> = std::str::from_utf8(&shown).unwrap().lines().collect();
    assert_eq!(lines.len(), MAX_LINES_PER_MESSAGE);
    assert_eq!(lines[0], "[#lobby] m: x");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("[#lobby] m: [4001 more lines not shown"),
        "{}",
        lines.last().unwrap()
    );
    // Exactly at the cap: every line shown.
    let event = Event::Message {
        offset: None,
        room: RoomName::lobby(),
        from: Name::new("m").unwrap(),
        body: Body::line("x\n".repeat(MAX_LINES_PER_MESSAGE)),
    };
    let shown = Text::event(&event);
    assert_eq!(
        std::str::from_utf8(&shown)
            .unwrap()
            .lines()
            .filter(|l| *l == "[#lobby] m: x")
            .count(),
        MAX_LINES_PER_MESSAGE
    );
}
