//! Linux socket source on NETLINK_SOCK_DIAG: the kernel lists only what we ask.
//!
//! Each collection sends five dump requests per namespace. TCP asks for
//! `idiag_states = LISTEN` alone, which makes the kernel walk only its
//! listening hash and skip the established table entirely: this is why the
//! cost does not grow with the host's connections. It asks with the older
//! `TCPDIAG_GETSOCK` request, which carries no address family, so one walk
//! of the listening hash returns IPv4 and IPv6 listeners together (the
//! `SOCK_DIAG_BY_FAMILY` request needs one walk per family). UDP has no such
//! request: it is asked twice (IPv4, IPv6) for sockets in the CLOSE state,
//! which for UDP means bound and unconnected, and UDP-Lite likewise (its
//! own table; `lsof` and `/proc/net/udplite` show it, the UDP dumps do
//! not). On a dense container host these walks of the kernel's hash tables
//! are most of a namespace's cost, so one TCP walk instead of two matters.
//!
//! Requests and replies are built and read by hand here (framing in
//! `wire.rs`) rather than with netlink-packet-sock-diag: that crate decodes
//! every reply into owned structures with a Vec of attributes per socket,
//! and we want one pass over the receive buffer with no allocation per
//! socket (the only attribute read, `INET_DIAG_SKV6ONLY`, is read in place
//! by `kernel::sock_diag::binding`). Port filtering happens in that same pass: a
//! listening table is small, so an INET_DIAG_REQ_BYTECODE filter would save
//! the kernel no walking, only a few copied bytes. The netlink socket
//! (netlink-sys) is opened once and reused by every scrape; each dumping
//! thread keeps one receive buffer for all the channels it reads.
//!
//! The same channel lists each namespace's packet and raw sockets
//! (`raw/`): packet_diag and raw_diag where the kernel has them, else
//! `/proc/net` tables. On dense hosts they are re-read in the same turns as
//! UDP-Lite.
//!
//! With `--collector.netns=all` the same queries run in every other network
//! namespace through a channel opened inside it and kept by the namespace
//! room (`crate::kernel::netns::NamespaceSet`) until the namespace disappears. SCTP
//! listeners are asked for when the kernel has sctp_diag (probed at start).
//!
//! **One descriptor per namespace**: the channel is all that is kept of
//! another namespace. What else a read needs from inside it (the
//! `/proc/net` tables, a re-read of its addresses and NAT rules) is opened
//! for that read by the visiting thread, which moves into the namespace
//! through the channel itself (`SIOCGSKNS`), and closed after. Its address
//! and ruleset changes, and its sockets' destroy broadcasts, are heard by
//! sockets of ours that listen to every namespace by its id
//! (`crate::kernel::netns::ids`), which each namespace gets when opened.

use super::facts::{FactChanges, FactWatch, ForeignFactFeeds, ForeignFacts};
use super::{
    ChangeHints, Collected, EventLinks, Listener, NamespaceFacts, Recheck, SeenRawSocket,
    SocketSource, SourceError,
};
use crate::kernel::netns::enter::{self, Roaming};
use crate::kernel::netns::ids::NamespaceIds;
use crate::kernel::netns::{Discovery, NamespaceObserver, NamespaceSet};
use crate::kernel::procfs::{ProcRoot, parse_sysctl_integer};
use crate::kernel::sock_diag::binding;
use crate::kernel::sock_diag::interfaces::InterfaceNames;
use crate::kernel::sock_diag::raw::{self, DiagSupport, NamedRawSocket, ProcTables};
use crate::kernel::sock_diag::wire::{
    self, SOCK_DIAG_BY_FAMILY, TCP_CLOSE, TCP_LISTEN, TCPDIAG_GETSOCK, WireError,
};
use crate::policy::exposure::Binding;
use crate::policy::registry::Transport;
use crate::policy::watch::WatchSet;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::kernel::sock_diag::wire::Progress;

/// `struct inet_diag_req`, the older request: family, lengths, ext, sockid,
/// states, dbs.
const COMPAT_REQUEST_LEN: usize = 60;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQUEST_LEN: usize = 56;

/// Address family of a request or a reply (`AF_INET`, `AF_INET6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn raw(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// One socket as the kernel described it; borrowed fields, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub address: IpAddr,
    pub port: u16,
    pub uid: u32,
    pub inode: u64,
    /// `IPV6_V6ONLY` and the bound interface (`kernel::sock_diag::binding`).
    pub binding: Binding,
    /// A TCP socket that is an MPTCP socket's subflow (its upper layer
    /// protocol is `mptcp`; only in replies to requests asking for
    /// `INET_DIAG_INFO`, which TCP requests do).
    pub multipath: bool,
}

