//! The users file (`--users FILE`): who may log in with a password, where
//! each may go, and how many connections each may hold.
//!
//! TOML, one table per user, so that `switchboard passwd USER >> FILE`
//! adds one:
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `switchboard passwd alice`
//! join = ["lobby", "team-*"]   # rooms alice may join; default ["*"], every room
//! send = ["team-*"]            # rooms alice may send to; default: the same as join
//! max-connections = 2          # at once; default 1. The 2nd is named alice-2
//! ```
//!
//! An entry without `password` cannot log in with a password; it still
//! reserves the name, and bounds what a JWT for that user may do.
//!
//! User names follow the rules of client names (see
//! [`Name`]), and the names of a file's users
//! are reserved: nobody else may take them, nor a name that could be
//! mistaken for one (`Alice`, `AIice`, `аlice` with a Cyrillic `а`), nor
//! one of the names its further connections get (`alice-2`, ...).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::hub::{comparison_key, shape_key, Name};

use super::grants::Grants;
use super::password;
use super::LoadError;

/// Connections a user may hold at once when its entry does not say:
/// one person, one connection. A user that needs more (several devices,
/// a script beside a terminal) says so with `max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1;

/// One user of the users file.
#[derive(Clone)]
pub struct User {
    name: Name,
    password: Option<String>,
    join: Grants,
    send: Grants,
    /// The clients it may message directly (name patterns).
    direct: Grants,
    max_connections: u32,
}

impl User {
    /// The user's name, as the file spells it (Unicode NFC).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The argon2id hash of its password, if it may log in with one.
    pub fn password_hash(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The rooms it may join.
    pub fn join(&self) -> &Grants {
        &self.join
    }

    /// The rooms it may send to.
    pub fn send(&self) -> &Grants {
        &self.send
    }

    /// The clients it may message directly.
    pub fn direct(&self) -> &Grants {
        &self.direct
    }

    /// How many connections it may hold at once.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }
}

/// Without the password hash: it has no business in logs.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field(
                "password",
                &self.password.as_ref().map(|_| "<argon2id hash>"),
            )
            .field("join", &self.join)
            .field("send", &self.send)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The users of a users file, found by name the way the hub compares
/// names.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<User>,
    /// [`comparison_key`] of each name, to its index in `users`.
    by_key: HashMap<String, usize>,
    /// [`shape_key`] of each name, to its index in `users`.
    by_shape: HashMap<String, usize>,
}

