//! Finding network namespaces.
//!
//! The distinct namespaces are found from `/proc/*/ns/net` (every process
//! names its own) and the bind mounts under `--path.netns` (`ip netns add`
//! makes those, and such a namespace may hold no process at all).
//!
//! Reading `/proc/PID/ns/net` costs several microseconds a process (the
//! kernel checks ptrace access each time): 2.4 ms for 380 processes here,
//! more than the whole socket dump. [`Discovery`] therefore remembers each
//! pid's namespace and reads the link only for pids it has not seen; a new
//! container's first process is a new pid, so its namespace is found at the
//! next collection. An existing process that moves itself into a new
//! namespace (`unshare`, `setns`) is caught by a full re-read every
//! [`FULL_REREAD_INTERVAL`], which also reads every thread's link (a thread
//! may `unshare` alone), and named namespaces by their mount, which is
//! checked every time. Between full re-reads, the kernel's listen events
//! name the threads that just called `listen()` ([`Discovery::namespaces`]'s
//! `hints`): their namespaces are read at once, and those threads are
//! re-checked at every collection while they live.
//!
//! A namespace may hold no process and have no mount at all: a process
//! made it, listened, and went back to its first namespace; only the
//! listening socket keeps it. The listen events learn it from the socket
//! and hand over a descriptor of it ([`Discovery::learn`]), which is found
//! as `/proc/self/fd/N` for as long as that socket listens.

use crate::kernel::procfs::ProcRoot;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A namespace other than ours, and a path that opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub inode: u64,
    pub path: PathBuf,
}

/// How often every pid's namespace link is read again, not just new pids'.
pub const FULL_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// Finds namespaces, remembering pid -> namespace between calls.
pub struct Discovery {
    proc_root: ProcRoot,
    /// The exporter's own namespace, which is never listed.
    own: u64,
    /// pid -> namespace inode, as last read.
    namespace_of: HashMap<u32, u64>,
    /// When every link was last read afresh.
    last_full_read: Option<Instant>,
    /// (pid, tid) -> namespace of threads whose namespace differs from
    /// their process's: found by the full re-read or named by listen events.
    thread_namespaces: HashMap<(u32, u32), u64>,
    /// Namespaces learnt from listening sockets, with our descriptor of
    /// each (held here until the next `learn`, so `/proc/self/fd/N` stays
    /// that namespace while a collection opens it).
    learnt: Vec<(u64, Arc<OwnedFd>)>,
}

impl Discovery {
    pub fn new(proc_root: ProcRoot, own: u64) -> Discovery {
        Discovery {
            proc_root,
            own,
            namespace_of: HashMap::new(),
            last_full_read: None,
            thread_namespaces: HashMap::new(),
            learnt: Vec::new(),
        }
    }

    /// Replaces the namespaces learnt from listening sockets.
    pub fn learn(&mut self, learnt: Vec<(u64, Arc<OwnedFd>)>) {
        self.learnt = learnt;
    }

    /// Every network namespace except the exporter's own, once each, in
    /// inode order. `hints` are (pid, tid) of threads that just called
    /// `listen()`: their namespaces are looked at now.
    pub fn namespaces(&mut self, hints: &[(u32, u32)]) -> Vec<Namespace> {
        let full = self
            .last_full_read
            .is_none_or(|at| at.elapsed() >= FULL_REREAD_INTERVAL);
        if full {
            self.namespace_of.clear();
            self.last_full_read = Some(Instant::now());
        }
        self.refresh_pids();
        if full {
            self.read_all_threads();
        }
        self.refresh_threads(hints);
        let mut found: BTreeMap<u64, PathBuf> =
            self.proc_root.named_namespaces().into_iter().collect();
        // The lowest pid of each namespace opens it.
        let mut lowest: BTreeMap<u64, u32> = BTreeMap::new();
        for (&pid, &inode) in &self.namespace_of {
            let entry = lowest.entry(inode).or_insert(pid);
            *entry = (*entry).min(pid);
        }
        for (inode, pid) in lowest {
            found
                .entry(inode)
                .or_insert_with(|| self.proc_root.pid_path(pid, "ns/net"));
        }
        for (&(pid, tid), &inode) in &self.thread_namespaces {
            found
                .entry(inode)
                .or_insert_with(|| self.proc_root.pid_path(pid, &format!("task/{tid}/ns/net")));
        }
        for (inode, fd) in &self.learnt {
            found
                .entry(*inode)
                .or_insert_with(|| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())));
        }
        found.remove(&self.own);
        found
            .into_iter()
            .map(|(inode, path)| Namespace { inode, path })
            .collect()
    }

    /// Reads every thread's link, keeping threads not in their process's
    /// namespace (the full re-read; a few ms on a busy host).
    fn read_all_threads(&mut self) {
        self.thread_namespaces.clear();
        for (&pid, &process_namespace) in &self.namespace_of {
            for tid in self.proc_root.threads(pid) {
                if tid == pid {
                    continue;
                }
                if let Some(inode) = self.proc_root.thread_net_namespace(pid, tid)
                    && inode != process_namespace
                {
                    self.thread_namespaces.insert((pid, tid), inode);
                }
            }
        }
    }

    /// Adds the hinted threads and re-reads every remembered thread's link
    /// (a thread that exited or went back is forgotten).
    fn refresh_threads(&mut self, hints: &[(u32, u32)]) {
        for &hint in hints {
            self.thread_namespaces.entry(hint).or_insert(0);
        }
        let proc_root = &self.proc_root;
        let namespace_of = &self.namespace_of;
        self.thread_namespaces.retain(|&(pid, tid), inode| {
            match proc_root.thread_net_namespace(pid, tid) {
                Some(now) if Some(&now) != namespace_of.get(&pid) => {
                    *inode = now;
                    true
                }
                _ => false,
            }
        });
    }

    /// Reads the namespace link of every pid not seen before; forgets pids
    /// that exited.
    fn refresh_pids(&mut self) {
        let pids = self.proc_root.pids().unwrap_or_default();
        let mut live = HashMap::with_capacity(pids.len());
        for pid in pids {
            let known = self.namespace_of.get(&pid).copied();
            if let Some(inode) = known.or_else(|| self.proc_root.net_namespace(pid)) {
                live.insert(pid, inode);
            }
        }
        self.namespace_of = live;
    }
}

/// Every network namespace except `own`, read afresh (no memory).
pub fn discover(proc_root: &ProcRoot, own: u64) -> Vec<Namespace> {
    Discovery::new(proc_root.clone(), own).namespaces(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_discovery_matches_a_fresh_one() {
        let root = ProcRoot::default();
        let own = root.own_net_namespace().unwrap();
        let mut discovery = Discovery::new(root.clone(), own);
        let first = discovery.namespaces(&[]);
        let inodes = |list: &[Namespace]| list.iter().map(|ns| ns.inode).collect::<Vec<_>>();
        assert_eq!(inodes(&discovery.namespaces(&[])), inodes(&first));
        assert_eq!(inodes(&discover(&root, own)), inodes(&first));
    }

    #[test]
    fn discovery_skips_our_own_namespace() {
        let root = ProcRoot::default();
        let own = root.own_net_namespace().unwrap();
        assert!(discover(&root, own).iter().all(|ns| ns.inode != own));
    }
}
