//! Bounded answers to "which rooms?" and "who is here?": a server may hold
//! tens of thousands of rooms and a room thousands of members, and one
//! request must not cost the server (or the asker's queue) in proportion.

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
