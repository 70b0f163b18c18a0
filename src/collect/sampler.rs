//! `--collector.sample-interval`: sightings of listeners between scrapes.
//!
//! A scrape is a snapshot: a backdoor that listens for five seconds between
//! two scrapes fifteen seconds apart is never seen. The sampler looks at the
//! socket table on its own thread at a shorter interval and counts, for each
//! (port, protocol, process, netns, expected) as the model labels a sighting,
//! how many samples saw it and when it was last seen. The sightings live in
//! the one bounded series table (`crate::metrics::series_table`: unseen for
//! an hour, dropped; at most 10,000, the stalest going first), so memory
//! stays bounded whatever churns on the host. The sampler reports its own
//! cost. Samples take the collector's quiet path: they neither count
//! collection errors nor change what the next scrape reports.

use crate::collect::collector::ListenerCollector;
use crate::metrics::series_table::{MAX_SERIES, RETENTION, SeriesTable};
use crate::model::Snapshot;
use crate::model::{NAMESPACE, SightingLabels};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the samples say of one listener.
struct Sighting {
    samples: u64,
    last_seen: SystemTime,
}

impl Default for Sighting {
    fn default() -> Sighting {
        Sighting {
            samples: 0,
            last_seen: UNIX_EPOCH,
        }
    }
}

struct Table {
    sightings: SeriesTable<SightingLabels, Sighting>,
    samples: u64,
    busy: Duration,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            sightings: SeriesTable::new(RETENTION, MAX_SERIES),
            samples: 0,
            busy: Duration::ZERO,
        }
    }
}

impl Table {
    /// Counts one sample: each listener it saw once, however many sockets.
    fn record(&mut self, snapshot: &Snapshot, now: SystemTime, started: Instant) {
        let mut seen_this_time = HashSet::new();
        for series in &snapshot.listeners {
            let labels = SightingLabels::of(series);
            if !seen_this_time.insert(labels.clone()) {
                continue;
            }
            let sighting = self.sightings.touch(labels, started);
            sighting.samples += 1;
            sighting.last_seen = now;
        }
        self.sightings.prune(started);
        self.samples += 1;
    }
}

/// The sampler's shared state, and its Prometheus collector.
pub struct Sampler {
    table: Arc<Mutex<Table>>,
    descs: Vec<Desc>,
}

impl Sampler {
    /// Starts the sampling thread; it stops when the returned value is dropped.
    pub fn start(collector: Arc<ListenerCollector>, interval: Duration) -> Sampler {
        let table = Arc::new(Mutex::new(Table::default()));
        let weak = Arc::downgrade(&table);
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || sample_loop(collector, weak, interval))
            .expect("spawn the sampler thread");
        let descs = families(&Table::default())
            .iter()
            .flat_map(|vec| vec.desc().into_iter().cloned())
            .collect();
        Sampler { table, descs }
    }
}

fn sample_loop(collector: Arc<ListenerCollector>, table: Weak<Mutex<Table>>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(table) = table.upgrade() else {
            return;
        };
        let started = Instant::now();
        let snapshot = collector.sample();
        let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
        table.record(&snapshot, SystemTime::now(), started);
        table.busy += started.elapsed();
    }
}

fn families(table: &Table) -> Vec<Box<dyn Collector>> {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let sightings = IntCounterVec::new(
        opts(
            "listener_sightings_total",
            "Background samples that saw a listener on a watched port (see --collector.sample-interval).",
        ),
        SightingLabels::LABELS,
    )
    .unwrap();
    let last_seen = GaugeVec::new(
        opts(
            "listener_last_seen_timestamp_seconds",
            "When a background sample last saw this listener (Unix time).",
        ),
        SightingLabels::LABELS,
    )
    .unwrap();
    for (key, sighting) in table.sightings.sorted() {
        let labels = key.label_values();
        sightings
            .with_label_values(&labels)
            .inc_by(sighting.samples);
        let seconds = sighting
            .last_seen
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        last_seen.with_label_values(&labels).set(seconds);
    }
    let samples = IntCounterVec::new(
        opts("sampler_samples_total", "Background samples taken."),
        &[],
    )
    .unwrap();
    samples.with_label_values::<&str>(&[]).inc_by(table.samples);
    let busy = CounterVec::new(
        opts(
            "sampler_duration_seconds_total",
            "Time spent sampling in the background: its own cost (rate() gives the busy fraction).",
        ),
        &[],
    )
    .unwrap();
    busy.with_label_values::<&str>(&[])
        .inc_by(table.busy.as_secs_f64());
    let tracked = GaugeVec::new(
        opts(
            "sampler_tracked_listeners",
            "Listeners the sampler remembers (bounded).",
        ),
        &[],
    )
    .unwrap();
    tracked
        .with_label_values::<&str>(&[])
        .set(table.sightings.len() as f64);
    vec![
        Box::new(sightings),
        Box::new(last_seen),
        Box::new(samples),
        Box::new(busy),
        Box::new(tracked),
    ]
}

impl Collector for Sampler {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        families(&table).iter().flat_map(|c| c.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::netns::Mode;
    use crate::model::{ListenerSeries, Protocol};

    fn series(port: u16, process: &str, address: &str) -> ListenerSeries {
        ListenerSeries {
            port,
            protocol: Protocol::Tcp,
            family: "ipv4",
            address: address.into(),
            process: process.into(),
            pid: "1".into(),
            user: "root".into(),
            iana: "unassigned",
            expected: false,
            netns: "host".into(),
            container_id: String::new(),
            pod_uid: String::new(),
            exposure: "any",
            dual_stack: "false",
            interface: String::new(),
            holder: crate::model::Holder::Process,
            sockets: 1,
        }
    }

    fn snapshot(listeners: Vec<ListenerSeries>) -> Snapshot {
        Snapshot {
            listeners,
            raw_sockets: Vec::new(),
            processes: Vec::new(),
            rpc_programs: Vec::new(),
            forwarded: Vec::new(),
            duration: Duration::ZERO,
            success: true,
            unprivileged_port_start: Vec::new(),
            namespaces_read: 1,
            namespaces_failed: 0,
            udp_staleness: Duration::ZERO,
            coverage: Vec::new(),
            netns_mode: Mode::Host,
        }
    }

    #[test]
    fn a_sample_counts_each_listener_once_however_many_addresses() {
        let mut table = Table::default();
        let now = SystemTime::now();
        let two_addresses = snapshot(vec![
            series(276, "nc", "0.0.0.0"),
            series(276, "nc", "127.0.0.1"),
            series(277, "nc", "0.0.0.0"),
        ]);
        table.record(&two_addresses, now, Instant::now());
        table.record(&two_addresses, now, Instant::now());
        let rows: Vec<(u16, u64)> = table
            .sightings
            .sorted()
            .iter()
            .map(|(labels, sighting)| (labels.port, sighting.samples))
            .collect();
        assert_eq!(rows, [(276, 2), (277, 2)]);
        assert_eq!(table.samples, 2);
    }

    #[test]
    fn one_sample_with_more_listeners_than_the_cap_stays_within_it() {
        let mut table = Table::default();
        let crowd: Vec<ListenerSeries> = (0..MAX_SERIES + 100)
            .map(|n| series(276, &format!("p{n}"), "0.0.0.0"))
            .collect();
        // Every sighting of one sample shares one instant: the cap must hold
        // anyway.
        table.record(&snapshot(crowd), SystemTime::now(), Instant::now());
        assert!(
            table.sightings.len() <= MAX_SERIES,
            "{}",
            table.sightings.len()
        );
        assert!(table.sightings.evicted() >= 100);
    }
}
