//! The xt-compat payloads iptables-nft writes into nf_tables rules.
//!
//! iptables-nft translates what it can into native expressions, but
//! `-m tcp`/`-m udp` matches (in some versions) and the `DNAT`/`REDIRECT`
//! targets (always, as of iptables 1.8.9) travel as `match`/`target`
//! expressions whose `INFO` attribute is the x_tables structure, in host
//! byte order except for addresses and ports:
//!
//! - `struct xt_tcp` / `struct xt_udp`: `u16 spts[2]; u16 dpts[2];` then
//!   flags, with the inversion flags last (`XT_TCP_INV_DSTPT` = 0x02 at
//!   byte 11 for tcp, `XT_UDP_INV_DSTPT` = 0x02 at byte 8 for udp);
//! - `DNAT` revision 0 and IPv4 `REDIRECT`: `struct
//!   nf_nat_ipv4_multi_range_compat` (`rangesize`, then `flags`, `min_ip`,
//!   `max_ip`, `min` and `max` port);
//! - `DNAT` revisions 1 and 2 and IPv6 `REDIRECT`: `struct nf_nat_range`
//!   / `nf_nat_range2` (`flags`, 16-byte `min_addr`, `max_addr`, then the
//!   `min`/`max` ports at bytes 36 and 38).
//!
//! Flags: `NF_NAT_RANGE_MAP_IPS` (1) says an address is given,
//! `NF_NAT_RANGE_PROTO_SPECIFIED` (2) that ports are.

use super::Mechanism;
use super::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::policy::registry::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NF_NAT_RANGE_MAP_IPS: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const XT_INV_DSTPT: u8 = 0x02;

/// What an xt port match says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMatch {
    /// Destination ports `first..=last` of this transport.
    Ports(Transport, u16, u16),
    /// `! --dport`: every port but these.
    Inverted,
}

fn u16_ne(info: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes([*info.get(at)?, *info.get(at + 1)?]))
}

fn u32_ne(info: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?))
}

fn u16_be(info: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*info.get(at)?, *info.get(at + 1)?]))
}

/// Reads an xt `tcp` or `udp` match; `None` for other matches.
pub fn port_match(name: &str, info: &[u8]) -> Option<PortMatch> {
    let (transport, inversion_at) = match name {
        "tcp" => (Transport::Tcp, 11),
        "udp" => (Transport::Udp, 8),
        _ => return None,
    };
    let first = u16_ne(info, 4)?;
    let last = u16_ne(info, 6)?;
    if info
        .get(inversion_at)
        .is_some_and(|flags| flags & XT_INV_DSTPT != 0)
    {
        return Some(PortMatch::Inverted);
    }
    // 0-65535 is "no --dport given": the rule matches every port.
    if first == 0 && last == u16::MAX {
        return None;
    }
    Some(PortMatch::Ports(transport, first, last))
}

/// A forwarding action and where it sends packets.
pub type Action = (Mechanism, Option<IpAddr>, Option<(u16, u16)>);

