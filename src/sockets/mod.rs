//! Where listening sockets come from: one small interface, two backends.
//!
//! [`netlink`] asks the Linux kernel through NETLINK_SOCK_DIAG for listening
//! TCP and unconnected UDP sockets only, so its cost does not grow with the
//! host's established connections. [`portable`] uses netstat2, which dumps
//! every socket and walks /proc for owners: slower, but it runs on other
//! operating systems and serves as the reference the netlink path is tested
//! against.
//!
//! The netlink backend also lists every packet and raw IP socket
//! ([`raw`]), through the same channels, and reads how each listener is
//! bound (`IPV6_V6ONLY`, `SO_BINDTODEVICE`; see `crate::policy::exposure`).
//! [`wire`] is the netlink framing both use; [`interfaces`] names bound
//! interfaces inside each namespace.

#[cfg(target_os = "linux")]
pub mod facts;
#[cfg(target_os = "linux")]
pub mod netlink;
// Which backends this platform has, one file each, behind `open_backend`.
#[cfg_attr(target_os = "linux", path = "choose_linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "choose_other.rs")]
mod choose;
pub mod netstat2;

use crate::kernel::netns::{self, Mode};
use crate::kernel::nftables::{NatRule, Unread};
use crate::kernel::procfs::ProcRoot;
use crate::kernel::sock_diag::raw;
use crate::policy::exposure::Binding;
use crate::policy::registry::Transport;
use crate::policy::watch::WatchSet;
use std::fmt;
use std::net::IpAddr;

/// One listening socket on a watched port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    pub address: IpAddr,
    pub port: u16,
    /// Socket inode, the key for finding the owning process in /proc.
    pub inode: u64,
    /// Uid that created the socket: a hint for the owner search.
    pub uid: u32,
    /// Owning pids when the backend already found them (netstat2 does).
    pub known_pids: Option<Vec<u32>>,
    /// Inode of the network namespace, `None` for the exporter's own.
    pub netns: Option<u64>,
    /// `IPV6_V6ONLY` and bound interface index, where the backend knows
    /// them (netlink); the default says "unknown" and "none".
    pub binding: Binding,
    /// Name of the bound interface (`SO_BINDTODEVICE`) in the socket's
    /// namespace; "" for none.
    pub interface: String,
    /// A TCP listener that is an MPTCP socket's subflow (the MPTCP socket
    /// shares its inode): the listener is reported as `mptcp`, once.
    pub multipath: bool,
}

impl Listener {
    /// What the `protocol` label says of this listener.
    pub fn protocol(&self) -> crate::model::protocol::Protocol {
        use crate::model::protocol::Protocol;
        match self.transport {
            Transport::Tcp if self.multipath => Protocol::Mptcp,
            transport => Protocol::of_transport(transport),
        }
    }

    pub fn family(&self) -> &'static str {
        match self.address {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        }
    }
}

/// A failure to read the socket table at all (the scrape then reports
/// `collection_success 0`).
#[derive(Debug)]
pub struct SourceError(pub String);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

/// What the kernel event side (`crate::events`) lets collection read: it
/// owns these facts and hands a read-only view down, so a collection
/// benefits from what the events already saw.
pub trait ChangeHints: Send + Sync {
    /// A generation that moves whenever a socket on a watched port starts or
    /// stops listening anywhere on the host, in any namespace, or when
    /// events were lost. While it stands still no namespace's TCP listeners
    /// have changed, so the netlink source reuses what it last read.
    /// `None` while no capture runs: then every collection dumps.
    fn generation(&self) -> Option<u64>;
    /// (pid, tid) of recent listen() calls on watched ports, newest first:
    /// namespace discovery reads their thread's namespace at once (a thread
    /// may have unshared alone), and the owner search looks at them first.
    fn recent_listeners(&self) -> Vec<(u32, u32)>;
    /// Namespaces learnt from listening sockets (inode and our descriptor
    /// of each): a namespace that only a socket holds (its maker went back
    /// to its first namespace) is found by no process, but collection
    /// enters it through this descriptor while the socket listens.
    #[cfg(target_os = "linux")]
    fn learnt_namespaces(&self) -> Vec<(u64, std::sync::Arc<std::os::fd::OwnedFd>)> {
        Vec::new()
    }
}

/// The uid of each UDP socket on a watched port that the last two
/// collections saw, keyed by (namespace inode or `None` for the exporter's
/// own, address, port). Collection writes it; the event side only reads it,
/// to label a UDP socket's destroy event (the kernel zeroes the uid in
/// destroy broadcasts).
#[derive(Default)]
pub struct SeenUdpSockets {
    generations: std::sync::Mutex<[UdpUids; 2]>,
}

type UdpUids = std::collections::HashMap<(Option<u64>, std::net::IpAddr, u16), u32>;

impl SeenUdpSockets {
    /// The UDP sockets one collection saw. The previous collection's are
    /// kept too, for a socket destroyed just before this one ran.
    pub fn saw<'a>(&self, listeners: impl Iterator<Item = &'a Listener>) {
        let now: UdpUids = listeners
            .filter(|listener| listener.transport == Transport::Udp)
            .map(|listener| {
                (
                    (listener.netns, listener.address, listener.port),
                    listener.uid,
                )
            })
            .collect();
        let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        generations.swap(0, 1);
        generations[0] = now;
    }

    /// The uid of the UDP socket a collection last saw there.
    pub fn uid(&self, netns: Option<u64>, address: std::net::IpAddr, port: u16) -> Option<u32> {
        let generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        generations
            .iter()
            .find_map(|seen| seen.get(&(netns, address, port)).copied())
    }
}

