//! Metric families: what the exporter writes into the exposition, rendered
//! from values the other rooms hand over. Nothing here collects.
//!
//! - [`text`]: the exposition writer and [`text::Render`], the one interface
//!   of the metric rooms.
//! - [`info`]: the `*_info` gauges and watched-port counts.
//! - [`reload`]: config reload results (`config_last_reload_*`).
//! - [`snapshot`]: the families of one collection (listeners, raw sockets,
//!   processes, collection health), from the snapshot value alone.
//! - [`series_table`]: the one bounded table behind every series kept
//!   between scrapes (event counters, sampler sightings).

pub mod info;
pub mod reload;
pub mod series_table;
pub mod snapshot;
pub mod text;
