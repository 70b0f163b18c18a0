//! Decodes one nf_tables rule (an `NFT_MSG_NEWRULE` payload) into the port
//! forwarding it performs, if any.
//!
//! A rule is a list of expressions that run on registers. The decoder runs
//! the few that matter symbolically:
//!
//! - loads: `meta l4proto` and `payload` of the transport header's
//!   destination port (offset 2, length 2), and `immediate` values;
//! - comparisons on what was loaded: `cmp eq` (protocol, one port) and
//!   `range eq` (a port range). Any other comparison on the destination port
//!   (`!=`, a set `lookup`) makes the rule's ports unknown, and it is left
//!   out rather than guessed;
//! - the xt-compat expressions iptables-nft writes (`xt.rs`): `match` named
//!   `tcp`/`udp` with the port range in its info, `target` named
//!   `DNAT`/`REDIRECT` with its NAT range;
//! - the native actions: `nat` of type DNAT (address and port from
//!   registers) and `redir` (port from a register).
//!
//! A rule that forwards but matches no destination port forwards every port;
//! it is left out (see the README's note on forwarded ports).

use super::xt;
use super::{Mechanism, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NatRule};
use crate::kernel::nlsock::{attribute, be32, string};
use crate::kernel::sock_diag::wire::attributes;
use crate::policy::registry::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_RANGE_EQ: u32 = 0;
const NFT_NAT_DNAT: u32 = 1;

/// 16 four-byte register units (NFT_REG_1..4 are four units each,
/// NFT_REG32_00..15 one each).
const UNITS: usize = 16;

/// What a register unit holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Loaded {
    #[default]
    Unknown,
    L4Proto,
    DestinationPort,
    Data([u8; 4]),
}

/// The unit a register number starts at.
fn unit(register: u32) -> Option<usize> {
    match register {
        1..=4 => Some((register as usize - 1) * 4),
        8..=23 => Some(register as usize - 8),
        _ => None,
    }
}

/// What the walk over one rule's expressions found.
#[derive(Debug, Default)]
struct Walk {
    registers: [Loaded; UNITS],
    transport: Option<Transport>,
    ports: Option<(u16, u16)>,
    /// A comparison on the port this decoder cannot express.
    unknown_ports: bool,
    action: Option<xt::Action>,
}

/// Decodes one rule message payload (`nfgenmsg` and attributes). `None`
/// when the rule forwards nothing, or nothing this decoder can place.
pub fn rule(payload: &[u8]) -> Option<NatRule> {
    let family = *payload.first()?;
    if ![NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6].contains(&family) {
        return None;
    }
    let attrs = payload.get(4..)?;
    let expressions = attribute(attrs, NFTA_RULE_EXPRESSIONS)?;
    let mut walk = Walk::default();
    for (_, element) in attributes(expressions) {
        let name = string(attribute(element, NFTA_EXPR_NAME)?);
        let data = attribute(element, NFTA_EXPR_DATA).unwrap_or(&[]);
        walk.expression(&name, data, family);
    }
    let (mechanism, to_address, to_ports) = walk.action?;
    let (first, last) = walk.ports?;
    if walk.unknown_ports {
        return None;
    }
    Some(NatRule {
        family,
        table: attribute(attrs, NFTA_RULE_TABLE)
            .map(string)
            .unwrap_or_default(),
        chain: attribute(attrs, NFTA_RULE_CHAIN)
            .map(string)
            .unwrap_or_default(),
        transport: walk.transport,
        first,
        last,
        mechanism,
        to_address,
        to_ports,
    })
}

fn u32_attr(data: &[u8], kind: u16) -> Option<u32> {
    attribute(data, kind).and_then(be32)
}

/// The `NFTA_DATA_VALUE` inside a nested data attribute.
fn value(data: &[u8], kind: u16) -> Option<&[u8]> {
    attribute(attribute(data, kind)?, NFTA_DATA_VALUE)
}

fn transport_of(protocol: u8) -> Option<Transport> {
    match i32::from(protocol) {
        libc::IPPROTO_TCP => Some(Transport::Tcp),
        libc::IPPROTO_UDP => Some(Transport::Udp),
        libc::IPPROTO_SCTP => Some(Transport::Sctp),
        libc::IPPROTO_UDPLITE => Some(Transport::UdpLite),
        _ => None,
    }
}

