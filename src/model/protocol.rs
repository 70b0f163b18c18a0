//! The `protocol` label, decided once for every path that names a socket's
//! transport: sock_diag dumps, the listen tracepoint and destroy broadcasts.
//! MPTCP is judged against TCP's watch set and allow rules, UDP-Lite
//! against UDP's (IANA registers neither), SCTP against its own.

use crate::policy::registry::Transport;

/// What the `protocol` label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    /// UDP-Lite (RFC 3828), on UDP's port numbers.
    UdpLite,
    /// Multipath TCP, on TCP's port numbers.
    Mptcp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::UdpLite => "udplite",
            Protocol::Mptcp => "mptcp",
        }
    }

    /// The transport whose watch set and allow rules apply.
    pub fn judged_as(self) -> Transport {
        match self {
            Protocol::Tcp | Protocol::Mptcp => Transport::Tcp,
            Protocol::Udp | Protocol::UdpLite => Transport::Udp,
            Protocol::Sctp => Transport::Sctp,
        }
    }

    /// The transport IANA's registry is read for (UDP-Lite keeps its own
    /// name there; the registry maps it to UDP's entries).
    pub fn registry_transport(self) -> Transport {
        match self {
            Protocol::UdpLite => Transport::UdpLite,
            other => other.judged_as(),
        }
    }

    /// The protocol of a socket found by a dump of `transport`.
    pub fn of_transport(transport: Transport) -> Protocol {
        match transport {
            Transport::Tcp => Protocol::Tcp,
            Transport::Udp => Protocol::Udp,
            Transport::Sctp => Protocol::Sctp,
            Transport::UdpLite => Protocol::UdpLite,
        }
    }

    /// From an IP protocol number (tracepoint and destroy messages); `None`
    /// for a protocol this exporter does not watch.
    pub fn of_ip_protocol(number: u16) -> Option<Protocol> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            136 => Some(Protocol::UdpLite),
            262 => Some(Protocol::Mptcp),
            _ => None,
        }
    }
}

impl crate::model::labels::LabelValue for Protocol {
    fn label(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(self.as_str())
    }
    fn label_ref(&self) -> crate::model::labels::LabelRef<'_> {
        crate::model::labels::LabelRef::Text(self.as_str())
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_is_judged_against_its_own_transport() {
        assert_eq!(Protocol::Sctp.judged_as(), Transport::Sctp);
        assert_eq!(Protocol::Mptcp.judged_as(), Transport::Tcp);
        assert_eq!(Protocol::UdpLite.judged_as(), Transport::Udp);
        assert_eq!(Protocol::of_ip_protocol(132), Some(Protocol::Sctp));
        assert_eq!(Protocol::of_ip_protocol(262), Some(Protocol::Mptcp));
        assert_eq!(Protocol::of_ip_protocol(1), None);
        for transport in [
            Transport::Tcp,
            Transport::Udp,
            Transport::Sctp,
            Transport::UdpLite,
        ] {
            assert_eq!(
                Protocol::of_transport(transport).as_str(),
                transport.as_str()
            );
        }
    }
}
