//! A TLS 1.3 connection after its handshake: its records, protected with
//! the keys rustls hands over, so that an idle client keeps its keys, its
//! sequence numbers and what derives the next keys (about 1 KB, rustls's
//! kernel connection most of it) and not rustls's whole connection
//! (about 3.3 KB: its state machine, its QUIC state, its deframer's
//! spans, two expanded AES keys).
//!
//! rustls does the handshake, and after it still derives each new key
//! when either side updates its keys ([`KernelConnection`], its API for
//! kernel TLS). What is done here is the rest of RFC 8446 section 5 for
//! a server: the 5-byte record header, the nonce ([`Nonce`], rustls's),
//! the AEAD (ring's, the same one rustls's provider uses), the content
//! type hidden at the end of each record, alerts, and KeyUpdate. A key is
//! expanded when a burst of records is opened or sealed, and dropped
//! after it: about a microsecond's work a burst, against 560 bytes for
//! each direction of every idle client.
//!
//! TLS 1.2 clients keep rustls's connection (`transport.rs`): their
//! records are another format, and few clients still pick TLS 1.2.

use std::fmt;

use ring::aead::{self, Aad, LessSafeKey, UnboundKey};
use rustls::crypto::cipher::{Iv, Nonce};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, SupportedCipherSuite};

/// The record types (RFC 8446 section 5.1).
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// The one handshake message a client sends after the handshake.
const KEY_UPDATE: u8 = 24;

/// Alerts (RFC 8446 section 6).
const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const ILLEGAL_PARAMETER: u8 = 47;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
const USER_CANCELED: u8 = 90;
const FATAL: u8 = 2;
const WARNING: u8 = 1;

/// A record's header: type, legacy version, length.
const HEADER: usize = 5;
/// The AEAD's tag, for every suite TLS 1.3 has here.
const TAG: usize = 16;
/// Most plaintext in one record.
pub(super) const MAX_FRAGMENT: usize = 16 * 1024;
/// Most a record may carry after its header: plaintext, content type,
/// padding and tag (RFC 8446 section 5.2).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;

/// Key updates a client may ask for in a row, with no data between
/// them: each costs the server a key derivation (rustls's own limit).
const MAX_KEY_UPDATES: u8 = 32;
/// `user_canceled` warnings a client may send: it means nothing to the
/// server, and is allowed a few times, as rustls allows warnings.
const MAX_WARNINGS: u8 = 4;

/// One direction's keys: which AEAD, its key and IV, and the sequence
/// number of its next record.
struct Keys {
    secrets: ConnectionTrafficSecrets,
    seq: u64,
}

impl Keys {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Self {
        Keys { secrets, seq }
    }

    /// The AEAD, its key and its IV.
    fn parts(&self) -> Result<(&'static aead::Algorithm, &[u8], &Iv), Fatal> {
        match &self.secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                Ok((&aead::AES_128_GCM, key.as_ref(), iv))
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                Ok((&aead::AES_256_GCM, key.as_ref(), iv))
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                Ok((&aead::CHACHA20_POLY1305, key.as_ref(), iv))
            }
            _ => Err(Fatal::Internal("a cipher suite this server cannot protect")),
        }
    }

    /// The key, expanded for use now.
    fn expand(&self) -> Result<LessSafeKey, Fatal> {
        let (algorithm, key, _) = self.parts()?;
        UnboundKey::new(algorithm, key)
            .map(LessSafeKey::new)
            .map_err(|_| Fatal::Internal("a key of the wrong length"))
    }

    /// Seals `fragment` as one record of `typ` (with `padding` zeros after
    /// its type) into `into`, under `key`, this direction's key expanded.
    fn seal(
        &mut self,
        key: &LessSafeKey,
        typ: u8,
        fragment: &[u8],
        padding: usize,
        into: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        let len = fragment.len() + 1 + padding + TAG;
        let [high, low] = u16::try_from(len)
            .map_err(|_| Fatal::Internal("a record too long to seal"))?
            .to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, high, low];
        let start = into.len();
        into.extend_from_slice(&header);
        into.extend_from_slice(fragment);
        into.push(typ);
        into.resize(into.len() + padding, 0);
        let nonce = self.next_nonce()?;
        let sealed =
            key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut into[start + HEADER..]);
        match sealed {
            Ok(tag) => {
                into.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                into.truncate(start);
                Err(Fatal::Internal("sealing a record failed"))
            }
        }
    }

    /// The next record's nonce; the sequence number moves on.
    fn next_nonce(&mut self) -> Result<aead::Nonce, Fatal> {
        let nonce = Nonce::new(self.parts()?.2, self.seq);
        self.seq = self
            .seq
            .checked_add(1)
            .ok_or(Fatal::Internal("2^64 records under one key"))?;
        Ok(aead::Nonce::assume_unique_for_key(nonce.0))
    }
}

