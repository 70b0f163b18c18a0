//! unassigned_port_exporter: reports sockets listening on ports IANA never
//! assigned (276 among them) as Prometheus metrics.
//!
//! A scrape flows one way, each arrow downward:
//! [`web`] answers `/metrics` through [`collect::scrape`], which asks the
//! [`collect::collector`] for a fresh snapshot; the collector lists
//! listening sockets on watched ports from a [`sockets`] source (which reads
//! the [`kernel`]), finds their processes with [`owners`], and names them
//! through the [`model`] with the [`policy`]; [`metrics`] renders the
//! snapshot. Kernel events ([`events`]) own what they learn and hand
//! collection a read-only view.
//!
//! Layout, one concern a room:
//! - [`cli`]: flags, spelled as node_exporter spells them.
//! - [`exporter`]: wiring from flags to a running exporter (the binary, the
//!   benchmarks and the fixture tests all build through it).
//! - [`model`]: what a listener, a raw socket and a listener event are
//!   called: label sets, protocol names, the `netns` label, `expected`.
//! - [`policy`]: IANA registry, watch set, allow rules and their reload,
//!   exposure of bound addresses.
//! - [`kernel`]: sock_diag framing, `/proc`, network namespaces, the event
//!   readers (tracepoint, destroy groups): reads, never labels.
//! - [`sockets`]: where listening sockets come from (netlink, netstat2).
//! - [`owners`]: socket inode -> pid -> name, user, container, provenance.
//! - [`collect`]: one collection into a snapshot, single-flight scrapes,
//!   the sampler.
//! - [`events`]: kernel listen and destroy events, labelled and counted.
//! - [`metrics`]: metric families rendered from snapshots.
//! - [`web`]: the hyper server, auth, web config and its reload.
//! - [`file_watch`]: the change-or-SIGHUP wait behind every reload.
//! - [`logging`]: logfmt and JSON log lines.
//! - [`platform`]: what only other operating systems need (Windows service).

#![deny(unsafe_code)]

pub mod allocator;
pub mod cli;
pub mod collect;
#[cfg(target_os = "linux")]
pub mod events;
pub mod exporter;
pub mod file_watch;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod owners;
pub mod platform;
pub mod policy;
pub mod sockets;
pub mod web;
