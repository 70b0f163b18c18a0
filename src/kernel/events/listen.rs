//! Listen events from the kernel: `sock:inet_sock_set_state` through perf.
//!
//! Every TCP, MPTCP and SCTP socket that enters or leaves the LISTEN state
//! passes this tracepoint, in the context of the task that called `listen()`
//! (or `close()`), whatever network namespace it is in. One perf event per
//! online CPU samples it into a per-CPU ring buffer ([`ring_pages_exp`]:
//! 2 MiB a CPU, 16 MiB in all, less when locked memory is short), and one
//! dedicated thread drains all of them. CPUs brought online after the start
//! are not covered (restart the capture to include them); a full ring drops
//! samples, counted as lost.
//!
//! ## Nothing lost in a burst
//!
//! 10,000 `listen()`+`close()` as fast as one process goes are 20,000
//! samples of about 100 bytes in a few hundred milliseconds. Two threads
//! keep them all:
//!
//! - the **draining thread** does nothing that can wait: it reads every
//!   ring when woken (no file, no lock, no log), decodes each sample into a
//!   [`RawTransition`] (no procfs read), orders them by kernel time (one
//!   task's transitions may land in several CPUs' rings) and hands them to
//!   a queue bounded at [`QUEUE_CAPACITY`] by its backlog count, whose
//!   memory is only what is queued. A full queue is counted as lost, never
//!   waited on;
//! - the **describing thread** ([`super::describe`]) takes them in order,
//!   learns and remembers each socket's facts (procfs, the socket's own
//!   namespace) and calls the callback, which labels and counts. When it
//!   falls behind it describes less, never counts less.
//!
//! A busy disk cannot stall the draining (it reads nothing from a file),
//! and the rings hold a burst while that thread waits for a CPU.
//!
//! The cost stays near zero when the host opens and closes thousands of
//! connections a second: a kernel-side filter
//! (`PERF_EVENT_IOC_SET_FILTER`, see [`filter_expression`]) discards, before
//! any sample is written, every transition that is not into or out of
//! LISTEN on a port up to `max_port`. Connections never wake the thread.
//! The kernel filter cannot hold thousands of watched ports, so the
//! draining thread drops the transitions on the ports below `max_port`
//! that nobody watches ([`PortFilter`]) before they are queued: a listener
//! storm on such a port costs one bitset lookup a sample, no procfs read.
//!
//! Each sample carries the raw tracepoint record (`PERF_SAMPLE_RAW`), the
//! pid and tid (`PERF_SAMPLE_TID`) and a CLOCK_MONOTONIC timestamp. Field
//! offsets come from the tracepoint's `format` file ([`super::tracefs`]).
//! The process name, uid and the socket's network namespace are learnt at
//! listen time, remembered per socket (the tracepoint's `skaddr`), and
//! reported again at close ([`super::describe`]).
//!
//! Privileges, measured on Linux 6.18 with `kernel.perf_event_paranoid=2`:
//! CAP_PERFMON (or CAP_SYS_ADMIN) for a system-wide tracepoint, and read
//! access to tracefs, whose root is mode 0700: uid 0, or CAP_DAC_READ_SEARCH
//! for another user. Mounting tracefs where it is absent needs CAP_SYS_ADMIN.
//! Without them [`ListenCapture::start`] says which is missing.
//!
//! The perf ABI (perf_event_open, the ring buffer mmap, the filter ioctl)
//! comes from the `perf-event-open` crate, the one maintained crate whose
//! safe API covers all three; see the module doc of [`super`] for the
//! comparison.