/// Reads an xt `DNAT` or `REDIRECT` target of the rule's `family`.
pub fn nat_target(name: &str, revision: u32, family: u8, info: &[u8]) -> Option<Action> {
    let mechanism = match name {
        "DNAT" => Mechanism::Dnat,
        "REDIRECT" => Mechanism::Redirect,
        _ => return None,
    };
    let compat = family == NFPROTO_IPV4 && (mechanism == Mechanism::Redirect || revision == 0);
    let (flags, address, ports_at) = if compat {
        // rangesize, then the first nf_nat_ipv4_range.
        let flags = u32_ne(info, 4)?;
        let ip: [u8; 4] = info.get(8..12)?.try_into().ok()?;
        (flags, IpAddr::V4(Ipv4Addr::from(ip)), 16)
    } else {
        let flags = u32_ne(info, 0)?;
        let address = if family == NFPROTO_IPV6 {
            let octets: [u8; 16] = info.get(4..20)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        } else {
            let ip: [u8; 4] = info.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(ip))
        };
        (flags, address, 36)
    };
    let address =
        (mechanism == Mechanism::Dnat && flags & NF_NAT_RANGE_MAP_IPS != 0).then_some(address);
    let ports = if flags & NF_NAT_RANGE_PROTO_SPECIFIED != 0 {
        Some((u16_be(info, ports_at)?, u16_be(info, ports_at + 2)?))
    } else {
        None
    };
    Some((mechanism, address, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xt_tcp(first: u16, last: u16, inverted: bool) -> Vec<u8> {
        let mut info = vec![0u8; 12];
        info[0..2].copy_from_slice(&0u16.to_ne_bytes());
        info[2..4].copy_from_slice(&u16::MAX.to_ne_bytes());
        info[4..6].copy_from_slice(&first.to_ne_bytes());
        info[6..8].copy_from_slice(&last.to_ne_bytes());
        if inverted {
            info[11] = XT_INV_DSTPT;
        }
        info
    }

    #[test]
    fn reads_tcp_and_udp_port_matches() {
        assert_eq!(
            port_match("tcp", &xt_tcp(276, 276, false)),
            Some(PortMatch::Ports(Transport::Tcp, 276, 276))
        );
        assert_eq!(
            port_match("tcp", &xt_tcp(276, 276, true)),
            Some(PortMatch::Inverted)
        );
        assert_eq!(port_match("tcp", &xt_tcp(0, u16::MAX, false)), None);
        let mut udp = xt_tcp(272, 279, false);
        udp.truncate(10);
        assert_eq!(
            port_match("udp", &udp),
            Some(PortMatch::Ports(Transport::Udp, 272, 279))
        );
        assert_eq!(port_match("comment", &[0; 256]), None);
        assert_eq!(port_match("tcp", &[0; 3]), None);
    }

    #[test]
    fn reads_dnat_revision_2_and_ipv4_redirect() {
        // nf_nat_range2: flags, min_addr, max_addr, min, max, base.
        let mut range = vec![0u8; 48];
        range[0..4].copy_from_slice(&3u32.to_ne_bytes());
        range[4..8].copy_from_slice(&[10, 88, 0, 10]);
        range[20..24].copy_from_slice(&[10, 88, 0, 10]);
        range[36..38].copy_from_slice(&8080u16.to_be_bytes());
        range[38..40].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(
            nat_target("DNAT", 2, NFPROTO_IPV4, &range),
            Some((
                Mechanism::Dnat,
                Some("10.88.0.10".parse().unwrap()),
                Some((8080, 8080))
            ))
        );
        // nf_nat_ipv4_multi_range_compat with a port and no address.
        let mut compat = vec![0u8; 24];
        compat[0..4].copy_from_slice(&1u32.to_ne_bytes());
        compat[4..8].copy_from_slice(&2u32.to_ne_bytes());
        compat[16..18].copy_from_slice(&31337u16.to_be_bytes());
        compat[18..20].copy_from_slice(&31337u16.to_be_bytes());
        assert_eq!(
            nat_target("REDIRECT", 0, NFPROTO_IPV4, &compat),
            Some((Mechanism::Redirect, None, Some((31337, 31337))))
        );
        assert_eq!(nat_target("MASQUERADE", 0, NFPROTO_IPV4, &compat), None);
        assert_eq!(nat_target("DNAT", 2, NFPROTO_IPV4, &[0; 5]), None);
    }

    #[test]
    fn reads_an_ipv6_dnat() {
        let mut range = vec![0u8; 48];
        range[0..4].copy_from_slice(&1u32.to_ne_bytes());
        let address: Ipv6Addr = "fd00::5".parse().unwrap();
        range[4..20].copy_from_slice(&address.octets());
        assert_eq!(
            nat_target("DNAT", 2, NFPROTO_IPV6, &range),
            Some((Mechanism::Dnat, Some(IpAddr::V6(address)), None))
        );
    }
}
