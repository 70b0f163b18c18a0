//! unassigned_port_exporter: reports sockets listening on ports IANA never
//! assigned (276 among them) as Prometheus metrics.
//!
//! A scrape flows one way: [`http`] answers `/metrics` through [`scrape`],
//! which asks the [`collector`] for a fresh [`collector::Snapshot`]; the
//! collector lists listening sockets on watched ports from a
//! [`sockets::SocketSource`], finds their processes with [`owners`], labels
//! them with the [`watch`] set built from the IANA [`registry`].

pub mod cli;
pub mod collector;
pub mod events;
pub mod http;
pub mod info_metrics;
pub mod netns;
pub mod owners;
pub mod registry;
pub mod sampler;
pub mod scrape;
pub mod sockets;
pub mod watch;
pub mod web_config;
pub mod web_reload;
