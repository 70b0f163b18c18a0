//! RPC registrations per network namespace, kept fresh off the scrape path.
//!
//! A background thread asks the rpcbind of each namespace that has
//! listeners on watched ports (`kernel/rpcbind.rs`: `127.0.0.1:111` inside
//! that namespace) for its registrations, every [`TTL`], and keeps the
//! answers. A scrape reads the answers it finds and never talks to rpcbind
//! itself. When a scrape sees a socket it has never seen (a daemon just
//! started), it asks the thread to refresh that namespace at once and waits
//! for the answer at most [`NEW_SOCKET_WAIT`] (once per new socket; a
//! stable host never waits), so a freshly registered daemon is judged with
//! its registration. One more refresh follows a second later, for a daemon
//! that registers a moment after it binds.
//!
//! A namespace without an rpcbind answers "connection refused" at once and
//! has no registrations; a wedged one costs the refresher [`CALL_TIMEOUT`],
//! never a scrape more than the wait above.

use crate::kernel::procfs::ProcRoot;
use crate::kernel::rpcbind::{self, Registration};
use crate::policy::registry::Transport;
use crate::sockets::Listener;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is used before it is asked again.
pub const TTL: Duration = Duration::from_secs(30);
/// Longest a scrape waits for the registrations of a namespace where a new
/// socket appeared.
pub const NEW_SOCKET_WAIT: Duration = Duration::from_millis(250);
/// Deadline of one call to rpcbind (connect, send, read).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// A namespace with no listeners for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(120);
/// The follow-up refresh after one asked for by a new socket.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// A namespace: `None` for the exporter's own, else its inode.
type Netns = Option<u64>;

/// What is known about one namespace's rpcbind.
struct Entry {
    /// When the last answer arrived (`None`: never asked yet).
    fetched_at: Option<Instant>,
    registrations: Arc<Vec<Registration>>,
    /// When to ask next.
    due: Instant,
    /// Ask once more [`RECHECK_AFTER`] the next answer.
    recheck: bool,
    /// When a scrape last had listeners there.
    wanted_at: Instant,
    /// Pids holding listeners there: a way into the namespace.
    pids: Vec<u32>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Netns, Entry>,
    /// Socket inodes seen by earlier scrapes.
    known_sockets: HashSet<u64>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a refresh is asked for, and when answers arrive.
    changed: Condvar,
    proc_root: ProcRoot,
}

/// The registrations a scrape judges with, per namespace.
#[derive(Clone, Debug, Default)]
pub struct RpcView {
    by_netns: HashMap<Netns, Arc<Vec<Registration>>>,
}

impl RpcView {
    /// Registrations on a listener's namespace, transport, family and port.
    pub fn registrations<'a>(
        &'a self,
        listener: &'a Listener,
    ) -> impl Iterator<Item = &'a Registration> + 'a {
        let transport = match listener.transport {
            Transport::UdpLite => Transport::Udp,
            other => other,
        };
        let ipv6 = listener.address.is_ipv6();
        self.by_netns
            .get(&listener.netns)
            .into_iter()
            .flat_map(|list| list.iter())
            .filter(move |r| r.transport == transport && r.port == listener.port && r.ipv6 == ipv6)
    }

    /// The program numbers registered on a listener's port.
    pub fn programs(&self, listener: &Listener) -> Vec<u32> {
        let mut programs: Vec<u32> = self.registrations(listener).map(|r| r.program).collect();
        programs.dedup();
        programs
    }
}

/// The cache and its refresher thread (stopped when this is dropped).
pub struct RpcPrograms {
    shared: Arc<Shared>,
}

impl RpcPrograms {
    pub fn new(proc_root: ProcRoot) -> RpcPrograms {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            proc_root,
        });
        let worker = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("rpcbind-refresh".into())
            .spawn(move || refresh_loop(&worker));
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the rpcbind refresher; RPC programs are not reported");
        }
        RpcPrograms { shared }
    }

    /// The registrations for these listeners (`pids[i]` holds
    /// `listeners[i]`, if known). Waits at most [`NEW_SOCKET_WAIT`], and
    /// only when a listener is new.
    pub fn view(&self, listeners: &[Listener], pids: &[Option<u32>]) -> RpcView {
        let now = Instant::now();
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut asked: Vec<Netns> = Vec::new();
        for (i, listener) in listeners.iter().enumerate() {
            let entry = state
                .entries
                .entry(listener.netns)
                .or_insert_with(|| Entry {
                    fetched_at: None,
                    registrations: Arc::default(),
                    due: now,
                    recheck: false,
                    wanted_at: now,
                    pids: Vec::new(),
                });
            entry.wanted_at = now;
            if let Some(Some(pid)) = pids.get(i)
                && !entry.pids.contains(pid)
            {
                entry.pids.push(*pid);
                if entry.pids.len() > 8 {
                    entry.pids.remove(0);
                }
            }
            let new = !state.known_sockets.contains(&listener.inode);
            let entry = state
                .entries
                .get_mut(&listener.netns)
                .expect("just inserted");
            if new || entry.fetched_at.is_none() {
                entry.due = now;
                entry.recheck = true;
                if !asked.contains(&listener.netns) {
                    asked.push(listener.netns);
                }
            }
        }
        state.known_sockets = listeners.iter().map(|l| l.inode).collect();
        if !asked.is_empty() {
            self.shared.changed.notify_all();
            let deadline = now + NEW_SOCKET_WAIT;
            loop {
                let answered = asked.iter().all(|netns| {
                    state.entries[netns]
                        .fetched_at
                        .is_some_and(|fetched| fetched >= now)
                });
                let left = deadline.saturating_duration_since(Instant::now());
                if answered || left.is_zero() {
                    break;
                }
                state = self
                    .shared
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        let by_netns = listeners
            .iter()
            .map(|l| l.netns)
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|netns| {
                let entry = state.entries.get(&netns)?;
                Some((netns, Arc::clone(&entry.registrations)))
            })
            .collect();
        RpcView { by_netns }
    }
}

