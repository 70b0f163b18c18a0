//! Kernel readers: what the operating system says, decoded and returned as
//! values. They read; they never label (labels are `crate::model`'s).
//!
//! - [`sock_diag`]: NETLINK_SOCK_DIAG framing, interface names, packet and
//!   raw sockets (the listener dumps themselves are `crate::sockets::netlink`).
//! - [`procfs`]: the one way into `/proc` (`--path.procfs`, `--path.netns`).
//! - [`netns`]: network namespaces: discovery, entering, per-namespace handles.
//! - [`events`]: the listen tracepoint and the destroy groups (Linux).
//! - [`nftables`]: NAT rules (redirect, DNAT) of a namespace (Linux).
//! - [`addresses`]: a namespace's interface addresses (Linux).
//! - [`nlsock`]: a netlink socket that dumps only after change notifications,
//!   and one that hears every namespace's.
//! - [`socket_ns`]: which namespace a socket or a netlink notification is
//!   from (one of the three places the crate uses `unsafe`).
//! - [`rpcbind`]: the ONC RPC registrations of a namespace's rpcbind.
//! - [`priority`]: background threads yield the CPU to the scrape.
//! - `test_support` (unit tests only): the gate for tests that need root,
//!   IPv6 and the like.

#[cfg(target_os = "linux")]
pub mod addresses;
#[cfg(target_os = "linux")]
pub mod events;
pub mod netns;
pub mod nftables;
#[cfg(target_os = "linux")]
pub mod nlsock;
pub mod priority;
pub mod procfs;
pub mod rpcbind;
pub mod sock_diag;
#[cfg(target_os = "linux")]
pub mod socket_ns;
#[cfg(test)]
pub mod test_support;
