//! `AF_PACKET` sock_diag: the request and the parser of one reply message.
//!
//! Request: `struct packet_diag_req` (20 bytes) with `pdiag_show =
//! PACKET_SHOW_INFO | PACKET_SHOW_FILTER`. Reply: `struct packet_diag_msg`
//! (16 bytes: family, type, protocol in host order, inode, cookie) followed
//! by attributes: `PACKET_DIAG_INFO` (bound interface index first),
//! `PACKET_DIAG_UID` and `PACKET_DIAG_FILTER` (the classic BPF program; an
//! empty attribute when the reader lacks CAP_NET_ADMIN, none when no filter
//! is attached).

use super::{BpfFilter, RawKind, RawSocket};
use crate::kernel::sock_diag::wire::{attributes, u32_at};

const PACKET_SHOW_INFO: u32 = 0x01;
const PACKET_SHOW_FILTER: u32 = 0x20;
const PACKET_DIAG_MSG_LEN: usize = 16;
const PACKET_DIAG_INFO: u16 = 0;
const PACKET_DIAG_UID: u16 = 5;
const PACKET_DIAG_FILTER: u16 = 7;

/// The request body: all packet sockets of the namespace (the kernel
/// accepts no protocol filter here).
pub fn request() -> [u8; 20] {
    let mut body = [0u8; 20];
    body[0] = libc::AF_PACKET as u8;
    body[8..12].copy_from_slice(&(PACKET_SHOW_INFO | PACKET_SHOW_FILTER).to_ne_bytes());
    body
}

/// Parses one `SOCK_DIAG_BY_FAMILY` payload of a packet_diag dump.
pub fn parse(payload: &[u8]) -> Result<RawSocket, String> {
    if payload.len() < PACKET_DIAG_MSG_LEN {
        return Err(format!("short packet_diag_msg ({} bytes)", payload.len()));
    }
    if payload[0] != libc::AF_PACKET as u8 {
        return Err(format!(
            "packet_diag reply of address family {}",
            payload[0]
        ));
    }
    let mut socket = RawSocket {
        kind: RawKind::Packet,
        protocol: u16::from_ne_bytes([payload[2], payload[3]]),
        ifindex: None,
        bpf_filter: BpfFilter::None,
        uid: None,
        inode: u64::from(u32_at(payload, 4)),
    };
    for (kind, value) in attributes(&payload[PACKET_DIAG_MSG_LEN..]) {
        match kind {
            PACKET_DIAG_INFO if value.len() >= 4 => socket.ifindex = Some(u32_at(value, 0)),
            PACKET_DIAG_UID if value.len() >= 4 => socket.uid = Some(u32_at(value, 0)),
            PACKET_DIAG_FILTER if value.is_empty() => socket.bpf_filter = BpfFilter::Unknown,
            PACKET_DIAG_FILTER => socket.bpf_filter = BpfFilter::Attached,
            _ => {}
        }
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::tests::attribute;

    fn reply(protocol: u16, inode: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut msg = vec![libc::AF_PACKET as u8, libc::SOCK_RAW as u8];
        msg.extend_from_slice(&protocol.to_ne_bytes());
        msg.extend_from_slice(&inode.to_ne_bytes());
        msg.extend_from_slice(&[0xab; 8]); // cookie
        for attr in attrs {
            msg.extend_from_slice(attr);
        }
        msg
    }

    fn info(ifindex: u32) -> Vec<u8> {
        let mut value = ifindex.to_ne_bytes().to_vec();
        value.extend_from_slice(&[0; 20]); // version, reserve, thresh, tstamp, flags
        attribute(PACKET_DIAG_INFO, &value)
    }

    #[test]
    fn reads_a_filtered_socket_bound_to_nothing() {
        let bpf = [0x06, 0, 0, 0, 0xff, 0xff, 0, 0]; // ret #65535
        let payload = reply(
            0x0003,
            22041,
            &[
                info(0),
                attribute(PACKET_DIAG_UID, &0u32.to_ne_bytes()),
                attribute(PACKET_DIAG_FILTER, &bpf),
            ],
        );
        assert_eq!(
            parse(&payload),
            Ok(RawSocket {
                kind: RawKind::Packet,
                protocol: 3,
                ifindex: Some(0),
                bpf_filter: BpfFilter::Attached,
                uid: Some(0),
                inode: 22041,
            })
        );
    }

    #[test]
    fn no_filter_attribute_means_none_and_an_empty_one_unknown() {
        let plain = reply(
            0x0806,
            7,
            &[info(2), attribute(PACKET_DIAG_UID, &1000u32.to_ne_bytes())],
        );
        let socket = parse(&plain).unwrap();
        assert_eq!(socket.bpf_filter, BpfFilter::None);
        assert_eq!((socket.ifindex, socket.uid), (Some(2), Some(1000)));
        let unprivileged = reply(0x0806, 7, &[info(2), attribute(PACKET_DIAG_FILTER, &[])]);
        assert_eq!(parse(&unprivileged).unwrap().bpf_filter, BpfFilter::Unknown);
    }

    #[test]
    fn short_or_foreign_replies_are_errors() {
        assert!(parse(&[17, 3, 0]).is_err());
        let mut inet = reply(3, 1, &[]);
        inet[0] = libc::AF_INET as u8;
        assert!(parse(&inet).is_err());
        // A truncated attribute tail is ignored, the fixed part still counts.
        let mut cut = reply(3, 1, &[info(4)]);
        cut.truncate(cut.len() - 3);
        assert_eq!(parse(&cut).unwrap().ifindex, None);
    }

    #[test]
    fn the_request_asks_for_info_and_filter() {
        let body = request();
        assert_eq!(body[0], libc::AF_PACKET as u8);
        assert_eq!(body[1], 0, "packet_diag refuses a protocol filter");
        assert_eq!(u32_at(&body, 8), 0x21);
    }
}
