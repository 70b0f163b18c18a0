//! The NAT rules of one network namespace, read from the kernel's nf_tables
//! over netlink (NETLINK_NETFILTER): which destination ports are redirected
//! to a local port (`redirect`) or translated to another address (`dnat`).
//!
//! Why by hand, and not a crate: `nftnl` and `rustables` wrap libnftnl, a C
//! library that a plain `cargo build` on a fresh machine does not have (and
//! `rustables` is GPL); the pure-Rust ones either drive the `nft` command
//! (a process per scrape) or build rules rather than decode them, and none
//! decodes the xt-compat payloads iptables-nft writes, which is what
//! netavark, the CNI portmap plugin and kube-proxy's iptables mode produce.
//! What is needed is small: one `NFT_MSG_GETRULE` dump and a symbolic walk
//! over a few expression kinds (`decode.rs`, `xt.rs`), on the netlink
//! framing the sock_diag readers already use.
//!
//! Cost: the socket joins `NFNLGRP_NFTABLES` when it is opened, so a scrape
//! only asks "did any notification arrive?" (one non-blocking `recv`,
//! `crate::kernel::nlsock`); the rules are dumped again only after the
//! ruleset changed. The ruleset generation (`NFT_MSG_GETGEN`) is read before
//! and after each dump: a dump that raced a change is read again at the next
//! scrape. Reading nf_tables needs CAP_NET_ADMIN in the namespace.
//!
//! Legacy iptables (the x_tables `getsockopt` interface) is not read: see
//! the README's note on forwarded ports.

#[cfg(target_os = "linux")]
pub mod decode;
pub mod xt;

#[cfg(target_os = "linux")]
use crate::kernel::nlsock::{Watched, attribute, be32};
#[cfg(target_os = "linux")]
use crate::kernel::sock_diag::wire::WireError;
use crate::policy::registry::Transport;
use std::net::IpAddr;

/// `NFPROTO_*` families of the tables read.
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;

#[cfg(target_os = "linux")]
const NFNL_SUBSYS_NFTABLES: u16 = 10;
#[cfg(target_os = "linux")]
const NFT_MSG_NEWRULE: u16 = 6;
#[cfg(target_os = "linux")]
const NFT_MSG_GETRULE: u16 = 7;
#[cfg(target_os = "linux")]
const NFT_MSG_GETGEN: u16 = 16;
#[cfg(target_os = "linux")]
const NFTA_GEN_ID: u16 = 1;
#[cfg(target_os = "linux")]
const NFNLGRP_NFTABLES: u32 = 7;

/// How a port is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    /// To a port of the same host (namespace): `REDIRECT`, `redirect`.
    Redirect,
    /// To another address: `DNAT`, `dnat`.
    Dnat,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Redirect => "redirect",
            Mechanism::Dnat => "dnat",
        }
    }
}

/// One rule that forwards destination ports `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatRule {
    /// `NFPROTO_*` of the table: 1 inet, 2 ip, 10 ip6.
    pub family: u8,
    pub table: String,
    pub chain: String,
    /// `None` when the rule names no transport protocol.
    pub transport: Option<Transport>,
    pub first: u16,
    pub last: u16,
    pub mechanism: Mechanism,
    /// DNAT's address; `None` for a redirect (the namespace itself).
    pub to_address: Option<IpAddr>,
    /// The ports packets are sent to; `None` keeps the original port.
    pub to_ports: Option<(u16, u16)>,
}

impl NatRule {
    /// Whether the rule forwards `port` of `transport`.
    pub fn covers(&self, transport: Transport, port: u16) -> bool {
        (self.first..=self.last).contains(&port) && self.transport.is_none_or(|t| t == transport)
    }

    /// Where `port` ends up: a single target port maps every port onto it;
    /// a range of the same width maps one to one; otherwise the kernel
    /// picks within the range ("FIRST-LAST").
    pub fn destination_port(&self, port: u16) -> String {
        match self.to_ports {
            None => port.to_string(),
            Some((first, last)) if first == last => first.to_string(),
            Some((first, last)) if last - first == self.last - self.first => {
                (first + (port - self.first)).to_string()
            }
            Some((first, last)) => format!("{first}-{last}"),
        }
    }
}

