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
//! which for UDP means bound and unconnected, and UDP-Lite likewise (its own
//! table; `lsof` and `/proc/net/udplite` show it, the UDP dumps do not). On a dense container host
//! these walks of the kernel's hash tables are the whole cost of a
//! namespace, so saving one in four matters.
//!
//! Requests and replies are built and read by hand here rather than with
//! netlink-packet-sock-diag: that crate decodes every reply into owned
//! structures with a Vec of attributes per socket, and we want one pass over
//! the receive buffer with no allocation per socket (the reply carries no
//! attributes we use). Port filtering happens in that same pass: a listening
//! table is small, so an INET_DIAG_REQ_BYTECODE filter would save the kernel
//! no walking, only a few copied bytes. The netlink socket (netlink-sys) is
//! opened once and reused by every scrape; each dumping thread keeps one
//! receive buffer for all the channels it reads.
//!
//! With `--collector.netns=all` the same queries run in every other network
//! namespace through a channel opened inside it and kept by the namespace
//! room (`crate::netns::NamespaceSet`) until the namespace disappears. SCTP
//! listeners are asked for when the kernel has sctp_diag (probed at start).

use super::{Collected, KernelEvents, Listener, SocketSource, SourceError};
use crate::netns::{Discovery, NamespaceSet};
use crate::proc_root::{ProcRoot, parse_sysctl_integer};
use crate::registry::Transport;
use crate::watch::WatchSet;
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The older TCP-only request; its dump ignores the address family.
const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_req`, the older request: family, lengths, ext, sockid,
/// states, dbs.
const COMPAT_REQUEST_LEN: usize = 60;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg` up to and including `idiag_inode`.
const INET_DIAG_MSG_LEN: usize = 72;
const TCP_LISTEN: u32 = 10;
const TCP_CLOSE: u32 = 7;
const RECEIVE_BUFFER: usize = 64 * 1024;

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
}

/// What one receive buffer held.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The dump continues in the next datagram.
    More,
    /// NLMSG_DONE was seen.
    Done,
}

/// Reads the netlink messages in `buffer`, calling `visit` for each socket.
///
/// Malformed input (truncated headers, lengths that run past the buffer, an
/// error message from the kernel) is an `Err`, never a panic: this is the
/// function the fuzz target feeds.
pub fn parse_messages(
    buffer: &[u8],
    mut visit: impl FnMut(DiagSocket),
) -> Result<Progress, String> {
    let mut rest = buffer;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HEADER_LEN {
            return Err(format!("truncated netlink header ({} bytes)", rest.len()));
        }
        let length = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            return Err(format!(
                "netlink message length {length} does not fit the {} bytes received",
                rest.len()
            ));
        }
        let payload = &rest[NLMSG_HEADER_LEN..length];
        match kind {
            // Both carry an errno: a dump that failed ends in DONE with it.
            NLMSG_DONE | NLMSG_ERROR => {
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                if code < 0 || (kind == NLMSG_ERROR && code != 0) {
                    let err = std::io::Error::from_raw_os_error(code.wrapping_neg());
                    return Err(format!("the kernel refused the sock_diag request: {err}"));
                }
                if kind == NLMSG_DONE {
                    return Ok(Progress::Done);
                }
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => visit(parse_socket(payload)?),
            _ => {} // no other message types belong to a sock_diag dump
        }
        // Messages are padded to four bytes; the last may end unpadded.
        let advance = length.next_multiple_of(4).min(rest.len());
        rest = &rest[advance..];
    }
    Ok(Progress::More)
}