/// Reads the netlink messages in `buffer`, calling `visit` for each socket.
///
/// Malformed input (truncated headers, lengths that run past the buffer, an
/// error message from the kernel) is an `Err`, never a panic: this is the
/// function the fuzz target feeds. The framing is `wire.rs`'s.
pub fn parse_messages(
    buffer: &[u8],
    mut visit: impl FnMut(DiagSocket),
) -> Result<Progress, String> {
    wire::walk_messages(buffer, |payload| {
        visit(parse_socket(payload).map_err(WireError::Broken)?);
        Ok(())
    })
    .map_err(|err| err.to_string())
}

fn parse_socket(payload: &[u8]) -> Result<DiagSocket, String> {
    let msg = wire::inet_diag_msg(payload)?;
    Ok(DiagSocket {
        address: msg.address,
        port: msg.port,
        uid: msg.uid,
        inode: u64::from(msg.inode),
        binding: binding::binding(payload),
        multipath: binding::upper_layer_is_mptcp(payload),
    })
}

/// One dump request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// TCP listeners of both families, in one walk (`TCPDIAG_GETSOCK`).
    TcpListeners,
    /// One family of one transport in the given states
    /// (`SOCK_DIAG_BY_FAMILY` with `inet_diag_req_v2`).
    ByFamily {
        family: Family,
        transport: Transport,
        states: u32,
    },
}

impl Query {
    pub fn transport(self) -> Transport {
        match self {
            Query::TcpListeners => Transport::Tcp,
            Query::ByFamily { transport, .. } => transport,
        }
    }
}

/// The largest request body: the older `inet_diag_req`.
const MAX_REQUEST: usize = COMPAT_REQUEST_LEN;

/// `idiag_ext` asking for `INET_DIAG_INFO`: with it, a TCP socket's reply
/// also carries its upper layer protocol (`INET_DIAG_ULP_INFO`), which is
/// how an MPTCP listener's TCP subflow is told from a TCP listener without
/// a dump of mptcp_diag (whose walk of the kernel's global MPTCP token
/// table, once per namespace, was half of an idle scrape's CPU).
const ASK_FOR_INFO: u8 = 1 << (2 - 1);

/// One dump request with a zero sockid: the message type, the body buffer
/// and how much of it is the body.
fn build_request(query: Query) -> (u16, [u8; MAX_REQUEST], usize) {
    let mut body = [0u8; MAX_REQUEST];
    match query {
        Query::TcpListeners => {
            // idiag_family stays 0: the compat dump then returns both.
            body[3] = ASK_FOR_INFO;
            body[52..56].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
            (TCPDIAG_GETSOCK, body, COMPAT_REQUEST_LEN)
        }
        Query::ByFamily {
            family,
            transport,
            states,
        } => {
            let protocol = match transport {
                Transport::Tcp => libc::IPPROTO_TCP,
                Transport::Udp => libc::IPPROTO_UDP,
                Transport::Sctp => libc::IPPROTO_SCTP,
                Transport::UdpLite => libc::IPPROTO_UDPLITE,
            } as u8;
            body[..REQUEST_LEN].copy_from_slice(&wire::inet_diag_request(
                family.raw(),
                protocol,
                states,
            ));
            if transport == Transport::Tcp {
                body[2] = ASK_FOR_INFO;
            }
            (SOCK_DIAG_BY_FAMILY, body, REQUEST_LEN)
        }
    }
}

/// The reusable part: a sock_diag channel (`wire.rs`, one descriptor) that
/// speaks queries.
struct Channel(wire::Channel);

impl Channel {
    fn open() -> Result<Channel, SourceError> {
        wire::Channel::open()
            .map(Channel)
            .map_err(|err| SourceError(err.to_string()))
    }

    /// Runs one dump to completion, calling `visit` for every socket.
    fn dump(
        &mut self,
        query: Query,
        visit: &mut impl FnMut(DiagSocket),
    ) -> Result<(), SourceError> {
        let (kind, body, length) = build_request(query);
        self.0
            .dump_typed(kind, &body[..length], |payload| {
                visit(parse_socket(payload).map_err(WireError::Broken)?);
                Ok(())
            })
            .map_err(|err| SourceError(err.to_string()))
    }
}

