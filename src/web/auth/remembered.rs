//! What bcrypt said about credentials checked under one loaded web config,
//! so a password is checked at most once while it is remembered: the right
//! ones (Prometheus' scrapes then cost a hash, not a bcrypt) and the wrong
//! ones (a repeated wrong guess costs nothing), in two bounded tables of
//! their own, so no number of fresh guesses can push out a verified
//! credential.
//!
//! Credentials are remembered as [`Tag`]s: an HMAC-SHA256 of user and
//! password under a key drawn when the config loads and never written
//! anywhere, so the tables hold no password, cannot be checked against
//! guesses offline, and mean nothing after a reload.

use super::credentials::Credentials;
use ring::hmac;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many right (user, password) pairs are remembered: a bound on pairs
/// in use (one per Prometheus, usually), since guesses never get in.
pub(super) const VERIFIED_SIZE: usize = 64;
/// How many wrong ones: at 32 bytes a tag, 128 KiB at most. A guesser who
/// repeats a guess within the last this many wrong ones is answered 401
/// without a bcrypt check.
pub(super) const REFUTED_SIZE: usize = 4096;

/// Credentials as the tables know them: user and password under this
/// config's key. Equal tags mean equal credentials (under one key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Tag([u8; 32]);

/// The key and both tables of one loaded web config.
pub(super) struct Remembered {
    /// Drawn at load, never leaves memory.
    key: hmac::Key,
    verified: Mutex<BoundedTags>,
    refuted: Mutex<BoundedTags>,
}

impl Remembered {
    pub(super) fn new() -> Result<Remembered, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| "cannot draw a random key for the credential cache".to_string())?;
        Ok(Remembered {
            key,
            verified: Mutex::new(BoundedTags::new(VERIFIED_SIZE)),
            refuted: Mutex::new(BoundedTags::new(REFUTED_SIZE)),
        })
    }

    pub(super) fn tag(&self, credentials: &Credentials) -> Tag {
        let mut context = hmac::Context::with_key(&self.key);
        // The length first, so ("ab", "c") and ("a", "bc") differ.
        context.update(&(credentials.user.len() as u64).to_le_bytes());
        context.update(credentials.user.as_bytes());
        context.update(credentials.password.as_bytes());
        let mut tag = [0; 32];
        tag.copy_from_slice(context.sign().as_ref());
        Tag(tag)
    }

    /// What bcrypt said about these credentials, if it is remembered:
    /// `Some(true)` only for credentials bcrypt verified.
    pub(super) fn outcome(&self, tag: Tag) -> Option<bool> {
        if lock(&self.verified).contains(tag) {
            Some(true)
        } else if lock(&self.refuted).contains(tag) {
            Some(false)
        } else {
            None
        }
    }

    /// Notes bcrypt's verdict, each in its own table.
    pub(super) fn remember(&self, tag: Tag, right: bool) {
        let table = if right { &self.verified } else { &self.refuted };
        lock(table).insert(tag);
    }

    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize) {
        (lock(&self.verified).len(), lock(&self.refuted).len())
    }
}

fn lock(table: &Mutex<BoundedTags>) -> std::sync::MutexGuard<'_, BoundedTags> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set of at most `capacity` tags; the oldest goes first.
struct BoundedTags {
    capacity: usize,
    members: HashSet<Tag>,
    /// Insertion order, for eviction.
    order: VecDeque<Tag>,
}

impl BoundedTags {
    fn new(capacity: usize) -> BoundedTags {
        BoundedTags {
            capacity,
            members: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, tag: Tag) -> bool {
        self.members.contains(&tag)
    }

    fn insert(&mut self, tag: Tag) {
        if !self.members.insert(tag) {
            return;
        }
        self.order.push_back(tag);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::credentials::header;
    use super::*;

    #[test]
    fn tags_differ_by_user_password_and_key() {
        let one = Remembered::new().unwrap();
        let other = Remembered::new().unwrap();
        let tag = one.tag(&header("alice", "secret"));
        assert_eq!(tag, one.tag(&header("alice", "secret")));
        assert_ne!(tag, one.tag(&header("alice", "secret2")));
        assert_ne!(tag, one.tag(&header("alic", "esecret")));
        // Another load draws another key.
        assert_ne!(tag, other.tag(&header("alice", "secret")));
    }

    #[test]
    fn both_tables_stay_bounded_and_the_oldest_goes_first() {
        let remembered = Remembered::new().unwrap();
        let tag = |n: usize| remembered.tag(&header("alice", &format!("p{n}")));
        for n in 0..VERIFIED_SIZE + 10 {
            remembered.remember(tag(n), true);
        }
        for n in 1000..1000 + REFUTED_SIZE + 10 {
            remembered.remember(tag(n), false);
        }
        assert_eq!(remembered.sizes(), (VERIFIED_SIZE, REFUTED_SIZE));
        assert_eq!(remembered.outcome(tag(0)), None);
        assert_eq!(remembered.outcome(tag(VERIFIED_SIZE + 9)), Some(true));
        assert_eq!(remembered.outcome(tag(1000)), None);
        assert_eq!(
            remembered.outcome(tag(1000 + REFUTED_SIZE + 9)),
            Some(false)
        );
    }

    #[test]
    fn fresh_guesses_never_push_out_a_verified_credential() {
        let remembered = Remembered::new().unwrap();
        let right = remembered.tag(&header("prometheus", "right"));
        remembered.remember(right, true);
        for n in 0..REFUTED_SIZE * 3 {
            let guess = remembered.tag(&header("prometheus", &format!("guess-{n}")));
            remembered.remember(guess, false);
        }
        assert_eq!(remembered.outcome(right), Some(true));
    }
}
