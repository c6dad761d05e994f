//! Bounded answers to "which rooms?" and "who is here?": a server may hold
//! tens of thousands of rooms and a room thousands of members, and one
//! request must not cost the server (or the asker's queue) in proportion.

use super::{HubError, Name, RoomInfo, RoomName, Session};

/// Longest pattern accepted, in characters: as long as a name, and a
/// couple of wildcards.
pub const MAX_PATTERN_CHARS: usize = 64;

/// Part of a long list, and how long the whole is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    /// The entries shown: at most the list limit.
    pub items: Vec<T>,
    /// How many there are in all (rooms on the server, members of the
    /// room), matching the pattern or not.
    pub total: usize,
    /// Whether entries matching the pattern were left out: more matched
    /// than the limit, or the scan stopped at the scan limit
    /// ([`HubSettings::max_list_scan`](super::HubSettings::max_list_scan)).
    pub more: bool,
}

/// A filter for listings, as typed by a user: `*` matches any run of
/// characters, `?` any one character; without either, the pattern matches
/// names that contain it. Case does not matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pattern can have at most {MAX_PATTERN_CHARS} characters, this one has {0}")]
pub struct PatternTooLong(pub usize);

impl Pattern {
    /// Parses a pattern; one without wildcards matches as a substring.
    pub fn new(raw: &str) -> Result<Self, PatternTooLong> {
        let len = raw.chars().count();
        if len > MAX_PATTERN_CHARS {
            return Err(PatternTooLong(len));
        }
        // Lower case one character at a time, exactly as names are when
        // matched (`str::to_lowercase` would make a final Σ a ς).
        let lower: Vec<char> = raw.chars().flat_map(char::to_lowercase).collect();
        let chars = if lower.iter().any(|c| matches!(c, '*' | '?')) {
            lower
        } else {
            std::iter::once('*')
                .chain(lower)
                .chain(std::iter::once('*'))
                .collect()
        };
        Ok(Pattern { chars })
    }

    /// Whether `name` matches, ignoring case. Linear in the name's length
    /// times the pattern's at worst: no backtracking blow-up.
    pub fn matches(&self, name: &str) -> bool {
        // Names are short (32 characters, each at most 3 in lower case):
        // lower-cased on the stack, as this runs for every entry a listing
        // looks at.
        let mut lower = ['\0'; 4 * MAX_PATTERN_CHARS];
        let mut len = 0;
        for c in name.chars().flat_map(char::to_lowercase) {
            if len == lower.len() {
                // Longer than any name: no allocation-free answer; rare.
                let name: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
                return self.matches_chars(&name);
            }
            lower[len] = c;
            len += 1;
        }
        self.matches_chars(&lower[..len])
    }

