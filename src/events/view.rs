//! What the event side learns and lets collection read: a generation that
//! moves with every listen transition on a watched port (or lost events),
//! the threads that just called `listen()`, and the namespaces learnt from
//! listening sockets (which only a socket may hold). Written only by the event
//! handlers here; collection sees it through `crate::sockets::ChangeHints`.

use crate::sockets::ChangeHints;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many recent listen() callers are remembered.
const RECENT_LISTENERS: usize = 64;

/// The event side's facts for collection.
#[derive(Default)]
pub struct Changes {
    generation: AtomicU64,
    watching: AtomicBool,
    /// (pid, tid) of recent listen() calls, newest last, bounded.
    recent: Mutex<VecDeque<(u32, u32)>>,
    /// Namespaces the listen capture learnt from sockets.
    learnt: std::sync::OnceLock<crate::kernel::events::LearntNamespaces>,
}

impl Changes {
    /// A transition into or out of LISTEN was seen (or events were lost).
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether a capture is running; starting or stopping counts as a change.
    pub fn set_watching(&self, watching: bool) {
        self.changed();
        self.watching.store(watching, Ordering::SeqCst);
    }

    /// The capture's namespaces learnt from sockets, set once at start.
    pub fn set_learnt_namespaces(&self, learnt: crate::kernel::events::LearntNamespaces) {
        let _ = self.learnt.set(learnt);
    }

    /// A thread called listen() on a watched port.
    pub fn note_listener(&self, pid: u32, tid: u32) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_LISTENERS {
            recent.pop_front();
        }
        recent.push_back((pid, tid));
    }
}

impl ChangeHints for Changes {
    fn generation(&self) -> Option<u64> {
        self.watching
            .load(Ordering::SeqCst)
            .then(|| self.generation.load(Ordering::SeqCst))
    }

    fn recent_listeners(&self) -> Vec<(u32, u32)> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().copied().collect()
    }

    fn learnt_namespaces(&self) -> Vec<(u64, std::sync::Arc<std::os::fd::OwnedFd>)> {
        self.learnt
            .get()
            .map(|learnt| learnt.list())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_generation_without_a_capture_and_recent_listeners_are_bounded() {
        let changes = Changes::default();
        assert_eq!(changes.generation(), None);
        changes.set_watching(true);
        let before = changes.generation().unwrap();
        changes.changed();
        assert_eq!(changes.generation(), Some(before + 1));
        for pid in 0..100 {
            changes.note_listener(pid, pid);
        }
        let recent = changes.recent_listeners();
        assert_eq!(recent.len(), RECENT_LISTENERS);
        assert_eq!(recent[0], (99, 99));
    }
}
