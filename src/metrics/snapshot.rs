//! The families of one collection (listeners, packet/raw sockets, owning
//! processes, the collection's own gauges), written from the snapshot
//! straight into the exposition through [`crate::metrics::text`].
//!
//! Series come in the snapshot's order (the model's: protocol, port, then
//! the other labels for listeners; kind and protocol for packet/raw sockets;
//! pid for processes), which is stable from scrape to scrape and costs no
//! sort at scrape time; the few-series families (one series per stage,
//! namespace or protocol) come sorted by label value as the prometheus
//! registry would give them.

use crate::collect::collector::{
    ListenerSeries, NAMESPACE, ProcessInfoSeries, RawSocketSeries, Snapshot,
};
use crate::metrics::text::{Family, Kind, Render, Series, SeriesLabels};
use crate::policy::registry::Transport;
use std::borrow::Cow;

impl SeriesLabels for ListenerSeries {
    const SORTED_NAMES: &'static [&'static str] = &[
        "address",
        "container_id",
        "dual_stack",
        "expected",
        "exposure",
        "family",
        "iana",
        "interface",
        "netns",
        "pid",
        "pod_uid",
        "port",
        "process",
        "protocol",
        "user",
    ];

    fn write_labels(&self, series: &mut Series<'_>) {
        series
            .label("address", &self.address)
            .label("container_id", &self.container_id)
            .label("dual_stack", self.dual_stack)
            .label_bool("expected", self.expected)
            .label("exposure", self.exposure)
            .label("family", self.family)
            .label("iana", self.iana)
            .label("interface", &self.interface)
            .label("netns", &self.netns)
            .label("pid", &self.pid)
            .label("pod_uid", &self.pod_uid)
            .label_u64("port", u64::from(self.port))
            .label("process", &self.process)
            .label("protocol", self.transport.as_str())
            .label("user", &self.user);
    }
}

impl SeriesLabels for RawSocketSeries {
    const SORTED_NAMES: &'static [&'static str] = &[
        "bpf_filter",
        "container_id",
        "expected",
        "interface",
        "kind",
        "netns",
        "pid",
        "pod_uid",
        "process",
        "protocol",
        "user",
    ];

    fn write_labels(&self, series: &mut Series<'_>) {
        series
            .label("bpf_filter", self.bpf_filter)
            .label("container_id", &self.container_id)
            .label_bool("expected", self.expected)
            .label("interface", &self.interface)
            .label("kind", self.kind)
            .label("netns", &self.netns)
            .label("pid", &self.pid)
            .label("pod_uid", &self.pod_uid)
            .label("process", &self.process)
            .label("protocol", &self.protocol)
            .label("user", &self.user);
    }
}

impl SeriesLabels for ProcessInfoSeries {
    const SORTED_NAMES: &'static [&'static str] = &[
        "container_id",
        "exe",
        "exe_deleted",
        "netns",
        "parent_process",
        "pid",
        "ppid",
        "process",
        "unit",
    ];

    fn write_labels(&self, series: &mut Series<'_>) {
        series
            .label("container_id", &self.container_id)
            .label("exe", &self.exe)
            .label_bool("exe_deleted", self.exe_deleted)
            .label("netns", &self.netns)
            .label("parent_process", &self.parent_process)
            .label_u64("pid", u64::from(self.pid))
            .label("ppid", &self.ppid)
            .label("process", &self.process)
            .label("unit", &self.unit);
    }
}

/// Full family names, in the order [`SnapshotFamilies`] numbers them.
const NAMES: [&str; 9] = [
    "unassigned_port_listeners",
    "unassigned_port_raw_sockets",
    "unassigned_port_listener_process_info",
    "unassigned_port_collection_duration_seconds",
    "unassigned_port_collection_success",
    "unassigned_port_unprivileged_port_start",
    "unassigned_port_transport_coverage",
    "unassigned_port_network_namespaces",
    "unassigned_port_network_namespace_udp_staleness_seconds",
];

/// One snapshot's families, with what the collector knows beside it.
pub struct SnapshotFamilies<'a> {
    pub snapshot: &'a Snapshot,
    /// Which transports the socket source can see.
    pub coverage: Vec<(Transport, bool)>,
    /// `--collector.netns=all`: the UDP staleness gauge is written.
    pub all_namespaces: bool,
}

