//! Close events for TCP and UDP: sock_diag's destroy multicast groups.
//!
//! When the kernel frees an IPv4/IPv6 TCP or UDP socket and someone listens
//! on `SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY` in that socket's network
//! namespace, it broadcasts one `inet_diag_msg` describing it. This is the
//! only kernel event for UDP: a UDP socket bound to a watched port for 5 ms
//! is seen here even though no listen() ever happened.
//!
//! What the message holds, measured on Linux 6.18: family, state, source
//! and destination port and address, interface, the socket cookie and an
//! `INET_DIAG_PROTOCOL` attribute (TCP messages also carry `tcp_info`). It
//! does **not** hold the socket's uid or inode: the kernel's broadcast path
//! (`inet_diag_handler_get_info`) zeroes the message and never fills them,
//! so `idiag_uid` reads 0 whoever owned the socket. The user of a destroyed
//! socket must come from an earlier sighting of the same socket (its cookie
//! is in dumps too) or stay unknown. UDP-Lite, SCTP-on-SEQPACKET and raw
//! sockets are never broadcast (the kernel maps them to no group); MPTCP
//! listeners show up as their TCP subflow socket.
//!
//! Privilege: none for our own namespace. sock_diag's netlink family lets
//! any user join these groups (tested: uid 65534 with no capabilities
//! receives them), but only for sockets of the namespace the subscribing
//! socket was created in. Other namespaces are heard by the same one
//! subscription with `NETLINK_LISTEN_ALL_NSID` (CAP_NET_BROADCAST): the
//! kernel then delivers the broadcasts of every namespace our namespace has
//! given an id (`crate::kernel::netns::ids`), each with its id in a control
//! message, and the [`DestroyReader`] thread maps ids to the namespaces the
//! socket source reads ([`DestroyReader::hear_namespace`]). One descriptor
//! for a thousand namespaces, not a thousand.
//!
//! Cost: once a group has a member in a namespace, the kernel builds a
//! broadcast for every socket of that kind the namespace frees, on a kernel
//! worker: about 1.5 to 2 us of kworker CPU per socket measured here
//! (`benches/events.rs`), whatever our filter then keeps. That is why
//! [`DestroyGroups::Udp`] exists: with the tracepoint running, TCP closes
//! are already known, and TCP connection churn, the common storm, then
//! costs nothing here. A classic BPF socket filter on each subscription
//! ([`destroy_filter`]) keeps only sockets with a source port up to
//! `max_port` and no peer (destination port 0): listeners and unconnected
//! bound UDP sockets, the ones the exporter reports. The rest are dropped
//! before they are queued, so a storm does not wake the reader.

use socket2::{SockFilter, SockRef};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// `enum sknetlink_groups` in `linux/sock_diag.h`.
pub const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
pub const SKNLGRP_INET_UDP_DESTROY: u32 = 2;
pub const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
pub const SKNLGRP_INET6_UDP_DESTROY: u32 = 4;

/// Which destroy groups a subscription joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyGroups {
    /// UDP only: the choice while the tracepoint capture runs, which already
    /// sees TCP listeners close. TCP connection churn then costs nothing.
    Udp,
    /// TCP and UDP: for when the tracepoint is unavailable.
    TcpAndUdp,
}

impl DestroyGroups {
    fn numbers(self) -> &'static [u32] {
        match self {
            DestroyGroups::Udp => &[SKNLGRP_INET_UDP_DESTROY, SKNLGRP_INET6_UDP_DESTROY],
            DestroyGroups::TcpAndUdp => &[
                SKNLGRP_INET_TCP_DESTROY,
                SKNLGRP_INET_UDP_DESTROY,
                SKNLGRP_INET6_TCP_DESTROY,
                SKNLGRP_INET6_UDP_DESTROY,
            ],
        }
    }
}

use crate::kernel::sock_diag::wire::{self, INET_DIAG_PROTOCOL, NLMSG_HEADER_LEN, WireError};
/// Kernel-side receive buffer of the subscription, which every namespace
/// shares: room for thousands of filtered messages if the reader is slow.
const RECEIVE_BUFFER_BYTES: usize = 2 * 1024 * 1024;
/// One recvmsg() returns one datagram; a destroy message is under 400 bytes.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// epoll data of the reader's stop eventfd and of its subscription.
const STOP_TOKEN: u64 = u64::MAX;
const SUBSCRIPTION_TOKEN: u64 = 0;

/// The protocol of a destroyed socket, from `INET_DIAG_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestroyedProtocol {
    Tcp,
    Udp,
    /// Any other protocol number, or 0 when the attribute was missing.
    Other(u8),
}

