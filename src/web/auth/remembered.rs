//! Credentials verified before, remembered as tags rather than passwords, so
//! Prometheus' scrapes cost a hash instead of a bcrypt check.

use super::credentials::Credentials;
use ring::hmac;
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many verified credentials are remembered. Only right passwords get
/// in, so this is a bound on (user, password) pairs in use, not on guesses.
pub(super) const VERIFIED_CACHE_SIZE: usize = 64;

/// Verified (user, HMAC of password) pairs, oldest first.
pub(super) struct VerifiedCache {
    /// Drawn at load, never leaves memory: the tags cannot be checked
    /// against guesses offline, and differ from one config load to the next.
    key: hmac::Key,
    pub(super) entries: Mutex<VecDeque<(String, hmac::Tag)>>,
}

impl VerifiedCache {
    pub(super) fn new() -> Result<VerifiedCache, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| "cannot draw a random key for the credential cache".to_string())?;
        Ok(VerifiedCache {
            key,
            entries: Mutex::new(VecDeque::with_capacity(VERIFIED_CACHE_SIZE)),
        })
    }

    fn tag(&self, credentials: &Credentials) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        // The length first, so ("ab", "c") and ("a", "bc") differ.
        context.update(&(credentials.user.len() as u64).to_le_bytes());
        context.update(credentials.user.as_bytes());
        context.update(credentials.password.as_bytes());
        context.sign()
    }

    pub(super) fn contains(&self, credentials: &Credentials) -> bool {
        let tag = self.tag(credentials);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .any(|(user, known)| *user == credentials.user && known.as_ref() == tag.as_ref())
    }

    pub(super) fn insert(&self, credentials: &Credentials) {
        let tag = self.tag(credentials);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .iter()
            .any(|(user, known)| *user == credentials.user && known.as_ref() == tag.as_ref())
        {
            return;
        }
        if entries.len() == VERIFIED_CACHE_SIZE {
            entries.pop_front();
        }
        entries.push_back((credentials.user.clone(), tag));
    }
}
