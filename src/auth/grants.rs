//! Which rooms a user may join and send to: lists of room patterns such
//! as `lobby`, `team-*`, `dev-*-log` or `*`.
//!
//! A pattern is matched against a room's comparison key (see
//! [`RoomName::key`]), the form under which the hub tells rooms apart, so
//! a pattern grants exactly the rooms the hub would treat as the ones it
//! names: `lobby` also grants `Lobby` and `1obby` (which the hub takes to
//! be the same room as `lobby`), and nobody reaches a room of `team-*`
//! through a look-alike spelling the pattern did not mean.

use std::fmt;
use std::sync::Arc;

use crate::hub::{comparison_key, RoomName, MAX_NAME_CHARS};

/// Why a room pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern was empty (or only `#`).
    #[error("a room pattern cannot be empty (use \"*\" for every room)")]
    Empty,
    /// A part between `*`s is not something a room name can hold.
    #[error("room pattern {pattern:?}: {reason}")]
    Invalid {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One room pattern: `*` matches any run of characters (also none), every
/// other character itself, as the hub compares room names (case and
/// look-alikes do not matter). A leading `#` is ignored, as in `/join`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as written (without a leading `#`), for messages.
    text: Box<str>,
    /// The comparison keys of the literal parts around each `*`: one part
    /// for a pattern without `*`, `n + 1` for `n` stars (empty at either
    /// end when the pattern starts or ends with `*`).
    parts: Box<[Box<str>]>,
}

impl Pattern {
    /// Parses and checks a pattern: each part between `*`s must be
    /// something a room name can hold (letters, digits, `-`, `_`, `.`, one
    /// script), and the parts together at most [`MAX_NAME_CHARS`]
    /// characters, since a longer pattern could match no room.
    pub fn new(raw: &str) -> Result<Self, PatternError> {
        let text = raw.strip_prefix('#').unwrap_or(raw);
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let invalid = |reason: String| PatternError::Invalid {
            pattern: raw.to_owned(),
            reason,
        };
        let literal_chars: usize = text.chars().filter(|&c| c != '*').count();
        if literal_chars > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "it can match no room: room names have at most {MAX_NAME_CHARS} characters"
            )));
        }
        let mut parts: Vec<Box<str>> = Vec::new();
        for part in text.split('*') {
            if part.is_empty() {
                parts.push(Box::from(""));
                continue;
            }
            // Checked and lower-cased as a room name is, then keyed as
            // the hub keys room names.
            let room = RoomName::new(part).map_err(|e| invalid(e.to_string()))?;
            parts.push(Box::from(comparison_key(room.as_str())));
        }
        // `a**b` is `a*b`: drop the empty parts between two stars (keep
        // the first and the last, which anchor the ends).
        let last = parts.len() - 1;
        let parts: Vec<Box<str>> = parts
            .into_iter()
            .enumerate()
            .filter(|(i, part)| *i == 0 || *i == last || !part.is_empty())
            .map(|(_, part)| part)
            .collect();
        Ok(Pattern {
            text: Box::from(text),
            parts: parts.into_boxed_slice(),
        })
    }

    /// The pattern `*`: every room.
    pub fn any() -> Self {
        Pattern::new("*").expect("* is a valid pattern")
    }

    /// The pattern as written (without a leading `#`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches `room`.
    pub fn matches(&self, room: &RoomName) -> bool {
        self.matches_key(room.key())
    }

    /// Whether the pattern matches a room's comparison key. Allocates
    /// nothing: the literal parts are found in order, each as far left as
    /// it goes, which is all a pattern whose only wildcard is `*` needs.
    fn matches_key(&self, key: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            return key == &**first;
        };
        if key.len() < first.len() + last.len()
            || !key.starts_with(&**first)
            || !key.ends_with(&**last)
        {
            return false;
        }
        let mut between = &key[first.len()..key.len() - last.len()];
        for part in middle {
            match between.find(&**part) {
                Some(at) => between = &between[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        Pattern::new(s)
    }
}

/// The rooms a user may join, or may send to: a list of [`Pattern`]s, any
/// of which may match. Several lists can be combined with
/// [`Grants::intersect`] (a JWT for a user of the users file gets what
/// both allow); a room is then allowed when every list allows it.
///
/// ```
/// use switchboard::auth::Grants;
/// use switchboard::hub::RoomName;
///
/// let grants = Grants::parse(["lobby", "team-*"]).unwrap();
/// assert!(grants.allows(&RoomName::new("Team-Red").unwrap()));
/// assert!(!grants.allows(&RoomName::new("ops").unwrap()));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Grants {
    /// Every list must have a pattern that matches. Never empty.
    lists: Arc<[Arc<[Pattern]>]>,
}