/// A TLS 1.3 session's records, once its handshake is done.
pub(super) struct Records {
    /// What derives the next keys when either side updates them.
    kernel: KernelConnection<ServerConnectionData>,
    from_client: Keys,
    to_client: Keys,
    /// Records sealed under one key before the server updates it: the
    /// suite's confidentiality limit (2^24 for AES-GCM).
    limit: u64,
    /// The client asked the server to update its key: it does before it
    /// seals its next record. Asked many times meanwhile, it updates once
    /// (RFC 8446 section 4.6.3), so a client that asks and never reads
    /// cannot pile key updates up for itself.
    update_owed: bool,
    /// Key updates the client sent since its last data.
    key_updates: u8,
    /// `user_canceled` warnings the client sent.
    warnings: u8,
}

/// Where opening the client's records puts what they hold.
pub(super) struct Opened<'a> {
    /// The client's data.
    pub(super) plain: &'a mut Vec<u8>,
    /// Records for the client: the alert that ends the session.
    pub(super) unsent: &'a mut Vec<u8>,
    /// Set when the client said close_notify.
    pub(super) ended: &'a mut bool,
}

impl Records {
    /// Takes `tls`'s keys over, if its handshake was TLS 1.3 and done:
    /// otherwise, gives it back (a TLS 1.2 session stays with rustls).
    /// `tls` must have nothing left to send.
    pub(super) fn take_over(
        tls: Box<UnbufferedServerConnection>,
    ) -> Result<Result<Records, Box<UnbufferedServerConnection>>, rustls::Error> {
        let suite = match (tls.protocol_version(), tls.negotiated_cipher_suite()) {
            (Some(ProtocolVersion::TLSv1_3), Some(SupportedCipherSuite::Tls13(suite))) => suite,
            _ => return Ok(Err(tls)),
        };
        if tls.is_handshaking() || tls.wants_write() {
            return Ok(Err(tls));
        }
        let (secrets, kernel) = tls.dangerous_into_kernel_connection()?;
        let records = Records {
            kernel,
            from_client: Keys::new(secrets.rx),
            to_client: Keys::new(secrets.tx),
            limit: suite.common.confidentiality_limit,
            update_owed: false,
            key_updates: 0,
            warnings: 0,
        };
        // Refuses a suite it cannot protect now, not at the first record.
        records.to_client.expand().map_err(|error| {
            rustls::Error::General(format!("cannot take the TLS session over: {error}"))
        })?;
        Ok(Ok(records))
    }

    /// Opens the whole records at the start of `buf`; returns how many
    /// bytes it used. On an error, the alert that says so to the client
    /// is in `out.unsent`, and nothing more may be opened.
    pub(super) fn open(
        &mut self,
        buf: &mut [u8],
        out: &mut Opened<'_>,
    ) -> (usize, Result<(), Fatal>) {
        let mut used = 0;
        let result = self.open_records(buf, &mut used, out);
        if let Err(error) = &result {
            if let Some(alert) = error.alert() {
                // What could not be said is no worse than the close.
                let _ = self.seal(ALERT, &[FATAL, alert], out.unsent);
            }
        }
        (used, result)
    }

    fn open_records(
        &mut self,
        buf: &mut [u8],
        used: &mut usize,
        out: &mut Opened<'_>,
    ) -> Result<(), Fatal> {
        let mut key = None;
        while !*out.ended {
            let rest = &mut buf[*used..];
            let Some(&[typ, _, _, high, low]) = rest.get(..HEADER) else {
                return Ok(());
            };
            // In TLS 1.3 every record after the handshake is protected, and
            // says it is application data; the real type is inside.
            if typ != APPLICATION_DATA {
                return Err(Fatal::Unprotected(typ));
            }
            let len = usize::from(u16::from_be_bytes([high, low]));
            if len > MAX_CIPHERTEXT {
                return Err(Fatal::Oversized(len));
            }
            let Some(record) = rest.get_mut(..HEADER + len) else {
                return Ok(());
            };
            let (header, sealed) = record.split_at_mut(HEADER);
            let opening = match &mut key {
                Some(key) => key,
                None => key.insert(self.from_client.expand()?),
            };
            let nonce = self.from_client.next_nonce()?;
            let opened = opening
                .open_in_place(nonce, Aad::from(&*header), sealed)
                .map_err(|_| Fatal::Undecryptable)?;
            *used += HEADER + len;
            // The content type is the last byte that is not padding.
            let end = opened
                .iter()
                .rposition(|&byte| byte != 0)
                .ok_or(Fatal::NoContentType)?;
            let (content, inner) = (&opened[..end], opened[end]);
            if content.len() > MAX_FRAGMENT {
                return Err(Fatal::Oversized(content.len()));
            }
            match inner {
                APPLICATION_DATA => {
                    out.plain.extend_from_slice(content);
                    self.key_updates = 0;
                }
                ALERT => self.alert(content, out)?,
                HANDSHAKE => {
                    self.handshake(content)?;
                    // The client's key may have changed.
                    key = None;
                }
                other => return Err(Fatal::UnexpectedType(other)),
            }
        }
        // Nothing after close_notify is read.
        *used = buf.len();
        Ok(())
    }

