//! Which network namespace a listening socket is in, found from the process
//! that holds it, without ever keeping the socket open behind its owner's
//! back.
//!
//! The namespace the listening thread is in is asked, through sock_diag,
//! which sockets listen there on the event's protocol, address and port:
//! when one of them belongs to the listening process's user, that
//! namespace is the socket's. This is every case but one, and it touches
//! neither the socket nor the owner's descriptor table.
//!
//! Why not the descriptor table first: reading a link in `/proc/PID/fd`
//! takes a reference to the file for a moment, and when the owner closes
//! it just then, the kernel finishes the close when our reference goes, a
//! few microseconds later; an owner that binds the port again at once
//! meets `EADDRINUSE` (measured: 3 to 8 in 3,000 paced close+bind rounds,
//! in one run of three, while every listen was described through its
//! owner's table; `ss -p` has the same effect). So the table is read only
//! when the thread's namespace lists no such socket of that user (a
//! listener made by a user other than the process's, a socket passed in or
//! made before a change of uid, or the exception below), and then only for
//! a socket still open when the namespace answered: every kernel event up
//! to that answer read ([`Finder::find`]'s `closed`), none its close. In a
//! storm most sockets are closed by the time they are described; reading
//! their owner's table anyway made a Python loop binding and closing 276
//! 30,000 times a second fail with `EADDRINUSE` within its first second,
//! with no scrape running. What this
//! trusts: that a namespace listing a socket of the process's user on the
//! event's address and port just as the process listened there lists the
//! process's own socket. Only a process that made its socket in one
//! namespace, moved its thread to another where the same user already
//! listens on the same address and port, and listened there, is labelled
//! with the second namespace; the snapshot, which reads every namespace,
//! shows it where it is.
//!
//! The exception is a socket made in a namespace its thread has since left
//! (create, `listen`, `setns` elsewhere), the only way a namespace can be
//! held by nothing but a listening socket. Then each candidate socket is
//! borrowed with `pidfd_getfd(2)` and the kernel is asked for its
//! namespace ([`crate::kernel::socket_ns`]). A borrowed copy keeps the socket
//! listening until we close it a few syscalls later, and an owner that
//! closes the listener and binds the port again in those microseconds
//! meets `EADDRINUSE`. So borrowing is the last resort, and it is taken
//! only on proof that the socket is elsewhere: the namespace's answer did
//! not list it, and the caller ([`Finder::find`]'s `closed`) has read
//! every kernel event up to that answer without finding the socket's
//! close. A socket closed before the answer (the usual reason it is
//! missing: an owner closing and binding again at once, 14,000 times a
//! second in a storm) is then never borrowed. Candidates are only the
//! sockets the process held before the answer and still holds after it.
//!
//! The returned descriptor keeps the namespace reachable (collection enters
//! it). Borrowing needs Linux 5.6 (`pidfd_getfd`) and ptrace-attach rights
//! over the owner (root, or CAP_SYS_PTRACE); the sock_diag question needs
//! CAP_SYS_ADMIN to enter the thread's namespace when it is not ours. Costs
//! one readlink per descriptor of the process (`ProcRoot::socket_fds`, the
//! owner search's own reader) and one filtered dump; [`MAX_CHANNELS`]
//! bounds the sock_diag channels kept open between events.

use super::listen::monotonic_now;
use crate::kernel::netns::enter;
use crate::kernel::procfs::ProcRoot;
use crate::kernel::sock_diag::wire::{self, Channel, TCP_LISTEN};
use crate::kernel::socket_ns::namespace_of_socket;
use rustix::net::SocketAddrAny;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Namespaces whose sock_diag channel is kept between events, at most; the
/// cache is emptied when it is full (a namespace's channel is reopened on
/// its next event, one short-lived thread).
pub const MAX_CHANNELS: usize = 16;

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

/// The listening task of an event: its process, and the thread that
/// called `listen()` with the namespace that thread was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    pub pid: u32,
    pub tid: u32,
    /// The process's user, when it could be read.
    pub uid: Option<u32>,
    /// Inode of the thread's network namespace, when it could be read.
    pub thread_netns: Option<u64>,
}

/// Asks namespaces which sockets listen on a port, through one sock_diag
/// channel per namespace, kept for the next event.
pub struct Finder {
    procfs: PathBuf,
    /// The same procfs, for reading a process's socket descriptors.
    proc_root: ProcRoot,
    own_netns: u64,
    channels: HashMap<u64, Channel>,
}

impl Finder {
    pub fn new(procfs: &Path, own_netns: u64) -> Finder {
        Finder {
            procfs: procfs.to_path_buf(),
            // Only its procfs is used here, never the named-namespace folder.
            proc_root: ProcRoot::new(procfs.to_path_buf(), PathBuf::new()),
            own_netns,
            channels: HashMap::new(),
        }
    }

