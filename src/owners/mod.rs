//! Which process holds a socket: the inode-to-pid search.
//!
//! The kernel reports a socket's inode, not its process; the only link is a
//! `/proc/PID/fd/N` symlink reading `socket:[INODE]`. Walking every fd of
//! every process costs time proportional to all open files on the host, so
//! [`OwnerResolver`] remembers where it found each inode and, on later
//! collections, checks that one symlink again (one readlink per listener).
//! Above [`CONFIRM_ALL_UP_TO`] remembered sockets (a hostile or broken
//! workload's tens of thousands of listeners, where those readlinks were
//! half of a scrape) a collection re-reads a quarter of them, in turns, and
//! keeps the rest whose process still exists: a socket handed to another
//! process while its first holder lives on may then name the old holder
//! for up to [`CONFIRM_TURNS`] - 1 more collections.
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
//! The search also says whether a socket it could not place has no holder
//! at all ([`OwnerResolver::holder`], the `holder` label, see
//! `model/holder.rs`). That is claimed only when a walk read the fd table
//! of every process, /proc showing the initial pid namespace, with no
//! permission refused, and then a second walk over every thread's fd table
//! (a thread can `unshare(CLONE_FILES)` and hold files its process does
//! not; the second walk, on a fresh pid list, also catches a socket handed
//! from one process to another while the first walk ran) found it nowhere.
//! The second walk runs only for inodes the first could not place, at the
//! retry cadence below, so kernel sockets cost one pair of walks a minute.
//!
//! Layout: this file finds pids; [`process`] names them (name, user);
//! [`cgroup`] says which container and pod they run in; [`provenance`]
//! their executable, parent and unit; [`escape`] writes kernel bytes as
//! label text; [`book`] puts it together, one whole owner per socket (or
//! the last one known, when a process exits while we look).
//! [`exe_hash`] hashes their executables off the scrape path.

pub mod book;
pub mod cgroup;
pub mod escape;
pub mod exe_hash;
pub mod process;
pub mod provenance;

pub use book::{OwnerBook, Placed, SocketRef};
pub use cgroup::Attribution;
pub use exe_hash::ExeHashes;
pub use process::{Owner, ProcessDescriber};

use crate::kernel::procfs::ProcRoot;
use crate::model::Holder;
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
    /// The last search for it read every fd table and found it nowhere.
    unheld: bool,
}

/// Where a socket was found: the process, and the task whose fd table
/// holds it (the process itself, unless a thread has its own table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    pid: u32,
    task: u32,
    fd: u32,
}

/// What one walk found, and whether it read every fd table it should have.
struct Walked {
    places: HashMap<u64, Place>,
    covered: bool,
}

/// Remembered sockets re-read at every collection, at most; above this,
/// in [`CONFIRM_TURNS`] turns.
pub const CONFIRM_ALL_UP_TO: usize = 4096;
/// Collections over which every remembered socket is re-read once, above
/// [`CONFIRM_ALL_UP_TO`].
pub const CONFIRM_TURNS: u64 = 4;

/// Remembers inode locations between collections.
pub struct OwnerResolver {
    proc_root: ProcRoot,
    /// Collections so far: whose turn it is to be re-read, above
    /// `confirm_all_up_to`.
    turn: u64,
    /// [`CONFIRM_ALL_UP_TO`] (smaller in tests).
    confirm_all_up_to: usize,
    /// The exporter's own pid, searched last: describing a new listener
    /// may hold a borrowed copy of another process's socket for a moment
    /// (`kernel::events::held_socket`), and that copy is not an owner.
    own_pid: u32,
    /// inode -> where an earlier collection found it.
    places: HashMap<u64, Place>,
    /// inode -> when to search again, for inodes no walk could place.
    unfound: HashMap<u64, Backoff>,
}

