//! Namespace ids: the numbers by which our own namespace's kernel names the
//! other namespaces (`ip netns list-id`).
//!
//! One socket of ours hears every namespace's notifications through
//! `NETLINK_LISTEN_ALL_NSID` (destroy broadcasts, address and nf_tables
//! changes), and the kernel says which namespace each came from by its id;
//! it delivers nothing from a namespace without one. So every namespace the
//! exporter reads gets an id when it is opened: the kernel picks a free one
//! (`RTM_NEWNSID` with id -1, which `ip netns set NAME auto` also sends),
//! or keeps the one it has, and we ask which it is (`RTM_GETNSID`). An id
//! stays with its namespace for as long as the namespace lives, and our
//! channel inside it keeps it alive, so the id cannot name another while we
//! hold it.

use crate::kernel::nlsock::{Watched, attribute};
use crate::kernel::sock_diag::wire::WireError;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;

use libc::{RTM_GETNSID, RTM_NEWNSID};

/// `NETNSA_*` from `linux/net_namespace.h` (libc has no constants for them).
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
/// "Pick a free id" in a request, "none" in an answer.
const NOT_ASSIGNED: i32 = -1;

/// Asks our own namespace's kernel for namespace ids, through an rtnetlink
/// socket opened in our namespace (the id table is that of the socket's
/// namespace, whichever thread sends).
pub struct NamespaceIds {
    socket: Mutex<Watched>,
}

impl NamespaceIds {
    /// Opens the socket: call it on a thread in the exporter's own
    /// namespace.
    pub fn open() -> std::io::Result<NamespaceIds> {
        let socket = Watched::open(netlink_sys::protocols::NETLINK_ROUTE, 0)?;
        Ok(NamespaceIds {
            socket: Mutex::new(socket),
        })
    }

    /// The id of the namespace `namespace` (a descriptor of it), given one
    /// first if it has none (needs CAP_NET_ADMIN).
    pub fn assign(&self, namespace: impl AsFd) -> Result<i32, String> {
        let fd = namespace.as_fd().as_raw_fd() as u32;
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let mut body = rtgenmsg();
        push_attribute(&mut body, NETNSA_NSID, &NOT_ASSIGNED.to_ne_bytes());
        push_attribute(&mut body, NETNSA_FD, &fd.to_ne_bytes());
        match socket.act(RTM_NEWNSID, &body) {
            Ok(()) | Err(WireError::Refused(libc::EEXIST)) => {}
            Err(err) => return Err(format!("cannot give a network namespace an id: {err}")),
        }
        let id = Self::ask(&mut socket, fd)?;
        if id == NOT_ASSIGNED {
            return Err("the kernel gave the namespace no id".to_string());
        }
        Ok(id)
    }

    /// The id our namespace has given the namespace `namespace`, if any
    /// (our own has one only if someone gave it one).
    pub fn id_of(&self, namespace: impl AsFd) -> Result<Option<i32>, String> {
        let fd = namespace.as_fd().as_raw_fd() as u32;
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let id = Self::ask(&mut socket, fd)?;
        Ok((id != NOT_ASSIGNED).then_some(id))
    }

    fn ask(socket: &mut Watched, fd: u32) -> Result<i32, String> {
        let mut body = rtgenmsg();
        push_attribute(&mut body, NETNSA_FD, &fd.to_ne_bytes());
        let mut id = None;
        socket
            .request(RTM_GETNSID, false, &body, |message| {
                if message.kind == RTM_NEWNSID {
                    id = message
                        .payload
                        .get(4..)
                        .and_then(|attributes| attribute(attributes, NETNSA_NSID))
                        .and_then(|value| {
                            Some(i32::from_ne_bytes(value.get(..4)?.try_into().ok()?))
                        });
                }
                Ok(())
            })
            .map_err(|err| format!("cannot ask for a network namespace's id: {err}"))?;
        id.ok_or_else(|| "the kernel's answer named no namespace id".to_string())
    }
}

/// `struct rtgenmsg` (a family byte, unspecified), padded to 4 bytes.
fn rtgenmsg() -> Vec<u8> {
    vec![libc::AF_UNSPEC as u8, 0, 0, 0]
}

/// Appends a netlink attribute (`struct nlattr` and its value, padded).
fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::test_support::require;

    #[test]
    fn a_new_namespace_gets_an_id_that_stays() {
        let ids = NamespaceIds::open().unwrap();
        // A namespace of a thread of ours, kept by its descriptor.
        let made = std::thread::spawn(|| {
            rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET)
                .map_err(|err| format!("unshare(CLONE_NEWNET): {err}"))?;
            std::fs::File::open("/proc/thread-self/ns/net").map_err(|err| err.to_string())
        })
        .join()
        .unwrap();
        if !require(
            "a network namespace of its own (root)",
            made.as_ref().map(|_| ()).map_err(Clone::clone),
        ) {
            return;
        }
        let namespace = made.unwrap();
        assert_eq!(ids.id_of(&namespace).unwrap(), None);
        let id = ids.assign(&namespace).unwrap();
        assert!(id >= 0);
        assert_eq!(ids.assign(&namespace).unwrap(), id, "an id stays");
        assert_eq!(ids.id_of(&namespace).unwrap(), Some(id));
    }
}
