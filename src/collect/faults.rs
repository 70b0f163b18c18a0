//! Faults of a collection: what went wrong at which stage, counted in
//! `unassigned_port_collection_errors_total{stage}` and logged once where a
//! warning tells the operator what to do. A fault never fails a scrape.

use crate::model::NAMESPACE;
use crate::owners::OwnerFaults;
use prometheus::{IntCounterVec, Opts};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Faults of one collection, returned with it; counted by the scrape path
/// only, so samples never inflate the counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub sockets: u64,
    pub netns: u64,
    pub sysctl: u64,
    pub raw: u64,
    pub nat: u64,
    pub addresses: u64,
    pub owners: OwnerFaults,
}

/// `collection_errors_total{stage}` and what has been said about it.
pub struct FaultCounter {
    errors: IntCounterVec,
    /// Set once we have said that owners are hidden, so the log says it once.
    warned_denied: AtomicBool,
    /// Set once we have said that NAT rules need CAP_NET_ADMIN.
    warned_nat: AtomicBool,
}

impl FaultCounter {
    /// The counter with every stage at 0.
    pub fn new() -> FaultCounter {
        let errors = IntCounterVec::new(
            Opts::new(
                "collection_errors_total",
                "Faults during collection, by stage; the scrape still reports what it could read.",
            )
            .namespace(NAMESPACE),
            &["stage"],
        )
        .expect("a valid metric definition");
        for stage in stage::ALL {
            errors.with_label_values(&[stage]);
        }
        FaultCounter {
            errors,
            warned_denied: AtomicBool::new(false),
            warned_nat: AtomicBool::new(false),
        }
    }

    /// The counter, to register beside the other collectors.
    pub fn collector(&self) -> IntCounterVec {
        self.errors.clone()
    }

    pub fn count(&self, stage: &str, n: u64) {
        if n > 0 {
            self.errors.with_label_values(&[stage]).inc_by(n);
        }
    }

    /// NAT rules cannot be read without CAP_NET_ADMIN: said once, not
    /// counted as a fault each scrape.
    pub fn nat_needs_privilege(&self, reason: &str) {
        if !self.warned_nat.swap(true, Ordering::Relaxed) {
            tracing::warn!(reason = %reason, "grant CAP_NET_ADMIN to see NAT rules that forward watched ports (port holders of container runtimes are still reported)");
        }
    }

    /// Counts and logs one scrape's faults.
    pub fn report(&self, faults: &Faults) {
        self.count(stage::SOCKETS, faults.sockets);
        self.count(stage::NETNS, faults.netns);
        self.count(stage::SYSCTL, faults.sysctl);
        self.count(stage::RAW, faults.raw);
        self.count(stage::NAT, faults.nat);
        self.count(stage::ADDRESSES, faults.addresses);
        let owners = &faults.owners;
        self.count(stage::OWNERS, owners.unfound);
        self.count(stage::PROCESS, owners.vanished);
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

impl Default for FaultCounter {
    fn default() -> FaultCounter {
        FaultCounter::new()
    }
}
