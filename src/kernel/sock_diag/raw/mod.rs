//! Sockets with no port: every `AF_PACKET` socket and every raw IP socket
//! (IPv4 and IPv6) of one network namespace.
//!
//! Passive backdoors (the BPFDoor family) never bind a port: they open a
//! packet or raw socket, attach a classic BPF filter and wait for a magic
//! packet, so no port-based view sees them. The kernel lists these sockets
//! through sock_diag and through `/proc/net/{packet,raw,raw6}`:
//!
//! - [`packet_diag`]: `AF_PACKET` sock_diag with `PACKET_SHOW_INFO` (bound
//!   interface, uid) and `PACKET_SHOW_FILTER` (whether a classic BPF filter
//!   is attached; the kernel shows it only to a reader with CAP_NET_ADMIN).
//! - [`raw_diag`]: inet_diag with `sdiag_protocol = IPPROTO_RAW`, for kernels
//!   built with `CONFIG_INET_RAW_DIAG` (many are not, this project's test
//!   machine among them).
//! - [`proc_net`]: the `/proc/net` text tables, read when the diag module is
//!   missing. They carry no filter information, and `raw`/`raw6` do not say
//!   which interface a socket is bound to.
//!
//! Which diag modules the kernel has is the same in every namespace, so
//! [`DiagSupport::probe`] asks once, at start: a module that answers
//! `ENOENT`/`EINVAL`/`EOPNOTSUPP` is absent. [`collect`] then reads one
//! namespace through the sock_diag channel already open inside it (the one
//! the listener dumps use: no extra descriptor), and, for what sock_diag
//! lacks, through [`ProcTables`]: `{procfs}/thread-self/net/` files opened
//! inside the namespace and kept (0 to 3 descriptors a namespace, which the
//! caller counts in its open-file budget).
//!
//! Interface names are resolved inside the namespace (see `interfaces.rs`).
//! What this module does not know: eBPF filters attached with
//! `SO_ATTACH_BPF` carry no classic program and are reported as no filter by
//! the kernel; raw sockets' filters are never reported (`Unknown`).

#[cfg(target_os = "linux")]
mod namespace;
#[cfg(target_os = "linux")]
pub mod packet_diag;
pub mod proc_net;
#[cfg(target_os = "linux")]
pub mod raw_diag;

#[cfg(target_os = "linux")]
pub use namespace::{DiagSupport, ProcTables, collect};

use std::borrow::Cow;

/// Which table a socket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RawKind {
    /// `AF_PACKET`: sees whole frames, below IP.
    Packet,
    /// `AF_INET`/`AF_INET6` `SOCK_RAW`: sees every IP packet of one protocol.
    Raw,
}

impl RawKind {
    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RawKind::Packet => "packet",
            RawKind::Raw => "raw",
        }
    }
}

/// Whether a classic BPF filter is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BpfFilter {
    Attached,
    None,
    /// The source cannot tell: `/proc`, raw sockets, or a packet_diag reader
    /// without CAP_NET_ADMIN (the kernel then sends an empty attribute).
    Unknown,
}

impl BpfFilter {
    /// The `bpf_filter` label: "true", "false" or "unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            BpfFilter::Attached => "true",
            BpfFilter::None => "false",
            BpfFilter::Unknown => "unknown",
        }
    }
}

/// One packet or raw socket, as parsed; no owner yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSocket {
    pub kind: RawKind,
    /// Ethertype (host order) for packet sockets, IP protocol for raw ones.
    pub protocol: u16,
    /// Bound interface index: `Some(0)` for none (all interfaces), `None`
    /// when the source does not say (`/proc/net/raw`).
    pub ifindex: Option<u32>,
    pub bpf_filter: BpfFilter,
    /// Uid that created the socket; `None` if the kernel did not say.
    pub uid: Option<u32>,
    /// Socket inode, the key for finding the owning process.
    pub inode: u64,
}

impl RawSocket {
    /// The `protocol` label: `all`, `ip`, `arp`, `ipv6` or `0x....` for
    /// packet sockets; `icmp`, `tcp`, `udp`, `icmpv6` or the decimal number
    /// for raw ones.
    pub fn protocol_label(&self) -> Cow<'static, str> {
        protocol_label(self.kind, self.protocol)
    }
}

pub fn protocol_label(kind: RawKind, protocol: u16) -> Cow<'static, str> {
    match (kind, protocol) {
        (RawKind::Packet, 0x0003) => "all".into(),
        (RawKind::Packet, 0x0800) => "ip".into(),
        (RawKind::Packet, 0x0806) => "arp".into(),
        (RawKind::Packet, 0x86dd) => "ipv6".into(),
        (RawKind::Packet, other) => format!("0x{other:04x}").into(),
        (RawKind::Raw, 1) => "icmp".into(),
        (RawKind::Raw, 6) => "tcp".into(),
        (RawKind::Raw, 17) => "udp".into(),
        (RawKind::Raw, 58) => "icmpv6".into(),
        (RawKind::Raw, other) => other.to_string().into(),
    }
}

/// One socket with its interface named in its own namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRawSocket {
    pub socket: RawSocket,
    /// "" when bound to no interface, "unknown" when the source does not
    /// say, else the name in the socket's namespace.
    pub interface: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_issue() {
        assert_eq!(protocol_label(RawKind::Packet, 3), "all");
        assert_eq!(protocol_label(RawKind::Packet, 0x86dd), "ipv6");
        assert_eq!(protocol_label(RawKind::Packet, 0x88cc), "0x88cc");
        assert_eq!(protocol_label(RawKind::Raw, 6), "tcp");
        assert_eq!(protocol_label(RawKind::Raw, 255), "255");
        assert_eq!(RawKind::Packet.as_str(), "packet");
        assert_eq!(BpfFilter::Unknown.as_str(), "unknown");
    }
}
