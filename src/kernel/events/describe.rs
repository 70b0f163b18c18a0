//! The describing side of the listen capture: what each listening socket
//! is, learnt once at listen time and remembered until it closes.
//!
//! The draining thread ([`super::listen`]) only decodes samples and queues
//! them, in kernel-time order; this thread takes them from that bounded
//! queue and, for each:
//!
//! - **counts each listening socket once.** `listen()` on an MPTCP socket
//!   makes three transitions: the MPTCP socket CLOSE->LISTEN, its TCP
//!   subflow socket CLOSE->LISTEN, and the MPTCP socket LISTEN->LISTEN
//!   (the draining thread drops the last, no state changed). Closing it
//!   makes the subflow LISTEN->CLOSE, then the MPTCP socket LISTEN->CLOSE.
//!   A TCP open that follows an MPTCP open on the same thread, port and
//!   address is that subflow: it is remembered as such and neither it nor
//!   its close is reported.
//! - **remembers facts per socket** (keyed by the kernel's socket address,
//!   the tracepoint's `skaddr`) in a bounded map: the namespace the socket
//!   was created in (asked of the socket itself, see
//!   [`super::held_socket`]; the listening thread's namespace when the
//!   socket is already gone), the pid, name and uid of the process that
//!   listened. A close reports those facts, not the closing task's: at
//!   process exit the kernel closes files after the task has left its
//!   namespaces, and a thread may move between `socket()` and `close()`.
//! - **hands collection the namespaces only a socket holds**: a namespace
//!   learnt from a socket that is not ours is kept open (its descriptor, in
//!   [`LearntNamespaces`]) while that socket listens, so collection can
//!   enter it even when no process is in it any more.
//!
//! Describing reads procfs, which may be slow; it never holds up draining.
//! When the queue backs up, describing does less (first no descriptor
//! walk, then no procfs read at all), and every event is still reported
//! and counted, with whatever facts are known.

use super::held_socket::{Finder, Listening, Wanted};
use super::listen::{ListenEvent, StreamProtocol, Transition};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sockets remembered at once; the oldest are forgotten first (a close of
/// a forgotten socket is still counted, with the closing task's facts).
pub const MAX_REMEMBERED: usize = 65_536;
/// Below this backlog the owner's descriptors are walked to ask the socket
/// for its namespace.
const WALK_BELOW: usize = 64;
/// Below this backlog procfs is read at all (process name, uid, thread
/// namespace); above it, what was last read for the same process is used.
const READ_BELOW: usize = 8_192;
/// While the backlog is at least [`WALK_BELOW`], a process's name, uid and
/// namespace read this recently are reused instead of read again (a burst
/// comes from few processes).
const REUSE_FOR: Duration = Duration::from_secs(2);
/// Processes whose last reading is kept for reuse, at most.
const MAX_RECENT: usize = 4096;

/// A transition as the draining thread decoded it, before any procfs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTransition {
    pub transition: Transition,
    pub protocol: StreamProtocol,
    pub address: IpAddr,
    pub port: u16,
    pub pid: u32,
    pub tid: u32,
    /// The kernel's address of the socket: unique while the socket lives.
    pub skaddr: u64,
    /// CLOCK_MONOTONIC of the transition.
    pub kernel_time: Duration,
}

/// What the transitions queued behind the one being described say of a
/// socket's close (the describing loop's look-ahead, `super::listen`).
pub trait QueuedCloses {
    /// Whether the close of the socket at `skaddr` is already queued.
    fn queued(&self, skaddr: u64) -> bool;
    /// Whether its close is among the transitions stamped before `before`
    /// (CLOCK_MONOTONIC), once every one of them has been queued; `None`
    /// when that cannot be known soon.
    fn closed_before(&mut self, skaddr: u64, before: Duration) -> Option<bool>;
}

/// No queue to ask: nothing is known to be closed, or proven open.
struct NoQueue;

impl QueuedCloses for NoQueue {
    fn queued(&self, _: u64) -> bool {
        false
    }
    fn closed_before(&mut self, _: u64, _: Duration) -> Option<bool> {
        None
    }
}

