//! What one namespace's kernel says beyond its sockets: the addresses of
//! its up interfaces (for `exposure`) and its NAT rules (for forwarded
//! ports). Both are re-read only after a change notification.
//!
//! - The exporter's own namespace keeps two netlink sockets that both dump
//!   and hear its notifications ([`FactWatch`], `crate::kernel::nlsock`), so
//!   an unchanged namespace costs two non-blocking `recv`s a scrape.
//! - Every other namespace keeps nothing: two sockets of ours hear all
//!   their notifications at once ([`ForeignFactFeeds`], by namespace id),
//!   and a namespace that changed is re-read through sockets opened inside
//!   it for that read and closed after ([`ForeignFacts`]). With a thousand
//!   namespaces that is two thousand descriptors fewer.

use super::NamespaceFacts;
use crate::kernel::addresses::{self, AddressWatch};
use crate::kernel::nftables::{self, NatRule, NatWatch, Unread};
use crate::kernel::nlsock::{ChangeFeed, Changes};
use std::net::IpAddr;

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

/// The two sockets that hear every other namespace's address and ruleset
/// changes. A feed that cannot open (no CAP_NET_BROADCAST or CAP_NET_ADMIN)
/// is logged once; every namespace is then re-read at every collection.
pub struct ForeignFactFeeds {
    addresses: Option<ChangeFeed>,
    nat: Option<ChangeFeed>,
}

/// Which namespaces' addresses and rules may have changed since the last
/// collection.
pub struct FactChanges {
    addresses: Changes,
    nat: Changes,
}

impl ForeignFactFeeds {
    /// Opens both feeds: call it on a thread in the exporter's namespace.
    pub fn open() -> ForeignFactFeeds {
        let open = |what: &str, protocol: isize, groups: u32| {
            ChangeFeed::open(protocol, groups)
                .inspect_err(|err| {
                    tracing::info!(
                        error = %err,
                        "cannot hear other namespaces' {what} changes: they are re-read at every collection"
                    )
                })
                .ok()
        };
        ForeignFactFeeds {
            addresses: open(
                "address",
                netlink_sys::protocols::NETLINK_ROUTE,
                addresses::CHANGE_GROUPS,
            ),
            nat: open(
                "nf_tables",
                netlink_sys::protocols::NETLINK_NETFILTER,
                nftables::CHANGE_GROUPS,
            ),
        }
    }

    /// What to assume when no feed runs: everything changed.
    pub fn none_heard() -> FactChanges {
        FactChanges {
            addresses: Changes::everything(),
            nat: Changes::everything(),
        }
    }

    /// Drains both feeds.
    pub fn changes(&mut self) -> FactChanges {
        let drain = |feed: &mut Option<ChangeFeed>| match feed {
            Some(feed) => feed.changes(),
            None => Changes::everything(),
        };
        FactChanges {
            addresses: drain(&mut self.addresses),
            nat: drain(&mut self.nat),
        }
    }
}

/// Another namespace's facts as last read.
pub struct ForeignFacts {
    addresses: Option<Result<Vec<IpAddr>, String>>,
    nat_rules: Option<Result<Vec<NatRule>, Unread>>,
}

impl ForeignFacts {
    /// Nothing read yet: the first collection reads both.
    pub fn unread() -> ForeignFacts {
        ForeignFacts {
            addresses: None,
            nat_rules: None,
        }
    }

    /// Whether a read is due for the namespace of id `nsid` (`None`: it has
    /// none, so its changes are never heard): never read, failed last time,
    /// or changed.
    pub fn due(&self, nsid: Option<i32>, changes: &FactChanges) -> bool {
        let addresses_due =
            !matches!(self.addresses, Some(Ok(_))) || changes.addresses.touches(nsid);
        let nat_due = match &self.nat_rules {
            None | Some(Err(Unread::Failed(_))) => true,
            Some(_) => changes.nat.touches(nsid),
        };
        addresses_due || nat_due
    }

    /// Reads both again: call it on a thread inside the namespace.
    pub fn read_here(&mut self) {
        self.addresses = Some(AddressWatch::read_once());
        self.nat_rules = Some(NatWatch::read_once());
    }

    /// The facts as last read (`netns`: the namespace's inode).
    pub fn facts(&self, netns: u64) -> NamespaceFacts {
        let unread = || "not read yet".to_string();
        NamespaceFacts {
            netns: Some(netns),
            addresses: self.addresses.clone().unwrap_or_else(|| Err(unread())),
            nat_rules: self
                .nat_rules
                .clone()
                .unwrap_or_else(|| Err(Unread::Failed(unread()))),
        }
    }
}
