//! How a message is shown to text clients, who read it on a terminal: the
//! output is UTF-8; every line carries the sender's prefix, so no message
//! can pass for another sender's; nothing a terminal obeys gets through
//! (controls other than the line breaks and TAB, bidi controls); a message
//! is at most `MAX_LINES_PER_MESSAGE` lines and bounded in size; plain
//! text (with no run of blanks wider than a tab stop) is shown as it was
//! sent, and a chunk that is not readable text as its hex on one line. JSON and raw clients get the same message
//! exactly (JSON: as text, invalid UTF-8 replaced).
//!
//! Input: byte 0 picks the framing (bit 0: line or chunk) and the sender
//! (bits 1-2); the rest is the body.

#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard::hub::{Body, Event, Name, RoomName};
use switchboard::protocol::terminal::{MAX_BLANK_COLUMNS, MAX_EXPANSION};
use switchboard::protocol::{Json, Protocol, Raw, Text, MAX_LINES_PER_MESSAGE};

/// Senders: ASCII, and names whose prefix holds multi-byte characters.
/// Made once: checking a name is not what this target is about.
static SENDERS: LazyLock<[(RoomName, Name); 4]> = LazyLock::new(|| {
    [
        ("lobby", "alice"),
        ("dev-1", "小明"),
        ("café", "José"),
        ("x", "m"),
    ]
    .map(|(room, name)| (RoomName::new(room).unwrap(), Name::new(name).unwrap()))
});

fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body_bytes)) = data.split_first() else {
        return;
    };
    let (room, from) = &SENDERS[usize::from(selector >> 1) % SENDERS.len()];
    let bytes = Bytes::copy_from_slice(body_bytes);
    let body = if selector & 1 == 0 {
        Body::line(bytes)
    } else {
        Body::chunk(bytes)
    };
    let event = Event::Message {
        offset: None,
        room: room.clone(),
        from: from.clone(),
        body: body.clone(),
    };

    // Text clients.
    let shown = Text::event(&event);
    let prefix = format!("[#{}] {}: ", room.as_str(), from.as_str());
    let Ok(text) = std::str::from_utf8(&shown) else {
        panic!("text output is not UTF-8");
    };
    assert!(text.ends_with('\n'), "text output does not end a line");
    for c in text.chars() {
        assert!(
            c == '\n' || c == '\t' || !c.is_control(),
            "control character {c:?} reached a text client"
        );
        assert!(
            !is_bidi_control(c),
            "bidi control {c:?} reached a text client"
        );
    }
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    assert!(
        lines.len() <= MAX_LINES_PER_MESSAGE,
        "one message became {} lines",
        lines.len()
    );
    for line in &lines {
        assert!(
            line.starts_with(&prefix),
            "a line without the sender's prefix: {line:?}"
        );
    }
    let bound = MAX_LINES_PER_MESSAGE * (prefix.len() + 1) + body_bytes.len() * MAX_EXPANSION + 200;
    assert!(
        shown.len() <= bound,
        "{} bytes shown for a body of {} (bound {bound})",
        shown.len(),
        body_bytes.len()
    );

    // A chunk from a stream that is not readable text (not UTF-8, or a
    // control character other than tab and line endings) is shown on one
    // line as hex, every byte (docs/protocol.md, "What other clients see
    // of a raw chunk").
    let readable = std::str::from_utf8(body_bytes)
        .is_ok_and(|t| t.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')));
    let binary = selector & 1 == 1 && !readable;
    if binary {
        assert_eq!(lines.len(), 1, "a binary chunk took several lines");
        let hex: Vec<String> = body_bytes.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            &lines[0][prefix.len()..],
            format!("<hex {}>", hex.join(" ")),
            "a binary chunk is not shown as its hex"
        );
    }

    // One line per line of the body (a final newline ends the last one),
    // up to the cap; plain text unchanged.
    let sent = body_bytes.strip_suffix(b"\n").unwrap_or(body_bytes);
    let sent_lines: Vec<&[u8]> = sent.split(|b| *b == b'\n').collect();
    if !binary {
        assert_eq!(
            lines.len(),
            sent_lines.len().min(MAX_LINES_PER_MESSAGE),
            "the body's lines and the lines shown differ in number"
        );
    }
    let summary = sent_lines.len() > MAX_LINES_PER_MESSAGE;
    for (i, (line, sent_line)) in lines
        .iter()
        .zip(&sent_lines)
        .enumerate()
        .filter(|_| !binary)
    {
        if summary && i + 1 == lines.len() {
            assert!(
                line[prefix.len()..].contains("more lines not shown"),
                "the last line of a cut message does not say so: {line:?}"
            );
            break;
        }
        let sent_line = sent_line.strip_suffix(b"\r").unwrap_or(sent_line);
        // Plain text, with no run of blanks wider than a tab stop (a tab
        // counts 8 columns): wider runs are cut, so that a message cannot
        // soft-wrap into a line that looks like another sender's.
        let mut widest_blank = 0;
        let mut blank = 0;
        for b in sent_line.iter() {
            blank = match b {
                b' ' => blank + 1,
                b'\t' => blank + 8,
                _ => 0,
            };
            widest_blank = widest_blank.max(blank);
        }
        if widest_blank <= MAX_BLANK_COLUMNS
            && sent_line
                .iter()
                .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
        {
            assert_eq!(
                &line.as_bytes()[prefix.len()..],
                sent_line,
                "plain text was changed"
            );
        }
    }

    // Raw clients: the bytes, and a newline after a line.
    let mut expected = body_bytes.to_vec();
    if selector & 1 == 0 {
        expected.push(b'\n');
    }
    assert!(
        Raw::event(&event) == expected,
        "raw clients are not sent the bytes sent"
    );

    // JSON clients: one JSON line with the text.
    let json = Json::event(&event);
    assert_eq!(json.iter().position(|b| *b == b'\n'), Some(json.len() - 1));
    let value: serde_json::Value = serde_json::from_slice(&json).expect("the event is JSON");
    assert_eq!(value["type"], "message");
    assert_eq!(value["room"], room.as_str());
    assert_eq!(value["from"], from.as_str());
    assert!(
        value["text"].as_str() == Some(&*String::from_utf8_lossy(body_bytes)),
        "JSON clients are not sent the text sent"
    );
});
