//! Metric families: what the exporter writes into the exposition, rendered
//! from values the other rooms hand over. Nothing here collects.
//!
//! - [`text`]: the exposition writer and [`text::Render`], the one interface
//!   of the metric rooms.
//! - [`snapshot`]: the families of one collection (listeners, packet/raw
//!   sockets, processes, the collection's gauges).
//! - [`info`]: the `*_info` gauges and watched-port counts.

pub mod info;
pub mod snapshot;
pub mod text;
