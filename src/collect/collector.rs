//! The listener collection: one fresh look at the socket table per scrape.
//!
//! [`ListenerCollector::scrape`] reads the sockets from its source, finds
//! their owners, names them through `crate::model` and returns a
//! [`Snapshot`] value; `crate::metrics::snapshot` renders it and the landing
//! page shows the same value. Faults are counted in
//! `unassigned_port_collection_errors_total` by stage and never fail the
//! scrape: what could be read is reported.

use crate::kernel::netns::Mode;
use crate::kernel::procfs::ProcRoot;
use crate::model::{
    HOST_NETNS, Judge, ListenerSeries, NAMESPACE, NetnsNamer, ProcessInfoSeries, RawSocketSeries,
    Snapshot,
};
use crate::owners::{ExeHashes, Owner, OwnerFaults, OwnerResolver, ProcessDescriber, Wanted};
use crate::sockets::{ChangeHints, Collected, Listener, Opened, SeenRawSocket, SocketSource};
use prometheus::{IntCounterVec, Opts};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Stages of `unassigned_port_collection_errors_total`.
pub mod stage {
    /// The socket table could not be read (the scrape reports success 0).
    pub const SOCKETS: &str = "sockets";
    /// A listener's process could not be found (no privilege, or it exited).
    pub const OWNERS: &str = "owners";
    /// A process vanished before its name and user were read.
    pub const PROCESS: &str = "process";
    /// `ip_unprivileged_port_start` could not be read.
    pub const SYSCTL: &str = "sysctl";
    /// `--collector.backend=auto` had to fall back from netlink to netstat2.
    pub const BACKEND: &str = "backend";
    /// Another network namespace could not be entered or read.
    pub const NETNS: &str = "netns";
    /// A namespace's packet and raw sockets could not be read.
    pub const RAW: &str = "raw";
    pub const ALL: [&str; 7] = [SOCKETS, OWNERS, PROCESS, SYSCTL, BACKEND, NETNS, RAW];
}

/// What [`ListenerCollector`]'s labelling produced.
struct Labelled {
    listeners: Vec<ListenerSeries>,
    raw_sockets: Vec<RawSocketSeries>,
    processes: Vec<ProcessInfoSeries>,
}

/// Faults of one collection, counted by the scrape path only.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    sockets: u64,
    netns: u64,
    sysctl: u64,
    raw: u64,
    owners: OwnerFaults,
}

/// The owner search and description, behind one lock: collections share
/// their caches.
struct Owners {
    resolver: OwnerResolver,
    describer: ProcessDescriber,
}

/// Collects listeners on watched ports. The scrape path
/// ([`ListenerCollector::scrape`]) counts faults; the sampler's path
/// ([`ListenerCollector::sample`]) only looks.
pub struct ListenerCollector {
    /// Which ports are reported, and which listeners are expected.
    judge: Judge,
    /// The `netns` label, decided as the event path decides it.
    namer: NetnsNamer,
    /// Where listening sockets come from (netlink or netstat2).
    source: Box<dyn SocketSource>,
    /// Which network namespaces the source reads (`collector_info`).
    netns_mode: Mode,
    /// The exporter's own sysctls are read through it.
    proc_root: ProcRoot,
    /// Inode -> pid search and pid -> labels, with their caches.
    owners: Mutex<Owners>,
    /// `collection_errors_total{stage}`; owned here, reported after each
    /// collection so a scrape's counts include that scrape's faults.
    errors: IntCounterVec,
    /// Set once we have said that owners are hidden, so the log says it once.
    warned_denied: AtomicBool,
    /// The event side's view: recent listen() callers are searched first
    /// for owners.
    hints: Option<Arc<dyn ChangeHints>>,
    /// The event trail: a line for each packet/raw socket first seen.
    #[cfg(target_os = "linux")]
    trail: Option<crate::events::trail::Trail>,
}

impl ListenerCollector {
    /// Takes the opened source; a fallback from netlink to netstat2 is
    /// logged and counted here.
    pub fn new(
        judge: Judge,
        namer: NetnsNamer,
        opened: Opened,
        proc_root: ProcRoot,
        hints: Option<Arc<dyn ChangeHints>>,
    ) -> ListenerCollector {
        let errors = errors_counter();
        if let Some(reason) = &opened.fallback_reason {
            tracing::warn!(reason = %reason, "netlink sock_diag is not available; using the slower netstat2 backend");
            errors.with_label_values(&[stage::BACKEND]).inc();
        }
        ListenerCollector {
            judge,
            namer,
            source: opened.source,
            netns_mode: opened.netns_mode,
            owners: Mutex::new(Owners {
                resolver: OwnerResolver::new(proc_root.clone()),
                describer: ProcessDescriber::new(proc_root.clone()),
            }),
            proc_root,
            errors,
            warned_denied: AtomicBool::new(false),
            hints,
            #[cfg(target_os = "linux")]
            trail: None,
        }
    }

