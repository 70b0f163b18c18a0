//! The `basic_auth_users` of one loaded web config: bcrypt checks of user
//! and password, and the credentials verified under that config.

use super::credentials::Credentials;
use super::remembered::VerifiedCache;
use std::collections::BTreeMap;

/// The `basic_auth_users` of one loaded web config, with the credentials
/// verified under it. A reload builds a new one, which drops the cache.
pub struct BasicAuth {
    /// user -> bcrypt hash
    users: BTreeMap<String, String>,
    /// Checked when the user is unknown, so a wrong name costs as long as a
    /// wrong password and timing does not reveal which names exist.
    decoy_hash: String,
    pub(super) verified: VerifiedCache,
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
            verified: VerifiedCache::new()?,
        })
    }

    /// Fast: were these credentials verified before (under this config)?
    pub fn is_verified(&self, credentials: &Credentials) -> bool {
        self.verified.contains(credentials)
    }

    /// Slow by design (bcrypt): run it on a bcrypt budget thread. Right
    /// credentials are remembered, so [`BasicAuth::is_verified`] says yes
    /// to them from now on.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        let (hash, known) = match self.users.get(&credentials.user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy_hash.as_str(), false),
        };
        let right = bcrypt::verify(credentials.password.as_bytes(), hash).unwrap_or(false) && known;
        if right {
            self.verified.insert(credentials);
        }
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
    use super::super::remembered::VERIFIED_CACHE_SIZE;
    use super::*;

    #[test]
    fn basic_auth_checks_name_and_password() {
        let auth = alice();
        assert!(auth.verify(&header("alice", "secret")));
        assert!(!auth.verify(&header("alice", "wrong")));
        assert!(!auth.verify(&header("mallory", "secret")));
    }

    #[test]
    fn only_verified_credentials_are_remembered() {
        let auth = alice();
        assert!(!auth.is_verified(&header("alice", "secret")));
        assert!(!auth.verify(&header("alice", "wrong")));
        assert!(!auth.is_verified(&header("alice", "wrong")));
        assert!(auth.verify(&header("alice", "secret")));
        assert!(auth.is_verified(&header("alice", "secret")));
        assert!(!auth.is_verified(&header("alice", "secret2")));
        // A reload builds a new BasicAuth: nothing carries over.
        assert!(!alice().is_verified(&header("alice", "secret")));
    }

    #[test]
    fn the_cache_keeps_tags_not_passwords_and_stays_bounded() {
        let auth = alice();
        for n in 0..VERIFIED_CACHE_SIZE + 10 {
            auth.verified.insert(&header("alice", &format!("p{n}")));
        }
        let entries = auth.verified.entries.lock().unwrap();
        assert_eq!(entries.len(), VERIFIED_CACHE_SIZE);
        assert!(entries.iter().all(|(_, tag)| tag.as_ref().len() == 32));
        // The oldest went first.
        drop(entries);
        assert!(!auth.is_verified(&header("alice", "p0")));
        assert!(auth.is_verified(&header("alice", &format!("p{}", VERIFIED_CACHE_SIZE + 9))));
    }
}
