//! Bytes written as hex, the way device manuals and serial tools show
//! them: `01 03 00 00 00 0A C5 CD`.

use std::fmt::Write;

use super::HexError;

/// `bytes` as upper-case hex pairs separated by spaces.
pub fn format(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Reads hex bytes: pairs of hex digits, optionally separated by spaces,
/// `:` or `-` (`01 03 0A`, `01030A`, `AA:BB:CC`), each pair optionally
/// written `0x01`.
pub fn parse(text: &str) -> Result<Vec<u8>, HexError> {
    let mut digits = Vec::with_capacity(text.len());
    for token in text.split(|c: char| c.is_whitespace() || c == ':' || c == '-' || c == ',') {
        let token = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        if token.len() % 2 == 1 {
            return Err(HexError::NotWholeBytes(token.to_owned()));
        }
        digits.extend_from_slice(token.as_bytes());
    }
    if digits.is_empty() {
        return Err(HexError::Empty);
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(pair, 16).map_err(|_| HexError::NotHex(pair.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_reads_the_ways_manuals_write_it() {
        let modbus = vec![0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD];
        assert_eq!(parse("01 03 00 00 00 0A C5 CD").unwrap(), modbus);
        assert_eq!(
            parse("010300000000aC5CD").unwrap_err(),
            HexError::NotWholeBytes("010300000000aC5CD".into())
        );
        assert_eq!(parse("0103000000 0AC5CD").unwrap(), modbus);
        assert_eq!(
            parse("0x01 0x03 0x00 0x00 0x00 0x0a 0xc5 0xcd").unwrap(),
            modbus
        );
        assert_eq!(parse("AA:BB-cc").unwrap(), vec![0xAA, 0xBB, 0xCC]);
        assert_eq!(parse("GG").unwrap_err(), HexError::NotHex("GG".into()));
        assert_eq!(parse("  ").unwrap_err(), HexError::Empty);
        assert!(parse("GG")
            .unwrap_err()
            .to_string()
            .contains("not a hex byte"));
        assert_eq!(format(&modbus), "01 03 00 00 00 0A C5 CD");
    }

    proptest! {
        #[test]
        fn what_is_formatted_parses_back(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            prop_assert_eq!(parse(&format(&bytes)).unwrap(), bytes);
        }
    }
}
