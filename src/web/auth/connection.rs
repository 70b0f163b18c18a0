//! What one connection has shown the bcrypt scheduler: the last credentials
//! it presented, and whether it has had a request refused or a password
//! wrong. A keep-alive connection is a source of its own inside its client
//! address: Prometheus' connection repeats one password and has no failures,
//! a guesser's presents a new one each time and collects 401s and 429s, even
//! when both come from one address.

use super::remembered::Tag;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Kept by the server for each connection while it is open.
#[derive(Default)]
pub struct ConnectionRecord {
    /// The tag of the last credentials presented here that needed a check.
    last_presented: Mutex<Option<Tag>>,
    /// Requests refused by the scheduler or answered 401 here.
    trouble: AtomicU32,
}

impl ConnectionRecord {
    pub fn new() -> ConnectionRecord {
        ConnectionRecord::default()
    }

    /// Notes that `tag` is presented now; true when it was the last one
    /// presented on this connection before.
    pub(super) fn present(&self, tag: Tag) -> bool {
        let mut last = self
            .last_presented
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.replace(tag) == Some(tag)
    }

    /// A request here was refused, or its password was wrong.
    pub(super) fn troubled(&self) {
        let _ = self
            .trouble
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            });
    }

    /// Has anything here been refused or wrong?
    pub(super) fn has_trouble(&self) -> bool {
        self.trouble.load(Ordering::Relaxed) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::credentials::header;
    use super::super::remembered::Remembered;
    use super::*;

    #[test]
    fn a_connection_knows_its_last_credentials_and_its_trouble() {
        let remembered = Remembered::new().unwrap();
        let (right, guess) = (
            remembered.tag(&header("prometheus", "right")),
            remembered.tag(&header("prometheus", "guess")),
        );
        let connection = ConnectionRecord::new();
        assert!(!connection.present(right));
        assert!(connection.present(right));
        assert!(!connection.present(guess));
        assert!(!connection.present(right));
        assert!(!connection.has_trouble());
        connection.troubled();
        assert!(connection.has_trouble());
    }
}
