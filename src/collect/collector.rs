//! The listener collection: one fresh look at the socket table per scrape.
//!
//! [`ListenerCollector::scrape`] reads the sockets from its source, finds
//! their owners, names them through `crate::model` and returns a
//! [`Snapshot`] value; `crate::metrics::snapshot` renders it and the landing
//! page shows the same value. Faults are counted in
//! `unassigned_port_collection_errors_total` by stage and never fail the
//! scrape: what could be read is reported.

use super::faults::{FaultCounter, Faults, stage};
use super::owners::{Found, OwnerSearch};
use super::rpc::RpcPrograms;
use crate::kernel::netns::Mode;
use crate::kernel::nftables::Unread;
use crate::kernel::procfs::ProcRoot;
use crate::model::{
    ForwardedSeries, HOST_NETNS, Judge, ListenerSeries, NetnsNamer, ProcessInfoSeries,
    RawSocketSeries, RpcProgramSeries, Snapshot,
};
use crate::owners::{ExeHashes, Owner, OwnerBook, Placed};
use crate::sockets::{ChangeHints, Collected, Opened, Recheck, SocketSource};
use prometheus::IntCounterVec;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What [`ListenerCollector`]'s labelling produced.
struct Labelled {
    listeners: Vec<ListenerSeries>,
    rpc_programs: Vec<RpcProgramSeries>,
    raw_sockets: Vec<RawSocketSeries>,
    processes: Vec<ProcessInfoSeries>,
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
    owners: OwnerSearch,
    /// `collection_errors_total{stage}`; reported after each scrape's
    /// collection so a scrape's counts include that scrape's faults.
    faults: FaultCounter,
    /// The event side's view: recent listen() callers are searched first
    /// for owners.
    hints: Option<Arc<dyn ChangeHints>>,
    /// The event trail: a line for each packet/raw socket first seen.
    #[cfg(target_os = "linux")]
    trail: Option<crate::events::trail::Trail>,
    /// RPC registrations per namespace, refreshed off the scrape path.
    rpc: RpcPrograms,
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
        let faults = FaultCounter::new();
        if let Some(reason) = &opened.fallback_reason {
            tracing::warn!(reason = %reason, "netlink sock_diag is not available; using the slower netstat2 backend");
            faults.count(stage::BACKEND, 1);
        }
        ListenerCollector {
            judge,
            namer,
            source: opened.source,
            netns_mode: opened.netns_mode,
            owners: OwnerSearch::new(OwnerBook::new(proc_root.clone())),
            rpc: RpcPrograms::new(proc_root.clone()),
            proc_root,
            faults,
            hints,
            #[cfg(target_os = "linux")]
            trail: None,
        }
    }

    /// Owners' `exe_sha256` from the shared hash cache.
    pub fn with_exe_hashes(mut self, hashes: ExeHashes) -> ListenerCollector {
        self.owners =
            OwnerSearch::new(OwnerBook::new(self.proc_root.clone()).with_exe_hashes(hashes));
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
        self.faults.collector()
    }

    /// One collection for a scrape: faults are logged and counted.
    pub fn scrape(&self) -> Snapshot {
        let (snapshot, faults) = self.look();
        self.faults.report(&faults);
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
        let (labelled, owner_faults) = self.label(&collected);
        faults.owners = owner_faults;
        let forwarded = self.forwarded(&collected, &labelled, &mut faults);
        #[cfg(target_os = "linux")]
        if let Some(trail) = &self.trail {
            trail.forwarded_ports(&forwarded);
        }
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
            rpc_programs: labelled.rpc_programs,
            forwarded,
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

    /// The forwarded-port series (`forwarded.rs`); counts namespaces whose
    /// NAT rules or addresses could not be read.
    fn forwarded(
        &self,
        collected: &Collected,
        labelled: &Labelled,
        faults: &mut Faults,
    ) -> Vec<ForwardedSeries> {
        for facts in &collected.namespaces {
            let netns = self.namer.label(facts.netns);
            match &facts.nat_rules {
                Ok(_) => {}
                Err(Unread::NoPrivilege(reason)) => {
                    self.faults.nat_needs_privilege(reason);
                }
                Err(Unread::Failed(err)) => {
                    faults.nat += 1;
                    tracing::debug!(netns, error = %err, "cannot read NAT rules");
                }
            }
            if let Err(err) = &facts.addresses {
                faults.addresses += 1;
                tracing::debug!(netns, error = %err, "cannot read interface addresses");
            }
        }
        let cmdline = |pid: u32| self.proc_root.cmdline(pid);
        super::forwarded::series(&super::forwarded::Inputs {
            judge: &self.judge,
            namer: &self.namer,
            namespaces: &collected.namespaces,
            listeners: &labelled.listeners,
            processes: &labelled.processes,
            cmdline: &cmdline,
        })
    }

    /// Finds the owner of every listener and packet/raw socket, and turns
    /// them into counted series, plus one info series per owning process.
    fn label(&self, collected: &Collected) -> (Labelled, crate::owners::OwnerFaults) {
        let mut likely: Vec<u32> = self
            .hints
            .as_ref()
            .map(|hints| {
                let recent = hints.recent_listeners();
                recent.into_iter().map(|(pid, _)| pid).collect()
            })
            .unwrap_or_default();
        // One entry a recent listen(): a storm names the same pid 64 times,
        // and each would be searched again.
        likely.sort_unstable();
        likely.dedup();
        let Found {
            listeners: listener_placed,
            raw_sockets: raw_placed,
            faults,
        } = self.owners.find(
            &collected.listeners,
            &collected.raw_sockets,
            &likely,
            &|asked| self.source.still_listed(self.judge.watch(), asked),
        );
        let (listener_owners, raw_owners) = self.confirm(collected, listener_placed, raw_placed);
        #[cfg(target_os = "linux")]
        if let Some(trail) = &self.trail {
            let owners: Vec<Option<&Owner>> = raw_owners
                .iter()
                .map(|placed| placed.as_ref().map(|p| &*p.owner))
                .collect();
            let (sockets, judge) = (&collected.raw_sockets, &self.judge);
            trail.raw_sockets(sockets, &owners, judge, &self.namer);
        }
        let listener_pids: Vec<Option<u32>> = listener_owners
            .iter()
            .map(|placed| placed.as_ref().and_then(|p| p.owner.pid))
            .collect();
        // Each namespace's up addresses decide its wildcards' exposure.
        let addresses: HashMap<Option<u64>, &[IpAddr]> = collected
            .namespaces
            .iter()
            .filter_map(|facts| Some((facts.netns, facts.addresses.as_deref().ok()?)))
            .collect();
        // pid -> (netns label of the first socket it owns, its owner).
        let mut owning: BTreeMap<u32, (String, &Owner)> = BTreeMap::new();
        // One series per socket, sorted, then equal label sets merged into
        // one counted series: in place, no tree of nodes beside the vector.
        let mut listeners = Vec::with_capacity(collected.listeners.len());
        let registered = self.rpc.view(&collected.listeners, &listener_pids);
        let mut rpc_programs: Vec<RpcProgramSeries> = Vec::new();
        for (listener, placed) in collected.listeners.iter().zip(&listener_owners) {
            let Some(placed) = placed else { continue };
            let owner = &placed.owner;
            if let Some(pid) = owner.pid {
                owning
                    .entry(pid)
                    .or_insert_with(|| (self.namer.label(listener.netns), owner));
            }
            let programs = registered.programs(listener);
            rpc_programs.extend(registered.registrations(listener).map(|r| {
                let netns = self.namer.label(listener.netns);
                RpcProgramSeries::new(listener.port, r.transport, netns, r.program, r.version)
            }));
            let socket = (placed.holder, programs.as_slice());
            let mut series = ListenerSeries::new(
                listener,
                owner,
                socket,
                &self.judge,
                &self.namer,
                addresses.get(&listener.netns).copied(),
            );
            series.sockets = 1;
            listeners.push(series);
        }
        rpc_programs.sort();
        rpc_programs.dedup();
        let mut raw_sockets = Vec::with_capacity(collected.raw_sockets.len());
        for (seen, placed) in collected.raw_sockets.iter().zip(&raw_owners) {
            let Some(placed) = placed else { continue };
            let owner = &placed.owner;
            if let Some(pid) = owner.pid {
                owning
                    .entry(pid)
                    .or_insert_with(|| (self.namer.label(seen.netns), owner));
            }
            let mut series = RawSocketSeries::new(seen, owner, &self.judge, &self.namer);
            series.sockets = 1;
            raw_sockets.push(series);
        }
        let processes = owning
            .into_iter()
            // A process that vanished before it was described has no facts.
            .filter(|(_, (_, owner))| !owner.process.is_empty())
            .map(|(pid, (netns, owner))| ProcessInfoSeries::new(pid, netns, owner))
            .collect();
        merge_counted(&mut listeners, |series| &mut series.sockets);
        merge_counted(&mut raw_sockets, |series| &mut series.sockets);
        let labelled = Labelled {
            rpc_programs,
            listeners,
            raw_sockets,
            processes,
        };
        (labelled, faults)
    }

    /// Asks the source once more about each socket the owner search could
    /// not place and saw for the first time: one the kernel no longer lists
    /// lost its process while we looked and is left out (`None`); see
    /// `crate::owners::book`.
    #[allow(clippy::type_complexity)]
    fn confirm(
        &self,
        collected: &Collected,
        listeners: Vec<Placed>,
        raw_sockets: Vec<Placed>,
    ) -> (Vec<Option<Placed>>, Vec<Option<Placed>>) {
        let mut recheck: Vec<Recheck> = Vec::new();
        for (listener, placed) in collected.listeners.iter().zip(&listeners) {
            if placed.confirm {
                recheck.push(Recheck {
                    netns: listener.netns,
                    transport: Some(listener.transport),
                    inode: listener.inode,
                });
            }
        }
        for (seen, placed) in collected.raw_sockets.iter().zip(&raw_sockets) {
            if placed.confirm {
                recheck.push(Recheck {
                    netns: seen.netns,
                    transport: None,
                    inode: seen.found.socket.inode,
                });
            }
        }
        let still = if recheck.is_empty() {
            Default::default()
        } else {
            self.source.still_listed(self.judge.watch(), &recheck)
        };
        let keep = |placed: Placed, inode: u64| {
            (!placed.confirm || still.contains(&inode)).then_some(placed)
        };
        let listeners = listeners
            .into_iter()
            .zip(&collected.listeners)
            .map(|(placed, listener)| keep(placed, listener.inode))
            .collect();
        let raw_sockets = raw_sockets
            .into_iter()
            .zip(&collected.raw_sockets)
            .map(|(placed, seen)| keep(placed, seen.found.socket.inode))
            .collect();
        (listeners, raw_sockets)
    }
}

/// Sorts series of one socket each and merges equal label sets into one
/// series counting their sockets (the count is the last field, so equal
/// labels sort next to each other; it is set aside while comparing).
fn merge_counted<T: Ord>(series: &mut Vec<T>, count: fn(&mut T) -> &mut u64) {
    series.sort_unstable();
    series.dedup_by(|later, kept| {
        let own = *count(later);
        *count(later) = *count(kept);
        let same = later == kept;
        if same {
            *count(kept) += own;
        } else {
            *count(later) = own;
        }
        same
    });
}
