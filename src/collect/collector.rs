//! The listener collection: one fresh look at the socket table per scrape.
//!
//! [`ListenerCollector::scrape`] does the work (sockets, owners, labels) and
//! returns a [`Snapshot`]; [`ListenerCollector::families`] turns a snapshot
//! into metric families. The scraper (`scrape.rs`) calls both and hands the
//! same snapshot to the landing page, so data flows one way. Faults are
//! counted in `unassigned_port_collection_errors_total` by stage and never
//! fail the scrape: what could be read is reported.

use crate::kernel::netns::Mode;
use crate::kernel::procfs::ProcRoot;
use crate::kernel::sock_diag::raw::RawKind;
use crate::owners::{Owner, OwnerFaults, OwnerResolver, ProcessDescriber, Wanted};
use crate::policy::allow::{OwnerFacts, Subject};
use crate::policy::exposure;
use crate::policy::registry::Transport;
use crate::policy::watch::WatchSet;
use crate::sockets::{Collected, KernelEvents, Listener, Opened, SeenRawSocket, SocketSource};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, Opts};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "unassigned_port";

/// Label names of `unassigned_port_listeners`, in order.
pub const LISTENER_LABELS: [&str; 15] = [
    "port",
    "protocol",
    "family",
    "address",
    "process",
    "pid",
    "user",
    "iana",
    "expected",
    "netns",
    "container_id",
    "pod_uid",
    "exposure",
    "dual_stack",
    "interface",
];

/// Label names of `unassigned_port_raw_sockets`, in order.
pub const RAW_SOCKET_LABELS: [&str; 11] = [
    "kind",
    "protocol",
    "interface",
    "bpf_filter",
    "process",
    "pid",
    "user",
    "netns",
    "container_id",
    "pod_uid",
    "expected",
];

/// Label names of `unassigned_port_forwarded_ports`, in order.
pub const FORWARDED_LABELS: [&str; 9] = [
    "port",
    "protocol",
    "netns",
    "mechanism",
    "to_address",
    "to_port",
    "to_netns",
    "container_id",
    "expected",
];

/// Label names of `unassigned_port_listener_process_info`, in order.
pub const PROCESS_INFO_LABELS: [&str; 9] = [
    "pid",
    "netns",
    "process",
    "exe",
    "exe_deleted",
    "ppid",
    "parent_process",
    "unit",
    "container_id",
];

/// The `netns` label of the exporter's own network namespace.
pub const HOST_NETNS: &str = "host";

/// The `netns` label value: "host", or the namespace's inode number.
pub fn netns_label(netns: Option<u64>) -> String {
    netns.map_or_else(|| HOST_NETNS.to_string(), |inode| inode.to_string())
}

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
    /// A namespace's NAT rules (nf_tables) could not be read.
    pub const NAT: &str = "nat";
    /// A namespace's interface addresses could not be read.
    pub const ADDRESSES: &str = "addresses";
    pub const ALL: [&str; 9] = [
        SOCKETS, OWNERS, PROCESS, SYSCTL, BACKEND, NETNS, RAW, NAT, ADDRESSES,
    ];
}

/// One series of `unassigned_port_listeners`: labels and socket count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListenerSeries {
    pub transport: Transport,
    pub port: u16,
    pub family: &'static str,
    pub address: String,
    pub process: String,
    pub pid: String,
    pub user: String,
    pub iana: &'static str,
    pub expected: bool,
    pub netns: String,
    pub container_id: String,
    pub pod_uid: String,
    /// `exposure::Exposure` of the bound address (and interface).
    pub exposure: &'static str,
    /// An IPv6 socket on `::` that accepts IPv4 too: "true", "false", or
    /// "unknown" where the backend cannot tell.
    pub dual_stack: &'static str,
    /// `SO_BINDTODEVICE` interface, "" for none.
    pub interface: String,
    pub sockets: u64,
}

impl ListenerSeries {
    pub fn label_values(&self) -> [String; 15] {
        [
            self.port.to_string(),
            self.transport.to_string(),
            self.family.to_string(),
            self.address.clone(),
            self.process.clone(),
            self.pid.clone(),
            self.user.clone(),
            self.iana.to_string(),
            self.expected.to_string(),
            self.netns.clone(),
            self.container_id.clone(),
            self.pod_uid.clone(),
            self.exposure.to_string(),
            self.dual_stack.to_string(),
            self.interface.clone(),
        ]
    }
}

