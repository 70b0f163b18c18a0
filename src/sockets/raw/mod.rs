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
//! [`RawSocketReader::open`] probes once which source each kind has, on the
//! thread that will read (it must already be inside the namespace): a diag
//! module that answers `ENOENT`/`EINVAL`/`EOPNOTSUPP` is absent, and the
//! matching `/proc` files are opened there and then, through
//! `{procfs}/thread-self/net/`, which shows the calling thread's namespace.
//! Open files keep their namespace; each collection re-reads them from
//! offset 0, which makes the kernel regenerate the table.
//!
//! Interface names are resolved inside the namespace (see `interfaces.rs`).
//! What this module does not know: eBPF filters attached with
//! `SO_ATTACH_BPF` carry no classic program and are reported as no filter by
//! the kernel; raw sockets' filters are never reported (`Unknown`).

pub mod packet_diag;
pub mod proc_net;
pub mod raw_diag;

use super::interfaces::InterfaceNames;
use super::wire::{Channel, WireError};
use std::borrow::Cow;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

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

/// Where one kind of socket is read from in a namespace.
#[derive(Debug)]
enum Source {
    SockDiag,
    /// The `/proc/net` file(s), opened inside the namespace.
    Procfs(Vec<File>),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::SockDiag => "sock_diag",
            Source::Procfs(_) => "procfs",
        }
    }
}

/// One collection's result: the sockets, with interface names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedRawSocket {
    pub socket: RawSocket,
    /// "" when bound to no interface, "unknown" when the source does not
    /// say, else the name in the socket's namespace.
    pub interface: String,
}

/// Reads the packet and raw sockets of the namespace it was opened in.
pub struct RawSocketReader {
    /// `None` when the kernel refused a NETLINK_SOCK_DIAG socket outright.
    channel: Option<Channel>,
    /// Used for interface names when there is no channel.
    spare_socket: Option<OwnedFd>,
    packet: Source,
    raw: Source,
    /// Reused text buffer for the `/proc` files.
    text: Vec<u8>,
    /// Reused parse output.
    parsed: Vec<RawSocket>,
}

impl RawSocketReader {
    /// Opens the reader in the calling thread's network namespace: probes
    /// packet_diag and raw_diag once, and opens `{procfs}/thread-self/net/`
    /// files for what the kernel's sock_diag lacks. Call it on a thread that
    /// has entered the namespace to read (or on any thread for the
    /// exporter's own).
    pub fn open(procfs: &Path) -> Result<RawSocketReader, String> {
        let mut channel = Channel::open().ok();
        let mut probe = |body: &[u8]| -> bool {
            let Some(open) = channel.as_mut() else {
                return false;
            };
            match open.dump(body, |_| Ok(())) {
                Ok(()) => true,
                Err(err) => {
                    if !err.is_unsupported() {
                        tracing::debug!(error = %err, "sock_diag probe failed");
                    }
                    false
                }
            }
        };
        let packet_ok = probe(&packet_diag::request());
        let raw_ok = probe(&raw_diag::request(raw_diag::IpFamily::V4));
        if channel.as_ref().is_some_and(Channel::is_poisoned) {
            channel = Channel::open().ok();
        }
        let net = procfs.join("thread-self/net");
        let open_files = |names: &[&str]| -> Result<Source, String> {
            names
                .iter()
                .map(|name| {
                    let path = net.join(name);
                    File::open(&path)
                        .map_err(|err| format!("cannot open {}: {err}", path.display()))
                })
                .collect::<Result<Vec<File>, String>>()
                .map(Source::Procfs)
        };
        let packet = if packet_ok {
            Source::SockDiag
        } else {
            open_files(&["packet"])?
        };
        let raw = if raw_ok {
            Source::SockDiag
        } else {
            open_files(&["raw", "raw6"])?
        };
        let spare_socket = match channel {
            Some(_) => None,
            None => Some(
                rustix::net::socket(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::DGRAM,
                    None,
                )
                .map_err(|err| format!("cannot open a socket for interface names: {err}"))?,
            ),
        };
        Ok(RawSocketReader {
            channel,
            spare_socket,
            packet,
            raw,
            text: Vec::with_capacity(4096),
            parsed: Vec::new(),
        })
    }

    /// "sock_diag" or "procfs", for packet and raw sockets: for the log at
    /// start and the landing page.
    pub fn sources(&self) -> (&'static str, &'static str) {
        (self.packet.name(), self.raw.name())
    }

