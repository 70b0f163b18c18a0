//! Metrics that are fixed at start: build info, registry info, watched ports.

use crate::collector::NAMESPACE;
use crate::watch::{WATCHED_TRANSPORTS, WatchSet};
use prometheus::{IntGaugeVec, Opts, Registry};

/// Registers the start-time gauges on `registry`. `backend` and `netns` say
/// how the socket table is read (`netlink`/`netstat2`, `all`/`host`).
pub fn register(
    registry: &Registry,
    watch: &WatchSet,
    backend: &str,
    netns: &str,
) -> prometheus::Result<()> {
    let collector = IntGaugeVec::new(
        Opts::new(
            "collector_info",
            "Always 1; labels say which socket backend and namespace mode are in use.",
        )
        .namespace(NAMESPACE),
        &["backend", "netns"],
    )?;
    collector.with_label_values(&[backend, netns]).set(1);
    registry.register(Box::new(collector))?;

    let build = IntGaugeVec::new(
        Opts::new(
            "exporter_build_info",
            "Always 1; labels say which build of the exporter is running.",
        )
        .namespace(NAMESPACE),
        &["version", "revision", "rustc_version"],
    )?;
    build
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            env!("BUILD_REVISION"),
            env!("BUILD_RUSTC_VERSION"),
        ])
        .set(1);
    registry.register(Box::new(build))?;

    let iana = IntGaugeVec::new(
        Opts::new(
            "iana_registry_info",
            "Always 1; labels say which IANA port registry the watch set comes from.",
        )
        .namespace(NAMESPACE),
        &["source", "updated"],
    )?;
    let facts = watch.registry();
    iana.with_label_values(&[facts.source.as_str(), facts.updated.as_str()])
        .set(1);
    registry.register(Box::new(iana))?;

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
