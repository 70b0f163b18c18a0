//! The Prometheus collector: one fresh look at the socket table per scrape.
//!
//! [`ListenerCollector::snapshot`] does the work (sockets, owners, labels) and
//! returns a [`Snapshot`]; the `Collector` impl turns the snapshot into metric
//! families. Faults are counted in `unassigned_port_collection_errors_total`
//! by stage and never fail the scrape: what could be read is reported.

use crate::owners::{Owner, OwnerFaults, OwnerResolver, Wanted};
use crate::registry::Transport;
use crate::sockets::{Collected, Listener, SocketSource};
use crate::watch::WatchSet;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, Opts};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const NAMESPACE: &str = "unassigned_port";

/// Label names of `unassigned_port_listeners`, in order.
pub const LISTENER_LABELS: [&str; 12] = [
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
    pub const ALL: [&str; 6] = [SOCKETS, OWNERS, PROCESS, SYSCTL, BACKEND, NETNS];
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
    pub sockets: u64,
}

impl ListenerSeries {
    pub fn label_values(&self) -> [String; 12] {
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
        ]
    }
}

/// The result of one collection.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Sorted by transport, port, then the other labels.
    pub listeners: Vec<ListenerSeries>,
    pub duration: Duration,
    /// False when the socket table could not be read at all.
    pub success: bool,
    /// (netns label, value) for each namespace whose sysctl was read.
    pub unprivileged_port_start: Vec<(String, i64)>,
}

/// Collects listeners on watched ports; registered once with the registry.
pub struct ListenerCollector {
    watch: Arc<WatchSet>,
    source: Box<dyn SocketSource>,
    owners: Mutex<OwnerResolver>,
    procfs: PathBuf,
    errors: IntCounterVec,
    descs: Vec<Desc>,
    /// Set once we have said that owners are hidden, so the log says it once.
    warned_denied: AtomicBool,
    last: Mutex<Option<Arc<Snapshot>>>,
}

