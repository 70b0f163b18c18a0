//! What the exporter keeps open inside each other namespace, for as long as
//! that namespace exists, and how a collection visits them all.
//!
//! Dense container hosts run a thousand namespaces, so three rules shape
//! this file:
//!
//! - **One descriptor per namespace, within a budget.** A handle (a netlink
//!   socket opened inside the namespace) keeps the namespace alive, so
//!   handles of namespaces discovery no longer finds are dropped at once. At
//!   most `max_open` handles are kept (the caller derives it from the
//!   open-file limit minus a reserve for the HTTP side); namespaces beyond
//!   the budget are visited on demand (enter, open, read, close), slower but
//!   complete, so accepting a scrape can never fail for want of a
//!   descriptor.
//! - **Both cores.** Reading a namespace is a few netlink round trips in
//!   which the kernel walks its socket hash tables; they are independent, so
//!   held handles are visited by up to [`MAX_WORKERS`] threads at once.
//! - **Say why, once.** A namespace that cannot be entered or read is counted
//!   in every collection's outcome and logged once per distinct cause, with
//!   how many namespaces it hit.
//!
//! A handle is also reopened after [`REFRESH_AFTER`] (a few per collection,
//! so the work is spread), which refreshes anything the caller read at open
//! time, such as a sysctl.

use super::discovery::{Discovery, Namespace};
use super::enter::{self, Roaming};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// Most threads that visit namespaces at once.
pub const MAX_WORKERS: usize = 4;
/// Threads that read namespaces at once: the CPUs this process may use
/// (asked once: the answer reads cgroup files), at most [`MAX_WORKERS`].
static WORKERS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
});
/// Below this many held handles one thread visits them all (more workers
/// would cost more than they save).
const PARALLEL_FROM: usize = 64;
/// Age after which a handle is reopened.
pub const REFRESH_AFTER: Duration = Duration::from_secs(300);

/// A handle and when it was opened.
struct Held<T> {
    handle: T,
    opened_at: Instant,
}

/// What one collection over the namespaces produced.
#[derive(Debug)]
pub struct Outcome<R> {
    /// (namespace inode, result) for every namespace read, in inode order.
    pub results: Vec<(u64, R)>,
    /// Namespaces that could not be entered or read this time.
    pub failed: u64,
}

/// One handle of type `T` per other network namespace.
pub struct NamespaceSet<T> {
    /// Finds the namespaces that exist now.
    discovery: Discovery,
    /// namespace inode -> what was opened inside it.
    open: HashMap<u64, Held<T>>,
    /// Most handles kept open at once (the descriptor budget).
    max_open: usize,
    /// Causes of failure already logged, so each is logged once.
    logged_causes: HashSet<String>,
    /// Set once the budget has been met, so that is logged once.
    logged_budget: bool,
}

