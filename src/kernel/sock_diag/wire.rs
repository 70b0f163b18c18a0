//! Netlink framing for every sock_diag reader (listeners in `crate::sockets::netlink`,
//! packet and raw sockets in `raw/`): walking the messages of a receive
//! buffer, walking a message's attributes, and a reusable dump channel.
//!
//! Hand-written rather than taken from netlink-packet-*: one pass over the
//! receive buffer, borrowed slices, no allocation per socket. The walker
//! hands back the payload of every data message and keeps the kernel's errno
//! when it refuses a request, so a caller can tell "this kernel has no such
//! diag module" (`ENOENT`) from a real failure.

use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

pub const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Socket states in the kernel's TCP numbering, which sock_diag requests,
/// replies and the `inet_sock_set_state` tracepoint all use.
pub const TCP_LISTEN: u8 = 10;
/// Closed: listeners being destroyed, and every unconnected UDP socket.
pub const TCP_CLOSE: u8 = 7;

/// The older TCP-only request (`struct inet_diag_req`); replies carry it too.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// Message types below this are netlink's own (noop, error, done, overrun).
const NLMSG_MIN_TYPE: u16 = 0x10;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
pub const NLMSG_HEADER_LEN: usize = 16;
const NLA_HEADER_LEN: usize = 4;
const RECEIVE_BUFFER: usize = 64 * 1024;

/// What went wrong with a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The kernel answered the request with this errno (positive).
    Refused(i32),
    /// The reply could not be read, or the socket failed.
    Broken(String),
}

impl WireError {
    /// True when the errno means "no diag handler for this family or
    /// protocol" (the module is absent), as opposed to a real failure.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, WireError::Refused(code) if [libc::ENOENT, libc::EINVAL, libc::EOPNOTSUPP].contains(code))
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Refused(code) => write!(
                f,
                "the kernel refused the sock_diag request: {}",
                std::io::Error::from_raw_os_error(*code)
            ),
            WireError::Broken(text) => f.write_str(text),
        }
    }
}

/// Whether the dump continues after one receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    More,
    Done,
}

/// Walks the netlink messages in `buffer`, calling `visit` with the payload
/// of each data message (a sock_diag reply has the request's type). Never
/// panics on malformed input.
pub fn walk_messages(
    buffer: &[u8],
    mut visit: impl FnMut(&[u8]) -> Result<(), WireError>,
) -> Result<Progress, WireError> {
    let mut rest = buffer;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HEADER_LEN {
            return Err(WireError::Broken(format!(
                "truncated netlink header ({} bytes)",
                rest.len()
            )));
        }
        let length = u32_at(rest, 0) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            return Err(WireError::Broken(format!(
                "netlink message length {length} does not fit the {} bytes received",
                rest.len()
            )));
        }
        let payload = &rest[NLMSG_HEADER_LEN..length];
        match kind {
            // Both carry an errno: a dump that failed ends in DONE with it.
            NLMSG_DONE | NLMSG_ERROR => {
                let code = if payload.len() >= 4 {
                    u32_at(payload, 0) as i32
                } else {
                    0
                };
                if code < 0 {
                    return Err(WireError::Refused(code.wrapping_neg()));
                }
                if kind == NLMSG_DONE {
                    return Ok(Progress::Done);
                }
            }
            kind if kind >= NLMSG_MIN_TYPE => visit(payload)?,
            _ => {} // noop and overrun carry no socket
        }
        let advance = length.next_multiple_of(4).min(rest.len());
        rest = &rest[advance..];
    }
    Ok(Progress::More)
}

/// Iterates the netlink attributes (`struct nlattr`) in `bytes`, yielding
/// (type, payload). Stops quietly at the first attribute that does not fit:
/// the fixed part of a message was already read, and a truncated tail
/// cannot be trusted.
pub fn attributes(bytes: &[u8]) -> Attributes<'_> {
    Attributes { rest: bytes }
}