    /// An alert from the client.
    fn alert(&mut self, content: &[u8], out: &mut Opened<'_>) -> Result<(), Fatal> {
        let &[_level, description] = content else {
            return Err(Fatal::Malformed("an alert that is not two bytes"));
        };
        match description {
            CLOSE_NOTIFY => *out.ended = true,
            USER_CANCELED if self.warnings < MAX_WARNINGS => self.warnings += 1,
            USER_CANCELED => return Err(Fatal::TooMany("user_canceled warnings")),
            other => return Err(Fatal::FromClient(other)),
        }
        Ok(())
    }

    /// Handshake messages from the client: key updates only.
    fn handshake(&mut self, mut messages: &[u8]) -> Result<(), Fatal> {
        if messages.is_empty() {
            return Err(Fatal::Malformed("an empty handshake record"));
        }
        while let [typ, a, b, c, rest @ ..] = messages {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if *typ != KEY_UPDATE {
                return Err(Fatal::UnexpectedHandshake(*typ));
            }
            let (Some(body), Some(after)) = (rest.get(..len), rest.get(len..)) else {
                return Err(Fatal::Split);
            };
            // The keys change after it: nothing may follow under the old one.
            if !after.is_empty() {
                return Err(Fatal::Split);
            }
            let requested = match body {
                [0] => false,
                [1] => true,
                [_] => return Err(Fatal::IllegalKeyUpdate),
                _ => return Err(Fatal::Malformed("a KeyUpdate that is not one byte")),
            };
            self.key_updates += 1;
            if self.key_updates > MAX_KEY_UPDATES {
                return Err(Fatal::TooMany("key updates with no data between them"));
            }
            self.from_client = Keys::new(self.kernel.update_rx_secret().map_err(Fatal::Rustls)?);
            self.update_owed |= requested;
            messages = after;
        }
        match messages.is_empty() {
            true => Ok(()),
            false => Err(Fatal::Split),
        }
    }

    /// Tells the client the server's key changes, and changes it.
    fn update_key_to_client(&mut self, into: &mut Vec<u8>) -> Result<(), Fatal> {
        let key = self.to_client.expand()?;
        self.seal_one(&key, HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], into)?;
        self.to_client = Keys::new(self.kernel.update_tx_secret().map_err(Fatal::Rustls)?);
        self.update_owed = false;
        Ok(())
    }

    /// Seals `data` as records of `typ` into `into`.
    pub(super) fn seal(&mut self, typ: u8, data: &[u8], into: &mut Vec<u8>) -> Result<(), Fatal> {
        if self.update_owed {
            self.update_key_to_client(into)?;
        }
        let mut key = self.to_client.expand()?;
        into.reserve(data.len() + data.len().div_ceil(MAX_FRAGMENT) * (HEADER + 1 + TAG));
        for fragment in data.chunks(MAX_FRAGMENT) {
            // The key is updated before it has sealed too much (the key
            // update itself is the last record under it).
            if self.to_client.seq.saturating_add(1) >= self.limit {
                self.update_key_to_client(into)?;
                key = self.to_client.expand()?;
            }
            self.seal_one(&key, typ, fragment, into)?;
        }
        Ok(())
    }

    /// Seals the client's data.
    pub(super) fn seal_data(&mut self, data: &[u8], into: &mut Vec<u8>) -> Result<(), Fatal> {
        self.seal(APPLICATION_DATA, data, into)
    }

    /// Seals close_notify.
    pub(super) fn seal_close_notify(&mut self, into: &mut Vec<u8>) -> Result<(), Fatal> {
        self.seal(ALERT, &[WARNING, CLOSE_NOTIFY], into)
    }

    fn seal_one(
        &mut self,
        key: &LessSafeKey,
        typ: u8,
        fragment: &[u8],
        into: &mut Vec<u8>,
    ) -> Result<(), Fatal> {
        self.to_client.seal(key, typ, fragment, 0, into)
    }

    /// Sets the records sealed under one key before it is updated (the
    /// suite's limit is millions: tests make it a few).
    #[cfg(test)]
    pub(super) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Records sealed under the server's key now.
    #[cfg(test)]
    pub(super) fn sealed_under_key(&self) -> u64 {
        self.to_client.seq
    }
}

