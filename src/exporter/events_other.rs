//! No kernel events outside Linux: the exporter works from snapshots (and
//! the sampler) alone. Same functions as `events_linux.rs`.

use crate::kernel::procfs::ProcRoot;
use crate::model::{Judge, NetnsNamer};
use crate::sockets::EventLinks;

/// Nothing runs.
pub struct EventSide;

impl EventSide {
    pub fn start(_judge: &Judge, _namer: NetnsNamer, _proc_root: &ProcRoot) -> EventSide {
        EventSide
    }

    pub fn links(&self) -> EventLinks {
        EventLinks::default()
    }

    pub fn register(&self, _registry: &prometheus::Registry) -> prometheus::Result<()> {
        Ok(())
    }
}
