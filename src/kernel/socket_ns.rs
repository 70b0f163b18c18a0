//! The network namespace a socket belongs to, asked of the socket itself:
//! the kernel's `SIOCGSKNS` ioctl returns a new descriptor of the namespace
//! the socket was created in, whatever namespace the calling thread (or the
//! process that owns the socket) is in now. And the namespace a netlink
//! notification comes from: one host socket with `NETLINK_LISTEN_ALL_NSID`
//! hears every namespace that has an id, and the kernel names the id in a
//! control message that only `recvmsg(2)` returns ([`recv_with_nsid`]).
//!
//! This is one of the three modules of the crate that use `unsafe` (with
//! `crate::allocator` and `crate::kernel::priority`; the crate denies it
//! everywhere else). No safe way does the job: a socket's namespace is
//! shown nowhere in procfs (`/proc/PID/fdinfo` says nothing of it, and
//! `/proc/PID/net` is the task's namespace, not the socket's), sock_diag
//! answers only inside a namespace one can already enter, and no
//! dependency wraps `SIOCGSKNS` (rustix's `ioctl` is itself an `unsafe fn`
//! needing an `unsafe impl Ioctl` whose output conversion would turn the
//! returned number into an `OwnedFd` just as below). Nor does any wrap a
//! control message of netlink's own level: rustix's ancillary buffer
//! yields only `SCM_RIGHTS` and `SCM_CREDENTIALS` and skips the rest, and
//! socket2's `recvmsg` hands back uninitialised bytes that need `unsafe`
//! to read. Four blocks, each with its SAFETY argument; each function
//! has a test.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// A new descriptor of the network namespace `socket` was created in.
/// Fails with the kernel's error (`ENOTTY`/`EINVAL` on kernels before 4.9,
/// `EPERM` without CAP_NET_ADMIN in the namespace's owning user namespace).
pub fn namespace_of_socket(socket: impl AsFd) -> io::Result<OwnedFd> {
    let raw_socket = socket.as_fd().as_raw_fd();
    // SAFETY: `raw_socket` comes from a borrowed, open descriptor that
    // outlives the call; SIOCGSKNS takes no argument (the third argument is
    // not read), writes no memory of ours, and returns either -1 with errno
    // set or a new descriptor that nothing else in this process owns.
    let returned = unsafe { libc::ioctl(raw_socket, libc::SIOCGSKNS as _, 0) };
    if returned < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `returned` is a descriptor the kernel has just installed in
    // our table for us alone (see above); wrapping it transfers that sole
    // ownership to the `OwnedFd`, which closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(returned) })
}