use super::describe::{Describer, LearntNamespaces, QueuedCloses, RawTransition};
use super::tracefs::{self, Field, TracepointFormat};
use perf_event_open::config::{Clock, Cpu, Opts, Proc, SampleOn, WakeUpOn};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;
use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record;
use rustix::event::epoll;
use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `TCP_LISTEN`, as the tracepoint's state fields carry it.
const TCP_LISTEN: i64 = crate::kernel::sock_diag::wire::TCP_LISTEN as i64;
/// Each CPU's ring buffer at most: about 20,000 samples of ~104 bytes, a
/// whole 10,000 listen+close burst even if the draining thread got no CPU
/// during it.
pub const RING_BYTES_PER_CPU: usize = 2 << 20;
/// All CPUs' rings together at most (a 64-CPU host gets 256 KiB each).
pub const RING_BYTES_TOTAL: usize = 16 << 20;
/// The smallest ring tried when locked memory is short.
pub const RING_BYTES_MIN: usize = 64 << 10;
/// Transitions waiting to be described at most (about 64 bytes each, 4 MiB
/// when full, nothing when empty): three bursts of 10,000 listen+close.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Transitions the describing thread takes ahead of the one it describes,
/// to see whether a socket's close is already queued. Describing walks an
/// owner's descriptors only below a backlog of 64, so 64 is enough.
const LOOK_AHEAD: usize = 64;
/// The draining thread drains every ring at least this often, in case a
/// wake-up was missed; otherwise it sleeps until a sample or a stop.
const DRAIN_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// How soon a pass is repeated while transitions are held back for
/// ordering.
const HELD_BACK_FOR: Duration = Duration::from_millis(1);
/// A pass that found at least this many samples means a storm: the
/// draining thread then rests [`STORM_REST`] before it waits again, so the
/// next pass reads those milliseconds' samples at once instead of being
/// woken for each. Woken per sample, a storm of 46,000 samples a second cost it
/// 62 % of a core on this 2-core VM, nearly all in switching tasks, and the
/// scrape shared the core that was left. A lone listen still wakes it at
/// once.
const STORM_FROM: usize = 8;
/// How long the draining thread rests after a storm's pass. The rings hold
/// far more than this of any storm (2 MiB a CPU, about 20,000 samples; a
/// storm of 100,000 events a second fills 400 in that time). Describing
/// reads a task and its owner once a pass (`super::describe`), so the rest
/// sets that cost too: in a 5 s storm of 33,000 listens a second, the
/// describing thread took 16.2 % of a core at 1 ms and 8.0 % at 4 ms, the
/// draining thread 2.6 % and 1.0 %; a storm's events are counted up to
/// this much later.
const STORM_REST: Duration = Duration::from_millis(4);
/// epoll data of the stop eventfd; ring `i` uses `i`.
const STOP_TOKEN: u64 = u64::MAX;

/// Which transitions are described: ports up to `max_port` pass the kernel
/// filter, and of those only the ones `wanted` accepts are queued.
pub struct PortFilter {
    max_port: u16,
    wanted: Box<dyn Fn(StreamProtocol, u16) -> bool + Send>,
}

impl PortFilter {
    /// Only the ports `wanted` accepts, all of them at most `max_port`.
    pub fn only(
        max_port: u16,
        wanted: impl Fn(StreamProtocol, u16) -> bool + Send + 'static,
    ) -> PortFilter {
        PortFilter {
            max_port,
            wanted: Box::new(wanted),
        }
    }
}

/// Every port up to the number.
impl From<u16> for PortFilter {
    fn from(max_port: u16) -> PortFilter {
        PortFilter::only(max_port, |_, _| true)
    }
}

/// Why listen events cannot be captured, in one line for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureUnavailable {
    pub reason: String,
}

impl fmt::Display for CaptureUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for CaptureUnavailable {}

fn unavailable(reason: impl Into<String>) -> CaptureUnavailable {
    CaptureUnavailable {
        reason: reason.into(),
    }
}

/// A socket entering LISTEN, or leaving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// `listen()` succeeded (newstate == LISTEN).
    Opened,
    /// The listener was closed (oldstate == LISTEN).
    Closed,
}

/// The tracepoint's `protocol` field: which transport the socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamProtocol {
    Tcp,
    /// Multipath TCP: the kernel also reports the MPTCP socket's TCP subflow
    /// listener as `Tcp`, so one MPTCP `listen()` gives two events.
    Mptcp,
    Sctp,
    /// A protocol number this code does not name.
    Other(u16),
}

impl StreamProtocol {
    fn from_number(number: u64) -> StreamProtocol {
        match number {
            6 => StreamProtocol::Tcp,
            262 => StreamProtocol::Mptcp,
            132 => StreamProtocol::Sctp,
            other => StreamProtocol::Other(other as u16),
        }
    }

    /// The IP protocol number, as the tracepoint gave it.
    pub fn number(self) -> u16 {
        match self {
            StreamProtocol::Tcp => 6,
            StreamProtocol::Mptcp => 262,
            StreamProtocol::Sctp => 132,
            StreamProtocol::Other(number) => number,
        }
    }

