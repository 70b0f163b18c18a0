//! The event counters: what the kernel events add up to, as Prometheus
//! metrics with bounded memory.
//!
//! - `unassigned_port_listener_opened_total{port, protocol, process, netns, expected}`
//! - `unassigned_port_listener_closed_total{port, protocol, user, netns, expected}`
//! - `unassigned_port_event_capture_active{source="tracepoint"|"destroy"}`:
//!   1 while that source runs, 0 when it cannot (the reason is logged once)
//! - `unassigned_port_event_capture_lost_total{source}`: samples the kernel
//!   dropped (tracepoint) or receive-buffer overruns (destroy), read from
//!   the capture's own counters at scrape time.
//!
//! Labels arrive already resolved: the caller decides which ports are
//! watched, which namespace name and owner to show and whether an allow
//! rule covers the listener, through the closures given to
//! [`EventCounters::listen_handler`] and [`EventCounters::destroy_handler`].
//!
//! Memory is bounded like the sampler's: a series not incremented for
//! `RETENTION` is dropped, and at most `MAX_SERIES` opened and `MAX_SERIES`
//! closed series are kept (the stalest go first; `events_series_evicted`
//! is not exported, [`EventCounters::evicted`] tells tests). A series that
//! is dropped and comes back starts again from 0, which Prometheus reads as
//! a counter reset. At about 200 bytes a series, the worst case is near
//! 4 MB.

use crate::collect::collector::NAMESPACE;
use crate::kernel::events::destroy::DestroyEvent;
use crate::kernel::events::listen::{ListenEvent, Transition};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a series nobody increments stays in the metrics.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// Upper bound on opened series, and separately on closed series.
pub const MAX_SERIES: usize = 10_000;

/// Labels of one `listener_opened_total` series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenedLabels {
    pub port: u16,
    pub protocol: String,
    pub process: String,
    pub netns: String,
    pub expected: bool,
}

/// Labels of one `listener_closed_total` series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClosedLabels {
    pub port: u16,
    pub protocol: String,
    pub user: String,
    pub netns: String,
    pub expected: bool,
}

/// Which kernel event source a status or loss belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureSource {
    /// `sock:inet_sock_set_state` through perf.
    Tracepoint,
    /// sock_diag destroy groups.
    Destroy,
}

impl CaptureSource {
    pub const ALL: [CaptureSource; 2] = [CaptureSource::Tracepoint, CaptureSource::Destroy];

    pub fn as_str(self) -> &'static str {
        match self {
            CaptureSource::Tracepoint => "tracepoint",
            CaptureSource::Destroy => "destroy",
        }
    }
}

struct Series {
    count: u64,
    last_counted: Instant,
    /// Position in counting order: unique, so eviction keeps exactly the
    /// newest even when many series share one clock reading.
    last_order: u64,
}

/// Counts per label set, pruned by age and size.
struct Table<K> {
    series: HashMap<K, Series>,
    evicted: u64,
    next_order: u64,
}

impl<K: Clone + Eq + Hash + Ord> Table<K> {
    fn new() -> Table<K> {
        Table {
            series: HashMap::new(),
            evicted: 0,
            next_order: 0,
        }
    }

    fn count(&mut self, labels: K, now: Instant) {
        self.next_order += 1;
        let series = self.series.entry(labels).or_insert(Series {
            count: 0,
            last_counted: now,
            last_order: 0,
        });
        series.count += 1;
        series.last_counted = now;
        series.last_order = self.next_order;
        if self.series.len() > MAX_SERIES {
            self.prune(now);
        }
    }

    /// Drops expired series, then the stalest until a tenth of the room is
    /// free again (so a flood does not sort the table on every event).
    fn prune(&mut self, now: Instant) {
        let before = self.series.len();
        self.series
            .retain(|_, series| now.duration_since(series.last_counted) < RETENTION);
        if self.series.len() > MAX_SERIES {
            let keep = MAX_SERIES - MAX_SERIES / 10;
            let mut orders: Vec<u64> = self.series.values().map(|s| s.last_order).collect();
            orders.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = orders[keep - 1];
            self.series.retain(|_, series| series.last_order >= cutoff);
        }
        self.evicted += (before - self.series.len()) as u64;
    }

    fn sorted(&self) -> Vec<(&K, &Series)> {
        let mut rows: Vec<(&K, &Series)> = self.series.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows
    }
}

struct SourceStatus {
    active: bool,
    /// The last reason logged, so each reason is logged once.
    logged_reason: Option<String>,
}

struct State {
    opened: Table<OpenedLabels>,
    closed: Table<ClosedLabels>,
    status: HashMap<CaptureSource, SourceStatus>,
}

type LostReader = Box<dyn Fn() -> u64 + Send + Sync>;

/// The event counters and their Prometheus collector. A cheap handle:
/// clones share the same counts, so one clone is registered with the
/// Prometheus registry and others feed it from the capture threads.
#[derive(Clone)]
pub struct EventCounters {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    lost: Mutex<Vec<(CaptureSource, LostReader)>>,
    descs: Vec<Desc>,
}

