//! What IANA says about each (port, transport) pair.
//!
//! The registry is kept as sorted runs of consecutive ports that share a
//! status and a service name, one list per transport. The build embeds a
//! generated table (`iana_table.rs`, made by `gen-iana-table` from IANA's CSV)
//! so a fresh clone builds without the CSV; `--iana.registry-file` swaps in a
//! newer CSV at start through [`csv_loader`].

pub mod csv_loader;
pub mod generate;
mod iana_table;

use std::borrow::Cow;
use std::fmt;

/// A transport protocol that IANA registers ports for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
    Sctp,
    Dccp,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Tcp,
        Transport::Udp,
        Transport::Sctp,
        Transport::Dccp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Sctp => "sctp",
            Transport::Dccp => "dccp",
        }
    }

    pub fn parse(text: &str) -> Option<Transport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IANA's verdict on one (port, transport) pair; the `iana` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// A row says "Unassigned".
    Unassigned,
    /// A row says "Reserved".
    Reserved,
    /// Any other row: a service holds the port.
    Assigned,
    /// No row names this pair at all (716/tcp, most sctp ports).
    Unregistered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unassigned => "unassigned",
            Status::Reserved => "reserved",
            Status::Assigned => "assigned",
            Status::Unregistered => "unregistered",
        }
    }

    /// When rows disagree about a pair (7775/tcp is both assigned and
    /// unassigned), the strongest claim wins: assigned, then reserved.
    fn precedence(self) -> u8 {
        match self {
            Status::Unregistered => 0,
            Status::Unassigned => 1,
            Status::Reserved => 2,
            Status::Assigned => 3,
        }
    }
}

/// Consecutive ports of one transport with the same status and service name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub first: u16,
    pub last: u16,
    pub status: Status,
    /// IANA's service name for assigned ports, empty otherwise.
    pub service: Cow<'static, str>,
}

/// The whole registry: runs per transport, plus where it came from.
#[derive(Clone, Debug)]
pub struct Registry {
    runs: [Vec<Run>; 4],
    /// `embedded` or the path of the CSV given at start.
    pub source: String,
    /// Newest registration or modification date in the data (YYYY-MM-DD).
    pub updated: String,
}

impl Registry {
    /// The table compiled into the binary.
    pub fn embedded() -> Registry {
        let convert = |rows: &'static [(u16, u16, Status, &'static str)]| {
            rows.iter()
                .map(|&(first, last, status, service)| Run {
                    first,
                    last,
                    status,
                    service: Cow::Borrowed(service),
                })
                .collect()
        };
        Registry {
            runs: [
                convert(iana_table::TCP),
                convert(iana_table::UDP),
                convert(iana_table::SCTP),
                convert(iana_table::DCCP),
            ],
            source: "embedded".to_string(),
            updated: iana_table::UPDATED.to_string(),
        }
    }

    pub(crate) fn from_runs(runs: [Vec<Run>; 4], source: String, updated: String) -> Registry {
        Registry {
            runs,
            source,
            updated,
        }
    }

    pub fn runs(&self, transport: Transport) -> &[Run] {
        &self.runs[transport.index()]
    }

    fn run_for(&self, transport: Transport, port: u16) -> Option<&Run> {
        let runs = self.runs(transport);
        let after = runs.partition_point(|run| run.first <= port);
        let run = runs.get(after.checked_sub(1)?)?;
        (port <= run.last).then_some(run)
    }

    pub fn status(&self, transport: Transport, port: u16) -> Status {
        self.run_for(transport, port)
            .map_or(Status::Unregistered, |run| run.status)
    }

    /// IANA's service name for an assigned pair, if any.
    pub fn service(&self, transport: Transport, port: u16) -> Option<&str> {
        self.run_for(transport, port)
            .map(|run| run.service.as_ref())
            .filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_knows_the_anchor_ports() {
        let registry = Registry::embedded();
        assert_eq!(registry.status(Transport::Tcp, 276), Status::Unassigned);
        assert_eq!(registry.status(Transport::Udp, 276), Status::Unassigned);
        assert_eq!(registry.status(Transport::Tcp, 22), Status::Assigned);
        assert_eq!(registry.service(Transport::Tcp, 22), Some("ssh"));
        assert_eq!(registry.status(Transport::Tcp, 0), Status::Reserved);
        assert_eq!(registry.status(Transport::Tcp, 716), Status::Unregistered);
        assert_eq!(registry.status(Transport::Tcp, 7775), Status::Assigned);
        assert_eq!(registry.updated, "2026-02-25");
    }
}