    /// Label value: `tcp`, `mptcp`, `sctp`, or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamProtocol::Tcp => "tcp",
            StreamProtocol::Mptcp => "mptcp",
            StreamProtocol::Sctp => "sctp",
            StreamProtocol::Other(_) => "other",
        }
    }
}

/// One listen or unlisten, as the describing thread hands it to the
/// callback. An MPTCP listener is one event (its TCP subflow none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenEvent {
    pub transition: Transition,
    pub protocol: StreamProtocol,
    pub address: IpAddr,
    pub port: u16,
    /// Process (thread group) and thread that made the transition (for a
    /// close: the closing task, which may be another process).
    pub pid: u32,
    pub tid: u32,
    /// The kernel's address of the socket (the tracepoint's `skaddr`).
    pub skaddr: u64,
    /// The process that called `listen()` on this socket (for an open, the
    /// same as `pid`; for a close of a socket seen listening, what was
    /// learnt then, else the closing task).
    pub listener_pid: u32,
    /// That process's `comm`, read at listen time; `None` when it could
    /// not be read (gone already, or describing was behind).
    pub process: Option<String>,
    /// That process's real uid, read at listen time.
    pub uid: Option<u32>,
    /// Inode of the socket's network namespace, asked of the socket at
    /// listen time (the listening thread's when the socket was already
    /// gone), whatever namespace the closing task is in.
    pub netns: Option<u64>,
    /// When the kernel recorded the transition, on CLOCK_MONOTONIC.
    pub kernel_time: Duration,
}

/// Counters the capture threads keep; read them any time.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Transitions decoded by the draining thread.
    pub samples: AtomicU64,
    /// Events handed to the callback (MPTCP subflows are not).
    pub events: AtomicU64,
    /// Samples lost: the kernel dropped them because a ring was full
    /// (PERF_RECORD_LOST), or the describing queue was full.
    pub lost: AtomicU64,
    /// Of `lost`, those the full describing queue dropped.
    pub queue_full: AtomicU64,
    /// Samples whose raw record did not match the tracepoint's format.
    pub undecodable: AtomicU64,
    /// Samples on a port the [`PortFilter`] does not want, dropped.
    pub unwanted: AtomicU64,
    /// Kernel thread id of the draining thread (0 until it has started),
    /// for reading its CPU time from `/proc/self/task/TID/stat`.
    pub thread_id: AtomicU32,
    /// Kernel thread id of the describing thread.
    pub describe_thread_id: AtomicU32,
    /// Every transition stamped before this (CLOCK_MONOTONIC nanoseconds)
    /// has been queued (or counted lost): the start of the draining
    /// thread's last finished pass.
    pub queued_before: AtomicU64,
}

/// The kernel-side filter: transitions into or out of LISTEN on ports up to
/// `max_port`. The tracepoint's `sport` is in host byte order.
pub fn filter_expression(max_port: u16) -> String {
    format!("(newstate == {TCP_LISTEN} || oldstate == {TCP_LISTEN}) && sport <= {max_port}")
}

/// Parses a CPU list such as `/sys/devices/system/cpu/online`: `0-3,6,8-9`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad CPU list {:?}", text.trim()))
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if last < first {
                    return Err(format!("bad CPU list {:?}", text.trim()));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(number(part)?),
        }
    }
    if cpus.is_empty() {
        return Err("empty CPU list".to_string());
    }
    Ok(cpus)
}

/// Where each field the decoder needs sits in the raw record.
#[derive(Clone, Debug)]
pub struct RecordLayout {
    oldstate: Field,
    newstate: Field,
    sport: Field,
    family: Field,
    /// Added in Linux 4.16; older kernels trace TCP only.
    protocol: Option<Field>,
    saddr: Field,
    saddr_v6: Field,
    /// The socket's kernel address (Linux 4.16, with `protocol`).
    skaddr: Option<Field>,
}

/// What the raw record says, before procfs is asked about the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub transition: Transition,
    pub protocol: StreamProtocol,
    pub address: IpAddr,
    pub port: u16,
    /// 0 when the kernel's record has no `skaddr`.
    pub skaddr: u64,
}

impl RecordLayout {
    pub fn from_format(format: &TracepointFormat) -> Result<RecordLayout, String> {
        Ok(RecordLayout {
            oldstate: format.field("oldstate")?,
            newstate: format.field("newstate")?,
            sport: format.field("sport")?,
            family: format.field("family")?,
            protocol: format.field("protocol").ok(),
            saddr: format.field("saddr")?,
            saddr_v6: format.field("saddr_v6")?,
            skaddr: format.field("skaddr").ok(),
        })
    }