/// Why the NAT rules could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unread {
    /// The exporter lacks CAP_NET_ADMIN in the namespace: a deployment
    /// choice, said once rather than counted as a fault at every scrape.
    NoPrivilege(String),
    /// Anything else.
    Failed(String),
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unread::NoPrivilege(text) | Unread::Failed(text) => f.write_str(text),
        }
    }
}

/// What reading nf_tables without CAP_NET_ADMIN says.
#[cfg(target_os = "linux")]
const NO_PRIVILEGE: &str =
    "reading nf_tables (NAT rules) needs CAP_NET_ADMIN: forwarded ports are not reported";

/// The notification group that says the ruleset changed.
#[cfg(target_os = "linux")]
pub const CHANGE_GROUPS: u32 = 1 << (NFNLGRP_NFTABLES - 1);

/// The NAT rules of the namespace the socket was opened in, re-read only
/// when the ruleset changes.
#[cfg(target_os = "linux")]
pub struct NatWatch {
    socket: Watched,
    rules: Vec<NatRule>,
    /// The ruleset generation of the last complete dump.
    generation: Option<u32>,
}

#[cfg(target_os = "linux")]
impl NatWatch {
    /// Opens the socket in the calling thread's namespace and joins the
    /// nf_tables notifications (needs CAP_NET_ADMIN there).
    pub fn open() -> Result<NatWatch, Unread> {
        Self::open_joining(CHANGE_GROUPS)
    }

    /// Reads the rules once, in the calling thread's namespace, through a
    /// socket that joins no group and is closed at once (another
    /// namespace's changes are heard by a `crate::kernel::nlsock::ChangeFeed`).
    pub fn read_once() -> Result<Vec<NatRule>, Unread> {
        Self::open_joining(0)?.rules().map(<[_]>::to_vec)
    }

