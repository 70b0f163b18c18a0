//! The addresses of one network namespace's interfaces that are up, read
//! through rtnetlink (`RTM_GETLINK`, `RTM_GETADDR` dumps) on a socket opened
//! inside the namespace.
//!
//! They decide what a wildcard bind (`0.0.0.0`, `::`) exposes
//! (`crate::policy::exposure`). The socket joins the link and address
//! notification groups (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`,
//! `RTMGRP_IPV6_IFADDR`), so a scrape re-reads them only after an address
//! was added or removed or an interface went up or down
//! (`crate::kernel::nlsock`); otherwise it costs one non-blocking `recv`.
//! No privilege is needed.

use crate::kernel::nlsock::{Watched, attribute};
use crate::kernel::sock_diag::wire::u32_at;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 1;
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// The notification groups that say the addresses may have changed.
pub const CHANGE_GROUPS: u32 = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;

/// The up interfaces' addresses of the namespace the socket was opened in.
pub struct AddressWatch {
    socket: Watched,
    addresses: Vec<IpAddr>,
}

impl AddressWatch {
    /// Opens the socket in the calling thread's namespace.
    pub fn open() -> Result<AddressWatch, String> {
        Self::open_joining(CHANGE_GROUPS)
    }

    /// Reads the addresses once, in the calling thread's namespace, through
    /// a socket that joins no group and is closed at once (another
    /// namespace's changes are heard by a `crate::kernel::nlsock::ChangeFeed`).
    pub fn read_once() -> Result<Vec<IpAddr>, String> {
        Self::open_joining(0)?.addresses().map(<[_]>::to_vec)
    }

    fn open_joining(groups: u32) -> Result<AddressWatch, String> {
        let socket = Watched::open(netlink_sys::protocols::NETLINK_ROUTE, groups)
            .map_err(|err| format!("cannot open an rtnetlink socket: {err}"))?;
        Ok(AddressWatch {
            socket,
            addresses: Vec::new(),
        })
    }

    /// The addresses now: re-read only after a change notification.
    pub fn addresses(&mut self) -> Result<&[IpAddr], String> {
        if self.socket.changed() {
            match self.read() {
                Ok(found) => self.addresses = found,
                Err(err) => {
                    self.socket.invalidate();
                    return Err(format!("cannot read the interface addresses: {err}"));
                }
            }
        }
        Ok(&self.addresses)
    }

    fn read(&mut self) -> Result<Vec<IpAddr>, String> {
        let mut up = HashSet::new();
        self.socket
            .request(RTM_GETLINK, true, &[0u8; 16], |message| {
                if message.kind == RTM_NEWLINK && message.payload.len() >= 16 {
                    let index = u32_at(message.payload, 4);
                    if u32_at(message.payload, 8) & IFF_UP != 0 {
                        up.insert(index);
                    }
                }
                Ok(())
            })
            .map_err(|err| err.to_string())?;
        let mut found = Vec::new();
        self.socket
            .request(RTM_GETADDR, true, &[0u8; 8], |message| {
                if message.kind == RTM_NEWADDR
                    && let Some(address) = address_on(message.payload, &up)
                {
                    found.push(address);
                }
                Ok(())
            })
            .map_err(|err| err.to_string())?;
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }
}

/// The address of one `RTM_NEWADDR` payload (`ifaddrmsg` and attributes)
/// when its interface is in `up`. IPv4's own address is `IFA_LOCAL`
/// (`IFA_ADDRESS` is the peer on point-to-point links).
fn address_on(payload: &[u8], up: &HashSet<u32>) -> Option<IpAddr> {
    if payload.len() < 8 || !up.contains(&u32_at(payload, 4)) {
        return None;
    }
    let attrs = &payload[8..];
    match i32::from(payload[0]) {
        libc::AF_INET => {
            let bytes = attribute(attrs, IFA_LOCAL).or_else(|| attribute(attrs, IFA_ADDRESS))?;
            let octets: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        libc::AF_INET6 => {
            let bytes = attribute(attrs, IFA_ADDRESS)?;
            let octets: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::tests::attribute as attr;

    fn ifaddr(family: i32, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family as u8, 24, 0, 0];
        payload.extend_from_slice(&index.to_ne_bytes());
        payload.extend(attrs.concat());
        payload
    }

    #[test]
    fn reads_addresses_of_up_interfaces_only() {
        let up: HashSet<u32> = [1].into();
        let local = ifaddr(
            libc::AF_INET,
            1,
            &[
                attr(IFA_ADDRESS, &[10, 0, 0, 2]),
                attr(IFA_LOCAL, &[10, 0, 0, 1]),
            ],
        );
        assert_eq!(address_on(&local, &up), Some("10.0.0.1".parse().unwrap()));
        let down = ifaddr(libc::AF_INET, 2, &[attr(IFA_LOCAL, &[192, 0, 2, 2])]);
        assert_eq!(address_on(&down, &up), None);
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        let six = ifaddr(libc::AF_INET6, 1, &[attr(IFA_ADDRESS, &v6.octets())]);
        assert_eq!(address_on(&six, &up), Some(IpAddr::V6(v6)));
        assert_eq!(address_on(&[2, 0], &up), None);
    }

    #[test]
    fn the_live_namespace_has_loopback() {
        let mut watch = AddressWatch::open().unwrap();
        let found = watch.addresses().unwrap().to_vec();
        // The test host's lo is up with 127.0.0.1.
        assert!(
            found.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
        // Unchanged: no second dump, same answer.
        assert_eq!(watch.addresses().unwrap(), found.as_slice());
    }
}
