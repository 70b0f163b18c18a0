//! A netlink socket that dumps a table and also listens to the table's
//! change notifications, so a reader re-dumps only after a change.
//!
//! The nf_tables ruleset (`nftables/`) and the interface addresses
//! (`addresses.rs`) are read per network namespace, and a dense host has a
//! thousand namespaces: asking the kernel for either at every scrape would
//! cost a round trip (or a full dump) per namespace. Instead the socket
//! joins the table's multicast groups when it is opened (inside the
//! namespace, like every netlink socket it stays bound to it), and
//! [`Watched::changed`] asks, with one non-blocking `recv`, whether any
//! notification arrived since the last look. An overflowing notification
//! queue (`ENOBUFS`) also counts as a change. The first look after opening
//! always reports a change, so the first scrape dumps.
//!
//! Replies to our own dumps are told from notifications by the port id and
//! sequence number the kernel copies from the request; notifications caused
//! by other programs carry their own.

use crate::kernel::sock_diag::wire::{NLMSG_HEADER_LEN, WireError, attributes, u32_at};
use netlink_sys::{Socket, SocketAddr};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const RECEIVE_BUFFER: usize = 64 * 1024;

/// One message of a dump reply: its type and payload.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

/// A netlink socket subscribed to change notifications.
pub struct Watched {
    socket: Socket,
    /// Our port id, which the kernel copies into replies to our requests.
    port: u32,
    seq: u32,
    /// True until the first dump: the first look always reads.
    fresh: bool,
    /// Set after a failed exchange: replies may be left queued.
    poisoned: bool,
}

impl Watched {
    /// Opens a socket of `protocol` in the calling thread's namespace,
    /// joined to the multicast `groups` (a bit mask, groups 1..=32).
    /// The error keeps its errno (joining nf_tables' groups needs
    /// CAP_NET_ADMIN: `EPERM`).
    pub fn open(protocol: isize, groups: u32) -> std::io::Result<Watched> {
        let mut socket = Socket::new(protocol)?;
        socket.bind(&SocketAddr::new(0, groups))?;
        let mut address = SocketAddr::new(0, 0);
        socket.get_address(&mut address)?;
        Ok(Watched {
            socket,
            port: address.port_number(),
            seq: 0,
            fresh: true,
            poisoned: false,
        })
    }

    /// Whether the table may have changed since the last call: drains every
    /// queued notification without blocking. True on the first call, after
    /// an overflow, and after a failed dump.
    pub fn changed(&mut self) -> bool {
        let mut changed = std::mem::take(&mut self.fresh) || self.poisoned;
        let mut buffer = [0u8; 8192];
        loop {
            let mut window = &mut buffer[..];
            match self.socket.recv(&mut window, libc::MSG_DONTWAIT) {
                Ok(0) => break,
                Ok(_) => changed = true,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // ENOBUFS: notifications were dropped; anything else: read
                // again to be safe.
                Err(_) => {
                    changed = true;
                    break;
                }
            }
        }
        if changed {
            self.poisoned = false;
        }
        changed
    }

    /// Marks the table as needing a fresh read at the next look.
    pub fn invalidate(&mut self) {
        self.fresh = true;
    }

    /// Sends a request of `kind` with `body` (`dump` adds NLM_F_DUMP) and
    /// calls `visit` with every reply message until the kernel is done.
    /// Notifications received meanwhile are skipped and mark the table
    /// changed for the next look.
    pub fn request(
        &mut self,
        kind: u16,
        dump: bool,
        body: &[u8],
        mut visit: impl FnMut(Message<'_>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST
        };
        let result = self.exchange(kind, flags, body, &mut visit);
        self.poisoned_if_broken(result)
    }

    /// Sends a request that changes something and waits for the kernel's
    /// acknowledgement (or its refusal, as `WireError::Refused(errno)`).
    pub fn act(&mut self, kind: u16, body: &[u8]) -> Result<(), WireError> {
        let result = self.exchange(kind, NLM_F_REQUEST | NLM_F_ACK, body, &mut |_| Ok(()));
        self.poisoned_if_broken(result)
    }

