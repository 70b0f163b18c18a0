//! The `basic_auth_users` of one loaded web config: the bcrypt check of user
//! and password, and what it said, remembered under that config (see
//! [`super::remembered`]).

use super::credentials::Credentials;
use super::remembered::{Remembered, Tag};
use std::collections::BTreeMap;

/// The `basic_auth_users` of one loaded web config, with the verdicts
/// reached under it. A reload builds a new one, which forgets them all.
pub struct BasicAuth {
    /// user -> bcrypt hash
    users: BTreeMap<String, String>,
    /// Checked when the user is unknown, so a wrong name costs as long as a
    /// wrong password and timing does not reveal which names exist.
    decoy_hash: String,
    remembered: Remembered,
}

impl BasicAuth {
    /// Slow: hashes the decoy with bcrypt at the cost of the first user's
    /// hash. `users` must hold bcrypt hashes (the web config checks that).
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        let cost = users
            .values()
            .next()
            .and_then(|hash| hash.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |parts| parts.get_cost());
        let decoy_hash = bcrypt::hash("decoy", cost).map_err(|err| format!("bcrypt: {err}"))?;
        Ok(BasicAuth {
            users,
            decoy_hash,
            remembered: Remembered::new()?,
        })
    }

    /// Fast (one HMAC): how these credentials are known under this config.
    pub fn tag(&self, credentials: &Credentials) -> Tag {
        self.remembered.tag(credentials)
    }

    /// Fast: the verdict on these credentials, if one is remembered.
    /// `Some(true)` only for credentials bcrypt verified under this config.
    pub fn outcome(&self, tag: Tag) -> Option<bool> {
        self.remembered.outcome(tag)
    }

    /// Slow by design (bcrypt): run it on a bcrypt scheduler thread. The
    /// verdict is remembered under `tag` (`credentials`' tag), right or
    /// wrong, so these credentials are not checked again while it is.
    pub fn verify(&self, credentials: &Credentials, tag: Tag) -> bool {
        let (hash, known) = match self.users.get(&credentials.user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy_hash.as_str(), false),
        };
        let right = bcrypt::verify(credentials.password.as_bytes(), hash).unwrap_or(false) && known;
        self.remembered.remember(tag, right);
        right
    }
}

/// Cost 4, the cheapest bcrypt allows, to keep the tests fast.
#[cfg(test)]
pub(super) fn alice() -> std::sync::Arc<BasicAuth> {
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::sync::Arc::new(BasicAuth::new([("alice".to_string(), hash)].into()).unwrap())
}

#[cfg(test)]
mod tests {
    use super::super::credentials::header;
    use super::*;

    fn verify(auth: &BasicAuth, user: &str, password: &str) -> bool {
        let credentials = header(user, password);
        auth.verify(&credentials, auth.tag(&credentials))
    }

    fn outcome(auth: &BasicAuth, user: &str, password: &str) -> Option<bool> {
        auth.outcome(auth.tag(&header(user, password)))
    }

    #[test]
    fn basic_auth_checks_name_and_password() {
        let auth = alice();
        assert!(verify(&auth, "alice", "secret"));
        assert!(!verify(&auth, "alice", "wrong"));
        assert!(!verify(&auth, "mallory", "secret"));
    }

    /// Wrong passwords are remembered too now, so what this guards is that
    /// a wrong one is never taken as right, whatever is remembered.
    #[test]
    fn a_wrong_password_is_never_remembered_as_right() {
        let auth = alice();
        assert_eq!(outcome(&auth, "alice", "secret"), None);
        assert!(!verify(&auth, "alice", "wrong"));
        assert_eq!(outcome(&auth, "alice", "wrong"), Some(false));
        // An unknown user with a known user's password is wrong too.
        assert!(!verify(&auth, "mallory", "secret"));
        assert_eq!(outcome(&auth, "mallory", "secret"), Some(false));
        assert_eq!(outcome(&auth, "alice", "secret"), None);
        assert!(verify(&auth, "alice", "secret"));
        assert_eq!(outcome(&auth, "alice", "secret"), Some(true));
        assert_eq!(outcome(&auth, "alice", "secret2"), None);
        assert_eq!(outcome(&auth, "alice", "wrong"), Some(false));
        // A reload builds a new BasicAuth: nothing carries over.
        assert_eq!(outcome(&alice(), "alice", "secret"), None);
    }
}
