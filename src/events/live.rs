//! Kernel events in a running exporter: starts the listen capture and the
//! destroy reader, labels their events through `crate::model` (the same
//! judge and namespace namer as the snapshot), counts them, and keeps what
//! they learn in [`Changes`], which collection reads.
//!
//! - A listen event on a watched port counts `listener_opened_total`, moves
//!   the [`Changes`] generation (so the next collection dumps TCP again)
//!   and names its thread, whose namespace the next collection reads even
//!   if only that thread entered it.
//! - A listener closing (tracepoint) or a bound UDP socket destroyed
//!   (destroy groups) counts `listener_closed_total`. Its `netns` is the
//!   socket's namespace and its `user` the user of the process that held
//!   the socket, as the capture learnt them at listen time and remembered
//!   per socket. Destroy messages carry no uid: on Linux 6.18 the broadcast
//!   path zeroes `idiag_uid` and `idiag_inode` (checked with a UDP socket of
//!   uid 1001: the message said uid 0), so a UDP close carries the socket's
//!   uid as the last collection saw it ([`SeenUdpSockets`]; empty when no
//!   collection saw the socket).
//! - The destroy subscription hears the namespaces the socket source reads:
//!   it announces each one it opens (with the id our namespace gave it) or
//!   drops ([`NamespaceObserver`]), and [`DestroyNamespaces`] maps the id.
//! - Each listen and close on a watched port also goes to the event trail
//!   ([`Trail`]), when it is on, with the owner described here.
//! - Either source that cannot run leaves `event_capture_active` at 0 and
//!   says why once; the exporter then works as before (snapshots, and the
//!   sampler if configured).

use super::trail::line::TrailEvent;
use super::trail::{ListenerFacts, Trail};
use super::view::Changes;
use super::{
    CaptureSource, DestroyEvent, DestroyGroups, DestroyReader, DestroySubscription, EventCounters,
    ListenCapture, ListenEvent, PortFilter, Transition,
};
use crate::kernel::events::monotonic_now;
use crate::kernel::netns::NamespaceObserver;
use crate::kernel::procfs::ProcRoot;
use crate::model::event::EventSocket;
use crate::model::{ClosedLabels, Judge, NetnsNamer, OpenedLabels, Protocol};
use crate::owners::{ExeHashes, Owner, OwnerFaults, ProcessDescriber};
use crate::sockets::{ChangeHints, EventLinks, SeenUdpSockets};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The running event sources; dropping it stops them.
pub struct LiveEvents {
    /// The tracepoint capture, while it runs.
    _capture: Option<ListenCapture>,
    /// The destroy reader's namespace side, while it runs.
    destroy: Option<Arc<DestroyNamespaces>>,
    /// What the events learnt, for collection.
    changes: Arc<Changes>,
    /// Filled by collection, read when labelling UDP closes.
    udp_sockets: Arc<SeenUdpSockets>,
    /// The counters both feed; registered on the metric registry.
    pub counters: EventCounters,
}

/// How long a described owner is kept for the process's next events (a
/// sweep of older ones makes room when [`MAX_RECENT_OWNERS`] are kept).
/// Kept, not trusted: an owner is used again only for events made before
/// it was described (see [`Labeller::owner`]).
const OWNER_KEPT: Duration = Duration::from_secs(1);
/// Processes remembered at most (all are forgotten when that many were
/// described within [`OWNER_KEPT`]).
const MAX_RECENT_OWNERS: usize = 4096;

/// How events become labels: the model's judge and namer, and the owner.
struct Labeller {
    judge: Judge,
    namer: NetnsNamer,
    /// Owners of processes that open and close listeners.
    describer: Mutex<ProcessDescriber>,
    /// pid -> its owner, and when describing it began (CLOCK_MONOTONIC,
    /// the clock of the kernel's event timestamps).
    recent_owners: Mutex<HashMap<u32, (Owner, Duration)>>,
    /// The exporter's own namespace (the destroy reader's key for it).
    own_netns: u64,
    /// UDP sockets (and their uid) the last collections saw.
    udp_sockets: Arc<SeenUdpSockets>,
    /// One log line per event, when the trail is on.
    trail: Option<Trail>,
}