/// A namespace other than ours: its netlink channel (its one descriptor),
/// its id, its `ip_unprivileged_port_start` read when the channel was
/// opened (the namespace room reopens channels every few minutes, which
/// refreshes it), and what its last reads found, for reuse (see the module
/// doc).
struct ForeignNamespace {
    channel: Channel,
    /// The id our namespace gives it, by which its notifications are told
    /// apart; `None` when it could not be given one (its facts are then
    /// re-read at every collection).
    nsid: Option<i32>,
    unprivileged_port_start: Option<i64>,
    /// Told when this handle is dropped (it was told when it was opened).
    observer: Option<(Arc<dyn NamespaceObserver>, u64)>,
    /// Listeners the last read found: a namespace no process names any more
    /// is kept while its sockets still listen.
    last_found: usize,
    /// TCP listeners and the listen-event generation they were read at.
    tcp: Option<(u64, Vec<Listener>)>,
    /// UDP-Lite sockets as last read, and when.
    udplite: Option<(Instant, Vec<Listener>)>,
    /// Packet and raw sockets as last read, and when (same turns).
    raw: Option<(Instant, Vec<NamedRawSocket>)>,
    /// Collections since UDP-Lite was read; staggered at open so namespaces
    /// take turns.
    turn: u64,
    /// The namespace's inode.
    inode: u64,
    /// Its interface addresses and NAT rules as last read.
    facts: ForeignFacts,
}

/// With more namespaces than this, other namespaces' UDP-Lite, packet and
/// raw sockets are re-read in turns; below it, every collection reads
/// everything. UDP is read at every collection: its dumps cost as much as
/// UDP-Lite's (each walks a host-wide table of the same size), but UDP is
/// what is used, and a new UDP socket must be in the next scrape.
pub const TURNS_FROM: usize = 256;
/// In turns, each namespace's UDP-Lite is re-read every this many
/// collections.
pub const TURNS: u64 = 4;

/// From this many namespaces, a shared UDP hash table is worth a log line.
const SHARED_UDP_TABLE_HINT_FROM: usize = 100;

/// Logs once that namespaces share the host's UDP hash table, when they
/// do: every namespace's UDP dump then walks the whole table (measured at
/// 1,000 namespaces: 65 ms a scrape, 24 ms with a table of 128 slots each).
fn hint_at_shared_udp_table(procfs: &Path, namespaces: usize) {
    static HINTED: std::sync::Once = std::sync::Once::new();
    HINTED.call_once(|| {
        let setting = std::fs::read(procfs.join("sys/net/ipv4/udp_child_hash_entries"))
            .ok()
            .and_then(|bytes| parse_sysctl_integer(&bytes));
        if setting == Some(0) {
            tracing::info!(
                namespaces,
                "network namespaces share the host's UDP hash table, so reading each one's UDP sockets walks all of it; on a dense host, sysctl net.ipv4.udp_child_hash_entries=128 (Linux 6.2+) gives namespaces created afterwards their own (faster for the kernel too)"
            );
        }
    });
}

/// Staggers the turns of namespaces opened together.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// What one visit of a foreign namespace hands back.
struct Visited {
    listeners: Vec<Listener>,
    unprivileged_port_start: Option<i64>,
    /// When the UDP-Lite part was read, if it was reused from earlier.
    udplite_reused_since: Option<Instant>,
    /// Packet and raw sockets, or why they could not be read.
    raw_sockets: Result<Vec<NamedRawSocket>, String>,
    /// Interface addresses and NAT rules.
    facts: NamespaceFacts,
}

