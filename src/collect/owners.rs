//! Who owns what one collection found: the pid of each listener and
//! packet/raw socket, and the description of each pid, from one search for
//! all inodes (the resolver forgets places of inodes it is not asked
//! about). The search and the descriptions keep their caches between
//! collections, behind one lock.

use crate::model::Holder;
use crate::owners::{Owner, OwnerFaults, OwnerResolver, ProcessDescriber, Wanted};
use crate::sockets::{Listener, SeenRawSocket};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the owner search found for one collection, in the order asked.
pub struct Found {
    /// The pid of each listener, `None` where no process holds it (or none
    /// could be seen).
    pub listener_pids: Vec<Option<u32>>,
    /// Whether a process holds each listener (`model/holder.rs`).
    pub holders: Vec<Holder>,
    /// The pid of each packet/raw socket.
    pub raw_pids: Vec<Option<u32>>,
    /// Each pid's description.
    pub described: HashMap<u32, Owner>,
    pub faults: OwnerFaults,
}

/// The owner search and description, with their caches.
pub struct OwnerSearch {
    inner: Mutex<(OwnerResolver, ProcessDescriber)>,
}

impl OwnerSearch {
    pub fn new(resolver: OwnerResolver, describer: ProcessDescriber) -> OwnerSearch {
        OwnerSearch {
            inner: Mutex::new((resolver, describer)),
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
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (resolver, describer) = &mut *inner;
        let mut faults = OwnerFaults::default();
        // Backends that already know the pids (netstat2) skip the fd search.
        let wanted: Vec<Wanted> = listeners
            .iter()
            .filter(|l| l.known_pids.is_none())
            .map(|l| Wanted {
                inode: l.inode,
                uid: l.uid,
            })
            .chain(raw_sockets.iter().map(|seen| Wanted {
                inode: seen.found.socket.inode,
                uid: seen.found.socket.uid.unwrap_or(0),
            }))
            .collect();
        let found = resolver.find_pids(&wanted, likely, &mut faults);
        // Lowest pid first, like the fd search (see owners/mod.rs).
        let listener_pids: Vec<Option<u32>> = listeners
            .iter()
            .map(|listener| match &listener.known_pids {
                Some(pids) => pids.first().copied(),
                None => found.get(&listener.inode).copied(),
            })
            .collect();
        let holders: Vec<Holder> = listeners
            .iter()
            .zip(&listener_pids)
            .map(|(listener, pid)| match &listener.known_pids {
                Some(_) if pid.is_some() => Holder::Process,
                Some(_) => Holder::Unknown,
                None => resolver.holder(listener.inode, pid.is_some()),
            })
            .collect();
        let raw_pids: Vec<Option<u32>> = raw_sockets
            .iter()
            .map(|seen| found.get(&seen.found.socket.inode).copied())
            .collect();
        // netstat2 finding no pid is the same fault as an unplaced inode.
        faults.unfound += listeners
            .iter()
            .filter(|l| l.known_pids.as_ref().is_some_and(Vec::is_empty))
            .count() as u64;
        let mut unique: Vec<u32> = listener_pids
            .iter()
            .chain(&raw_pids)
            .flatten()
            .copied()
            .collect();
        unique.sort_unstable();
        unique.dedup();
        let described = describer.describe(&unique, &mut faults);
        Found {
            listener_pids,
            holders,
            raw_pids,
            described,
            faults,
        }
    }
}
