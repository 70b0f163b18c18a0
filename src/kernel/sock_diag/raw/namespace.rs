//! Reading the packet and raw sockets of one network namespace: through
//! the sock_diag channel already open inside it, and from `/proc/net`
//! tables opened inside it for what the kernel's sock_diag lacks (see
//! `mod.rs`).

use super::{NamedRawSocket, packet_diag, proc_net, raw_diag};
use crate::kernel::sock_diag::interfaces::InterfaceNames;
use crate::kernel::sock_diag::wire::{Channel, WireError};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Which sock_diag modules the kernel has; the rest comes from `/proc/net`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSupport {
    /// packet_diag (`CONFIG_PACKET_DIAG`).
    pub packet: bool,
    /// raw_diag (`CONFIG_INET_RAW_DIAG`).
    pub raw: bool,
}

impl DiagSupport {
    /// Asks the kernel once through `channel`. A refusal leaves the channel
    /// usable; a channel broken by the probe is the caller's to reopen.
    pub fn probe(channel: &mut Channel) -> DiagSupport {
        let mut answers = |body: &[u8]| match channel.dump(body, |_| Ok(())) {
            Ok(()) => true,
            Err(err) => {
                if !err.is_unsupported() {
                    tracing::debug!(error = %err, "sock_diag probe failed");
                }
                false
            }
        };
        DiagSupport {
            packet: answers(&packet_diag::request()),
            raw: answers(&raw_diag::request(raw_diag::IpFamily::V4)),
        }
    }

    /// "sock_diag" or "procfs", for packet and for raw sockets (logs).
    pub fn sources(self) -> (&'static str, &'static str) {
        let name = |diag: bool| if diag { "sock_diag" } else { "procfs" };
        (name(self.packet), name(self.raw))
    }
}

/// The `/proc/net` tables a namespace needs because sock_diag lacks them,
/// opened inside the namespace and kept: an open table keeps showing the
/// namespace it was opened in, and reading it again from offset 0 makes the
/// kernel regenerate it (a `pread`, no open or path lookup per scrape).
pub struct ProcTables {
    open: Vec<(Table, File)>,
    /// Reused read buffer.
    text: Vec<u8>,
}