pub struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < NLA_HEADER_LEN {
            return None;
        }
        let length = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        // The top two bits are the nested and byte-order flags.
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & 0x3fff;
        if length < NLA_HEADER_LEN || length > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let payload = &self.rest[NLA_HEADER_LEN..length];
        let advance = length.next_multiple_of(4).min(self.rest.len());
        self.rest = &self.rest[advance..];
        Some((kind, payload))
    }
}

/// `struct inet_diag_msg` up to and including `idiag_inode`; attributes
/// follow it.
pub const INET_DIAG_MSG_LEN: usize = 72;
/// `INET_DIAG_PROTOCOL` attribute: the socket's protocol as a u8.
pub const INET_DIAG_PROTOCOL: u16 = 10;

/// The fixed part of one `struct inet_diag_msg` (dump replies and destroy
/// broadcasts alike), read in place. Attributes are in `attributes`.
#[derive(Clone, Copy, Debug)]
pub struct InetDiagMsg<'a> {
    pub state: u8,
    pub address: IpAddr,
    pub port: u16,
    pub peer_port: u16,
    pub cookie: u64,
    pub uid: u32,
    pub inode: u32,
    /// The attributes after the fixed part (see [`attributes`]).
    pub attributes: &'a [u8],
}

/// Reads an IPv4 or IPv6 `inet_diag_msg`; anything shorter, or of another
/// family, is an error.
pub fn inet_diag_msg(payload: &[u8]) -> Result<InetDiagMsg<'_>, String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!("short inet_diag_msg ({} bytes)", payload.len()));
    }
    let source = &payload[8..24];
    let address = match payload[0] {
        f if f == libc::AF_INET as u8 => {
            IpAddr::V4(Ipv4Addr::new(source[0], source[1], source[2], source[3]))
        }
        f if f == libc::AF_INET6 as u8 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(source);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => return Err(format!("unexpected address family {other}")),
    };
    Ok(InetDiagMsg {
        state: payload[1],
        address,
        port: u16::from_be_bytes([payload[4], payload[5]]),
        peer_port: u16::from_be_bytes([payload[6], payload[7]]),
        cookie: u64::from(u32_at(payload, 44)) | (u64::from(u32_at(payload, 48)) << 32),
        uid: u32_at(payload, 64),
        inode: u32_at(payload, 68),
        attributes: &payload[INET_DIAG_MSG_LEN..],
    })
}

/// A native-endian u32 at `at`; the caller has checked the length.
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The longest request body sent (an `inet_diag_req_v2` with one 32-bit
/// attribute: [`inet_diag_request_for_protocol`]).
pub const MAX_BODY: usize = 64;

/// Wraps a request body (at most [`MAX_BODY`] bytes) in a dump header of
/// message type `kind`; returns the buffer and the request's length.
pub fn dump_request(
    seq: u32,
    kind: u16,
    body: &[u8],
) -> ([u8; NLMSG_HEADER_LEN + MAX_BODY], usize) {
    let mut request = [0u8; NLMSG_HEADER_LEN + MAX_BODY];
    let body = &body[..body.len().min(MAX_BODY)];
    let total = NLMSG_HEADER_LEN + body.len();
    request[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Bytes 12..16, the port id, stay 0: the kernel fills it.
    request[NLMSG_HEADER_LEN..total].copy_from_slice(body);
    (request, total)
}

/// Length of `struct inet_diag_req_v2`.
pub const INET_DIAG_REQ_V2_LEN: usize = 56;

/// An inet_diag dump request body (`struct inet_diag_req_v2`) for one
/// address family, protocol and set of states (a bit per TCP state), with a
/// zero socket id and no extensions.
pub fn inet_diag_request(family: u8, protocol: u8, states: u32) -> [u8; INET_DIAG_REQ_V2_LEN] {
    let mut body = [0u8; INET_DIAG_REQ_V2_LEN];
    body[0] = family;
    body[1] = protocol;
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    body
}

/// `INET_DIAG_REQ_PROTOCOL`: a request attribute carrying the protocol
/// number when it does not fit the request's one byte (MPTCP is 262).
const INET_DIAG_REQ_PROTOCOL: u16 = 3;

/// An inet_diag dump request for a protocol numbered above 255 (Linux 5.10
/// and later): the byte is left 0 (no protocol, so an older kernel refuses
/// the request rather than answering for another one) and the number goes
/// in an `INET_DIAG_REQ_PROTOCOL` attribute.
pub fn inet_diag_request_for_protocol(
    family: u8,
    protocol: u32,
    states: u32,
) -> [u8; INET_DIAG_REQ_V2_LEN + 8] {
    let mut body = [0u8; INET_DIAG_REQ_V2_LEN + 8];
    body[..INET_DIAG_REQ_V2_LEN].copy_from_slice(&inet_diag_request(family, 0, states));
    let attribute = &mut body[INET_DIAG_REQ_V2_LEN..];
    attribute[0..2].copy_from_slice(&8u16.to_ne_bytes());
    attribute[2..4].copy_from_slice(&INET_DIAG_REQ_PROTOCOL.to_ne_bytes());
    attribute[4..8].copy_from_slice(&protocol.to_ne_bytes());
    body
}

thread_local! {
    /// One receive buffer per thread that dumps, shared by every channel it
    /// reads: a thousand namespace channels must not cost a thousand
    /// buffers.
    static RECEIVE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; RECEIVE_BUFFER]);
}