    /// Passes `result` on; a broken exchange may leave replies queued, so
    /// the table is read afresh next time.
    fn poisoned_if_broken(&mut self, result: Result<(), WireError>) -> Result<(), WireError> {
        if matches!(result, Err(WireError::Broken(_))) {
            self.poisoned = true;
        }
        result
    }

    fn exchange(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        visit: &mut impl FnMut(Message<'_>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let dump = flags & NLM_F_DUMP != 0;
        self.seq = self.seq.wrapping_add(1);
        let mut request = Vec::with_capacity(NLMSG_HEADER_LEN + body.len());
        request.extend_from_slice(&((NLMSG_HEADER_LEN + body.len()) as u32).to_ne_bytes());
        request.extend_from_slice(&kind.to_ne_bytes());
        request.extend_from_slice(&flags.to_ne_bytes());
        request.extend_from_slice(&self.seq.to_ne_bytes());
        request.extend_from_slice(&0u32.to_ne_bytes());
        request.extend_from_slice(body);
        self.socket
            .send(&request, 0)
            .map_err(|err| WireError::Broken(format!("netlink request failed: {err}")))?;
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let mut window = &mut buffer[..];
            let received = self
                .socket
                .recv(&mut window, 0)
                .map_err(|err| WireError::Broken(format!("netlink receive failed: {err}")))?;
            if received == 0 {
                return Err(WireError::Broken("netlink reply ended early".to_string()));
            }
            let received = received.min(buffer.len());
            match self.walk(&buffer[..received], dump, visit)? {
                Walk::Done => return Ok(()),
                Walk::More => {}
            }
        }
    }

    /// Walks one receive buffer: our replies go to `visit`, notifications
    /// mark a change.
    fn walk(
        &mut self,
        buffer: &[u8],
        dump: bool,
        visit: &mut impl FnMut(Message<'_>) -> Result<(), WireError>,
    ) -> Result<Walk, WireError> {
        let mut rest = buffer;
        let mut answered = false;
        while !rest.is_empty() {
            if rest.len() < NLMSG_HEADER_LEN {
                return Err(WireError::Broken("truncated netlink header".to_string()));
            }
            let length = u32_at(rest, 0) as usize;
            if length < NLMSG_HEADER_LEN || length > rest.len() {
                return Err(WireError::Broken(format!(
                    "netlink message length {length} does not fit the {} bytes received",
                    rest.len()
                )));
            }
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let seq = u32_at(rest, 8);
            let port = u32_at(rest, 12);
            let payload = &rest[NLMSG_HEADER_LEN..length];
            rest = &rest[length.next_multiple_of(4).min(rest.len())..];
            if seq != self.seq || port != self.port {
                self.fresh = true; // a notification: read again next time
                continue;
            }
            match kind {
                NLMSG_DONE | NLMSG_ERROR => {
                    let code = if payload.len() >= 4 {
                        u32_at(payload, 0) as i32
                    } else {
                        0
                    };
                    if code < 0 {
                        return Err(WireError::Refused(code.wrapping_neg()));
                    }
                    return Ok(Walk::Done);
                }
                kind if kind >= 0x10 => {
                    visit(Message { kind, payload })?;
                    answered = true;
                }
                _ => {}
            }
        }
        // A plain request has one reply message; a dump ends with DONE.
        Ok(if answered && !dump {
            Walk::Done
        } else {
            Walk::More
        })
    }
}

enum Walk {
    More,
    Done,
}

/// Which namespaces' tables changed since the last look, as one
/// [`ChangeFeed`] heard it.
#[derive(Debug, Default)]
pub struct Changes {
    /// Notifications were dropped (the receive queue overflowed): any
    /// namespace may have changed.
    pub overflowed: bool,
    /// Ids (in our namespace's id table) of the namespaces that changed.
    pub namespace_ids: std::collections::HashSet<i32>,
}

impl Changes {
    /// What to assume when nothing could be heard: everything changed.
    pub fn everything() -> Changes {
        Changes {
            overflowed: true,
            ..Changes::default()
        }
    }

