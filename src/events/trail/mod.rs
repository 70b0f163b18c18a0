//! The event trail: one log line for every listen and close on a watched
//! port (kernel events) and for every packet or raw socket and forwarded
//! port at the first collection that sees it, with the whole story of its
//! process (a forward has none of its own): pid,
//! parent, executable and its SHA-256, command line, user, login user,
//! container and pod (the keys are listed in [`line`]).
//!
//! Counters must not carry a pid or a command line (cardinality); a log
//! line may, and a listener that lived 5 ms between two scrapes is then
//! still fully described where a responder looks: the logs (Loki,
//! journald).
//!
//! The trail never slows the event path or the scrape:
//! - the line budget (`--log.events-per-second`, [`budget`]) is checked
//!   first, before anything is read; a refused event costs one lock;
//! - an admitted event reads what only the live process can give (its
//!   command line, an open handle on its executable): a few microseconds;
//! - the line goes through a bounded queue ([`QUEUE`]) to the trail's own
//!   thread, which hashes the executable if the cache does not know it yet
//!   (`crate::owners::exe_hash`) and writes the line. A full queue drops
//!   the line (counted as suppressed), never waits.
//!
//! Every second in which lines were left out ends with one notice,
//! `event=lines_suppressed suppressed=N`, so the lines written plus the
//! notices' counts add up to the events. The counters themselves count
//! every event whatever the trail wrote.
//!
//! `--log.events=false` turns the trail off; so does a `--log.level` above
//! info, at which its lines would not be written anyway.

pub mod budget;
pub mod line;

use crate::kernel::events::monotonic_now;
use crate::kernel::procfs::ProcRoot;
use crate::model::{ForwardedSeries, Judge, NetnsNamer, Protocol, RawSocketSeries};
use crate::owners::{ExeHashes, Owner};
use crate::policy::exposure;
use crate::sockets::SeenRawSocket;
use budget::Budget;
use line::{
    CMDLINE_READ, Described, ForwardKeys, LATE_AFTER, TrailEvent, TrailLine, render_cmdline,
};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines waiting for the trail thread.
pub const QUEUE: usize = 256;

/// A line on its way to the trail thread, with the executable opened while
/// its process lived (when its hash is not cached yet).
struct Pending {
    line: TrailLine,
    exe: Option<File>,
}

/// A handle on the trail; clones share it. The thread ends when the last
/// handle is dropped, after a last suppression notice.
#[derive(Clone)]
pub struct Trail {
    shared: Arc<Shared>,
}

struct Shared {
    lines: SyncSender<Pending>,
    budget: Arc<Budget>,
    proc_root: ProcRoot,
    /// (namespace, inode) of the packet and raw sockets the last
    /// collection saw: a socket not in it is new.
    raw_seen: Mutex<HashSet<(Option<u64>, u64)>>,
    /// The forwarded-port series the last collection saw (their count
    /// aside): a series not in it is new.
    forwarded_seen: Mutex<BTreeSet<ForwardedSeries>>,
}

/// What a listen or close event says about its socket, labelled.
#[derive(Clone, Copy, Debug)]
pub struct ListenerFacts<'a> {
    pub event: TrailEvent,
    pub protocol: Protocol,
    pub port: u16,
    /// The bound address, where the event carries it.
    pub address: Option<IpAddr>,
    /// The `netns` label.
    pub netns: &'a str,
    pub expected: bool,
    /// When the kernel saw it, on CLOCK_MONOTONIC (tracepoint events).
    pub at: Option<Duration>,
    /// The process the event names (the one that listened), even when it
    /// could not be described.
    pub pid: Option<u32>,
}

