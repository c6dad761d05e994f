//! Modbus RTU's frame check (`modbus=rtu`): the last two bytes of a frame
//! are the CRC-16/MODBUS of the bytes before them, low byte first.

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for byte in bytes {
        crc ^= u16::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Whether `frame` ends with the CRC of what comes before it. A frame has
/// at least an address, a function code and the CRC: 4 bytes.
pub fn frame_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(end) if end >= 2 => crc16(&frame[..end]).to_le_bytes() == frame[end..],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crc_of_a_read_holding_registers_request_is_c5_cd() {
        // Read 10 holding registers from 0 at unit 1: 01 03 00 00 00 0A C5 CD.
        assert_eq!(crc16(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A]), 0xCDC5);
        assert!(frame_ok(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD]));
        assert!(!frame_ok(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCE]));
        assert!(!frame_ok(&[0x01, 0x03, 0x00]));
        // The check value of the standard "123456789".
        assert_eq!(crc16(b"123456789"), 0x4B37);
    }
}