impl OwnerResolver {
    pub fn new(proc_root: ProcRoot) -> OwnerResolver {
        OwnerResolver {
            proc_root,
            turn: 0,
            confirm_all_up_to: CONFIRM_ALL_UP_TO,
            own_pid: std::process::id(),
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
        self.find_pids_listed(wanted, likely, faults, &mut |inodes| inodes.clone())
    }

    /// [`OwnerResolver::find_pids`], told by `still_listed` which of some
    /// inodes the kernel still lists. What the `likely` pids do not hold is
    /// walked for only if it is still there: a listener that lived for
    /// microseconds (a storm of them comes from one process, a likely one)
    /// is not worth reading every process's descriptors, scrape after
    /// scrape; during such a storm those walks were most of a scrape.
    pub fn find_pids_listed(
        &mut self,
        wanted: &[Wanted],
        likely: &[u32],
        faults: &mut OwnerFaults,
        still_listed: &mut dyn FnMut(&HashSet<u64>) -> HashSet<u64>,
    ) -> HashMap<u64, u32> {
        let now = Instant::now();
        self.turn = self.turn.wrapping_add(1);
        let (mut found, missing) = self.check_remembered(wanted, now);
        if !missing.is_empty() {
            let uids: HashSet<u32> = wanted
                .iter()
                .filter(|socket| missing.contains(&socket.inode))
                .map(|socket| socket.uid)
                .collect();
            let mut places = self.walk_pids(likely, &missing);
            let mut searched: HashSet<u64> = places.keys().copied().collect();
            let unplaced: HashSet<u64> = missing
                .iter()
                .filter(|inode| !places.contains_key(inode))
                .copied()
                .collect();
            let mut still = if unplaced.is_empty() {
                unplaced
            } else {
                still_listed(&unplaced)
            };
            // Listed but in no likely pid's table: a close in progress (the
            // descriptor goes first, the socket a moment later) looks just
            // so. Asked once more, it is gone, and no walk is needed.
            if !still.is_empty() && !likely.is_empty() {
                still = still_listed(&still);
            }
            let mut covered = false;
            if !still.is_empty() {
                let walked = self.walk(&still, &uids, likely, faults);
                covered = walked.covered;
                places.extend(walked.places);
                searched.extend(&still);
                if covered && still.iter().any(|inode| !places.contains_key(inode)) {
                    let left: HashSet<u64> = still
                        .iter()
                        .filter(|inode| !places.contains_key(inode))
                        .copied()
                        .collect();
                    // In no process's table: a close still in progress
                    // (its process preempted between dropping the
                    // descriptor and releasing the socket) is gone by now,
                    // and walking every thread's table (tens of ms on a
                    // busy host) would find nothing.
                    let left = still_listed(&left);
                    if !left.is_empty() {
                        let tasks = self.walk_tasks(&left);
                        covered = tasks.covered;
                        places.extend(tasks.places);
                    }
                }
            }
            for (inode, place) in places {
                self.places.insert(inode, place);
                found.insert(inode, place.pid);
            }
            self.note_unfound(wanted, &searched, &found, covered, now, faults);
        } else {
            self.note_unfound(wanted, &missing, &found, false, now, faults);
        }
        self.forget_closed(wanted);
        found
    }

    /// The `holder` label of a socket after [`OwnerResolver::find_pids`]:
    /// `found` says whether that search placed it.
    pub fn holder(&self, inode: u64, found: bool) -> Holder {
        if found {
            Holder::Process
        } else if self.unfound.get(&inode).is_some_and(|b| b.unheld) {
            Holder::None
        } else {
            Holder::Unknown
        }
    }

    /// Confirms remembered places with one readlink each (in task order,
    /// through one open fd directory per task); returns what was
    /// confirmed and the inodes due for a /proc walk.
    fn check_remembered(
        &self,
        wanted: &[Wanted],
        now: Instant,
    ) -> (HashMap<u64, u32>, HashSet<u64>) {
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing = HashSet::new();
        // (task whose fd table holds it, fd, inode, pid)
        let mut remembered: Vec<(u32, u32, u64, u32)> = Vec::with_capacity(wanted.len());
        for socket in wanted {
            match self.places.get(&socket.inode) {
                Some(place) => remembered.push((place.task, place.fd, socket.inode, place.pid)),
                None => self.note_missing(socket.inode, now, &mut missing),
            }
        }
        remembered.sort_unstable();
        let in_turns = remembered.len() > self.confirm_all_up_to;
        let mut links: Option<crate::kernel::procfs::FdLinks<'_>> = None;
        for (task, fd, inode, pid) in remembered {
            if links.as_ref().is_none_or(|links| links.pid() != task) {
                links = Some(self.proc_root.fd_links(task));
            }
            let links = links.as_mut().expect("opened above");
            let confirmed = if in_turns && inode % CONFIRM_TURNS != self.turn % CONFIRM_TURNS {
                links.task_exists()
            } else {
                links.socket_inode(fd) == Some(inode)
            };
            if confirmed {
                found.insert(inode, pid);
            } else {
                self.note_missing(inode, now, &mut missing);
            }
        }
        (found, missing)
    }

    /// Adds `inode` to the /proc walk unless it waits out its backoff.
    fn note_missing(&self, inode: u64, now: Instant, missing: &mut HashSet<u64>) {
        let waiting = self
            .unfound
            .get(&inode)
            .is_some_and(|backoff| now < backoff.next_try);
        if !waiting {
            missing.insert(inode);
        }
    }

    /// Forgets what no longer listens, so the maps stay as small as the table.
    fn forget_closed(&mut self, wanted: &[Wanted]) {
        let current: HashSet<u64> = wanted.iter().map(|socket| socket.inode).collect();
        self.places.retain(|inode, _| current.contains(inode));
        self.unfound.retain(|inode, _| current.contains(inode));
    }

    /// Counts unplaced inodes and schedules their next search; those
    /// searched for now (`searched`) note whether the search was `covered`.
    fn note_unfound(
        &mut self,
        wanted: &[Wanted],
        searched: &HashSet<u64>,
        found: &HashMap<u64, u32>,
        covered: bool,
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
                unheld: false,
            });
            if searched.contains(&socket.inode) {
                backoff.unheld = covered;
            }
            if now >= backoff.next_try {
                backoff.wait = (backoff.wait * 2).min(LONGEST_RETRY);
                backoff.next_try = now + backoff.wait;
            }
        }
    }

    /// Notes in `places` each of `missing` that `pid`'s descriptors hold
    /// (the first holder found keeps it).
    fn note_places(
        &self,
        pid: u32,
        missing: &HashSet<u64>,
        places: &mut HashMap<u64, Place>,
    ) -> std::io::Result<()> {
        for (fd, inode) in self.proc_root.socket_fds(pid)? {
            if missing.contains(&inode) {
                places.entry(inode).or_insert(Place { pid, task: pid, fd });
            }
        }
        Ok(())
    }

    /// The `likely` pids' descriptors alone (their threads share them):
    /// where each of `missing` is that they hold.
    fn walk_pids(&self, likely: &[u32], missing: &HashSet<u64>) -> HashMap<u64, Place> {
        let mut places = HashMap::new();
        for &pid in likely.iter().filter(|&&pid| pid != self.own_pid) {
            let _ = self.note_places(pid, missing, &mut places);
            if places.len() == missing.len() {
                break;
            }
        }
        places
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
    ) -> Walked {
        let mut places = HashMap::new();
        let Ok(mut pids) = self.proc_root.pids_with_uid() else {
            return Walked {
                places,
                covered: false,
            };
        };
        let mut covered = self.proc_root.shows_every_process();
        // Likely pids, then same-uid processes, each group in ascending pid
        // order (a likely pid is a thread group leader that called listen();
        // a pre-fork master still sorts first among same-uid holders).
        pids.sort_by_key(|&(pid, uid)| {
            (
                pid == self.own_pid,
                !likely.contains(&pid),
                !uids.contains(&uid),
                pid,
            )
        });
        for (pid, _) in pids {
            match self.note_places(pid, missing, &mut places) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                    faults.denied += 1;
                    covered = false;
                }
                Err(err) if exited(&err) => {} // it holds nothing now
                Err(_) => covered = false,
            }
            if places.len() == missing.len() {
                break;
            }
        }
        Walked { places, covered }
    }

    /// The second walk (see the module doc): every thread of every process,
    /// on a fresh pid list. Denials were counted by the first walk.
    fn walk_tasks(&self, missing: &HashSet<u64>) -> Walked {
        let mut places = HashMap::new();
        let Ok(mut pids) = self.proc_root.pids() else {
            return Walked {
                places,
                covered: false,
            };
        };
        pids.sort_by_key(|&pid| (pid == self.own_pid, pid));
        let mut covered = self.proc_root.shows_every_process();
        'pids: for pid in pids {
            let mut tasks = self.proc_root.threads(pid);
            if tasks.is_empty() {
                tasks.push(pid); // a tree without task/ folders (fixtures)
            }
            for task in tasks {
                match self.proc_root.socket_fds(task) {
                    Ok(sockets) => {
                        for (fd, inode) in sockets {
                            if missing.contains(&inode) {
                                places.entry(inode).or_insert(Place { pid, task, fd });
                            }
                        }
                    }
                    Err(err) if exited(&err) => {}
                    Err(_) => covered = false,
                }
                if places.len() == missing.len() {
                    break 'pids;
                }
            }
        }
        Walked { places, covered }
    }
}

