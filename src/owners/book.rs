//! One owner for every socket of a collection, never a half one.
//!
//! [`OwnerBook::place`] runs the pid search ([`super::OwnerResolver`]) and
//! the description ([`super::ProcessDescriber`]) for all sockets at once and
//! decides, socket by socket, what the series say:
//!
//! - the process that holds it, described now: its pid, name and user (the
//!   process's real uid), and the exe, unit and container;
//! - else, when an earlier collection described its owner (the process
//!   exited, or passed the socket on, between the kernel's listing and our
//!   look at /proc), that owner, unchanged;
//! - else no pid or name, and `user` is the socket's own uid as sock_diag
//!   reports it (what `ss -e` shows), resolved to a name, so `user` is never
//!   empty for a socket the kernel reports with a uid. This is a socket no
//!   process we may read holds (no privilege to look, a process in a PID
//!   namespace we cannot see, one in flight over SCM_RIGHTS or held by the
//!   kernel), or one whose process exited while we looked. When the socket
//!   is new in this collection and the exporter could read every process's
//!   descriptors, the second is likely (UDP sockets churned under fast
//!   scrapes do this), so the placement asks to be confirmed: the collector
//!   asks the kernel once more whether the socket is still there and leaves
//!   it out of this collection if it is gone.

use super::{Owner, OwnerFaults, OwnerResolver, ProcessDescriber, Wanted};
use crate::kernel::procfs::ProcRoot;
use crate::model::Holder;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One socket whose owner is wanted.
#[derive(Clone, Copy, Debug)]
pub struct SocketRef<'a> {
    pub inode: u64,
    /// The uid sock_diag reports; `None` where the source does not say.
    pub uid: Option<u32>,
    /// Owning pids, lowest first, when the backend already found them
    /// (netstat2): the fd search is skipped.
    pub known_pids: Option<&'a [u32]>,
}

/// Where one socket's series come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Shared by every socket of the same process (34,000 listeners of two
    /// processes are two owners, not 34,000 copies of their strings).
    pub owner: Arc<Owner>,
    /// Report the socket only if the kernel still lists it (see the
    /// module doc).
    pub confirm: bool,
    /// Whether a process holds it (`crate::model::Holder`).
    pub holder: Holder,
}

/// The search, the description and what the last collection learnt.
pub struct OwnerBook {
    resolver: OwnerResolver,
    describer: ProcessDescriber,
    /// inode -> its described owner in the last collection.
    last: HashMap<u64, Arc<Owner>>,
    /// Inodes the last collection was asked about.
    seen: HashSet<u64>,
}