/// One series of `unassigned_port_forwarded_ports`: a watched port the
/// kernel forwards elsewhere (`forwarded.rs`), and how many rules or
/// holders do it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForwardedSeries {
    pub transport: Transport,
    pub port: u16,
    /// Where the forwarding happens.
    pub netns: String,
    /// "redirect", "dnat" or "holder".
    pub mechanism: &'static str,
    pub to_address: String,
    pub to_port: String,
    pub to_netns: String,
    pub container_id: String,
    pub expected: bool,
    pub count: u64,
}

impl ForwardedSeries {
    pub fn label_values(&self) -> [String; 9] {
        [
            self.port.to_string(),
            self.transport.to_string(),
            self.netns.clone(),
            self.mechanism.to_string(),
            self.to_address.clone(),
            self.to_port.clone(),
            self.to_netns.clone(),
            self.container_id.clone(),
            self.expected.to_string(),
        ]
    }
}

/// One series of `unassigned_port_raw_sockets`: labels and socket count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawSocketSeries {
    pub kind: &'static str,
    pub protocol: String,
    pub interface: String,
    pub bpf_filter: &'static str,
    pub process: String,
    pub pid: String,
    pub user: String,
    pub netns: String,
    pub container_id: String,
    pub pod_uid: String,
    pub expected: bool,
    pub sockets: u64,
}

impl RawSocketSeries {
    pub fn label_values(&self) -> [String; 11] {
        [
            self.kind.to_string(),
            self.protocol.clone(),
            self.interface.clone(),
            self.bpf_filter.to_string(),
            self.process.clone(),
            self.pid.clone(),
            self.user.clone(),
            self.netns.clone(),
            self.container_id.clone(),
            self.pod_uid.clone(),
            self.expected.to_string(),
        ]
    }
}

/// One series of `unassigned_port_listener_process_info`: a process that
/// owns a reported listener or packet/raw socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcessInfoSeries {
    pub pid: u32,
    /// Namespace of the first socket it was found owning.
    pub netns: String,
    pub process: String,
    pub exe: String,
    pub exe_deleted: bool,
    pub ppid: String,
    pub parent_process: String,
    pub unit: String,
    pub container_id: String,
}

impl ProcessInfoSeries {
    fn new(pid: u32, netns: String, owner: &Owner) -> ProcessInfoSeries {
        let exe = owner.provenance.exe.as_ref();
        ProcessInfoSeries {
            pid,
            netns,
            process: owner.process.clone(),
            exe: exe.map(|exe| exe.path.clone()).unwrap_or_default(),
            exe_deleted: exe.is_some_and(|exe| exe.deleted),
            ppid: owner
                .provenance
                .ppid
                .map(|ppid| ppid.to_string())
                .unwrap_or_default(),
            parent_process: owner.provenance.parent_process.clone(),
            unit: owner.provenance.unit.clone(),
            container_id: owner.place.container_id.clone(),
        }
    }

    pub fn label_values(&self) -> [String; 9] {
        [
            self.pid.to_string(),
            self.netns.clone(),
            self.process.clone(),
            self.exe.clone(),
            self.exe_deleted.to_string(),
            self.ppid.clone(),
            self.parent_process.clone(),
            self.unit.clone(),
            self.container_id.clone(),
        ]
    }
}

/// What [`ListenerCollector`]'s labelling produced.
struct Labelled {
    listeners: Vec<ListenerSeries>,
    raw_sockets: Vec<RawSocketSeries>,
    processes: Vec<ProcessInfoSeries>,
}

/// The result of one collection.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Sorted by transport, port, then the other labels.
    pub listeners: Vec<ListenerSeries>,
    /// Packet and raw sockets, sorted by kind, protocol, then the rest.
    pub raw_sockets: Vec<RawSocketSeries>,
    /// One per process owning a listener or packet/raw socket, by pid.
    pub processes: Vec<ProcessInfoSeries>,
    /// Watched ports forwarded elsewhere (NAT rules, port holders).
    pub forwarded: Vec<ForwardedSeries>,
    pub duration: Duration,
    /// False when the socket table could not be read at all.
    pub success: bool,
    /// (netns label, value) for each namespace whose sysctl was read.
    pub unprivileged_port_start: Vec<(String, i64)>,
    /// Network namespaces read (the exporter's own included) and those that
    /// could not be read, in this collection.
    pub namespaces_read: u64,
    pub namespaces_failed: u64,
    /// Age of the oldest UDP listing reused from an earlier collection.
    pub udp_staleness: Duration,
}

