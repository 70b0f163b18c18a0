//! Kernel events in a running exporter: starts the listen capture and the
//! destroy reader, labels their events the way the listener gauge is
//! labelled, counts them, and tells the socket source what changed.
//!
//! - A listen event on a watched port counts `listener_opened_total`, moves
//!   the [`KernelEvents`] generation (so the next collection dumps TCP
//!   again) and names its thread, whose namespace the next collection reads
//!   even if only that thread entered it.
//! - A listener closing (tracepoint) or a bound UDP socket destroyed
//!   (destroy groups) counts `listener_closed_total`. `netns` is the
//!   socket's namespace and `user` the user of the process that held the
//!   socket, as learnt when it started listening (the capture remembers
//!   both per socket). Destroy messages carry no uid: on Linux 6.18 the
//!   broadcast path zeroes `idiag_uid` and `idiag_inode` (checked with a
//!   uid-1001 UDP socket: the message said uid 0), so a UDP close carries
//!   the socket's uid as the last collection saw it (empty when no
//!   collection saw the socket).
//! - Either source that cannot run leaves `event_capture_active` at 0 and
//!   says why once; the exporter then works as before (snapshots, and the
//!   sampler if configured).

use super::{
    CaptureSource, ClosedLabels, DestroyEvent, DestroyGroups, DestroyReader, DestroySubscription,
    EventCounters, ListenCapture, ListenEvent, OpenedLabels, Transition,
};
use crate::kernel::procfs::ProcRoot;
use crate::owners::{OwnerFaults, ProcessDescriber};
use crate::policy::allow::Subject;
use crate::policy::registry::Transport;
use crate::policy::watch::WatchSet;
use crate::sockets::{DestroyLink, KernelEvents};
use std::sync::{Arc, Mutex};

/// The running event sources; dropping it stops them.
pub struct LiveEvents {
    /// The tracepoint capture, while it runs.
    _capture: Option<ListenCapture>,
    /// The destroy reader, while it runs (namespace channels join it).
    _reader: Option<Arc<DestroyReader>>,
    /// The counters both feed; registered on the metric registry.
    pub counters: EventCounters,
}

/// How events become labels.
struct Labeller {
    watch: Arc<WatchSet>,
    /// The exporter's own namespace, labelled "host".
    own_netns: u64,
    /// Users of processes that close listeners.
    describer: Mutex<ProcessDescriber>,
}

impl Labeller {
    fn netns(&self, inode: Option<u64>) -> String {
        match inode {
            Some(inode) if inode != self.own_netns => inode.to_string(),
            _ => crate::collect::collector::HOST_NETNS.to_string(),
        }
    }

    fn user_name(&self, uid: Option<u32>) -> String {
        let Some(uid) = uid else {
            return String::new();
        };
        let mut describer = self.describer.lock().unwrap_or_else(|p| p.into_inner());
        describer.user_name(uid)
    }

    /// Whether an allow rule covers a listener owned by `pid` (none for a
    /// destroy message), judged on the facts a scrape uses: exe, user,
    /// unit, container, comm (the event's, if the process is already gone).
    fn expected(&self, transport: Transport, port: u16, pid: Option<u32>, comm: &str) -> bool {
        let mut owner = pid
            .and_then(|pid| {
                let mut describer = self.describer.lock().unwrap_or_else(|p| p.into_inner());
                describer
                    .describe(&[pid], &mut OwnerFaults::default())
                    .remove(&pid)
            })
            .unwrap_or_default();
        if owner.process.is_empty() {
            owner.process = comm.to_string();
        }
        self.watch
            .is_expected_subject(Subject::Listener(transport, port), &owner.facts())
    }

    fn listen(&self, event: &ListenEvent, counters: &EventCounters) {
        if !self.watch.is_watched(Transport::Tcp, event.port) {
            return;
        }
        let process = event.process.clone().unwrap_or_default();
        let expected = self.expected(
            Transport::Tcp,
            event.port,
            Some(event.listener_pid),
            &process,
        );
        let netns = self.netns(event.netns);
        let protocol = event.protocol.as_str().to_string();
        match event.transition {
            Transition::Opened => counters.count_opened(OpenedLabels {
                port: event.port,
                protocol,
                process,
                netns,
                expected,
            }),
            Transition::Closed => counters.count_closed(ClosedLabels {
                port: event.port,
                protocol,
                user: self.user_name(event.uid),
                netns,
                expected,
            }),
        }
    }

