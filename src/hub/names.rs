//! Client names and room names: what is allowed, and why.

use std::fmt;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// Longest client or room name, in characters (not bytes), so a name fits
/// comfortably on one line of a terminal next to the message it labels.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a proposed name or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("a {0} cannot be empty")]
    Empty(&'static str),
    /// The name had more than [`MAX_NAME_CHARS`] characters.
    #[error("a {what} can have at most {MAX_NAME_CHARS} characters, this one has {len}")]
    TooLong {
        /// "name" or "room name".
        what: &'static str,
        /// How many characters it had.
        len: usize,
    },
    /// The name held a character outside letters, digits, `-`, `_` and
    /// `.`, or one that can pass for another or render as nothing.
    #[error("a {what} may hold letters (any script), digits, '-', '_' and '.', not {found:?} (U+{:04X})", *found as u32)]
    BadChar {
        /// "name" or "room name".
        what: &'static str,
        /// The first character refused.
        found: char,
    },
    /// The name mixed letters of several scripts, as look-alikes do.
    #[error("a {what} must be written in one script, or Latin with Chinese, Japanese or Korean: letters of other scripts mixed (such as a Cyrillic 'а' among Latin ones) would let it pass for another")]
    MixedScripts {
        /// "name" or "room name".
        what: &'static str,
    },
    /// The name was not valid UTF-8.
    #[error("a {0} must be valid UTF-8")]
    NotUtf8(&'static str),
}

/// Checks the rules shared by client names and room names, on text
/// already in Unicode normalization form C: 1 to [`MAX_NAME_CHARS`]
/// characters, each a letter or digit of any script (so `小明` and `José`
/// are fine) or one of `-`, `_`, `.`. Spaces, `:`, `[`, `]` and control
/// characters are refused because the text protocol uses them to frame a
/// message line.
///
/// So that nobody can pose as somebody else, a name must also pass the
/// checks of Unicode TS #39 that browsers and compilers use on identifiers:
/// every character is allowed by its general security profile (which
/// leaves out characters that render as nothing, like U+3164, and
/// compatibility forms, like fullwidth `ａ` and mathematical bold `𝐚`),
/// and the scripts mixed are at most those of TS #39's Highly Restrictive
/// level: one script, or Latin with Han and Hiragana/Katakana, with Han and
/// Bopomofo, or with Han and Hangul, as Chinese, Japanese and Korean names
/// are written (`小明abc` is fine; `аlice`, with a Cyrillic `а` among Latin
/// letters, is refused, and so is Latin with Greek).
fn validate(raw: &str, what: &'static str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty(what));
    }
    let len = raw.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(NameError::TooLong { what, len });
    }
    if let Some(found) = raw.chars().find(|c| {
        !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || (!c.is_ascii() && !c.identifier_allowed())
    }) {
        return Err(NameError::BadChar { what, found });
    }
    if raw.detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
        return Err(NameError::MixedScripts { what });
    }
    Ok(())
}

/// Brings text typed by a user to normalization form C, so that `é` typed
/// as one character or as `e` and a combining accent is the same name.
fn normalize(raw: &str) -> std::borrow::Cow<'_, str> {
    if unicode_normalization::is_nfc_quick(raw.chars()) == unicode_normalization::IsNormalized::Yes
    {
        std::borrow::Cow::Borrowed(raw)
    } else {
        std::borrow::Cow::Owned(raw.nfc().collect())
    }
}

/// The form under which names are compared: compatibility-normalized
/// (NFKC), case-folded in full (so `ǅemal` and `ǆemal`, `ΟΔΟΣ` and `οδοσ`
/// meet), then reduced to its TS #39 confusable skeleton (so that Cyrillic
/// `аре` and Latin `ape`, or `rn` and `m`, meet too). Two names with the
/// same key could be mistaken for one another on screen, so only one of
/// them may be in use.
pub fn comparison_key(name: &str) -> String {
    let folded = caseless::default_case_fold_str(&name.nfkc().collect::<String>());
    unicode_security::skeleton(&folded).collect()
}