    /// Whether the record is a "transition" to the same state (MPTCP sets
    /// LISTEN again after its subflow listens): nothing happened.
    pub fn unchanged(&self, raw: &[u8]) -> bool {
        match (self.oldstate.unsigned(raw), self.newstate.unsigned(raw)) {
            (Some(old), Some(new)) => old == new,
            _ => false,
        }
    }

    /// Decodes one raw record; `None` when it is short or not a LISTEN
    /// transition of an IPv4/IPv6 socket (the filter should have dropped it).
    pub fn decode(&self, raw: &[u8]) -> Option<DecodedRecord> {
        let old = self.oldstate.unsigned(raw)? as u32 as i32 as i64;
        let new = self.newstate.unsigned(raw)? as u32 as i32 as i64;
        let transition = if new == TCP_LISTEN {
            Transition::Opened
        } else if old == TCP_LISTEN {
            Transition::Closed
        } else {
            return None;
        };
        let family = self.family.unsigned(raw)?;
        let address = if family == libc::AF_INET as u64 {
            let bytes: [u8; 4] = self.saddr.bytes(raw)?.get(..4)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(bytes))
        } else if family == libc::AF_INET6 as u64 {
            let bytes: [u8; 16] = self.saddr_v6.bytes(raw)?.get(..16)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            return None;
        };
        let protocol = match &self.protocol {
            Some(field) => StreamProtocol::from_number(field.unsigned(raw)?),
            None => StreamProtocol::Tcp,
        };
        Some(DecodedRecord {
            transition,
            protocol,
            address,
            port: self.sport.unsigned(raw)? as u16,
            skaddr: match &self.skaddr {
                Some(field) => field.unsigned(raw)?,
                None => 0,
            },
        })
    }
}

/// A running capture; dropping it stops and joins both threads and closes
/// the perf events.
pub struct ListenCapture {
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    drain_thread: Option<JoinHandle<()>>,
    describe_thread: Option<JoinHandle<()>>,
    cpus: usize,
    ring_bytes: usize,
    namespaces: LearntNamespaces,
}

/// Data pages (a power of two) of each CPU's ring: [`RING_BYTES_PER_CPU`],
/// or less so that all CPUs together stay within [`RING_BYTES_TOTAL`], and
/// never under [`RING_BYTES_MIN`].
pub fn ring_pages_exp(cpus: usize, page_size: usize) -> u8 {
    let per_cpu = (RING_BYTES_TOTAL / cpus.max(1)).clamp(RING_BYTES_MIN, RING_BYTES_PER_CPU);
    let pages = (per_cpu / page_size.max(1)).max(1);
    (usize::BITS - 1 - pages.leading_zeros()) as u8
}

