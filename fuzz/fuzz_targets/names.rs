//! Client names, room names, comparison keys and listing patterns, on any
//! text: nothing panics; an accepted name is 1 to 32 characters with no
//! control or white space characters (nothing that could break a message
//! line), and accepting it again gives it back unchanged; a pattern is
//! refused only when too long, and matches what it was made from.
//!
//! Input: bytes as a client sends them. As text (invalid UTF-8 replaced),
//! before the first newline is the pattern, after it the name matched
//! (without a newline, the same text is both).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::hub::{
    comparison_key, shape_key, Name, Pattern, RoomName, MAX_NAME_CHARS, MAX_PATTERN_CHARS,
};

/// Panics unless `accepted` (what `raw` was accepted as) is a name that
/// cannot break a message line.
fn check_shape(what: &str, raw: &str, accepted: &str) {
    let chars = accepted.chars().count();
    assert!(
        (1..=MAX_NAME_CHARS).contains(&chars),
        "{raw:?} was accepted as the {what} {accepted:?} of {chars} characters"
    );
    for c in accepted.chars() {
        assert!(
            !c.is_control() && !c.is_whitespace(),
            "{raw:?} was accepted as the {what} {accepted:?}, holding {c:?}"
        );
        assert!(
            !matches!(c, ':' | '[' | ']' | '#'),
            "{raw:?} was accepted as the {what} {accepted:?}, holding {c:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    // Straight off the wire: not UTF-8 is an error, not a panic.
    let name = Name::from_bytes(data);
    let room = RoomName::parse_user(data);
    if std::str::from_utf8(data).is_err() {
        assert!(name.is_err() && room.is_err(), "non-UTF-8 accepted");
    }
    let _ = RoomName::from_bytes(data);

    let text = String::from_utf8_lossy(data);
    let _ = comparison_key(&text);
    let _ = shape_key(&text);

    if let Ok(name) = Name::new(&text) {
        check_shape("name", &text, name.as_str());
        let again = Name::new(name.as_str());
        assert!(
            again.as_ref() == Ok(&name),
            "the name {name:?} (from {text:?}) is not accepted as itself: {again:?}"
        );
        assert_eq!(*name.key(), comparison_key(name.as_str()));
        assert_eq!(*name.shape_key(), shape_key(name.as_str()));
    }
    if let Ok(room) = RoomName::new(&text) {
        check_shape("room name", &text, room.as_str());
        let again = RoomName::new(room.as_str());
        assert!(
            again.as_ref().map(RoomName::as_str) == Ok(room.as_str()),
            "the room {room:?} (from {text:?}) is not accepted as itself: {again:?}"
        );
        let typed = RoomName::parse_user(format!("#{text}").as_bytes());
        assert!(
            typed.as_ref().map(RoomName::as_str) == Ok(room.as_str()),
            "#{text:?} is not the room {room:?}: {typed:?}"
        );
    }

    let (pattern_text, target) = text.split_once('\n').unwrap_or((&text, &text));
    match Pattern::new(pattern_text) {
        Ok(pattern) => {
            let _ = pattern.matches(target);
            if !pattern_text.contains(['*', '?']) {
                assert!(
                    pattern.matches(pattern_text),
                    "the pattern {pattern_text:?} does not match itself"
                );
            }
        }
        Err(_) => assert!(
            pattern_text.chars().count() > MAX_PATTERN_CHARS,
            "the pattern {pattern_text:?} was refused"
        ),
    }
    assert!(Pattern::new("*").unwrap().matches(target));
});
