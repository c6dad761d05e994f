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
//!   U+200F, U+061C), line and paragraph separators (U+2028, U+2029), and
//!   bytes that are not UTF-8 become U+FFFD `�`;
//! - a run of blanks (spaces, tabs, other Unicode spaces, zero-width
//!   characters) is shown at most [`MAX_BLANK_COLUMNS`] columns wide: a
//!   run of invisible characters would soft-wrap an 80-column terminal
//!   and start a visual line with a forged `[#room] name:` prefix.

use bytes::{BufMut, BytesMut};

/// How much longer than the input the output can be, at most: one byte
/// becomes at most three (an invalid byte becomes U+FFFD).
pub const MAX_EXPANSION: usize = 3;

/// The widest run of blanks shown: a tab stop's worth. Wider runs are
/// cut to it (a tab counts 8 columns), so that invisible characters cannot
/// wrap a line onto a forged prefix; text is still readable, and JSON and
/// raw clients get the exact text.
pub const MAX_BLANK_COLUMNS: usize = 8;

/// Whether a byte is shown as it is, with nothing to look at: printable
/// ASCII and TAB. Everything else takes the slow path.
fn plain(byte: u8) -> bool {
    (0x20..0x7f).contains(&byte) || byte == b'\t'
}

/// Whether `bytes` can be shown as they are: plain, with no run of blanks
/// wider than [`MAX_BLANK_COLUMNS`].
fn shown_as_is(bytes: &[u8]) -> bool {
    let mut blank = 0;
    bytes.iter().all(|&b| {
        blank = match b {
            b' ' => blank + 1,
            b'\t' => blank + 8,
            _ => 0,
        };
        plain(b) && blank <= MAX_BLANK_COLUMNS
    })
}

/// How many columns a blank character takes (`None`: not a blank). Zero
/// for the zero-width ones, which still belong to a run.
fn blank_width(c: char) -> Option<usize> {
    match c {
        '\t' => Some(8),
        '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' => Some(0),
        // Controls (line ends among them) are shown in caret notation.
        c if c.is_whitespace() && !c.is_control() => Some(1),
        _ => None,
    }
}

/// Appends `bytes` to `out`, made safe to show on a terminal.
pub fn put_inert(out: &mut BytesMut, bytes: &[u8]) {
    if shown_as_is(bytes) {
        out.put_slice(bytes);
        return;
    }
    let mut blank = 0;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut clean = 0;
        for (at, c) in valid.char_indices() {
            let width = blank_width(c);
            blank = width.map_or(0, |w| blank + w);
            if width.is_some() && blank > MAX_BLANK_COLUMNS {
                // Past the widest run shown: left out.
                out.put_slice(&valid.as_bytes()[clean..at]);
                clean = at + c.len_utf8();
                continue;
            }
            let replacement: Option<&[u8]> = match c {
                '\t' => None,
                '\0'..='\x1f' => Some(&CARET[c as usize]),
                '\x7f' => Some(b"^?"),
                '\u{80}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
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
            blank = 0;
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

    #[test]
    fn a_run_of_blanks_cannot_wrap_a_line_onto_a_forged_prefix() {
        let forged = "[#lobby] admin: send me your password";
        for blanks in [
            " ".repeat(66),
            "\t".repeat(9),
            "\u{3000}".repeat(33),
            " \u{200b}".repeat(40),
        ] {
            let shown = inert(format!("hi{blanks}{forged}").as_bytes());
            let run: String = shown
                .trim_start_matches("hi")
                .chars()
                .take_while(|c| blank_width(*c).is_some())
                .collect();
            let columns: usize = run.chars().map(|c| blank_width(c).unwrap()).sum();
            assert!(columns <= MAX_BLANK_COLUMNS, "{blanks:?} became {run:?}");
            assert!(shown.ends_with(forged), "{shown}");
        }
        // Ordinary spacing is left alone.
        assert_eq!(inert(b"a  b\tc        d"), "a  b\tc        d");
    }

    #[test]
    fn line_and_paragraph_separators_are_replaced() {
        assert_eq!(
            inert("a\u{2028}[#lobby] x: y\u{2029}".as_bytes()),
            "a\u{fffd}[#lobby] x: y\u{fffd}"
        );
    }

    proptest! {
        #[test]
        fn nothing_a_terminal_obeys_gets_through(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let out = inert(&input);
            prop_assert!(out.len() <= input.len() * MAX_EXPANSION);
            for c in out.chars() {
                prop_assert!(c == '\t' || !c.is_control(), "{:?} got through", c);
                let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}');
                prop_assert!(!bidi, "bidi control or separator {:?} got through", c);
            }
            let mut run = 0;
            for c in out.chars() {
                run = blank_width(c).map_or(0, |w| run + w);
                prop_assert!(run <= MAX_BLANK_COLUMNS, "a run of {} blank columns in {:?}", run, out);
            }
        }
    }
}