impl Grants {
    /// Every room (`*`).
    pub fn all() -> Self {
        Grants::from_patterns(vec![Pattern::any()])
    }

    /// Whether these grants allow the client name `name`: the patterns of
    /// `direct` are names, matched as the hub compares names (client and
    /// room names follow the same rules and compare alike).
    pub fn allows_name(&self, name: &crate::hub::Name) -> bool {
        let key = comparison_key(name.as_str());
        self.lists
            .iter()
            .all(|list| list.iter().any(|pattern| pattern.matches_key(&key)))
    }

    /// No room at all (an empty list).
    pub fn none() -> Self {
        Grants::from_patterns(Vec::new())
    }

    /// Grants from patterns already parsed.
    pub fn from_patterns(patterns: Vec<Pattern>) -> Self {
        Grants {
            lists: Arc::from(vec![Arc::from(patterns)]),
        }
    }

    /// Parses a list of patterns, once; the first bad one is the error.
    pub fn parse<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| Pattern::new(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Grants::from_patterns(patterns))
    }

    /// The rooms both `self` and `other` allow.
    pub fn intersect(&self, other: &Grants) -> Grants {
        let lists: Vec<Arc<[Pattern]>> = self
            .lists
            .iter()
            .chain(other.lists.iter())
            .cloned()
            .collect();
        Grants {
            lists: Arc::from(lists),
        }
    }

    /// Whether these grants allow `room`. Allocates nothing.
    pub fn allows(&self, room: &RoomName) -> bool {
        let key = room.key();
        self.lists
            .iter()
            .all(|list| list.iter().any(|pattern| pattern.matches_key(key)))
    }

    /// Whether these grants allow every room (each list holds `*`), so a
    /// caller can skip the checks.
    pub fn allows_all(&self) -> bool {
        self.lists
            .iter()
            .all(|list| list.iter().any(|pattern| pattern.as_str() == "*"))
    }
}

impl Default for Grants {
    /// Every room: what a user entry or a JWT that names no rooms gets.
    fn default() -> Self {
        Grants::all()
    }
}

/// Shown as the patterns, `["lobby", "team-*"]`, lists joined by ` and `.
impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, list) in self.lists.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            f.write_str("[")?;
            for (j, pattern) in list.iter().enumerate() {
                if j > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{:?}", pattern.as_str())?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Grants({self})")
    }
}

/// What a user was refused in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Joining the room.
    Join,
    /// Sending to the room.
    Send,
    /// Sending to a client directly (`/msg`, `/hex NAME`, JSON `to`).
    Direct,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Join => "join",
            Action::Send => "send to",
            Action::Direct => "send directly to",
        })
    }
}

/// A user tried to join or send to a room its grants do not allow. The
/// message is meant for that client: it names the room and what was
/// refused, so a refusal is never silence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} may not {action} {}{room}", user.as_deref().unwrap_or("this connection"), if *action == Action::Direct { "" } else { "#" })]
pub struct Forbidden {
    /// The user refused, if the connection has one.
    pub user: Option<String>,
    /// What was refused.
    pub action: Action,
    /// The room (or, for [`Action::Direct`], the client).
    pub room: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    fn allows(patterns: &[&str], name: &str) -> bool {
        Grants::parse(patterns).unwrap().allows(&room(name))
    }

    #[test]
    fn a_star_matches_any_run_of_characters() {
        assert!(allows(&["*"], "lobby"));
        assert!(allows(&["team-*"], "team-red"));
        assert!(allows(&["team-*"], "team-"));
        assert!(!allows(&["team-*"], "team"));
        assert!(!allows(&["team-*"], "the-team-red"));
        assert!(allows(&["*-log"], "dev-log"));
        assert!(allows(&["dev-*-log"], "dev-api-log"));
        assert!(allows(&["dev-*-log"], "dev--log"));
        assert!(
            !allows(&["dev-*-log"], "dev-log"),
            "the parts may not overlap"
        );
        assert!(allows(&["a*b*c"], "axxbyyc"));
        assert!(allows(&["a*b*c"], "abbc"));
        assert!(!allows(&["a*b*c"], "acb"));
        assert!(allows(&["a**c"], "abc"));
    }