impl Default for EventCounters {
    fn default() -> Self {
        EventCounters::new()
    }
}

impl EventCounters {
    /// Empty counters; both sources report inactive until told otherwise.
    pub fn new() -> EventCounters {
        let descs = families(&[], &[], &[], &[])
            .iter()
            .flat_map(|family| family.desc().into_iter().cloned())
            .collect();
        EventCounters {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    opened: Table::new(),
                    closed: Table::new(),
                    status: HashMap::new(),
                }),
                lost: Mutex::new(Vec::new()),
                descs,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One more listen on a watched port.
    pub fn count_opened(&self, labels: OpenedLabels) {
        self.lock().opened.count(labels, Instant::now());
    }

    /// One more watched-port socket destroyed.
    pub fn count_closed(&self, labels: ClosedLabels) {
        self.lock().closed.count(labels, Instant::now());
    }

    /// Records whether `source` runs. A reason for not running is logged
    /// once (again only if it changes).
    pub fn set_active(&self, source: CaptureSource, status: Result<(), &str>) {
        let mut state = self.lock();
        let entry = state.status.entry(source).or_insert(SourceStatus {
            active: false,
            logged_reason: None,
        });
        match status {
            Ok(()) => entry.active = true,
            Err(reason) => {
                entry.active = false;
                if entry.logged_reason.as_deref() != Some(reason) {
                    tracing::warn!(
                        source = source.as_str(),
                        "kernel event capture unavailable, short-lived listeners may go uncounted: {reason}"
                    );
                    entry.logged_reason = Some(reason.to_string());
                }
            }
        }
    }

    /// Exports `read()` as the lost total of `source`, read at each scrape
    /// (for instance the capture's `stats().lost`).
    pub fn track_lost(
        &self,
        source: CaptureSource,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let mut lost = self
            .shared
            .lost
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lost.retain(|(existing, _)| *existing != source);
        lost.push((source, Box::new(read)));
    }

    /// Series held now, opened and closed together.
    pub fn tracked_series(&self) -> usize {
        let state = self.lock();
        state.opened.series.len() + state.closed.series.len()
    }

    /// Series dropped so far by age or by the size bound.
    pub fn evicted(&self) -> u64 {
        let state = self.lock();
        state.opened.evicted + state.closed.evicted
    }

    /// A callback for [`super::ListenCapture::start`]: counts every
    /// `Opened` event that `label` gives labels for (`None`: not watched).
    /// Closes are counted from destroy events, which cover UDP too.
    pub fn listen_handler(
        &self,
        label: impl Fn(&ListenEvent) -> Option<OpenedLabels> + Send + 'static,
    ) -> impl FnMut(ListenEvent) + Send + 'static {
        let counters = self.clone();
        move |event: ListenEvent| {
            if event.transition == Transition::Opened
                && let Some(labels) = label(&event)
            {
                counters.count_opened(labels);
            }
        }
    }

    /// A callback for [`super::DestroyReader::start`]: counts every destroy
    /// event that `label` gives labels for (`None`: not watched).
    pub fn destroy_handler(
        &self,
        label: impl Fn(&DestroyEvent) -> Option<ClosedLabels> + Send + 'static,
    ) -> impl FnMut(DestroyEvent) + Send + 'static {
        let counters = self.clone();
        move |event: DestroyEvent| {
            if let Some(labels) = label(&event) {
                counters.count_closed(labels);
            }
        }
    }
}

fn expected_str(expected: bool) -> &'static str {
    if expected { "true" } else { "false" }
}

fn families(
    opened: &[(&OpenedLabels, &Series)],
    closed: &[(&ClosedLabels, &Series)],
    status: &[(CaptureSource, bool)],
    lost: &[(CaptureSource, u64)],
) -> Vec<Box<dyn Collector>> {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let opened_total = IntCounterVec::new(
        opts(
            "listener_opened_total",
            "Sockets that started listening on a watched port, from kernel events (however short-lived).",
        ),
        &["port", "protocol", "process", "netns", "expected"],
    )
    .unwrap();
    for (labels, series) in opened {
        let port = labels.port.to_string();
        opened_total
            .with_label_values(&[
                port.as_str(),
                &labels.protocol,
                &labels.process,
                &labels.netns,
                expected_str(labels.expected),
            ])
            .inc_by(series.count);
    }
    let closed_total = IntCounterVec::new(
        opts(
            "listener_closed_total",
            "Watched-port sockets (TCP listeners, bound UDP sockets) destroyed, from kernel events.",
        ),
        &["port", "protocol", "user", "netns", "expected"],
    )
    .unwrap();
    for (labels, series) in closed {
        let port = labels.port.to_string();
        closed_total
            .with_label_values(&[
                port.as_str(),
                &labels.protocol,
                &labels.user,
                &labels.netns,
                expected_str(labels.expected),
            ])
            .inc_by(series.count);
    }
    let active = IntGaugeVec::new(
        opts(
            "event_capture_active",
            "1 while this kernel event source runs, 0 when it cannot (see the log for why).",
        ),
        &["source"],
    )
    .unwrap();
    for (source, running) in status {
        active
            .with_label_values(&[source.as_str()])
            .set(i64::from(*running));
    }
    let lost_total = IntCounterVec::new(
        opts(
            "event_capture_lost_total",
            "Kernel events lost: perf samples dropped (tracepoint), receive-buffer overruns (destroy).",
        ),
        &["source"],
    )
    .unwrap();
    for (source, count) in lost {
        lost_total
            .with_label_values(&[source.as_str()])
            .inc_by(*count);
    }
    vec![
        Box::new(opened_total),
        Box::new(closed_total),
        Box::new(active),
        Box::new(lost_total),
    ]
}

