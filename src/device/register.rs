//! Registration packets (`register=`): how a device says who it is, in
//! its first packet, or in front of every packet (`register-each`).

use std::fmt;
use std::str::FromStr;

use super::{NotRegistration, OptionError};

/// Longest registration a device may send, in bytes: DTUs allow custom
/// registration packets of up to 40.
pub const MAX_REGISTRATION: usize = 40;

/// How a device identifies itself.
#[derive(Debug, Clone)]
pub enum Register {
    /// 15 ASCII digits.
    Imei,
    /// 19 or 20 ASCII digits starting with 89.
    Iccid,
    /// 12 hex digits, bare or in pairs separated by `:` or `-`.
    Mac,
    /// Everything up to the first newline (or the end of the packet).
    Line,
    /// The first N bytes.
    Length(usize),
    /// Bytes starting with this prefix, up to the end of the packet: what
    /// follows the prefix is the identity.
    Hex(Vec<u8>),
    /// The first match of a regular expression at the start of the packet:
    /// its group named `id`, or else its first capture group (or else the
    /// whole match) is the identity; a group named `key` is the device's
    /// key, checked against the devices file (`--devices`).
    Regex(regex::bytes::Regex),
}

impl PartialEq for Register {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Register::Regex(a), Register::Regex(b)) => a.as_str() == b.as_str(),
            (Register::Length(a), Register::Length(b)) => a == b,
            (Register::Hex(a), Register::Hex(b)) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for Register {}

impl FromStr for Register {
    type Err = OptionError;
    fn from_str(spec: &str) -> Result<Self, OptionError> {
        let (kind, value) = spec.split_once(':').unwrap_or((spec, ""));
        Ok(match (kind, value) {
            ("imei", "") => Register::Imei,
            ("iccid", "") => Register::Iccid,
            ("mac", "") => Register::Mac,
            ("line", "") => Register::Line,
            ("len", n) => match n.parse::<usize>() {
                Ok(n @ 1..=MAX_REGISTRATION) => Register::Length(n),
                _ => return Err(OptionError::RegisterLength(spec.to_owned())),
            },
            ("hex", prefix) => {
                let prefix =
                    super::hex::parse(prefix).map_err(|error| OptionError::RegisterPrefix {
                        spec: spec.to_owned(),
                        error,
                    })?;
                if prefix.len() >= MAX_REGISTRATION {
                    return Err(OptionError::RegisterPrefixLength(spec.to_owned()));
                }
                Register::Hex(prefix)
            }
            ("regex", pattern) => {
                let regex = regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|error| OptionError::RegisterRegex {
                        spec: spec.to_owned(),
                        error,
                    })?;
                let named = |group: &str| regex.capture_names().flatten().any(|n| n == group);
                if named("key") && !named("id") {
                    return Err(OptionError::KeyWithoutId(spec.to_owned()));
                }
                Register::Regex(regex)
            }
            _ => return Err(OptionError::Register(spec.to_owned())),
        })
    }
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Register::Imei => f.write_str("imei"),
            Register::Iccid => f.write_str("iccid"),
            Register::Mac => f.write_str("mac"),
            Register::Line => f.write_str("line"),
            Register::Length(n) => write!(f, "len:{n}"),
            Register::Hex(prefix) => {
                write!(f, "hex:{}", super::hex::format(prefix).replace(' ', ""))
            }
            Register::Regex(regex) => {
                let pattern = regex.as_str();
                let pattern = pattern
                    .strip_prefix("^(?:")
                    .and_then(|p| p.strip_suffix(')'))
                    .unwrap_or(pattern);
                write!(f, "regex:{pattern}")
            }
        }
    }
}

/// A device's identity, read from its registration.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// As it goes into the device's name: the registration's text when it
    /// is letters, digits, `-`, `_` and `.`, its bytes in hex otherwise.
    pub id: String,
    /// The registration's bytes, as they came (what `register-each`
    /// strips from every packet).
    pub raw: bytes::Bytes,
    /// The key it gave with its identity (`register=regex:` with a group
    /// named `key`), to be checked against the devices file.
    pub key: Option<bytes::Bytes>,
}

