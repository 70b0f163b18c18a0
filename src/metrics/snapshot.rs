//! The families of one collection: listeners, packet/raw sockets, owning
//! processes, forwarded ports, and how the collection went (duration, success, coverage,
//! namespaces, sysctls). Written from the [`Snapshot`] value alone, straight
//! into the exposition through [`crate::metrics::text`]; the label names
//! and their order come from the model's label sets, never written here.
//!
//! Series come in the snapshot's order (the model's: protocol, port, then
//! the other labels for listeners; kind and protocol for packet/raw sockets;
//! pid for processes), which is stable from scrape to scrape and costs no
//! sort at scrape time; the few-series families (one series per stage,
//! namespace or protocol) come sorted by label value as the prometheus
//! registry would give them.

use crate::kernel::netns::Mode;
use crate::metrics::text::{Family, Kind, Render};
use crate::model::NAMESPACE;
use crate::model::Snapshot;
use crate::model::labels::SortedLabels;
use std::borrow::Cow;

/// Full family names, in the order [`SnapshotFamilies`] numbers them.
const NAMES: [&str; 11] = [
    "unassigned_port_listeners",
    "unassigned_port_raw_sockets",
    "unassigned_port_listener_process_info",
    "unassigned_port_collection_duration_seconds",
    "unassigned_port_collection_success",
    "unassigned_port_unprivileged_port_start",
    "unassigned_port_transport_coverage",
    "unassigned_port_network_namespaces",
    "unassigned_port_network_namespace_udp_staleness_seconds",
    "unassigned_port_rpc_program_info",
    "unassigned_port_forwarded_ports",
];

/// One snapshot's families.
pub struct SnapshotFamilies<'a>(pub &'a Snapshot);

impl Render for SnapshotFamilies<'_> {
    fn family_names(&self) -> Vec<Cow<'_, str>> {
        debug_assert!(NAMES.iter().all(|n| n.starts_with(NAMESPACE)));
        NAMES.iter().map(|name| Cow::Borrowed(*name)).collect()
    }

    fn render(&self, index: usize, out: &mut Vec<u8>) {
        let snapshot = self.0;
        let name = NAMES[index];
        match index {
            0 => gauge_of_series(
                Family::new(
                    out,
                    name,
                    "Listening sockets on a watched port (IANA unassigned, unregistered or added), by owner.",
                    Kind::Gauge,
                ),
                &snapshot.listeners,
                |series| series.sockets,
            ),
            1 => gauge_of_series(
                Family::new(
                    out,
                    name,
                    "Packet (AF_PACKET) and raw IP sockets, which listen without a port, by kind, protocol, BPF filter and owner.",
                    Kind::Gauge,
                ),
                &snapshot.raw_sockets,
                |series| series.sockets,
            ),
            2 => gauge_of_series(
                Family::new(
                    out,
                    name,
                    "Always 1, one per process owning a reported listener or packet/raw socket; labels say its user, its executable (whether it was deleted, its SHA-256 once hashed), parent, systemd unit and login user.",
                    Kind::Gauge,
                ),
                &snapshot.processes,
                |_| 1,
            ),
            3 => Family::new(out, name, "Time the last collection took.", Kind::Gauge)
                .single_f64(snapshot.duration.as_secs_f64()),
            4 => Family::new(
                out,
                name,
                "1 if the last collection read the socket table, 0 if it could not.",
                Kind::Gauge,
            )
            .single_f64(f64::from(u8::from(snapshot.success))),
            5 => one_label_gauge(
                Family::new(
                    out,
                    name,
                    "net.ipv4.ip_unprivileged_port_start per network namespace: ports from here up can be bound by any user.",
                    Kind::Gauge,
                ),
                "netns",
                snapshot
                    .unprivileged_port_start
                    .iter()
                    .map(|(netns, value)| (netns.as_str(), *value as f64))
                    .collect(),
            ),
            6 => one_label_gauge(
                Family::new(
                    out,
                    name,
                    "1 if listeners of this transport are collected, 0 if the backend or kernel cannot see them.",
                    Kind::Gauge,
                ),
                "protocol",
                snapshot
                    .coverage
                    .iter()
                    .map(|(transport, covered)| (transport.as_str(), f64::from(u8::from(*covered))))
                    .collect(),
            ),
            7 => {
                let mut family = Family::new(
                    out,
                    name,
                    "Network namespaces in the last collection, by state: read (the exporter's own included) or failed (could not be entered or read).",
                    Kind::Gauge,
                );
                for (state, count) in [
                    ("failed", snapshot.namespaces_failed),
                    ("read", snapshot.namespaces_read),
                ] {
                    let mut series = family.series();
                    series.label("state", state);
                    series.value_u64(count);
                }
            }
            9 => gauge_of_series(
                Family::new(
                    out,
                    name,
                    "Always 1, one per ONC RPC program version registered with the rpcbind of a reported listener's network namespace on that listener's port and protocol (what rpcinfo -p shows); join on netns, port and protocol.",
                    Kind::Gauge,
                ),
                &snapshot.rpc_programs,
                |_| 1,
            ),
            10 => gauge_of_series(
                Family::new(
                    out,
                    name,
                    "Watched ports the kernel forwards elsewhere: NAT rules (redirect, dnat) and container runtimes' port holders (holder), with where they lead; the value counts rules or holders.",
                    Kind::Gauge,
                ),
                &snapshot.forwarded,
                |series| series.count,
            ),
            _ => {
                if snapshot.netns_mode == Mode::All {
                    Family::new(
                        out,
                        name,
                        "Age of the oldest UDP-Lite, packet or raw socket listing of another network namespace in the last collection: with more than 256 namespaces those are re-read every 4th collection, in turns (0 when all are fresh). TCP and UDP are always exact.",
                        Kind::Gauge,
                    )
                    .single_f64(snapshot.udp_staleness.as_secs_f64());
                }
            }
        }
    }
}