/// The event side's links a source is opened with (none by default).
#[derive(Clone, Default)]
pub struct EventLinks {
    pub hints: Option<std::sync::Arc<dyn ChangeHints>>,
    /// Told when the source's namespace set opens or drops a namespace
    /// (the event side subscribes to its destroy broadcasts there).
    pub namespaces: Option<std::sync::Arc<dyn netns::NamespaceObserver>>,
    /// Where collection records the UDP sockets it saw (their uid), for
    /// the event side to read.
    pub udp_sockets: Option<std::sync::Arc<SeenUdpSockets>>,
}

/// What one pass over the socket tables found.
#[derive(Debug, Default)]
pub struct Collected {
    pub listeners: Vec<Listener>,
    /// Network namespaces read, the exporter's own included.
    pub namespaces_read: u64,
    /// Other namespaces that could not be read this time (often: they just
    /// went away).
    pub namespace_faults: u64,
    /// `net.ipv4.ip_unprivileged_port_start` of each other namespace read.
    pub unprivileged_port_start: Vec<(u64, i64)>,
    /// Age of the oldest UDP-Lite, packet or raw listing reused from an
    /// earlier collection (dense hosts re-read those of other namespaces in
    /// turns); zero when every listing is fresh.
    pub udp_staleness: std::time::Duration,
    /// Every packet and raw socket, of every namespace read (netlink only).
    pub raw_sockets: Vec<SeenRawSocket>,
    /// Namespaces whose packet/raw sockets could not be read this time.
    pub raw_faults: u64,
    /// Interface addresses and NAT rules of every namespace read (netlink
    /// only; empty with netstat2).
    pub namespaces: Vec<NamespaceFacts>,
}

/// What a namespace's kernel says beyond its sockets (`facts.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceFacts {
    /// Inode of the network namespace, `None` for the exporter's own.
    pub netns: Option<u64>,
    /// Addresses of the interfaces that are up, or why they are unknown.
    pub addresses: Result<Vec<IpAddr>, String>,
    /// Rules that forward destination ports, or why they are unknown.
    pub nat_rules: Result<Vec<NatRule>, Unread>,
}

/// A packet or raw socket and the namespace it was found in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRawSocket {
    pub found: raw::NamedRawSocket,
    /// Inode of the network namespace, `None` for the exporter's own.
    pub netns: Option<u64>,
}

/// A socket to look for once more: one whose owner could not be found,
/// seen for the first time (see `crate::owners::book`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recheck {
    /// Inode of the network namespace, `None` for the exporter's own.
    pub netns: Option<u64>,
    /// A listener of this transport, or (`None`) a packet/raw socket.
    pub transport: Option<Transport>,
    pub inode: u64,
}

/// Lists the listening sockets on watched ports.
pub trait SocketSource: Send + Sync {
    /// Backend name for logs and the landing page.
    fn name(&self) -> &'static str;
    /// Every listener on a watched port, with what else the pass found. An
    /// error means the exporter's own namespace could not be read at all.
    fn collect(&self, watch: &WatchSet) -> Result<Collected, SourceError>;
    /// Which transports this source can see (SCTP needs the kernel's
    /// sctp_diag).
    fn coverage(&self) -> Vec<(Transport, bool)>;
    /// The inodes of `asked` the kernel still lists. A source that cannot
    /// tell answers all of them.
    fn still_listed(&self, watch: &WatchSet, asked: &[Recheck]) -> std::collections::HashSet<u64> {
        let _ = watch;
        asked.iter().map(|socket| socket.inode).collect()
    }
}

/// `--collector.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// netlink on Linux when the kernel allows it, netstat2 otherwise.
    Auto,
    Netlink,
    Netstat2,
}

impl Backend {
    pub fn parse(text: &str) -> Result<Backend, String> {
        match text {
            "auto" => Ok(Backend::Auto),
            "netlink" => Ok(Backend::Netlink),
            "netstat2" => Ok(Backend::Netstat2),
            other => Err(format!(
                "unknown backend {other:?}: use auto, netlink or netstat2"
            )),
        }
    }
}

/// What [`open`] chose.
pub struct Opened {
    pub source: Box<dyn SocketSource>,
    /// Set when `auto` wanted netlink but had to use netstat2: the collector
    /// logs it and counts it under `collection_errors_total{stage="backend"}`.
    pub fallback_reason: Option<String>,
    /// Which namespaces the source reads.
    pub netns_mode: Mode,
}

/// Opens the requested backend and decides `--collector.netns` for it.
/// `netlink` fails if the kernel refuses it; `auto` falls back to netstat2
/// and says why. Only netlink looks into other network namespaces; asking
/// for `--collector.netns=all` with a backend that cannot is refused.
/// Errors are one line for the user.
pub fn open(
    backend: Backend,
    requested_netns: Option<Mode>,
    proc_root: &ProcRoot,
    links: &EventLinks,
) -> Result<Opened, String> {
    let (source, fallback_reason) = choose::open_backend(backend, proc_root, links)?;
    let netns_mode = netns::choose_mode(
        requested_netns,
        source.reads_namespaces(),
        source.name(),
        proc_root,
    )?;
    let source = match netns_mode {
        Mode::All => source.read_all_namespaces(proc_root),
        Mode::Host => source.into_dyn(),
    };
    Ok(Opened {
        source,
        fallback_reason,
        netns_mode,
    })
}