/// A second comparison form, for look-alikes that only capitals make:
/// the skeleton taken before case folding as well as after, so that
/// `AIice` (a capital `I`) meets `alice`. Folding first loses that (`I`
/// folds to `i`); skeleton first loses others (`ΟΔΟΣ`), so names are
/// compared under both.
pub fn shape_key(name: &str) -> String {
    let shape: String = unicode_security::skeleton(&name.nfkc().collect::<String>()).collect();
    unicode_security::skeleton(&caseless::default_case_fold_str(&shape)).collect()
}

/// A client's name, unique on the server, e.g. `guest-7` or `小明`. No two
/// clients have names with the same [`comparison_key`]: `Alice` cannot pose
/// as `alice`, nor `аlice` (Cyrillic `а`) or `ａｌｉｃｅ` as either.
///
/// Most names are short (`guest-1241`, a device's `dev-` and its IMEI):
/// up to 22 bytes are kept in the name itself, with no allocation (32
/// bytes of every idle client); longer ones are shared.
#[derive(Clone)]
pub struct Name(Text);

/// Bytes of a name kept inline: a [`Name`] is 24 bytes either way.
const INLINE_NAME: usize = 22;

#[derive(Clone)]
enum Text {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Shared(Arc<str>),
}

impl Name {
    /// Checks `raw` against the naming rules and wraps it (in Unicode
    /// normalization form C).
    pub fn new(raw: &str) -> Result<Self, NameError> {
        let raw = normalize(raw);
        validate(&raw, "name")?;
        Ok(Name::from_valid(&raw))
    }

