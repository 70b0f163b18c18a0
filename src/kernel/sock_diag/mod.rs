//! NETLINK_SOCK_DIAG, the kernel's socket table on request: [`wire`] is the
//! framing every dump and broadcast uses, [`interfaces`] names bound
//! interfaces inside a namespace, [`raw`] lists packet and raw IP sockets.

#[cfg(target_os = "linux")]
pub mod interfaces;
pub mod raw;
#[cfg(target_os = "linux")]
pub mod wire;