impl ProcTables {
    /// Opens `{procfs}/thread-self/net/{packet,raw,raw6}` as `support`
    /// requires: call it on a thread inside the namespace (for the
    /// exporter's own, any of its threads).
    pub fn open(procfs: &Path, support: DiagSupport) -> Result<ProcTables, String> {
        let own_view = procfs.join("thread-self");
        let open = Table::needed(support)
            .map(|table| {
                let path = own_view.join(table.file());
                File::open(&path)
                    .map(|file| (table, file))
                    .map_err(|err| format!("cannot open {}: {err}", path.display()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(ProcTables {
            open,
            text: Vec::new(),
        })
    }

    /// Descriptors a namespace's tables take with this kernel (0 to 3), for
    /// the caller's open-file budget.
    pub fn descriptors(support: DiagSupport) -> usize {
        Table::needed(support).count()
    }
}

/// Appends every packet and raw socket of the namespace `channel` and
/// `tables` were opened in to `out`. A failed sock_diag dump may leave
/// `channel` poisoned (the caller reopens it).
pub fn collect(
    channel: &mut Channel,
    support: DiagSupport,
    tables: &mut ProcTables,
    out: &mut Vec<NamedRawSocket>,
) -> Result<(), String> {
    let mut parsed = Vec::new();
    if support.packet {
        channel
            .dump(&packet_diag::request(), |payload| {
                parsed.push(packet_diag::parse(payload).map_err(WireError::Broken)?);
                Ok(())
            })
            .map_err(|err| format!("packet sockets: {err}"))?;
    }
    if support.raw {
        for family in [raw_diag::IpFamily::V4, raw_diag::IpFamily::V6] {
            channel
                .dump(&raw_diag::request(family), |payload| {
                    parsed.push(raw_diag::parse(payload).map_err(WireError::Broken)?);
                    Ok(())
                })
                .map_err(|err| format!("raw sockets: {err}"))?;
        }
    }
    let ProcTables { open, text } = tables;
    for (table, file) in open.iter() {
        read_from_start(file, text)
            .map_err(|err| format!("cannot read /proc/{}: {err}", table.file()))?;
        match table {
            Table::Packet => proc_net::parse_packet(text, &mut parsed)?,
            Table::Raw | Table::Raw6 => proc_net::parse_raw(text, &mut parsed)?,
        }
    }
    let mut names = InterfaceNames::new();
    out.reserve(parsed.len());
    for socket in parsed {
        let interface = match socket.ifindex {
            None => "unknown".to_string(),
            Some(index) => names.name(&*channel, index).to_string(),
        };
        out.push(NamedRawSocket { socket, interface });
    }
    Ok(())
}

/// A `/proc/net` table this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Packet,
    Raw,
    Raw6,
}

impl Table {
    fn file(self) -> &'static str {
        match self {
            Table::Packet => "net/packet",
            Table::Raw => "net/raw",
            Table::Raw6 => "net/raw6",
        }
    }

    /// The tables to read when sock_diag lacks a kind.
    fn needed(support: DiagSupport) -> impl Iterator<Item = Table> {
        let packet = (!support.packet).then_some([Table::Packet].as_slice());
        let raw = (!support.raw).then_some([Table::Raw, Table::Raw6].as_slice());
        packet.into_iter().chain(raw).flatten().copied()
    }
}

/// Reads an open table from offset 0 into `text`.
fn read_from_start(file: &File, text: &mut Vec<u8>) -> std::io::Result<()> {
    text.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let read = file.read_at(&mut chunk, text.len() as u64)?;
        if read == 0 {
            return Ok(());
        }
        text.extend_from_slice(&chunk[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::raw::{BpfFilter, RawKind};
    use crate::kernel::test_support::require;
    use std::os::fd::AsRawFd;

    /// Packet and raw sockets, and making a namespace, need root.
    fn root() -> Result<(), String> {
        let uid = rustix::process::geteuid();
        if uid.is_root() {
            Ok(())
        } else {
            Err(format!("running as uid {}", uid.as_raw()))
        }
    }

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        crate::kernel::procfs::socket_inode(link.as_os_str()).unwrap()
    }

    /// This kernel has packet_diag but not raw_diag: sock_diag and the
    /// `/proc` tables together must list real sockets, and so must the
    /// tables alone; a second collection re-reads the same open tables.
    #[test]
    fn live_sockets_are_listed_through_diag_and_tables() {
        if !require("root", root()) {
            return;
        }
        use rustix::net::{AddressFamily, Protocol, SocketType, eth, ipproto, socket};
        let packet = socket(AddressFamily::PACKET, SocketType::DGRAM, Some(eth::ARP)).unwrap();
        let raw = socket(AddressFamily::INET6, SocketType::RAW, Some(ipproto::ICMPV6)).unwrap();
        let experimental = Protocol::from_raw(std::num::NonZeroU32::new(253).unwrap());
        let custom = socket(AddressFamily::INET, SocketType::RAW, Some(experimental)).unwrap();
        let mut channel = Channel::open().unwrap();
        let probed = DiagSupport::probe(&mut channel);
        eprintln!("packet sockets, raw sockets via {:?}", probed.sources());
        let none = DiagSupport {
            packet: false,
            raw: false,
        };
        let procfs = Path::new("/proc");
        assert_eq!(ProcTables::descriptors(none), 3);
        assert_eq!(
            ProcTables::descriptors(DiagSupport {
                packet: true,
                raw: true
            }),
            0
        );
        for support in [probed, none] {
            let mut tables = ProcTables::open(procfs, support).unwrap();
            let mut out = Vec::new();
            collect(&mut channel, support, &mut tables, &mut out).unwrap();
            let find = |inode: u64| {
                out.iter()
                    .find(|s| s.socket.inode == inode)
                    .unwrap_or_else(|| panic!("{inode} missing with {support:?}"))
            };
            let seen = find(inode_of(&packet));
            assert_eq!(seen.socket.kind, RawKind::Packet);
            assert_eq!(seen.socket.protocol_label(), "arp");
            assert_eq!(seen.socket.uid, Some(0));
            assert_eq!(seen.interface, "");
            let filter = if support.packet {
                BpfFilter::None
            } else {
                BpfFilter::Unknown
            };
            assert_eq!(seen.socket.bpf_filter, filter);
            let seen = find(inode_of(&raw));
            assert_eq!((seen.socket.kind, seen.socket.protocol), (RawKind::Raw, 58));
            assert_eq!(find(inode_of(&custom)).socket.protocol_label(), "253");
        }
        // The same open tables, read again, no longer show a closed socket.
        // Closed here, it is released when its last descriptor goes: a
        // child another test thread is forking holds a copy until it
        // execs, so the tables are read until a deadline.
        let mut tables = ProcTables::open(procfs, none).unwrap();
        let closed = inode_of(&custom);
        drop(custom);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let out = loop {
            let mut out = Vec::new();
            collect(&mut channel, none, &mut tables, &mut out).unwrap();
            if out.iter().all(|s| s.socket.inode != closed) || std::time::Instant::now() > deadline
            {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(out.iter().any(|s| s.socket.inode == inode_of(&packet)));
        assert!(out.iter().all(|s| s.socket.inode != closed));
    }

    /// Tables opened inside another namespace show that namespace.
    #[test]
    fn tables_opened_inside_a_namespace_show_it() {
        if !require("root", root()) {
            return;
        }
        let none = DiagSupport {
            packet: false,
            raw: false,
        };
        // A fresh namespace made by a thread that unshares, with one raw
        // socket; the exporter's namespace must not show it.
        let (tables, inode) = std::thread::spawn(move || {
            rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
            use rustix::net::{AddressFamily, SocketType, ipproto, socket};
            let raw = socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::UDP)).unwrap();
            let tables = ProcTables::open(Path::new("/proc"), none).unwrap();
            let inode = inode_of(&raw);
            std::mem::forget(raw); // keep it open for the test's life
            (tables, inode)
        })
        .join()
        .unwrap();
        let mut tables = tables;
        let mut channel = Channel::open().unwrap(); // ours: names only
        let mut inside = Vec::new();
        collect(&mut channel, none, &mut tables, &mut inside).unwrap();
        assert!(inside.iter().any(|s| s.socket.inode == inode));
        let mut ours = Vec::new();
        let mut own_tables = ProcTables::open(Path::new("/proc"), none).unwrap();
        collect(&mut channel, none, &mut own_tables, &mut ours).unwrap();
        assert!(ours.iter().all(|s| s.socket.inode != inode));
    }
}