/// What was learnt about a socket when it started listening.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SocketFacts {
    /// The process that called `listen()`.
    pub pid: u32,
    /// Its name (`comm`), `None` when it could not be read.
    pub process: Option<String>,
    /// Its real uid, `None` when it could not be read.
    pub uid: Option<u32>,
    /// Inode of the socket's network namespace.
    pub netns: Option<u64>,
    /// The socket is an MPTCP socket's TCP subflow: never reported.
    subflow: bool,
    /// The namespace this socket holds in [`LearntNamespaces`].
    holds: Option<u64>,
}

/// Namespaces learnt from listening sockets, with a descriptor of each, for
/// collection to enter: a read-only view the event side owns. Cheap handle.
#[derive(Clone, Default)]
pub struct LearntNamespaces {
    inner: Arc<Mutex<HashMap<u64, Held>>>,
}

struct Held {
    fd: Arc<OwnedFd>,
    /// Listening sockets (remembered) in this namespace.
    sockets: usize,
}

impl LearntNamespaces {
    /// (namespace inode, descriptor) of every namespace a listening socket
    /// holds now. Keep the `Arc` while using `/proc/self/fd/N` of it.
    pub fn list(&self) -> Vec<(u64, Arc<OwnedFd>)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<(u64, Arc<OwnedFd>)> = inner
            .iter()
            .map(|(&inode, held)| (inode, Arc::clone(&held.fd)))
            .collect();
        list.sort_unstable_by_key(|(inode, _)| *inode);
        list
    }

    /// A path that opens the namespace of `fd` while `fd` is open.
    pub fn path_of(fd: &OwnedFd) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    fn hold(&self, inode: u64, fd: OwnedFd) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .entry(inode)
            .or_insert_with(|| Held {
                fd: Arc::new(fd),
                sockets: 0,
            })
            .sockets += 1;
    }

    fn release(&self, inode: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = inner.get_mut(&inode) {
            held.sockets = held.sockets.saturating_sub(1);
            if held.sockets == 0 {
                inner.remove(&inode);
            }
        }
    }
}

/// skaddr -> facts, forgetting the oldest beyond [`MAX_REMEMBERED`].
#[derive(Default)]
struct Memory {
    facts: HashMap<u64, (SocketFacts, u64)>,
    /// (skaddr, sequence) in insertion order; stale pairs are skipped.
    order: VecDeque<(u64, u64)>,
    next: u64,
}

impl Memory {
    fn insert(&mut self, skaddr: u64, facts: SocketFacts) -> Option<SocketFacts> {
        self.next += 1;
        let replaced = self
            .facts
            .insert(skaddr, (facts, self.next))
            .map(|(f, _)| f);
        self.order.push_back((skaddr, self.next));
        let mut forgotten = None;
        while self.facts.len() > MAX_REMEMBERED {
            let Some((oldest, sequence)) = self.order.pop_front() else {
                break;
            };
            if self.facts.get(&oldest).is_some_and(|(_, s)| *s == sequence) {
                forgotten = self.facts.remove(&oldest).map(|(f, _)| f);
            }
        }
        if self.order.len() > 2 * MAX_REMEMBERED {
            let facts = &self.facts;
            self.order
                .retain(|(skaddr, s)| facts.get(skaddr).is_some_and(|(_, now)| now == s));
        }
        replaced.or(forgotten)
    }

    fn remove(&mut self, skaddr: u64) -> Option<SocketFacts> {
        self.facts.remove(&skaddr).map(|(facts, _)| facts)
    }
}

/// The describing thread's state.
pub struct Describer {
    procfs: PathBuf,
    /// The exporter's own namespace: never held in [`LearntNamespaces`].
    own_netns: u64,
    /// Finds a new listener's socket and namespace in its owner.
    finder: Finder,
    memory: Memory,
    /// tid -> (port, address) of an MPTCP listen whose TCP subflow listen
    /// has not been seen yet.
    mptcp_pending: HashMap<u32, (u16, IpAddr)>,
    namespaces: LearntNamespaces,
    /// Transitions queued and not yet described (the draining thread adds).
    backlog: Arc<AtomicUsize>,
    /// (pid, tid) -> what was last read of that task, and when the
    /// reading began (CLOCK_MONOTONIC, the clock of transitions).
    recent: HashMap<(u32, u32), (SocketFacts, Duration)>,
}