impl Walk {
    fn expression(&mut self, name: &str, data: &[u8], family: u8) {
        match name {
            "meta" => {
                // A meta *set* has no DREG; only loads matter here.
                if let Some(at) = u32_attr(data, 1).and_then(unit) {
                    self.registers[at] = if u32_attr(data, 2) == Some(NFT_META_L4PROTO) {
                        Loaded::L4Proto
                    } else {
                        Loaded::Unknown
                    };
                }
            }
            "payload" => {
                if let Some(at) = u32_attr(data, 1).and_then(unit) {
                    let dport = u32_attr(data, 2) == Some(NFT_PAYLOAD_TRANSPORT_HEADER)
                        && u32_attr(data, 3) == Some(2)
                        && u32_attr(data, 4) == Some(2);
                    self.registers[at] = if dport {
                        Loaded::DestinationPort
                    } else {
                        Loaded::Unknown
                    };
                }
            }
            "immediate" => self.immediate(data),
            "cmp" => self.compare(data),
            "range" => {
                let Some(at) = u32_attr(data, 1).and_then(unit) else {
                    return;
                };
                if self.registers[at] == Loaded::DestinationPort {
                    let from = value(data, 3).and_then(port);
                    let to = value(data, 4).and_then(port);
                    match (u32_attr(data, 2), from, to) {
                        (Some(NFT_RANGE_EQ), Some(from), Some(to)) => self.ports = Some((from, to)),
                        _ => self.unknown_ports = true,
                    }
                }
            }
            "lookup"
                if u32_attr(data, 2)
                    .and_then(unit)
                    .is_some_and(|at| self.registers[at] == Loaded::DestinationPort) =>
            {
                self.unknown_ports = true;
            }
            "nat" => self.nat(data, family),
            "redir" => {
                let to_ports = self.register_ports(data, 1, 2);
                self.action = Some((Mechanism::Redirect, None, to_ports));
            }
            "match" => {
                let name = attribute(data, 1).map(string).unwrap_or_default();
                let info = attribute(data, 3).unwrap_or(&[]);
                match xt::port_match(&name, info) {
                    Some(xt::PortMatch::Ports(transport, first, last)) => {
                        self.transport = Some(transport);
                        self.ports = Some((first, last));
                    }
                    Some(xt::PortMatch::Inverted) => self.unknown_ports = true,
                    None => {}
                }
            }
            "target" => {
                let name = attribute(data, 1).map(string).unwrap_or_default();
                let revision = u32_attr(data, 2).unwrap_or(0);
                let info = attribute(data, 3).unwrap_or(&[]);
                if let Some(found) = xt::nat_target(&name, revision, family, info) {
                    self.action = Some(found);
                }
            }
            _ => {}
        }
    }

    fn immediate(&mut self, data: &[u8]) {
        let Some(at) = u32_attr(data, 1).and_then(unit) else {
            return; // the verdict register
        };
        let Some(bytes) = value(data, 2) else { return };
        for (index, chunk) in bytes.chunks(4).enumerate() {
            if let Some(slot) = self.registers.get_mut(at + index) {
                let mut unit = [0u8; 4];
                unit[..chunk.len()].copy_from_slice(chunk);
                *slot = Loaded::Data(unit);
            }
        }
    }

    fn compare(&mut self, data: &[u8]) {
        let Some(at) = u32_attr(data, 1).and_then(unit) else {
            return;
        };
        let equal = u32_attr(data, 2) == Some(NFT_CMP_EQ);
        let bytes = value(data, 3).unwrap_or(&[]);
        match self.registers[at] {
            Loaded::L4Proto if equal => {
                self.transport = bytes.first().copied().and_then(transport_of);
            }
            Loaded::DestinationPort => match port(bytes) {
                Some(found) if equal => self.ports = Some((found, found)),
                _ => self.unknown_ports = true,
            },
            _ => {}
        }
    }

    fn nat(&mut self, data: &[u8], rule_family: u8) {
        if u32_attr(data, 1) != Some(NFT_NAT_DNAT) {
            return; // SNAT is not forwarding a port
        }
        let family = u32_attr(data, 2).map_or(rule_family, |f| f as u8);
        let address = u32_attr(data, 3)
            .and_then(unit)
            .and_then(|at| self.address(at, family));
        let to_ports = self.register_ports(data, 5, 6);
        self.action = Some((Mechanism::Dnat, address, to_ports));
    }

    /// The port range named by the min/max register attributes.
    fn register_ports(&self, data: &[u8], min: u16, max: u16) -> Option<(u16, u16)> {
        let read = |kind| {
            let at = u32_attr(data, kind).and_then(unit)?;
            match self.registers[at] {
                Loaded::Data(bytes) => Some(u16::from_be_bytes([bytes[0], bytes[1]])),
                _ => None,
            }
        };
        let first = read(min)?;
        Some((first, read(max).unwrap_or(first)))
    }

