//! Raw IP sockets through inet_diag (`raw_diag`, `CONFIG_INET_RAW_DIAG`).
//!
//! Request: `struct inet_diag_req_v2` with `sdiag_protocol = IPPROTO_RAW`,
//! every state, a zero socket id. `IPPROTO_RAW` selects the raw_diag
//! handler, which then lists raw sockets of every protocol (its
//! `sdiag_raw_protocol`, the old pad byte, only matters for single-socket
//! lookups, and `INET_DIAG_REQ_PROTOCOL` only for protocol numbers above
//! 255, which raw sockets cannot have). Reply: the 72-byte `inet_diag_msg`
//! (`idiag_sport` holds the protocol, `idiag_if` the bound interface) and an
//! `INET_DIAG_PROTOCOL` attribute with the protocol given at creation.
//!
//! A kernel without raw_diag answers `ENOENT`; see `mod.rs` for the fallback.

use super::{BpfFilter, RawKind, RawSocket};
pub use crate::kernel::sock_diag::wire::INET_DIAG_MSG_LEN;
use crate::kernel::sock_diag::wire::{
    INET_DIAG_PROTOCOL, INET_DIAG_REQ_V2_LEN, attributes, inet_diag_request, u32_at,
};

/// Which raw table to dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// Every raw socket of one family, in any state.
pub fn request(family: IpFamily) -> [u8; INET_DIAG_REQ_V2_LEN] {
    let family = match family {
        IpFamily::V4 => libc::AF_INET,
        IpFamily::V6 => libc::AF_INET6,
    };
    inet_diag_request(family as u8, libc::IPPROTO_RAW as u8, u32::MAX)
}

/// Parses one `SOCK_DIAG_BY_FAMILY` payload of a raw_diag dump.
pub fn parse(payload: &[u8]) -> Result<RawSocket, String> {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Err(format!("short inet_diag_msg ({} bytes)", payload.len()));
    }
    let family = payload[0];
    if family != libc::AF_INET as u8 && family != libc::AF_INET6 as u8 {
        return Err(format!("raw_diag reply of address family {family}"));
    }
    let mut protocol = u16::from_be_bytes([payload[4], payload[5]]);
    for (kind, value) in attributes(&payload[INET_DIAG_MSG_LEN..]) {
        if kind == INET_DIAG_PROTOCOL && !value.is_empty() {
            protocol = u16::from(value[0]);
        }
    }
    Ok(RawSocket {
        kind: RawKind::Raw,
        protocol,
        ifindex: Some(u32_at(payload, 40)),
        bpf_filter: BpfFilter::Unknown,
        uid: Some(u32_at(payload, 64)),
        inode: u64::from(u32_at(payload, 68)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::tests::attribute;

    /// An inet_diag_msg as raw_diag fills it for a raw socket.
    fn reply(family: i32, protocol: u8, ifindex: u32, uid: u32, inode: u32) -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = family as u8;
        msg[1] = 7; // TCP_CLOSE: an unconnected raw socket
        msg[4..6].copy_from_slice(&u16::from(protocol).to_be_bytes());
        msg[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        msg[64..68].copy_from_slice(&uid.to_ne_bytes());
        msg[68..72].copy_from_slice(&inode.to_ne_bytes());
        msg.extend(attribute(8, &[0])); // INET_DIAG_SHUTDOWN comes first
        msg.extend(attribute(INET_DIAG_PROTOCOL, &[protocol]));
        msg
    }

    #[test]
    fn reads_protocol_interface_uid_and_inode() {
        let socket = parse(&reply(libc::AF_INET, 6, 0, 0, 22043)).unwrap();
        assert_eq!(
            socket,
            RawSocket {
                kind: RawKind::Raw,
                protocol: 6,
                ifindex: Some(0),
                bpf_filter: BpfFilter::Unknown,
                uid: Some(0),
                inode: 22043,
            }
        );
        let bound = parse(&reply(libc::AF_INET6, 58, 3, 1000, 9)).unwrap();
        assert_eq!(
            (bound.protocol, bound.ifindex, bound.uid),
            (58, Some(3), Some(1000))
        );
    }

    #[test]
    fn the_protocol_attribute_wins_over_the_port_field() {
        let mut payload = reply(libc::AF_INET, 17, 0, 0, 1);
        payload[4..6].copy_from_slice(&255u16.to_be_bytes());
        assert_eq!(parse(&payload).unwrap().protocol, 17);
        payload.truncate(INET_DIAG_MSG_LEN); // older kernels: no attribute
        assert_eq!(parse(&payload).unwrap().protocol, 255);
    }

    #[test]
    fn short_or_foreign_replies_are_errors() {
        assert!(parse(&[0; 71]).is_err());
        let mut packet = reply(libc::AF_INET, 6, 0, 0, 1);
        packet[0] = libc::AF_PACKET as u8;
        assert!(parse(&packet).is_err());
    }

    /// This machine's kernel lacks raw_diag: the request must be refused as
    /// unsupported (the reader then falls back to /proc). On a kernel that
    /// has it, the dump must succeed instead.
    #[test]
    fn a_live_request_is_answered_or_refused_as_unsupported() {
        let mut channel = crate::kernel::sock_diag::wire::Channel::open().unwrap();
        let mut parsed = 0;
        match channel.dump(&request(IpFamily::V4), |payload| {
            parse(payload).map_err(crate::kernel::sock_diag::wire::WireError::Broken)?;
            parsed += 1;
            Ok(())
        }) {
            Ok(()) => eprintln!("this kernel has raw_diag: {parsed} raw IPv4 sockets"),
            Err(err) => assert!(err.is_unsupported(), "{err}"),
        }
    }
}
