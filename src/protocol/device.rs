//! The raw mode with devices in mind: a raw listener with `register=`,
//! `heartbeat=` or `frame=` options (see [`crate::device`]). Its clients
//! receive what raw clients receive (message bytes, nothing else); what
//! they send is cut into packets, their first packet names them, and
//! their heartbeats keep them alive without reaching anyone.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{Input, Protocol, ProtocolError, Raw, Registration, Reply, Request, Tag, RAW_SLOT};
use crate::device::{hex, DeviceSpec, Framer};
use crate::hub::{Body, Closing, Event, Name, RoomName};

/// The device protocol of one listener.
#[derive(Debug, Clone)]
pub struct Device {
    listening: Arc<Listening>,
}

/// What every device of a listener shares, and decodes its packets by
/// ([`Protocol::decode`]): held once by the listener's protocol, not by
/// each device's decoder (which held a copy, 48 bytes, then a pointer).
#[derive(Debug)]
struct Listening {
    spec: DeviceSpec,
    max_line: usize,
    room: RoomName,
}

impl Device {
    /// Devices as `spec` says, starting in `room` unless its room template
    /// says otherwise, sending packets of at most `max_line` bytes.
    pub fn new(spec: DeviceSpec, room: RoomName, max_line: usize) -> Self {
        Device {
            listening: Arc::new(Listening {
                spec,
                max_line,
                room,
            }),
        }
    }
}

/// Where a device's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The listener does not ask devices who they are.
    Guest,
    /// Its first packet will be its registration.
    Unregistered,
    /// Registered (with `register-each`, its registration's bytes are
    /// [`Kept::registration`]).
    Registered,
    /// Its registration was refused: nothing more it sends is taken.
    Refused,
}

/// One device's connection as its decoder sees it: framing, then
/// registration and heartbeats; its listener's settings are the
/// [`Device`] protocol's. 16 bytes: it is in every idle device's task (a
/// TCP device's fits a 512-byte cell with it) and resting UDP peer.
#[derive(Debug)]
pub struct DeviceDecoder {
    /// Bytes kept from one packet for later ones, boxed and only while
    /// there are some: few devices have any.
    kept: Option<Box<Kept>>,
    framer: Framer,
    state: State,
    /// The last packet failed its Modbus CRC: say so next.
    bad_frame: bool,
}

/// What a device's decoder keeps of its registration.
#[derive(Debug, Default)]
struct Kept {
    /// With `register-each`: the registration's bytes, stripped from the
    /// front of every packet.
    registration: Option<Bytes>,
    /// Data that came in the registration's packet, behind it: the next
    /// decode's.
    after: Option<Bytes>,
}

/// A packet relayed; with `modbus=rtu`, one failing its CRC is noted for
/// the next input.
fn data(spec: &DeviceSpec, bad_frame: &mut bool, packet: Bytes) -> Input {
    if spec.modbus && !crate::device::modbus::frame_ok(&packet) {
        *bad_frame = true;
    }
    say(packet)
}

fn say(packet: Bytes) -> Input {
    Input::Request {
        request: Request::Say {
            room: None,
            body: Body::chunk(packet),
        },
        tag: None,
    }
}

fn request(request: Request) -> Input {
    Input::Request { request, tag: None }
}

/// At most this much of a refused packet is shown in the log.
const SHOWN_IN_LOG: usize = 24;