    fn from_valid(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Name(Text::Inline { len, bytes })
            }
            _ => Name(Text::Shared(Arc::from(text))),
        }
    }

    /// Like [`Name::new`], for bytes straight off the wire.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, NameError> {
        let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8("name"))?;
        Self::new(raw)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).expect("a name is UTF-8")
            }
            Text::Shared(text) => text,
        }
    }

    /// The key under which the name is unique: its [`comparison_key`].
    pub fn key(&self) -> Arc<str> {
        Arc::from(comparison_key(self.as_str()))
    }

    /// The second key under which the name is unique: its [`shape_key`].
    pub fn shape_key(&self) -> Arc<str> {
        Arc::from(shape_key(self.as_str()))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// A room's name, e.g. `lobby`. Protocols may show it as `#lobby`; a
/// leading `#` typed by a user is not part of the name. Room names are not
/// case-sensitive (they are kept in lower case), and two names that could
/// be mistaken for one another (the same [`comparison_key`]) name the same
/// room: `#1obby` is `#lobby`.
#[derive(Clone)]
pub struct RoomName {
    text: Arc<str>,
    key: Arc<str>,
}

impl RoomName {
    /// Checks `raw` against the naming rules and wraps it, in lower case.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        // Lower case first, then check what is kept: lower-casing can add
        // characters (`İ` becomes `i` and a combining dot, which on an `i`
        // shows nothing and is dropped).
        let lower = raw.to_lowercase().replace("i\u{307}", "i");
        let text = normalize(&lower);
        validate(&text, "room name")?;
        let text: Arc<str> = Arc::from(text.as_ref());
        let key = comparison_key(&text);
        let key = if *key == *text {
            text.clone()
        } else {
            Arc::from(key)
        };
        Ok(RoomName { text, key })
    }

    /// Like [`RoomName::new`], for bytes straight off the wire.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, NameError> {
        let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8("room name"))?;
        Self::new(raw)
    }

    /// The same room name, holding `name`'s text where the two are one
    /// text (a device named and put in a room by one template,
    /// `dev-{id}`): one string kept for both, not two.
    pub fn sharing_text_with(self, name: &Name) -> RoomName {
        let Text::Shared(shared) = &name.0 else {
            // Kept inline: nothing to share.
            return self;
        };
        if *self.text != **shared {
            return self;
        }
        let key = match Arc::ptr_eq(&self.key, &self.text) {
            true => shared.clone(),
            false => self.key,
        };
        RoomName {
            text: shared.clone(),
            key,
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key under which rooms are told apart: its [`comparison_key`].
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl PartialEq for RoomName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for RoomName {}

impl std::hash::Hash for RoomName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl PartialOrd for RoomName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RoomName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

macro_rules! text_traits {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

text_traits!(Name);
text_traits!(RoomName);

impl RoomName {
    /// The room every client starts in unless its listener says otherwise.
    pub fn lobby() -> Self {
        RoomName::new("lobby").expect("lobby is a valid room name")
    }

    /// A sealed room, `~LABEL`: one that no client can name (`~` is not
    /// in any name a client types), so none joins it, lists it or sends to
    /// it; only its listener puts clients in it (the playground's ports:
    /// each a room of its own). `label` follows the naming rules.
    pub fn sealed(label: &str) -> Result<Self, NameError> {
        let inner = RoomName::new(label)?;
        let text: Arc<str> = Arc::from(format!("~{}", inner.text));
        let key: Arc<str> = Arc::from(format!("~{}", inner.key));
        Ok(RoomName { text, key })
    }

    /// Whether it is [sealed](RoomName::sealed).
    pub fn is_sealed(&self) -> bool {
        self.text.starts_with('~')
    }

    /// Parses a room name as the admin gives it: as a user types it, or a
    /// sealed room's `~LABEL`, which the admin may look at.
    pub fn parse_admin(raw: &str) -> Result<Self, NameError> {
        match raw.strip_prefix('~') {
            Some(label) => RoomName::sealed(label),
            None => RoomName::parse_user(raw.as_bytes()),
        }
    }

    /// Parses a room name as a user types it: `#lobby` and `lobby` are the same room.
    /// Case does not matter: the name is kept in lower case.
    pub fn parse_user(raw: &[u8]) -> Result<Self, NameError> {
        let raw = raw.strip_prefix(b"#").unwrap_or(raw);
        let raw = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8("room name"))?;
        Self::new(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device's room named as the device is keeps one string for both
    /// (where the name is too long to be kept inline), and is the same
    /// room as one named by hand.
    #[test]
    fn a_room_named_as_a_device_shares_its_text() {
        const LONG: &str = "dev-8600000000000000012345";
        let name = Name::new(LONG).unwrap();
        let Text::Shared(shared) = &name.0 else {
            panic!("{LONG} is longer than {INLINE_NAME} bytes");
        };
        let room = RoomName::new(LONG).unwrap().sharing_text_with(&name);
        assert!(Arc::ptr_eq(&room.text, shared));
        assert!(room == RoomName::new(LONG).unwrap());
        assert_eq!(room.key(), comparison_key(LONG));
        // A name in capitals is not a room's text (rooms are lower case).
        let shouted = Name::new(&LONG.to_uppercase()).unwrap();
        let room = RoomName::new(LONG).unwrap().sharing_text_with(&shouted);
        assert_eq!(room.as_str(), LONG);
        assert!(matches!(&shouted.0, Text::Shared(text) if !Arc::ptr_eq(&room.text, text)));
    }

    /// Short names are kept inline, longer ones shared; either way a name
    /// is its text: equal, hashed and ordered as the text is.
    #[test]
    fn a_name_is_its_text_inline_or_not() {
        let at_most = "g".repeat(INLINE_NAME);
        let longer = "g".repeat(INLINE_NAME + 1);
        let (short, long) = (Name::new(&at_most).unwrap(), Name::new(&longer).unwrap());
        assert!(matches!(short.0, Text::Inline { .. }));
        assert!(matches!(long.0, Text::Shared(_)));
        assert_eq!((short.as_str(), long.as_str()), (&*at_most, &*longer));
        assert!(short < long, "ordered as text");
        // Multi-byte text past the inline bytes, at fewer characters.
        let wide = Name::new(&"名".repeat(8)).unwrap();
        assert!(matches!(wide.0, Text::Shared(_)));
        assert_eq!(wide.as_str(), "名".repeat(8));
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        let (a, b) = (
            Name::new("guest-12").unwrap(),
            Name::new("guest-12").unwrap(),
        );
        assert_eq!(state.hash_one(&a), state.hash_one(&b));
        assert_eq!(state.hash_one(&a), state.hash_one("guest-12"));
        assert_eq!(std::mem::size_of::<Name>(), 24);
    }

    #[test]
    fn names_in_any_script_are_accepted() {
        for ok in ["alice", "guest-7", "小明", "José", "a.b_c-d", "ü"] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_that_would_break_a_message_line_are_refused() {
        assert_eq!(Name::new(""), Err(NameError::Empty("name")));
        assert!(matches!(
            Name::new("a b"),
            Err(NameError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            Name::new("a:b"),
            Err(NameError::BadChar { found: ':', .. })
        ));
        assert!(matches!(
            Name::new(&"x".repeat(33)),
            Err(NameError::TooLong { len: 33, .. })
        ));
        assert!(Name::new(&"名".repeat(32)).is_ok());
        assert_eq!(Name::from_bytes(b"\xff"), Err(NameError::NotUtf8("name")));
    }

    #[test]
    fn case_does_not_make_a_name_unique() {
        assert_eq!(
            Name::new("Alice").unwrap().key(),
            Name::new("alice").unwrap().key()
        );
    }

    #[test]
    fn a_leading_hash_or_capitals_name_the_same_room() {
        assert_eq!(RoomName::parse_user(b"#lobby").unwrap(), RoomName::lobby());
        assert_eq!(RoomName::parse_user(b"Lobby").unwrap(), RoomName::lobby());
    }

    fn same_key(a: &str, b: &str) -> bool {
        let (a, b) = (Name::new(a).unwrap(), Name::new(b).unwrap());
        a.key() == b.key() || a.shape_key() == b.shape_key()
    }

    #[test]
    fn look_alike_names_share_a_key() {
        // Digraphs are compatibility characters, refused as names; their
        // keys meet anyway.
        assert_eq!(comparison_key("ǆemal"), comparison_key("ǅemal"));
        assert!(same_key("οδοσ", "ΟΔΟΣ"));
        assert!(same_key("аре", "ape"), "whole-script Cyrillic look-alike");
        assert!(same_key("rnary", "mary"));
        assert!(same_key("AIice", "alice"), "capital I for l");
        assert!(same_key("Straße", "STRASSE"));
        assert!(same_key("José", "Jose\u{301}"), "composed or not");
        assert!(!same_key("alice", "alicia"));
        assert!(!same_key("小明", "小朋"));
    }

    #[test]
    fn names_that_pass_for_others_or_for_nothing_are_refused() {
        for bad in [
            "аlice",      // Cyrillic а among Latin letters
            "bοb",        // Greek ο among Latin letters
            "小明аlice",  // Han, Latin and Cyrillic
            "abcمرحبا",   // Latin with Arabic: Moderately, not Highly, Restrictive
            "ａｌｉｃｅ", // fullwidth
            "𝐚𝐥𝐢𝐜𝐞",      // mathematical bold
            "\u{3164}",   // Hangul filler: renders as nothing
            "\u{115F}",   // Hangul choseong filler
            "a\u{200B}b", // zero-width space
            "a\u{202E}b", // right-to-left override
        ] {
            assert!(Name::new(bad).is_err(), "{bad:?} was accepted");
            assert!(RoomName::new(bad).is_err(), "room {bad:?} was accepted");
        }
        for good in [
            "小明",
            "José",
            "Παύλος",
            "山田たろう",
            "小明abc",
            "田中taro",
            "김철수kim",
            "Мария",
            "guest-12",
            "x.y_z",
        ] {
            assert!(Name::new(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn a_room_name_is_checked_as_it_is_kept() {
        // Found by fuzzing: `İ` lower-cases to two characters.
        let room = RoomName::new("İstanbul").unwrap();
        assert_eq!(room.as_str(), "istanbul");
        assert_eq!(RoomName::new(room.as_str()).unwrap(), room);
        let long = RoomName::new(&"İ".repeat(32)).unwrap();
        assert_eq!(long.as_str().chars().count(), 32);
    }

    #[test]
    fn rooms_that_look_alike_are_one_room() {
        assert_eq!(RoomName::new("1obby").unwrap(), RoomName::lobby());
        assert_eq!(RoomName::new("1obby").unwrap().as_str(), "1obby");
    }
}
