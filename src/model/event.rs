//! The label sets of what happens between scrapes: listener opened and
//! closed (kernel events) and listener sighted (the sampler). Built from the
//! same owner facts, judge and namespace namer as snapshot series.

use super::judge::Judged;
use super::{Judge, ListenerSeries, NetnsNamer, Protocol};
use crate::owners::Owner;

crate::label_set! {
    /// A listener named by the process that opened it: the labels of one
    /// `listener_opened_total` series, and of one sampler series
    /// (`listener_sightings_total`, `listener_last_seen_timestamp_seconds`).
    #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct ListenerByProcess {
        labels {
            port: u16,
            protocol: Protocol,
            process: String,
            netns: String,
            expected: bool,
        }
        values {}
    }
}

/// Labels of one `listener_opened_total` series.
pub type OpenedLabels = ListenerByProcess;
/// Labels of one sampler series.
pub type SightingLabels = ListenerByProcess;

crate::label_set! {
    /// Labels of one `listener_closed_total` series.
    #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct ClosedLabels {
        labels {
            port: u16,
            protocol: Protocol,
            user: String,
            netns: String,
            expected: bool,
        }
        values {}
    }
}

/// What an event knows about the socket it concerns.
#[derive(Clone, Copy, Debug)]
pub struct EventSocket {
    pub protocol: Protocol,
    pub port: u16,
    /// Namespace inode; `None` is the exporter's own.
    pub netns: Option<u64>,
}

impl EventSocket {
    fn expected(&self, owner: &Owner, judge: &Judge) -> bool {
        judge.is_expected(Judged::Listener(self.protocol, self.port), &owner.facts())
    }
}

impl ListenerByProcess {
    /// The labels of a listen event.
    pub fn opened(socket: EventSocket, owner: &Owner, judge: &Judge, namer: &NetnsNamer) -> Self {
        ListenerByProcess {
            port: socket.port,
            protocol: socket.protocol,
            process: owner.process.clone(),
            netns: namer.label(socket.netns),
            expected: socket.expected(owner, judge),
        }
    }
}

impl ClosedLabels {
    pub fn new(socket: EventSocket, owner: &Owner, judge: &Judge, namer: &NetnsNamer) -> Self {
        ClosedLabels {
            port: socket.port,
            protocol: socket.protocol,
            user: owner.user.clone(),
            netns: namer.label(socket.netns),
            expected: socket.expected(owner, judge),
        }
    }
}

impl ListenerByProcess {
    /// A sampled listener, labelled as the snapshot labelled it.
    pub fn of(series: &ListenerSeries) -> ListenerByProcess {
        ListenerByProcess {
            port: series.port,
            protocol: series.protocol,
            process: series.process.clone(),
            netns: series.netns.clone(),
            expected: series.expected,
        }
    }
}