impl Trail {
    /// Starts the trail thread.
    pub fn start(per_second: u32, proc_root: ProcRoot, hashes: ExeHashes) -> Trail {
        let (lines, queue) = sync_channel(QUEUE);
        let budget = Arc::new(Budget::new(per_second));
        let thread_budget = Arc::clone(&budget);
        std::thread::Builder::new()
            .name("event-trail".into())
            .spawn(move || {
                crate::kernel::priority::run_in_background();
                write_lines(&queue, &thread_budget, &hashes)
            })
            .expect("spawn the event trail thread");
        Trail {
            shared: Arc::new(Shared {
                lines,
                budget,
                proc_root,
                raw_seen: Mutex::new(HashSet::new()),
                forwarded_seen: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// A listen or close on a watched port, with the owner the event path
    /// described.
    pub fn listener(&self, facts: ListenerFacts<'_>, owner: &Owner) {
        if !self.shared.budget.admit() {
            return;
        }
        let mut line = TrailLine::of_owner(facts.event, owner);
        line.port = facts.port.to_string();
        line.protocol = facts.protocol.as_str().to_string();
        if let Some(address) = facts.address {
            line.address = address.to_string();
            line.exposure = exposure::classify_bound(address, "").as_str().to_string();
        }
        line.netns = facts.netns.to_string();
        line.expected = facts.expected;
        let pid = owner.pid.or(facts.pid);
        if let Some(pid) = pid {
            line.pid = pid.to_string();
        }
        self.send(line, owner, pid, facts.at);
    }

    /// The packet and raw sockets of one collection (with each one's
    /// owner, where known): a line for each the previous collection did not
    /// see.
    pub fn raw_sockets(
        &self,
        sockets: &[SeenRawSocket],
        owners: &[Option<&Owner>],
        judge: &Judge,
        namer: &NetnsNamer,
    ) {
        let current: HashSet<(Option<u64>, u64)> = sockets
            .iter()
            .map(|seen| (seen.netns, seen.found.socket.inode))
            .collect();
        let previous = replace_seen(&self.shared.raw_seen, current);
        let nobody = Owner::default();
        for (seen, owner) in sockets.iter().zip(owners) {
            if previous.contains(&(seen.netns, seen.found.socket.inode)) {
                continue;
            }
            if !self.shared.budget.admit() {
                continue;
            }
            let owner = owner.unwrap_or(&nobody);
            let series = RawSocketSeries::new(seen, owner, judge, namer);
            let event = match series.kind {
                "packet" => TrailEvent::PacketSocketSeen,
                _ => TrailEvent::RawSocketSeen,
            };
            let mut line = TrailLine::of_owner(event, owner);
            line.protocol = series.protocol;
            // A packet socket's address is the interface it is bound to.
            line.address = series.interface;
            line.netns = series.netns;
            line.expected = series.expected;
            self.send(line, owner, owner.pid, None);
        }
    }

    /// The forwarded ports of one collection: a line for each the previous
    /// collection did not see. A forward names no process of its own (a
    /// holder's process is on its listener's lines), so `described=none`.
    pub fn forwarded_ports(&self, series: &[ForwardedSeries]) {
        let key = |one: &ForwardedSeries| ForwardedSeries {
            count: 0,
            ..one.clone()
        };
        let current: BTreeSet<ForwardedSeries> = series.iter().map(key).collect();
        let previous = replace_seen(&self.shared.forwarded_seen, current);
        let nobody = Owner::default();
        for one in series {
            if previous.contains(&key(one)) || !self.shared.budget.admit() {
                continue;
            }
            let mut line = TrailLine::of_owner(TrailEvent::ForwardedPortSeen, &nobody);
            line.port = one.port.to_string();
            line.protocol = one.protocol.as_str().to_string();
            line.netns = one.netns.clone();
            line.container_id = one.container_id.clone();
            line.expected = one.expected;
            line.forward = ForwardKeys {
                mechanism: one.mechanism.to_string(),
                to_address: one.to_address.clone(),
                to_port: one.to_port.clone(),
                to_netns: one.to_netns.clone(),
            };
            self.send(line, &nobody, None, None);
        }
    }

    /// Reads what only the live process can give, decides `described`,
    /// and queues the line (or counts it as suppressed).
    fn send(&self, mut line: TrailLine, owner: &Owner, pid: Option<u32>, at: Option<Duration>) {
        let mut exe = None;
        line.described = match pid {
            None => Described::None,
            Some(pid) => {
                let proc_root = &self.shared.proc_root;
                let cmdline = proc_root.cmdline_bytes(pid, CMDLINE_READ);
                if line.exe_sha256.is_empty() && owner.provenance.exe.is_some() {
                    exe = File::open(proc_root.pid_path(pid, "exe")).ok();
                }
                line.cmdline = cmdline.as_deref().map(render_cmdline).unwrap_or_default();
                let lag = at.and_then(|at| monotonic_now().checked_sub(at));
                let complete = owner.provenance.exe.is_some()
                    && cmdline.as_ref().is_some_and(|c| !c.is_empty())
                    && (!line.exe_sha256.is_empty() || exe.is_some());
                if complete && lag.is_none_or(|lag| lag <= LATE_AFTER) {
                    Described::Live
                } else if owner.provenance.exe.is_none() && cmdline.is_none() {
                    Described::Gone
                } else {
                    Described::Late
                }
            }
        };
        if self.shared.lines.try_send(Pending { line, exe }).is_err() {
            self.shared.budget.suppress();
        }
    }
}

/// What one collection saw replaces what the previous one saw, which is
/// returned: what is not in it is new.
fn replace_seen<T>(seen: &Mutex<T>, current: T) -> T {
    std::mem::replace(
        &mut *seen.lock().unwrap_or_else(|p| p.into_inner()),
        current,
    )
}

/// The trail thread: hashes and writes each line, and once a second a
/// notice of the lines left out; a last notice when the trail stops.
fn write_lines(queue: &Receiver<Pending>, budget: &Budget, hashes: &ExeHashes) {
    const NOTICE_EVERY: Duration = Duration::from_secs(1);
    let mut last_notice = Instant::now();
    let notice = |budget: &Budget| {
        let suppressed = budget.take_suppressed();
        if suppressed > 0 {
            line::write_suppressed(suppressed, budget.per_second());
        }
    };
    loop {
        let wait = NOTICE_EVERY.saturating_sub(last_notice.elapsed());
        match queue.recv_timeout(wait) {
            Ok(Pending { mut line, exe }) => {
                if let Some(file) = exe
                    && line.exe_sha256.is_empty()
                {
                    match hashes.hash_file(file) {
                        Some(hex) => line.exe_sha256 = hex.to_string(),
                        None if line.described == Described::Live => {
                            line.described = Described::Late;
                        }
                        None => {}
                    }
                }
                line.write();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                notice(budget);
                return;
            }
        }
        if last_notice.elapsed() >= NOTICE_EVERY {
            notice(budget);
            last_notice = Instant::now();
        }
    }
}
