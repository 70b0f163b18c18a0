//! Which process holds a socket: the inode-to-pid search.
//!
//! The kernel reports a socket's inode, not its process; the only link is a
//! `/proc/PID/fd/N` symlink reading `socket:[INODE]`. Walking every fd of
//! every process costs time proportional to all open files on the host, so
//! [`OwnerResolver`] remembers where it found each inode and, on later
//! collections, checks that one symlink again (one readlink per listener).
//! It walks /proc only for inodes it has never placed, and makes that walk
//! cheap: processes running as the socket's uid are searched first, and the
//! walk stops as soon as every wanted inode is found.
//!
//! A socket shared by many processes (a pre-fork server's listener, inherited
//! by every worker) is reported once, under the lowest pid that holds it:
//! /proc lists pids in ascending order and the walk stops at the first
//! holder, which for pre-fork servers is normally the master process.
//!
//! An inode no walk could place (a process we may not inspect, or one that
//! received the socket over SCM_RIGHTS after our walk) is retried with
//! backoff: after 1 s, then 2 s, 4 s, ... up to 60 s, so a socket handed to
//! another process is placed within seconds without walking /proc on every
//! scrape for sockets that stay hidden.
//!
//! Layout: this file finds pids; [`process`] names them (name, user);
//! [`cgroup`] says which container and pod they run in; [`exe_hash`]
//! hashes their executables off the scrape path.

pub mod cgroup;
pub mod exe_hash;
pub mod process;
pub mod provenance;

pub use cgroup::Attribution;
pub use exe_hash::ExeHashes;
pub use process::{Owner, ProcessDescriber};

use crate::kernel::procfs::ProcRoot;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// First wait before an unplaced inode is searched for again.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between searches for an inode that stays unplaced.
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// What went wrong while placing sockets, for the error counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerFaults {
    /// Sockets whose process could not be found.
    pub unfound: u64,
    /// Processes whose fd table we were not allowed to read.
    pub denied: u64,
    /// Pids found holding a socket whose details vanished before we read them.
    pub vanished: u64,
}

/// One socket to place: its inode and the uid that created it.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub inode: u64,
    pub uid: u32,
}

/// When an unplaced inode may be searched for again.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    next_try: Instant,
    wait: Duration,
}

/// Remembers inode locations between collections.
pub struct OwnerResolver {
    proc_root: ProcRoot,
    /// inode -> (pid, fd) where an earlier collection found it.
    places: HashMap<u64, (u32, u32)>,
    /// inode -> when to search again, for inodes no walk could place.
    unfound: HashMap<u64, Backoff>,
}

impl OwnerResolver {
    pub fn new(proc_root: ProcRoot) -> OwnerResolver {
        OwnerResolver {
            proc_root,
            places: HashMap::new(),
            unfound: HashMap::new(),
        }
    }

    /// Finds the pid holding each wanted inode (the lowest one, see the
    /// module doc). Inodes that cannot be placed are absent from the answer.
    /// `likely` are pids to search first (processes that just called
    /// `listen()`, from kernel events).
    pub fn find_pids(
        &mut self,
        wanted: &[Wanted],
        likely: &[u32],
        faults: &mut OwnerFaults,
    ) -> HashMap<u64, u32> {
        let now = Instant::now();
        let (mut found, missing) = self.check_remembered(wanted, now);
        if !missing.is_empty() {
            let uids: HashSet<u32> = wanted
                .iter()
                .filter(|socket| missing.contains(&socket.inode))
                .map(|socket| socket.uid)
                .collect();
            for (inode, place) in self.walk(&missing, &uids, likely, faults) {
                self.places.insert(inode, place);
                found.insert(inode, place.0);
            }
        }
        self.forget_closed(wanted);
        self.note_unfound(wanted, &found, now, faults);
        found
    }

    /// Confirms remembered places with one readlink each; returns what was
    /// confirmed and the inodes due for a /proc walk.
    fn check_remembered(
        &self,
        wanted: &[Wanted],
        now: Instant,
    ) -> (HashMap<u64, u32>, HashSet<u64>) {
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing = HashSet::new();
        for socket in wanted {
            if let Some(&(pid, fd)) = self.places.get(&socket.inode)
                && self.proc_root.fd_socket_inode(pid, fd) == Some(socket.inode)
            {
                found.insert(socket.inode, pid);
                continue;
            }
            let waiting = self
                .unfound
                .get(&socket.inode)
                .is_some_and(|backoff| now < backoff.next_try);
            if !waiting {
                missing.insert(socket.inode);
            }
        }
        (found, missing)
    }

