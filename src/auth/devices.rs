//! The devices file (`--devices FILE`): which devices may register on a
//! device listener that asks for authentication
//! (`raw://...?register=imei&auth=required`).
//!
//! One device a line, as an inventory script writes it: its identity as
//! its name shows it (the `{id}` of `dev-{id}`), then its key if it has
//! one (`key=...`), then a label, all optional but the identity. `#`
//! starts a comment line; blank lines are skipped.
//!
//! ```text
//! # IDENTITY [key=KEY] [LABEL]
//! 861234567890123 pump house 3
//! 861234567890124 key=k9Qe2xVb7Lm4 tank 1
//! aa:bb:cc:00:11:22
//! ```
//!
//! An identity is not a secret: an IMEI is printed on the device. A
//! device with a key must send it in its registration, in the group named
//! `key` of a `register=regex:` (for example
//! `regex:(?<id>[0-9]{15}),(?<key>[^\r\n]+)` for `861234567890124,k9Qe...`),
//! so that whoever knows its IMEI cannot take its place.
//!
//! Identities are compared without regard to ASCII case (a MAC or a hex
//! identity may be written either way; a MAC with or without separators);
//! keys are compared exactly, in constant time. A line format rather than
//! TOML: a fleet of 100,000 devices is a 3 MB file, read in a blink, held
//! in about 200 bytes a device.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::LoadError;
use crate::device::MAX_REGISTRATION;

/// Shortest key a device may have, in bytes: a registration packet has
/// room for about 40 bytes, an IMEI takes 15 of them.
pub const MIN_KEY_LEN: usize = 8;

/// Longest label, in characters: it is shown in a table cell.
pub const MAX_LABEL_LEN: usize = 80;

/// One device of the devices file.
#[derive(Clone)]
pub struct KnownDevice {
    id: String,
    label: Option<String>,
    key: Option<[u8; 32]>,
}

impl KnownDevice {
    /// Its identity, as the file spells it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the operator calls it, if the file says.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Whether its registration must carry a key.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Whether `key` (what the registration carried) is this device's.
    fn key_matches(&self, key: Option<&[u8]>) -> bool {
        match (&self.key, key) {
            (None, _) => true,
            (Some(expected), Some(given)) => bool::from(digest(given).ct_eq(expected)),
            (Some(_), None) => false,
        }
    }
}

/// Without the key.
impl std::fmt::Debug for KnownDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownDevice")
            .field("id", &self.id)
            .field("label", &self.label)
            .field("key", &self.key.map(|_| "<key>"))
            .finish()
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The devices of a devices file, found by identity.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    by_id: HashMap<String, KnownDevice>,
}

impl Devices {
    /// Reads and checks the devices file at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            what: "devices file",
            path: path.to_owned(),
            source,
        })?;
        Devices::parse(&text, path)
    }

    /// Parses and checks the text of a devices file; `path` names it in
    /// errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LoadError> {
        let mut parsed = Devices::default();
        // The line each identity is on, to name both of a duplicate.
        let mut lines = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let device = parse_line(line).map_err(|message| LoadError::Device {
                path: path.to_owned(),
                line: number,
                message,
            })?;
            let key = normalize(&device.id);
            if let Some(first) = lines.insert(key.clone(), number) {
                return Err(LoadError::Device {
                    path: path.to_owned(),
                    line: number,
                    message: format!("device {:?} is listed already, on line {first}", device.id),
                });
            }
            parsed.by_id.insert(key, device);
        }
        parsed.by_id.shrink_to_fit();
        Ok(parsed)
    }

    /// The device whose identity is `id` (as a registration gives it).
    pub fn find(&self, id: &str) -> Option<&KnownDevice> {
        self.by_id.get(&normalize(id))
    }

    /// Checks a registration: the device `id` must be in the file, and
    /// carry its key if it has one. `None`: it may not register (unknown,
    /// or the wrong key: deliberately not told apart).
    pub fn admit(&self, id: &str, key: Option<&[u8]>) -> Option<&KnownDevice> {
        let device = self.find(id);
        // The key is checked even for an unknown device: the same work.
        let matched = match device {
            Some(device) => device.key_matches(key),
            None => {
                let _ = digest(key.unwrap_or_default());
                false
            }
        };
        device.filter(|_| matched)
    }

    /// How many devices there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// An identity as it is looked up: ASCII lower case, and a MAC written in