/// Receives one datagram from a netlink `socket` into `buffer` with
/// `flags`, and the namespace id the kernel attached to it: `Some(id)` for
/// a notification from another namespace heard through
/// `NETLINK_LISTEN_ALL_NSID` (the id is the one the socket's own namespace
/// gave that namespace), `None` for one from the socket's own namespace.
pub fn recv_with_nsid(
    socket: impl AsFd,
    buffer: &mut [u8],
    flags: i32,
) -> io::Result<(usize, Option<i32>)> {
    // Room for several control messages; u64 for cmsghdr's alignment.
    let mut control = [0u64; 8];
    let mut part = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all zeroes is a valid
    // (empty) value.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut part;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `header` points into `buffer`, `part` or
    // `control`, which are alive and exclusively borrowed for the call, and
    // the lengths given are theirs, so the kernel writes only inside them;
    // the descriptor is borrowed open for the call.
    let received = unsafe { libc::recvmsg(socket.as_fd().as_raw_fd(), &mut header, flags) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut control_bytes = [0u8; std::mem::size_of::<[u64; 8]>()];
    for (bytes, word) in control_bytes.chunks_exact_mut(8).zip(control) {
        bytes.copy_from_slice(&word.to_ne_bytes());
    }
    let used = (header.msg_controllen as usize).min(control_bytes.len());
    Ok((received as usize, nsid_in(&control_bytes[..used])))
}

/// The `NETLINK_LISTEN_ALL_NSID` value among the control messages in
/// `control`, parsed as bytes (`struct cmsghdr`: a `size_t` length, level,
/// type, then the data at the header's aligned size).
fn nsid_in(control: &[u8]) -> Option<i32> {
    let word = std::mem::size_of::<usize>();
    let align = |length: usize| length.next_multiple_of(word);
    let header = align(std::mem::size_of::<libc::cmsghdr>());
    let mut rest = control;
    while rest.len() >= header {
        let length = usize::from_ne_bytes(rest[..word].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[word..word + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[word + 4..word + 8].try_into().ok()?);
        if length < header || length > rest.len() {
            return None;
        }
        if level == libc::SOL_NETLINK
            && kind == libc::NETLINK_LISTEN_ALL_NSID
            && length >= header + 4
        {
            return Some(i32::from_ne_bytes(
                rest[header..header + 4].try_into().ok()?,
            ));
        }
        rest = &rest[align(length).min(rest.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: &OwnedFd) -> u64 {
        std::fs::File::from(fd.try_clone().unwrap())
            .metadata()
            .unwrap()
            .ino()
    }

    #[test]
    fn a_socket_of_ours_is_in_our_namespace() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let namespace = namespace_of_socket(&socket).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(inode_of(&namespace), ours);
        // The descriptor is ours alone: closing it twice would panic in
        // debug builds; dropping it once must leave the socket usable.
        drop(namespace);
        assert!(socket.local_addr().is_ok());
    }

    #[test]
    fn a_descriptor_that_is_not_a_socket_is_refused() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let err = namespace_of_socket(&file).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)),
            "{err}"
        );
    }

    #[test]
    fn a_control_message_names_its_namespace_id() {
        let word = std::mem::size_of::<usize>();
        let header = std::mem::size_of::<libc::cmsghdr>().next_multiple_of(word);
        let message = |level: i32, kind: i32, value: i32| {
            let mut bytes = (header + 4).to_ne_bytes()[..word].to_vec();
            bytes.extend_from_slice(&level.to_ne_bytes());
            bytes.extend_from_slice(&kind.to_ne_bytes());
            bytes.resize(header, 0);
            bytes.extend_from_slice(&value.to_ne_bytes());
            bytes.resize((header + 4).next_multiple_of(word), 0);
            bytes
        };
        assert_eq!(
            nsid_in(&message(
                libc::SOL_NETLINK,
                libc::NETLINK_LISTEN_ALL_NSID,
                7
            )),
            Some(7)
        );
        let mut two = message(libc::SOL_SOCKET, 1, 9);
        two.extend(message(libc::SOL_NETLINK, libc::NETLINK_LISTEN_ALL_NSID, 3));
        assert_eq!(nsid_in(&two), Some(3));
        assert_eq!(nsid_in(&message(libc::SOL_SOCKET, 1, 9)), None);
        assert_eq!(nsid_in(&[]), None);
        // A length that overruns the buffer is not read past.
        let mut broken = message(libc::SOL_NETLINK, libc::NETLINK_LISTEN_ALL_NSID, 7);
        broken[..word].copy_from_slice(&999usize.to_ne_bytes());
        assert_eq!(nsid_in(&broken), None);
    }

    #[test]
    fn a_notification_from_our_own_namespace_has_no_id() {
        // A UDP socket's destroy broadcast, heard on a socket that listens
        // to every namespace: ours carries no id.
        let opened = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG).and_then(
            |mut socket| {
                socket.bind_auto()?;
                socket.set_listen_all_namespaces(true)?;
                socket.add_membership(2)?; // SKNLGRP_INET_UDP_DESTROY
                Ok(socket)
            },
        );
        let probed = opened.as_ref().map(|_| ()).map_err(|err| err.to_string());
        if !crate::kernel::test_support::require(
            "a netlink socket in the destroy groups (root)",
            probed,
        ) {
            return;
        }
        let listener = opened.unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        drop(udp);
        let mut buffer = vec![0u8; 8192];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no destroy broadcast heard"
            );
            match recv_with_nsid(&listener, &mut buffer, libc::MSG_DONTWAIT) {
                Ok((received, nsid)) => {
                    // inet_diag_msg's source port, after the 16-byte header.
                    if received >= 22 && u16::from_be_bytes([buffer[20], buffer[21]]) == port {
                        assert_eq!(nsid, None);
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(err) => panic!("recvmsg: {err}"),
            }
        }
    }
}
