//! What one namespace's kernel says beyond its sockets: the addresses of
//! its up interfaces (for `exposure`) and its NAT rules (for forwarded
//! ports), through two netlink sockets opened inside it and kept beside its
//! sock_diag channel. Both re-read only after a change notification
//! (`crate::kernel::nlsock`), so an unchanged namespace costs two
//! non-blocking `recv`s a scrape.

use super::NamespaceFacts;
use crate::kernel::addresses::AddressWatch;
use crate::kernel::nftables::{NatWatch, Unread};

/// Descriptors one [`FactWatch`] holds.
pub const DESCRIPTORS: usize = 2;

/// The address and NAT readers of one namespace, or why each could not be
/// opened (reported at every read, so the fault is counted).
pub struct FactWatch {
    addresses: Result<AddressWatch, String>,
    nat: Result<NatWatch, Unread>,
}

impl FactWatch {
    /// Opens both readers in the calling thread's namespace.
    pub fn open() -> FactWatch {
        FactWatch {
            addresses: AddressWatch::open(),
            nat: NatWatch::open(),
        }
    }

    /// The facts now (`netns`: the namespace's inode, `None` for ours).
    pub fn read(&mut self, netns: Option<u64>) -> NamespaceFacts {
        let addresses = match &mut self.addresses {
            Ok(watch) => watch.addresses().map(<[_]>::to_vec),
            Err(err) => Err(err.clone()),
        };
        let nat_rules = match &mut self.nat {
            Ok(watch) => watch.rules().map(<[_]>::to_vec),
            Err(err) => Err(err.clone()),
        };
        NamespaceFacts {
            netns,
            addresses,
            nat_rules,
        }
    }
}