    /// Owners' `exe_sha256` from the shared hash cache.
    pub fn with_exe_hashes(mut self, hashes: ExeHashes) -> ListenerCollector {
        let owners = self.owners.get_mut().unwrap_or_else(|p| p.into_inner());
        owners.describer = ProcessDescriber::new(self.proc_root.clone()).with_exe_hashes(hashes);
        self
    }

    /// Writes packet and raw sockets to the event trail when first seen.
    #[cfg(target_os = "linux")]
    pub fn with_trail(mut self, trail: Option<crate::events::trail::Trail>) -> ListenerCollector {
        self.trail = trail;
        self
    }

    pub fn backend_name(&self) -> &'static str {
        self.source.name()
    }

    pub fn netns_mode(&self) -> Mode {
        self.netns_mode
    }

    pub fn judge(&self) -> &Judge {
        &self.judge
    }

    /// `collection_errors_total{stage}`, registered beside the other
    /// collectors so a scrape renders its own counts.
    pub fn errors(&self) -> IntCounterVec {
        self.errors.clone()
    }

    /// One collection for a scrape: faults are logged and counted.
    pub fn scrape(&self) -> Snapshot {
        let (snapshot, faults) = self.look();
        self.report(&faults);
        snapshot
    }

    /// One collection for the background sampler: nothing is counted, so
    /// samples do not inflate `collection_errors_total`.
    pub fn sample(&self) -> Snapshot {
        self.look().0
    }

    /// Reads the socket table once and labels what it finds.
    fn look(&self) -> (Snapshot, Faults) {
        let started = Instant::now();
        let mut faults = Faults::default();
        let (collected, success) = match self.source.collect(self.judge.watch()) {
            Ok(collected) => (collected, true),
            Err(err) => {
                tracing::warn!(backend = self.source.name(), error = %err, "cannot read the socket table");
                faults.sockets += 1;
                (Collected::default(), false)
            }
        };
        faults.netns = collected.namespace_faults;
        faults.raw = collected.raw_faults;
        let labelled = self.label(&collected, &mut faults.owners);
        let mut unprivileged_port_start = Vec::new();
        match self.proc_root.unprivileged_port_start() {
            Ok(Some(value)) => unprivileged_port_start.push((HOST_NETNS.to_string(), value)),
            Ok(None) => {} // kernels before 4.11 and other systems
            Err(err) => {
                tracing::debug!(error = %err, "cannot read a sysctl");
                faults.sysctl += 1;
            }
        }
        unprivileged_port_start.extend(
            collected
                .unprivileged_port_start
                .iter()
                .map(|&(inode, value)| (self.namer.label(Some(inode)), value)),
        );
        let snapshot = Snapshot {
            listeners: labelled.listeners,
            raw_sockets: labelled.raw_sockets,
            processes: labelled.processes,
            duration: started.elapsed(),
            success,
            unprivileged_port_start,
            namespaces_read: collected.namespaces_read,
            namespaces_failed: collected.namespace_faults,
            udp_staleness: collected.udp_staleness,
            coverage: self.source.coverage(),
            netns_mode: self.netns_mode,
        };
        (snapshot, faults)
    }

    /// Finds the owner of every listener and packet/raw socket, and turns
    /// them into counted series, plus one info series per owning process.
    fn label(&self, collected: &Collected, faults: &mut OwnerFaults) -> Labelled {
        let (listener_pids, raw_pids, described) =
            self.find_owners(&collected.listeners, &collected.raw_sockets, faults);
        #[cfg(target_os = "linux")]
        if let Some(trail) = &self.trail {
            let (sockets, judge) = (&collected.raw_sockets, &self.judge);
            trail.raw_sockets(sockets, &raw_pids, &described, judge, &self.namer);
        }
        let nobody = Owner::default();
        let owner_of =
            |pid: Option<u32>| pid.and_then(|pid| described.get(&pid)).unwrap_or(&nobody);
        // pid -> netns label of the first socket it owns.
        let mut owning: BTreeMap<u32, String> = BTreeMap::new();
        let mut listeners: BTreeMap<ListenerSeries, u64> = BTreeMap::new();
        for (listener, pid) in collected.listeners.iter().zip(listener_pids) {
            if let Some(pid) = pid {
                owning
                    .entry(pid)
                    .or_insert_with(|| self.namer.label(listener.netns));
            }
            let series = ListenerSeries::new(listener, owner_of(pid), &self.judge, &self.namer);
            *listeners.entry(series).or_default() += 1;
        }
        let mut raw_sockets: BTreeMap<RawSocketSeries, u64> = BTreeMap::new();
        for (seen, pid) in collected.raw_sockets.iter().zip(raw_pids) {
            if let Some(pid) = pid {
                owning
                    .entry(pid)
                    .or_insert_with(|| self.namer.label(seen.netns));
            }
            let series = RawSocketSeries::new(seen, owner_of(pid), &self.judge, &self.namer);
            *raw_sockets.entry(series).or_default() += 1;
        }
        let processes = owning
            .into_iter()
            .filter_map(|(pid, netns)| {
                let owner = described.get(&pid)?;
                // A process that vanished before it was described has no facts.
                (!owner.process.is_empty()).then(|| ProcessInfoSeries::new(pid, netns, owner))
            })
            .collect();
        Labelled {
            listeners: listeners
                .into_iter()
                .map(|(mut series, sockets)| {
                    series.sockets = sockets;
                    series
                })
                .collect(),
            raw_sockets: raw_sockets
                .into_iter()
                .map(|(mut series, sockets)| {
                    series.sockets = sockets;
                    series
                })
                .collect(),
            processes,
        }
    }

    /// The pid of each listener and of each packet/raw socket (in order),
    /// and the description of each pid. One search for all inodes: the
    /// resolver forgets places of inodes it is not asked about.
    #[allow(clippy::type_complexity)]
    fn find_owners(
        &self,
        listeners: &[Listener],
        raw_sockets: &[SeenRawSocket],
        faults: &mut OwnerFaults,
    ) -> (Vec<Option<u32>>, Vec<Option<u32>>, HashMap<u32, Owner>) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
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
        let likely: Vec<u32> = self
            .hints
            .as_ref()
            .map(|hints| {
                hints
                    .recent_listeners()
                    .into_iter()
                    .map(|(pid, _)| pid)
                    .collect()
            })
            .unwrap_or_default();
        let found = owners.resolver.find_pids(&wanted, &likely, faults);
        // Lowest pid first, like the fd search (see owners/mod.rs).
        let listener_pids: Vec<Option<u32>> = listeners
            .iter()
            .map(|listener| match &listener.known_pids {
                Some(pids) => pids.first().copied(),
                None => found.get(&listener.inode).copied(),
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
        let described = owners.describer.describe(&unique, faults);
        (listener_pids, raw_pids, described)
    }

    fn count_error(&self, stage: &str, n: u64) {
        if n > 0 {
            self.errors.with_label_values(&[stage]).inc_by(n);
        }
    }

    /// Counts and logs one scrape's faults.
    fn report(&self, faults: &Faults) {
        self.count_error(stage::SOCKETS, faults.sockets);
        self.count_error(stage::NETNS, faults.netns);
        self.count_error(stage::SYSCTL, faults.sysctl);
        self.count_error(stage::RAW, faults.raw);
        let owners = &faults.owners;
        self.count_error(stage::OWNERS, owners.unfound);
        self.count_error(stage::PROCESS, owners.vanished);
        if owners.unfound > 0 {
            if owners.denied > 0 && !self.warned_denied.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    hidden_processes = owners.denied,
                    "cannot read other processes' /proc/PID/fd: listeners are reported with empty process, pid and user labels; grant CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH) or run as root to see owners"
                );
            }
            tracing::debug!(
                sockets = owners.unfound,
                "listeners without a known process"
            );
        }
        if owners.vanished > 0 {
            tracing::debug!(
                processes = owners.vanished,
                "processes exited before they could be described"
            );
        }
    }
}

/// The `collection_errors_total{stage}` counter, with every stage at 0.
fn errors_counter() -> IntCounterVec {
    let errors = IntCounterVec::new(
        Opts::new(
            "collection_errors_total",
            "Faults during collection, by stage; the scrape still reports what it could read.",
        )
        .namespace(NAMESPACE),
        &["stage"],
    )
    .unwrap();
    for stage in stage::ALL {
        errors.with_label_values(&[stage]);
    }
    errors
}
