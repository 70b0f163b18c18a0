//! Feeds arbitrary bytes to the NETLINK_SOCK_DIAG reply parser, as if they
//! were one datagram received from the kernel.
//!
//! It must never panic, whatever the lengths, types and payloads claim. Each
//! socket it reports needs a 16-byte header and a 72-byte inet_diag_msg, so
//! it can never report more sockets than that many bytes allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use unassigned_port_exporter::sockets::netlink::{Progress, parse_messages};

/// nlmsghdr plus the part of `struct inet_diag_msg` the parser reads.
const SMALLEST_SOCKET_MESSAGE: usize = 16 + 72;

fuzz_target!(|data: &[u8]| {
    let mut sockets = 0usize;
    let result = parse_messages(data, |socket| {
        sockets += 1;
        // Labels are built from these fields on every scrape.
        let address = socket.address.to_string();
        match socket.address {
            IpAddr::V4(_) => assert!(address.len() <= 15),
            IpAddr::V6(_) => assert!(address.len() <= 39),
        }
        let _ = (socket.port, socket.binding, socket.uid, socket.inode);
    });
    assert!(
        sockets <= data.len() / SMALLEST_SOCKET_MESSAGE,
        "{sockets} sockets from {} bytes",
        data.len()
    );
    match &result {
        Ok(Progress::More) | Ok(Progress::Done) => {}
        Err(message) => assert!(!message.is_empty()),
    }
    if data.is_empty() {
        assert_eq!(result, Ok(Progress::More));
    }
});
