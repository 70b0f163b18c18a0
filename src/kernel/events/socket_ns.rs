//! The network namespace a socket belongs to, asked of the socket itself:
//! the kernel's `SIOCGSKNS` ioctl returns a new descriptor of the namespace
//! the socket was created in, whatever namespace the calling thread (or the
//! process that owns the socket) is in now.
//!
//! This is one of the two modules of the crate that use `unsafe` (the
//! other is `crate::allocator`; the crate denies it everywhere else). No safe way does the job: a socket's namespace is
//! shown nowhere in procfs (`/proc/PID/fdinfo` says nothing of it, and
//! `/proc/PID/net` is the task's namespace, not the socket's), sock_diag
//! answers only inside a namespace one can already enter, and no
//! dependency wraps `SIOCGSKNS` (rustix's `ioctl` is itself an `unsafe fn`
//! needing an `unsafe impl Ioctl` whose output conversion would turn the
//! returned number into an `OwnedFd` just as below). Two blocks, each with
//! its SAFETY argument and a test.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// `SIOCGSKNS` from `linux/sockios.h` (Linux 4.9 and later).
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// A new descriptor of the network namespace `socket` was created in.
/// Fails with the kernel's error (`ENOTTY`/`EINVAL` on kernels before 4.9,
/// `EPERM` without CAP_NET_ADMIN in the namespace's owning user namespace).
pub fn namespace_of_socket(socket: impl AsFd) -> io::Result<OwnedFd> {
    let raw_socket = socket.as_fd().as_raw_fd();
    // SAFETY: `raw_socket` comes from a borrowed, open descriptor that
    // outlives the call; SIOCGSKNS takes no argument (the third argument is
    // not read), writes no memory of ours, and returns either -1 with errno
    // set or a new descriptor that nothing else in this process owns.
    let returned = unsafe { libc::ioctl(raw_socket, SIOCGSKNS as _, 0) };
    if returned < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `returned` is a descriptor the kernel has just installed in
    // our table for us alone (see above); wrapping it transfers that sole
    // ownership to the `OwnedFd`, which closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(returned) })
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
}