impl Listening {
    fn registration(&self, packet: &Bytes) -> Result<(Registration, usize), String> {
        let register = self
            .spec
            .register
            .as_ref()
            .expect("only asked when registering");
        let (identity, used) = register.read(packet).map_err(|why| {
            if register.carries_key() {
                return format!(
                    "its first packet is not a registration (register={register}): {why}; its {} bytes are not shown, as they may hold a key",
                    packet.len()
                );
            }
            let shown = &packet[..packet.len().min(SHOWN_IN_LOG)];
            let more = if packet.len() > SHOWN_IN_LOG { " ..." } else { "" };
            format!(
                "its first packet is not a registration (register={register}): {why}; it was {}{more}",
                hex::format(shown)
            )
        })?;
        let name = self
            .spec
            .name
            .name(&identity.id)
            .map_err(|e| e.to_string())?;
        let room = match &self.spec.room {
            // `room=dev-{id}` names the room as the device: one string.
            Some(template) => template
                .room(&identity.id)
                .map_err(|e| e.to_string())?
                .sharing_text_with(&name),
            None => self.room.clone(),
        };
        Ok((
            Registration {
                identity,
                name,
                room,
            },
            used,
        ))
    }

    /// A packet of a registered device: its registration stripped if it
    /// sends one in front of every packet; `None` if nothing is left.
    fn registered(&self, registration: Option<&Bytes>, packet: Bytes) -> Option<Bytes> {
        let Some(registration) = registration.filter(|_| self.spec.register_each) else {
            return Some(packet);
        };
        let packet = match packet.strip_prefix(&registration[..]) {
            Some(rest) => packet.slice(packet.len() - rest.len()..),
            None => {
                let register = self.spec.register.as_ref().expect("registered");
                if register.read(&packet).is_ok() {
                    // Another device's identity: this connection may not
                    // speak for it.
                    tracing::info!(
                        "dropped a packet that a device sent under another device's identity"
                    );
                    return None;
                }
                packet
            }
        };
        (!packet.is_empty()).then_some(packet)
    }

    fn is_heartbeat(&self, packet: &[u8]) -> bool {
        self.spec
            .heartbeat
            .as_ref()
            .is_some_and(|heartbeat| heartbeat.matches(packet))
    }

    /// The next input of the device whose decoder is `device`.
    fn decode(&self, device: &mut DeviceDecoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        if std::mem::take(&mut device.bad_frame) {
            return Some(request(Request::BadFrame));
        }
        if let Some(packet) = device.take_after_registration() {
            return Some(data(&self.spec, &mut device.bad_frame, packet));
        }
        loop {
            if device.state == State::Refused {
                buf.clear();
                return None;
            }
            let packet = device
                .framer
                .next(&self.spec.frame, buf, eof, self.max_line)?;
            if self.is_heartbeat(&packet) {
                return Some(request(Request::Heartbeat));
            }
            match device.state {
                State::Guest => return Some(data(&self.spec, &mut device.bad_frame, packet)),
                State::Registered => {
                    let kept = device.kept.as_ref();
                    match self.registered(kept.and_then(|k| k.registration.as_ref()), packet) {
                        // What was left of it once its prefix was stripped.
                        Some(packet) if self.spec.register_each && self.is_heartbeat(&packet) => {
                            return Some(request(Request::Heartbeat))
                        }
                        Some(packet) => {
                            return Some(data(&self.spec, &mut device.bad_frame, packet))
                        }
                        None => continue,
                    }
                }
                State::Unregistered => match self.registration(&packet) {
                    Ok((registration, used)) => {
                        let rest = packet.slice(used..);
                        let kept = Kept {
                            registration: (self.spec.register_each)
                                .then(|| registration.identity.raw.clone()),
                            after: (!rest.is_empty()).then_some(rest),
                        };
                        let keeps = kept.registration.is_some() || kept.after.is_some();
                        device.kept = keeps.then(|| Box::new(kept));
                        device.state = State::Registered;
                        return Some(request(Request::Register(Box::new(registration))));
                    }
                    Err(why) => {
                        device.state = State::Refused;
                        buf.clear();
                        return Some(Input::Refused(why));
                    }
                },
                State::Refused => unreachable!("handled above"),
            }
        }
    }
}

impl DeviceDecoder {
    /// What came behind the registration in its packet, once; the box
    /// goes with it unless it keeps the registration's bytes too.
    fn take_after_registration(&mut self) -> Option<Bytes> {
        let kept = self.kept.as_mut()?;
        let after = kept.after.take()?;
        if kept.registration.is_none() {
            self.kept = None;
        }
        Some(after)
    }
}

