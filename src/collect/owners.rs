//! Who owns what one collection found: one placement (owner, holder, and
//! whether it needs confirming) for each listener and packet/raw socket,
//! from one search for all inodes (the resolver forgets places of inodes it
//! is not asked about). The search, the descriptions and the last
//! collection's owners (`crate::owners::book`) keep between collections,
//! behind one lock.

use crate::owners::{OwnerBook, OwnerFaults, Placed, SocketRef};
use crate::sockets::{Listener, SeenRawSocket};
use std::sync::Mutex;

/// What the owner search found for one collection, in the order asked.
pub struct Found {
    /// Each listener's placement.
    pub listeners: Vec<Placed>,
    /// Each packet/raw socket's placement.
    pub raw_sockets: Vec<Placed>,
    pub faults: OwnerFaults,
}

/// The owner search and description, with their caches.
pub struct OwnerSearch {
    inner: Mutex<OwnerBook>,
}

impl OwnerSearch {
    pub fn new(book: OwnerBook) -> OwnerSearch {
        OwnerSearch {
            inner: Mutex::new(book),
        }
    }

    /// Finds the owners of `listeners` and `raw_sockets`; `likely` pids
    /// (recent listen() callers) are searched first.
    pub fn find(
        &self,
        listeners: &[Listener],
        raw_sockets: &[SeenRawSocket],
        likely: &[u32],
    ) -> Found {
        let mut faults = OwnerFaults::default();
        let sockets: Vec<SocketRef<'_>> = listeners
            .iter()
            .map(|l| SocketRef {
                inode: l.inode,
                // Off Linux netstat2 knows no socket uid.
                uid: cfg!(target_os = "linux").then_some(l.uid),
                known_pids: l.known_pids.as_deref(),
            })
            .chain(raw_sockets.iter().map(|seen| SocketRef {
                inode: seen.found.socket.inode,
                uid: seen.found.socket.uid,
                known_pids: None,
            }))
            .collect();
        let mut placed = self.inner.lock().unwrap_or_else(|p| p.into_inner()).place(
            &sockets,
            likely,
            &mut faults,
        );
        let raw = placed.split_off(listeners.len());
        Found {
            listeners: placed,
            raw_sockets: raw,
            faults,
        }
    }
}
