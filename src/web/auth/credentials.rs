//! A user name and password from an `Authorization: Basic` header, decoded
//! and nothing more: whether they are right is [`super::basic`]'s question.

use base64::Engine;

/// A user name and password from an `Authorization: Basic` header.
pub struct Credentials {
    pub(super) user: String,
    pub(super) password: String,
}

impl Credentials {
    /// Decodes a header value; `None` unless it is well-formed basic auth.
    pub fn from_header(value: &[u8]) -> Option<Credentials> {
        let text = std::str::from_utf8(value).ok()?;
        let (scheme, encoded) = text.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// A header for `user:password`, as a client would send it.
#[cfg(test)]
pub(super) fn header(user: &str, password: &str) -> Credentials {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Credentials::from_header(format!("Basic {encoded}").as_bytes()).expect("well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_basic_auth_decodes() {
        let decoded = header("alice", "se:cret");
        assert_eq!(
            (decoded.user.as_str(), decoded.password.as_str()),
            ("alice", "se:cret")
        );
        assert!(Credentials::from_header(b"basic YTpi").is_some()); // "a:b", any case
        assert!(Credentials::from_header(b"Bearer x").is_none());
        assert!(Credentials::from_header(b"Basic !!!").is_none());
        assert!(Credentials::from_header(b"Basic bm9jb2xvbg==").is_none()); // "nocolon"
    }
}
