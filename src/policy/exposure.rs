//! Who can reach a listener: its bound address classified, whether an IPv6
//! socket on `[::]` also accepts IPv4, and whether it is tied to one
//! interface.
//!
//! `exposure` label values, from the bound address alone:
//!
//! - `any`: `0.0.0.0` or `::` (and `::ffff:0.0.0.0`): every address the host
//!   has, now or later.
//! - `loopback`: `127.0.0.0/8`, `::1`; also any address when the socket is
//!   bound to the `lo` interface (`SO_BINDTODEVICE`), since nothing else can
//!   then reach it.
//! - `link-local`: `169.254.0.0/16`, `fe80::/10`, and the link-scoped
//!   multicast groups (`224.0.0.0/24`, `ff02::/16`) and limited broadcast.
//! - `private`: RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), shared address
//!   space `100.64.0.0/10` (carrier-grade NAT: not routed on the internet,
//!   but reachable by the carrier's other customers, so as exposed as an
//!   RFC 1918 network), unique local `fc00::/7` and the deprecated site-local
//!   `fec0::/10`.
//! - `public`: everything else. Deliberately the default: an address this
//!   code does not recognise is treated as reachable.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are classified by their
//! IPv4 part.
//!
//! A wildcard bind is then narrowed by its own namespace
//! ([`classify_in_namespace`]): it reaches exactly the addresses the
//! namespace's interfaces have, so its class is the widest class among the
//! addresses of the interfaces that are up (IPv4 addresses for `0.0.0.0`,
//! IPv6 for `::`, both for `::` without `IPV6_V6ONLY`). A namespace whose
//! only interface is `lo` gives `loopback`, a pod with only `10.x`
//! `private`, a host with a public address `public`; a namespace with no
//! address on an up interface is unreachable, and is called `loopback`.
//! `any` remains only where the addresses could not be read. The label
//! changes when the class changes, not when an address is added within it.
//! A socket bound to an interface other than `lo` is judged by all of the
//! namespace's addresses (the interface's own are not singled out).
//!
//! Dual stack: an `AF_INET6` socket bound to `::` accepts IPv4 too unless
//! `IPV6_V6ONLY` is set. sock_diag says which with the `INET_DIAG_SKV6ONLY`
//! attribute (sent for listening TCP and unconnected UDP sockets, which is
//! every listener); `crate::kernel::sock_diag::binding` reads it, and the
//! bound interface (`idiag_if`, set by `SO_BINDTODEVICE`), into a
//! [`Binding`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The `exposure` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exposure {
    Loopback,
    LinkLocal,
    Private,
    Public,
    Any,
}

impl Exposure {
    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::Loopback => "loopback",
            Exposure::LinkLocal => "link-local",
            Exposure::Private => "private",
            Exposure::Public => "public",
            Exposure::Any => "any",
        }
    }

    /// Parses a label value (the allow selector `exposure=`).
    pub fn parse(text: &str) -> Option<Exposure> {
        [
            Exposure::Loopback,
            Exposure::LinkLocal,
            Exposure::Private,
            Exposure::Public,
            Exposure::Any,
        ]
        .into_iter()
        .find(|exposure| exposure.as_str() == text)
    }
}

/// Classifies a bound address (see the module doc).
pub fn classify(address: IpAddr) -> Exposure {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

/// Classifies a bound address together with the interface the socket is
/// bound to ("" for none): binding to `lo` makes any address loopback-only.
pub fn classify_bound(address: IpAddr, interface: &str) -> Exposure {
    if interface == "lo" {
        return Exposure::Loopback;
    }
    classify(address)
}

/// The exposure of a listener bound to `address` (and `interface`) in a
/// namespace whose up interfaces have `addresses` (`None`: they could not
/// be read). `dual_stack`: whether an IPv6 socket on `::` also accepts IPv4
/// (`None`, unknown, counts as yes). See the module doc.
pub fn classify_in_namespace(
    address: IpAddr,
    interface: &str,
    dual_stack: Option<bool>,
    addresses: Option<&[IpAddr]>,
) -> Exposure {
    let bound = classify_bound(address, interface);
    if bound != Exposure::Any {
        return bound;
    }
    let Some(addresses) = addresses else {
        return Exposure::Any;
    };
    let (v4, v6) = match address {
        IpAddr::V4(_) => (true, false),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => (true, false),
        IpAddr::V6(_) => (dual_stack != Some(false), true),
    };
    addresses
        .iter()
        .filter(|a| match a {
            IpAddr::V4(_) => v4,
            IpAddr::V6(_) => v6,
        })
        .map(|&a| classify(a))
        .max()
        .unwrap_or(Exposure::Loopback)
}

fn classify_v4(address: Ipv4Addr) -> Exposure {
    let [a, b, c, _] = address.octets();
    if address.is_unspecified() {
        Exposure::Any
    } else if address.is_loopback() {
        Exposure::Loopback
    } else if address.is_link_local() || (a == 224 && b == 0 && c == 0) || address.is_broadcast() {
        Exposure::LinkLocal
    } else if address.is_private() || (a == 100 && (64..128).contains(&b)) {
        Exposure::Private
    } else {
        Exposure::Public
    }
}

fn classify_v6(address: Ipv6Addr) -> Exposure {
    let first = address.segments()[0];
    if address.is_unspecified() {
        Exposure::Any
    } else if address.is_loopback() || first & 0xff0f == 0xff01 {
        // ff01::/16 and the other interface-local multicast scopes never
        // leave the host.
        Exposure::Loopback
    } else if first & 0xffc0 == 0xfe80 || first & 0xff0f == 0xff02 {
        Exposure::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        Exposure::Private
    } else {
        Exposure::Public
    }
}

/// What sock_diag says about how a listener is bound, beyond its address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// `IPV6_V6ONLY` of an IPv6 listener; `None` for IPv4 sockets, or when
    /// the kernel sent no `INET_DIAG_SKV6ONLY` (before Linux 3.13).
    pub v6only: Option<bool>,
    /// Interface index the socket is bound to (`SO_BINDTODEVICE`), 0 for none.
    pub ifindex: u32,
}