impl Protocol for Device {
    type Decoder = DeviceDecoder;
    const SLOT: usize = RAW_SLOT;

    fn decode(&self, decoder: &mut DeviceDecoder, buf: &mut BytesMut, eof: bool) -> Option<Input> {
        self.listening.decode(decoder, buf, eof)
    }

    fn gap(&self) -> Option<Duration> {
        self.listening.spec.frame.gap()
    }

    fn decoder(&self) -> DeviceDecoder {
        DeviceDecoder {
            framer: Framer::default(),
            state: match self.listening.spec.register {
                Some(_) => State::Unregistered,
                None => State::Guest,
            },
            kept: None,
            bad_frame: false,
        }
    }

    fn welcome(&self, _name: &Name, _room: Option<&RoomName>) -> Bytes {
        Bytes::new()
    }

    fn register_within(&self) -> Option<Duration> {
        self.listening
            .spec
            .register
            .as_ref()
            .map(|_| self.listening.spec.register_grace)
    }

    fn credentials_in_data(&self) -> bool {
        true
    }

    fn encode_event(event: &Event, out: &mut BytesMut) {
        Raw::encode_event(event, out)
    }

    // A device hears what a raw client hears: nothing from the server.
    fn reply(&self, reply: &Reply, tag: &Tag) -> Bytes {
        Raw.reply(reply, tag)
    }

    fn error(&self, error: &ProtocolError, tag: &Tag) -> Bytes {
        Raw.error(error, tag)
    }

    fn goodbye(&self, closing: &Closing) -> Bytes {
        Raw.goodbye(closing)
    }