/// A NETLINK_SOCK_DIAG socket (one descriptor), opened in the calling
/// thread's network namespace and reused for every dump.
pub struct Channel {
    socket: Socket,
    seq: u32,
    /// Set after a dump failed half-way: unread replies may be queued, so
    /// the channel refuses further dumps and its owner opens a fresh one in
    /// the same namespace (only the owner knows how to get there).
    poisoned: bool,
}

impl Channel {
    pub fn open() -> Result<Channel, WireError> {
        let refused = |err: std::io::Error| {
            WireError::Broken(format!("cannot open a NETLINK_SOCK_DIAG socket: {err}"))
        };
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(refused)?;
        socket.bind_auto().map_err(refused)?;
        // Dumps are flow-controlled by the kernel (it fills the socket as we
        // drain it), so the default kernel-side buffer is enough.
        Ok(Channel {
            socket,
            seq: 0,
            poisoned: false,
        })
    }

    /// Sends one `SOCK_DIAG_BY_FAMILY` dump request (`body` follows the
    /// netlink header) and calls `visit` with each socket message's payload
    /// until the dump ends. After a failure mid-dump the channel refuses
    /// further dumps ([`Channel::is_poisoned`]); a refusal by the kernel is a
    /// complete answer and leaves it usable.
    pub fn dump(
        &mut self,
        body: &[u8],
        visit: impl FnMut(&[u8]) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        self.dump_typed(SOCK_DIAG_BY_FAMILY, body, visit)
    }

    /// [`Channel::dump`] with another request type (`TCPDIAG_GETSOCK`).
    pub fn dump_typed(
        &mut self,
        kind: u16,
        body: &[u8],
        mut visit: impl FnMut(&[u8]) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        if self.poisoned {
            return Err(WireError::Broken(
                "the sock_diag channel failed earlier and must be reopened".to_string(),
            ));
        }
        let result = self.dump_inner(kind, body, &mut visit);
        // A refusal is a complete answer (the kernel sent nothing else);
        // anything else may leave replies queued.
        if matches!(result, Err(WireError::Broken(_))) {
            self.poisoned = true;
        }
        result
    }

