//! Metrics that are fixed at start: the `*_info` gauges and watched ports.

use crate::kernel::netns::Mode;
use crate::model::NAMESPACE;
use crate::policy::ports::WATCHED_TRANSPORTS;
use crate::policy::watch::WatchSet;
use prometheus::{IntGaugeVec, Opts, Registry};

/// Registers the start-time gauges on `registry`: the watch set, and how
/// the socket table is read (`netlink`/`netstat2`, `all`/`host`).
pub fn register(
    registry: &Registry,
    watch: &WatchSet,
    backend: &str,
    netns_mode: Mode,
) -> prometheus::Result<()> {
    let netns = netns_mode.as_str();
    let facts = watch.registry();
    for (name, help, labels) in [
        (
            "collector_info",
            "Always 1; labels say which socket backend and namespace mode are in use.",
            [("backend", backend), ("netns", netns)].as_slice(),
        ),
        (
            "exporter_build_info",
            "Always 1; labels say which build of the exporter is running.",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", env!("BUILD_REVISION")),
                ("rustc_version", env!("BUILD_RUSTC_VERSION")),
            ],
        ),
        (
            "iana_registry_info",
            "Always 1; labels say which IANA port registry the watch set comes from.",
            &[
                ("source", facts.source.as_str()),
                ("updated", facts.updated.as_str()),
            ],
        ),
    ] {
        let names: Vec<&str> = labels.iter().map(|(name, _)| *name).collect();
        let values: Vec<&str> = labels.iter().map(|(_, value)| *value).collect();
        let info = IntGaugeVec::new(Opts::new(name, help).namespace(NAMESPACE), &names)?;
        info.with_label_values(&values).set(1);
        registry.register(Box::new(info))?;
    }

    let watched = IntGaugeVec::new(
        Opts::new("watched_ports", "Number of ports watched, by protocol.").namespace(NAMESPACE),
        &["protocol"],
    )?;
    for transport in WATCHED_TRANSPORTS {
        watched
            .with_label_values(&[transport.as_str()])
            .set(watch.count(transport) as i64);
    }
    registry.register(Box::new(watched))?;
    Ok(())
}