impl ListenCapture {
    /// Opens the tracepoint on every online CPU with the filter for
    /// `ports` and starts the draining and describing threads; the
    /// describing thread calls `on_event` for every transition, in the
    /// order the kernel made them. `procfs` is where owners are read
    /// (`/proc` normally). Fails with a one-line reason when the kernel or
    /// our privileges do not allow it; nothing is left open then.
    pub fn start(
        ports: impl Into<PortFilter>,
        procfs: &Path,
        on_event: impl FnMut(ListenEvent) + Send + 'static,
    ) -> Result<ListenCapture, CaptureUnavailable> {
        let PortFilter { max_port, wanted } = ports.into();
        let tracefs = tracefs::find_or_mount().map_err(unavailable)?;
        let format =
            TracepointFormat::read(&tracefs, "sock", "inet_sock_set_state").map_err(|err| {
                unavailable(format!(
                    "no sock:inet_sock_set_state tracepoint (kernel older than 4.16?): {err}"
                ))
            })?;
        let layout = RecordLayout::from_format(&format).map_err(unavailable)?;
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .map_err(|err| unavailable(format!("cannot read the online CPUs: {err}")))?;
        let cpus = parse_cpu_list(&online).map_err(unavailable)?;
        let filter = CString::new(filter_expression(max_port)).expect("no NUL in a number");
        let page_size = rustix::param::page_size();

        // The largest rings the kernel grants (locked memory: without
        // CAP_IPC_LOCK, kernel.perf_event_mlock_kb per CPU), halving down
        // to the minimum.
        let mut exp = ring_pages_exp(cpus.len(), page_size);
        let rings = loop {
            match open_rings(format.id, &cpus, &filter, exp) {
                Ok(rings) => break rings,
                Err(err) if err.mapping && (page_size << exp) > RING_BYTES_MIN => exp -= 1,
                Err(err) => return Err(err.reason),
            }
        };

        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|err| unavailable(format!("epoll_create failed: {err}")))?;
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|err| unavailable(format!("eventfd failed: {err}")))?;
        let wake = Arc::new(wake);
        epoll::add(
            &epoll,
            wake.as_fd(),
            epoll::EventData::new_u64(STOP_TOKEN),
            epoll::EventFlags::IN,
        )
        .map_err(|err| unavailable(format!("epoll_ctl failed: {err}")))?;
        for (index, (counter, _)) in rings.iter().enumerate() {
            epoll::add(
                &epoll,
                counter.file(),
                epoll::EventData::new_u64(index as u64),
                epoll::EventFlags::IN,
            )
            .map_err(|err| unavailable(format!("epoll_ctl failed: {err}")))?;
        }
        for (counter, _) in &rings {
            counter
                .enable()
                .map_err(|err| unavailable(format!("cannot enable the perf event: {err}")))?;
        }

        let stats = Arc::new(CaptureStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let backlog = Arc::new(AtomicUsize::new(0));
        let namespaces = LearntNamespaces::default();
        let (queue, received) = mpsc::channel::<RawTransition>();
        let mut describer = Describer::new(procfs, namespaces.clone(), Arc::clone(&backlog));
        let describe_thread = {
            let (stats, backlog) = (Arc::clone(&stats), Arc::clone(&backlog));
            let poke = Arc::clone(&wake);
            std::thread::Builder::new()
                .name("listen-describe".into())
                .spawn(move || {
                    stats.describe_thread_id.store(gettid(), Ordering::Relaxed);
                    // Normal priority, unlike the trail and hash threads:
                    // this thread counts, and counting must not wait for an
                    // idle core (see `crate::kernel::priority`).
                    describe_all(&received, &mut describer, &stats, &backlog, &poke, on_event);
                })
                .map_err(|err| unavailable(format!("cannot start the describing thread: {err}")))?
        };
        let drainer = Drainer {
            rings,
            layout,
            wanted,
            stats: Arc::clone(&stats),
            queue,
            backlog,
            held_back: Vec::new(),
            batch: Vec::new(),
        };
        let drain_thread = {
            let (stop, wake) = (Arc::clone(&stop), Arc::clone(&wake));
            std::thread::Builder::new()
                .name("listen-events".into())
                .spawn(move || drainer.run(epoll, wake, stop))
                .map_err(|err| unavailable(format!("cannot start the capture thread: {err}")))?
        };
        Ok(ListenCapture {
            stats,
            stop,
            wake,
            drain_thread: Some(drain_thread),
            describe_thread: Some(describe_thread),
            cpus: cpus.len(),
            ring_bytes: page_size << exp,
            namespaces,
        })
    }

    /// The capture's counters (events, lost samples, thread ids).
    pub fn stats(&self) -> &Arc<CaptureStats> {
        &self.stats
    }

    /// Samples lost: a ring was full, or the describing queue was.
    pub fn lost_samples(&self) -> u64 {
        self.stats.lost.load(Ordering::Relaxed)
    }

    /// How many CPUs have a ring buffer.
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// Bytes of each CPU's ring buffer (data pages, without the header).
    pub fn ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// Namespaces learnt from listening sockets, for collection to enter.
    pub fn namespaces(&self) -> LearntNamespaces {
        self.namespaces.clone()
    }
}

impl Drop for ListenCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        if let Some(thread) = self.drain_thread.take() {
            let _ = thread.join();
        }
        // The draining thread has dropped the queue's sender: the
        // describing thread finishes what is queued and ends.
        if let Some(thread) = self.describe_thread.take() {
            let _ = thread.join();
        }
    }
}

fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// Why opening the rings failed, and whether a smaller ring may succeed.
struct RingError {
    reason: CaptureUnavailable,
    /// The mmap of a ring was refused (locked-memory limits).
    mapping: bool,
}