impl OwnerBook {
    pub fn new(proc_root: ProcRoot) -> OwnerBook {
        OwnerBook {
            resolver: OwnerResolver::new(proc_root.clone()),
            describer: ProcessDescriber::new(proc_root),
            last: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    /// The owner of each socket, in order (see the module doc). `likely`
    /// are pids to search first.
    pub fn place(
        &mut self,
        sockets: &[SocketRef<'_>],
        likely: &[u32],
        faults: &mut OwnerFaults,
    ) -> Vec<Placed> {
        self.place_listed(sockets, likely, faults, &mut |inodes| inodes.clone())
    }

    /// [`OwnerBook::place`], told by `still_listed` which inodes the kernel
    /// still lists (see [`OwnerResolver::find_pids_listed`]).
    pub fn place_listed(
        &mut self,
        sockets: &[SocketRef<'_>],
        likely: &[u32],
        faults: &mut OwnerFaults,
        still_listed: &mut dyn FnMut(&HashSet<u64>) -> HashSet<u64>,
    ) -> Vec<Placed> {
        let wanted: Vec<Wanted> = sockets
            .iter()
            .filter(|socket| socket.known_pids.is_none())
            .map(|socket| Wanted {
                inode: socket.inode,
                uid: socket.uid.unwrap_or(0),
            })
            .collect();
        let denied_before = faults.denied;
        let found = self
            .resolver
            .find_pids_listed(&wanted, likely, faults, still_listed);
        let can_see_all = faults.denied == denied_before;
        let pids: Vec<Option<u32>> = sockets
            .iter()
            .map(|socket| match socket.known_pids {
                Some(pids) => pids.first().copied(),
                None => found.get(&socket.inode).copied(),
            })
            .collect();
        // netstat2 finding no pid is the same fault as an unplaced inode.
        faults.unfound += sockets
            .iter()
            .filter(|socket| socket.known_pids.is_some_and(<[u32]>::is_empty))
            .count() as u64;
        let mut unique: Vec<u32> = pids.iter().flatten().copied().collect();
        unique.sort_unstable();
        unique.dedup();
        let described: HashMap<u32, Arc<Owner>> = self
            .describer
            .describe(&unique, faults)
            .into_iter()
            .map(|(pid, owner)| (pid, Arc::new(owner)))
            .collect();
        let mut placed = Vec::with_capacity(sockets.len());
        let mut last = HashMap::with_capacity(sockets.len());
        for (socket, pid) in sockets.iter().zip(pids) {
            // Inode 0: the backend does not know inodes (netstat2 off Linux).
            let remembered = (socket.inode != 0)
                .then(|| self.last.get(&socket.inode))
                .flatten();
            let holder = match socket.known_pids {
                Some(_) if pid.is_some() => Holder::Process,
                Some(_) => Holder::Unknown,
                None => self.resolver.holder(socket.inode, pid.is_some()),
            };
            let placed_now = match pid.and_then(|pid| described.get(&pid)) {
                Some(owner) => Placed {
                    owner: Arc::clone(owner),
                    confirm: false,
                    holder,
                },
                None => match remembered {
                    Some(owner) => Placed {
                        owner: Arc::clone(owner),
                        confirm: false,
                        holder: Holder::Process,
                    },
                    None => Placed {
                        owner: Arc::new(self.socket_only(socket, pid)),
                        confirm: can_see_all
                            && socket.inode != 0
                            && !self.seen.contains(&socket.inode),
                        holder,
                    },
                },
            };
            let owner = &placed_now.owner;
            if socket.inode != 0 && owner.pid.is_some() && !owner.process.is_empty() {
                last.insert(socket.inode, Arc::clone(owner));
            }
            placed.push(placed_now);
        }
        self.last = last;
        self.seen = sockets.iter().map(|socket| socket.inode).collect();
        placed
    }

    /// What the socket itself says: its uid as a user (`pid` when a
    /// process was found but could not be described).
    fn socket_only(&mut self, socket: &SocketRef<'_>, pid: Option<u32>) -> Owner {
        Owner {
            pid,
            user: socket
                .uid
                .map(|uid| self.describer.user_name(uid))
                .unwrap_or_default(),
            uid: socket.uid,
            ..Owner::default()
        }
    }

    /// Owners' `exe_sha256` from the shared hash cache.
    pub fn with_exe_hashes(mut self, hashes: super::ExeHashes) -> OwnerBook {
        self.describer.set_exe_hashes(hashes);
        self
    }

    /// The user's name for a uid (see [`ProcessDescriber::user_name`]).
    pub fn user_name(&mut self, uid: u32) -> String {
        self.describer.user_name(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        ProcRoot::default()
            .fd_socket_inode(std::process::id(), fd.as_raw_fd() as u32)
            .unwrap()
    }

    /// Waits (10 s at most) until exactly `wanted` hold socket `inode`.
    fn wait_for_holders(inode: u64, wanted: &[u32]) {
        let link = format!("socket:[{inode}]");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut holders: Vec<u32> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .filter(|pid: &u32| {
                    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                        fds.flatten().any(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|target| target.as_os_str() == link.as_str())
                        })
                    })
                })
                .collect();
            holders.sort_unstable();
            if holders == wanted || std::time::Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_held_socket_gets_its_process_and_keeps_it_after_it_is_gone() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = inode_of(&socket);
        let me = std::process::id();
        let uid = rustix::process::getuid().as_raw();
        let mut book = OwnerBook::new(ProcRoot::default());
        let mut faults = OwnerFaults::default();
        let asked = [SocketRef {
            inode,
            uid: Some(uid),
            known_pids: None,
        }];
        // A child another test thread is forking holds a copy of every
        // descriptor until it execs: wait for this process to be the only
        // holder, as it is outside tests.
        wait_for_holders(inode, &[me]);
        let first = book.place(&asked, &[], &mut faults);
        let owner = first[0].owner.clone();
        assert_eq!(owner.pid, Some(me));
        assert!(!owner.user.is_empty() && !owner.process.is_empty());
        assert!(!first[0].confirm);
        // The kernel listed it, then its holder let go before the fd walk:
        // the last known owner stands.
        drop(socket);
        wait_for_holders(inode, &[]);
        let second = book.place(&asked, &[], &mut faults);
        assert_eq!(
            second,
            [Placed {
                owner,
                confirm: false,
                holder: Holder::Process,
            }]
        );
    }

    #[test]
    fn a_socket_nobody_holds_shows_its_own_uid_and_asks_to_be_confirmed_once() {
        let mut book = OwnerBook::new(ProcRoot::default());
        let mut faults = OwnerFaults::default();
        let asked = [SocketRef {
            inode: u64::MAX - 7,
            uid: Some(0),
            known_pids: None,
        }];
        let first = book.place(&asked, &[], &mut faults);
        let owner = &first[0].owner;
        assert_eq!((owner.pid, owner.user.as_str()), (None, "root"));
        assert_eq!(owner.process, "");
        // Only a walk that could read every process proves it unheld.
        let root = rustix::process::geteuid().is_root();
        assert_eq!(first[0].confirm, root && faults.denied == 0);
        let second = book.place(&asked, &[], &mut faults);
        assert_eq!(second[0].owner, first[0].owner);
        assert!(!second[0].confirm, "seen before: no second check");
    }
}