/// pairs (`AA:BB:CC:00:11:22`) as its twelve digits, which is how
/// `register=mac` gives it.
fn normalize(id: &str) -> String {
    let bytes = id.as_bytes();
    let pairs = bytes.len() == 17
        && (0..5).all(|i| matches!(bytes[i * 3 + 2], b':' | b'-'))
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i % 3 == 2 || b.is_ascii_hexdigit());
    if pairs {
        id.chars()
            .filter(|c| !matches!(c, ':' | '-'))
            .collect::<String>()
            .to_ascii_lowercase()
    } else {
        id.to_ascii_lowercase()
    }
}

/// One line: `IDENTITY [key=KEY] [LABEL]`; `Err`: what is wrong with it.
fn parse_line(line: &str) -> Result<KnownDevice, String> {
    let (id, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if id.chars().any(char::is_control) {
        return Err(format!("identity {id:?} holds a control character"));
    }
    if id.len() > MAX_REGISTRATION {
        return Err(format!(
            "identity {id:?} is {} bytes long, more than the {MAX_REGISTRATION} a registration may have",
            id.len()
        ));
    }
    let rest = rest.trim_start();
    let (key, label) = match rest.strip_prefix("key=") {
        Some(keyed) => {
            let (key, label) = keyed.split_once(char::is_whitespace).unwrap_or((keyed, ""));
            (Some(key), label.trim())
        }
        None => (None, rest),
    };
    if let Some(key) = key {
        if key.len() < MIN_KEY_LEN || key.len() > MAX_REGISTRATION {
            return Err(format!(
                "device {id:?}: its key is {} bytes long; a key is {MIN_KEY_LEN} to {MAX_REGISTRATION} bytes",
                key.len()
            ));
        }
    }
    if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        return Err(format!(
            "device {id:?}: its label must be at most {MAX_LABEL_LEN} characters, without control characters"
        ));
    }
    Ok(KnownDevice {
        id: id.to_owned(),
        label: (!label.is_empty()).then(|| label.to_owned()),
        key: key.map(|key| digest(key.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Devices, String> {
        Devices::parse(text, Path::new("devices.txt")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_devices_file_lists_identities_with_keys_and_labels() {
        let devices = parse(
            "# IDENTITY [key=KEY] [LABEL]\n\
             861234567890123 pump house 3\n\
             \n\
             861234567890124\tkey=k9Qe2xVb7Lm4   tank 1\n\
             AA:BB:CC:00:11:22\n",
        )
        .unwrap();
        assert_eq!(devices.len(), 3);
        let pump = devices.admit("861234567890123", None).unwrap();
        assert_eq!(pump.label(), Some("pump house 3"));
        assert!(!pump.has_key());
        // A key is not asked of a device that has none.
        assert!(devices
            .admit("861234567890123", Some(b"anything"))
            .is_some());
        assert!(devices.admit("861234567890124", None).is_none());
        assert!(devices
            .admit("861234567890124", Some(b"wrong-key"))
            .is_none());
        let tank = devices
            .admit("861234567890124", Some(b"k9Qe2xVb7Lm4"))
            .unwrap();
        assert_eq!(tank.label(), Some("tank 1"));
        // A MAC as register=mac gives it, and in either case.
        assert!(devices.admit("aabbcc001122", None).is_some());
        assert!(devices.find("AABBCC001122").is_some());
        assert_eq!(devices.find("aabbcc001122").unwrap().label(), None);
        assert!(devices.admit("861234567890125", None).is_none());
        assert!(!format!("{devices:?}").contains("k9Qe"));
    }

    #[test]
    fn mistakes_in_a_devices_file_name_the_line() {
        let cases = [
            ("a key=short", "line 1: device \"a\": its key is 5 bytes"),
            (
                "# ok\nA\na",
                "line 3: device \"a\" is listed already, on line 2",
            ),
            ("aa:bb:cc:00:11:22\naabbcc001122", "listed already"),
            ("a \u{7}bell", "control characters"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(
                error.starts_with("devices file devices.txt, line"),
                "{error}"
            );
        }
        let long = "1".repeat(MAX_REGISTRATION + 1);
        assert!(parse(&long).unwrap_err().contains("41 bytes"));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nobody yet\n").unwrap().is_empty());
    }
}