impl Binding {
    /// Whether an IPv6 socket on `::` also accepts IPv4 (`IPV6_V6ONLY`
    /// off). Every other socket is single-stack: an IPv4 one, an IPv6 one
    /// with `IPV6_V6ONLY`, and one bound to a specific address (which fixes
    /// the family it accepts). `None` for a socket on `::` whose v6only
    /// setting the backend could not see (netstat2).
    pub fn dual_stack(&self, address: IpAddr) -> Option<bool> {
        match address {
            IpAddr::V6(v6) if v6.is_unspecified() => self.v6only.map(|only| !only),
            _ => Some(false),
        }
    }

    /// The `dual_stack` label: "true", "false" or "unknown".
    pub fn dual_stack_label(&self, address: IpAddr) -> &'static str {
        match self.dual_stack(address) {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> &'static str {
        classify(text.parse().unwrap()).as_str()
    }

    #[test]
    fn classifies_ipv4() {
        for (address, expected) in [
            ("0.0.0.0", "any"),
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("169.254.1.1", "link-local"),
            ("224.0.0.251", "link-local"),
            ("255.255.255.255", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("100.127.255.255", "private"),
            ("100.128.0.1", "public"),
            ("172.32.0.1", "public"),
            ("8.8.8.8", "public"),
            ("239.1.2.3", "public"),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn classifies_ipv6_and_mapped_ipv4_by_its_ipv4_part() {
        for (address, expected) in [
            ("::", "any"),
            ("::1", "loopback"),
            ("ff01::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("ff02::fb", "link-local"),
            ("fd00::1", "private"),
            ("fc12::1", "private"),
            ("fec0::1", "private"),
            ("2001:db8::1", "public"),
            ("ff0e::1", "public"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:0.0.0.0", "any"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:1.1.1.1", "public"),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn binding_to_lo_is_loopback_whatever_the_address() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(classify_bound(any, "lo"), Exposure::Loopback);
        assert_eq!(classify_bound(any, "eth0"), Exposure::Any);
        assert_eq!(classify_bound(any, ""), Exposure::Any);
    }

    #[test]
    fn a_wildcard_takes_the_widest_class_of_its_namespace() {
        let addresses: Vec<IpAddr> = ["127.0.0.1", "::1", "10.1.2.3", "fe80::1", "2001:db8::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let v4: IpAddr = "0.0.0.0".parse().unwrap();
        let v6: IpAddr = "::".parse().unwrap();
        let c = |address, dual, addresses: Option<&[IpAddr]>| {
            classify_in_namespace(address, "", dual, addresses).as_str()
        };
        assert_eq!(c(v4, Some(false), Some(&addresses)), "private");
        assert_eq!(c(v6, Some(false), Some(&addresses)), "public");
        assert_eq!(c(v6, Some(true), Some(&addresses[..4])), "private");
        assert_eq!(c(v6, Some(false), Some(&addresses[..4])), "link-local");
        // Only lo: nothing outside reaches it.
        assert_eq!(c(v4, Some(false), Some(&addresses[..2])), "loopback");
        assert_eq!(c(v4, Some(false), Some(&[])), "loopback");
        // Unreadable: any. A specific address keeps its own class.
        assert_eq!(c(v4, Some(false), None), "any");
        let specific: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(c(specific, Some(false), Some(&addresses[..2])), "private");
        assert_eq!(
            classify_in_namespace(v4, "lo", Some(false), Some(&addresses)).as_str(),
            "loopback"
        );
    }
}