impl ForeignNamespace {
    /// Runs `queries`, reusing the TCP listing while `generation` has not
    /// moved and the UDP-Lite, packet and raw listings until this
    /// namespace's turn, when `in_turns`; re-reads the facts when
    /// `fact_changes` names the namespace. What must be opened inside the
    /// namespace is opened through `roaming`.
    fn read(&mut self, pass: &Pass<'_>, roaming: &mut Roaming) -> Result<Visited, SourceError> {
        let Pass {
            queries,
            watch,
            generation,
            in_turns,
            raw_support,
            fact_changes,
            procfs,
        } = *pass;
        let mut entered = false;
        let mut listeners = Vec::new();
        let mut udplite_reused_since = None;
        self.turn += 1;
        let due = !in_turns || self.turn.is_multiple_of(TURNS);
        let mut fresh_udplite = Vec::new();
        for &query in queries {
            match query.transport() {
                Transport::Tcp => match (&self.tcp, generation) {
                    (Some((read_at, cached)), Some(now)) if *read_at == now => {
                        listeners.extend_from_slice(cached);
                    }
                    _ => {
                        let mut found = Vec::new();
                        dump_one(&mut self.channel, query, watch, &mut found)?;
                        listeners.extend_from_slice(&found);
                        self.tcp = generation.map(|now| (now, found));
                    }
                },
                Transport::UdpLite => match &self.udplite {
                    Some((read_at, cached)) if !due => {
                        if udplite_reused_since.is_none() {
                            listeners.extend_from_slice(cached);
                            udplite_reused_since = Some(*read_at);
                        }
                    }
                    _ => dump_one(&mut self.channel, query, watch, &mut fresh_udplite)?,
                },
                Transport::Udp | Transport::Sctp => {
                    dump_one(&mut self.channel, query, watch, &mut listeners)?
                }
            }
        }
        if udplite_reused_since.is_none() {
            listeners.extend_from_slice(&fresh_udplite);
            self.udplite = Some((Instant::now(), fresh_udplite));
        }
        name_interfaces(&self.channel, &mut listeners);
        self.last_found = listeners.len();
        let raw_sockets = match &self.raw {
            // Re-read in UDP-Lite's turns (their staleness is counted
            // with it).
            Some((_, cached)) if !due => Ok(cached.clone()),
            _ => {
                let mut found = Vec::new();
                let tables = if ProcTables::descriptors(raw_support) > 0 {
                    self.enter(roaming, &mut entered)
                } else {
                    Ok(())
                }
                .and_then(|()| ProcTables::open(procfs, raw_support));
                let read = tables.and_then(|mut tables| {
                    raw::collect(&mut self.channel.0, raw_support, &mut tables, &mut found)
                });
                if let Err(err) = read {
                    if self.channel.0.is_poisoned() {
                        // Unusable: the room drops this handle and reopens it.
                        return Err(SourceError(err));
                    }
                    Err(err)
                } else {
                    self.raw = Some((Instant::now(), found.clone()));
                    Ok(found)
                }
            }
        };
        if self.facts.due(self.nsid, fact_changes) {
            match self.enter(roaming, &mut entered) {
                Ok(()) => self.facts.read_here(),
                Err(err) => {
                    tracing::debug!(netns = self.inode, error = %err, "cannot re-read a namespace's addresses and NAT rules")
                }
            }
        }
        Ok(Visited {
            listeners,
            unprivileged_port_start: self.unprivileged_port_start,
            udplite_reused_since,
            raw_sockets,
            facts: self.facts.facts(self.inode),
        })
    }

    /// Moves the visiting thread into this namespace, once per visit.
    fn enter(&self, roaming: &mut Roaming, entered: &mut bool) -> Result<(), String> {
        if !*entered {
            roaming
                .enter_namespace_of(&self.channel.0)
                .map_err(|err| format!("cannot enter the namespace: {err}"))?;
            *entered = true;
        }
        Ok(())
    }
}

/// What every namespace's read in one collection shares.
#[derive(Clone, Copy)]
struct Pass<'a> {
    queries: &'a [Query],
    watch: &'a WatchSet,
    /// The listen-event generation, when events run.
    generation: Option<u64>,
    /// Whether UDP-Lite, packet and raw sockets are read in turns.
    in_turns: bool,
    raw_support: DiagSupport,
    /// Which namespaces' addresses and rules changed.
    fact_changes: &'a FactChanges,
    /// procfs, as a thread inside a namespace sees it.
    procfs: &'a Path,
}

impl ForeignNamespace {
    /// Runs inside the namespace `inode` (see `NamespaceSet::collect`): the
    /// channel, the sysctl, the namespace's id, and tells the event side.
    fn open(
        procfs: &Path,
        inode: u64,
        observer: Option<&Arc<dyn NamespaceObserver>>,
        ids: Option<&NamespaceIds>,
    ) -> Result<ForeignNamespace, String> {
        let channel = Channel::open().map_err(|err| err.0)?;
        // /proc/sys/net shows the namespace of whoever opens the file.
        let sysctl = std::fs::read(procfs.join("sys/net/ipv4/ip_unprivileged_port_start"))
            .ok()
            .and_then(|bytes| parse_sysctl_integer(&bytes));
        let nsid = ids.and_then(|ids| {
            std::fs::File::open(procfs.join("thread-self/ns/net"))
                .map_err(|err| format!("cannot open the namespace: {err}"))
                .and_then(|namespace| ids.assign(&namespace))
                .inspect_err(|err| log_once_without_id(err))
                .ok()
        });
        let observer = observer.map(|observer| {
            observer.entered(inode, nsid);
            (Arc::clone(observer), inode)
        });
        Ok(ForeignNamespace {
            channel,
            nsid,
            unprivileged_port_start: sysctl,
            observer,
            last_found: 0,
            tcp: None,
            udplite: None,
            raw: None,
            turn: OPENED.fetch_add(1, Ordering::Relaxed) % TURNS,
            inode,
            facts: ForeignFacts::unread(),
        })
    }
}

/// Says once that a namespace could not be given an id, and what that costs.
fn log_once_without_id(err: &str) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::warn!(
            error = err,
            "a network namespace could not be given an id: its listeners are read, but its UDP closes are not counted and its addresses and NAT rules are re-read at every collection"
        );
    });
}

