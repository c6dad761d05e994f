//! What can be wrong on the device side: hex bytes that are not hex,
//! listener options that cannot be used, a first packet that is not a
//! registration, and an identity that makes no usable name or room. Each
//! message says what was given and what would do instead.

use crate::hub::NameError;

use super::MAX_REGISTRATION;

/// Hex bytes (`01 03 0A`) that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// An odd number of digits in one group.
    #[error("{0:?} is not whole bytes: write each byte as two hex digits, like 0A")]
    NotWholeBytes(String),
    /// Nothing at all.
    #[error("no hex bytes given: write them like 01 03 0A")]
    Empty,
    /// A pair that is not two hex digits.
    #[error("{0:?} is not a hex byte (0-9, A-F)")]
    NotHex(String),
}

/// A listener's device options that cannot be used, as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    /// `register`, `name`, `heartbeat`... without `=VALUE`.
    #[error("{0} needs a value: {0}=...")]
    NeedsValue(String),
    /// `register-each=` something not boolean.
    #[error("register-each={0:?}: expected register-each or register-each=false")]
    RegisterEach(String),
    /// `modbus=` something other than `rtu`.
    #[error("unknown modbus={0:?}: expected modbus=rtu")]
    Modbus(String),
    /// `register-grace=` not a duration.
    #[error("bad register-grace: {0}")]
    RegisterGrace(String),
    /// `heartbeat=hex:` not hex.
    #[error("bad heartbeat={spec:?}: {error}")]
    HeartbeatHex {
        /// As written.
        spec: String,
        /// Why.
        error: HexError,
    },
    /// A heartbeat of no bytes, or too many.
    #[error("heartbeat={0:?}: a heartbeat has 1 to {MAX_REGISTRATION} bytes")]
    HeartbeatSize(String),
    /// A template with `{id}` twice.
    #[error("{0:?} has {{id}} more than once")]
    IdTwice(String),
    /// A template that starts with `{id}`.
    #[error(
        "{0:?} must start with a fixed part, like dev-{{id}}: names under it are kept for devices"
    )]
    NoFixedPart(String),
    /// A template whose fixed parts make no valid name.
    #[error("{template:?}: {error}")]
    Template {
        /// As written.
        template: String,
        /// Why.
        error: NameError,
    },
    /// `register=len:N` out of range.
    #[error("register={0:?}: len:N takes 1 to {MAX_REGISTRATION} bytes")]
    RegisterLength(String),
    /// `register=hex:` not hex.
    #[error("bad prefix in register={spec:?}: {error}")]
    RegisterPrefix {
        /// As written.
        spec: String,
        /// Why.
        error: HexError,
    },
    /// `register=hex:` too long.
    #[error("register={0:?}: a prefix is shorter than {MAX_REGISTRATION} bytes")]
    RegisterPrefixLength(String),
    /// `register=regex:` that does not compile (or is too big).
    #[error("bad regular expression in register={spec:?}: {error}")]
    RegisterRegex {
        /// As written.
        spec: String,
        /// Why.
        error: regex::Error,
    },
    /// `register=regex:` with a key group and no id group.
    #[error("register={0:?} has a (?<key>...) group and no (?<id>...) group: name the identity's group too")]
    KeyWithoutId(String),
    /// `register=` something unknown.
    #[error("unknown register={0:?}: expected imei, iccid, mac, line, len:N, hex:PREFIX or regex:PATTERN")]
    Register(String),
    /// `frame=gap:` not a duration.
    #[error("bad gap in frame={spec:?}: {error}")]
    Gap {
        /// As written.
        spec: String,
        /// Why.
        error: String,
    },
    /// `frame=gap:` out of range.
    #[error("frame={0:?}: a gap is 1 ms to 10 s (Modbus RTU at 9600 baud: gap:5)")]
    GapRange(String),
    /// `frame=delimiter:` not hex.
    #[error("bad delimiter in frame={spec:?}: {error}")]
    Delimiter {
        /// As written.
        spec: String,
        /// Why.
        error: HexError,
    },
    /// `frame=delimiter:` too long.
    #[error("frame={0:?}: a delimiter has at most 16 bytes")]
    DelimiterLength(String),
    /// `frame=` something unknown.
    #[error("unknown {what} frame={spec:?}: expected frame=none, gap:MS, line, len:1, len:2be, len:2le, len:4be, len:4le or delimiter:HEX")]
    Frame {
        /// `length prefix in` or nothing.
        what: &'static str,
        /// As written.
        spec: String,
    },
    /// `register-each` without `register=`.
    #[error("register-each needs register=: what is in front of every packet?")]
    EachWithoutRegister,
    /// `room=` with `{id}` without `register=`.
    #[error("a room with {{id}} needs register=: a device's id comes from its registration")]
    RoomWithoutRegister,
    /// `register-each` with a registration whose end cannot be told.
    #[error("register={0} with register-each: where the identity ends in a packet that carries data too cannot be told; use len:N or regex:")]
    EachUnbounded(String),
    /// `modbus=rtu` without `frame=gap:`.
    #[error(
        "modbus=rtu needs frame=gap:MS: Modbus RTU frames are told apart by the pause between them"
    )]
    ModbusWithoutGap,
}

/// Why a packet is not the registration a listener expects (for the log:
/// the device is not told).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRegistration {
    /// `register=imei`.
    #[error("it does not start with an IMEI (15 digits)")]
    NoImei,
    /// `register=iccid`.
    #[error("it does not start with an ICCID (19 or 20 digits starting with 89)")]
    NoIccid,
    /// `register=mac`.
    #[error(
        "it does not start with a MAC address (12 hex digits, or 6 pairs separated by : or -)"
    )]
    NoMac,
    /// `register=len:N`, and fewer bytes came.
    #[error("it has {have} bytes, and len:{need} takes {need}")]
    TooShort {
        /// Bytes in the packet.
        have: usize,
        /// Bytes the registration has.
        need: usize,
    },
    /// `register=hex:PREFIX`.
    #[error("it does not start with {0}")]
    NoPrefix(String),
    /// `register=regex:`.
    #[error("it does not match {0}")]
    NoMatch(String),
    /// An identity of no bytes.
    #[error("its identity is empty")]
    EmptyIdentity,
    /// An identity over [`MAX_REGISTRATION`].
    #[error(
        "its identity has {0} bytes, more than the {MAX_REGISTRATION} a registration may have"
    )]
    LongIdentity(usize),
}

/// An identity that makes no usable name or room from its listener's
/// templates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// The name.
    #[error("the name {name:?} cannot be given: {error}")]
    Name {
        /// The template filled in.
        name: String,
        /// Why.
        error: NameError,
    },
    /// The room.
    #[error("the room {room:?} cannot be joined: {error}")]
    Room {
        /// The template filled in.
        room: String,
        /// Why.
        error: NameError,
    },
}