/// Faults of one collection, counted by the scrape path only.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    sockets: u64,
    netns: u64,
    sysctl: u64,
    raw: u64,
    nat: u64,
    addresses: u64,
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
    watch: Arc<WatchSet>,
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
    /// Recent listen() callers from kernel events: searched first for owners.
    kernel_events: Option<Arc<KernelEvents>>,
}

impl ListenerCollector {
    /// Takes the opened source; a fallback from netlink to netstat2 is
    /// logged and counted here.
    pub fn new(watch: Arc<WatchSet>, opened: Opened, proc_root: ProcRoot) -> ListenerCollector {
        let errors = errors_counter();
        if let Some(reason) = &opened.fallback_reason {
            tracing::warn!(reason = %reason, "netlink sock_diag is not available; using the slower netstat2 backend");
            errors.with_label_values(&[stage::BACKEND]).inc();
        }
        ListenerCollector {
            watch,
            source: opened.source,
            netns_mode: opened.netns_mode,
            owners: Mutex::new(Owners {
                resolver: OwnerResolver::new(proc_root.clone()),
                describer: ProcessDescriber::new(proc_root.clone()),
            }),
            proc_root,
            errors,
            warned_denied: AtomicBool::new(false),
            kernel_events: opened.kernel_events,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.source.name()
    }

    pub fn netns_mode(&self) -> Mode {
        self.netns_mode
    }

    pub fn watch(&self) -> &WatchSet {
        &self.watch
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
        let mut collected = Collected::default();
        let success = match self.source.collect(&self.watch, &mut collected) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(backend = self.source.name(), error = %err, "cannot read the socket table");
                faults.sockets += 1;
                false
            }
        };
        faults.netns = collected.namespace_faults;
        faults.raw = collected.raw_faults;
        let labelled = self.label(&collected, &mut faults.owners);
        let forwarded = self.forwarded(&collected, &labelled, &mut faults);
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
                .map(|&(inode, value)| (netns_label(Some(inode)), value)),
        );
        let snapshot = Snapshot {
            listeners: labelled.listeners,
            raw_sockets: labelled.raw_sockets,
            processes: labelled.processes,
            forwarded,
            duration: started.elapsed(),
            success,
            unprivileged_port_start,
            namespaces_read: collected.namespaces_read,
            namespaces_failed: collected.namespace_faults,
            udp_staleness: collected.udp_staleness,
        };
        (snapshot, faults)
    }

    /// The forwarded-port series (`forwarded.rs`); counts namespaces whose
    /// NAT rules or addresses could not be read.
    fn forwarded(
        &self,
        collected: &Collected,
        labelled: &Labelled,
        faults: &mut Faults,
    ) -> Vec<ForwardedSeries> {
        for facts in &collected.namespaces {
            if let Err(err) = &facts.nat_rules {
                faults.nat += 1;
                tracing::debug!(netns = %netns_label(facts.netns), error = %err, "cannot read NAT rules");
            }
            if let Err(err) = &facts.addresses {
                faults.addresses += 1;
                tracing::debug!(netns = %netns_label(facts.netns), error = %err, "cannot read interface addresses");
            }
        }
        let cmdline = |pid: u32| self.proc_root.cmdline(pid);
        super::forwarded::series(&super::forwarded::Inputs {
            watch: &self.watch,
            namespaces: &collected.namespaces,
            listeners: &labelled.listeners,
            processes: &labelled.processes,
            cmdline: &cmdline,
        })
    }

    /// Finds the owner of every listener and packet/raw socket, and turns
    /// them into counted series, plus one info series per owning process.
    fn label(&self, collected: &Collected, faults: &mut OwnerFaults) -> Labelled {
        let (listener_pids, raw_pids, described) =
            self.find_owners(&collected.listeners, &collected.raw_sockets, faults);
        let nobody = Owner::default();
        let owner_of =
            |pid: Option<u32>| pid.and_then(|pid| described.get(&pid)).unwrap_or(&nobody);
        // pid -> netns label of the first socket it owns.
        let mut owning: BTreeMap<u32, String> = BTreeMap::new();
        let addresses: HashMap<Option<u64>, &[IpAddr]> = collected
            .namespaces
            .iter()
            .filter_map(|facts| Some((facts.netns, facts.addresses.as_deref().ok()?)))
            .collect();
        let mut listeners: BTreeMap<ListenerSeries, u64> = BTreeMap::new();
        for (listener, pid) in collected.listeners.iter().zip(listener_pids) {
            if let Some(pid) = pid {
                owning
                    .entry(pid)
                    .or_insert_with(|| netns_label(listener.netns));
            }
            *listeners
                .entry(self.series(
                    listener,
                    owner_of(pid),
                    addresses.get(&listener.netns).copied(),
                ))
                .or_default() += 1;
        }
        let mut raw_sockets: BTreeMap<RawSocketSeries, u64> = BTreeMap::new();
        for (seen, pid) in collected.raw_sockets.iter().zip(raw_pids) {
            if let Some(pid) = pid {
                owning.entry(pid).or_insert_with(|| netns_label(seen.netns));
            }
            *raw_sockets
                .entry(self.raw_series(seen, owner_of(pid)))
                .or_default() += 1;
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
            .kernel_events
            .as_ref()
            .map(|events| {
                events
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

    fn raw_series(&self, seen: &SeenRawSocket, owner: &Owner) -> RawSocketSeries {
        let socket = &seen.found.socket;
        let subject = match socket.kind {
            RawKind::Packet => Subject::Packet,
            RawKind::Raw => Subject::Raw,
        };
        RawSocketSeries {
            kind: socket.kind.as_str(),
            protocol: socket.protocol_label().into_owned(),
            interface: seen.found.interface.clone(),
            bpf_filter: socket.bpf_filter.as_str(),
            process: owner.process.clone(),
            pid: owner.pid.map(|p| p.to_string()).unwrap_or_default(),
            user: owner.user.clone(),
            netns: netns_label(seen.netns),
            container_id: owner.place.container_id.clone(),
            pod_uid: owner.place.pod_uid.clone(),
            expected: self.watch.is_expected_subject(subject, &owner.facts()),
            sockets: 0,
        }
    }

    /// `addresses`: the listener's namespace's (for a wildcard's exposure).
    fn series(
        &self,
        listener: &Listener,
        owner: &Owner,
        addresses: Option<&[IpAddr]>,
    ) -> ListenerSeries {
        let exposure = exposure::classify_in_namespace(
            listener.address,
            &listener.interface,
            listener.binding.dual_stack(listener.address),
            addresses,
        );
        ListenerSeries {
            transport: listener.transport,
            port: listener.port,
            family: listener.family(),
            address: listener.address.to_string(),
            process: owner.process.clone(),
            pid: owner.pid.map(|p| p.to_string()).unwrap_or_default(),
            user: owner.user.clone(),
            iana: self
                .watch
                .iana_status(listener.transport, listener.port)
                .as_str(),
            expected: self.watch.is_expected_subject(
                Subject::Listener(listener.transport, listener.port),
                &OwnerFacts {
                    exposure: Some(exposure),
                    ..owner.facts()
                },
            ),
            netns: netns_label(listener.netns),
            container_id: owner.place.container_id.clone(),
            pod_uid: owner.place.pod_uid.clone(),
            exposure: exposure.as_str(),
            dual_stack: listener.binding.dual_stack_label(listener.address),
            interface: listener.interface.clone(),
            sockets: 0,
        }
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
        self.count_error(stage::NAT, faults.nat);
        self.count_error(stage::ADDRESSES, faults.addresses);
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

    /// The metric families of one snapshot, plus the error counter.
    pub fn families(&self, snapshot: &Snapshot) -> Vec<MetricFamily> {
        let listeners = listeners_vec();
        for series in &snapshot.listeners {
            let values = series.label_values();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            listeners
                .with_label_values(&values)
                .set(series.sockets as f64);
        }
        let mut families = listeners.collect();
        let raw_sockets = raw_sockets_vec();
        for series in &snapshot.raw_sockets {
            let values = series.label_values();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            raw_sockets
                .with_label_values(&values)
                .set(series.sockets as f64);
        }
        families.extend(raw_sockets.collect());
        let processes = process_info_vec();
        for series in &snapshot.processes {
            let values = series.label_values();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            processes.with_label_values(&values).set(1.0);
        }
        families.extend(processes.collect());
        let forwarded = forwarded_vec();
        for series in &snapshot.forwarded {
            let values = series.label_values();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            forwarded
                .with_label_values(&values)
                .set(series.count as f64);
        }
        families.extend(forwarded.collect());
        let single = |opts: Opts, value: f64| {
            let gauge = GaugeVec::new(opts, &[]).unwrap();
            gauge.with_label_values::<&str>(&[]).set(value);
            gauge.collect()
        };
        families.extend(single(duration_opts(), snapshot.duration.as_secs_f64()));
        families.extend(single(
            success_opts(),
            f64::from(u8::from(snapshot.success)),
        ));
        let unprivileged = unprivileged_vec();
        for (netns, value) in &snapshot.unprivileged_port_start {
            unprivileged
                .with_label_values(&[netns.as_str()])
                .set(*value as f64);
        }
        families.extend(unprivileged.collect());
        let coverage = coverage_vec();
        for (transport, covered) in self.source.coverage() {
            coverage
                .with_label_values(&[transport.as_str()])
                .set(f64::from(u8::from(covered)));
        }
        families.extend(coverage.collect());
        let namespaces = namespaces_vec();
        for (state, count) in [
            ("read", snapshot.namespaces_read),
            ("failed", snapshot.namespaces_failed),
        ] {
            namespaces.with_label_values(&[state]).set(count as f64);
        }
        families.extend(namespaces.collect());
        if self.netns_mode == Mode::All {
            families.extend(single(
                udp_staleness_opts(),
                snapshot.udp_staleness.as_secs_f64(),
            ));
        }
        families.extend(self.errors.collect());
        families
    }
}

fn listeners_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "listeners",
            "Listening sockets on a watched port (IANA unassigned, unregistered or added), by owner.",
        )
        .namespace(NAMESPACE),
        &LISTENER_LABELS,
    )
    .unwrap()
}

fn raw_sockets_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "raw_sockets",
            "Packet (AF_PACKET) and raw IP sockets, which listen without a port, by kind, protocol, BPF filter and owner.",
        )
        .namespace(NAMESPACE),
        &RAW_SOCKET_LABELS,
    )
    .unwrap()
}