impl Drop for ForeignNamespace {
    fn drop(&mut self) {
        if let Some((observer, inode)) = self.observer.take() {
            observer.left(inode);
        }
    }
}

/// Descriptors kept free for everything but namespace channels: HTTP
/// connections, /proc reads, the host channel, logs.
pub const RESERVED_FDS: u64 = 256;

/// How many namespace channels may stay open under the soft open-file
/// limit, keeping [`RESERVED_FDS`] free.
fn channel_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    match limit.current {
        Some(soft) => usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX),
        None => usize::MAX,
    }
}

/// The netlink [`SocketSource`].
pub struct SockDiagSource {
    /// `None` after a failed dump: the next scrape opens a fresh socket, so a
    /// half-read reply can never leak into it.
    host: Mutex<Option<Channel>>,
    /// The exporter's own `/proc/net` tables that sock_diag cannot replace.
    host_tables: Mutex<ProcTables>,
    /// The exporter's own namespace's addresses and NAT rules.
    host_facts: Mutex<FactWatch>,
    /// Every other namespace's channel, with `--collector.netns=all`.
    others: Option<Mutex<NamespaceSet<ForeignNamespace>>>,
    /// Gives each other namespace an id (with `others`).
    namespace_ids: Option<NamespaceIds>,
    /// Hear other namespaces' address and ruleset changes (with `others`).
    foreign_feeds: Option<Mutex<ForeignFactFeeds>>,
    /// False when the kernel has no sctp_diag: SCTP is then not asked for.
    sctp: bool,
    /// Whether packet and raw sockets come from sock_diag or `/proc/net`.
    raw_support: DiagSupport,
    /// procfs as seen from inside another namespace (its sysctls).
    procfs: PathBuf,
    /// The event side's view: its generation lets unchanged namespaces
    /// skip their TCP dump; its recent listeners guide discovery.
    hints: Option<Arc<dyn ChangeHints>>,
    /// Follows the namespace set's lifetimes (destroy subscriptions).
    observer: Option<Arc<dyn NamespaceObserver>>,
    /// Where each collection records the UDP sockets it saw, for the event
    /// side (a UDP close's uid).
    udp_sockets: Option<Arc<crate::sockets::SeenUdpSockets>>,
}

impl SockDiagSource {
    /// Opens the socket and runs one probe dump, so a kernel or sandbox that
    /// refuses sock_diag is found at start, not at the first scrape; asks
    /// once which packet/raw diag modules the kernel has. Reads the
    /// exporter's own namespace only until [`Self::read_other_namespaces`].
    pub fn open(proc_root: &ProcRoot, links: &EventLinks) -> Result<SockDiagSource, SourceError> {
        let mut channel = Channel::open()?;
        channel.dump(Query::TcpListeners, &mut |_| {})?;
        let sctp_probe = Query::ByFamily {
            family: Family::V4,
            transport: Transport::Sctp,
            states: 1 << TCP_LISTEN,
        };
        let sctp = channel.dump(sctp_probe, &mut |_| {}).is_ok();
        let raw_support = DiagSupport::probe(&mut channel.0);
        if !sctp || channel.0.is_poisoned() {
            // A failed dump may leave its error reply behind: start clean.
            channel = Channel::open()?;
        }
        if !sctp {
            tracing::info!(
                "the kernel has no SCTP socket diagnostics (sctp_diag): SCTP listeners are not covered"
            );
        }
        let (packet, raw) = raw_support.sources();
        tracing::info!(
            packet_sockets = packet,
            raw_sockets = raw,
            "where packet and raw sockets are read from (procfs: the kernel lacks packet_diag or raw_diag; no BPF filter or interface information there)"
        );
        let host_tables = ProcTables::open(proc_root.procfs(), raw_support).map_err(SourceError)?;
        Ok(SockDiagSource {
            host: Mutex::new(Some(channel)),
            host_tables: Mutex::new(host_tables),
            host_facts: Mutex::new(FactWatch::open()),
            others: None,
            namespace_ids: None,
            foreign_feeds: None,
            sctp,
            raw_support,
            procfs: PathBuf::from("/proc"),
            hints: links.hints.clone(),
            observer: links.namespaces.clone(),
            udp_sockets: links.udp_sockets.clone(),
        })
    }