    /// Finds the socket of `task` listening as `wanted` says and its
    /// namespace. `None` when the process is gone, is not ours to inspect,
    /// or no longer holds it, and when it holds several such sockets (one
    /// per namespace) none of which is in the listening thread's namespace:
    /// the walk cannot tell which of them just listened.
    ///
    /// `closed(at)` says whether the socket's close is among the kernel's
    /// events stamped before `at` (CLOCK_MONOTONIC): `Some(false)` only
    /// when every such event has been read and none is its close. Anything
    /// else and no socket is borrowed.
    pub fn find(
        &mut self,
        task: Listening,
        wanted: Wanted,
        mut closed: impl FnMut(Duration) -> Option<bool>,
    ) -> Option<HeldSocket> {
        let path = self
            .procfs
            .join(task.pid.to_string())
            .join("task")
            .join(task.tid.to_string())
            .join("ns/net");
        let first = task.thread_netns.and_then(|netns| {
            self.listening_sockets(netns, &path, wanted)
                .map(|l| (netns, l))
        });
        let first_answered_at = monotonic_now();
        // The process's user listens there: no descriptor is read.
        if let (Some((netns, listening)), Some(uid)) = (&first, task.uid)
            && let Some(&(inode, _)) = listening.iter().find(|&&(_, owner)| owner == uid)
        {
            return Self::in_namespace(&path, *netns, inode);
        }
        // The descriptors are read only for a socket still open when the
        // namespace answered; one closed by then (most are, in a storm,
        // by the time they are described) is left to the thread's
        // namespace and costs its owner nothing.
        if closed(first_answered_at) != Some(false) {
            return None;
        }
        let sockets = self.proc_root.socket_fds(task.pid).ok()?;
        // One of its descriptors among what the namespace listed.
        if let Some((netns, listening)) = &first
            && let Some(&(_, inode)) = sockets
                .iter()
                .find(|(_, i)| listening.iter().any(|&(l, _)| l == *i))
        {
            return Self::in_namespace(&path, *netns, inode);
        }
        let answered_at = monotonic_now();
        if closed(answered_at) != Some(false) {
            return None;
        }
        let still = self.proc_root.socket_fds(task.pid).ok()?;
        let candidates: Vec<(u32, u64)> = sockets
            .into_iter()
            .filter(|held| still.contains(held))
            .collect();
        let mut found = borrow_each(task.pid, &candidates, wanted)?;
        if found.len() > 1 {
            return found
                .into_iter()
                .find(|held| Some(held.netns) == task.thread_netns);
        }
        found.pop()
    }

    /// The socket `inode` in the namespace of the thread at `path`, which
    /// was `netns` when asked.
    fn in_namespace(path: &Path, netns: u64, inode: u64) -> Option<HeldSocket> {
        let netns_fd = OwnedFd::from(std::fs::File::open(path).ok()?);
        let opened = std::fs::File::from(netns_fd.try_clone().ok()?).metadata();
        // The thread may have moved on since: then we hold the wrong
        // namespace, and say nothing rather than something wrong.
        (opened.ok()?.ino() == netns).then_some(HeldSocket {
            inode,
            netns,
            netns_fd,
        })
    }

    /// (inode, uid) of the sockets listening as `wanted` in namespace
    /// `netns` (opened at `path` when it is not ours); `None` when it
    /// cannot be asked (not ours to enter, gone, or the dump failed).
    fn listening_sockets(
        &mut self,
        netns: u64,
        path: &Path,
        wanted: Wanted,
    ) -> Option<Vec<(u64, u32)>> {
        if !self.channels.contains_key(&netns) {
            let channel = if netns == self.own_netns {
                Channel::open().ok()?
            } else {
                enter::run_in(path, Channel::open).ok()?.ok()?
            };
            if self.channels.len() >= MAX_CHANNELS {
                self.channels.clear();
            }
            self.channels.insert(netns, channel);
        }
        let channel = self.channels.get_mut(&netns)?;
        let family = match wanted.address {
            IpAddr::V4(_) => libc::AF_INET as u8,
            IpAddr::V6(_) => libc::AF_INET6 as u8,
        };
        let mut body =
            wire::inet_diag_request_for_protocol(family, wanted.protocol, 1 << TCP_LISTEN);
        let body: &mut [u8] = match u8::try_from(wanted.protocol) {
            // A protocol that fits its byte goes there, without the
            // attribute older kernels do not know.
            Ok(byte) => {
                body[1] = byte;
                &mut body[..wire::INET_DIAG_REQ_V2_LEN]
            }
            Err(_) => &mut body[..],
        };
        // `id.idiag_sport`: the kernel skips listeners on other ports.
        body[8..10].copy_from_slice(&wanted.port.to_be_bytes());
        let mut sockets = Vec::new();
        let answer = channel.dump(body, |payload| {
            let socket = wire::inet_diag_msg(payload).map_err(wire::WireError::Broken)?;
            if socket.port == wanted.port && socket.address == wanted.address {
                sockets.push((u64::from(socket.inode), socket.uid));
            }
            Ok(())
        });
        if answer.is_err() {
            self.channels.remove(&netns);
            return None;
        }
        Some(sockets)
    }
}

