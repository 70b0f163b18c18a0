//! The model: what a listener, a raw socket, a process and a listener event
//! are called. Every label set is written once here ([`labels`]), the
//! `protocol` name is decided once ([`protocol`]), the `netns` label once
//! ([`netns`]), whether a process holds a socket once ([`holder`]), what
//! RPC programs are called once ([`rpc`]), and the watch-set lookup per
//! transport plus the `expected` decision once ([`judge`]); a collection's
//! result is a [`Snapshot`] value. The collector, the event path and the sampler
//! all name things through this room, so two views of one socket can never
//! disagree on its labels.
//!
//! Facts flow in from the readers (`crate::kernel`, `crate::sockets`,
//! `crate::owners`) and the policy (`crate::policy`); series flow out to
//! `crate::metrics` and the landing page, which only render.

pub mod event;
pub mod holder;
pub mod judge;
pub mod labels;
pub mod netns;
pub mod protocol;
pub mod rpc;
pub mod series;
pub mod snapshot;

pub use event::{ClosedLabels, OpenedLabels, SightingLabels};
pub use holder::Holder;
pub use judge::Judge;
pub use labels::LabelValue;
pub use netns::{HOST_NETNS, NetnsNamer};
pub use protocol::Protocol;
pub use series::{
    ForwardedSeries, ListenerSeries, ProcessInfoSeries, RawSocketSeries, RpcProgramSeries,
};
pub use snapshot::Snapshot;

/// Prefix of every metric name the exporter writes.
pub const NAMESPACE: &str = "unassigned_port";