    /// Also reads every other network namespace found under `proc_root`.
    pub fn read_other_namespaces(mut self: Box<Self>, proc_root: &ProcRoot) -> Box<SockDiagSource> {
        let own = proc_root.own_net_namespace().unwrap_or(0);
        let discovery = Discovery::new(proc_root.clone(), own);
        self.others = Some(Mutex::new(NamespaceSet::new(discovery, channel_budget())));
        self.namespace_ids = NamespaceIds::open()
            .inspect_err(|err| tracing::warn!(error = %err, "cannot open an rtnetlink socket to give namespaces ids"))
            .ok();
        // If someone gave our namespace an id of its own, our notifications
        // carry it: the event side must know it is ours.
        let own_id = self.namespace_ids.as_ref().and_then(|ids| {
            let namespace = std::fs::File::open(proc_root.self_path("ns/net")).ok()?;
            ids.id_of(&namespace).ok().flatten()
        });
        if let (Some(observer), Some(own_id)) = (&self.observer, own_id) {
            observer.entered(own, Some(own_id));
        }
        self.foreign_feeds = Some(Mutex::new(ForeignFactFeeds::open()));
        self.procfs = proc_root.procfs().to_path_buf();
        self
    }

    fn queries(&self) -> Vec<Query> {
        let by_family = |family, transport, state: u8| Query::ByFamily {
            family,
            transport,
            states: 1 << state,
        };
        let mut queries = vec![
            Query::TcpListeners,
            by_family(Family::V4, Transport::Udp, TCP_CLOSE),
            by_family(Family::V6, Transport::Udp, TCP_CLOSE),
            by_family(Family::V4, Transport::UdpLite, TCP_CLOSE),
            by_family(Family::V6, Transport::UdpLite, TCP_CLOSE),
        ];
        if self.sctp {
            queries.push(by_family(Family::V4, Transport::Sctp, TCP_LISTEN));
            queries.push(by_family(Family::V6, Transport::Sctp, TCP_LISTEN));
        }
        queries
    }

    fn collect_host(
        &self,
        queries: &[Query],
        watch: &WatchSet,
        out: &mut Collected,
    ) -> Result<(), SourceError> {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match host.as_mut() {
            Some(channel) => channel,
            None => host.insert(Channel::open()?),
        };
        let first = out.listeners.len();
        let dumped = dump_all(channel, queries, watch, &mut out.listeners);
        if dumped.is_err() {
            *host = None;
            return dumped;
        }
        name_interfaces(channel, &mut out.listeners[first..]);
        let mut host_facts = self.host_facts.lock().unwrap_or_else(|p| p.into_inner());
        out.namespaces.push(host_facts.read(None));
        let mut found = Vec::new();
        let mut tables = self.host_tables.lock().unwrap_or_else(|p| p.into_inner());
        match raw::collect(&mut channel.0, self.raw_support, &mut tables, &mut found) {
            Ok(()) => out.raw_sockets.extend(
                found
                    .into_iter()
                    .map(|found| SeenRawSocket { found, netns: None }),
            ),
            Err(err) => {
                tracing::debug!(error = %err, "cannot read this namespace's packet and raw sockets");
                out.raw_faults += 1;
                if channel.0.is_poisoned() {
                    *host = None;
                }
            }
        }
        Ok(())
    }

    fn collect_others(
        &self,
        others: &Mutex<NamespaceSet<ForeignNamespace>>,
        queries: &[Query],
        watch: &WatchSet,
        out: &mut Collected,
    ) {
        let mut others = others.lock().unwrap_or_else(|p| p.into_inner());
        let procfs = self.procfs.clone();
        // Read before any dump: a listen after this moves it, so the next
        // collection dumps again.
        let generation = self.hints.as_ref().and_then(|hints| hints.generation());
        let in_turns = others.held() > TURNS_FROM;
        if others.held() >= SHARED_UDP_TABLE_HINT_FROM {
            hint_at_shared_udp_table(&self.procfs, others.held());
        }
        // Each namespace keeps its channel and nothing else.
        others.set_max_open(channel_budget());
        let fact_changes = match &self.foreign_feeds {
            Some(feeds) => feeds.lock().unwrap_or_else(|p| p.into_inner()).changes(),
            None => ForeignFactFeeds::none_heard(),
        };
        let observer = self.observer.clone();
        let hints = self
            .hints
            .as_ref()
            .map(|hints| hints.recent_listeners())
            .unwrap_or_default();
        // Namespaces only a listening socket holds: entered through the
        // event side's descriptor of them (kept while the socket listens).
        if let Some(hints) = &self.hints {
            others.learn(hints.learnt_namespaces());
        }
        let pass = Pass {
            queries,
            watch,
            generation,
            in_turns,
            raw_support: self.raw_support,
            fact_changes: &fact_changes,
            procfs: &procfs,
        };
        let ids = self.namespace_ids.as_ref();
        let outcome = others.collect(
            &hints,
            |inode| ForeignNamespace::open(&procfs, inode, observer.as_ref(), ids),
            |foreign: &mut ForeignNamespace, roaming: &mut Roaming| {
                foreign.read(&pass, roaming).map_err(|err| err.0)
            },
            |foreign| foreign.last_found > 0,
        );
        out.namespaces_read += outcome.results.len() as u64;
        out.namespace_faults += outcome.failed;
        for (inode, visited) in outcome.results {
            out.listeners
                .extend(visited.listeners.into_iter().map(|listener| Listener {
                    netns: Some(inode),
                    ..listener
                }));
            out.namespaces.push(visited.facts);
            if let Some(value) = visited.unprivileged_port_start {
                out.unprivileged_port_start.push((inode, value));
            }
            if let Some(since) = visited.udplite_reused_since {
                out.udp_staleness = out.udp_staleness.max(since.elapsed());
            }
            match visited.raw_sockets {
                Ok(found) => out
                    .raw_sockets
                    .extend(found.into_iter().map(|found| SeenRawSocket {
                        found,
                        netns: Some(inode),
                    })),
                Err(err) => {
                    tracing::debug!(netns = inode, error = %err, "cannot read a namespace's packet and raw sockets");
                    out.raw_faults += 1;
                }
            }
        }
    }
}

