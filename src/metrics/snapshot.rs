//! The families of one collection: listeners, packet/raw sockets, owning
//! processes, and how the collection went (duration, success, coverage,
//! namespaces, sysctls). Rendered from the [`Snapshot`] value alone: the
//! label names come from the model's label sets, never written here again.

use crate::kernel::netns::Mode;
use crate::model::Snapshot;
use crate::model::{ListenerSeries, NAMESPACE, ProcessInfoSeries, RawSocketSeries};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

/// The metric families of one snapshot.
pub fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let listeners = listeners_vec();
    for series in &snapshot.listeners {
        let values = series.label_values();
        listeners
            .with_label_values(&values)
            .set(series.sockets as f64);
    }
    let mut families = listeners.collect();
    let raw_sockets = raw_sockets_vec();
    for series in &snapshot.raw_sockets {
        let values = series.label_values();
        raw_sockets
            .with_label_values(&values)
            .set(series.sockets as f64);
    }
    families.extend(raw_sockets.collect());
    let processes = process_info_vec();
    for series in &snapshot.processes {
        let values = series.label_values();
        processes.with_label_values(&values).set(1.0);
    }
    families.extend(processes.collect());
    let single = |opts: Opts, value: f64| {
        let gauge = GaugeVec::new(opts, &[]).unwrap();
        gauge.with_label_values::<&str>(&[]).set(value);
        gauge.collect()
    };
    families.extend(single(duration_opts(), snapshot.duration.as_secs_f64()));
    families.extend(single(
        success_opts(),
        f64::from(u8::from(snapshot.success)),
    ));
    let unprivileged = unprivileged_vec();
    for (netns, value) in &snapshot.unprivileged_port_start {
        unprivileged
            .with_label_values(&[netns.as_str()])
            .set(*value as f64);
    }
    families.extend(unprivileged.collect());
    let coverage = coverage_vec();
    for (transport, covered) in &snapshot.coverage {
        coverage
            .with_label_values(&[transport.as_str()])
            .set(f64::from(u8::from(*covered)));
    }
    families.extend(coverage.collect());
    let namespaces = namespaces_vec();
    for (state, count) in [
        ("read", snapshot.namespaces_read),
        ("failed", snapshot.namespaces_failed),
    ] {
        namespaces.with_label_values(&[state]).set(count as f64);
    }
    families.extend(namespaces.collect());
    if snapshot.netns_mode == Mode::All {
        families.extend(single(
            udp_staleness_opts(),
            snapshot.udp_staleness.as_secs_f64(),
        ));
    }
    families
}

fn listeners_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "listeners",
            "Listening sockets on a watched port (IANA unassigned, unregistered or added), by owner.",
        )
        .namespace(NAMESPACE),
        ListenerSeries::LABELS,
    )
    .unwrap()
}

fn raw_sockets_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "raw_sockets",
            "Packet (AF_PACKET) and raw IP sockets, which listen without a port, by kind, protocol, BPF filter and owner.",
        )
        .namespace(NAMESPACE),
        RawSocketSeries::LABELS,
    )
    .unwrap()
}

fn process_info_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "listener_process_info",
            "Always 1, one per process owning a reported listener or packet/raw socket; labels say its executable (whether it was deleted, its SHA-256 once hashed), parent, systemd unit and login user.",
        )
        .namespace(NAMESPACE),
        ProcessInfoSeries::LABELS,
    )
    .unwrap()
}

fn duration_opts() -> Opts {
    Opts::new(
        "collection_duration_seconds",
        "Time the last collection took.",
    )
    .namespace(NAMESPACE)
}

fn success_opts() -> Opts {
    Opts::new(
        "collection_success",
        "1 if the last collection read the socket table, 0 if it could not.",
    )
    .namespace(NAMESPACE)
}

fn unprivileged_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "unprivileged_port_start",
            "net.ipv4.ip_unprivileged_port_start per network namespace: ports from here up can be bound by any user.",
        )
        .namespace(NAMESPACE),
        &["netns"],
    )
    .unwrap()
}

fn udp_staleness_opts() -> Opts {
    Opts::new(
        "network_namespace_udp_staleness_seconds",
        "Age of the oldest UDP listing of another network namespace in the last collection: with more than 256 namespaces each one's UDP sockets are re-read every 4th collection, in turns (0 when all are fresh). TCP is always exact.",
    )
    .namespace(NAMESPACE)
}

fn namespaces_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "network_namespaces",
            "Network namespaces in the last collection, by state: read (the exporter's own included) or failed (could not be entered or read).",
        )
        .namespace(NAMESPACE),
        &["state"],
    )
    .unwrap()
}

fn coverage_vec() -> GaugeVec {
    GaugeVec::new(
        Opts::new(
            "transport_coverage",
            "1 if listeners of this transport are collected, 0 if the backend or kernel cannot see them.",
        )
        .namespace(NAMESPACE),
        &["protocol"],
    )
    .unwrap()
}
