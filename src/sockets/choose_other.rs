//! The backends other systems have: netstat2 only. Same functions as
//! `choose_linux.rs`.

use super::{Backend, EventLinks, SocketSource, netstat2};
use crate::kernel::procfs::ProcRoot;

/// The netstat2 backend, before the namespace decision.
pub struct Chosen(netstat2::Netstat2Source);

impl Chosen {
    pub fn reads_namespaces(&self) -> bool {
        false
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn into_dyn(self) -> Box<dyn SocketSource> {
        Box::new(self.0)
    }

    pub fn read_all_namespaces(self, _proc_root: &ProcRoot) -> Box<dyn SocketSource> {
        self.into_dyn()
    }
}

/// Opens `backend`: netlink exists only on Linux.
pub fn open_backend(
    backend: Backend,
    _proc_root: &ProcRoot,
    _links: &EventLinks,
) -> Result<(Chosen, Option<String>), String> {
    match backend {
        Backend::Netlink => Err(
            "the netlink backend exists only on Linux (use --collector.backend=netstat2 or auto)"
                .to_string(),
        ),
        Backend::Auto | Backend::Netstat2 => Ok((Chosen(netstat2::Netstat2Source), None)),
    }
}
