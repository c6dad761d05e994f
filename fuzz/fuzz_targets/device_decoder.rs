//! The device decoder (a raw listener with `register=`, `heartbeat=`,
//! `frame=`, `modbus=`): with `frame=`, however the stream is cut, the
//! same inputs come out; a device registers at most once, first, or is refused and nothing
//! more it sends is taken; no data is taken before its registration; no
//! packet is empty or over the cap (and a length prefix), and the
//! packets relayed are never more than the bytes sent; a bad Modbus frame
//! is noted right after the packet it is about.
//!
//! Input: the layout in `switchboard_fuzz` (cap byte, cuts, bytes); the
//! first of the bytes picks the listener's options from [`OPTIONS`].

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::protocol::{Decode, Device, Input, Protocol, Request};
use switchboard::ListenerSpec;
use switchboard_fuzz::{assert_same, feed_at_most, said_bodies, Case};

/// Device listeners as the docs show them: every way of registering,
/// framing and beating.
const OPTIONS: [&str; 12] = [
    "register=imei&heartbeat=hex:FE",
    "register=imei&room=dev-{id}&frame=line",
    "register=line&register-each&frame=line&heartbeat=ping",
    "register=imei&frame=len:2be&heartbeat=hex:FE",
    "register=regex:ID=(\\w+);&register-each&frame=delimiter:7E",
    "register=mac&frame=len:1&room=dev-{id}",
    "register=len:3&register-each&frame=line",
    "register=regex:(?<id>[0-9]{15}):(?<key>\\w+)&frame=line",
    "heartbeat=hex:00&frame=line",
    "frame=gap:20&modbus=rtu",
    "frame=len:4le&heartbeat=ping",
    "heartbeat=hex:FE",
];

fuzz_target!(|data: &[u8]| {
    let case = Case::parse(data);
    let Some((&choice, stream)) = case.input.split_first() else {
        return;
    };
    let options = OPTIONS[choice as usize % OPTIONS.len()];
    let spec: ListenerSpec = format!("raw://127.0.0.1:0?{options}")
        .parse()
        .expect("the options parse");
    let registers = spec.device.register.is_some();
    let modbus = options.contains("modbus");
    // A server's line cap is at least one byte.
    let max = case.max_line.max(1);
    let device = Device::new(spec.device, spec.room, max);
    let decode = |cuts: &[usize]| {
        let mut decoder = device.decoder();
        // A packet and the note that it failed its Modbus CRC.
        feed_at_most(stream, cuts, 2, |buf, eof| decoder.decode(buf, eof))
    };
    let whole = decode(&[]);
    let split = decode(&case.cuts);
    // Without frame=, a packet is what one read brought: how the stream
    // is cut is what it means. Every other framing ignores the cuts.
    if options.contains("frame=") {
        assert_same(&whole.items, &split.items, &case.cuts);
    }

    let items = &whole.items;
    // A length-prefixed packet is relayed with its prefix (at most 4
    // bytes) on top of the cap.
    let cap = if options.contains("frame=len:") {
        max.saturating_add(4)
    } else {
        max
    };
    let relayed: usize = said_bodies(items, cap)
        .map(|body| {
            assert!(!body.bytes.is_empty(), "an empty packet was relayed");
            body.bytes.len()
        })
        .sum();
    assert!(
        relayed <= stream.len(),
        "{relayed} bytes relayed of {} sent",
        stream.len()
    );
    for (i, input) in items.iter().enumerate() {
        match input {
            Input::Request {
                request: Request::Register(_),
                ..
            } => {
                assert!(registers, "a registration without register=");
                assert_eq!(i, 0, "a registration that is not the first input");
            }
            Input::Refused(_) => {
                assert!(registers, "a refusal without register=");
                assert_eq!(i + 1, items.len(), "input taken after a refusal");
            }
            Input::Request {
                request: Request::BadFrame,
                ..
            } => {
                assert!(modbus, "a bad frame without modbus=rtu");
                assert!(
                    i > 0 && matches!(
                        items[i - 1],
                        Input::Request {
                            request: Request::Say { .. },
                            ..
                        }
                    ),
                    "a bad frame noted but not after a packet"
                );
            }
            // A heartbeat before the registration is taken as one (it
            // relays nothing; the register grace still runs).
            Input::Request {
                request: Request::Heartbeat,
                ..
            } => {}
            Input::Request {
                request: Request::Say { .. },
                ..
            } => {
                assert!(
                    !registers
                        || matches!(
                            items[0],
                            Input::Request {
                                request: Request::Register(_),
                                ..
                            }
                        ),
                    "data taken from a device that has not registered"
                );
            }
            other => panic!("a device sent what devices cannot: {other:?}"),
        }
    }
});
