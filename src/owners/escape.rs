//! Names as the kernel has them, written as label text.
//!
//! A process name (`comm`, set with `prctl(PR_SET_NAME)`), an executable
//! path or a cgroup path is a string of bytes to the kernel: any byte but
//! NUL (and `/` in a name). A label value is UTF-8 text. [`escape`] turns
//! the one into the other without losing or merging anything:
//!
//! - a backslash is written `\\`;
//! - a byte that is not part of valid UTF-8, and every ASCII control
//!   character (newline, tab, escape, DEL...), is written `\xNN` (two
//!   lower-case hex digits);
//! - everything else (quotes, braces, spaces, any printable character of
//!   any script) is written as it is; the exposition format itself escapes
//!   `"` (and the `\` of our escapes) when it writes the series.
//!
//! The mapping is one to one: [`unescape`] gives the bytes back, so two
//! different names never share a label value, and an allow rule written in
//! the same notation (`exe=/tmp/bad\xff`) names exactly one path.

/// The label text of kernel bytes (see the module doc).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => push_hex(&mut out, c as u8),
                c => out.push(c),
            }
        }
        for &byte in chunk.invalid() {
            push_hex(&mut out, byte);
        }
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

/// One unit of escaped text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A byte written as itself.
    Plain(u8),
    /// A byte written as `\\` or `\xNN`.
    Escaped(u8),
}

impl Piece {
    pub fn byte(self) -> u8 {
        match self {
            Piece::Plain(byte) | Piece::Escaped(byte) => byte,
        }
    }
}

/// Splits escaped text into bytes, saying which were escaped (a glob treats
/// an escaped `*` as a plain star). A backslash not followed by `\` or
/// `xNN` is an error naming the place.
pub fn pieces(text: &str) -> Result<Vec<Piece>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            out.push(Piece::Plain(bytes[at]));
            at += 1;
            continue;
        }
        match bytes.get(at + 1) {
            Some(b'\\') => {
                out.push(Piece::Escaped(b'\\'));
                at += 2;
            }
            Some(b'x') => {
                let hex = bytes
                    .get(at + 2..at + 4)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        format!("{text:?}: \\x must be followed by two hex digits (e.g. \\xff)")
                    })?;
                out.push(Piece::Escaped(hex));
                at += 4;
            }
            _ => {
                return Err(format!(
                    "{text:?}: a backslash starts \\\\ (a backslash) or \\xNN (the byte NN)"
                ));
            }
        }
    }
    Ok(out)
}

/// The bytes escaped text stands for.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    Ok(pieces(text)?.into_iter().map(Piece::byte).collect())
}

/// The one escaped spelling of escaped text (`\xFF` and `\xff` are one byte).
pub fn canonical(text: &str) -> Result<String, String> {
    Ok(escape(&unescape(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_as_they_are() {
        for name in ["sshd", "python3.11", "nginx: worker", "{a}\"b'", "späť"] {
            assert_eq!(escape(name.as_bytes()), name);
        }
    }

    #[test]
    fn bad_bytes_controls_and_backslashes_are_escaped() {
        assert_eq!(escape(b"bad\xff"), "bad\\xff");
        assert_eq!(escape(b"a\nb\tc\x1b\x7f"), "a\\x0ab\\x09c\\x1b\\x7f");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"\xe2\x82"), "\\xe2\\x82"); // a truncated euro sign
        assert_eq!(escape("€".as_bytes()), "€");
    }

    #[test]
    fn escaping_is_one_to_one() {
        // The byte 0xff and the four characters \xff never collide.
        assert_ne!(escape(b"\xff"), escape(b"\\xff"));
        let samples: [&[u8]; 7] = [
            b"bad\xff",
            b"bad\\xff",
            b"a\\\\b",
            b"\n",
            b"\\x0a",
            b"/tmp/z (deleted)",
            b"\x00\x01",
        ];
        for bytes in samples {
            assert_eq!(unescape(&escape(bytes)).unwrap(), bytes);
        }
        for a in 0..=255u8 {
            for b in [0u8, b'\\', b'x', 0xc3, 0xa9, 0xff] {
                let bytes = [a, b];
                assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn unescape_refuses_stray_backslashes() {
        assert!(unescape("a\\b").unwrap_err().contains("backslash"));
        assert!(unescape("a\\x").unwrap_err().contains("two hex digits"));
        assert!(unescape("a\\xg0").is_err());
        assert_eq!(canonical("bad\\xFF").unwrap(), "bad\\xff");
        assert_eq!(
            pieces("\\x2a*").unwrap(),
            [Piece::Escaped(b'*'), Piece::Plain(b'*')]
        );
    }
}