/// A gauge family with one label: one series per label value, sorted by
/// it; of duplicate values the smallest is kept.
fn one_label_gauge(mut family: Family<'_>, label: &str, mut rows: Vec<(&str, f64)>) {
    rows.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)));
    rows.dedup_by(|a, b| a.0 == b.0);
    for (value_of_label, value) in rows {
        let mut series = family.series();
        series.label(label, value_of_label);
        series.value_f64(value);
    }
}

/// A gauge family of labelled series, one line per series, each valued by
/// `value` (its socket count, or 1 for an info series).
fn gauge_of_series<T: SortedLabels>(mut family: Family<'_>, all: &[T], value: fn(&T) -> u64) {
    for series in all {
        family.labelled(series, value(series));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::SortedLabels;
    use crate::model::{ListenerSeries, ProcessInfoSeries, Protocol, RawSocketSeries};
    use prometheus::{Encoder, GaugeVec, Opts, Registry};
    use std::borrow::Cow;

    /// The prometheus crate's exposition of one series, and ours.
    fn both(
        labels: &impl SortedLabels,
        names: &[&str],
        values: &[Cow<'_, str>],
    ) -> (String, String) {
        let gauge = GaugeVec::new(Opts::new("t", "help \\ text\n"), names).unwrap();
        let values: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
        gauge.with_label_values(&values).set(3.0);
        let registry = Registry::new();
        registry.register(Box::new(gauge)).unwrap();
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut theirs)
            .unwrap();
        let mut ours = Vec::new();
        Family::new(&mut ours, "t", "help \\ text\n", Kind::Gauge).labelled(labels, 3);
        (
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap(),
        )
    }

    const ODD: &str = "py \"x\"\\\nthon é";

    #[test]
    fn a_listener_is_written_as_the_prometheus_crate_writes_it() {
        let series = ListenerSeries {
            port: 276,
            protocol: Protocol::Tcp,
            family: "ipv4",
            address: "127.0.0.2".into(),
            process: ODD.into(),
            pid: "42".into(),
            user: "root".into(),
            iana: "unassigned",
            expected: false,
            netns: "host".into(),
            container_id: String::new(),
            pod_uid: String::new(),
            exposure: "loopback",
            dual_stack: "false",
            interface: String::new(),
            holder: crate::model::holder::Holder::Process,
            sockets: 3,
        };
        let (ours, theirs) = both(&series, ListenerSeries::LABELS, &series.label_values());
        assert_eq!(ours, theirs);
    }

    #[test]
    fn raw_sockets_and_processes_are_written_as_the_prometheus_crate_writes_them() {
        let raw = RawSocketSeries {
            kind: "packet",
            protocol: "all".into(),
            interface: "eth0".into(),
            bpf_filter: "true",
            process: ODD.into(),
            pid: "1".into(),
            user: "u".into(),
            netns: "4026532500".into(),
            container_id: "c".into(),
            pod_uid: "d".into(),
            expected: true,
            sockets: 3,
        };
        let (ours, theirs) = both(&raw, RawSocketSeries::LABELS, &raw.label_values());
        assert_eq!(ours, theirs);
        let process = ProcessInfoSeries {
            pid: 4_000_000,
            netns: "host".into(),
            process: "p".into(),
            user: "root".into(),
            exe: "/tmp/a \"b\" (deleted)".into(),
            exe_deleted: true,
            exe_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            ppid: "1".into(),
            parent_process: "init".into(),
            unit: "u.service".into(),
            container_id: String::new(),
            login_uid: "1000".into(),
            login_user: "al\\ice".into(),
        };
        let (ours, theirs) = both(&process, ProcessInfoSeries::LABELS, &process.label_values());
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_forwarded_port_is_written_as_the_prometheus_crate_writes_it() {
        let series = crate::model::ForwardedSeries {
            port: 277,
            protocol: Protocol::Tcp,
            netns: "host".into(),
            mechanism: "dnat",
            to_address: "10.88.0.2".into(),
            to_port: "80".into(),
            to_netns: ODD.into(),
            container_id: "c".into(),
            expected: false,
            count: 2,
        };
        let (ours, theirs) = both(
            &series,
            crate::model::ForwardedSeries::LABELS,
            &series.label_values(),
        );
        assert_eq!(ours, theirs);
    }
}
