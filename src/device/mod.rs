//! Devices on raw listeners: DTUs, ESP modules and serial-to-TCP
//! converters doing transparent transmission. What a listener knows of
//! them, from its options (`raw://0.0.0.0:9000?register=imei&heartbeat=hex:FE`):
//!
//! - how a device says who it is ([`Register`], `register=`), once or in
//!   front of every packet (`register-each`), and the name and room it
//!   then gets (`name=dev-{id}`, `room=dev-{id}`);
//! - what its heartbeat packets look like (`heartbeat=`): they keep it
//!   alive and are never relayed;
//! - how its stream is cut into packets ([`Frame`], `frame=`).
//!
//! The protocol that uses them is [`crate::protocol::Device`].

mod error;
pub mod framing;
pub mod hex;
pub mod modbus;
pub mod register;

pub use error::{HexError, NotRegistration, OptionError, Unusable};
pub use framing::{Frame, Framer, LengthPrefix};
pub use register::{Identity, Register, MAX_REGISTRATION};

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::hub::{Name, RoomName};

/// The default name template of a registered device.
pub const DEFAULT_NAME: &str = "dev-{id}";
/// How long a device has to register by default.
pub const DEFAULT_REGISTER_GRACE: Duration = Duration::from_secs(10);

/// What a raw listener knows of its devices. The default is a plain raw
/// listener: each read relayed as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// How a device says who it is; `None`: devices are guests.
    pub register: Option<Register>,
    /// The registration comes in front of every packet, and is stripped.
    pub register_each: bool,
    /// The name a registered device gets (`{id}` is its identity).
    pub name: Template,
    /// The room it joins (`{id}` is its identity); `None`: the listener's.
    pub room: Option<Template>,
    /// How long a device has after connecting to register; one whose
    /// registration is wrong is closed at the end of it too.
    pub register_grace: Duration,
    /// What its heartbeat packets are.
    pub heartbeat: Option<Heartbeat>,
    /// How its stream is cut into packets.
    pub frame: Frame,
    /// Its packets are Modbus RTU frames (`modbus=rtu`): those failing
    /// their CRC are counted.
    pub modbus: bool,
}

impl Default for DeviceSpec {
    fn default() -> Self {
        DeviceSpec {
            register: None,
            register_each: false,
            name: Template::parse(DEFAULT_NAME).expect("the default name template is valid"),
            room: None,
            register_grace: DEFAULT_REGISTER_GRACE,
            heartbeat: None,
            frame: Frame::None,
            modbus: false,
        }
    }
}

impl DeviceSpec {
    /// Whether this is a plain raw listener, with none of the above.
    pub fn is_plain(&self) -> bool {
        *self == DeviceSpec::default()
    }

    /// Checks that the options go together.
    pub fn check(&self) -> Result<(), OptionError> {
        match &self.register {
            None if self.register_each => Err(OptionError::EachWithoutRegister),
            None if self.room.is_some() => Err(OptionError::RoomWithoutRegister),
            Some(register) if self.register_each && !register.bounded() => {
                Err(OptionError::EachUnbounded(register.to_string()))
            }
            _ if self.modbus && !matches!(self.frame, Frame::Gap(_)) => {
                Err(OptionError::ModbusWithoutGap)
            }
            _ => Ok(()),
        }
    }

    /// The listener options that say this, as written in a listener spec.
    pub fn options(&self) -> Vec<String> {
        let default = DeviceSpec::default();
        let mut options = Vec::new();
        if let Some(register) = &self.register {
            options.push(format!("register={register}"));
        }
        if self.register_each {
            options.push("register-each".into());
        }
        if self.name != default.name {
            options.push(format!("name={}", self.name));
        }
        if let Some(room) = &self.room {
            options.push(format!("room={room}"));
        }
        if self.register_grace != default.register_grace {
            options.push(format!(
                "register-grace={}",
                crate::units::format_duration(self.register_grace)
            ));
        }
        if let Some(heartbeat) = &self.heartbeat {
            options.push(format!("heartbeat={heartbeat}"));
        }
        if self.frame != Frame::None {
            options.push(format!("frame={}", self.frame));
        }
        if self.modbus {
            options.push("modbus=rtu".into());
        }
        options
    }