impl DestroyedProtocol {
    fn from_number(number: u8) -> DestroyedProtocol {
        match number {
            6 => DestroyedProtocol::Tcp,
            17 => DestroyedProtocol::Udp,
            other => DestroyedProtocol::Other(other),
        }
    }

    /// Label value: `tcp`, `udp` or `other`.
    /// The IP protocol number (0 when the message had none).
    pub fn number(self) -> u16 {
        match self {
            DestroyedProtocol::Tcp => 6,
            DestroyedProtocol::Udp => 17,
            DestroyedProtocol::Other(number) => u16::from(number),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DestroyedProtocol::Tcp => "tcp",
            DestroyedProtocol::Udp => "udp",
            DestroyedProtocol::Other(_) => "other",
        }
    }
}

/// One destroyed socket, as the kernel described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestroyedSocket {
    pub protocol: DestroyedProtocol,
    pub address: IpAddr,
    pub port: u16,
    /// Destination port: 0 for listeners and unconnected UDP sockets.
    pub peer_port: u16,
    /// Socket state when freed (TCP_CLOSE, 7, for closed listeners and UDP).
    pub state: u8,
    /// The kernel's socket cookie, the same as in sock_diag dumps.
    pub cookie: u64,
}

/// A destroyed socket and the namespace key its subscription was added with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestroyEvent {
    pub netns: u64,
    pub socket: DestroyedSocket,
}

/// Reads the netlink messages of one datagram, calling `visit` for each
/// destroyed socket. Malformed input is an `Err`, never a panic.
pub fn parse_destroy_messages(
    buffer: &[u8],
    mut visit: impl FnMut(DestroyedSocket),
) -> Result<(), String> {
    wire::walk_messages(buffer, |payload| {
        visit(parse_destroyed_socket(payload).map_err(WireError::Broken)?);
        Ok(())
    })
    .map(|_| ())
    .map_err(|err| err.to_string())
}

fn parse_destroyed_socket(payload: &[u8]) -> Result<DestroyedSocket, String> {
    let msg = wire::inet_diag_msg(payload)?;
    let protocol = wire::attributes(msg.attributes)
        .filter(|(kind, value)| *kind == INET_DIAG_PROTOCOL && !value.is_empty())
        .map(|(_, value)| value[0])
        .last()
        .unwrap_or(0);
    Ok(DestroyedSocket {
        protocol: DestroyedProtocol::from_number(protocol),
        address: msg.address,
        port: msg.port,
        peer_port: msg.peer_port,
        state: msg.state,
        cookie: msg.cookie,
    })
}

/// The classic BPF program each subscription carries: accept a message
/// whose `idiag_sport` is at most `max_port` and whose `idiag_dport` is 0,
/// drop the rest. Offsets count from the netlink header (16 bytes), and
/// `ldh` loads in network byte order, which is how ports are stored.
pub fn destroy_filter(max_port: u16) -> [SockFilter; 6] {
    const LDH_ABS: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let sport = (NLMSG_HEADER_LEN + 4) as u32;
    let dport = (NLMSG_HEADER_LEN + 6) as u32;
    [
        SockFilter::new(LDH_ABS, 0, 0, sport),
        SockFilter::new(JGT_K, 3, 0, u32::from(max_port)), // too high: drop
        SockFilter::new(LDH_ABS, 0, 0, dport),
        SockFilter::new(JEQ_K, 0, 1, 0), // no peer: accept, else drop
        SockFilter::new(RET_K, 0, 0, u32::MAX),
        SockFilter::new(RET_K, 0, 0, 0),
    ]
}

/// A netlink socket joined to destroy groups.
pub struct DestroySubscription {
    socket: netlink_sys::Socket,
}

impl DestroySubscription {
    /// Subscribes to `groups` in the calling thread's current network
    /// namespace, keeping only sockets on ports up to `max_port` (see
    /// [`destroy_filter`]). It hears other namespaces too once
    /// [`DestroyReader::hear_namespace`] names one.
    pub fn open(max_port: u16, groups: DestroyGroups) -> io::Result<DestroySubscription> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
        // The filter goes on before any group is joined, so no unfiltered
        // message can be queued.
        SockRef::from(&socket).attach_filter(&destroy_filter(max_port))?;
        socket.bind_auto()?;
        for &group in groups.numbers() {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        crate::kernel::nlsock::grow_receive_buffer(&socket, RECEIVE_BUFFER_BYTES);
        Ok(DestroySubscription { socket })
    }
}