impl Users {
    /// Reads and checks the users file at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            what: "users file",
            path: path.to_owned(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Parses and checks the text of a users file; `path` names it in
    /// errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LoadError> {
        let syntax = |message: String| LoadError::Syntax {
            what: "users file",
            path: path.to_owned(),
            message,
        };
        let mut document: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax(e.to_string().trim_end().replace('\n', " / ")))?;
        let users = match document.remove("users") {
            None => toml::Table::new(),
            Some(toml::Value::Table(users)) => users,
            Some(_) => {
                return Err(syntax(
                    "`users` must be tables: [users.NAME] with password = \"...\"".into(),
                ))
            }
        };
        if let Some(key) = document.keys().next() {
            return Err(syntax(format!(
                "unknown key `{key}`: the file holds only [users.NAME] tables"
            )));
        }
        let mut parsed = Users::default();
        for (name, entry) in users {
            let user = parse_user(path, &name, entry)?;
            parsed.add(path, user)?;
        }
        parsed.check_suffixes(path)?;
        Ok(parsed)
    }

    fn add(&mut self, path: &Path, user: User) -> Result<(), LoadError> {
        let key = comparison_key(user.name());
        let shape = shape_key(user.name());
        if let Some(&other) = self.by_key.get(&key).or_else(|| self.by_shape.get(&shape)) {
            return Err(LoadError::User {
                path: path.to_owned(),
                user: user.name().to_owned(),
                field: "name".into(),
                message: format!(
                    "cannot be told apart from user {:?} (names differing only in case or look-alike letters are one name)",
                    self.users[other].name()
                ),
            });
        }
        let index = self.users.len();
        self.by_key.insert(key, index);
        self.by_shape.insert(shape, index);
        self.users.push(user);
        Ok(())
    }

    /// Refuses a user named like another's further connection (`bob-2`
    /// beside `bob`): the two would claim the same name.
    fn check_suffixes(&self, path: &Path) -> Result<(), LoadError> {
        for user in &self.users {
            if let Some(base) = self.base_of(user.name()) {
                return Err(LoadError::User {
                    path: path.to_owned(),
                    user: user.name().to_owned(),
                    field: "name".into(),
                    message: format!(
                        "is (or looks like) the name of a further connection of user {:?}; pick another name",
                        base.name()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The user `name` names, compared the way the hub compares names
    /// (`Alice`, `AIice` and `alice` are the same user).
    pub fn find(&self, name: &str) -> Option<&User> {
        self.by_keys(&comparison_key(name), &shape_key(name))
    }

    fn by_keys(&self, key: &str, shape: &str) -> Option<&User> {
        self.by_key
            .get(key)
            .or_else(|| self.by_shape.get(shape))
            .map(|&i| &self.users[i])
    }

    /// The user whose further connection `name` would be (`alice-2` for
    /// `alice`, or anything that looks like it), if any.
    fn base_of(&self, name: &str) -> Option<&User> {
        let key = comparison_key(name);
        let shape = shape_key(name);
        let base_key = strip_counter(&key)?;
        let base_shape = strip_counter(&shape).unwrap_or(base_key);
        self.by_keys(base_key, base_shape)
    }

    /// The user that reserves `name`, if any: the user of that name, or
    /// the one whose further connections are named `name` (`alice-2`).
    /// Names are compared as the hub compares them, so look-alikes are
    /// reserved too.
    pub fn reserving(&self, name: &str) -> Option<&User> {
        self.find(name).or_else(|| self.base_of(name))
    }

    /// Whether `name` is reserved for a user of the file (see
    /// [`Users::reserving`]).
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserving(name).is_some()
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users, in the file's order of names.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }
}

/// The name a user's `n`th connection at once gets (counting from 1):
/// its own name for the first, `NAME-2`, `NAME-3`, ... for the others.
pub fn connection_name(user: &str, n: u32) -> String {
    if n <= 1 {
        user.to_owned()
    } else {
        format!("{user}-{n}")
    }
}

/// A comparison key without a trailing connection counter (`-2`, or a
/// look-alike of it such as `-l` for `-1`), if it has one.
pub(crate) fn strip_counter(key: &str) -> Option<&str> {
    static COUNTER_CHARS: OnceLock<(String, String)> = OnceLock::new();
    let (separators, digits) = COUNTER_CHARS.get_or_init(|| {
        let keys = |chars: &str| -> String {
            chars
                .chars()
                .flat_map(|c| {
                    let c = c.to_string();
                    comparison_key(&c)
                        .chars()
                        .chain(shape_key(&c).chars())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        (keys("-_."), keys("0123456789"))
    });
    let counter_start = key
        .char_indices()
        .rev()
        .take_while(|(_, c)| digits.contains(*c))
        .last()
        .map(|(i, _)| i)?;
    let base = &key[..counter_start];
    let base = base.strip_suffix(|c: char| separators.contains(c))?;
    (!base.is_empty()).then_some(base)
}

fn parse_user(path: &Path, raw_name: &str, entry: toml::Value) -> Result<User, LoadError> {
    let error = |field: &str, message: String| LoadError::User {
        path: path.to_owned(),
        user: raw_name.to_owned(),
        field: field.to_owned(),
        message,
    };
    let name = Name::new(raw_name).map_err(|e| error("name", e.to_string()))?;
    let toml::Value::Table(mut entry) = entry else {
        return Err(error(
            "name",
            "must be a table: [users.NAME] followed by password = \"...\"".into(),
        ));
    };
    let password = match entry.remove("password") {
        None => None,
        Some(toml::Value::String(phc)) => {
            password::check_hash(&phc).map_err(|e| error("password", e.to_string()))?;
            Some(phc)
        }
        Some(other) => {
            return Err(error(
                "password",
                format!(
                    "must be a string (an argon2id hash), not {}",
                    other.type_str()
                ),
            ))
        }
    };
    let patterns = |field: &str, value: toml::Value| -> Result<Grants, LoadError> {
        let toml::Value::Array(items) = value else {
            return Err(error(
                field,
                format!(
                    "must be a list of room patterns such as [\"lobby\", \"team-*\"], not {}",
                    value.type_str()
                ),
            ));
        };
        let texts = items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(text) => Ok(text),
                other => Err(error(
                    field,
                    format!("room patterns are strings, not {}", other.type_str()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Grants::parse(&texts).map_err(|e| error(field, e.to_string()))
    };
    let join = entry
        .remove("join")
        .map(|v| patterns("join", v))
        .transpose()?
        .unwrap_or_default();
    let send = entry
        .remove("send")
        .map(|v| patterns("send", v))
        .transpose()?
        .unwrap_or_else(|| join.clone());
    let direct = entry
        .remove("direct")
        .map(|v| patterns("direct", v))
        .transpose()?
        .unwrap_or_else(|| super::direct_default(&send));
    let max_connections = match entry.remove("max-connections") {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(toml::Value::Integer(n)) => match u32::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(error(
                    "max-connections",
                    format!("must be at least 1 (remove the entry to disable the user), not {n}"),
                ))
            }
        },
        Some(other) => {
            return Err(error(
                "max-connections",
                format!("must be a whole number, not {}", other.type_str()),
            ))
        }
    };
    if let Some(field) = entry.keys().next() {
        return Err(error(
            field,
            "unknown field: a user has password, join, send, direct and max-connections".into(),
        ));
    }
    // Its last connection's name must be a valid name too.
    let last = connection_name(name.as_str(), max_connections);
    if let Err(e) = Name::new(&last) {
        return Err(error(
            "max-connections",
            format!("its connection {max_connections} would be named {last:?}, which is not a valid name: {e}"),
        ));
    }
    Ok(User {
        name,
        password,
        join,
        send,
        direct,
        max_connections,
    })
}

/// Where a users file would be reported from when it was not read from
/// disk (tests, `switchboard passwd` checks).
pub fn unnamed() -> PathBuf {
    PathBuf::from("<users file>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::RoomName;

    fn hash() -> &'static str {
        static HASH: OnceLock<String> = OnceLock::new();
        HASH.get_or_init(|| password::hash("s3cret").unwrap())
    }

    fn parse(text: &str) -> Result<Users, LoadError> {
        Users::parse(&text.replace("HASH", hash()), Path::new("users.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    #[test]
    fn an_entry_gives_a_password_rooms_and_a_connection_limit() {
        let users = parse(
            r#"
            [users.alice]
            password = "HASH"
            join = ["lobby", "team-*"]
            send = ["team-*"]
            max-connections = 2
            "#,
        )
        .unwrap();
        let alice = users.find("alice").unwrap();
        assert_eq!(alice.name(), "alice");
        assert_eq!(alice.password_hash(), Some(hash()));
        assert!(alice.join().allows(&room("lobby")));
        assert!(!alice.send().allows(&room("lobby")));
        assert!(alice.send().allows(&room("team-red")));
        assert_eq!(alice.max_connections(), 2);
        assert!(!format!("{alice:?}").contains(hash()), "no hash in Debug");
    }

    #[test]
    fn defaults_are_every_room_sending_where_joining_and_one_connection() {
        let users = parse(
            r#"
            [users.bob]
            password = "HASH"
            [users.carol]
            password = "HASH"
            join = ["ops"]
            "#,
        )
        .unwrap();
        let bob = users.find("bob").unwrap();
        assert!(bob.join().allows_all() && bob.send().allows_all());
        assert_eq!(bob.max_connections(), DEFAULT_MAX_CONNECTIONS);
        let carol = users.find("carol").unwrap();
        assert!(carol.send().allows(&room("ops")));
        assert!(
            !carol.send().allows(&room("lobby")),
            "send defaults to join"
        );
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn an_empty_file_has_no_users() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[users]\n").unwrap().is_empty());
    }

    #[test]
    fn an_entry_without_a_password_reserves_the_name() {
        let users = parse("[users.svc]\njoin = [\"ops\"]\n").unwrap();
        let svc = users.find("svc").unwrap();
        assert_eq!(svc.password_hash(), None);
        assert!(users.is_reserved("svc"));
    }

    #[test]
    fn users_are_found_as_the_hub_compares_names() {
        let users = parse("[users.alice]\npassword = \"HASH\"\n").unwrap();
        for same in ["alice", "Alice", "ALICE", "AIice", "аlice"] {
            assert_eq!(users.find(same).map(User::name), Some("alice"), "{same}");
        }
        assert!(users.find("alicia").is_none());
    }

    #[test]
    fn a_users_names_and_its_further_connections_names_are_reserved() {
        let users = parse("[users.alice]\npassword = \"HASH\"\nmax-connections = 3\n").unwrap();
        for reserved in [
            "alice", "Alice", "alice-2", "ALICE-3", "alice-12", "aIice-2", "alice-l",
        ] {
            assert!(users.is_reserved(reserved), "{reserved}");
            assert_eq!(users.reserving(reserved).unwrap().name(), "alice");
        }
        for free in ["alice2", "alice-x", "alicia-2", "bob", "-2", "alice-2-3"] {
            assert!(!users.is_reserved(free), "{free}");
        }
    }

    #[test]
    fn connection_names_count_from_the_second() {
        assert_eq!(connection_name("alice", 1), "alice");
        assert_eq!(connection_name("alice", 2), "alice-2");
        assert_eq!(connection_name("小明", 10), "小明-10");
    }

    #[test]
    fn errors_name_the_file_the_user_and_the_field() {
        let cases = [
            (
                "[users.alice]\npassword = \"hunter2\"\n",
                "users file users.toml: user \"alice\": password: not an argon2id password hash",
            ),
            (
                "[users.alice]\npassword = \"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmFkYmE\"\n",
                "user \"alice\": password: not an argon2id password hash",
            ),
            ("[users.alice]\npassword = 3\n", "user \"alice\": password: must be a string"),
            ("[users.alice]\njoin = \"lobby\"\n", "user \"alice\": join: must be a list"),
            ("[users.alice]\nsend = [\"a b\"]\n", "user \"alice\": send: room pattern \"a b\""),
            ("[users.alice]\njoin = [1]\n", "user \"alice\": join: room patterns are strings"),
            ("[users.alice]\nmax-connections = 0\n", "user \"alice\": max-connections: must be at least 1"),
            ("[users.alice]\nmax-connections = -1\n", "max-connections: must be at least 1"),
            ("[users.alice]\nmax-connections = \"2\"\n", "max-connections: must be a whole number"),
            ("[users.alice]\npasword = \"HASH\"\n", "user \"alice\": pasword: unknown field"),
            ("[users.\"a b\"]\npassword = \"HASH\"\n", "user \"a b\": name: a name may hold"),
            ("[users.\"аlice\"]\npassword = \"HASH\"\n", "user \"аlice\": name: a name must be written in one script"),
            ("[user.alice]\npassword = \"HASH\"\n", "users file users.toml: unknown key `user`"),
            ("users = 3\n", "`users` must be tables"),
            ("[users.alice\n", "users file users.toml: "),
            ("[users]\nalice = 3\n", "user \"alice\": name: must be a table"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
            assert!(!message.contains(hash()), "no hash in {message}");
        }
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let message = error("\n\n[users.alice]\npassword = \n");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn users_that_cannot_be_told_apart_are_refused() {
        let message =
            error("[users.alice]\npassword = \"HASH\"\n[users.Alice]\npassword = \"HASH\"\n");
        assert!(
            message.contains("cannot be told apart from user"),
            "{message}"
        );
        let message = error("[users.alice]\n[users.AIice]\n");
        assert!(message.contains("cannot be told apart"), "{message}");
    }

    #[test]
    fn a_user_named_like_anothers_further_connection_is_refused() {
        let message = error("[users.bob]\n[users.bob-2]\n");
        assert!(
            message.contains("user \"bob-2\": name: is (or looks like) the name of a further connection of user \"bob\""),
            "{message}"
        );
        parse("[users.bob]\n[users.bob2]\n").unwrap();
    }

    #[test]
    fn a_limit_whose_last_name_would_be_too_long_is_refused() {
        let long = "x".repeat(31);
        let message = error(&format!("[users.{long}]\nmax-connections = 2\n"));
        assert!(message.contains("would be named"), "{message}");
        parse(&format!("[users.{long}]\nmax-connections = 1\n")).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let message = Users::load(Path::new("/nonexistent/users.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cannot read the users file /nonexistent/users.toml: "),
            "{message}"
        );
    }
}