impl Render for SnapshotFamilies<'_> {
    fn family_names(&self) -> Vec<Cow<'_, str>> {
        debug_assert!(NAMES.iter().all(|n| n.starts_with(NAMESPACE)));
        NAMES.iter().map(|name| Cow::Borrowed(*name)).collect()
    }

    fn render(&self, index: usize, out: &mut Vec<u8>) {
        let snapshot = self.snapshot;
        let name = NAMES[index];
        match index {
            0 => {
                let mut family = Family::new(
                    out,
                    name,
                    "Listening sockets on a watched port (IANA unassigned, unregistered or added), by owner.",
                    Kind::Gauge,
                );
                for series in &snapshot.listeners {
                    family.labelled(series, series.sockets);
                }
            }
            1 => {
                let mut family = Family::new(
                    out,
                    name,
                    "Packet (AF_PACKET) and raw IP sockets, which listen without a port, by kind, protocol, BPF filter and owner.",
                    Kind::Gauge,
                );
                for series in &snapshot.raw_sockets {
                    family.labelled(series, series.sockets);
                }
            }
            2 => {
                let mut family = Family::new(
                    out,
                    name,
                    "Always 1, one per process owning a reported listener or packet/raw socket; labels say its executable (and whether it was deleted), parent and systemd unit.",
                    Kind::Gauge,
                );
                for series in &snapshot.processes {
                    family.labelled(series, 1);
                }
            }
            3 => Family::new(out, name, "Time the last collection took.", Kind::Gauge)
                .single_f64(snapshot.duration.as_secs_f64()),
            4 => Family::new(
                out,
                name,
                "1 if the last collection read the socket table, 0 if it could not.",
                Kind::Gauge,
            )
            .single_f64(f64::from(u8::from(snapshot.success))),
            5 => {
                let mut rows: Vec<(&str, i64)> = snapshot
                    .unprivileged_port_start
                    .iter()
                    .map(|(netns, value)| (netns.as_str(), *value))
                    .collect();
                rows.sort_unstable();
                rows.dedup_by(|a, b| a.0 == b.0);
                let mut family = Family::new(
                    out,
                    name,
                    "net.ipv4.ip_unprivileged_port_start per network namespace: ports from here up can be bound by any user.",
                    Kind::Gauge,
                );
                for (netns, value) in rows {
                    let mut series = family.series();
                    series.label("netns", netns);
                    series.value_f64(value as f64);
                }
            }
            6 => {
                let mut rows: Vec<(&str, bool)> = self
                    .coverage
                    .iter()
                    .map(|(transport, covered)| (transport.as_str(), *covered))
                    .collect();
                rows.sort_unstable();
                rows.dedup_by(|a, b| a.0 == b.0);
                let mut family = Family::new(
                    out,
                    name,
                    "1 if listeners of this transport are collected, 0 if the backend or kernel cannot see them.",
                    Kind::Gauge,
                );
                for (protocol, covered) in rows {
                    let mut series = family.series();
                    series.label("protocol", protocol);
                    series.value_u64(u64::from(covered));
                }
            }
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
            _ => {
                if self.all_namespaces {
                    Family::new(
                        out,
                        name,
                        "Age of the oldest UDP listing of another network namespace in the last collection: with more than 256 namespaces each one's UDP sockets are re-read every 4th collection, in turns (0 when all are fresh). TCP is always exact.",
                        Kind::Gauge,
                    )
                    .single_f64(snapshot.udp_staleness.as_secs_f64());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::collector::{LISTENER_LABELS, PROCESS_INFO_LABELS, RAW_SOCKET_LABELS};
    use prometheus::{Encoder, GaugeVec, Opts, Registry};

    /// The label names a writer emits, in the order it emits them.
    fn written_names(labels: &impl SeriesLabels) -> Vec<String> {
        let mut out = Vec::new();
        Family::new(&mut out, "t", "h", Kind::Gauge).labelled(labels, 1);
        let line = String::from_utf8(out).unwrap();
        let line = line.lines().nth(2).unwrap();
        let inner = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        // Values in these tests hold no `,` or `=`.
        inner
            .split(',')
            .map(|pair| pair.split('=').next().unwrap().to_string())
            .collect()
    }

    fn check_names<T: SeriesLabels>(labels: &T, declared: &[&str]) {
        let mut sorted: Vec<&str> = declared.to_vec();
        sorted.sort_unstable();
        assert_eq!(T::SORTED_NAMES, sorted.as_slice());
        assert_eq!(written_names(labels), sorted);
    }

    fn listener() -> ListenerSeries {
        ListenerSeries {
            transport: Transport::Tcp,
            port: 276,
            family: "ipv4",
            address: "127.0.0.2".into(),
            process: "py \"x\"\\\nthon".into(),
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
            sockets: 2,
        }
    }

    #[test]
    fn every_label_is_written_once_in_name_order() {
        let mut plain = listener();
        plain.process = "python3".into();
        check_names(&plain, &LISTENER_LABELS);
        let raw = RawSocketSeries {
            kind: "packet",
            protocol: "all".into(),
            interface: "eth0".into(),
            bpf_filter: "true",
            process: "p".into(),
            pid: "1".into(),
            user: "u".into(),
            netns: "host".into(),
            container_id: "c".into(),
            pod_uid: "d".into(),
            expected: true,
            sockets: 1,
        };
        check_names(&raw, &RAW_SOCKET_LABELS);
        let process = ProcessInfoSeries {
            pid: 7,
            netns: "host".into(),
            process: "p".into(),
            exe: "/bin/p".into(),
            exe_deleted: false,
            ppid: "1".into(),
            parent_process: "init".into(),
            unit: "u.service".into(),
            container_id: String::new(),
        };
        check_names(&process, &PROCESS_INFO_LABELS);
    }

    #[test]
    fn a_listener_line_is_what_the_prometheus_crate_writes() {
        let series = listener();
        let gauge = GaugeVec::new(
            Opts::new("listeners", NAMES[0].trim_start_matches("unassigned_port_"))
                .namespace(NAMESPACE),
            &LISTENER_LABELS,
        )
        .unwrap();
        let values = series.label_values();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        gauge.with_label_values(&values).set(2.0);
        let registry = Registry::new();
        registry.register(Box::new(gauge)).unwrap();
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut theirs)
            .unwrap();
        let mut ours = Vec::new();
        Family::new(&mut ours, NAMES[0], "listeners", Kind::Gauge).labelled(&series, 2);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }
}
