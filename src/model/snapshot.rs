//! The value one collection returns: every series it found, how long it
//! took and how it went. The metric families and the landing page render
//! this value alone; nothing reads the collector's state behind it.

use super::{ForwardedSeries, ListenerSeries, ProcessInfoSeries, RawSocketSeries};
use crate::kernel::netns::Mode;
use crate::policy::registry::Transport;
use std::time::Duration;

/// The result of one collection.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Sorted by transport, port, then the other labels.
    pub listeners: Vec<ListenerSeries>,
    /// Packet and raw sockets, sorted by kind, protocol, then the rest.
    pub raw_sockets: Vec<RawSocketSeries>,
    /// One per process owning a listener or packet/raw socket, by pid.
    pub processes: Vec<ProcessInfoSeries>,
    /// RPC registrations on reported listeners' ports, sorted.
    pub rpc_programs: Vec<super::RpcProgramSeries>,
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
    /// Which transports the source could see.
    pub coverage: Vec<(Transport, bool)>,
    /// Which namespaces were read (host only, or all).
    pub netns_mode: Mode,
}