    /// Forgets what no longer listens, so the maps stay as small as the table.
    fn forget_closed(&mut self, wanted: &[Wanted]) {
        let current: HashSet<u64> = wanted.iter().map(|socket| socket.inode).collect();
        self.places.retain(|inode, _| current.contains(inode));
        self.unfound.retain(|inode, _| current.contains(inode));
    }

    /// Counts unplaced inodes and schedules their next search.
    fn note_unfound(
        &mut self,
        wanted: &[Wanted],
        found: &HashMap<u64, u32>,
        now: Instant,
        faults: &mut OwnerFaults,
    ) {
        for socket in wanted {
            if found.contains_key(&socket.inode) {
                self.unfound.remove(&socket.inode);
                continue;
            }
            faults.unfound += 1;
            let backoff = self.unfound.entry(socket.inode).or_insert(Backoff {
                next_try: now,
                wait: FIRST_RETRY / 2,
            });
            if now >= backoff.next_try {
                backoff.wait = (backoff.wait * 2).min(LONGEST_RETRY);
                backoff.next_try = now + backoff.wait;
            }
        }
    }

    /// Searches /proc for the missing inodes: first the `likely` pids, then
    /// the processes running as one of `uids`, then the rest, stopping once
    /// all are found.
    fn walk(
        &self,
        missing: &HashSet<u64>,
        uids: &HashSet<u32>,
        likely: &[u32],
        faults: &mut OwnerFaults,
    ) -> HashMap<u64, (u32, u32)> {
        let mut places = HashMap::new();
        let Ok(mut pids) = self.proc_root.pids_with_uid() else {
            return places;
        };
        // Likely pids, then same-uid processes, each group in ascending pid
        // order (a likely pid is a thread group leader that called listen();
        // a pre-fork master still sorts first among same-uid holders).
        pids.sort_by_key(|&(pid, uid)| (!likely.contains(&pid), !uids.contains(&uid), pid));
        for (pid, _) in pids {
            match self.proc_root.socket_fds(pid) {
                Ok(sockets) => {
                    for (fd, inode) in sockets {
                        if missing.contains(&inode) {
                            places.entry(inode).or_insert((pid, fd));
                        }
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    faults.denied += 1;
                }
                Err(_) => {} // the process exited while we looked
            }
            if places.len() == missing.len() {
                break;
            }
        }
        places
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_this_process_and_remembers_the_place() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let root = ProcRoot::default();
        let me = std::process::id();
        let inode = root
            .fd_socket_inode(me, listener.as_raw_fd() as u32)
            .unwrap();
        let mut resolver = OwnerResolver::new(root);
        let mut faults = OwnerFaults::default();
        let wanted = [Wanted {
            inode,
            uid: rustix::process::geteuid().as_raw(),
        }];
        assert_eq!(
            resolver.find_pids(&wanted, &[], &mut faults).get(&inode),
            Some(&me)
        );
        assert_eq!(resolver.places.get(&inode).map(|p| p.0), Some(me));
        assert_eq!(
            resolver.find_pids(&wanted, &[], &mut faults).get(&inode),
            Some(&me)
        );
        assert_eq!(faults.unfound, 0);
    }

    #[test]
    fn an_unplaced_inode_is_counted_and_retried_with_backoff() {
        let mut resolver = OwnerResolver::new(ProcRoot::default());
        let mut faults = OwnerFaults::default();
        let wanted = [Wanted {
            inode: u64::MAX,
            uid: 0,
        }];
        assert!(resolver.find_pids(&wanted, &[], &mut faults).is_empty());
        assert_eq!(faults.unfound, 1);
        let first = resolver.unfound[&u64::MAX];
        assert_eq!(first.wait, FIRST_RETRY);
        // Searching again before the wait is over does not walk or move it.
        resolver.find_pids(&wanted, &[], &mut faults);
        assert_eq!(resolver.unfound[&u64::MAX].next_try, first.next_try);
        assert_eq!(faults.unfound, 2);
    }
}