impl<T: Send + 'static> NamespaceSet<T> {
    pub fn new(discovery: Discovery, max_open: usize) -> NamespaceSet<T> {
        NamespaceSet {
            discovery,
            open: HashMap::new(),
            max_open,
            logged_causes: HashSet::new(),
            logged_budget: false,
        }
    }

    /// Changes the descriptor budget (the caller's handles may cost more
    /// than one descriptor each).
    pub fn set_max_open(&mut self, max_open: usize) {
        self.max_open = max_open;
    }

    /// Namespaces the listen events learnt from sockets (inode and a
    /// descriptor of each), found by the next collections as well as those
    /// discovery finds; see [`Discovery::learn`].
    pub fn learn(&mut self, learnt: Vec<(u64, std::sync::Arc<std::os::fd::OwnedFd>)>) {
        self.discovery.learn(learnt);
    }

    /// Handles held now.
    pub fn held(&self) -> usize {
        self.open.len()
    }

    /// Discovers the namespaces (`hints`: see [`Discovery::namespaces`]),
    /// drops handles of vanished ones unless `keep` says the handle still
    /// matters (a namespace that only a listening socket holds is found by no
    /// process, but our handle still reaches it), opens handles in new ones
    /// with `open` (run on a thread inside the namespace, given its inode)
    /// within the budget, and reads every namespace with `visit`, on threads
    /// of this collection's own that `visit` may move into the namespace
    /// ([`Roaming`]). A failed `visit` drops its handle; the next collection
    /// reopens it.
    pub fn collect<R, O, V, K>(
        &mut self,
        hints: &[(u32, u32)],
        open: O,
        visit: V,
        keep: K,
    ) -> Outcome<R>
    where
        R: Send,
        O: Fn(u64) -> Result<T, String> + Sync,
        V: Fn(&mut T, &mut Roaming) -> Result<R, String> + Sync,
        K: Fn(&T) -> bool,
    {
        let found = self.discovery.namespaces(hints);
        let live: HashSet<u64> = found.iter().map(|ns| ns.inode).collect();
        self.open
            .retain(|inode, held| live.contains(inode) || keep(&held.handle));
        let mut failures: Vec<String> = Vec::new();
        self.refresh_some(&found, &open, &mut failures);
        let on_demand = self.open_new(&found, &open, &mut failures);
        let mut results = BTreeMap::new();
        for (inode, result) in self.visit_held(&visit) {
            match result {
                Ok(value) => {
                    results.insert(inode, value);
                }
                Err(cause) => {
                    self.open.remove(&inode);
                    failures.push(cause);
                }
            }
        }
        for namespace in on_demand {
            let read = enter_and_open(namespace, |inode| {
                let mut roaming = Roaming::on_a_visiting_thread();
                open(inode).and_then(|mut handle| visit(&mut handle, &mut roaming))
            });
            match read {
                Ok(value) => {
                    results.insert(namespace.inode, value);
                }
                Err(cause) => failures.push(cause),
            }
        }
        self.log_failures(&failures);
        Outcome {
            results: results.into_iter().collect(),
            failed: failures.len() as u64,
        }
    }

    /// Reopens a few of the handles older than [`REFRESH_AFTER`], oldest
    /// first. The new handle is opened before the old one is dropped, so
    /// whoever follows the namespace's lifetime through its handles never
    /// sees it go.
    fn refresh_some<O>(&mut self, found: &[Namespace], open: &O, failures: &mut Vec<String>)
    where
        O: Fn(u64) -> Result<T, String> + Sync,
    {
        let mut expired: Vec<(Instant, u64)> = self
            .open
            .iter()
            .filter(|(_, held)| held.opened_at.elapsed() >= REFRESH_AFTER)
            .map(|(&inode, held)| (held.opened_at, inode))
            .collect();
        expired.sort_unstable();
        let per_collection = (self.open.len() / 64).max(4);
        for (_, inode) in expired.into_iter().take(per_collection) {
            let reopened = found
                .iter()
                .find(|namespace| namespace.inode == inode)
                .map(|namespace| enter_and_open(namespace, open));
            match reopened {
                Some(Ok(handle)) => {
                    let held = Held {
                        handle,
                        opened_at: Instant::now(),
                    };
                    self.open.insert(inode, held); // drops the old one
                }
                Some(Err(cause)) => {
                    self.open.remove(&inode);
                    failures.push(cause);
                }
                // Kept by `keep` only: nothing to reopen it through.
                None => {
                    if let Some(held) = self.open.get_mut(&inode) {
                        held.opened_at = Instant::now();
                    }
                }
            }
        }
    }

    /// Opens handles in namespaces not held yet, while the budget allows;
    /// returns the namespaces to read on demand.
    fn open_new<'a, O>(
        &mut self,
        found: &'a [Namespace],
        open: &O,
        failures: &mut Vec<String>,
    ) -> Vec<&'a Namespace>
    where
        O: Fn(u64) -> Result<T, String> + Sync,
    {
        let mut on_demand = Vec::new();
        for namespace in found {
            if self.open.contains_key(&namespace.inode) {
                continue;
            }
            if self.open.len() >= self.max_open {
                on_demand.push(namespace);
                continue;
            }
            match enter_and_open(namespace, open) {
                Ok(handle) => {
                    let held = Held {
                        handle,
                        opened_at: Instant::now(),
                    };
                    self.open.insert(namespace.inode, held);
                }
                Err(cause) => failures.push(cause),
            }
        }
        if !on_demand.is_empty() && !self.logged_budget {
            self.logged_budget = true;
            tracing::info!(
                held = self.open.len(),
                on_demand = on_demand.len(),
                "more network namespaces than the open-file budget allows: the rest are opened on demand each collection (slower); raise LimitNOFILE to keep them all open"
            );
        }
        on_demand
    }

    /// Runs `visit` on the handle held for namespace `inode`, if one is
    /// held (a namespace read on demand has none between collections).
    pub fn visit_one<R>(&mut self, inode: u64, visit: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.open
            .get_mut(&inode)
            .map(|held| visit(&mut held.handle))
    }

    /// Runs `visit` on every held handle, on threads started for this
    /// collection (several when there are many handles), which may move
    /// between namespaces and end with it.
    fn visit_held<R, V>(&mut self, visit: &V) -> Vec<(u64, Result<R, String>)>
    where
        R: Send,
        V: Fn(&mut T, &mut Roaming) -> Result<R, String> + Sync,
    {
        let mut held: Vec<(u64, &mut T)> = self
            .open
            .iter_mut()
            .map(|(&inode, held)| (inode, &mut held.handle))
            .collect();
        if held.is_empty() {
            return Vec::new();
        }
        let workers = if held.len() < PARALLEL_FROM {
            1
        } else {
            *WORKERS
        };
        let chunk = held.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let running: Vec<_> = held
                .chunks_mut(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        let mut roaming = Roaming::on_a_visiting_thread();
                        part.iter_mut()
                            .map(|(inode, handle)| (*inode, visit(handle, &mut roaming)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            running
                .into_iter()
                .flat_map(|worker| worker.join().unwrap_or_default())
                .collect()
        })
    }

    /// Logs each new cause of failure once, with how many namespaces it hit.
    fn log_failures(&mut self, failures: &[String]) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for cause in failures {
            *counts.entry(cause.as_str()).or_default() += 1;
        }
        for (cause, namespaces) in counts {
            if self.logged_causes.insert(cause.to_string()) {
                tracing::warn!(
                    cause,
                    namespaces,
                    "cannot read some network namespaces; their listeners are missing (unassigned_port_network_namespaces{{state=\"failed\"}} counts them; this is logged once per cause)"
                );
            }
        }
    }
}

/// Enters `namespace` on a fresh thread and runs `open` there. The error
/// names the cause only (no path), so equal causes are logged together.
fn enter_and_open<T, O>(namespace: &Namespace, open: O) -> Result<T, String>
where
    T: Send,
    O: FnOnce(u64) -> Result<T, String> + Send,
{
    let inode = namespace.inode;
    let opened = enter::run_in(&namespace.path, move || open(inode)).map_err(|err| {
        tracing::debug!(path = %namespace.path.display(), error = %err, "cannot enter a network namespace");
        format!("cannot enter the namespace: {err}")
    })?;
    opened.inspect_err(|err| {
        tracing::debug!(path = %namespace.path.display(), error = %err, "cannot open a socket inside a network namespace");
    })
}
