//! The devices file (`--devices FILE`): which devices may register on a
//! device listener that asks for authentication
//! (`raw://...?register=imei&auth=required`).
//!
//! TOML, one table per device, keyed by its identity as its name shows it
//! (the `{id}` of `dev-{id}`), so that a line adds one:
//!
//! ```toml
//! [devices.861234567890123]            # an IMEI
//! label = "pump house 3"               # optional: shown in the API and the console
//!
//! [devices.861234567890124]
//! key = "k9Qe2xVb7Lm4"                 # optional: its registration must carry it
//!
//! [devices."aa:bb:cc:00:11:22"]        # a MAC, with or without separators
//! ```
//!
//! An identity is not a secret: an IMEI is printed on the device. A
//! device with a `key` must send it in its registration, in the group
//! named `key` of a `register=regex:` (for example
//! `regex:(?<id>[0-9]{15}),(?<key>[^\r\n]+)` for `861234567890124,k9Qe...`),
//! so that whoever knows its IMEI cannot take its place.
//!
//! Identities are compared without regard to ASCII case (a MAC or a hex
//! identity may be written either way); keys are compared exactly, in
//! constant time.

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
        let syntax = |message: String| LoadError::Syntax {
            what: "devices file",
            path: path.to_owned(),
            message,
        };
        let mut document: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| syntax(e.to_string().trim_end().replace('\n', " / ")))?;
        let devices = match document.remove("devices") {
            None => toml::Table::new(),
            Some(toml::Value::Table(devices)) => devices,
            Some(_) => {
                return Err(syntax(
                    "`devices` must be tables: [devices.IDENTITY], with label = \"...\" or key = \"...\" if need be".into(),
                ))
            }
        };
        if let Some(key) = document.keys().next() {
            return Err(syntax(format!(
                "unknown key `{key}`: the file holds only [devices.IDENTITY] tables"
            )));
        }
        let mut parsed = Devices::default();
        for (id, entry) in devices {
            let device = parse_device(path, &id, entry)?;
            let key = normalize(&device.id);
            if let Some(other) = parsed.by_id.get(&key) {
                return Err(LoadError::Device {
                    path: path.to_owned(),
                    device: id,
                    field: "identity".into(),
                    message: format!("is the same identity as {:?}", other.id),
                });
            }
            parsed.by_id.insert(key, device);
        }
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

fn parse_device(path: &Path, id: &str, entry: toml::Value) -> Result<KnownDevice, LoadError> {
    let error = |field: &str, message: String| LoadError::Device {
        path: path.to_owned(),
        device: id.to_owned(),
        field: field.to_owned(),
        message,
    };
    if id.is_empty() || id.len() > MAX_REGISTRATION || id.chars().any(char::is_control) {
        return Err(error(
            "identity",
            format!("must be 1 to {MAX_REGISTRATION} bytes, without control characters"),
        ));
    }
    let toml::Value::Table(mut entry) = entry else {
        return Err(error(
            "identity",
            "must be a table: [devices.IDENTITY], then label = \"...\" or key = \"...\" if need be"
                .into(),
        ));
    };
    let mut string = |field: &str| match entry.remove(field) {
        None => Ok(None),
        Some(toml::Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(error(
            field,
            format!("must be a string, not {}", other.type_str()),
        )),
    };
    let label = string("label")?;
    let key = string("key")?;
    if let Some(field) = entry.keys().next() {
        return Err(error(
            field,
            "unknown field: a device has `label` and `key`".into(),
        ));
    }
    if let Some(label) = &label {
        if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
            return Err(error(
                "label",
                format!("must be at most {MAX_LABEL_LEN} characters, without control characters"),
            ));
        }
    }
    if let Some(key) = &key {
        if key.len() < MIN_KEY_LEN || key.len() > MAX_REGISTRATION {
            return Err(error(
                "key",
                format!(
                    "is {} bytes long: a key is {MIN_KEY_LEN} to {MAX_REGISTRATION} bytes",
                    key.len()
                ),
            ));
        }
    }
    Ok(KnownDevice {
        id: id.to_owned(),
        label: label.filter(|label| !label.is_empty()),
        key: key.map(|key| digest(key.as_bytes())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Devices, String> {
        Devices::parse(text, Path::new("devices.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_devices_file_lists_identities_with_labels_and_keys() {
        let devices = parse(
            r#"
            [devices.861234567890123]
            label = "pump house 3"

            [devices.861234567890124]
            key = "k9Qe2xVb7Lm4"

            [devices."AA:BB:CC:00:11:22"]
            "#,
        )
        .unwrap();
        assert_eq!(devices.len(), 3);
        let pump = devices.admit("861234567890123", None).unwrap();
        assert_eq!(pump.label(), Some("pump house 3"));
        // A key is not asked of a device that has none.
        assert!(devices
            .admit("861234567890123", Some(b"anything"))
            .is_some());
        assert!(devices.admit("861234567890124", None).is_none());
        assert!(devices
            .admit("861234567890124", Some(b"wrong-key"))
            .is_none());
        assert!(devices
            .admit("861234567890124", Some(b"k9Qe2xVb7Lm4"))
            .is_some());
        // A MAC as register=mac gives it, and in either case.
        assert!(devices.admit("aabbcc001122", None).is_some());
        assert!(devices.find("AABBCC001122").is_some());
        assert!(devices.admit("861234567890125", None).is_none());
        assert!(!format!("{devices:?}").contains("k9Qe"));
    }

    #[test]
    fn mistakes_in_a_devices_file_name_the_device_and_the_field() {
        let cases = [
            ("[devices.a]\nkey = \"short\"", "device \"a\": key"),
            ("[devices.a]\nlabel = 3", "must be a string"),
            ("[devices.a]\ncolor = \"red\"", "color: unknown field"),
            ("[devices.A]\n[devices.a]", "same identity"),
            ("devices = 1", "must be tables"),
            ("[users.a]", "unknown key `users`"),
            ("[devices", "devices file devices.toml"),
            ("[devices.a]\nlabel = \"a\\nb\"", "control characters"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let long = format!("[devices.{}]", "1".repeat(MAX_REGISTRATION + 1));
        assert!(parse(&long).unwrap_err().contains("identity"));
        assert!(parse("").unwrap().is_empty());
    }
}