/// A client's side of the records, for tests: seals whatever a client
/// could, with the keys its rustls connection hands over.
#[cfg(test)]
pub(super) struct ClientRecords(Keys);

#[cfg(test)]
impl ClientRecords {
    pub(super) fn new(tx: (u64, ConnectionTrafficSecrets)) -> Self {
        ClientRecords(Keys::new(tx))
    }

    /// One record: `content` of inner type `typ`, then `padding` zeros.
    pub(super) fn seal(&mut self, typ: u8, content: &[u8], padding: usize) -> Vec<u8> {
        let mut record = Vec::new();
        let key = self.0.expand().expect("a suite ring has");
        self.0
            .seal(&key, typ, content, padding, &mut record)
            .expect("sealed");
        record
    }
}

/// What ends a session after its handshake.
#[derive(Debug)]
pub(crate) enum Fatal {
    /// A record did not decrypt: corrupted, or not of this session.
    Undecryptable,
    /// A record whose outer type is not application data.
    Unprotected(u8),
    /// A record over TLS's size.
    Oversized(usize),
    /// A record of nothing but padding.
    NoContentType,
    /// A record of a type a client may not send now.
    UnexpectedType(u8),
    /// A handshake message other than KeyUpdate.
    UnexpectedHandshake(u8),
    /// A handshake message cut across records, or followed by more after a
    /// key change.
    Split,
    /// A KeyUpdate asking for neither 0 nor 1.
    IllegalKeyUpdate,
    /// Something of the wrong length.
    Malformed(&'static str),
    /// Past a limit on what is allowed but useless.
    TooMany(&'static str),
    /// The client's alert.
    FromClient(u8),
    /// rustls could not derive the next key.
    Rustls(rustls::Error),
    /// Cannot happen with the suites rustls negotiates.
    Internal(&'static str),
}

impl Fatal {
    /// The alert that tells the client, if any: not one for its own.
    fn alert(&self) -> Option<u8> {
        Some(match self {
            Fatal::Undecryptable => BAD_RECORD_MAC,
            Fatal::Oversized(_) => RECORD_OVERFLOW,
            Fatal::Unprotected(_)
            | Fatal::NoContentType
            | Fatal::UnexpectedType(_)
            | Fatal::UnexpectedHandshake(_)
            | Fatal::Split
            | Fatal::TooMany(_) => UNEXPECTED_MESSAGE,
            Fatal::IllegalKeyUpdate => ILLEGAL_PARAMETER,
            Fatal::Malformed(_) => DECODE_ERROR,
            Fatal::Rustls(_) | Fatal::Internal(_) => INTERNAL_ERROR,
            Fatal::FromClient(_) => return None,
        })
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Undecryptable => write!(
                f,
                "a TLS record did not decrypt (bad_record_mac): corrupted, or not of this session"
            ),
            Fatal::Unprotected(typ) => {
                write!(f, "an unprotected TLS record (type {typ}) after the handshake")
            }
            Fatal::Oversized(len) => write!(
                f,
                "a TLS record of {len} bytes, over the {MAX_CIPHERTEXT} TLS allows (record_overflow)"
            ),
            Fatal::NoContentType => write!(f, "a TLS record with no content type"),
            Fatal::UnexpectedType(typ) => {
                write!(f, "a TLS record of type {typ}, which a client may not send now")
            }
            Fatal::UnexpectedHandshake(typ) => write!(
                f,
                "a TLS handshake message of type {typ} after the handshake (only KeyUpdate may come)"
            ),
            Fatal::Split => write!(
                f,
                "a TLS handshake message split across records, or data after a KeyUpdate in its record"
            ),
            Fatal::IllegalKeyUpdate => write!(f, "a TLS KeyUpdate asking for neither 0 nor 1"),
            Fatal::Malformed(what) => write!(f, "{what} (decode_error)"),
            Fatal::TooMany(what) => write!(f, "too many TLS {what}"),
            Fatal::FromClient(alert) => write!(f, "the client sent the TLS alert {alert}"),
            Fatal::Rustls(error) => write!(f, "TLS key update: {error}"),
            Fatal::Internal(what) => write!(f, "TLS: {what}"),
        }
    }
}

impl std::error::Error for Fatal {}