/// Runs every query on one channel (the exporter's own namespace).
fn dump_all(
    channel: &mut Channel,
    queries: &[Query],
    watch: &WatchSet,
    out: &mut Vec<Listener>,
) -> Result<(), SourceError> {
    for &query in queries {
        dump_one(channel, query, watch, out)?;
    }
    Ok(())
}

/// Runs one query, keeping sockets on watched ports. `netns` is left
/// `None`; the caller tags other namespaces' listeners.
fn dump_one(
    channel: &mut Channel,
    query: Query,
    watch: &WatchSet,
    out: &mut Vec<Listener>,
) -> Result<(), SourceError> {
    let transport = query.transport();
    channel.dump(query, &mut |socket: DiagSocket| {
        if watch.is_watched(transport, socket.port) {
            out.push(Listener {
                transport,
                address: socket.address,
                port: socket.port,
                inode: socket.inode,
                uid: socket.uid,
                known_pids: None,
                netns: None,
                binding: socket.binding,
                interface: String::new(),
                multipath: socket.multipath,
            });
        }
    })
}

/// Which of `sockets` (all of one namespace) one channel still lists: the
/// dumps of the transports asked about, and the packet/raw listing when a
/// packet/raw socket is asked about (`read_raw`, which reads the
/// namespace's packet and raw sockets through the channel, is called only
/// then). `None` when a dump fails.
fn relist(
    channel: &mut Channel,
    read_raw: impl FnOnce(&mut Channel, &mut Vec<NamedRawSocket>) -> Result<(), String>,
    queries: &[Query],
    watch: &WatchSet,
    sockets: &[Recheck],
) -> Option<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut listeners = Vec::new();
    for &query in queries {
        if sockets
            .iter()
            .any(|s| s.transport == Some(query.transport()))
        {
            dump_one(channel, query, watch, &mut listeners).ok()?;
        }
    }
    found.extend(listeners.iter().map(|l| l.inode));
    if sockets.iter().any(|s| s.transport.is_none()) {
        let mut raw_sockets = Vec::new();
        read_raw(channel, &mut raw_sockets).ok()?;
        found.extend(raw_sockets.iter().map(|r| r.socket.inode));
    }
    Some(found)
}

/// Names the interfaces bound listeners use (`SO_BINDTODEVICE`), in the
/// channel's namespace.
fn name_interfaces(channel: &Channel, listeners: &mut [Listener]) {
    let mut names = InterfaceNames::new();
    for listener in listeners {
        if listener.binding.ifindex != 0 {
            listener.interface = names.name(&channel.0, listener.binding.ifindex).to_string();
        }
    }
}

impl SocketSource for SockDiagSource {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn coverage(&self) -> Vec<(Transport, bool)> {
        vec![
            (Transport::Tcp, true),
            (Transport::Udp, true),
            (Transport::UdpLite, true),
            (Transport::Sctp, self.sctp),
        ]
    }

