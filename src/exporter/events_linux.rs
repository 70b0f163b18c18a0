//! The kernel event side on Linux: the listen tracepoint and the destroy
//! groups (`crate::events`), started before the socket source so that the
//! source is opened with the event side's links; and the event trail
//! (`crate::events::trail`), which both the events and the collector write.

use crate::collect::collector::ListenerCollector;
use crate::events::live::LiveEvents;
use crate::events::trail::Trail;
use crate::kernel::procfs::ProcRoot;
use crate::model::{Judge, NetnsNamer};
use crate::owners::ExeHashes;
use crate::sockets::EventLinks;

/// The running event sources and trail; dropping it stops them.
pub struct EventSide {
    live: LiveEvents,
    trail: Option<Trail>,
}

impl EventSide {
    /// Starts the sources; `trail` is `--log.events-per-second` when the
    /// trail is on.
    pub fn start(
        judge: &Judge,
        namer: NetnsNamer,
        proc_root: &ProcRoot,
        hashes: &ExeHashes,
        trail: Option<u32>,
    ) -> EventSide {
        let trail =
            trail.map(|per_second| Trail::start(per_second, proc_root.clone(), hashes.clone()));
        let live = LiveEvents::start(
            judge.clone(),
            namer,
            proc_root,
            hashes.clone(),
            trail.clone(),
        );
        EventSide { live, trail }
    }

    /// What the socket source is opened with.
    pub fn links(&self) -> EventLinks {
        self.live.links()
    }

    /// Registers the event counters.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.live.counters.clone()))
    }

    /// The collector, writing first-seen packet/raw sockets to the trail.
    pub fn attach(&self, collector: ListenerCollector) -> ListenerCollector {
        collector.with_trail(self.trail.clone())
    }
}