/// Whether reading a process's fds failed because it exited.
fn exited(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::NotFound || err.raw_os_error() == Some(3 /* ESRCH */)
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
        assert_eq!(resolver.places.get(&inode).map(|p| p.pid), Some(me));
        assert_eq!(
            resolver.find_pids(&wanted, &[], &mut faults).get(&inode),
            Some(&me)
        );
        assert_eq!(faults.unfound, 0);
    }

    #[test]
    fn a_socket_the_kernel_no_longer_lists_is_not_walked_for() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let root = ProcRoot::default();
        let me = std::process::id();
        let inode = root.fd_socket_inode(me, socket.as_raw_fd() as u32).unwrap();
        let wanted = [Wanted {
            inode,
            uid: rustix::process::geteuid().as_raw(),
        }];
        let mut faults = OwnerFaults::default();
        let mut asked = Vec::new();
        // Said gone: no walk of every process finds it.
        let mut gone = |inodes: &HashSet<u64>| {
            asked.extend(inodes.iter().copied());
            HashSet::new()
        };
        let mut resolver = OwnerResolver::new(root.clone());
        assert!(
            resolver
                .find_pids_listed(&wanted, &[], &mut faults, &mut gone)
                .is_empty()
        );
        assert_eq!(asked, vec![inode]);
        // A likely pid's descriptors are read before the kernel is asked
        // (here this test is not the exporter, whose own are read last).
        let mut never = |_: &HashSet<u64>| -> HashSet<u64> { panic!("asked, though placed") };
        let mut resolver = OwnerResolver::new(root.clone());
        resolver.own_pid = 0;
        let found = resolver.find_pids_listed(&wanted, &[me], &mut faults, &mut never);
        assert_eq!(found.get(&inode), Some(&me));
        // The exporter's own descriptors are never a likely place: a
        // borrowed copy of someone else's socket may sit there.
        let mut resolver = OwnerResolver::new(root.clone());
        let mut asked_again = false;
        let mut listed = |inodes: &HashSet<u64>| {
            asked_again = true;
            inodes.clone()
        };
        let found = resolver.find_pids_listed(&wanted, &[me], &mut faults, &mut listed);
        assert!(asked_again);
        assert_eq!(found.get(&inode), Some(&me), "found last, by the walk");
        // Still listed and not a likely pid's: walked for and found.
        let mut resolver = OwnerResolver::new(root);
        let found = resolver.find_pids_listed(&wanted, &[], &mut faults, &mut |i| i.clone());
        assert_eq!(found.get(&inode), Some(&me));
    }

    #[test]
    fn above_the_bound_every_remembered_socket_is_reread_within_its_turns() {
        use std::os::fd::AsFd;
        let root = ProcRoot::default();
        let me = std::process::id();
        let uid = rustix::process::geteuid().as_raw();
        let mut sockets: Vec<std::os::fd::OwnedFd> = (0..6)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap().into())
            .collect();
        let inodes: Vec<u64> = sockets
            .iter()
            .map(|s| root.fd_socket_inode(me, s.as_raw_fd() as u32).unwrap())
            .collect();
        let wanted: Vec<Wanted> = inodes.iter().map(|&inode| Wanted { inode, uid }).collect();
        let mut resolver = OwnerResolver::new(root);
        resolver.confirm_all_up_to = 2;
        let mut faults = OwnerFaults::default();
        let found = resolver.find_pids(&wanted, &[], &mut faults);
        assert!(inodes.iter().all(|inode| found.get(inode) == Some(&me)));
        // Every socket moves to another descriptor number of ours: each
        // remembered place is now wrong, and is found wrong in its turn.
        let old_fds: Vec<u32> = sockets.iter().map(|s| s.as_raw_fd() as u32).collect();
        sockets = sockets
            .iter()
            .map(|s| s.as_fd().try_clone_to_owned().unwrap())
            .collect();
        let new_fds: Vec<u32> = sockets.iter().map(|s| s.as_raw_fd() as u32).collect();
        for _ in 0..CONFIRM_TURNS {
            let found = resolver.find_pids(&wanted, &[], &mut faults);
            // Trusted or re-read, every one is still ours in every collection.
            assert!(inodes.iter().all(|inode| found.get(inode) == Some(&me)));
        }
        for (inode, (old, new)) in inodes.iter().zip(old_fds.iter().zip(&new_fds)) {
            assert_ne!(old, new);
            assert_eq!(
                resolver.places[inode].fd, *new,
                "every remembered place was re-read within {CONFIRM_TURNS} collections"
            );
        }
    }

    /// Root sees every fd table; under CI a missing privilege is a failure.
    fn can_read_every_process() -> bool {
        if ProcRoot::default().shows_every_process() && rustix::process::geteuid().is_root() {
            return true;
        }
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(
            !ci,
            "CI: reading every process's fds needs root in the initial pid namespace"
        );
        eprintln!("skipped: needs root in the initial pid namespace");
        false
    }

    /// Sends `fd` over `via` in an SCM_RIGHTS message nobody reads yet.
    fn park(via: &std::os::fd::OwnedFd, fd: std::os::fd::BorrowedFd<'_>) {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
        let mut space = [0u8; rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [fd];
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(
            via,
            &[std::io::IoSlice::new(b"x")],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
    }

    #[test]
    fn a_socket_in_flight_has_no_holder_and_a_held_one_has_its_process() {
        if !can_read_every_process() {
            return;
        }
        use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
        let root = ProcRoot::default();
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = root
            .fd_socket_inode(me, listener.as_raw_fd() as u32)
            .unwrap();
        let (sender, _receiver) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut resolver = OwnerResolver::new(root);
        let wanted = [Wanted { inode, uid: 0 }];
        let mut faults = OwnerFaults::default();
        let found = resolver.find_pids(&wanted, &[], &mut faults);
        assert_eq!(
            resolver.holder(inode, found.contains_key(&inode)),
            Holder::Process
        );
        {
            use std::os::fd::AsFd;
            park(&sender, listener.as_fd());
        }
        drop(listener); // the only copy left is in the unread message
        let mut resolver = OwnerResolver::new(ProcRoot::default());
        let found = resolver.find_pids(&wanted, &[], &mut faults);
        assert!(found.is_empty());
        assert_eq!(resolver.holder(inode, false), Holder::None);
        // Within the backoff nothing is walked and the answer stands.
        resolver.find_pids(&wanted, &[], &mut faults);
        assert_eq!(resolver.holder(inode, false), Holder::None);
        // A procfs that is not the host's cannot tell.
        let dir = std::env::temp_dir().join(format!("owners-notcovered-{me}"));
        std::fs::create_dir_all(dir.join("1")).unwrap();
        let mut partial = OwnerResolver::new(ProcRoot::new(dir.clone(), dir.join("netns")));
        partial.find_pids(&wanted, &[], &mut faults);
        assert_eq!(partial.holder(inode, false), Holder::Unknown);
        let _ = std::fs::remove_dir_all(&dir);
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