/// Without the key, and without the raw registration that holds it.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Identity");
        debug.field("id", &self.id);
        match &self.key {
            Some(_) => debug.field("key", &"<key>"),
            None => debug.field("raw", &self.raw),
        };
        debug.finish()
    }
}

impl Register {
    /// Whether registrations carry a key (a `regex:` with a group named
    /// `key`): their bytes are then kept out of the log.
    pub fn carries_key(&self) -> bool {
        matches!(self, Register::Regex(regex) if regex.capture_names().flatten().any(|n| n == "key"))
    }

    /// Whether the end of a registration can be told from the data after
    /// it in the same packet (needed for `register-each`).
    pub fn bounded(&self) -> bool {
        !matches!(self, Register::Hex(_))
    }

    /// Reads a registration at the start of `packet`: the identity, and
    /// how many bytes of the packet it took (a `line`'s newline included).
    /// `Err`: what the packet lacks, for the log.
    pub fn read(&self, packet: &[u8]) -> Result<(Identity, usize), NotRegistration> {
        let digits = |max: usize| {
            packet
                .iter()
                .take(max)
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let mut key = None;
        let (id_bytes, used): (&[u8], usize) = match self {
            Register::Imei => match digits(15) {
                15 => (&packet[..15], 15),
                _ => return Err(NotRegistration::NoImei),
            },
            Register::Iccid => match digits(20) {
                n @ (19 | 20) if packet.starts_with(b"89") => (&packet[..n], n),
                _ => return Err(NotRegistration::NoIccid),
            },
            Register::Mac => {
                let separated =
                    packet.len() >= 17 && (0..5).all(|i| matches!(packet[i * 3 + 2], b':' | b'-'));
                let hex: Vec<u8> = if separated {
                    packet[..17]
                        .iter()
                        .copied()
                        .filter(|b| !matches!(b, b':' | b'-'))
                        .collect()
                } else {
                    packet.iter().take(12).copied().collect()
                };
                if hex.len() != 12 || !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(NotRegistration::NoMac);
                }
                let id = String::from_utf8_lossy(&hex).to_ascii_lowercase();
                let used = if separated { 17 } else { 12 };
                return Ok((identity(id, &packet[..used]), used));
            }
            Register::Line => {
                let (line, used) = match memchr::memchr(b'\n', packet) {
                    Some(at) => (&packet[..at], at + 1),
                    None => (packet, packet.len()),
                };
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                (line, used)
            }
            Register::Length(n) if packet.len() >= *n => (&packet[..*n], *n),
            Register::Length(n) => {
                return Err(NotRegistration::TooShort {
                    have: packet.len(),
                    need: *n,
                })
            }
            Register::Hex(prefix) => match packet.strip_prefix(&prefix[..]) {
                Some(rest) => {
                    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
                    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
                    (rest, packet.len())
                }
                None => return Err(NotRegistration::NoPrefix(super::hex::format(prefix))),
            },
            Register::Regex(regex) => match regex.captures(packet) {
                Some(captures) => {
                    let whole = captures.get(0).expect("group 0 is the match");
                    let id = captures
                        .name("id")
                        .or_else(|| captures.get(1))
                        .unwrap_or(whole);
                    key = captures
                        .name("key")
                        .map(|key| bytes::Bytes::copy_from_slice(key.as_bytes()));
                    (id.as_bytes(), whole.end())
                }
                None => return Err(NotRegistration::NoMatch(self.to_string())),
            },
        };
        if id_bytes.is_empty() {
            return Err(NotRegistration::EmptyIdentity);
        }
        if id_bytes.len() > MAX_REGISTRATION {
            return Err(NotRegistration::LongIdentity(id_bytes.len()));
        }
        let plain = id_bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let id = if plain {
            String::from_utf8_lossy(id_bytes).into_owned()
        } else {
            super::hex::format(id_bytes)
                .replace(' ', "")
                .to_ascii_lowercase()
        };
        let mut identity = identity(id, &packet[..used]);
        identity.key = key;
        Ok((identity, used))
    }
}