fn parse_socket(payload: &[u8]) -> Result<DiagSocket, String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!("short inet_diag_msg ({} bytes)", payload.len()));
    }
    let u32_at = |at: usize| u32::from_ne_bytes(payload[at..at + 4].try_into().unwrap());
    let source = &payload[8..24];
    let address = match payload[0] {
        f if f == libc::AF_INET as u8 => {
            IpAddr::V4(Ipv4Addr::new(source[0], source[1], source[2], source[3]))
        }
        f if f == libc::AF_INET6 as u8 => {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(source).unwrap()))
        }
        other => return Err(format!("unexpected address family {other}")),
    };
    Ok(DiagSocket {
        address,
        port: u16::from_be_bytes([payload[4], payload[5]]),
        uid: u32_at(64),
        inode: u64::from(u32_at(68)),
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

/// The largest request: nlmsghdr + the older `inet_diag_req`.
const MAX_REQUEST: usize = NLMSG_HEADER_LEN + COMPAT_REQUEST_LEN;

/// Builds one dump request with a zero sockid; returns the buffer and how
/// much of it is the request.
fn build_request(seq: u32, query: Query) -> ([u8; MAX_REQUEST], usize) {
    let mut request = [0u8; MAX_REQUEST];
    let (kind, length) = match query {
        Query::TcpListeners => {
            // idiag_family stays 0: the compat dump then returns both.
            let states_at = NLMSG_HEADER_LEN + 52;
            request[states_at..states_at + 4].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
            (TCPDIAG_GETSOCK, NLMSG_HEADER_LEN + COMPAT_REQUEST_LEN)
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
            request[16] = family.raw();
            request[17] = protocol;
            request[20..24].copy_from_slice(&states.to_ne_bytes());
            (SOCK_DIAG_BY_FAMILY, NLMSG_HEADER_LEN + REQUEST_LEN)
        }
    };
    request[0..4].copy_from_slice(&(length as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&seq.to_ne_bytes());
    (request, length)
}

thread_local! {
    /// One receive buffer per thread that dumps, shared by every channel it
    /// reads: a thousand namespace channels must not cost a thousand
    /// buffers.
    static RECEIVE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; RECEIVE_BUFFER]);
}

/// The reusable part: a netlink socket (one descriptor).
struct Channel {
    socket: Socket,
    seq: u32,
}

impl Channel {
    fn open() -> Result<Channel, SourceError> {
        let refused = |err: std::io::Error| {
            SourceError(format!("cannot open a NETLINK_SOCK_DIAG socket: {err}"))
        };
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(refused)?;
        socket.bind_auto().map_err(refused)?;
        // Dumps are flow-controlled by the kernel (it fills the socket as we
        // drain it), so the default kernel-side buffer is enough.
        Ok(Channel { socket, seq: 0 })
    }

    /// Runs one dump to completion, calling `visit` for every socket.
    fn dump(
        &mut self,
        query: Query,
        visit: &mut impl FnMut(DiagSocket),
    ) -> Result<(), SourceError> {
        self.seq = self.seq.wrapping_add(1);
        let (request, length) = build_request(self.seq, query);
        self.socket
            .send(&request[..length], 0)
            .map_err(|err| SourceError(format!("sock_diag request failed: {err}")))?;
        RECEIVE.with_borrow_mut(|buffer| {
            loop {
                let mut window = &mut buffer[..];
                let received = self
                    .socket
                    .recv(&mut window, 0)
                    .map_err(|err| SourceError(format!("sock_diag receive failed: {err}")))?;
                let received = received.min(buffer.len());
                match parse_messages(&buffer[..received], &mut *visit) {
                    Ok(Progress::Done) => return Ok(()),
                    Ok(Progress::More) if received > 0 => {}
                    Ok(Progress::More) => {
                        return Err(SourceError("sock_diag dump ended early".to_string()));
                    }
                    Err(err) => return Err(SourceError(err)),
                }
            }
        })
    }
}

/// A namespace other than ours: its netlink channel (one descriptor), its
/// `ip_unprivileged_port_start` read when the channel was opened (the
/// namespace room reopens channels every few minutes, which refreshes it),
/// and what its last dumps found, for reuse (see the module doc).
struct ForeignNamespace {
    channel: Channel,
    unprivileged_port_start: Option<i64>,
    /// The UDP destroy subscription registered for this namespace (a second
    /// descriptor), removed from the reader when the handle is dropped.
    destroy: Option<(Arc<crate::events::DestroyReader>, u64)>,
    /// Listeners the last read found: a namespace no process names any more
    /// is kept while its sockets still listen.
    last_found: usize,
    /// TCP listeners and the listen-event generation they were read at.
    tcp: Option<(u64, Vec<Listener>)>,
    /// UDP sockets as last read, and when.
    udp: Option<(Instant, Vec<Listener>)>,
    /// Collections since UDP was read; staggered at open so namespaces take
    /// turns.
    udp_turn: u64,
}

/// With more namespaces than this, other namespaces' UDP is re-read in
/// turns; below it, every collection reads everything.
pub const UDP_TURNS_FROM: usize = 256;
/// In turns, each namespace's UDP is re-read every this many collections.
pub const UDP_TURNS: u64 = 4;

/// Staggers the UDP turns of namespaces opened together.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// What one visit of a foreign namespace hands back.
struct Visited {
    listeners: Vec<Listener>,
    unprivileged_port_start: Option<i64>,
    /// When the UDP part was read, if it was reused from earlier.
    udp_reused_since: Option<Instant>,
}

impl ForeignNamespace {
    /// Runs `queries`, reusing the TCP listing while `generation` has not
    /// moved and the UDP listing until this namespace's turn, when
    /// `udp_in_turns`.
    fn read(
        &mut self,
        queries: &[Query],
        watch: &WatchSet,
        generation: Option<u64>,
        udp_in_turns: bool,
    ) -> Result<Visited, SourceError> {
        let mut listeners = Vec::new();
        let mut udp_reused_since = None;
        self.udp_turn += 1;
        let udp_due = !udp_in_turns || self.udp_turn.is_multiple_of(UDP_TURNS);
        let mut fresh_udp = Vec::new();
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
                Transport::Udp | Transport::UdpLite => match &self.udp {
                    Some((read_at, cached)) if !udp_due => {
                        if udp_reused_since.is_none() {
                            listeners.extend_from_slice(cached);
                            udp_reused_since = Some(*read_at);
                        }
                    }
                    _ => dump_one(&mut self.channel, query, watch, &mut fresh_udp)?,
                },
                Transport::Sctp => dump_one(&mut self.channel, query, watch, &mut listeners)?,
            }
        }
        if udp_reused_since.is_none() {
            listeners.extend_from_slice(&fresh_udp);
            self.udp = Some((Instant::now(), fresh_udp));
        }
        self.last_found = listeners.len();
        Ok(Visited {
            listeners,
            unprivileged_port_start: self.unprivileged_port_start,
            udp_reused_since,
        })
    }
}