/// The last resort: borrows each socket in turn and keeps the ones
/// listening as `wanted` says, with the namespace each was created in.
fn borrow_each(pid: u32, sockets: &[(u32, u64)], wanted: Wanted) -> Option<Vec<HeldSocket>> {
    let pidfd = pidfd_open(Pid::from_raw(pid as i32)?, PidfdFlags::empty()).ok()?;
    let mut found = Vec::new();
    for &(number, inode) in sockets {
        let Ok(socket) = pidfd_getfd(&pidfd, number as i32, PidfdGetfdFlags::empty()) else {
            continue;
        };
        // The owner may have closed that descriptor since and reused its
        // number for another socket: not the one the walk saw, let it go.
        let same = rustix::fs::fstat(&socket).is_ok_and(|stat| stat.st_ino == inode);
        if !same || !matches(&socket, wanted) {
            continue;
        }
        let Ok(netns_fd) = namespace_of_socket(&socket) else {
            continue;
        };
        drop(socket);
        let Some(netns) = netns_fd
            .try_clone()
            .ok()
            .and_then(|fd| std::fs::File::from(fd).metadata().ok())
            .map(|meta| meta.ino())
        else {
            continue;
        };
        found.push(HeldSocket {
            inode,
            netns,
            netns_fd,
        });
    }
    Some(found)
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
    use crate::kernel::procfs::socket_inode;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn socket_links() {
        let socket_inode = |link: &str| socket_inode(std::ffi::OsStr::new(link));
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    fn ours(port: u16) -> (Listening, Wanted) {
        let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let task = Listening {
            pid: std::process::id(),
            tid: rustix::thread::gettid().as_raw_nonzero().get() as u32,
            uid: Some(rustix::process::getuid().as_raw()),
            thread_netns: Some(netns),
        };
        let wanted = Wanted {
            protocol: 6,
            address: Ipv4Addr::LOCALHOST.into(),
            port,
        };
        (task, wanted)
    }

    #[test]
    fn finds_our_own_listener_and_its_namespace_without_borrowing_it() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (task, wanted) = ours(port);
        let own = task.thread_netns.unwrap();
        let mut finder = Finder::new(Path::new("/proc"), own);
        let Some(found) = finder.find(task, wanted, |_| None) else {
            panic!("our own listener was not found (is NETLINK_SOCK_DIAG allowed here?)");
        };
        assert_eq!(found.netns, own);
        assert_eq!(
            found.inode,
            rustix::fs::fstat(&listener).unwrap().st_ino,
            "the socket found is the one listening"
        );
        // A process whose user is not the socket's (a socket passed in):
        // found through its descriptors instead.
        let passed_in = Listening {
            uid: Some(task.uid.unwrap().wrapping_add(1)),
            ..task
        };
        // ...only once the socket is known to be open.
        assert!(finder.find(passed_in, wanted, |_| None).is_none());
        let found = finder.find(passed_in, wanted, |_| Some(false)).unwrap();
        assert_eq!(found.netns, own);
        assert_eq!(found.inode, rustix::fs::fstat(&listener).unwrap().st_ino);
        // The wrong port: nothing, neither asked nor borrowed.
        let other = Wanted {
            port: port.wrapping_add(1),
            ..wanted
        };
        assert!(finder.find(task, other, |_| None).is_none());
    }

    #[test]
    fn a_socket_outside_the_threads_namespace_is_borrowed_and_asked() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut task, wanted) = ours(port);
        let own = task.thread_netns.unwrap();
        // As if the thread had listened and then moved to a namespace that
        // cannot be asked: only borrowing the socket tells.
        task.thread_netns = None;
        let mut finder = Finder::new(Path::new("/proc"), own);
        // Without proof that the socket was not closed, nothing is borrowed.
        assert!(finder.find(task, wanted, |_| None).is_none());
        assert!(finder.find(task, wanted, |_| Some(true)).is_none());
        let Some(found) = finder.find(task, wanted, |_| Some(false)) else {
            // pidfd_getfd on ourselves needs ptrace rights over ourselves,
            // which every process has unless a sandbox forbids pidfd_getfd.
            panic!("our own listener was not found (is pidfd_getfd allowed here?)");
        };
        assert_eq!(found.netns, own);
        // Our copy is closed again: the listener's own is the only one left.
        let inode = rustix::fs::fstat(&listener).unwrap().st_ino;
        let copies = ProcRoot::default()
            .socket_fds(std::process::id())
            .unwrap()
            .iter()
            .filter(|(_, i)| *i == inode)
            .count();
        assert_eq!(copies, 1, "the borrowed descriptor was closed");
    }
}
