//! unassigned_port_exporter: reports sockets listening on ports IANA never
//! assigned (276 among them) as Prometheus metrics.
//!
//! A scrape flows one way: [`http`] answers `/metrics` through [`scrape`],
//! which asks the [`collector`] for a fresh [`collector::Snapshot`]; the
//! collector lists listening sockets on watched ports from a
//! [`sockets::SocketSource`], finds their processes with [`owners`], labels
//! them with the [`watch`] set built from the IANA [`registry`].
//!
//! Layout, one concern a module:
//! - [`cli`]: flags, spelled as node_exporter spells them.
//! - [`exporter`]: wiring from flags to a running exporter (the binary, the
//!   benchmark and the fixture tests all build through it).
//! - [`registry`]: IANA's port registry (embedded table, CSV loader).
//! - [`watch`]: which ports are watched, which listeners are expected.
//! - [`sockets`]: where listening sockets come from (netlink, netstat2).
//! - [`netns`]: network namespaces: discovery, entering, per-namespace handles.
//! - [`proc_root`]: the one way into `/proc` (`--path.procfs`, `--path.netns`).
//! - [`owners`]: socket inode -> pid -> name, user, container.
//! - [`collector`]: one collection into a snapshot, and its metric families.
//! - [`scrape`]: single-flight collection and text rendering.
//! - [`sampler`]: optional background sampling between scrapes.
//! - [`events`]: kernel listen and destroy events (zero-miss counting, Linux).
//! - [`info_metrics`]: the `*_info` gauges and watched-port counts.
//! - [`http`]: the hyper server (`/metrics`, landing page, `/healthz`).
//! - [`web_config`], [`web_reload`]: TLS and basic auth, and their reloads.
//! - [`file_watch`]: the change-or-SIGHUP wait behind every reload.
//! - [`auth`]: basic-auth checks under load (credential cache, bcrypt budget).
//! - [`logging`]: logfmt and JSON log lines.
//! - `windows_service`: running under Windows' Service Control Manager
//!   (Windows only).

#![forbid(unsafe_code)]

pub mod allow;
pub mod allow_reload;
pub mod auth;
pub mod cli;
pub mod collector;
#[cfg(target_os = "linux")]
pub mod events;
pub mod exporter;
pub mod exposure;
pub mod file_watch;
pub mod http;
pub mod info_metrics;
pub mod logging;
pub mod netns;
pub mod owners;
pub mod proc_root;
pub mod provenance;
pub mod registry;
pub mod sampler;
pub mod scrape;
pub mod sockets;
pub mod watch;
pub mod web_config;
pub mod web_reload;
#[cfg(windows)]
pub mod windows_service;