    #[test]
    fn a_pattern_without_a_star_is_one_room() {
        assert!(allows(&["lobby"], "lobby"));
        assert!(!allows(&["lobby"], "lobby2"));
        assert!(!allows(&["lobby"], "lob"));
    }

    #[test]
    fn rooms_are_matched_as_the_hub_compares_them() {
        assert!(allows(&["lobby"], "Lobby"), "case");
        assert!(allows(&["#lobby"], "lobby"), "a leading #");
        assert!(allows(&["Team-*"], "team-red"), "case in the pattern");
        assert!(allows(&["lobby"], "1obby"), "the hub's look-alike of lobby");
        assert!(allows(&["café"], "cafe\u{301}"), "composed or not");
        assert!(allows(&["小*"], "小明"), "any script");
        assert!(!allows(&["team-*"], "tea-m"));
    }

    #[test]
    fn any_of_the_patterns_may_match() {
        assert!(allows(&["lobby", "team-*"], "lobby"));
        assert!(allows(&["lobby", "team-*"], "team-blue"));
        assert!(!allows(&["lobby", "team-*"], "ops"));
        assert!(!Grants::none().allows(&room("lobby")));
    }

    #[test]
    fn names_are_matched_as_the_hub_compares_them() {
        let name = |n: &str| crate::hub::Name::new(n).unwrap();
        let direct = Grants::parse(["ops-*", "alice"]).unwrap();
        assert!(direct.allows_name(&name("ops-1")));
        assert!(direct.allows_name(&name("OPS-2")));
        assert!(direct.allows_name(&name("Alice")));
        assert!(!direct.allows_name(&name("bob")));
        assert!(!Grants::none().allows_name(&name("alice")));
        let narrowed = direct.intersect(&Grants::parse(["ops-1"]).unwrap());
        assert!(narrowed.allows_name(&name("ops-1")));
        assert!(!narrowed.allows_name(&name("ops-2")));
    }

    #[test]
    fn a_pattern_shows_as_it_was_written() {
        let pattern = Pattern::new("Team-*").unwrap();
        assert_eq!(pattern.to_string(), "Team-*");
        assert_eq!(format!("{pattern:?}"), r#""Team-*""#);
        let grants = Grants::parse(["lobby", "team-*"]).unwrap();
        assert_eq!(format!("{grants:?}"), r#"Grants(["lobby", "team-*"])"#);
    }

    #[test]
    fn intersected_grants_allow_what_both_allow() {
        let file = Grants::parse(["team-*", "lobby"]).unwrap();
        let token = Grants::parse(["team-red", "ops"]).unwrap();
        let both = file.intersect(&token);
        assert!(both.allows(&room("team-red")));
        assert!(!both.allows(&room("team-blue")), "the token narrows");
        assert!(!both.allows(&room("ops")), "the token cannot widen");
        assert!(!both.allows(&room("lobby")));
        assert_eq!(
            both.to_string(),
            r#"["team-*", "lobby"] and ["team-red", "ops"]"#
        );
        assert!(!both.allows_all());
        assert!(Grants::all().intersect(&Grants::all()).allows_all());
    }

    #[test]
    fn patterns_no_room_could_match_are_refused() {
        assert_eq!(Pattern::new(""), Err(PatternError::Empty));
        assert_eq!(Pattern::new("#"), Err(PatternError::Empty));
        for bad in ["team red", "a:b*", "*[x]", "аlice-*", "ｔｅａｍ*"] {
            let error = Pattern::new(bad).unwrap_err();
            assert!(
                error.to_string().contains(&format!("{bad:?}")),
                "{error} names the pattern"
            );
        }
        assert!(Pattern::new(&"x".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(Pattern::new(&format!("{}*", "x".repeat(MAX_NAME_CHARS + 1))).is_err());
    }

    #[test]
    fn refusals_name_the_user_the_action_and_the_room() {
        let refusal = Forbidden {
            user: Some("alice".into()),
            action: Action::Send,
            room: "ops".into(),
        };
        assert_eq!(refusal.to_string(), "alice may not send to #ops");
    }

    /// A plain recursive glob matcher, obviously right, to check the fast one.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..])),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn the_matcher_agrees_with_a_plain_glob(
            pattern in "[ab*-]{1,8}",
            name in "[ab-]{1,10}",
        ) {
            let parsed = Pattern::new(&pattern).unwrap();
            let room = RoomName::new(&name).unwrap();
            prop_assert_eq!(
                parsed.matches(&room),
                reference(pattern.as_bytes(), name.as_bytes()),
                "pattern {} name {}", pattern, name
            );
        }
    }
}
