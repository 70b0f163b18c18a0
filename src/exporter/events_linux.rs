//! The kernel event side on Linux: the listen tracepoint and the destroy
//! groups (`crate::events`), started before the socket source so that the
//! source is opened with the event side's links.

use crate::events::live::LiveEvents;
use crate::kernel::procfs::ProcRoot;
use crate::model::{Judge, NetnsNamer};
use crate::sockets::EventLinks;

/// The running event sources; dropping it stops them.
pub struct EventSide(LiveEvents);

impl EventSide {
    pub fn start(judge: &Judge, namer: NetnsNamer, proc_root: &ProcRoot) -> EventSide {
        EventSide(LiveEvents::start(judge.clone(), namer, proc_root))
    }

    /// What the socket source is opened with.
    pub fn links(&self) -> EventLinks {
        self.0.links()
    }

    /// Registers the event counters.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.0.counters.clone()))
    }
}
