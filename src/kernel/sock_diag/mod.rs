//! NETLINK_SOCK_DIAG, the kernel's socket table on request: [`wire`] is the
//! framing every dump and broadcast uses, [`binding`] reads v6only and the
//! bound interface from a reply, [`interfaces`] names bound
//! interfaces inside a namespace, [`raw`] lists packet and raw IP sockets.

#[cfg(target_os = "linux")]
pub mod binding;
#[cfg(target_os = "linux")]
pub mod interfaces;
pub mod raw;
#[cfg(target_os = "linux")]
pub mod wire;