impl Drop for RpcPrograms {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop = true;
        self.shared.changed.notify_all();
    }
}

/// Asks each namespace whose answer is due; sleeps until the next is due.
fn refresh_loop(shared: &Shared) {
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if state.stop {
            return;
        }
        let now = Instant::now();
        state
            .entries
            .retain(|_, entry| now.duration_since(entry.wanted_at) < FORGET_AFTER);
        let due: Vec<(Netns, Vec<u32>)> = state
            .entries
            .iter()
            .filter(|(_, entry)| entry.due <= now)
            .map(|(netns, entry)| (*netns, entry.pids.clone()))
            .collect();
        if due.is_empty() {
            let next = state
                .entries
                .values()
                .map(|entry| entry.due)
                .min()
                .map_or(TTL, |due| due.saturating_duration_since(now));
            state = shared
                .changed
                .wait_timeout(state, next.max(Duration::from_millis(10)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        for (netns, pids) in due {
            drop(state);
            let answer = ask(&shared.proc_root, netns, &pids);
            state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let registrations = match answer {
                Ok(list) => list,
                Err(err) => {
                    tracing::debug!(netns = ?netns, error = %err, "no answer from rpcbind");
                    Vec::new()
                }
            };
            let now = Instant::now();
            if let Some(entry) = state.entries.get_mut(&netns) {
                entry.registrations = Arc::new(registrations);
                entry.fetched_at = Some(now);
                entry.due = if entry.recheck {
                    now + RECHECK_AFTER
                } else {
                    now + TTL
                };
                entry.recheck = false;
            }
            shared.changed.notify_all();
        }
    }
}

/// One DUMP from the rpcbind of `netns`.
fn ask(proc_root: &ProcRoot, netns: Netns, pids: &[u32]) -> std::io::Result<Vec<Registration>> {
    match netns {
        None => rpcbind::dump(CALL_TIMEOUT),
        Some(inode) => ask_in(proc_root, inode, pids),
    }
}

#[cfg(target_os = "linux")]
fn ask_in(proc_root: &ProcRoot, inode: u64, pids: &[u32]) -> std::io::Result<Vec<Registration>> {
    let path = namespace_path(proc_root, inode, pids).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no way into network namespace {inode}"),
        )
    })?;
    let check = proc_root.procfs().join("thread-self/ns/net");
    crate::kernel::netns::enter::run_in(&path, move || {
        // The path may have been reused by another namespace since it was
        // found (a pid that exited): ask only the one we meant.
        let entered = std::fs::read_link(&check).ok();
        if entered.as_deref().and_then(|t| t.to_str()) != Some(&format!("net:[{inode}]")) {
            return Err(std::io::Error::other("the namespace changed under us"));
        }
        rpcbind::dump(CALL_TIMEOUT)
    })?
}

#[cfg(not(target_os = "linux"))]
fn ask_in(_: &ProcRoot, _: u64, _: &[u32]) -> std::io::Result<Vec<Registration>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "network namespaces exist only on Linux",
    ))
}

/// A path that opens namespace `inode`: a listener holder's, a named one,
/// or any process's.
#[cfg(target_os = "linux")]
fn namespace_path(proc_root: &ProcRoot, inode: u64, pids: &[u32]) -> Option<std::path::PathBuf> {
    if let Some(pid) = pids
        .iter()
        .find(|&&pid| proc_root.net_namespace(pid) == Some(inode))
    {
        return Some(proc_root.pid_path(*pid, "ns/net"));
    }
    if let Some((_, path)) = proc_root
        .named_namespaces()
        .into_iter()
        .find(|(named, _)| *named == inode)
    {
        return Some(path);
    }
    let pid = proc_root
        .pids()
        .ok()?
        .into_iter()
        .find(|&pid| proc_root.net_namespace(pid) == Some(inode))?;
    Some(proc_root.pid_path(pid, "ns/net"))
}
