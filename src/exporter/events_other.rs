//! No kernel events outside Linux: the exporter works from snapshots (and
//! the sampler) alone. Same functions as `events_linux.rs`.

use crate::collect::collector::ListenerCollector;
use crate::kernel::procfs::ProcRoot;
use crate::model::{Judge, NetnsNamer};
use crate::owners::ExeHashes;
use crate::sockets::EventLinks;

/// Nothing runs.
pub struct EventSide;

impl EventSide {
    /// No trail either: its events come from the Linux kernel.
    pub fn start(
        _judge: &Judge,
        _namer: NetnsNamer,
        _proc_root: &ProcRoot,
        _hashes: &ExeHashes,
        _trail: Option<u32>,
    ) -> EventSide {
        EventSide
    }

    pub fn links(&self) -> EventLinks {
        EventLinks::default()
    }

    pub fn register(&self, _registry: &prometheus::Registry) -> prometheus::Result<()> {
        Ok(())
    }

    pub fn attach(&self, collector: ListenerCollector) -> ListenerCollector {
        collector
    }
}