    /// Takes one listener option, if it is a device's: `Ok(false)` if it is
    /// not one of these.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<bool, OptionError> {
        let value_of = |key: &str| value.ok_or_else(|| OptionError::NeedsValue(key.to_owned()));
        match key {
            "register" => self.register = Some(value_of(key)?.parse()?),
            "register-each" => {
                self.register_each = match value {
                    None | Some("true") | Some("yes") => true,
                    Some("false") | Some("no") => false,
                    Some(other) => return Err(OptionError::RegisterEach(other.to_owned())),
                }
            }
            "name" => self.name = Template::parse(value_of(key)?)?,
            "heartbeat" => self.heartbeat = Some(Heartbeat::parse(value_of(key)?)?),
            "frame" => self.frame = value_of(key)?.parse()?,
            "modbus" => match value_of(key)? {
                "rtu" => self.modbus = true,
                other => return Err(OptionError::Modbus(other.to_owned())),
            },
            "register-grace" => {
                self.register_grace = value_of(key)?
                    .parse::<crate::units::Seconds>()
                    .map_err(|e| OptionError::RegisterGrace(format!("{e:#}")))?
                    .0
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A heartbeat packet: exact bytes (`hex:FE`), or text (`ping`), which
/// also matches with a line ending after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    bytes: Bytes,
    text: bool,
}

impl Heartbeat {
    /// `hex:BYTES`, or anything else as text.
    pub fn parse(spec: &str) -> Result<Self, OptionError> {
        let (bytes, text) = match spec.strip_prefix("hex:") {
            Some(hex) => (
                hex::parse(hex).map_err(|error| OptionError::HeartbeatHex {
                    spec: spec.to_owned(),
                    error,
                })?,
                false,
            ),
            None => (spec.as_bytes().to_vec(), true),
        };
        if bytes.is_empty() || bytes.len() > MAX_REGISTRATION {
            return Err(OptionError::HeartbeatSize(spec.to_owned()));
        }
        Ok(Heartbeat {
            bytes: bytes.into(),
            text,
        })
    }

    /// The packet's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A text heartbeat that reads as hex bytes (`FE`, `AA 55`): almost
    /// always meant as those bytes. What to write instead, for a warning.
    pub fn hex_lookalike(&self) -> Option<String> {
        let digits: String = std::str::from_utf8(&self.bytes)
            .ok()?
            .chars()
            .filter(|c| *c != ' ')
            .collect();
        let looks = self.text
            && digits.len() % 2 == 0
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_hexdigit())
            && digits.chars().any(|c| c.is_ascii_alphabetic());
        looks.then(|| format!("hex:{digits}"))
    }

    /// Whether `packet` is this heartbeat.
    pub fn matches(&self, packet: &[u8]) -> bool {
        if self.text {
            let packet = packet.strip_suffix(b"\n").unwrap_or(packet);
            let packet = packet.strip_suffix(b"\r").unwrap_or(packet);
            packet == &self.bytes[..]
        } else {
            packet == &self.bytes[..]
        }
    }
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text {
            f.write_str(&String::from_utf8_lossy(&self.bytes))
        } else {
            write!(f, "hex:{}", hex::format(&self.bytes).replace(' ', ""))
        }
    }
}

/// A name or room with `{id}` in it: `dev-{id}`. It must start with a fixed
/// part (`dev-`), which other clients may not take names under: nobody
/// can pass for a device that has not connected yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    before: String,
    after: Option<String>,
}

