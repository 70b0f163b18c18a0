//! Interface index -> name, as seen from one network namespace.
//!
//! sock_diag reports the interface a socket is bound to as an index
//! (`pdi_index` for packet sockets, `idiag_if` for inet ones), and an index
//! means something only inside its own namespace: `/sys/class/net` shows the
//! namespace sysfs was mounted in, not the one being read. The `SIOCGIFNAME`
//! ioctl answers for the namespace of the socket it is issued on, so the
//! lookup goes through the socket that did the dump (see `wire::Channel`),
//! which lives in the right namespace by construction.

use std::collections::HashMap;
use std::os::fd::AsFd;

/// Remembers names for one collection; make a new one per scrape so a
/// renamed or replaced interface is seen at the next.
#[derive(Default)]
pub struct InterfaceNames {
    known: HashMap<u32, String>,
}

impl InterfaceNames {
    pub fn new() -> InterfaceNames {
        InterfaceNames::default()
    }

    /// The name of interface `index` in `socket`'s namespace; "" for 0 (not
    /// bound to an interface), the decimal index when the interface is gone.
    pub fn name(&mut self, socket: impl AsFd, index: u32) -> &str {
        if index == 0 {
            return "";
        }
        self.known.entry(index).or_insert_with(|| {
            rustix::net::netdevice::index_to_name(socket, index)
                .unwrap_or_else(|_| index.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_loopback_interface_through_any_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Loopback is index 1 in every network namespace.
        let mut names = InterfaceNames::new();
        assert_eq!(names.name(&socket, 1), "lo");
        assert_eq!(names.name(&socket, 0), "");
        assert_eq!(
            names.name(&socket, u32::MAX - 7),
            (u32::MAX - 7).to_string()
        );
    }
}