    fn open_joining(groups: u32) -> Result<NatWatch, Unread> {
        let socket =
            Watched::open(netlink_sys::protocols::NETLINK_NETFILTER, groups).map_err(|err| {
                match err.raw_os_error() {
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        Unread::NoPrivilege(NO_PRIVILEGE.to_string())
                    }
                    _ => Unread::Failed(format!("cannot open a NETLINK_NETFILTER socket: {err}")),
                }
            })?;
        Ok(NatWatch {
            socket,
            rules: Vec::new(),
            generation: None,
        })
    }

    /// The forwarding rules now: the last ones read, unless the ruleset
    /// changed since, in which case they are dumped again.
    pub fn rules(&mut self) -> Result<&[NatRule], Unread> {
        if self.socket.changed()
            && let Err(err) = self.dump()
        {
            self.socket.invalidate();
            return Err(match err {
                WireError::Refused(code) if code == libc::EPERM => {
                    Unread::NoPrivilege(NO_PRIVILEGE.to_string())
                }
                other => Unread::Failed(format!("cannot read nf_tables: {other}")),
            });
        }
        Ok(&self.rules)
    }

    /// The ruleset generation of the rules held.
    pub fn generation(&self) -> Option<u32> {
        self.generation
    }

    fn dump(&mut self) -> Result<(), WireError> {
        let before = self.read_generation()?;
        let mut rules = Vec::new();
        let body = [0u8, 0, 0, 0]; // nfgenmsg: every family, version 0
        self.socket.request(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            true,
            &body,
            |message| {
                if message.kind & 0xff == NFT_MSG_NEWRULE
                    && let Some(rule) = decode::rule(message.payload)
                {
                    rules.push(rule);
                }
                Ok(())
            },
        )?;
        let after = self.read_generation()?;
        if before != after {
            self.socket.invalidate(); // raced a change: read again next time
        }
        self.rules = rules;
        self.generation = Some(after);
        Ok(())
    }

    fn read_generation(&mut self) -> Result<u32, WireError> {
        let mut generation = None;
        self.socket.request(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
            false,
            &[0u8, 0, 0, 0],
            |message| {
                generation = message
                    .payload
                    .get(4..)
                    .and_then(|attrs| attribute(attrs, NFTA_GEN_ID))
                    .and_then(be32);
                Ok(())
            },
        )?;
        generation.ok_or_else(|| WireError::Broken("no nf_tables generation id".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(first: u16, last: u16, to_ports: Option<(u16, u16)>) -> NatRule {
        NatRule {
            family: 2,
            table: "nat".into(),
            chain: "PREROUTING".into(),
            transport: Some(Transport::Tcp),
            first,
            last,
            mechanism: Mechanism::Redirect,
            to_address: None,
            to_ports,
        }
    }

    #[test]
    fn destination_ports_map_like_the_kernel() {
        assert_eq!(redirect(276, 276, None).destination_port(276), "276");
        assert_eq!(
            redirect(272, 279, Some((31337, 31337))).destination_port(276),
            "31337"
        );
        assert_eq!(
            redirect(272, 279, Some((8072, 8079))).destination_port(276),
            "8076"
        );
        assert_eq!(
            redirect(272, 279, Some((9000, 9001))).destination_port(276),
            "9000-9001"
        );
        assert!(redirect(272, 279, None).covers(Transport::Tcp, 276));
        assert!(!redirect(272, 279, None).covers(Transport::Udp, 276));
        assert!(!redirect(272, 279, None).covers(Transport::Tcp, 280));
    }

    /// Deletes the namespace when the test ends, passed or not.
    #[cfg(target_os = "linux")]
    struct Netns(String);

    #[cfg(target_os = "linux")]
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }

    #[cfg(target_os = "linux")]
    fn run(program: &str, args: &[&str]) -> bool {
        std::process::Command::new(program)
            .args(args)
            .status()
            .is_ok_and(|status| status.success())
    }

    /// What iptables-nft writes (xt targets, native or xt port matches)
    /// and a native nft rule, decoded from a namespace made for the test.
    #[cfg(target_os = "linux")]
    #[test]
    fn decodes_what_iptables_nft_writes() {
        let name = format!("upe-nft-{}", std::process::id());
        if !run("ip", &["netns", "add", &name]) {
            eprintln!("skipped: cannot make a network namespace (not root?)");
            return;
        }
        let netns = Netns(name);
        let exec = |args: &[&str]| {
            let mut full = vec!["netns", "exec", netns.0.as_str()];
            full.extend_from_slice(args);
            run("ip", &full)
        };
        if !exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "tcp",
            "--dport",
            "276",
            "-j",
            "REDIRECT",
            "--to-ports",
            "31337",
        ]) {
            eprintln!("skipped: iptables is not installed");
            return;
        }
        assert!(exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-p",
            "udp",
            "-m",
            "udp",
            "--dport",
            "272:279",
            "-j",
            "DNAT",
            "--to-destination",
            "10.88.0.10:8080"
        ]));
        assert!(exec(&[
            "ip6tables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            "277",
            "-j",
            "DNAT",
            "--to-destination",
            "[fd00::5]"
        ]));
        let path = std::path::PathBuf::from(format!("/run/netns/{}", netns.0));
        let rules = crate::kernel::netns::enter::run_in(&path, || {
            NatWatch::open().and_then(|mut watch| watch.rules().map(<[NatRule]>::to_vec))
        })
        .unwrap()
        .unwrap();
        let brief: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    "{:?} {}-{} {} {:?} {:?}",
                    r.transport,
                    r.first,
                    r.last,
                    r.mechanism.as_str(),
                    r.to_address,
                    r.to_ports
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                "Some(Tcp) 276-276 redirect None Some((31337, 31337))",
                "Some(Udp) 272-279 dnat Some(10.88.0.10) Some((8080, 8080))",
                "Some(Tcp) 277-277 dnat Some(fd00::5) None",
            ],
            "{rules:?}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_the_live_ruleset_when_allowed() {
        match NatWatch::open() {
            Ok(mut watch) => {
                watch.rules().unwrap();
                assert!(watch.generation().is_some());
            }
            Err(err) => eprintln!("skipped: {err}"),
        }
    }
}