impl Labeller {
    /// The owner of `pid` (none for a destroy message), described as a
    /// scrape describes it; the event's comm if the process is gone.
    ///
    /// Every description is taken after the event it labels, so one begun
    /// after an event made at `made_at` is as true of it as a fresh one and
    /// is used again. Describing reads eight `/proc` files (status, cgroup,
    /// exe, loginuid, ...); a storm's events arrive a pass of the draining
    /// thread at a time, all made before the first of them is described,
    /// so a storming process is described once a pass, not once an event
    /// (once an event, 30,000 listens a second made those reads most of
    /// the describing thread's work).
    fn owner(&self, pid: Option<u32>, comm: &str, made_at: Duration) -> Owner {
        let mut owner = pid
            .and_then(|pid| {
                if let Some(owner) = self.owner_described_since(pid, made_at) {
                    return Some(owner);
                }
                let began = monotonic_now();
                let mut describer = self.describer.lock().unwrap_or_else(|p| p.into_inner());
                let owner = describer
                    .describe(&[pid], &mut OwnerFaults::default())
                    .remove(&pid)?;
                drop(describer);
                let mut recent = self.recent_owners.lock().unwrap_or_else(|p| p.into_inner());
                if recent.len() >= MAX_RECENT_OWNERS {
                    recent.retain(|_, (_, at)| began.saturating_sub(*at) < OWNER_KEPT);
                    if recent.len() >= MAX_RECENT_OWNERS {
                        recent.clear(); // that many listening processes in a second
                    }
                }
                recent.insert(pid, (owner.clone(), began));
                Some(owner)
            })
            .unwrap_or_default();
        if owner.process.is_empty() {
            owner.process = comm.to_string();
        }
        owner
    }

    /// The owner of `pid` if describing it began at or after `made_at`.
    fn owner_described_since(&self, pid: u32, made_at: Duration) -> Option<Owner> {
        let recent = self.recent_owners.lock().unwrap_or_else(|p| p.into_inner());
        let (owner, began) = recent.get(&pid)?;
        (*began >= made_at).then(|| owner.clone())
    }

    /// The owner of the process that listened; when it is gone (a close at
    /// exit), the uid learnt at listen time still names its user.
    fn listener(&self, event: &ListenEvent) -> Owner {
        let mut owner = self.owner(
            Some(event.listener_pid),
            event.process.as_deref().unwrap_or(""),
            event.kernel_time,
        );
        if owner.uid.is_none()
            && let Some(uid) = event.uid
        {
            owner.uid = Some(uid);
            let mut describer = self.describer.lock().unwrap_or_else(|p| p.into_inner());
            owner.user = describer.user_name(uid);
        }
        owner
    }

    fn listen(&self, event: &ListenEvent, counters: &EventCounters) {
        let Some(protocol) = Protocol::of_ip_protocol(event.protocol.number()) else {
            return;
        };
        if !self.judge.is_watched(protocol, event.port) {
            return;
        }
        let socket = EventSocket {
            protocol,
            port: event.port,
            netns: event.netns,
        };
        let owner = self.listener(event);
        let trail = |kind, netns: &str, expected| {
            if let Some(trail) = &self.trail {
                let facts = ListenerFacts {
                    event: kind,
                    protocol,
                    port: event.port,
                    address: Some(event.address),
                    netns,
                    expected,
                    at: Some(event.kernel_time),
                    pid: Some(event.listener_pid),
                };
                trail.listener(facts, &owner);
            }
        };
        match event.transition {
            Transition::Opened => {
                let labels = OpenedLabels::opened(socket, &owner, &self.judge, &self.namer);
                trail(TrailEvent::ListenerOpened, &labels.netns, labels.expected);
                counters.count_opened(labels)
            }
            Transition::Closed => {
                let labels = ClosedLabels::new(socket, &owner, &self.judge, &self.namer);
                trail(TrailEvent::ListenerClosed, &labels.netns, labels.expected);
                counters.count_closed(labels)
            }
        }
    }

    fn destroyed(&self, event: &DestroyEvent) -> Option<ClosedLabels> {
        let protocol = Protocol::of_ip_protocol(event.socket.protocol.number())?;
        if !self.judge.is_watched(protocol, event.socket.port) {
            return None;
        }
        let socket = EventSocket {
            protocol,
            port: event.socket.port,
            netns: Some(event.netns),
        };
        let mut owner = Owner {
            uid: self.udp_sockets.uid(
                (event.netns != self.own_netns).then_some(event.netns),
                event.socket.address,
                event.socket.port,
            ),
            ..Owner::default()
        };
        if let Some(uid) = owner.uid {
            let mut describer = self.describer.lock().unwrap_or_else(|p| p.into_inner());
            owner.user = describer.user_name(uid);
        }
        let labels = ClosedLabels::new(socket, &owner, &self.judge, &self.namer);
        if let Some(trail) = &self.trail {
            let facts = ListenerFacts {
                event: TrailEvent::ListenerClosed,
                protocol,
                port: event.socket.port,
                address: Some(event.socket.address),
                netns: &labels.netns,
                expected: labels.expected,
                at: None,
                pid: None,
            };
            trail.listener(facts, &owner);
        }
        Some(labels)
    }
}