impl ForeignNamespace {
    /// Runs inside the namespace `inode` (see `NamespaceSet::collect`): the
    /// channel, the sysctl, and the destroy subscription when events run.
    fn open(procfs: &Path, inode: u64, events: &KernelEvents) -> Result<ForeignNamespace, String> {
        let channel = Channel::open().map_err(|err| err.0)?;
        // /proc/sys/net shows the namespace of whoever opens the file.
        let sysctl = std::fs::read(procfs.join("sys/net/ipv4/ip_unprivileged_port_start"))
            .ok()
            .and_then(|bytes| parse_sysctl_integer(&bytes));
        let destroy = events.destroy.get().and_then(|link| {
            let subscription =
                crate::events::DestroySubscription::open(link.max_port, link.groups).ok()?;
            link.reader.add(inode, subscription).ok()?;
            Some((Arc::clone(&link.reader), inode))
        });
        Ok(ForeignNamespace {
            channel,
            unprivileged_port_start: sysctl,
            destroy,
            last_found: 0,
            tcp: None,
            udp: None,
            udp_turn: OPENED.fetch_add(1, Ordering::Relaxed) % UDP_TURNS,
        })
    }
}

impl Drop for ForeignNamespace {
    fn drop(&mut self) {
        if let Some((reader, inode)) = self.destroy.take() {
            reader.remove(inode);
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
    /// Every other namespace's channel, with `--collector.netns=all`.
    others: Option<Mutex<NamespaceSet<ForeignNamespace>>>,
    /// False when the kernel has no sctp_diag: SCTP is then not asked for.
    sctp: bool,
    /// procfs as seen from inside another namespace (its sysctls).
    procfs: PathBuf,
    /// Moves when a listen event is seen; lets unchanged namespaces skip
    /// their TCP dump.
    changes: Arc<KernelEvents>,
}

impl SockDiagSource {
    /// Opens the socket and runs one probe dump, so a kernel or sandbox that
    /// refuses sock_diag is found at start, not at the first scrape. Reads
    /// the exporter's own namespace only until [`Self::read_other_namespaces`].
    pub fn open() -> Result<SockDiagSource, SourceError> {
        let mut channel = Channel::open()?;
        channel.dump(Query::TcpListeners, &mut |_| {})?;
        let sctp_probe = Query::ByFamily {
            family: Family::V4,
            transport: Transport::Sctp,
            states: 1 << TCP_LISTEN,
        };
        let sctp = channel.dump(sctp_probe, &mut |_| {}).is_ok();
        if !sctp {
            // The failed dump may leave its error reply behind: start clean.
            channel = Channel::open()?;
            tracing::info!(
                "the kernel has no SCTP socket diagnostics (sctp_diag): SCTP listeners are not covered"
            );
        }
        Ok(SockDiagSource {
            host: Mutex::new(Some(channel)),
            others: None,
            sctp,
            procfs: PathBuf::from("/proc"),
            changes: Arc::new(KernelEvents::default()),
        })
    }

    /// Also reads every other network namespace found under `proc_root`.
    pub fn read_other_namespaces(mut self: Box<Self>, proc_root: &ProcRoot) -> Box<SockDiagSource> {
        let own = proc_root.own_net_namespace().unwrap_or(0);
        let discovery = Discovery::new(proc_root.clone(), own);
        self.others = Some(Mutex::new(NamespaceSet::new(discovery, channel_budget())));
        self.procfs = proc_root.procfs().to_path_buf();
        self
    }

    /// The generation the kernel listen events move (see [`KernelEvents`]).
    pub fn kernel_events(&self) -> Arc<KernelEvents> {
        Arc::clone(&self.changes)
    }

    fn queries(&self) -> Vec<Query> {
        let by_family = |family, transport, state: u32| Query::ByFamily {
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
        let dumped = dump_all(channel, queries, watch, &mut out.listeners);
        if dumped.is_err() {
            *host = None;
        }
        dumped
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
        let generation = self.changes.generation();
        let udp_in_turns = others.held() > UDP_TURNS_FROM;
        // With destroy events each namespace costs two descriptors.
        let per_namespace = if self.changes.destroy.get().is_some() {
            2
        } else {
            1
        };
        others.set_max_open(channel_budget() / per_namespace);
        let events = Arc::clone(&self.changes);
        let hints = self.changes.recent_listeners();
        let outcome = others.collect(
            &hints,
            move |inode| ForeignNamespace::open(&procfs, inode, &events),
            |foreign: &mut ForeignNamespace| {
                foreign
                    .read(queries, watch, generation, udp_in_turns)
                    .map_err(|err| err.0)
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
            if let Some(value) = visited.unprivileged_port_start {
                out.unprivileged_port_start.push((inode, value));
            }
            if let Some(since) = visited.udp_reused_since {
                out.udp_staleness = out.udp_staleness.max(since.elapsed());
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
            });
        }
    })
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

    fn collect(&self, watch: &WatchSet, out: &mut Collected) -> Result<(), SourceError> {
        let queries = self.queries();
        self.collect_host(&queries, watch, out)?;
        out.namespaces_read += 1;
        if let Some(others) = &self.others {
            self.collect_others(others, &queries, watch, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_a_socket_then_done() {
        let mut diag = [0u8; INET_DIAG_MSG_LEN];
        diag[0] = libc::AF_INET as u8;
        diag[1] = TCP_LISTEN as u8;
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
                inode: 4242
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
        let Ok(v6) = std::net::TcpListener::bind("[::1]:0") else {
            return; // no IPv6 on this host: nothing to show
        };
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
