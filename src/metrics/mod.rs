//! Metric families: what the exporter writes into the exposition, rendered
//! from values the other rooms hand over. Nothing here collects.
//!
//! - [`info`]: the `*_info` gauges and watched-port counts.
//! - [`reload`]: config reload results (`config_last_reload_*`).

pub mod info;
pub mod reload;