    fn dump_inner(
        &mut self,
        kind: u16,
        body: &[u8],
        visit: &mut impl FnMut(&[u8]) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        self.seq = self.seq.wrapping_add(1);
        let (request, length) = dump_request(self.seq, kind, body);
        self.socket
            .send(&request[..length], 0)
            .map_err(|err| WireError::Broken(format!("sock_diag request failed: {err}")))?;
        RECEIVE.with_borrow_mut(|buffer| {
            loop {
                let mut window = &mut buffer[..];
                let received = self
                    .socket
                    .recv(&mut window, 0)
                    .map_err(|err| WireError::Broken(format!("sock_diag receive failed: {err}")))?;
                let received = received.min(buffer.len());
                match walk_messages(&buffer[..received], &mut *visit)? {
                    Progress::Done => return Ok(()),
                    Progress::More if received > 0 => {}
                    Progress::More => {
                        return Err(WireError::Broken("sock_diag dump ended early".to_string()));
                    }
                }
            }
        })
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

impl AsFd for Channel {
    /// The socket, e.g. for interface-name lookups in its namespace.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// One netlink message with `payload`, as the kernel would frame it.
    pub fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HEADER_LEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    /// One attribute, padded to four bytes.
    pub fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLA_HEADER_LEN + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    #[test]
    fn walks_messages_and_keeps_the_errno() {
        let mut buffer = message(SOCK_DIAG_BY_FAMILY, &[1, 2, 3, 4]);
        buffer.extend(message(1, &[9; 4])); // NLMSG_NOOP is skipped
        buffer.extend(message(TCPDIAG_GETSOCK, &[5; 8]));
        buffer.extend(message(NLMSG_DONE, &0i32.to_ne_bytes()));
        let mut seen = Vec::new();
        let progress = walk_messages(&buffer, |payload| {
            seen.push(payload.to_vec());
            Ok(())
        });
        assert_eq!(progress, Ok(Progress::Done));
        assert_eq!(seen, vec![vec![1, 2, 3, 4], vec![5; 8]]);

        let refused = message(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        let err = walk_messages(&refused, |_| Ok(())).unwrap_err();
        assert_eq!(err, WireError::Refused(libc::ENOENT));
        assert!(err.is_unsupported());
        let done_with_error = message(NLMSG_DONE, &(-libc::EPERM).to_ne_bytes());
        let err = walk_messages(&done_with_error, |_| Ok(())).unwrap_err();
        assert!(!err.is_unsupported());
        // An ack (error 0) is not a failure and does not end the dump.
        let ack = message(NLMSG_ERROR, &0i32.to_ne_bytes());
        assert_eq!(walk_messages(&ack, |_| Ok(())), Ok(Progress::More));
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_panic() {
        assert!(walk_messages(&[1, 2, 3], |_| Ok(())).is_err());
        let mut lying = message(SOCK_DIAG_BY_FAMILY, &[0; 8]);
        lying[0] = 200;
        assert!(walk_messages(&lying, |_| Ok(())).is_err());
        let mut short = message(SOCK_DIAG_BY_FAMILY, &[0; 8]);
        short[0] = 3;
        assert!(walk_messages(&short, |_| Ok(())).is_err());
    }

    #[test]
    fn walks_attributes_and_stops_at_a_truncated_one() {
        let mut bytes = attribute(5, &1000u32.to_ne_bytes());
        bytes.extend(attribute(7, &[])); // an empty attribute is legal
        bytes.extend(attribute(11, &[1]));
        let found: Vec<(u16, Vec<u8>)> = attributes(&bytes).map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(
            found,
            vec![
                (5, 1000u32.to_ne_bytes().to_vec()),
                (7, vec![]),
                (11, vec![1])
            ]
        );
        let mut truncated = attribute(5, &[0; 8]);
        truncated[0] = 40;
        assert_eq!(attributes(&truncated).count(), 0);
        assert_eq!(attributes(&[1, 0]).count(), 0);
    }

    #[test]
    fn a_refused_dump_leaves_the_channel_usable() {
        let mut channel = Channel::open().unwrap();
        // AF_INET with protocol 254, for which no kernel has a diag handler.
        let unknown = inet_diag_request(libc::AF_INET as u8, 254, u32::MAX);
        let err = channel.dump(&unknown, |_| Ok(())).unwrap_err();
        assert!(err.is_unsupported(), "{err}");
        assert!(!channel.is_poisoned());
        // TCP listeners: a handler every kernel with sock_diag has.
        let listeners = inet_diag_request(libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 1 << 10);
        channel.dump(&listeners, |_| Ok(())).unwrap();
    }
}
