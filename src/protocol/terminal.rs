//! What text clients may be shown: text mode is read by people at
//! terminals, and a terminal obeys control characters. A client that could
//! send `\r`, ESC sequences or backspaces to others could forge another
//! client's `[#room] name:` prefix, clear their screens or set their window
//! titles; one that could send right-to-left overrides could make a line
//! read backwards. So message text is made inert on its way to text
//! clients (JSON clients get the exact text, which JSON escapes; raw
//! clients get the bytes unchanged):
//!
//! - C0 controls other than TAB, and DEL, become caret notation: ESC is
//!   `^[`, BS `^H`, a CR inside a line `^M`, BEL `^G`, DEL `^?`;
//! - C1 controls (U+0080 to U+009F), bidirectional embeddings, overrides,
//!   isolates and marks (U+202A to U+202E, U+2066 to U+2069, U+200E,
//!   U+200F, U+061C), and bytes that are not UTF-8 become U+FFFD `�`.

use bytes::{BufMut, BytesMut};

/// How much longer than the input the output can be, at most: one byte
/// becomes at most three (an invalid byte becomes U+FFFD).
pub const MAX_EXPANSION: usize = 3;

/// Whether a byte is shown as it is, with nothing to look at: printable
/// ASCII and TAB. Everything else takes the slow path.
fn plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) || byte == b'\t'
}

/// Appends `bytes` to `out`, made safe to show on a terminal.
pub fn put_inert(out: &mut BytesMut, bytes: &[u8]) {
    if bytes.iter().all(|b| plain(*b)) {
        out.put_slice(bytes);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut clean = 0;
        for (at, c) in valid.char_indices() {
            let replacement: Option<&[u8]> = match c {
                '\t' => None,
                '\0'..='\x1f' => Some(&CARET[c as usize]),
                '\x7f' => Some(b"^?"),
                '\u{80}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{061c}' => Some(REPLACEMENT),
                _ => None,
            };
            if let Some(replacement) = replacement {
                out.put_slice(&valid.as_bytes()[clean..at]);
                out.put_slice(replacement);
                clean = at + c.len_utf8();
            }
        }
        out.put_slice(&valid.as_bytes()[clean..]);
        if !chunk.invalid().is_empty() {
            out.put_slice(REPLACEMENT);
        }
    }
}

/// U+FFFD REPLACEMENT CHARACTER, in UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

/// Caret notation for the C0 controls: `^@` for NUL to `^_` for US.
const CARET: [[u8; 2]; 32] = {
    let mut table = [[0u8; 2]; 32];
    let mut i = 0;
    while i < 32 {
        table[i] = [b'^', b'@' + i as u8];
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inert(bytes: &[u8]) -> String {
        let mut out = BytesMut::new();
        put_inert(&mut out, bytes);
        String::from_utf8(out.to_vec()).expect("always UTF-8")
    }

    #[test]
    fn plain_text_passes_unchanged() {
        assert_eq!(inert(b"hello\tworld"), "hello\tworld");
        assert_eq!(inert("小明: café".as_bytes()), "小明: café");
    }

    #[test]
    fn controls_become_caret_notation() {
        assert_eq!(
            inert(b"hi\r[#lobby] admin: send me your password"),
            "hi^M[#lobby] admin: send me your password"
        );
        assert_eq!(inert(b"\x1b[2J"), "^[[2J");
        assert_eq!(inert(b"\x1b]0;pwned\x07"), "^[]0;pwned^G");
        assert_eq!(inert(b"ab\x08\x08\x7f"), "ab^H^H^?");
        assert_eq!(inert(b"\0"), "^@");
    }

    #[test]
    fn c1_controls_bidi_overrides_and_invalid_bytes_become_replacement_characters() {
        assert_eq!(inert("a\u{9b}2J".as_bytes()), "a\u{fffd}2J");
        assert_eq!(
            inert("evil\u{202e}txt.exe".as_bytes()),
            "evil\u{fffd}txt.exe"
        );
        assert_eq!(inert("\u{2067}x\u{2069}".as_bytes()), "\u{fffd}x\u{fffd}");
        assert_eq!(inert(b"caf\xe9 \xff"), "caf\u{fffd} \u{fffd}");
        // A lone 8-bit CSI byte is not UTF-8: replaced too.
        assert_eq!(inert(b"\x9b2J"), "\u{fffd}2J");
    }

    proptest! {
        #[test]
        fn nothing_a_terminal_obeys_gets_through(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let out = inert(&input);
            prop_assert!(out.len() <= input.len() * MAX_EXPANSION);
            for c in out.chars() {
                prop_assert!(c == '\t' || !c.is_control(), "{:?} got through", c);
                let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}');
                prop_assert!(!bidi, "bidi control {:?} got through", c);
            }
        }
    }
}