fn process_info_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "listener_process_info",
            "Always 1, one per process owning a reported listener or packet/raw socket; labels say its executable (and whether it was deleted), parent and systemd unit.",
        )
        .namespace(NAMESPACE),
        &PROCESS_INFO_LABELS,
    )
    .unwrap()
}

fn forwarded_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "forwarded_ports",
            "Watched ports the kernel forwards elsewhere: NAT rules (redirect, dnat) and container runtimes' port holders (holder), with where they lead; the value counts rules or holders.",
        )
        .namespace(NAMESPACE),
        &FORWARDED_LABELS,
    )
    .unwrap()
}

fn duration_opts() -> Opts {
    Opts::new(
        "collection_duration_seconds",
        "Time the last collection took.",
    )
    .namespace(NAMESPACE)
}

fn success_opts() -> Opts {
    Opts::new(
        "collection_success",
        "1 if the last collection read the socket table, 0 if it could not.",
    )
    .namespace(NAMESPACE)
}

fn unprivileged_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "unprivileged_port_start",
            "net.ipv4.ip_unprivileged_port_start per network namespace: ports from here up can be bound by any user.",
        )
        .namespace(NAMESPACE),
        &["netns"],
    )
    .unwrap()
}

fn udp_staleness_opts() -> Opts {
    Opts::new(
        "network_namespace_udp_staleness_seconds",
        "Age of the oldest UDP listing of another network namespace in the last collection: with more than 256 namespaces each one's UDP sockets are re-read every 4th collection, in turns (0 when all are fresh). TCP is always exact.",
    )
    .namespace(NAMESPACE)
}

fn namespaces_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "network_namespaces",
            "Network namespaces in the last collection, by state: read (the exporter's own included) or failed (could not be entered or read).",
        )
        .namespace(NAMESPACE),
        &["state"],
    )
    .unwrap()
}

fn coverage_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "transport_coverage",
            "1 if listeners of this transport are collected, 0 if the backend or kernel cannot see them.",
        )
        .namespace(NAMESPACE),
        &["protocol"],
    )
    .unwrap()
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
