//! `--collector.sample-interval`: sightings of listeners between scrapes.
//!
//! A scrape is a snapshot: a backdoor that listens for five seconds between
//! two scrapes fifteen seconds apart is never seen. The sampler looks at the
//! socket table on its own thread at a shorter interval and counts, for each
//! (port, protocol, process, netns, expected), how many samples saw it and when it was
//! last seen. Entries unseen for an hour are dropped, and at most
//! `MAX_TRACKED` are kept (the stalest go first), so memory stays bounded
//! whatever churns on the host. The sampler reports its own cost. Samples
//! take the collector's quiet path: they neither count collection errors nor
//! change what the next scrape reports.

use crate::collect::collector::{ListenerCollector, NAMESPACE};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a listener no sample has seen stays in the metrics.
const RETENTION: Duration = Duration::from_secs(3600);
/// Upper bound on remembered listeners.
pub const MAX_TRACKED: usize = 10_000;

const SIGHTING_LABELS: [&str; 5] = ["port", "protocol", "process", "netns", "expected"];

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    port: u16,
    protocol: &'static str,
    process: String,
    netns: String,
    /// Whether an allow rule covers it, so alerts can skip expected ones.
    expected: bool,
}

struct Sighting {
    samples: u64,
    last_seen: SystemTime,
    last_seen_at: Instant,
}

#[derive(Default)]
struct Table {
    sightings: HashMap<Key, Sighting>,
    samples: u64,
    busy: Duration,
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
        let now = SystemTime::now();
        let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen_this_time = std::collections::HashSet::new();
        for series in &snapshot.listeners {
            let key = Key {
                port: series.port,
                protocol: series.transport.as_str(),
                process: series.process.clone(),
                netns: series.netns.clone(),
                expected: series.expected,
            };
            if !seen_this_time.insert(key.clone()) {
                continue; // one count per sample, however many sockets
            }
            let entry = table.sightings.entry(key).or_insert(Sighting {
                samples: 0,
                last_seen: now,
                last_seen_at: started,
            });
            entry.samples += 1;
            entry.last_seen = now;
            entry.last_seen_at = started;
        }
        table
            .sightings
            .retain(|_, sighting| sighting.last_seen_at.elapsed() < RETENTION);
        if table.sightings.len() > MAX_TRACKED {
            let mut ages: Vec<Instant> = table.sightings.values().map(|s| s.last_seen_at).collect();
            ages.sort_unstable();
            let cutoff = ages[table.sightings.len() - MAX_TRACKED];
            table.sightings.retain(|_, s| s.last_seen_at >= cutoff);
        }
        table.samples += 1;
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
        &SIGHTING_LABELS,
    )
    .unwrap();
    let last_seen = GaugeVec::new(
        opts(
            "listener_last_seen_timestamp_seconds",
            "When a background sample last saw this listener (Unix time).",
        ),
        &SIGHTING_LABELS,
    )
    .unwrap();
    let mut keys: Vec<(&Key, &Sighting)> = table.sightings.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, sighting) in keys {
        let port = key.port.to_string();
        let expected = if key.expected { "true" } else { "false" };
        let labels = [
            port.as_str(),
            key.protocol,
            key.process.as_str(),
            key.netns.as_str(),
            expected,
        ];
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