/// Counters the reader keeps.
#[derive(Debug, Default)]
pub struct DestroyStats {
    /// Destroyed sockets handed to the callback.
    pub events: AtomicU64,
    /// Times the subscription's receive buffer overflowed (ENOBUFS): some
    /// messages were lost, the kernel does not say how many.
    pub overruns: AtomicU64,
    /// Datagrams that did not parse.
    pub undecodable: AtomicU64,
    /// Datagrams from a namespace we do not read (an id we never gave).
    pub unattributed: AtomicU64,
    /// Kernel thread id of the reader thread (0 until it has started).
    pub thread_id: AtomicU32,
}

struct Shared {
    subscription: DestroySubscription,
    /// Our own namespace's inode: what a message without an id is from.
    own_netns: u64,
    /// Namespace id (as our namespace names it) -> the namespace's inode
    /// and how many handles of it are open (a handle is reopened before the
    /// old one closes, so the id is never forgotten in between).
    namespaces: Mutex<HashMap<i32, (u64, u32)>>,
    /// Set once the subscription hears every namespace.
    hears_all: AtomicBool,
    stats: DestroyStats,
}

/// One thread reading the one subscription that hears every namespace
/// read; dropping it stops the thread and closes the subscription.
pub struct DestroyReader {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl DestroyReader {
    /// Starts the reader thread on `subscription`, opened in our namespace
    /// (inode `own_netns`). `on_event` runs on that thread for every
    /// destroyed socket it hears of.
    pub fn start(
        own_netns: u64,
        subscription: DestroySubscription,
        on_event: impl FnMut(DestroyEvent) + Send + 'static,
    ) -> io::Result<DestroyReader> {
        use rustix::event::epoll;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = Arc::new(rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?);
        epoll::add(
            &epoll,
            wake.as_fd(),
            epoll::EventData::new_u64(STOP_TOKEN),
            epoll::EventFlags::IN,
        )?;
        epoll::add(
            &epoll,
            subscription.socket.as_fd(),
            epoll::EventData::new_u64(SUBSCRIPTION_TOKEN),
            epoll::EventFlags::IN,
        )?;
        let shared = Arc::new(Shared {
            subscription,
            own_netns,
            namespaces: Mutex::new(HashMap::new()),
            hears_all: AtomicBool::new(false),
            stats: DestroyStats::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop, wake) = (Arc::clone(&shared), Arc::clone(&stop), Arc::clone(&wake));
            std::thread::Builder::new()
                .name("destroy-events".into())
                .spawn(move || read_loop(&shared, &epoll, &wake, &stop, on_event))?
        };
        Ok(DestroyReader {
            shared,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    /// Hears the namespace `netns` (its inode) from now on, by the id `nsid`
    /// our namespace gave it (`crate::kernel::netns::ids`). The first call
    /// makes the subscription hear every namespace with an id
    /// (`NETLINK_LISTEN_ALL_NSID`, which needs CAP_NET_BROADCAST); messages
    /// from ids never named here are dropped.
    pub fn hear_namespace(&self, nsid: i32, netns: u64) -> io::Result<()> {
        if !self.shared.hears_all.load(Ordering::SeqCst) {
            self.shared
                .subscription
                .socket
                .set_listen_all_namespaces(true)?;
            self.shared.hears_all.store(true, Ordering::SeqCst);
        }
        let mut namespaces = self.lock();
        let heard = namespaces.entry(nsid).or_insert((netns, 0));
        if heard.0 != netns {
            // The id was freed with its namespace and given to this one.
            *heard = (netns, 0);
        }
        heard.1 += 1;
        Ok(())
    }

    /// Undoes one [`Self::hear_namespace`] of `netns`: when none is left,
    /// its broadcasts are no longer heard. False when it was not heard.
    pub fn forget_namespace(&self, netns: u64) -> bool {
        let mut namespaces = self.lock();
        let before = namespaces.len();
        namespaces.retain(|_, (inode, holders)| {
            if *inode == netns {
                *holders = holders.saturating_sub(1);
            }
            *holders > 0
        });
        namespaces.len() != before
    }

    /// The namespaces heard now (inodes), ours first.
    pub fn namespaces(&self) -> Vec<u64> {
        let mut others: Vec<u64> = self.lock().values().map(|&(inode, _)| inode).collect();
        others.sort_unstable();
        others.dedup();
        others.retain(|&inode| inode != self.shared.own_netns);
        std::iter::once(self.shared.own_netns)
            .chain(others)
            .collect()
    }

    pub fn stats(&self) -> &DestroyStats {
        &self.shared.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, (u64, u32)>> {
        self.shared
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for DestroyReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_loop(
    shared: &Shared,
    epoll: &OwnedFd,
    wake: &OwnedFd,
    stop: &AtomicBool,
    mut on_event: impl FnMut(DestroyEvent),
) {
    use rustix::event::epoll;
    shared.stats.thread_id.store(
        rustix::thread::gettid().as_raw_nonzero().get() as u32,
        Ordering::Relaxed,
    );
    let mut ready = epoll::EventVec::with_capacity(4);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut batch = Vec::new();
    loop {
        if let Err(err) = epoll::wait(epoll, &mut ready, -1)
            && err != rustix::io::Errno::INTR
        {
            tracing::error!("destroy event reader stopped: epoll_wait failed: {err}");
            return;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        for event in &ready {
            if event.data.u64() == STOP_TOKEN {
                let _ = rustix::io::read(wake.as_fd(), &mut buffer[..8]);
                continue;
            }
            drain(shared, &mut buffer, &mut batch);
            for event in batch.drain(..) {
                shared.stats.events.fetch_add(1, Ordering::Relaxed);
                on_event(event);
            }
        }
    }
}

/// Reads every datagram queued on the subscription, each labelled with the
/// namespace its id names.
fn drain(shared: &Shared, buffer: &mut [u8], batch: &mut Vec<DestroyEvent>) {
    let stats = &shared.stats;
    loop {
        let received = crate::kernel::socket_ns::recv_with_nsid(
            &shared.subscription.socket,
            buffer,
            libc::MSG_DONTWAIT,
        );
        match received {
            Ok((0, _)) => return,
            Ok((received, nsid)) => {
                let netns = match nsid {
                    None => Some(shared.own_netns),
                    Some(id) => shared
                        .namespaces
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .get(&id)
                        .map(|&(inode, _)| inode),
                };
                let Some(netns) = netns else {
                    stats.unattributed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let received = received.min(buffer.len());
                let parsed = parse_destroy_messages(&buffer[..received], |socket| {
                    batch.push(DestroyEvent { netns, socket })
                });
                if parsed.is_err() {
                    stats.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                stats.overruns.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return, // EAGAIN: drained
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::{INET_DIAG_MSG_LEN, SOCK_DIAG_BY_FAMILY};
    use std::net::Ipv4Addr;

    fn message(family: u8, sport: u16, dport: u16, protocol: Option<u8>) -> Vec<u8> {
        let mut payload = vec![0u8; INET_DIAG_MSG_LEN];
        payload[0] = family;
        payload[1] = 7;
        payload[4..6].copy_from_slice(&sport.to_be_bytes());
        payload[6..8].copy_from_slice(&dport.to_be_bytes());
        payload[8..12].copy_from_slice(&[127, 0, 0, 1]);
        payload[44..48].copy_from_slice(&0x1234u32.to_ne_bytes());
        payload[48..52].copy_from_slice(&0x1u32.to_ne_bytes());
        if let Some(protocol) = protocol {
            payload.extend_from_slice(&5u16.to_ne_bytes());
            payload.extend_from_slice(&INET_DIAG_PROTOCOL.to_ne_bytes());
            payload.extend_from_slice(&[protocol, 0, 0, 0]);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn parses_sockets_protocol_and_cookie() {
        let mut buffer = message(libc::AF_INET as u8, 276, 0, Some(17));
        buffer.extend(message(libc::AF_INET as u8, 277, 0, None));
        let mut seen = Vec::new();
        parse_destroy_messages(&buffer, |socket| seen.push(socket)).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].protocol, DestroyedProtocol::Udp);
        assert_eq!(seen[0].port, 276);
        assert_eq!(seen[0].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(seen[0].cookie, 0x1_0000_1234);
        assert_eq!(seen[1].protocol, DestroyedProtocol::Other(0));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = message(libc::AF_INET as u8, 276, 0, Some(6));
        assert!(parse_destroy_messages(&good[..10], |_| {}).is_err());
        assert!(parse_destroy_messages(&good[..40], |_| {}).is_err());
        let mut bad_family = good.clone();
        bad_family[16] = 99;
        assert!(parse_destroy_messages(&bad_family, |_| {}).is_err());
        let mut bad_attribute = good.clone();
        let at = NLMSG_HEADER_LEN + INET_DIAG_MSG_LEN;
        bad_attribute[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_destroy_messages(&bad_attribute, |_| {}).is_ok());
    }
}