    fn still_listed(&self, watch: &WatchSet, asked: &[Recheck]) -> HashSet<u64> {
        let mut listed = HashSet::new();
        let mut by_netns: BTreeMap<Option<u64>, Vec<Recheck>> = BTreeMap::new();
        for socket in asked {
            by_netns.entry(socket.netns).or_default().push(*socket);
        }
        let queries = self.queries();
        for (netns, sockets) in by_netns {
            let found = match netns {
                None => {
                    let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
                    let mut tables = self.host_tables.lock().unwrap_or_else(|p| p.into_inner());
                    let read_raw = |channel: &mut Channel, out: &mut Vec<NamedRawSocket>| {
                        raw::collect(&mut channel.0, self.raw_support, &mut tables, out)
                    };
                    let found = host
                        .as_mut()
                        .and_then(|channel| relist(channel, read_raw, &queries, watch, &sockets));
                    if found.is_none() {
                        *host = None; // a failed dump may leave its reply behind
                    }
                    found
                }
                Some(inode) => self.others.as_ref().and_then(|others| {
                    let mut others = others.lock().unwrap_or_else(|p| p.into_inner());
                    others
                        .visit_one(inode, |foreign| {
                            // The namespace's tables open on a thread in it.
                            let read_raw =
                                |channel: &mut Channel, out: &mut Vec<NamedRawSocket>| {
                                    let mut tables = enter::run_in_namespace_of(&channel.0, || {
                                        ProcTables::open(&self.procfs, self.raw_support)
                                    })
                                    .map_err(|err| {
                                        format!("cannot enter the namespace: {err}")
                                    })??;
                                    raw::collect(&mut channel.0, self.raw_support, &mut tables, out)
                                };
                            relist(&mut foreign.channel, read_raw, &queries, watch, &sockets)
                        })
                        .flatten()
                }),
            };
            // A namespace that cannot be read again keeps what it listed.
            let found = found.unwrap_or_else(|| sockets.iter().map(|s| s.inode).collect());
            listed.extend(found);
        }
        listed
    }

    fn collect(&self, watch: &WatchSet) -> Result<Collected, SourceError> {
        let queries = self.queries();
        let mut out = Collected::default();
        self.collect_host(&queries, watch, &mut out)?;
        out.namespaces_read += 1;
        if let Some(others) = &self.others {
            self.collect_others(others, &queries, watch, &mut out);
        }
        if let Some(udp_sockets) = &self.udp_sockets {
            udp_sockets.saw(out.listeners.iter());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::INET_DIAG_MSG_LEN;
    use crate::kernel::sock_diag::wire::tests::message;
    use crate::kernel::sock_diag::wire::{NLMSG_DONE, NLMSG_ERROR};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn reads_a_socket_then_done() {
        let mut diag = [0u8; INET_DIAG_MSG_LEN];
        diag[0] = libc::AF_INET as u8;
        diag[1] = TCP_LISTEN;
        diag[4..6].copy_from_slice(&276u16.to_be_bytes());
        diag[8..12].copy_from_slice(&[127, 0, 0, 1]);
        diag[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        diag[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        let mut buffer = message(SOCK_DIAG_BY_FAMILY, &diag);
        buffer.extend(message(NLMSG_DONE, &[0; 4]));
        let mut seen = Vec::new();
        assert_eq!(
            parse_messages(&buffer, |s| seen.push(s)),
            Ok(Progress::Done)
        );
        assert_eq!(
            seen,
            vec![DiagSocket {
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 276,
                uid: 1000,
                inode: 4242,
                binding: Binding::default(),
                multipath: false,
            }]
        );
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(parse_messages(&[1, 2, 3], |_| {}).is_err());
        let mut lying = message(SOCK_DIAG_BY_FAMILY, &[0; 8]);
        lying[0] = 200;
        assert!(parse_messages(&lying, |_| {}).is_err());
        assert!(parse_messages(&message(SOCK_DIAG_BY_FAMILY, &[0; 8]), |_| {}).is_err());
        let refusal = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert!(
            parse_messages(&refusal, |_| {})
                .unwrap_err()
                .contains("refused")
        );
    }

    #[test]
    fn a_live_dump_sees_a_listener_it_opened() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut channel = Channel::open().unwrap();
        let mut found = false;
        channel
            .dump(Query::TcpListeners, &mut |s| {
                found |= s.port == port && s.address == IpAddr::V4(Ipv4Addr::LOCALHOST)
            })
            .unwrap();
        assert!(found);
    }

    #[test]
    fn one_tcp_dump_returns_both_families() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0");
        let probed = v6
            .as_ref()
            .map(drop)
            .map_err(|err| format!("cannot bind [::1]: {err}"));
        if !crate::kernel::test_support::require("IPv6", probed) {
            return;
        }
        let v6 = v6.unwrap();
        let wanted = [
            (
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                v4.local_addr().unwrap().port(),
            ),
            (
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                v6.local_addr().unwrap().port(),
            ),
        ];
        let mut seen = Vec::new();
        let mut channel = Channel::open().unwrap();
        channel
            .dump(Query::TcpListeners, &mut |s| {
                if wanted.contains(&(s.address, s.port)) {
                    seen.push(s.address);
                }
            })
            .unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
}
