//! A small glob for `exe=` selectors, written here because the whole need
//! is three wildcards over one path (a glob crate would bring character
//! classes, alternation and escaping nobody asked for).
//!
//! - `*` matches any run of characters except `/` (one path component),
//! - `**` matches any run of characters, `/` included,
//! - `?` matches one character except `/`;
//!
//! everything else matches itself. The pattern is written in the label
//! notation of `crate::owners::escape` (`\xff` is the byte 0xff, `\\` a
//! backslash) and matched against the executable's raw bytes, so a path
//! that is not UTF-8 can be named, and an escaped `\x2a` is a literal `*`.
//! Matching is a dynamic programme over
//! (pattern position, text position), so its cost is bounded by
//! pattern length x path length whatever the pattern: no backtracking blow-up.

use crate::owners::escape::{Piece, pieces};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Byte(u8),
    AnyOne,
    /// `*`: within one path component.
    Star,
    /// `**`: across components.
    DoubleStar,
}

/// A compiled pattern; compares and prints as its source text.
#[derive(Clone)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
    /// The bytes, when the pattern has no wildcard.
    literal: Option<Vec<u8>>,
}

impl Glob {
    /// Compiles a pattern; an escape that does not parse is an error.
    pub fn new(source: &str) -> Result<Glob, String> {
        let pieces = pieces(source)?;
        let mut tokens = Vec::with_capacity(pieces.len());
        let mut at = 0;
        while at < pieces.len() {
            let token = match pieces[at] {
                Piece::Plain(b'*') if pieces.get(at + 1) == Some(&Piece::Plain(b'*')) => {
                    at += 1;
                    Token::DoubleStar
                }
                Piece::Plain(b'*') => Token::Star,
                Piece::Plain(b'?') => Token::AnyOne,
                piece => Token::Byte(piece.byte()),
            };
            // Runs of stars collapse: "***" is "**".
            match (tokens.last_mut(), token) {
                (Some(last @ Token::Star), Token::DoubleStar)
                | (Some(last @ Token::DoubleStar), Token::Star | Token::DoubleStar) => {
                    *last = Token::DoubleStar
                }
                _ => tokens.push(token),
            }
            at += 1;
        }
        let literal = tokens
            .iter()
            .map(|t| match t {
                Token::Byte(byte) => Some(*byte),
                _ => None,
            })
            .collect();
        Ok(Glob {
            source: source.to_string(),
            tokens,
            literal,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches the raw bytes of a path.
    pub fn is_match(&self, text: &[u8]) -> bool {
        if let Some(literal) = &self.literal {
            return literal == text;
        }
        // matched[j]: the pattern so far matches the first j bytes of text.
        let mut matched = vec![false; text.len() + 1];
        let mut next = vec![false; text.len() + 1];
        matched[0] = true;
        for token in &self.tokens {
            next.iter_mut().for_each(|cell| *cell = false);
            match *token {
                Token::Byte(byte) => {
                    for j in 0..text.len() {
                        next[j + 1] = matched[j] && text[j] == byte;
                    }
                }
                Token::AnyOne => {
                    for j in 0..text.len() {
                        next[j + 1] = matched[j] && text[j] != b'/';
                    }
                }
                Token::Star | Token::DoubleStar => {
                    let crosses = *token == Token::DoubleStar;
                    next[0] = matched[0];
                    for j in 1..=text.len() {
                        next[j] = matched[j] || (next[j - 1] && (crosses || text[j - 1] != b'/'));
                    }
                }
            }
            std::mem::swap(&mut matched, &mut next);
            if !matched.contains(&true) {
                return false;
            }
        }
        matched[text.len()]
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.source == other.source
    }
}

impl Eq for Glob {}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().is_match(text.as_bytes())
    }

    #[test]
    fn literal_paths_match_only_themselves() {
        assert!(check("/usr/sbin/sshd", "/usr/sbin/sshd"));
        assert!(!check("/usr/sbin/sshd", "/usr/sbin/sshd2"));
        assert!(!check("/usr/sbin/sshd", "/usr/sbin/ssh"));
    }

    #[test]
    fn one_star_stays_within_a_component() {
        assert!(check(
            "/usr/lib/jvm/*/bin/java",
            "/usr/lib/jvm/java-17/bin/java"
        ));
        assert!(!check(
            "/usr/lib/jvm/*/bin/java",
            "/usr/lib/jvm/a/b/bin/java"
        ));
        assert!(check("/usr/sbin/*", "/usr/sbin/dhclient"));
        assert!(!check("/usr/sbin/*", "/usr/sbin/x/dhclient"));
        assert!(check("/opt/app-*", "/opt/app-"));
        assert!(check("*", "sshd"));
        assert!(!check("*", "/sshd"));
    }

    #[test]
    fn two_stars_cross_components_and_question_marks_take_one() {
        assert!(check(
            "/nix/store/**/bin/sshd",
            "/nix/store/abc-openssh-9/bin/sshd"
        ));
        assert!(check("/opt/**", "/opt/a/b/c"));
        assert!(check("/opt/***", "/opt/a/b/c"), "runs of stars collapse");
        assert!(check("/usr/bin/python3.1?", "/usr/bin/python3.11"));
        assert!(!check("/usr/bin/python3.1?", "/usr/bin/python3.1"));
        assert!(!check("/a?b", "/a/b"));
    }

    #[test]
    fn many_stars_on_a_long_path_stay_cheap() {
        let pattern = "*a".repeat(40) + "b";
        let text = "a".repeat(4000);
        assert!(!check(&pattern, &text));
    }

    #[test]
    fn compares_and_prints_as_its_source() {
        assert_eq!(Glob::new("/x/*"), Glob::new("/x/*"));
        assert_eq!(Glob::new("/x/*").unwrap().to_string(), "/x/*");
    }

    #[test]
    fn escapes_name_raw_bytes() {
        let bad = Glob::new("/tmp/bad\\xff").unwrap();
        assert!(bad.is_match(b"/tmp/bad\xff"));
        assert!(!bad.is_match(b"/tmp/bad\\xff"));
        let star = Glob::new("/tmp/\\x2a").unwrap();
        assert!(star.is_match(b"/tmp/*"));
        assert!(!star.is_match(b"/tmp/a"));
        assert!(Glob::new("/tmp/\\q").is_err());
        assert!(Glob::new("/tmp/\\\\*").unwrap().is_match(b"/tmp/\\ab"));
    }
}