    /// Whether the namespace of id `nsid` may have changed (`None`: it has
    /// no id, so nothing is heard from it and it must be read every time).
    pub fn touches(&self, nsid: Option<i32>) -> bool {
        self.overflowed || nsid.is_none_or(|id| self.namespace_ids.contains(&id))
    }
}

/// One socket in the exporter's own namespace that hears a table's change
/// notifications from every namespace with an id (`NETLINK_LISTEN_ALL_NSID`),
/// so other namespaces need no watching socket of their own: with a
/// thousand namespaces that is a thousand descriptors fewer per table.
/// Notifications from our own namespace are ignored (its [`Watched`] socket
/// hears them).
pub struct ChangeFeed {
    socket: Socket,
}

impl ChangeFeed {
    /// Opens the feed for the multicast `groups` (a bit mask, groups
    /// 1..=32) of `protocol`. Needs CAP_NET_BROADCAST (and CAP_NET_ADMIN for
    /// nf_tables' groups).
    pub fn open(protocol: isize, groups: u32) -> std::io::Result<ChangeFeed> {
        let mut socket = Socket::new(protocol)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        socket.set_listen_all_namespaces(true)?;
        for group in (1..=32).filter(|group| groups & (1 << (group - 1)) != 0) {
            socket.add_membership(group)?;
        }
        socket.set_non_blocking(true)?;
        // A bigger queue only means fewer overflows (each one re-reads every
        // namespace).
        grow_receive_buffer(&socket, FEED_BUFFER);
        Ok(ChangeFeed { socket })
    }

    /// Drains every queued notification without blocking.
    pub fn changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mut buffer = [0u8; 8192];
        loop {
            match crate::kernel::socket_ns::recv_with_nsid(
                &self.socket,
                &mut buffer,
                libc::MSG_DONTWAIT,
            ) {
                Ok((0, _)) => break,
                Ok((_, Some(nsid))) => {
                    changes.namespace_ids.insert(nsid);
                }
                Ok((_, None)) => {} // our own namespace
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                // ENOBUFS: notifications were dropped; the rest still reads.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    changes.overflowed = true;
                }
                Err(_) => {
                    changes.overflowed = true;
                    break;
                }
            }
        }
        changes
    }
}

/// A change feed's receive queue: notifications are small (about 100
/// bytes each), so this holds thousands between two scrapes.
const FEED_BUFFER: usize = 1024 * 1024;

/// Asks for a receive queue of `bytes` on a netlink socket that hears
/// broadcasts: beyond the system's limit (`net.core.rmem_max`) where we
/// may (CAP_NET_ADMIN), within it otherwise. A smaller queue only means
/// earlier overflows, which the caller counts; never fatal.
pub fn grow_receive_buffer(socket: &Socket, bytes: usize) {
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(socket, bytes).is_err() {
        let _ = socket.set_rx_buf_sz(bytes);
    }
}

/// The first attribute of `kind` in `bytes`, if any.
pub fn attribute(bytes: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(bytes).find(|&(k, _)| k == kind).map(|(_, v)| v)
}

/// A big-endian u32 attribute value.
pub fn be32(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated string attribute value.
pub fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_socket_reports_a_change_once() {
        let Ok(mut watched) = Watched::open(netlink_sys::protocols::NETLINK_ROUTE, 0) else {
            return; // no netlink here (a sandbox): nothing to show
        };
        assert!(watched.changed());
        assert!(!watched.changed());
        watched.invalidate();
        assert!(watched.changed());
    }

    #[test]
    fn attribute_helpers_read_strings_and_numbers() {
        assert_eq!(string(b"nat\0\0"), "nat");
        assert_eq!(string(b"raw"), "raw");
        assert_eq!(be32(&[0, 0, 1, 20]), Some(276));
        assert_eq!(be32(&[1]), None);
    }
}
