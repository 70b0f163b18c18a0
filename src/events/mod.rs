//! Zero-miss counting: listeners learned from kernel events as they happen,
//! not from snapshots, so one that lives 5 ms in a fresh namespace between
//! two scrapes is still counted.
//!
//! The readers live in `crate::kernel::events`; this room turns what they
//! report into labelled counters: [`live`] starts the readers in a running
//! exporter and labels their events through `crate::model`; [`counters`]
//! keeps the counters in a bounded series table; [`view`] is what the
//! events learn and collection may read; [`trail`] writes one log line per
//! event with the whole story of its process.

pub mod counters;
pub mod live;
pub mod trail;
pub mod view;

pub use crate::kernel::events::{
    CaptureUnavailable, DestroyEvent, DestroyGroups, DestroyReader, DestroySubscription,
    DestroyedProtocol, DestroyedSocket, ListenCapture, ListenEvent, PortFilter, StreamProtocol,
    Transition,
};
pub use counters::{CaptureSource, EventCounters};