fn open_rings(
    id: u64,
    cpus: &[u32],
    filter: &CString,
    exp: u8,
) -> Result<Vec<(Counter, Sampler)>, RingError> {
    let mut rings = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let fatal = |reason| RingError {
            reason,
            mapping: false,
        };
        let counter = open_on_cpu(id, cpu).map_err(fatal)?;
        counter.with_ftrace_filter(filter).map_err(|err| {
            fatal(unavailable(format!(
                "the kernel refused the tracepoint filter {filter:?}: {err}"
            )))
        })?;
        let sampler = counter.sampler(exp).map_err(|err| RingError {
            reason: unavailable(format!(
                "cannot map the perf ring buffer of CPU {cpu}: {err}"
            )),
            mapping: true,
        })?;
        rings.push((counter, sampler));
    }
    Ok(rings)
}

fn open_on_cpu(id: u64, cpu: u32) -> Result<Counter, CaptureUnavailable> {
    // Every matching hit is a sample (period 1), and each sample wakes the
    // draining thread at once: the filter keeps them rare, and a burst is
    // read in batches anyway (one wake-up finds many samples).
    let mut opts = Opts {
        sample_on: SampleOn::Count(1),
        timer: Some(Clock::Monotonic),
        ..Opts::default()
    };
    opts.sample_format.raw = true;
    opts.record_id_format.task = true;
    opts.record_id_format.time = true;
    opts.wake_up.on = WakeUpOn::Samples(1);
    Counter::new(Tracepoint { id }, (Proc::ALL, Cpu(cpu)), opts).map_err(|err| {
        let errno = err.raw_os_error().unwrap_or(0);
        if errno == libc::EACCES || errno == libc::EPERM {
            let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|text| text.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string());
            unavailable(format!(
                "perf_event_open refused the tracepoint: {err} (needs CAP_PERFMON or CAP_SYS_ADMIN; kernel.perf_event_paranoid={paranoid})"
            ))
        } else if errno == libc::ENOENT || errno == libc::ENODEV || errno == libc::ENOSYS {
            unavailable(format!(
                "this kernel cannot open tracepoints with perf_event_open: {err}"
            ))
        } else {
            unavailable(format!("perf_event_open on CPU {cpu} failed: {err}"))
        }
    })
}

/// The describing thread's loop: describes each transition in queue order
/// and hands the event to `on_event`, until the draining thread drops the
/// sender. Transitions are taken ahead of the one described so that a
/// socket whose close is already queued is not borrowed from its owner
/// (see `Describer::describe_in`).
fn describe_all(
    received: &mpsc::Receiver<RawTransition>,
    describer: &mut Describer,
    stats: &CaptureStats,
    backlog: &AtomicUsize,
    wake: &OwnedFd,
    mut on_event: impl FnMut(ListenEvent),
) {
    let mut ahead: VecDeque<RawTransition> = VecDeque::new();
    loop {
        if ahead.is_empty() {
            let Ok(raw) = received.recv() else { return };
            ahead.push_back(raw);
        }
        while ahead.len() < LOOK_AHEAD {
            let Ok(raw) = received.try_recv() else { break };
            ahead.push_back(raw);
        }
        let Some(raw) = ahead.pop_front() else {
            continue;
        };
        backlog.fetch_sub(1, Ordering::Relaxed);
        let mut behind = Behind {
            received,
            ahead: &mut ahead,
            stats,
            wake,
        };
        if let Some(event) = describer.describe_in(raw, &mut behind) {
            stats.events.fetch_add(1, Ordering::Relaxed);
            on_event(event);
        }
    }
}

/// Longest the describing thread waits for the draining thread to have
/// queued every transition up to a moment, to prove a socket still open.
const PROOF_WAIT: Duration = Duration::from_millis(50);

/// The transitions queued behind the one being described.
struct Behind<'a> {
    received: &'a mpsc::Receiver<RawTransition>,
    ahead: &'a mut VecDeque<RawTransition>,
    stats: &'a CaptureStats,
    wake: &'a OwnedFd,
}

impl Behind<'_> {
    fn take_queued(&mut self) {
        while let Ok(raw) = self.received.try_recv() {
            self.ahead.push_back(raw);
        }
    }
}