    fn address(&self, at: usize, family: u8) -> Option<IpAddr> {
        let data = |index: usize| match self.registers.get(at + index) {
            Some(Loaded::Data(bytes)) => Some(*bytes),
            _ => None,
        };
        match family {
            NFPROTO_IPV4 => Some(IpAddr::V4(Ipv4Addr::from(data(0)?))),
            NFPROTO_IPV6 => {
                let mut octets = [0u8; 16];
                for index in 0..4 {
                    octets[index * 4..index * 4 + 4].copy_from_slice(&data(index)?);
                }
                Some(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => None,
        }
    }
}

/// A big-endian port from a two-byte (or longer, zero-padded) value.
fn port(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::tests::attribute as attr;

    pub fn be(value: u32) -> Vec<u8> {
        value.to_be_bytes().to_vec()
    }

    fn nested_value(kind: u16, bytes: &[u8]) -> Vec<u8> {
        attr(kind, &attr(NFTA_DATA_VALUE, bytes))
    }

    pub fn expression(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        let mut element = attr(NFTA_EXPR_NAME, &name_bytes);
        element.extend(attr(NFTA_EXPR_DATA, &data.concat()));
        attr(1, &element)
    }

    /// A rule payload: nfgenmsg, table, chain and the expressions.
    pub fn rule_payload(family: u8, expressions: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        payload.extend(attr(NFTA_RULE_TABLE, b"nat\0"));
        payload.extend(attr(NFTA_RULE_CHAIN, b"PREROUTING\0"));
        payload.extend(attr(NFTA_RULE_EXPRESSIONS, &expressions.concat()));
        payload
    }

    /// `meta l4proto tcp tcp dport 276` on 32-bit register 8.
    fn tcp_dport(port_value: u16) -> Vec<Vec<u8>> {
        vec![
            expression("meta", &[attr(1, &be(8)), attr(2, &be(NFT_META_L4PROTO))]),
            expression(
                "cmp",
                &[attr(1, &be(8)), attr(2, &be(0)), nested_value(3, &[6])],
            ),
            expression(
                "payload",
                &[
                    attr(1, &be(8)),
                    attr(2, &be(2)),
                    attr(3, &be(2)),
                    attr(4, &be(2)),
                ],
            ),
            expression(
                "cmp",
                &[
                    attr(1, &be(8)),
                    attr(2, &be(0)),
                    nested_value(3, &port_value.to_be_bytes()),
                ],
            ),
        ]
    }

    #[test]
    fn native_redirect_to_a_port() {
        let mut expressions = tcp_dport(276);
        expressions.push(expression(
            "immediate",
            &[attr(1, &be(9)), nested_value(2, &31337u16.to_be_bytes())],
        ));
        expressions.push(expression("redir", &[attr(1, &be(9))]));
        let found = rule(&rule_payload(NFPROTO_INET, &expressions)).unwrap();
        assert_eq!(found.transport, Some(Transport::Tcp));
        assert_eq!((found.first, found.last), (276, 276));
        assert_eq!(found.mechanism, Mechanism::Redirect);
        assert_eq!(found.to_ports, Some((31337, 31337)));
        assert_eq!(found.to_address, None);
        assert_eq!(found.table, "nat");
        assert_eq!(found.chain, "PREROUTING");
    }

    #[test]
    fn native_dnat_to_an_address_and_port() {
        let mut expressions = tcp_dport(277);
        expressions.push(expression(
            "immediate",
            &[attr(1, &be(1)), nested_value(2, &[10, 88, 0, 10])],
        ));
        expressions.push(expression(
            "immediate",
            &[attr(1, &be(2)), nested_value(2, &8080u16.to_be_bytes())],
        ));
        expressions.push(expression(
            "nat",
            &[
                attr(1, &be(NFT_NAT_DNAT)),
                attr(2, &be(u32::from(NFPROTO_IPV4))),
                attr(3, &be(1)),
                attr(5, &be(2)),
            ],
        ));
        let found = rule(&rule_payload(NFPROTO_IPV4, &expressions)).unwrap();
        assert_eq!(found.mechanism, Mechanism::Dnat);
        assert_eq!(found.to_address, Some("10.88.0.10".parse().unwrap()));
        assert_eq!(found.to_ports, Some((8080, 8080)));
        assert_eq!((found.first, found.last), (277, 277));
    }

    #[test]
    fn a_port_range_and_an_inequality() {
        let mut ranged = tcp_dport(276);
        ranged[3] = expression(
            "range",
            &[
                attr(1, &be(8)),
                attr(2, &be(0)),
                nested_value(3, &272u16.to_be_bytes()),
                nested_value(4, &279u16.to_be_bytes()),
            ],
        );
        ranged.push(expression("redir", &[]));
        let found = rule(&rule_payload(NFPROTO_IPV4, &ranged)).unwrap();
        assert_eq!((found.first, found.last), (272, 279));
        assert_eq!(found.to_ports, None);
        let mut unequal = tcp_dport(276);
        unequal[3] = expression(
            "cmp",
            &[
                attr(1, &be(8)),
                attr(2, &be(1)),
                nested_value(3, &276u16.to_be_bytes()),
            ],
        );
        unequal.push(expression("redir", &[]));
        assert_eq!(rule(&rule_payload(NFPROTO_IPV4, &unequal)), None);
    }

    #[test]
    fn rules_that_forward_nothing_or_everything_are_left_out() {
        // A port match with no NAT action (an accept rule).
        assert_eq!(rule(&rule_payload(NFPROTO_IPV4, &tcp_dport(276))), None);
        // A redirect of every port.
        assert_eq!(
            rule(&rule_payload(NFPROTO_IPV4, &[expression("redir", &[])])),
            None
        );
        // Another family (bridge), and garbage.
        let mut bridge = tcp_dport(276);
        bridge.push(expression("redir", &[]));
        assert_eq!(rule(&rule_payload(7, &bridge)), None);
        assert_eq!(rule(&[2, 0]), None);
        assert_eq!(rule(&[]), None);
        assert_eq!(rule(&[2, 0, 0, 0, 200, 0, 4, 0]), None);
    }
}