impl ListenerCollector {
    /// `errors` is the `collection_errors_total` counter; the collector
    /// reports it after each collection, so a scrape's counts include that
    /// scrape's faults (the registry gathers collectors in no fixed order).
    pub fn new(
        watch: Arc<WatchSet>,
        source: Box<dyn SocketSource>,
        procfs: PathBuf,
        errors: IntCounterVec,
    ) -> ListenerCollector {
        let descs = [
            listeners_vec(),
            GaugeVec::new(duration_opts(), &[]).unwrap(),
            GaugeVec::new(success_opts(), &[]).unwrap(),
            unprivileged_vec(),
            coverage_vec(),
        ]
        .iter()
        .flat_map(|vec| vec.desc().into_iter().cloned())
        .chain(errors.desc().into_iter().cloned())
        .collect();
        ListenerCollector {
            watch,
            source,
            owners: Mutex::new(OwnerResolver::new(procfs.clone())),
            procfs,
            errors,
            descs,
            warned_denied: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        self.source.name()
    }

    pub fn watch(&self) -> &WatchSet {
        &self.watch
    }

    /// The most recent snapshot, if any scrape has run.
    pub fn last_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count_error(&self, stage: &str, n: u64) {
        if n > 0 {
            self.errors.with_label_values(&[stage]).inc_by(n);
        }
    }

    /// Reads the socket table once and labels what it finds.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        let started = Instant::now();
        let mut collected = Collected::default();
        let success = match self.source.collect(&self.watch, &mut collected) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(backend = self.source.name(), error = %err, "cannot read the socket table");
                self.count_error(stage::SOCKETS, 1);
                false
            }
        };
        self.count_error(stage::NETNS, collected.namespace_faults);
        let series = self.label(&collected.listeners);
        let mut unprivileged_port_start: Vec<(String, i64)> = self
            .read_unprivileged_port_start()
            .map(|value| (HOST_NETNS.to_string(), value))
            .into_iter()
            .collect();
        unprivileged_port_start.extend(
            collected
                .unprivileged_port_start
                .iter()
                .map(|&(inode, value)| (netns_label(Some(inode)), value)),
        );
        let snapshot = Arc::new(Snapshot {
            listeners: series,
            duration: started.elapsed(),
            success,
            unprivileged_port_start,
        });
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        snapshot
    }

    fn label(&self, listeners: &[Listener]) -> Vec<ListenerSeries> {
        let mut faults = OwnerFaults::default();
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        // Backends that already know the pids (netstat2) skip the fd search.
        let wanted: Vec<Wanted> = listeners
            .iter()
            .filter(|l| l.known_pids.is_none())
            .map(|l| Wanted {
                inode: l.inode,
                uid: l.uid,
            })
            .collect();
        let found = owners.find_pids(&wanted, &mut faults);
        // Lowest pid first, like the fd search (see owners.rs).
        let pid_of = |listener: &Listener| match &listener.known_pids {
            Some(pids) => pids.first().copied(),
            None => found.get(&listener.inode).copied(),
        };
        let pids: Vec<Option<u32>> = listeners.iter().map(pid_of).collect();
        // netstat2 finding no pid is the same fault as an unplaced inode.
        let known_unfound = listeners
            .iter()
            .filter(|l| l.known_pids.as_ref().is_some_and(Vec::is_empty))
            .count() as u64;
        faults.unfound += known_unfound;
        let mut unique: Vec<u32> = pids.iter().flatten().copied().collect();
        unique.sort_unstable();
        unique.dedup();
        let described = owners.describe(&unique, &mut faults);
        drop(owners);
        self.report_faults(&faults);

        let mut counted: BTreeMap<ListenerSeries, u64> = BTreeMap::new();
        let nobody = Owner::default();
        for (listener, pid) in listeners.iter().zip(pids) {
            let owner = pid.and_then(|pid| described.get(&pid)).unwrap_or(&nobody);
            let key = ListenerSeries {
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
                expected: self
                    .watch
                    .is_expected(listener.transport, listener.port, &owner.process),
                netns: netns_label(listener.netns),
                container_id: owner.place.container_id.clone(),
                pod_uid: owner.place.pod_uid.clone(),
                sockets: 0,
            };
            *counted.entry(key).or_default() += 1;
        }
        counted
            .into_iter()
            .map(|(mut series, sockets)| {
                series.sockets = sockets;
                series
            })
            .collect()
    }

    fn report_faults(&self, faults: &OwnerFaults) {
        self.count_error(stage::OWNERS, faults.unfound);
        self.count_error(stage::PROCESS, faults.vanished);
        if faults.unfound > 0 {
            if faults.denied > 0 && !self.warned_denied.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    hidden_processes = faults.denied,
                    "cannot read other processes' /proc/PID/fd: listeners are reported with empty process, pid and user labels; grant CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH) or run as root to see owners"
                );
            }
            tracing::debug!(
                sockets = faults.unfound,
                "listeners without a known process"
            );
        }
        if faults.vanished > 0 {
            tracing::debug!(
                processes = faults.vanished,
                "processes exited before they could be described"
            );
        }
    }

    fn read_unprivileged_port_start(&self) -> Option<i64> {
        let path = self.procfs.join("sys/net/ipv4/ip_unprivileged_port_start");
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse() {
                Ok(value) => Some(value),
                Err(_) => {
                    self.count_error(stage::SYSCTL, 1);
                    None
                }
            },
            // Kernels before 4.11 and other systems have no such setting.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "cannot read sysctl");
                self.count_error(stage::SYSCTL, 1);
                None
            }
        }
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

/// The shared `collection_errors_total{stage}` counter, with every stage at 0.
pub fn errors_counter() -> IntCounterVec {
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

impl Collector for ListenerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.snapshot();
        let listeners = listeners_vec();
        for series in &snapshot.listeners {
            let values = series.label_values();
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            listeners
                .with_label_values(&values)
                .set(series.sockets as f64);
        }
        let mut families = listeners.collect();
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
        families.extend(self.errors.collect());
        families
    }
}