impl QueuedCloses for Behind<'_> {
    fn queued(&self, skaddr: u64) -> bool {
        self.ahead
            .iter()
            .any(|later| later.skaddr == skaddr && later.transition == Transition::Closed)
    }

    fn closed_before(&mut self, skaddr: u64, before: Duration) -> Option<bool> {
        let deadline = Instant::now() + PROOF_WAIT;
        loop {
            // Read before taking: what the draining thread queued before it
            // published this is in the channel now.
            let queued_before =
                Duration::from_nanos(self.stats.queued_before.load(Ordering::Acquire));
            self.take_queued();
            if self.queued(skaddr) {
                return Some(true);
            }
            if queued_before >= before {
                return Some(false);
            }
            if Instant::now() > deadline {
                return None;
            }
            // A pass now, rather than at the next sample or second.
            let _ = rustix::io::write(self.wake, &1u64.to_ne_bytes());
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The draining thread: reads every ring, decodes, orders by kernel time
/// and queues. It touches no file, takes no lock and logs nothing while
/// running (only its own death is logged).
struct Drainer {
    rings: Vec<(Counter, Sampler)>,
    layout: RecordLayout,
    /// Which of the ports the kernel passed are queued.
    wanted: Box<dyn Fn(StreamProtocol, u16) -> bool + Send>,
    stats: Arc<CaptureStats>,
    /// Unbounded as a channel (its memory comes and goes with the backlog:
    /// a preallocated 65,536-slot queue kept 4 MiB resident on an idle
    /// host); [`QUEUE_CAPACITY`] is enforced with `backlog`.
    queue: Sender<RawTransition>,
    backlog: Arc<AtomicUsize>,
    /// Transitions stamped at or after the current pass began: another
    /// ring may still hold an earlier one, so they wait one pass.
    held_back: Vec<RawTransition>,
    batch: Vec<RawTransition>,
}

impl Drainer {
    fn run(mut self, epoll: OwnedFd, wake: Arc<OwnedFd>, stop: Arc<AtomicBool>) {
        self.stats.thread_id.store(gettid(), Ordering::Relaxed);
        let mut ready = epoll::EventVec::with_capacity(self.rings.len() + 1);
        loop {
            let timeout = if self.held_back.is_empty() {
                DRAIN_AT_LEAST_EVERY
            } else {
                HELD_BACK_FOR
            };
            if let Err(err) = epoll::wait(&epoll, &mut ready, timeout.as_millis() as i32)
                && err != rustix::io::Errno::INTR
            {
                tracing::error!("listen event capture stopped: epoll_wait failed: {err}");
                return;
            }
            for event in &ready {
                if event.data.u64() == STOP_TOKEN {
                    let mut buffer = [0u8; 8];
                    let _ = rustix::io::read(wake.as_fd(), &mut buffer);
                }
            }
            // Every ring at each pass: one task's transitions may sit in
            // several CPUs' rings, and they are queued in kernel order.
            let pass_began = monotonic_now();
            let samples_before = self.stats.samples.load(Ordering::Relaxed);
            for index in 0..self.rings.len() {
                self.drain(index);
            }
            let stopping = stop.load(Ordering::SeqCst);
            // Unwanted samples count towards a storm too: one on a port
            // nobody watches wakes this thread as often as a watched one.
            let read = self.stats.samples.load(Ordering::Relaxed) - samples_before;
            let idle = self.batch.is_empty();
            self.batch.append(&mut self.held_back);
            self.batch.sort_by_key(|raw| raw.kernel_time);
            // After an idle pass, or when stopping, nothing earlier can come.
            let split = if idle || stopping {
                self.batch.len()
            } else {
                self.batch
                    .partition_point(|raw| raw.kernel_time < pass_began)
            };
            self.held_back.extend(self.batch.drain(split..));
            for raw in self.batch.drain(..) {
                // Counted before it is sent: the describing thread may take
                // it (and count it down) before `try_send` returns.
                let queued = self.backlog.fetch_add(1, Ordering::Relaxed);
                if queued >= QUEUE_CAPACITY || self.queue.send(raw).is_err() {
                    self.backlog.fetch_sub(1, Ordering::Relaxed);
                    self.stats.lost.fetch_add(1, Ordering::Relaxed);
                    self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.stats
                .queued_before
                .store(pass_began.as_nanos() as u64, Ordering::Release);
            if stopping {
                return;
            }
            if read >= STORM_FROM as u64 {
                std::thread::sleep(STORM_REST);
            }
        }
    }

    /// Reads every record waiting in one ring into `batch`.
    fn drain(&mut self, index: usize) {
        let Some(records) = self.rings[index].1.iter() else {
            return;
        };
        for (_, record) in records {
            match record {
                Record::Sample(sample) => {
                    let raw = sample.raw.as_deref().unwrap_or_default();
                    if self.layout.unchanged(raw) {
                        // MPTCP's LISTEN->LISTEN: no transition.
                        continue;
                    }
                    let (Some(decoded), Some(task)) =
                        (self.layout.decode(raw), sample.record_id.task)
                    else {
                        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    self.stats.samples.fetch_add(1, Ordering::Relaxed);
                    if !(self.wanted)(decoded.protocol, decoded.port) {
                        self.stats.unwanted.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    self.batch.push(RawTransition {
                        transition: decoded.transition,
                        protocol: decoded.protocol,
                        address: decoded.address,
                        port: decoded.port,
                        pid: task.pid,
                        tid: task.tid,
                        skaddr: decoded.skaddr,
                        kernel_time: Duration::from_nanos(sample.record_id.time.unwrap_or(0)),
                    });
                }
                Record::LostRecords(lost) => {
                    self.stats
                        .lost
                        .fetch_add(lost.lost_records, Ordering::Relaxed);
                }
                Record::LostSamples(lost) => {
                    self.stats
                        .lost
                        .fetch_add(lost.lost_samples, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

/// Now on CLOCK_MONOTONIC, the clock of the kernel's event timestamps.
pub fn monotonic_now() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `/proc/PID/comm` without its newline.
pub fn read_comm(procfs: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(procfs.join(pid.to_string()).join("comm")).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

/// Inode of a thread's network namespace: `/proc/PID/task/TID/ns/net`.
pub fn read_task_netns(procfs: &Path, pid: u32, tid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = procfs
        .join(pid.to_string())
        .join("task")
        .join(tid.to_string())
        .join("ns/net");
    std::fs::metadata(path).ok().map(|meta| meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::tracefs::parse_format;

    /// The format of `sock:inet_sock_set_state` on Linux 6.18.
    const FORMAT_6_18: &str = "\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;
";

    fn layout() -> RecordLayout {
        let format = TracepointFormat {
            id: 1,
            fields: parse_format(FORMAT_6_18),
        };
        RecordLayout::from_format(&format).unwrap()
    }

    fn record(old: i32, new: i32, port: u16, family: u16, protocol: u16) -> Vec<u8> {
        let mut raw = vec![0u8; 72];
        raw[16..20].copy_from_slice(&old.to_ne_bytes());
        raw[20..24].copy_from_slice(&new.to_ne_bytes());
        raw[24..26].copy_from_slice(&port.to_ne_bytes());
        raw[28..30].copy_from_slice(&family.to_ne_bytes());
        raw[30..32].copy_from_slice(&protocol.to_ne_bytes());
        raw[32..36].copy_from_slice(&[127, 0, 0, 1]);
        raw[40..56].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        raw
    }

    #[test]
    fn decodes_opened_and_closed_for_each_family_and_protocol() {
        let layout = layout();
        let opened = layout.decode(&record(7, 10, 276, 2, 6)).unwrap();
        assert_eq!(opened.transition, Transition::Opened);
        assert_eq!(opened.protocol, StreamProtocol::Tcp);
        assert_eq!(opened.address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(opened.port, 276);
        let closed = layout.decode(&record(10, 7, 276, 10, 262)).unwrap();
        assert_eq!(closed.transition, Transition::Closed);
        assert_eq!(closed.protocol, StreamProtocol::Mptcp);
        assert_eq!(closed.address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let sctp = layout.decode(&record(7, 10, 9, 2, 132)).unwrap();
        assert_eq!(sctp.protocol, StreamProtocol::Sctp);
    }

    #[test]
    fn refuses_other_transitions_short_records_and_other_families() {
        let layout = layout();
        assert_eq!(layout.decode(&record(2, 1, 276, 2, 6)), None);
        assert_eq!(layout.decode(&record(7, 10, 276, 2, 6)[..30]), None);
        assert_eq!(layout.decode(&record(7, 10, 276, 10, 6)[..50]), None);
        assert_eq!(layout.decode(&record(7, 10, 276, 1, 6)), None);
        assert_eq!(layout.decode(&[]), None);
    }

    #[test]
    fn filter_names_listen_and_the_port_bound() {
        assert_eq!(
            filter_expression(1023),
            "(newstate == 10 || oldstate == 10) && sport <= 1023"
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-4,7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }
}