impl Describer {
    pub fn new(
        procfs: &Path,
        namespaces: LearntNamespaces,
        backlog: Arc<AtomicUsize>,
    ) -> Describer {
        use std::os::unix::fs::MetadataExt;
        let own_netns = std::fs::metadata(procfs.join("self/ns/net")).map_or(0, |m| m.ino());
        Describer {
            procfs: procfs.to_path_buf(),
            finder: Finder::new(procfs, own_netns),
            own_netns,
            memory: Memory::default(),
            mptcp_pending: HashMap::new(),
            namespaces,
            backlog,
            recent: HashMap::new(),
        }
    }

    /// Turns one transition into the event to report, or `None` for an
    /// MPTCP subflow's. Knows nothing of the queue: never borrows a socket
    /// (see [`QueuedCloses`]).
    pub fn describe(&mut self, raw: RawTransition) -> Option<ListenEvent> {
        self.describe_in(raw, &mut NoQueue)
    }

    /// [`Describer::describe`], with what the queue behind this transition
    /// says of closes: a socket whose close is queued is not looked for in
    /// its owner's descriptors, and one is borrowed (`pidfd_getfd`, which
    /// keeps it open while we hold it) only on proof that it was not
    /// closed: an owner that closes a listener and binds the same port
    /// again must never meet our copy.
    pub fn describe_in(
        &mut self,
        raw: RawTransition,
        closes: &mut dyn QueuedCloses,
    ) -> Option<ListenEvent> {
        let facts = match raw.transition {
            Transition::Opened => self.opened(&raw, closes)?,
            Transition::Closed => self.closed(&raw)?,
        };
        Some(ListenEvent {
            transition: raw.transition,
            protocol: raw.protocol,
            address: raw.address,
            port: raw.port,
            pid: raw.pid,
            tid: raw.tid,
            skaddr: raw.skaddr,
            listener_pid: facts.pid,
            process: facts.process,
            uid: facts.uid,
            netns: facts.netns,
            kernel_time: raw.kernel_time,
        })
    }

    fn opened(
        &mut self,
        raw: &RawTransition,
        closes: &mut dyn QueuedCloses,
    ) -> Option<SocketFacts> {
        match raw.protocol {
            StreamProtocol::Mptcp => {
                if self.mptcp_pending.len() >= 1024 {
                    self.mptcp_pending.clear();
                }
                self.mptcp_pending.insert(raw.tid, (raw.port, raw.address));
            }
            StreamProtocol::Tcp
                if self.mptcp_pending.get(&raw.tid) == Some(&(raw.port, raw.address)) =>
            {
                self.mptcp_pending.remove(&raw.tid);
                let subflow = SocketFacts {
                    subflow: true,
                    ..SocketFacts::default()
                };
                self.remember(raw.skaddr, subflow);
                return None;
            }
            _ => {}
        }
        let facts = self.learn(raw, closes);
        self.remember(raw.skaddr, facts.clone());
        Some(facts)
    }

    fn closed(&mut self, raw: &RawTransition) -> Option<SocketFacts> {
        match self.memory.remove(raw.skaddr) {
            Some(facts) => {
                if let Some(inode) = facts.holds {
                    self.namespaces.release(inode);
                }
                (!facts.subflow).then_some(facts)
            }
            // Listening since before the capture started (or forgotten):
            // the closing task is all there is to ask.
            None => Some(self.read_task(raw)),
        }
    }

    fn remember(&mut self, skaddr: u64, facts: SocketFacts) {
        if let Some(old) = self.memory.insert(skaddr, facts)
            && let Some(inode) = old.holds
        {
            self.namespaces.release(inode);
        }
    }

    /// Facts of a new listener: the process, and the socket's own
    /// namespace when the backlog allows walking the owner's descriptors
    /// and the socket is not known to be closed already.
    fn learn(&mut self, raw: &RawTransition, closes: &mut dyn QueuedCloses) -> SocketFacts {
        let mut facts = self.read_task(raw);
        if self.backlog.load(Ordering::Relaxed) >= WALK_BELOW || closes.queued(raw.skaddr) {
            return facts;
        }
        let protocol = match raw.protocol {
            StreamProtocol::Tcp => 6,
            StreamProtocol::Mptcp => 262,
            StreamProtocol::Sctp => 132,
            StreamProtocol::Other(number) => u32::from(number),
        };
        let wanted = Wanted {
            protocol,
            address: raw.address,
            port: raw.port,
        };
        let task = Listening {
            pid: raw.pid,
            tid: raw.tid,
            uid: facts.uid,
            thread_netns: facts.netns,
        };
        let skaddr = raw.skaddr;
        if let Some(held) = self
            .finder
            .find(task, wanted, |at| closes.closed_before(skaddr, at))
        {
            facts.netns = Some(held.netns);
            if held.netns != self.own_netns {
                self.namespaces.hold(held.netns, held.netns_fd);
                facts.holds = Some(held.netns);
            }
        }
        facts
    }