impl Collector for EventCounters {
    fn desc(&self) -> Vec<&Desc> {
        self.shared.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let lost: Vec<(CaptureSource, u64)> = {
            let readers = self
                .shared
                .lost
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            readers
                .iter()
                .map(|(source, read)| (*source, read()))
                .collect()
        };
        let mut state = self.lock();
        let now = Instant::now();
        state.opened.prune(now);
        state.closed.prune(now);
        let status: Vec<(CaptureSource, bool)> = CaptureSource::ALL
            .iter()
            .map(|source| (*source, state.status.get(source).is_some_and(|s| s.active)))
            .collect();
        families(
            &state.opened.sorted(),
            &state.closed.sorted(),
            &status,
            &lost,
        )
        .iter()
        .flat_map(|family| family.collect())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn opened(port: u16, process: &str) -> OpenedLabels {
        OpenedLabels {
            port,
            protocol: "tcp".into(),
            process: process.into(),
            netns: "host".into(),
            expected: false,
        }
    }

    fn render(counters: EventCounters) -> String {
        let registry = Registry::new();
        registry.register(Box::new(counters)).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counts_render_with_their_labels() {
        let counters = EventCounters::new();
        counters.count_opened(opened(276, "nc"));
        counters.count_opened(opened(276, "nc"));
        counters.count_closed(ClosedLabels {
            port: 276,
            protocol: "udp".into(),
            user: "nobody".into(),
            netns: "host".into(),
            expected: true,
        });
        counters.set_active(CaptureSource::Tracepoint, Ok(()));
        counters.set_active(CaptureSource::Destroy, Err("no privilege"));
        counters.track_lost(CaptureSource::Tracepoint, || 3);
        let text = render(counters);
        assert!(text.contains(
            "unassigned_port_listener_opened_total{expected=\"false\",netns=\"host\",port=\"276\",process=\"nc\",protocol=\"tcp\"} 2"
        ), "{text}");
        assert!(text.contains(
            "unassigned_port_listener_closed_total{expected=\"true\",netns=\"host\",port=\"276\",protocol=\"udp\",user=\"nobody\"} 1"
        ), "{text}");
        assert!(text.contains("unassigned_port_event_capture_active{source=\"tracepoint\"} 1"));
        assert!(text.contains("unassigned_port_event_capture_active{source=\"destroy\"} 0"));
        assert!(text.contains("unassigned_port_event_capture_lost_total{source=\"tracepoint\"} 3"));
    }

    #[test]
    fn listen_handler_counts_labelled_opens_only() {
        use crate::kernel::events::listen::StreamProtocol;
        let counters = EventCounters::new();
        let mut handler = counters.listen_handler(|event: &ListenEvent| {
            (event.port == 276).then(|| opened(event.port, "nc"))
        });
        let event = |port: u16, transition: Transition| ListenEvent {
            transition,
            protocol: StreamProtocol::Tcp,
            address: std::net::Ipv4Addr::LOCALHOST.into(),
            port,
            pid: 1,
            tid: 1,
            skaddr: 0,
            listener_pid: 1,
            process: None,
            uid: None,
            netns: None,
            kernel_time: Duration::ZERO,
        };
        handler(event(276, Transition::Opened));
        handler(event(276, Transition::Closed));
        handler(event(8080, Transition::Opened));
        let state = counters.lock();
        assert_eq!(state.opened.series.len(), 1);
        assert_eq!(state.opened.series[&opened(276, "nc")].count, 1);
        assert!(state.closed.series.is_empty());
    }

    #[test]
    fn series_stay_bounded_and_the_newest_survive() {
        let counters = EventCounters::new();
        for n in 0..(MAX_SERIES + 500) {
            counters.count_opened(opened(276, &format!("p{n}")));
        }
        assert!(counters.tracked_series() <= MAX_SERIES);
        assert!(counters.evicted() >= 500);
        let newest = format!("p{}", MAX_SERIES + 499);
        let state = counters.lock();
        assert!(state.opened.series.contains_key(&opened(276, &newest)));
        assert!(!state.opened.series.contains_key(&opened(276, "p0")));
    }
}
