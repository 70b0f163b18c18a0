//! The watch set: which (port, transport) pairs the exporter reports, and
//! which listeners on them the operator expects.
//!
//! By default every port in 0-1023 that IANA lists as Unassigned, plus the
//! pairs IANA has no row for at all (716/tcp, 1008/tcp): a port nobody
//! registered is as unexplained as one marked unassigned, so it is watched and
//! labelled `iana="unregistered"`. Reserved ports (0, 1023) are not watched
//! unless added. `--watch.scope=registered` extends the same rule to
//! 1024-49151; `--watch.ports` adds any port; `--watch.allow` and
//! `--watch.allow-file` mark expected listeners and packet/raw sockets
//! (grammar in `policy/allow`), which are still exported with `expected="true"`.
//! The file's rules can be replaced while the exporter runs (see
//! `policy/allow/reload.rs`); the flags' rules are fixed.

pub use crate::policy::allow::AllowRule;
use crate::policy::allow::{OwnerFacts, Subject};
use crate::policy::ports::PortRange;
use crate::policy::registry::{Registry, Status, Transport};
use std::sync::{Arc, RwLock};

/// How far the IANA-derived part of the watch set reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// 0-1023: ports IANA hands out only through IETF review.
    WellKnown,
    /// 0-49151: well-known plus IANA's registered range.
    Registered,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "well-known" => Ok(Scope::WellKnown),
            "registered" => Ok(Scope::Registered),
            other => Err(format!(
                "unknown scope {other:?}: use \"well-known\" or \"registered\""
            )),
        }
    }

    fn last_port(self) -> u16 {
        match self {
            Scope::WellKnown => 1023,
            Scope::Registered => 49151,
        }
    }
}

/// A set of ports as a 65,536-bit map: membership is one load and a mask.
#[derive(Clone)]
struct PortBits(Box<[u64; 1024]>);

impl PortBits {
    fn new() -> PortBits {
        PortBits(Box::new([0; 1024]))
    }
    fn insert(&mut self, port: u16) {
        self.0[port as usize / 64] |= 1 << (port % 64);
    }
    fn contains(&self, port: u16) -> bool {
        self.0[port as usize / 64] & (1 << (port % 64)) != 0
    }
    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The rules of every `--watch.allow-file`, by the file's position.
#[derive(Default)]
struct FileRules {
    each: Vec<Arc<Vec<AllowRule>>>,
    all: Arc<Vec<AllowRule>>,
}

/// Everything the collector needs to decide what to report and how to label it.
pub struct WatchSet {
    registry: Registry,
    tcp: PortBits,
    udp: PortBits,
    sctp: PortBits,
    /// `--watch.allow` rules.
    allow: Vec<AllowRule>,
    /// `--watch.allow-file` rules: each file's own (swapped whole when that
    /// file reloads), and all of them together (what scrapes read).
    allow_files: RwLock<FileRules>,
}

impl WatchSet {
    pub fn new(
        registry: Registry,
        scope: Scope,
        extra: &[PortRange],
        allow: Vec<AllowRule>,
    ) -> WatchSet {
        let mut tcp = PortBits::new();
        let mut udp = PortBits::new();
        let mut sctp = PortBits::new();
        for port in 0..=scope.last_port() {
            for (transport, bits) in [
                (Transport::Tcp, &mut tcp),
                (Transport::Udp, &mut udp),
                (Transport::Sctp, &mut sctp),
            ] {
                if matches!(
                    registry.status(transport, port),
                    Status::Unassigned | Status::Unregistered
                ) {
                    bits.insert(port);
                }
            }
        }
        for range in extra {
            for port in range.first..=range.last {
                if range.transport.is_none_or(|t| t == Transport::Tcp) {
                    tcp.insert(port);
                }
                if range.transport.is_none_or(|t| t == Transport::Udp) {
                    udp.insert(port);
                }
                if range.transport.is_none_or(|t| t == Transport::Sctp) {
                    sctp.insert(port);
                }
            }
        }
        WatchSet {
            registry,
            tcp,
            udp,
            sctp,
            allow,
            allow_files: RwLock::new(FileRules::default()),
        }
    }

    fn bits(&self, transport: Transport) -> Option<&PortBits> {
        match transport {
            Transport::Tcp => Some(&self.tcp),
            Transport::Udp | Transport::UdpLite => Some(&self.udp),
            Transport::Sctp => Some(&self.sctp),
        }
    }

    pub fn is_watched(&self, transport: Transport, port: u16) -> bool {
        self.bits(transport).is_some_and(|bits| bits.contains(port))
    }

    /// The highest watched port of any transport: kernel event filters pass
    /// ports up to it.
    pub fn max_watched_port(&self) -> u16 {
        (0..=u16::MAX)
            .rev()
            .find(|&port| {
                [&self.tcp, &self.udp, &self.sctp]
                    .iter()
                    .any(|b| b.contains(port))
            })
            .unwrap_or(0)
    }

    /// Number of watched ports for a transport (the `watched_ports` gauge).
    pub fn count(&self, transport: Transport) -> usize {
        self.bits(transport).map_or(0, PortBits::len)
    }