    /// What the task says: name, uid, the thread's namespace. Every reading
    /// is taken after the transition it describes, so one begun after this
    /// transition is as true of it as a fresh one and is used again: a
    /// storm's transitions arrive a pass of the draining thread at a time,
    /// all made before the describing thread reads, so one task is read
    /// once a pass, not once a transition (a storm of 33,000 listens a
    /// second took half a core in these reads). While the backlog is long
    /// an older reading is reused too (nothing is read when it is too long
    /// and the task was never read).
    fn read_task(&mut self, raw: &RawTransition) -> SocketFacts {
        let backlog = self.backlog.load(Ordering::Relaxed);
        let task = (raw.pid, raw.tid);
        if let Some((facts, read_began)) = self.recent.get(&task) {
            let read_after = *read_began >= raw.kernel_time;
            let lagging = || {
                backlog >= WALK_BELOW
                    && (backlog >= READ_BELOW
                        || super::listen::monotonic_now().saturating_sub(*read_began) < REUSE_FOR)
            };
            if read_after || lagging() {
                return facts.clone();
            }
        }
        let mut facts = SocketFacts {
            pid: raw.pid,
            ..SocketFacts::default()
        };
        if backlog < READ_BELOW {
            let read_began = super::listen::monotonic_now();
            facts.process = super::listen::read_comm(&self.procfs, raw.pid);
            facts.uid = read_uid(&self.procfs, raw.pid);
            facts.netns = super::listen::read_task_netns(&self.procfs, raw.pid, raw.tid);
            if facts.process.is_some() {
                if self.recent.len() >= MAX_RECENT {
                    self.recent.clear();
                }
                self.recent.insert(task, (facts.clone(), read_began));
            }
        }
        facts
    }
}

/// The real uid from `/proc/PID/status` (`Uid:` real, effective, saved, fs).
pub fn read_uid(procfs: &Path, pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(procfs.join(pid.to_string()).join("status")).ok()?;
    parse_uid(&status)
}

fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn describer() -> Describer {
        Describer::new(
            Path::new("/proc"),
            LearntNamespaces::default(),
            // A long backlog: no procfs reads, so the tests see only the
            // pairing and remembering logic.
            Arc::new(AtomicUsize::new(READ_BELOW)),
        )
    }

    fn raw(
        transition: Transition,
        protocol: StreamProtocol,
        tid: u32,
        skaddr: u64,
    ) -> RawTransition {
        RawTransition {
            transition,
            protocol,
            address: Ipv4Addr::LOCALHOST.into(),
            port: 276,
            pid: 100,
            tid,
            skaddr,
            kernel_time: Duration::ZERO,
        }
    }

    #[test]
    fn an_mptcp_listener_is_reported_once_without_its_subflow() {
        let mut d = describer();
        let (mptcp, tcp) = (StreamProtocol::Mptcp, StreamProtocol::Tcp);
        let open = d.describe(raw(Transition::Opened, mptcp, 7, 0xa0)).unwrap();
        assert_eq!(open.protocol, mptcp);
        assert!(d.describe(raw(Transition::Opened, tcp, 7, 0xb0)).is_none());
        // The subflow closes first, then the MPTCP socket.
        assert!(d.describe(raw(Transition::Closed, tcp, 7, 0xb0)).is_none());
        let close = d.describe(raw(Transition::Closed, mptcp, 7, 0xa0)).unwrap();
        assert_eq!(close.protocol, mptcp);
        // A plain TCP listener afterwards on the same thread is reported.
        assert!(d.describe(raw(Transition::Opened, tcp, 7, 0xb0)).is_some());
        assert!(d.describe(raw(Transition::Closed, tcp, 7, 0xb0)).is_some());
    }

    #[test]
    fn a_close_reports_what_was_learnt_at_listen_time() {
        let mut d = describer();
        d.memory.insert(
            0xc0,
            SocketFacts {
                pid: 42,
                process: Some("holder".into()),
                uid: Some(1001),
                netns: Some(4026532000),
                ..SocketFacts::default()
            },
        );
        let close = d
            .describe(raw(Transition::Closed, StreamProtocol::Tcp, 9, 0xc0))
            .unwrap();
        assert_eq!(close.listener_pid, 42);
        assert_eq!(close.process.as_deref(), Some("holder"));
        assert_eq!(close.uid, Some(1001));
        assert_eq!(close.netns, Some(4026532000));
        // Forgotten once closed: a second close knows only the task.
        let again = d
            .describe(raw(Transition::Closed, StreamProtocol::Tcp, 9, 0xc0))
            .unwrap();
        assert_eq!(again.listener_pid, 100);
        assert_eq!(again.uid, None);
    }

    #[test]
    fn memory_stays_bounded_and_forgets_the_oldest() {
        let mut memory = Memory::default();
        for skaddr in 0..(MAX_REMEMBERED as u64 + 10) {
            memory.insert(skaddr, SocketFacts::default());
        }
        assert_eq!(memory.facts.len(), MAX_REMEMBERED);
        assert!(memory.remove(0).is_none());
        assert!(memory.remove(MAX_REMEMBERED as u64 + 9).is_some());
        assert!(memory.order.len() <= 2 * MAX_REMEMBERED + 1);
    }

    #[test]
    fn namespaces_are_held_while_a_socket_holds_them() {
        let learnt = LearntNamespaces::default();
        let fd = || OwnedFd::from(std::fs::File::open("/proc/self/ns/net").unwrap());
        learnt.hold(5, fd());
        learnt.hold(5, fd());
        assert_eq!(learnt.list().len(), 1);
        learnt.release(5);
        assert_eq!(learnt.list().len(), 1);
        learnt.release(5);
        assert!(learnt.list().is_empty());
    }

    /// Says every socket's close is queued: the finder is never asked.
    struct AllClosing;

    impl QueuedCloses for AllClosing {
        fn queued(&self, _: u64) -> bool {
            true
        }
        fn closed_before(&mut self, _: u64, _: Duration) -> Option<bool> {
            Some(true)
        }
    }

    #[test]
    fn a_reading_begun_after_a_transition_serves_it_and_a_later_one_reads_again() {
        // A procfs of one task, pid 100 tid 7, whose name the test changes.
        let procfs = std::env::temp_dir().join(format!("describe-reuse-{}", std::process::id()));
        let task = procfs.join("100");
        std::fs::create_dir_all(task.join("task/7/ns")).unwrap();
        std::fs::write(task.join("status"), "Name:\tx\nUid:\t1001\t0\t0\t0\n").unwrap();
        std::fs::write(task.join("task/7/ns/net"), "").unwrap();
        std::fs::write(task.join("comm"), "first\n").unwrap();
        let backlog = Arc::new(AtomicUsize::new(0)); // no lag: only the rule reuses
        let mut d = Describer::new(&procfs, LearntNamespaces::default(), backlog);
        let at = |kernel_time, skaddr| RawTransition {
            kernel_time,
            ..raw(Transition::Opened, StreamProtocol::Tcp, 7, skaddr)
        };
        let made = super::super::listen::monotonic_now();
        let name = |d: &mut Describer, raw| d.describe_in(raw, &mut AllClosing).unwrap().process;

        assert_eq!(name(&mut d, at(made, 1)).as_deref(), Some("first"));
        std::fs::write(task.join("comm"), "second\n").unwrap();
        // Made before the first reading began: that reading is as true of
        // it as a new one.
        assert_eq!(name(&mut d, at(made, 2)).as_deref(), Some("first"));
        // Made after it: read again.
        let later = super::super::listen::monotonic_now();
        assert_eq!(name(&mut d, at(later, 3)).as_deref(), Some("second"));
        std::fs::remove_dir_all(&procfs).unwrap();
    }

    #[test]
    fn uid_is_the_real_one() {
        assert_eq!(parse_uid("Name:\tx\nUid:\t1001\t0\t0\t0\n"), Some(1001));
        assert_eq!(parse_uid("Name:\tx\n"), None);
        assert!(read_uid(Path::new("/proc"), std::process::id()).is_some());
    }
}
