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
//! Labels arrive already resolved, built by `crate::model` (which decides
//! which ports are watched, the namespace name, the owner shown and whether
//! an allow rule covers the listener), through [`EventCounters::count_opened`]
//! and [`EventCounters::count_closed`] or the closures given to
//! [`EventCounters::listen_handler`] and [`EventCounters::destroy_handler`].
//!
//! Memory is bounded by the one series table
//! (`crate::metrics::series_table`): at most `MAX_SERIES` opened and
//! `MAX_SERIES` closed series, none older than `RETENTION`
//! ([`EventCounters::evicted`] tells tests how many went). At about 200
//! bytes a series, the worst case is near 4 MB.

use crate::kernel::events::destroy::DestroyEvent;
use crate::kernel::events::listen::{ListenEvent, Transition};
use crate::metrics::series_table::{MAX_SERIES, RETENTION, SeriesTable};
use crate::model::{ClosedLabels, NAMESPACE, OpenedLabels};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

struct SourceStatus {
    active: bool,
    /// The last reason logged, so each reason is logged once.
    logged_reason: Option<String>,
}

struct State {
    opened: SeriesTable<OpenedLabels, u64>,
    closed: SeriesTable<ClosedLabels, u64>,
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
                    opened: SeriesTable::new(RETENTION, MAX_SERIES),
                    closed: SeriesTable::new(RETENTION, MAX_SERIES),
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
        *self.lock().opened.touch(labels, Instant::now()) += 1;
    }

    /// One more watched-port socket destroyed.
    pub fn count_closed(&self, labels: ClosedLabels) {
        *self.lock().closed.touch(labels, Instant::now()) += 1;
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
        state.opened.len() + state.closed.len()
    }

    /// Series dropped so far by age or by the size bound.
    pub fn evicted(&self) -> u64 {
        let state = self.lock();
        state.opened.evicted() + state.closed.evicted()
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

fn families(
    opened: &[(&OpenedLabels, &u64)],
    closed: &[(&ClosedLabels, &u64)],
    status: &[(CaptureSource, bool)],
    lost: &[(CaptureSource, u64)],
) -> Vec<Box<dyn Collector>> {
    let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
    let opened_total = IntCounterVec::new(
        opts(
            "listener_opened_total",
            "Sockets that started listening on a watched port, from kernel events (however short-lived).",
        ),
        OpenedLabels::LABELS,
    )
    .unwrap();
    for (labels, count) in opened {
        opened_total
            .with_label_values(&labels.label_values())
            .inc_by(**count);
    }
    let closed_total = IntCounterVec::new(
        opts(
            "listener_closed_total",
            "Watched-port sockets (TCP listeners, bound UDP sockets) destroyed, from kernel events.",
        ),
        ClosedLabels::LABELS,
    )
    .unwrap();
    for (labels, count) in closed {
        closed_total
            .with_label_values(&labels.label_values())
            .inc_by(**count);
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
            protocol: crate::model::Protocol::Tcp,
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
            protocol: crate::model::Protocol::Udp,
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
            kernel_time: std::time::Duration::ZERO,
        };
        handler(event(276, Transition::Opened));
        handler(event(276, Transition::Closed));
        handler(event(8080, Transition::Opened));
        let state = counters.lock();
        assert_eq!(state.opened.sorted(), [(&opened(276, "nc"), &1)]);
        assert!(state.closed.is_empty());
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
        let kept = state.opened.sorted();
        assert!(
            kept.iter()
                .any(|(labels, _)| **labels == opened(276, &newest))
        );
        assert!(!kept.iter().any(|(labels, _)| **labels == opened(276, "p0")));
    }
}