impl LiveEvents {
    /// Starts both sources (each may fail on its own and say why); owners
    /// are hashed through `hashes`, events written to `trail` if given.
    pub fn start(
        judge: Judge,
        namer: NetnsNamer,
        proc_root: &ProcRoot,
        hashes: ExeHashes,
        trail: Option<Trail>,
    ) -> LiveEvents {
        let counters = EventCounters::new();
        let changes = Arc::new(Changes::default());
        let max_port = judge.watch().max_watched_port();
        let own_netns = proc_root.own_net_namespace().unwrap_or(0);
        let labeller = Arc::new(Labeller {
            judge,
            namer,
            describer: Mutex::new(ProcessDescriber::new(proc_root.clone()).with_exe_hashes(hashes)),
            recent_owners: Mutex::default(),
            own_netns,
            udp_sockets: Arc::default(),
            trail,
        });
        let udp_sockets = Arc::clone(&labeller.udp_sockets);
        let capture = start_capture(max_port, proc_root, &labeller, &counters, &changes);
        // With the tracepoint, TCP closes are known already: UDP groups only.
        let groups = if capture.is_some() {
            DestroyGroups::Udp
        } else {
            DestroyGroups::TcpAndUdp
        };
        let destroy = start_reader(max_port, groups, own_netns, &labeller, &counters);
        LiveEvents {
            _capture: capture,
            destroy,
            changes,
            udp_sockets,
            counters,
        }
    }

    /// The links a socket source is opened with: this side's view of what
    /// changed, and the observer that follows its namespace set.
    pub fn links(&self) -> EventLinks {
        EventLinks {
            hints: Some(Arc::clone(&self.changes) as Arc<dyn ChangeHints>),
            namespaces: self
                .destroy
                .as_ref()
                .map(|destroy| Arc::clone(destroy) as Arc<dyn NamespaceObserver>),
            udp_sockets: Some(Arc::clone(&self.udp_sockets)),
        }
    }
}

fn start_capture(
    max_port: u16,
    proc_root: &ProcRoot,
    labeller: &Arc<Labeller>,
    counters: &EventCounters,
    changes: &Arc<Changes>,
) -> Option<ListenCapture> {
    let handler = {
        let labeller = Arc::clone(labeller);
        let counters = counters.clone();
        let changes = Arc::clone(changes);
        move |event: ListenEvent| {
            changes.changed();
            if event.transition == Transition::Opened {
                changes.note_listener(event.pid, event.tid);
            }
            labeller.listen(&event, &counters);
        }
    };
    // Only watched ports are described: a storm on another port below
    // `max_port` costs the draining thread a lookup, nothing more.
    let judge = labeller.judge.clone();
    let watched = PortFilter::only(max_port, move |protocol, port| {
        Protocol::of_ip_protocol(protocol.number()).is_some_and(|p| judge.is_watched(p, port))
    });
    match ListenCapture::start(watched, proc_root.procfs(), handler) {
        Ok(capture) => {
            counters.set_active(CaptureSource::Tracepoint, Ok(()));
            let stats = Arc::clone(capture.stats());
            let watched = Arc::clone(changes);
            counters.track_lost(CaptureSource::Tracepoint, move || {
                let lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed);
                if lost > 0 {
                    // Lost samples may hide a listen: dump again.
                    watched.changed();
                }
                lost
            });
            changes.set_learnt_namespaces(capture.namespaces());
            changes.set_watching(true);
            Some(capture)
        }
        Err(unavailable) => {
            counters.set_active(CaptureSource::Tracepoint, Err(&unavailable.reason));
            None
        }
    }
}

/// The destroy reader, hearing the namespaces the socket source reads:
/// follows its namespace set through [`NamespaceObserver`].
pub struct DestroyNamespaces {
    reader: DestroyReader,
}

impl NamespaceObserver for DestroyNamespaces {
    fn entered(&self, inode: u64, nsid: Option<i32>) {
        let heard = match nsid {
            Some(nsid) => self.reader.hear_namespace(nsid, inode),
            None => Err(std::io::Error::other("the namespace has no id")),
        };
        if let Err(err) = heard {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::warn!(netns = inode, error = %err, "cannot hear other namespaces' destroy broadcasts: their UDP closes are not counted");
            });
        }
    }

    fn left(&self, inode: u64) {
        self.reader.forget_namespace(inode);
    }
}

fn start_reader(
    max_port: u16,
    groups: DestroyGroups,
    own_netns: u64,
    labeller: &Arc<Labeller>,
    counters: &EventCounters,
) -> Option<Arc<DestroyNamespaces>> {
    let labeller = Arc::clone(labeller);
    let handler = counters.destroy_handler(move |event| labeller.destroyed(event));
    // Opened in our namespace; the others are heard as they are opened.
    let started = DestroySubscription::open(max_port, groups)
        .and_then(|subscription| DestroyReader::start(own_netns, subscription, handler));
    match started {
        Ok(reader) => {
            let destroy = Arc::new(DestroyNamespaces { reader });
            counters.set_active(CaptureSource::Destroy, Ok(()));
            let watched = Arc::clone(&destroy);
            counters.track_lost(CaptureSource::Destroy, move || {
                watched
                    .reader
                    .stats()
                    .overruns
                    .load(std::sync::atomic::Ordering::Relaxed)
            });
            Some(destroy)
        }
        Err(err) => {
            let reason = format!("cannot join the sock_diag destroy groups: {err}");
            counters.set_active(CaptureSource::Destroy, Err(&reason));
            None
        }
    }
}
