//! Metrics that are fixed at start: the `*_info` gauges and watched ports.

use crate::collect::collector::ListenerCollector;
use crate::model::NAMESPACE;
use crate::policy::ports::WATCHED_TRANSPORTS;
use prometheus::{IntGaugeVec, Opts, Registry};

/// Registers the start-time gauges on `registry`, describing how
/// `collector` reads the socket table (`netlink`/`netstat2`, `all`/`host`).
pub fn register(registry: &Registry, collector: &ListenerCollector) -> prometheus::Result<()> {
    let watch = collector.judge().watch();
    let backend = collector.backend_name();
    let netns = collector.netns_mode().as_str();
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