    fn matches_chars(&self, name: &[char]) -> bool {
        let pattern = &self.chars;
        let (mut p, mut n) = (0, 0);
        // Where the last `*` was, and where in the name it resumes.
        let mut star: Option<(usize, usize)> = None;
        while n < name.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, n));
                    p += 1;
                }
                Some(&c) if c == '?' || c == name[n] => {
                    p += 1;
                    n += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        p = sp + 1;
                        n = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

/// What a client asks to list: each answer at most the list limit long,
/// after looking at most the scan limit of rooms or members.
impl Session {
    /// The names in `room` (default: the current room) that match
    /// `pattern`: at most the list limit of them, sorted, out of the
    /// room's total.
    pub fn who(
        &self,
        room: Option<&RoomName>,
        pattern: Option<&Pattern>,
    ) -> Result<(RoomName, Listing<Name>), HubError> {
        let name = match room {
            Some(name) => name.clone(),
            None => self.current_room().cloned().ok_or(HubError::NoRoom)?,
        };
        // Who is in a room the user may not join is not its to know.
        self.may_join(&name)?;
        let settings = &self.hub.shared.settings;
        let (limit, scan) = (settings.max_list, settings.max_list_scan);
        // Members on other nodes, as far as this one knows: at most a
        // scan's worth of them is copied out of the directory.
        let (room, remote, remote_total) = {
            let directory = self.hub.directory();
            let remote = directory.remote.rooms.get(&name);
            let room = directory.rooms.get(&name).cloned();
            if room.is_none() && remote.is_none() {
                return Err(HubError::NoSuchRoom(name));
            }
            let remote_total = remote.map_or(0, |m| m.len());
            let remote: Vec<Name> = remote
                .into_iter()
                .flat_map(|m| m.values().take(scan).cloned())
                .collect();
            (room, remote, remote_total)
        };
        let members = room.as_ref().map(|room| room.members());
        let total = members.as_ref().map_or(0, |m| m.len()) + remote_total;
        let mut names = Vec::new();
        let mut more = false;
        let local = members
            .iter()
            .flat_map(|members| members.values().map(|member| member.name()));
        for (scanned, name) in local.chain(remote).enumerate() {
            if scanned == scan {
                more = true;
                break;
            }
            if pattern.is_none_or(|pattern| pattern.matches(name.as_str())) {
                if names.len() == limit {
                    more = true;
                    break;
                }
                names.push(name);
            }
        }
        drop(members);
        names.sort_by_cached_key(|name| name.as_str().to_lowercase());
        Ok((
            room.map_or(name, |room| room.name.clone()),
            Listing {
                items: names,
                total,
                more,
            },
        ))
    }

    /// The rooms on the server that match `pattern`, largest first: at
    /// most the list limit of them, out of the server's total.
    pub fn rooms(&self, pattern: Option<&Pattern>) -> Listing<RoomInfo> {
        let limit = self.hub.shared.settings.max_list;
        let directory = self.hub.directory();
        if !directory.remote.rooms.is_empty() {
            return self.cluster_rooms(&directory, pattern);
        }
        let total = directory.rooms.len();
        let mut items = Vec::new();
        let mut more = false;
        let by_size = directory.by_size.iter();
        for (scanned, (members, name)) in by_size.map(|(n, room)| (n, &room.0.name)).enumerate() {
            if scanned == self.hub.shared.settings.max_list_scan {
                more = true;
                break;
            }
            if pattern.is_none_or(|pattern| pattern.matches(name.as_str())) && self.may_see(name) {
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(RoomInfo {
                    name: name.clone(),
                    members: members.0,
                });
            }
        }
        Listing { items, total, more }
    }

    /// Whether the client may see `room` in a listing: a user kept to
    /// some rooms sees only those.
    fn may_see(&self, room: &RoomName) -> bool {
        self.may_join(room).is_ok()
    }

    /// [`rooms`](Session::rooms) across a cluster: the rooms of this node
    /// and of the others, each with its members on every node. Costs a
    /// pass over all rooms (at most the scan limit of them) and a sort.
    fn cluster_rooms(
        &self,
        directory: &super::Directory,
        pattern: Option<&Pattern>,
    ) -> Listing<RoomInfo> {
        let settings = &self.hub.shared.settings;
        let remote = &directory.remote.rooms;
        let mut sizes: Vec<(usize, &RoomName)> = Vec::new();
        let mut total = 0;
        let mut more = false;
        let local = directory.by_size.iter().map(|(members, room)| {
            let name = &room.0.name;
            let elsewhere = remote.get(name).map_or(0, |m| m.len());
            (members.0 + elsewhere, name)
        });
        let only_remote = remote
            .iter()
            .filter(|(name, _)| !directory.rooms.contains_key(name))
            .map(|(name, members)| (members.len(), name));
        for (scanned, (members, name)) in local.chain(only_remote).enumerate() {
            total += 1;
            if scanned >= settings.max_list_scan {
                more = true;
                continue;
            }
            if pattern.is_none_or(|pattern| pattern.matches(name.as_str())) && self.may_see(name) {
                sizes.push((members, name));
            }
        }
        sizes.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        if sizes.len() > settings.max_list {
            sizes.truncate(settings.max_list);
            more = true;
        }
        Listing {
            items: sizes
                .into_iter()
                .map(|(members, name)| RoomInfo {
                    name: name.clone(),
                    members,
                })
                .collect(),
            total,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn wildcards_and_substrings_match_ignoring_case() {
        assert!(matches("dev-*", "dev-42"));
        assert!(!matches("dev-*", "my-dev-42"));
        assert!(matches("*-42", "dev-42"));
        assert!(matches("d?v*", "DAV"));
        assert!(matches("lob", "lobby"));
        assert!(matches("BB", "lobby"));
        assert!(!matches("lobx", "lobby"));
        assert!(matches("小", "小明"));
        assert!(matches("*", ""));
        // Found by fuzzing: a final capital sigma.
        assert!(matches("ΟΔΟΣ", "ΟΔΟΣ"));
        assert!(matches("aΣ", "aΣ"));
        assert!(!matches("?", ""));
    }

    #[test]
    fn a_pattern_longer_than_a_name_and_wildcards_is_refused() {
        assert!(Pattern::new(&"*".repeat(64)).is_ok());
        assert_eq!(Pattern::new(&"a".repeat(65)), Err(PatternTooLong(65)));
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = Pattern::new(&"*a".repeat(30)).unwrap();
        let name = "a".repeat(5000) + "b";
        assert!(!pattern.matches(&name));
    }
}
