//! Who owns what one collection found: one placement (owner, holder, and
//! whether it needs confirming) for each listener and packet/raw socket,
//! from one search for all inodes (the resolver forgets places of inodes it
//! is not asked about). The search, the descriptions and the last
//! collection's owners (`crate::owners::book`) keep between collections,
//! behind one lock.

use crate::owners::{OwnerBook, OwnerFaults, Placed, SocketRef};
use crate::sockets::{Listener, Recheck, SeenRawSocket};
use std::collections::{HashMap, HashSet};
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
    /// (recent listen() callers) are searched first. `still_listed` asks
    /// the kernel which sockets are still there (a socket already gone is
    /// not searched for in every process).
    pub fn find(
        &self,
        listeners: &[Listener],
        raw_sockets: &[SeenRawSocket],
        likely: &[u32],
        still_listed: &dyn Fn(&[Recheck]) -> HashSet<u64>,
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
        let rechecks: HashMap<u64, Recheck> = listeners
            .iter()
            .map(|l| Recheck {
                netns: l.netns,
                transport: Some(l.transport),
                inode: l.inode,
            })
            .chain(raw_sockets.iter().map(|seen| Recheck {
                netns: seen.netns,
                transport: None,
                inode: seen.found.socket.inode,
            }))
            .map(|recheck| (recheck.inode, recheck))
            .collect();
        let mut ask = |inodes: &HashSet<u64>| {
            let asked: Vec<Recheck> = inodes
                .iter()
                .filter_map(|i| rechecks.get(i).copied())
                .collect();
            still_listed(&asked)
        };
        let mut placed = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .place_listed(&sockets, likely, &mut faults, &mut ask);
        let raw = placed.split_off(listeners.len());
        Found {
            listeners: placed,
            raw_sockets: raw,
            faults,
        }
    }
}
