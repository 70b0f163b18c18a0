//! Collection: one look at the socket table, joined with owners and policy
//! through `crate::model`, returned as a value.
//!
//! - [`collector`]: one collection into a snapshot.
//! - [`owners`]: the owner search of one collection.
//! - [`faults`]: what went wrong, counted by stage.
//! - [`forwarded`]: forwarded ports (NAT rules, port holders) joined.
//! - [`scrape`]: single-flight collection for the HTTP side.
//! - [`sampler`]: optional background sampling between scrapes.
//! - [`rpc`]: RPC registrations per namespace, refreshed off the scrape path.

pub mod collector;
pub mod faults;
pub mod forwarded;
pub mod owners;
pub mod rpc;
pub mod sampler;
pub mod scrape;
