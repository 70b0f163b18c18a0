//! The backends Linux has: netlink sock_diag, with netstat2 as the
//! fallback `auto` takes when the kernel or a sandbox refuses sock_diag.

use super::{Backend, EventLinks, SocketSource, netlink, netstat2};
use crate::kernel::procfs::ProcRoot;

/// A backend before the namespace decision.
pub enum Chosen {
    Netlink(Box<netlink::SockDiagSource>),
    Netstat2(netstat2::Netstat2Source),
}

impl Chosen {
    /// Only netlink can look into other network namespaces.
    pub fn reads_namespaces(&self) -> bool {
        matches!(self, Chosen::Netlink(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Chosen::Netlink(source) => source.name(),
            Chosen::Netstat2(source) => source.name(),
        }
    }

    pub fn into_dyn(self) -> Box<dyn SocketSource> {
        match self {
            Chosen::Netlink(source) => source,
            Chosen::Netstat2(source) => Box::new(source),
        }
    }

    /// The source reading every namespace found under `proc_root`.
    pub fn read_all_namespaces(self, proc_root: &ProcRoot) -> Box<dyn SocketSource> {
        match self {
            Chosen::Netlink(source) => source.read_other_namespaces(proc_root),
            other => other.into_dyn(),
        }
    }
}

/// Opens `backend`; `auto` falls back to netstat2 and says why.
pub fn open_backend(
    backend: Backend,
    proc_root: &ProcRoot,
    links: &EventLinks,
) -> Result<(Chosen, Option<String>), String> {
    let portable = Chosen::Netstat2(netstat2::Netstat2Source);
    match backend {
        Backend::Netstat2 => Ok((portable, None)),
        Backend::Netlink => netlink::SockDiagSource::open(proc_root, links)
            .map(|source| (Chosen::Netlink(Box::new(source)), None))
            .map_err(|err| format!("{err} (try --collector.backend=netstat2 or auto)")),
        Backend::Auto => match netlink::SockDiagSource::open(proc_root, links) {
            Ok(source) => Ok((Chosen::Netlink(Box::new(source)), None)),
            Err(err) => Ok((portable, Some(err.0))),
        },
    }
}