impl Template {
    /// Reads a template; without `{id}`, it is a fixed name.
    pub fn parse(template: &str) -> Result<Self, OptionError> {
        let (before, after) = match template.split_once("{id}") {
            Some((before, after)) => (before, Some(after)),
            None => (template, None),
        };
        if after.is_some_and(|after| after.contains("{id}")) {
            return Err(OptionError::IdTwice(template.to_owned()));
        }
        if before.is_empty() {
            return Err(OptionError::NoFixedPart(template.to_owned()));
        }
        let written = template;
        let template = Template {
            before: before.to_owned(),
            after: after.map(str::to_owned),
        };
        // Checked with a typical identity: the fixed parts must be valid.
        Name::new(&template.fill("0")).map_err(|error| OptionError::Template {
            template: written.to_owned(),
            error,
        })?;
        Ok(template)
    }

    /// The template with `id` in it.
    pub fn fill(&self, id: &str) -> String {
        match &self.after {
            Some(after) => format!("{}{id}{after}", self.before),
            None => self.before.clone(),
        }
    }

    /// The fixed part names start with.
    pub fn prefix(&self) -> &str {
        &self.before
    }

    /// The name for identity `id`.
    pub fn name(&self, id: &str) -> Result<Name, Unusable> {
        let name = self.fill(id);
        Name::new(&name).map_err(|error| Unusable::Name { name, error })
    }

    /// The room for identity `id`.
    pub fn room(&self, id: &str) -> Result<RoomName, Unusable> {
        let room = self.fill(id);
        RoomName::parse_user(room.as_bytes()).map_err(|error| Unusable::Room { room, error })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.before)?;
        if let Some(after) = &self.after {
            write!(f, "{{id}}{after}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_heartbeats_that_read_as_hex_are_pointed_out() {
        for (spec, meant) in [
            ("FE", Some("hex:FE")),
            ("AA 55", Some("hex:AA55")),
            ("fefe", Some("hex:fefe")),
        ] {
            assert_eq!(
                Heartbeat::parse(spec).unwrap().hex_lookalike().as_deref(),
                meant,
                "{spec}"
            );
        }
        // Words, digits alone (a counter, "00"?) and hex: itself are left be.
        for spec in ["ping", "hex:FE", "FEE", "00", "beef cafe!"] {
            assert_eq!(
                Heartbeat::parse(spec).unwrap().hex_lookalike(),
                None,
                "{spec}"
            );
        }
    }

    #[test]
    fn heartbeats_match_exactly_and_text_ones_with_a_line_ending() {
        let fe = Heartbeat::parse("hex:FE").unwrap();
        assert!(fe.matches(&[0xFE]) && !fe.matches(&[0xFE, 0xFE]) && !fe.matches(b"\xFE\n"));
        let ping = Heartbeat::parse("ping").unwrap();
        assert!(ping.matches(b"ping") && ping.matches(b"ping\r\n") && !ping.matches(b"pings"));
        assert_eq!(ping.to_string(), "ping");
        assert_eq!(fe.to_string(), "hex:FE");
        assert!(Heartbeat::parse("hex:").is_err());
    }

    #[test]
    fn templates_need_a_fixed_start_and_make_valid_names() {
        let template = Template::parse("dev-{id}").unwrap();
        assert_eq!(
            template.name("861234567890123").unwrap().as_str(),
            "dev-861234567890123"
        );
        assert_eq!(template.prefix(), "dev-");
        assert_eq!(
            Template::parse("{id}").unwrap_err(),
            OptionError::NoFixedPart("{id}".into())
        );
        assert!(Template::parse("a{id}{id}").is_err());
        assert!(Template::parse("bad name {id}").is_err());
        assert!(template.name(&"9".repeat(40)).is_err());
    }

    #[test]
    fn options_that_do_not_go_together_say_why() {
        let mut spec = DeviceSpec::default();
        spec.set("register-each", None).unwrap();
        assert_eq!(spec.check(), Err(OptionError::EachWithoutRegister));
        spec.set("register", Some("hex:AA")).unwrap();
        assert!(spec.check().unwrap_err().to_string().contains("len:N"));
        spec.set("register", Some("imei")).unwrap();
        assert!(spec.check().is_ok());
        assert!(!spec.set("colour", Some("red")).unwrap());
        assert_eq!(spec.options(), ["register=imei", "register-each"]);
    }
}