    fn refusal(&self, reason: &str) -> Bytes {
        Raw.refusal(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One device of a listener with `options`.
    struct OneDevice {
        protocol: Device,
        decoder: DeviceDecoder,
    }

    impl OneDevice {
        fn decode(&mut self, buf: &mut BytesMut, eof: bool) -> Option<Input> {
            self.protocol.decode(&mut self.decoder, buf, eof)
        }
    }

    fn device(options: &str) -> OneDevice {
        let spec: crate::ListenerSpec = format!("raw://127.0.0.1:0?{options}").parse().unwrap();
        let protocol = Device::new(spec.device, spec.room, 1024);
        let decoder = protocol.decoder();
        OneDevice { protocol, decoder }
    }

    /// A device's decoder is small: every idle device holds one, in its
    /// task (where 8 bytes more take a TCP device's task from a 512-byte
    /// cell to a 640-byte one) or resting in its UDP listener's table.
    #[test]
    fn a_device_decoder_holds_only_its_connection() {
        let size = std::mem::size_of::<DeviceDecoder>();
        assert!(size <= 16, "DeviceDecoder is {size} bytes");
    }

    fn inputs(decoder: &mut OneDevice, input: &[u8]) -> Vec<Input> {
        let mut buf = BytesMut::from(input);
        std::iter::from_fn(|| decoder.decode(&mut buf, true)).collect()
    }

    fn said(input: &Input) -> Option<&[u8]> {
        match input {
            Input::Request {
                request: Request::Say { body, .. },
                ..
            } => Some(&body.bytes),
            _ => None,
        }
    }

    #[test]
    fn a_registration_names_the_device_and_what_follows_it_is_data() {
        let mut decoder = device("register=imei&room=dev-{id}&heartbeat=hex:FE");
        let got = inputs(&mut decoder, b"861234567890123\x01\x03");
        let Input::Request {
            request: Request::Register(registration),
            ..
        } = &got[0]
        else {
            panic!("{got:?}");
        };
        assert_eq!(registration.name.as_str(), "dev-861234567890123");
        assert_eq!(registration.room.as_str(), "dev-861234567890123");
        assert_eq!(said(&got[1]), Some(&b"\x01\x03"[..]));
        let got = inputs(&mut decoder, b"\xFE");
        assert_eq!(got, vec![request(Request::Heartbeat)]);
    }

    #[test]
    fn a_wrong_registration_is_refused_and_nothing_after_it_is_taken() {
        let mut decoder = device("register=imei");
        let got = inputs(&mut decoder, b"hello");
        let [Input::Refused(why)] = &got[..] else {
            panic!("{got:?}")
        };
        assert!(
            why.contains("IMEI") && why.contains("68 65 6C 6C 6F"),
            "{why}"
        );
        assert!(inputs(&mut decoder, b"861234567890123").is_empty());
    }

    #[test]
    fn a_wrong_registration_that_may_hold_a_key_is_not_shown_in_the_log() {
        let mut decoder = device(r"register=regex:(?<id>[0-9]{15}):(?<key>\w+)");
        let got = inputs(&mut decoder, b"861234567890123;s3cret-key");
        let [Input::Refused(why)] = &got[..] else {
            panic!("{got:?}")
        };
        assert!(why.contains("26 bytes are not shown"), "{why}");
        assert!(!why.contains("73 33"), "{why}");
    }

    proptest::proptest! {
        /// Whatever a device sends, however TCP splits it: no panic, and
        /// the same inputs (packets' bounds are the framers' tests).
        #[test]
        fn any_bytes_in_any_split_decode_the_same_and_never_panic(
            options in proptest::sample::select(vec![
                "register=line&register-each&frame=line&heartbeat=ping",
                "register=imei&frame=len:2be&heartbeat=hex:FE",
                "register=regex:ID=(\\w+);&register-each&frame=delimiter:7E",
                "register=mac&frame=gap:5&room=dev-{id}",
                "register=len:3&register-each&frame=line",
                "heartbeat=hex:00&frame=line",
            ]),
            input in proptest::collection::vec(
                proptest::sample::select(vec![0u8, 0x7E, 0xFE, b'\n', b'\r', b'8', b'6', b'I', b'D', b'=', b';', b'a', b':']),
                0..400,
            ),
            cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..10),
        ) {
            let decode = |cuts: &[usize]| {
                let mut decoder = device(options);
                crate::testing::feed_in_pieces(&input, cuts, |buf, eof| decoder.decode(buf, eof))
            };
            proptest::prop_assert_eq!(decode(&[]), decode(&cuts));
        }
    }

    #[test]
    fn a_modbus_frame_failing_its_crc_is_relayed_then_noted() {
        let mut decoder = device("frame=gap:20&modbus=rtu");
        let good = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD];
        assert_eq!(
            inputs(&mut decoder, &good),
            vec![say(Bytes::copy_from_slice(&good))]
        );
        let bad = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00];
        assert_eq!(
            inputs(&mut decoder, &bad),
            vec![
                say(Bytes::copy_from_slice(&bad)),
                request(Request::BadFrame)
            ]
        );
    }

    #[test]
    fn register_each_strips_the_prefix_of_every_packet() {
        let mut decoder = device("register=len:4&register-each&frame=line&heartbeat=ping");
        // With len:N every packet carries an identity: one that is not
        // this device's is dropped.
        let got = inputs(&mut decoder, b"ABCDT=1\nABCDping\nABCDT=2\nWXYZT=3\n");
        let data: Vec<&[u8]> = got.iter().filter_map(said).collect();
        assert_eq!(data, [&b"T=1\n"[..], b"T=2\n"]);
        assert!(got.contains(&request(Request::Heartbeat)));
        let mut decoder = device("register=imei&register-each");
        let got = inputs(&mut decoder, b"861234567890123\x01");
        assert_eq!(said(&got[1]), Some(&b"\x01"[..]));
        let got = inputs(&mut decoder, b"861234567890123\x02");
        assert_eq!(said(&got[0]), Some(&b"\x02"[..]));
        // No identity at all: relayed as it came.
        let got = inputs(&mut decoder, b"\x03");
        assert_eq!(said(&got[0]), Some(&b"\x03"[..]));
    }
}