fn identity(id: String, raw: &[u8]) -> Identity {
    Identity {
        id,
        raw: bytes::Bytes::copy_from_slice(raw),
        key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(register: &str, packet: &[u8]) -> Result<(String, usize), String> {
        let register: Register = register.parse().unwrap();
        register
            .read(packet)
            .map(|(identity, used)| (identity.id, used))
            .map_err(|why| why.to_string())
    }

    #[test]
    fn each_kind_of_registration_reads_its_identity_and_what_it_took() {
        assert_eq!(
            read("imei", b"861234567890123").unwrap(),
            ("861234567890123".into(), 15)
        );
        assert_eq!(read("imei", b"861234567890123\x01\x03").unwrap().1, 15);
        assert!(read("imei", b"86123456789012").is_err());
        assert!(read("imei", b"\xFE").is_err());
        assert_eq!(read("iccid", b"89860012345678901234").unwrap().1, 20);
        assert_eq!(read("iccid", b"8986001234567890123").unwrap().1, 19);
        assert!(read("iccid", b"12860012345678901234").is_err());
        assert_eq!(
            read("mac", b"AA:BB:CC:00:11:22").unwrap(),
            ("aabbcc001122".into(), 17)
        );
        assert_eq!(
            read("mac", b"aabbcc001122rest").unwrap(),
            ("aabbcc001122".into(), 12)
        );
        assert!(read("mac", b"AA:BB:CC").is_err());
        assert_eq!(
            read("line", b"pump-7\r\nT=21").unwrap(),
            ("pump-7".into(), 8)
        );
        assert_eq!(read("line", b"pump-7").unwrap(), ("pump-7".into(), 6));
        assert_eq!(
            read("len:4", b"\x01\x02\xAB\xCDdata").unwrap(),
            ("0102abcd".into(), 4)
        );
        assert!(read("len:4", b"\x01").is_err());
        assert_eq!(
            read("hex:AA55", b"\xAA\x55\x00\x2A").unwrap(),
            ("002a".into(), 4)
        );
        assert!(read("hex:AA55", b"\xAA\x56").is_err());
        assert!(read("hex:AA55", b"\xAA\x55").unwrap_err().contains("empty"));
        assert_eq!(
            read("regex:ID=(\\w+);", b"ID=tank3;T=4").unwrap(),
            ("tank3".into(), 9)
        );
        assert!(read("regex:ID=(\\w+);", b"T=4").is_err());
        assert!(read("line", &[b'x'; 41]).unwrap_err().contains("41 bytes"));
    }

    #[test]
    fn a_regex_registration_can_carry_a_key_beside_the_identity() {
        let register: Register = r"regex:(?<id>\d{15}),(?<key>[^\r\n]+)".parse().unwrap();
        let (identity, used) = register.read(b"861234567890123,s3cret\r\n").unwrap();
        assert_eq!(identity.id, "861234567890123");
        assert_eq!(identity.key.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(used, 22);
        assert!(!format!("{identity:?}").contains("s3cret"), "{identity:?}");
        let err = r"regex:(\d+),(?<key>\w+)".parse::<Register>().unwrap_err();
        assert!(err.to_string().contains("(?<id>...)"), "{err}");
    }

    #[test]
    fn register_specs_read_back_as_written_and_bad_ones_say_why() {
        for spec in [
            "imei",
            "iccid",
            "mac",
            "line",
            "len:8",
            "hex:AA55",
            "regex:ID=(\\d+)",
        ] {
            assert_eq!(spec.parse::<Register>().unwrap().to_string(), spec);
        }
        for bad in ["imsi", "len:0", "len:41", "hex:A", "regex:(", "line:2"] {
            assert!(bad.parse::<Register>().is_err(), "{bad}");
        }
    }
}