    pub fn iana_status(&self, transport: Transport, port: u16) -> Status {
        self.registry.status(transport, port)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Tests' shorthand: an allow rule covers this listener, knowing only
    /// its owner's process name (rules with other selectors do not match).
    #[cfg(test)]
    pub(crate) fn is_expected(&self, transport: Transport, port: u16, process: &str) -> bool {
        let owner = OwnerFacts {
            comm: process,
            ..OwnerFacts::default()
        };
        self.is_expected_subject(Subject::Listener(transport, port), &owner)
    }

    /// True when an allow rule (from the flags or the file) covers this
    /// listener or packet/raw socket owned by `owner`.
    pub fn is_expected_subject(&self, subject: Subject, owner: &OwnerFacts<'_>) -> bool {
        self.allow.iter().any(|rule| rule.matches(subject, owner))
            || self
                .file_rules()
                .iter()
                .any(|rule| rule.matches(subject, owner))
    }

    /// Replaces the rules of the `file`-th `--watch.allow-file` (0 for the
    /// first), at start and when that file reloads; the other files' rules
    /// stay.
    pub fn set_file_rules(&self, file: usize, rules: Vec<AllowRule>) {
        let mut files = self.allow_files.write().unwrap_or_else(|p| p.into_inner());
        if files.each.len() <= file {
            files.each.resize_with(file + 1, Arc::default);
        }
        files.each[file] = Arc::new(rules);
        files.all = Arc::new(files.each.iter().flat_map(|r| r.iter().cloned()).collect());
    }

    /// The rules of every `--watch.allow-file` in force, in file order.
    pub fn file_rules(&self) -> Arc<Vec<AllowRule>> {
        self.allow_files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .clone()
    }

    /// The `--watch.allow` rules.
    pub fn flag_rules(&self) -> &[AllowRule] {
        &self.allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_holds_the_unassigned_well_known_ports() {
        let watch = WatchSet::new(Registry::embedded(), Scope::WellKnown, &[], vec![]);
        assert_eq!(
            watch.count(Transport::Tcp),
            284,
            "282 unassigned (114 among them) + 716, 1008"
        );
        assert_eq!(watch.count(Transport::Udp), 282);
        // IANA registers few SCTP ports: most well-known ones have no row.
        assert!(watch.count(Transport::Sctp) > 900);
        for port in 272..=279 {
            assert!(watch.is_watched(Transport::Tcp, port));
            assert!(watch.is_watched(Transport::Udp, port));
        }
        assert!(watch.is_watched(Transport::Tcp, 716));
        assert!(
            watch.is_watched(Transport::Tcp, 114),
            "lower-case unassigned"
        );
        assert!(!watch.is_watched(Transport::Tcp, 22));
        assert!(
            !watch.is_watched(Transport::Tcp, 0),
            "reserved is not watched"
        );
        assert!(!watch.is_watched(Transport::Tcp, 1024 + 3));
    }

    #[test]
    fn registered_scope_and_extra_ports_extend_the_set() {
        let extra = crate::policy::ports::parse_port_list("22,8000-8001/udp").unwrap();
        let watch = WatchSet::new(Registry::embedded(), Scope::Registered, &extra, vec![]);
        assert!(watch.is_watched(Transport::Tcp, 22));
        assert!(watch.is_watched(Transport::Udp, 8001));
        assert!(watch.count(Transport::Tcp) > 40_000);
    }

    #[test]
    fn flag_and_file_rules_both_count_and_the_file_rules_can_be_swapped() {
        let flags = vec![AllowRule::parse("276/tcp:sshd").unwrap()];
        let watch = WatchSet::new(Registry::embedded(), Scope::WellKnown, &[], flags);
        assert!(watch.is_expected(Transport::Tcp, 276, "sshd"));
        assert!(!watch.is_expected(Transport::Tcp, 277, "nc"));
        let owner = OwnerFacts {
            comm: "dhclient",
            exe: Some(b"/usr/sbin/dhclient"),
            ..OwnerFacts::default()
        };
        assert!(!watch.is_expected_subject(Subject::Packet, &owner));
        watch.set_file_rules(
            0,
            vec![
                AllowRule::parse("277:nc").unwrap(),
                AllowRule::parse("packet:exe=/usr/sbin/dhclient").unwrap(),
            ],
        );
        assert!(watch.is_expected(Transport::Tcp, 277, "nc"));
        assert!(watch.is_expected_subject(Subject::Packet, &owner));
        watch.set_file_rules(0, Vec::new());
        assert!(!watch.is_expected(Transport::Tcp, 277, "nc"));
        assert!(
            watch.is_expected(Transport::Tcp, 276, "sshd"),
            "flag rules stay"
        );
        // Only the name is known here: an exe rule cannot match.
        watch.set_file_rules(0, vec![AllowRule::parse("278:exe=/usr/bin/nc").unwrap()]);
        assert!(!watch.is_expected(Transport::Tcp, 278, "nc"));
    }
}
