//! Which sockets are reported and which are expected: the watch-set lookup
//! per protocol and the allow-rule decision, made here for the collector,
//! the event path and the sampler alike.

use super::Protocol;
use crate::policy::allow::{OwnerFacts, Subject};
use crate::policy::watch::WatchSet;
use std::sync::Arc;

/// Looks up the watch set and allow rules for a protocol and port.
#[derive(Clone)]
pub struct Judge {
    watch: Arc<WatchSet>,
}

/// What kind of socket an `expected` decision is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    /// A listener (or bound UDP socket) on a port.
    Listener(Protocol, u16),
    /// An AF_PACKET socket.
    Packet,
    /// A raw IP socket.
    Raw,
    /// A forwarded port (`forward:` allow rules).
    Forward(Protocol, u16),
}

impl Judge {
    pub fn new(watch: Arc<WatchSet>) -> Judge {
        Judge { watch }
    }

    pub fn watch(&self) -> &WatchSet {
        &self.watch
    }

    /// Whether sockets of `protocol` on `port` are reported.
    pub fn is_watched(&self, protocol: Protocol, port: u16) -> bool {
        self.watch.is_watched(protocol.judged_as(), port)
    }

    /// The `iana` label of `port` for `protocol`.
    pub fn iana(&self, protocol: Protocol, port: u16) -> &'static str {
        self.watch
            .iana_status(protocol.registry_transport(), port)
            .as_str()
    }

    /// The `expected` label: an allow rule covers this socket and owner.
    pub fn is_expected(&self, judged: Judged, owner: &OwnerFacts<'_>) -> bool {
        let subject = match judged {
            Judged::Listener(protocol, port) => Subject::Listener(protocol.judged_as(), port),
            Judged::Packet => Subject::Packet,
            Judged::Raw => Subject::Raw,
            Judged::Forward(protocol, port) => Subject::Forward(protocol.judged_as(), port),
        };
        self.watch.is_expected_subject(subject, owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allow::AllowRule;
    use crate::policy::registry::Registry;
    use crate::policy::watch::Scope;

    fn judge(allow: &[&str]) -> Judge {
        let rules = allow.iter().map(|r| AllowRule::parse(r).unwrap()).collect();
        let watch = WatchSet::new(Registry::embedded(), Scope::WellKnown, &[], rules);
        Judge::new(Arc::new(watch))
    }

    #[test]
    fn sctp_is_judged_against_sctp_and_mptcp_against_tcp() {
        let judge = judge(&["276/tcp:comm=tcpd", "276/sctp:comm=sctpd"]);
        let facts = |comm| OwnerFacts {
            comm,
            ..OwnerFacts::default()
        };
        let sctp = Judged::Listener(Protocol::Sctp, 276);
        let mptcp = Judged::Listener(Protocol::Mptcp, 276);
        assert!(judge.is_expected(sctp, &facts("sctpd")));
        assert!(!judge.is_expected(sctp, &facts("tcpd")));
        assert!(judge.is_expected(mptcp, &facts("tcpd")));
        assert!(!judge.is_expected(mptcp, &facts("sctpd")));
        assert!(judge.is_watched(Protocol::UdpLite, 276));
        assert_eq!(judge.iana(Protocol::Mptcp, 276), "unassigned");
    }
}
