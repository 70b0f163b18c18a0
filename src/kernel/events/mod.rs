//! Kernel event readers: the kernel tells us when a socket starts or stops
//! listening, as it happens. These modules read and decode; they never
//! label or count (that is `crate::events`).
//!
//! Two sources, one per kind of event:
//! - [`listen`]: `sock:inet_sock_set_state` sampled with perf_event_open,
//!   one ring buffer per CPU, filtered in the kernel to transitions into or
//!   out of LISTEN on candidate ports. Host-wide: it sees every namespace,
//!   with the pid and tid that called `listen()`. Needs CAP_PERFMON (or
//!   CAP_SYS_ADMIN) and a readable tracefs (uid 0 or CAP_DAC_READ_SEARCH).
//!   TCP, MPTCP and SCTP.
//! - [`destroy`]: sock_diag's destroy multicast groups, one subscription per
//!   network namespace, all read by one thread. Every TCP and UDP socket
//!   freed, UDP included (which has no listen). Needs no privilege beyond
//!   being able to open a socket inside the namespace (entering one takes
//!   CAP_SYS_ADMIN). UDP-Lite is never broadcast; the messages carry no uid.
//!
//! [`describe`] learns each listening socket's facts at listen time (off the
//! draining thread) and remembers them for its close; [`held_socket`] asks
//! a listening socket which namespace it is in (through
//! `crate::kernel::socket_ns`).
//! [`tracefs`] finds tracefs and reads a tracepoint's record layout.
//!
//! ## Why the `perf-event-open` crate
//!
//! The crate forbids `unsafe`, and the perf ABI needs three unsafe things:
//! the syscall, the mmap of the ring buffer with its lock-free head/tail
//! protocol, and the `PERF_EVENT_IOC_SET_FILTER` ioctl. Of the maintained
//! crates, `perf-event-open` (0.7) wraps all three in a safe API
//! (`Counter::new` with a `Tracepoint { id }`, `Counter::sampler`,
//! `Counter::with_ftrace_filter`) and parses sample and lost records.
//! `perf-event2` (0.7) samples tracepoints too but has no safe way to set a
//! filter (only a raw ioctl on the fd, which would need `unsafe` here), and
//! without the filter every connection on the host would wake us;
//! `perf-event-open-sys` is raw bindings only. The price is 11 more small
//! crates: the `futures` family (for its async iterators, unused here),
//! `slab`, `arrayvec`, and `diffy` at build time (the crate patches its
//! kernel bindings per version; feature `linux-4.1` is all we need, for the
//! CLOCK_MONOTONIC sample clock).

pub mod describe;
pub mod destroy;
pub mod held_socket;
pub mod listen;
pub mod tracefs;

pub use describe::LearntNamespaces;
pub use destroy::{
    DestroyEvent, DestroyGroups, DestroyReader, DestroySubscription, DestroyedProtocol,
    DestroyedSocket,
};
pub use listen::{
    CaptureUnavailable, ListenCapture, ListenEvent, PortFilter, StreamProtocol, Transition,
    monotonic_now,
};