    /// Appends every packet and raw socket of the namespace to `out`. An
    /// error means this namespace could not be read this time; a channel
    /// that failed half-way is unusable afterwards ([`Self::is_broken`]) and
    /// the reader must be opened again inside the namespace.
    pub fn collect(&mut self, out: &mut Vec<NamedRawSocket>) -> Result<(), String> {
        self.parsed.clear();
        self.read_packet()
            .map_err(|err| format!("packet sockets: {err}"))?;
        self.read_raw()
            .map_err(|err| format!("raw sockets: {err}"))?;
        let mut names = InterfaceNames::new();
        let lookup: Option<BorrowedFd<'_>> = match (&self.channel, &self.spare_socket) {
            (Some(channel), _) => Some(channel.as_fd()),
            (None, spare) => spare.as_ref().map(AsFd::as_fd),
        };
        out.reserve(self.parsed.len());
        for socket in self.parsed.drain(..) {
            let interface = match (socket.ifindex, lookup) {
                (None, _) => "unknown".to_string(),
                (Some(index), Some(fd)) => names.name(fd, index).to_string(),
                (Some(0), None) => String::new(),
                (Some(index), None) => index.to_string(),
            };
            out.push(NamedRawSocket { socket, interface });
        }
        Ok(())
    }

    /// True after a sock_diag dump failed half-way: drop the reader and open
    /// a new one inside the namespace.
    pub fn is_broken(&self) -> bool {
        self.channel.as_ref().is_some_and(Channel::is_poisoned)
    }

    fn read_packet(&mut self) -> Result<(), String> {
        match &self.packet {
            Source::SockDiag => {
                let channel = self.channel.as_mut().ok_or("no sock_diag channel")?;
                let parsed = &mut self.parsed;
                channel
                    .dump(&packet_diag::request(), |payload| {
                        parsed.push(packet_diag::parse(payload).map_err(WireError::Broken)?);
                        Ok(())
                    })
                    .map_err(|err| err.to_string())
            }
            Source::Procfs(files) => {
                read_whole(&files[0], &mut self.text)?;
                proc_net::parse_packet(&self.text, &mut self.parsed)
            }
        }
    }

    fn read_raw(&mut self) -> Result<(), String> {
        match &self.raw {
            Source::SockDiag => {
                let channel = self.channel.as_mut().ok_or("no sock_diag channel")?;
                for family in [raw_diag::IpFamily::V4, raw_diag::IpFamily::V6] {
                    let parsed = &mut self.parsed;
                    channel
                        .dump(&raw_diag::request(family), |payload| {
                            parsed.push(raw_diag::parse(payload).map_err(WireError::Broken)?);
                            Ok(())
                        })
                        .map_err(|err| err.to_string())?;
                }
                Ok(())
            }
            Source::Procfs(files) => {
                for file in files {
                    read_whole(file, &mut self.text)?;
                    proc_net::parse_raw(&self.text, &mut self.parsed)?;
                }
                Ok(())
            }
        }
    }
}

/// Reads an open `/proc` table from offset 0 (which makes the kernel
/// regenerate it) into `text`.
fn read_whole(file: &File, text: &mut Vec<u8>) -> Result<(), String> {
    text.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let read = file
            .read_at(&mut chunk, text.len() as u64)
            .map_err(|err| format!("cannot read a /proc/net table: {err}"))?;
        if read == 0 {
            return Ok(());
        }
        text.extend_from_slice(&chunk[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        crate::proc_root::socket_inode(link.as_os_str()).unwrap()
    }

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

    /// This kernel has packet_diag but not raw_diag: the reader must use
    /// sock_diag for one and `/proc` for the other, and see real sockets
    /// through both. (On a kernel with raw_diag the raw half reads sock_diag;
    /// the test checks what it sees either way.)
    #[test]
    fn a_live_reader_sees_packet_and_raw_sockets_it_opened() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: packet and raw sockets need root");
            return;
        }
        use rustix::net::{AddressFamily, Protocol, SocketType, eth, ipproto, socket};
        let packet = socket(AddressFamily::PACKET, SocketType::DGRAM, Some(eth::ARP)).unwrap();
        let raw = socket(AddressFamily::INET6, SocketType::RAW, Some(ipproto::ICMPV6)).unwrap();
        let experimental = Protocol::from_raw(std::num::NonZeroU32::new(253).unwrap());
        let custom = socket(AddressFamily::INET, SocketType::RAW, Some(experimental)).unwrap();
        let mut reader = RawSocketReader::open(Path::new("/proc")).unwrap();
        let (packet_source, raw_source) = reader.sources();
        eprintln!("packet sockets from {packet_source}, raw sockets from {raw_source}");
        let mut out = Vec::new();
        reader.collect(&mut out).unwrap();
        let find = |inode: u64| out.iter().find(|s| s.socket.inode == inode).cloned();
        let seen = find(inode_of(&packet)).expect("the packet socket is listed");
        assert_eq!(seen.socket.kind, RawKind::Packet);
        assert_eq!(seen.socket.protocol_label(), "arp");
        assert_eq!(seen.socket.uid, Some(0));
        assert_eq!(seen.interface, "");
        if packet_source == "sock_diag" {
            assert_eq!(seen.socket.bpf_filter, BpfFilter::None, "root sees filters");
        }
        let seen = find(inode_of(&raw)).expect("the raw IPv6 socket is listed");
        assert_eq!((seen.socket.kind, seen.socket.protocol), (RawKind::Raw, 58));
        let seen = find(inode_of(&custom)).expect("the raw IPv4 socket is listed");
        assert_eq!(seen.socket.protocol_label(), "253");
        // A second collection re-reads the same open files or channel.
        let closed = inode_of(&custom);
        drop(custom);
        out.clear();
        reader.collect(&mut out).unwrap();
        assert!(out.iter().any(|s| s.socket.inode == inode_of(&packet)));
        assert!(out.iter().all(|s| s.socket.inode != closed));
    }
}
