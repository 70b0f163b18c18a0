//! Collection: one look at the socket table, joined with owners and policy
//! through `crate::model`, returned as a value.
//!
//! - [`collector`]: one collection into a snapshot.
//! - [`forwarded`]: forwarded ports (NAT rules, port holders) joined.
//! - [`scrape`]: single-flight collection for the HTTP side.
//! - [`sampler`]: optional background sampling between scrapes.

pub mod collector;
pub mod forwarded;
pub mod sampler;
pub mod scrape;
