//! Which network namespace a listening socket is in, found from the process
//! that holds it: its descriptor table is walked (`/proc/PID/fd`), each
//! socket is borrowed with `pidfd_getfd(2)` (a duplicate in our table,
//! closed again after a few syscalls: while we hold it the socket outlives
//! an owner's close, so describing never walks for a socket whose close it
//! has already seen), the one listening on the event's protocol,
//! address and port is picked, and the kernel is asked for its namespace
//! ([`super::socket_ns`]). The answer is the socket's own namespace, even
//! when the process has since moved to another one, and the returned
//! descriptor keeps that namespace reachable (collection enters it).
//!
//! Needs Linux 5.6 (`pidfd_getfd`) and ptrace-attach rights over the owner
//! (root, or CAP_SYS_PTRACE). Costs one readlink per descriptor of the
//! process and a few syscalls per socket; [`MAX_DESCRIPTORS`] bounds it.

use super::socket_ns::namespace_of_socket;
use rustix::net::SocketAddrAny;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Most descriptors looked at in one process.
pub const MAX_DESCRIPTORS: usize = 4096;

/// A listening socket found in a process, and its namespace.
#[derive(Debug)]
pub struct HeldSocket {
    /// Inode of the socket (`socket:[N]`).
    pub inode: u64,
    /// Inode of the socket's network namespace.
    pub netns: u64,
    /// A descriptor of that namespace.
    pub netns_fd: OwnedFd,
}

/// What identifies the socket an event was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// IPPROTO_* number (6 TCP, 262 MPTCP, 132 SCTP).
    pub protocol: u32,
    pub address: IpAddr,
    pub port: u16,
}

/// Finds a socket of `pid` listening as `wanted` says, skipping socket
/// inodes `skip` rejects (already attributed to another event). A process
/// may hold several such sockets, one per namespace (same port, same
/// address): then the one in `prefer` (the listening thread's namespace)
/// is taken if there is one, and none (`None`) if there is not, since the
/// walk cannot tell which of them just listened. `None` too when the
/// process is gone, is not ours to inspect, or no longer holds it.
pub fn find(
    procfs: &Path,
    pid: u32,
    wanted: Wanted,
    prefer: Option<u64>,
    skip: impl Fn(u64) -> bool,
) -> Option<HeldSocket> {
    let mut found: Vec<HeldSocket> = Vec::new();
    walk(procfs, pid, wanted, skip, |held| found.push(held))?;
    if found.len() > 1 {
        return found.into_iter().find(|held| Some(held.netns) == prefer);
    }
    found.pop()
}

fn walk(
    procfs: &Path,
    pid: u32,
    wanted: Wanted,
    skip: impl Fn(u64) -> bool,
    mut visit: impl FnMut(HeldSocket),
) -> Option<()> {
    let pidfd = pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()?;
    let directory = procfs.join(pid.to_string()).join("fd");
    for entry in std::fs::read_dir(&directory)
        .ok()?
        .flatten()
        .take(MAX_DESCRIPTORS)
    {
        let Some(inode) = std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| socket_inode(target.to_str()?))
        else {
            continue;
        };
        if skip(inode) {
            continue;
        }
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(socket) = pidfd_getfd(&pidfd, number, PidfdGetfdFlags::empty()) else {
            continue;
        };
        if !matches(&socket, wanted) {
            continue;
        }
        let Ok(netns_fd) = namespace_of_socket(&socket) else {
            continue;
        };
        let Some(netns) = netns_fd
            .try_clone()
            .ok()
            .and_then(|fd| std::fs::File::from(fd).metadata().ok())
            .map(|meta| meta.ino())
        else {
            continue;
        };
        visit(HeldSocket {
            inode,
            netns,
            netns_fd,
        });
    }
    Some(())
}

/// `socket:[12345]` -> 12345.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn matches(socket: &OwnedFd, wanted: Wanted) -> bool {
    if !rustix::net::sockopt::get_socket_acceptconn(socket).unwrap_or(false) {
        return false;
    }
    let protocol = rustix::net::sockopt::get_socket_protocol(socket)
        .ok()
        .flatten()
        .map_or(0, |p| p.as_raw().get());
    if protocol != wanted.protocol {
        return false;
    }
    match rustix::net::getsockname(socket) {
        Ok(SocketAddrAny::V4(address)) => {
            address.port() == wanted.port && IpAddr::V4(*address.ip()) == wanted.address
        }
        Ok(SocketAddrAny::V6(address)) => {
            address.port() == wanted.port && IpAddr::V6(*address.ip()) == wanted.address
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn finds_our_own_listener_and_its_namespace() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let wanted = Wanted {
            protocol: 6,
            address: Ipv4Addr::LOCALHOST.into(),
            port,
        };
        let Some(found) = find(Path::new("/proc"), std::process::id(), wanted, None, |_| {
            false
        }) else {
            // pidfd_getfd on ourselves needs ptrace rights over ourselves,
            // which every process has unless a sandbox forbids pidfd_getfd.
            panic!("our own listener was not found (is pidfd_getfd allowed here?)");
        };
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(found.netns, ours);
        // The wrong port, or every inode skipped: nothing.
        let other = Wanted {
            port: port.wrapping_add(1),
            ..wanted
        };
        assert!(
            find(Path::new("/proc"), std::process::id(), other, None, |_| {
                false
            })
            .is_none()
        );
        assert!(
            find(Path::new("/proc"), std::process::id(), wanted, None, |_| {
                true
            })
            .is_none()
        );
    }
}