    fn destroyed(&self, event: &DestroyEvent, sockets: &KernelEvents) -> Option<ClosedLabels> {
        let transport = match event.socket.protocol.as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return None,
        };
        if !self.watch.is_watched(transport, event.socket.port) {
            return None;
        }
        Some(ClosedLabels {
            port: event.socket.port,
            protocol: transport.as_str().to_string(),
            user: self.user_name(sockets.udp_uid(
                (event.netns != self.own_netns).then_some(event.netns),
                event.socket.address,
                event.socket.port,
            )),
            netns: self.netns(Some(event.netns)),
            expected: self.expected(transport, event.socket.port, None, ""),
        })
    }
}

impl LiveEvents {
    /// Starts both sources. `kernel_events` is the socket source's link
    /// (netlink only); without it nothing is started.
    pub fn start(
        watch: Arc<WatchSet>,
        proc_root: &ProcRoot,
        kernel_events: Option<Arc<KernelEvents>>,
    ) -> LiveEvents {
        let counters = EventCounters::new();
        let Some(kernel_events) = kernel_events else {
            let reason = "the netstat2 backend has no kernel events";
            counters.set_active(CaptureSource::Tracepoint, Err(reason));
            counters.set_active(CaptureSource::Destroy, Err(reason));
            return LiveEvents {
                _capture: None,
                _reader: None,
                counters,
            };
        };
        let max_port = watch.max_watched_port();
        let labeller = Arc::new(Labeller {
            own_netns: proc_root.own_net_namespace().unwrap_or(0),
            watch,
            describer: Mutex::new(ProcessDescriber::new(proc_root.clone())),
        });
        let capture = start_capture(max_port, proc_root, &labeller, &counters, &kernel_events);
        // With the tracepoint, TCP closes are known already: UDP groups only.
        let groups = if capture.is_some() {
            DestroyGroups::Udp
        } else {
            DestroyGroups::TcpAndUdp
        };
        let reader = start_reader(max_port, groups, &labeller, &counters, &kernel_events);
        LiveEvents {
            _capture: capture,
            _reader: reader,
            counters,
        }
    }
}

fn start_capture(
    max_port: u16,
    proc_root: &ProcRoot,
    labeller: &Arc<Labeller>,
    counters: &EventCounters,
    kernel_events: &Arc<KernelEvents>,
) -> Option<ListenCapture> {
    let handler = {
        let labeller = Arc::clone(labeller);
        let counters = counters.clone();
        let kernel_events = Arc::clone(kernel_events);
        move |event: ListenEvent| {
            kernel_events.changed();
            if event.transition == Transition::Opened {
                kernel_events.note_listener(event.pid, event.tid);
            }
            labeller.listen(&event, &counters);
        }
    };
    match ListenCapture::start(max_port, proc_root.procfs(), handler) {
        Ok(capture) => {
            counters.set_active(CaptureSource::Tracepoint, Ok(()));
            let stats = Arc::clone(capture.stats());
            let events = Arc::clone(kernel_events);
            counters.track_lost(CaptureSource::Tracepoint, move || {
                let lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed);
                if lost > 0 {
                    // Lost samples may hide a listen: dump again.
                    events.changed();
                }
                lost
            });
            let _ = kernel_events.learnt_namespaces.set(capture.namespaces());
            kernel_events.set_watching(true);
            Some(capture)
        }
        Err(unavailable) => {
            counters.set_active(CaptureSource::Tracepoint, Err(&unavailable.reason));
            None
        }
    }
}

fn start_reader(
    max_port: u16,
    groups: DestroyGroups,
    labeller: &Arc<Labeller>,
    counters: &EventCounters,
    kernel_events: &Arc<KernelEvents>,
) -> Option<Arc<DestroyReader>> {
    let own_netns = labeller.own_netns;
    let labeller = Arc::clone(labeller);
    let sockets = Arc::clone(kernel_events);
    let handler = counters.destroy_handler(move |event| labeller.destroyed(event, &sockets));
    let started = DestroyReader::start(handler).and_then(|reader| {
        // The exporter's own namespace; the others join as they are opened.
        let own = DestroySubscription::open(max_port, groups)?;
        reader.add(own_netns, own)?;
        Ok(reader)
    });
    match started {
        Ok(reader) => {
            let reader = Arc::new(reader);
            counters.set_active(CaptureSource::Destroy, Ok(()));
            let watched = Arc::clone(&reader);
            counters.track_lost(CaptureSource::Destroy, move || {
                watched
                    .stats()
                    .overruns
                    .load(std::sync::atomic::Ordering::Relaxed)
            });
            let link = DestroyLink {
                reader: Arc::clone(&reader),
                groups,
                max_port,
            };
            let _ = kernel_events.destroy.set(link);
            Some(reader)
        }
        Err(err) => {
            let reason = format!("cannot join the sock_diag destroy groups: {err}");
            counters.set_active(CaptureSource::Destroy, Err(&reason));
            None
        }
    }
}
