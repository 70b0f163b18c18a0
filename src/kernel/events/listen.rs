//! Listen events from the kernel: `sock:inet_sock_set_state` through perf.
//!
//! Every TCP, MPTCP and SCTP socket that enters or leaves the LISTEN state
//! passes this tracepoint, in the context of the task that called `listen()`
//! (or `close()`), whatever network namespace it is in. One perf event per
//! online CPU samples it into a small per-CPU ring buffer
//! (`RING_PAGES_EXP`), and one thread waits on all of them with epoll.
//! CPUs brought online after the start are not covered (restart the
//! capture to include them); a full ring drops samples, counted as lost.
//!
//! The cost stays near zero when the host opens and closes thousands of
//! connections a second: a kernel-side filter
//! (`PERF_EVENT_IOC_SET_FILTER`, see [`filter_expression`]) discards, before
//! any sample is written, every transition that is not into or out of
//! LISTEN on a port up to `max_port`. Connections never wake the thread.
//!
//! Each sample carries the raw tracepoint record (`PERF_SAMPLE_RAW`), the
//! pid and tid (`PERF_SAMPLE_TID`) and a CLOCK_MONOTONIC timestamp. Field
//! offsets come from the tracepoint's `format` file ([`super::tracefs`]).
//! The process name and the task's network namespace are read from procfs
//! the moment the sample is read, while the task most likely still exists:
//! a listener that lives 5 ms is still named.
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

use super::tracefs::{self, Field, TracepointFormat};
use perf_event_open::config::{Clock, Cpu, Opts, Proc, SampleOn, WakeUpOn};
use perf_event_open::count::Counter;
use perf_event_open::event::tp::Tracepoint;
use perf_event_open::sample::Sampler;
use perf_event_open::sample::record::Record;
use rustix::event::epoll;
use std::ffi::CString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `TCP_LISTEN`, as the tracepoint's state fields carry it.
const TCP_LISTEN: i64 = crate::kernel::sock_diag::wire::TCP_LISTEN as i64;
/// Each CPU's ring buffer holds 2^this pages (32 KiB with 4 KiB pages):
/// about 300 filtered samples, far more than listeners appear between two
/// wake-ups of the capture thread.
const RING_PAGES_EXP: u8 = 3;
/// The capture thread drains every ring at least this often, in case a
/// wake-up was missed; otherwise it sleeps until a sample or a stop.
const DRAIN_AT_LEAST_EVERY: Duration = Duration::from_secs(1);
/// epoll data of the stop eventfd; ring `i` uses `i`.
const STOP_TOKEN: u64 = u64::MAX;

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

/// One listen or unlisten, as the capture thread hands it to the callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenEvent {
    pub transition: Transition,
    pub protocol: StreamProtocol,
    pub address: IpAddr,
    pub port: u16,
    /// Process (thread group) and thread that made the transition.
    pub pid: u32,
    pub tid: u32,
    /// `/proc/PID/comm` read when the sample was read; `None` when the
    /// process had already gone.
    pub process: Option<String>,
    /// Inode of `/proc/PID/task/TID/ns/net` read at the same moment: the
    /// namespace the socket was created in, unless the thread has moved
    /// since. `None` when the thread had already gone.
    pub netns: Option<u64>,
    /// When the kernel recorded the transition, on CLOCK_MONOTONIC.
    pub kernel_time: Duration,
}

/// Counters the capture thread keeps; read them any time.
#[derive(Debug, Default)]
pub struct CaptureStats {
    /// Samples decoded and handed to the callback.
    pub events: AtomicU64,
    /// Samples the kernel dropped because a ring was full (PERF_RECORD_LOST).
    pub lost: AtomicU64,
    /// Samples whose raw record did not match the tracepoint's format.
    pub undecodable: AtomicU64,
    /// Kernel thread id of the capture thread (0 until it has started), for
    /// reading its CPU time from `/proc/self/task/TID/stat`.
    pub thread_id: AtomicU32,
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
}

/// What the raw record says, before procfs is asked about the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub transition: Transition,
    pub protocol: StreamProtocol,
    pub address: IpAddr,
    pub port: u16,
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
        })
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
        })
    }
}

/// A running capture; dropping it stops and joins the capture thread and
/// closes the perf events.
pub struct ListenCapture {
    stats: Arc<CaptureStats>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    cpus: usize,
}

impl ListenCapture {
    /// Opens the tracepoint on every online CPU with the filter for
    /// `max_port` and starts the capture thread, which calls `on_event` for
    /// every transition. `procfs` is where process names and namespaces are
    /// read (`/proc` normally). Fails with a one-line reason when the kernel
    /// or our privileges do not allow it; nothing is left open then.
    pub fn start(
        max_port: u16,
        procfs: &Path,
        on_event: impl FnMut(ListenEvent) + Send + 'static,
    ) -> Result<ListenCapture, CaptureUnavailable> {
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

        let mut rings = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let counter = open_on_cpu(format.id, cpu)?;
            counter.with_ftrace_filter(&filter).map_err(|err| {
                unavailable(format!(
                    "the kernel refused the tracepoint filter {filter:?}: {err}"
                ))
            })?;
            let sampler = counter.sampler(RING_PAGES_EXP).map_err(|err| {
                unavailable(format!(
                    "cannot map the perf ring buffer of CPU {cpu}: {err}"
                ))
            })?;
            rings.push((counter, sampler));
        }

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
        let reader = Reader {
            rings,
            layout,
            procfs: procfs.to_path_buf(),
            stats: Arc::clone(&stats),
        };
        let thread_stop = Arc::clone(&stop);
        let thread_wake = Arc::clone(&wake);
        let thread = std::thread::Builder::new()
            .name("listen-events".into())
            .spawn(move || reader.run(epoll, thread_wake, thread_stop, on_event))
            .map_err(|err| unavailable(format!("cannot start the capture thread: {err}")))?;
        Ok(ListenCapture {
            stats,
            stop,
            wake,
            thread: Some(thread),
            cpus: cpus.len(),
        })
    }

    /// The capture thread's counters (events, lost samples, its tid).
    pub fn stats(&self) -> &Arc<CaptureStats> {
        &self.stats
    }

    /// Samples the kernel dropped because a ring buffer was full.
    pub fn lost_samples(&self) -> u64 {
        self.stats.lost.load(Ordering::Relaxed)
    }

    /// How many CPUs have a ring buffer.
    pub fn cpus(&self) -> usize {
        self.cpus
    }
}

impl Drop for ListenCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(self.wake.as_fd(), &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_on_cpu(id: u64, cpu: u32) -> Result<Counter, CaptureUnavailable> {
    // Every matching hit is a sample (period 1), and each sample wakes the
    // thread at once: the filter keeps them rare.
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

/// The capture thread's state.
struct Reader {
    rings: Vec<(Counter, Sampler)>,
    layout: RecordLayout,
    procfs: PathBuf,
    stats: Arc<CaptureStats>,
}

impl Reader {
    fn run(
        self,
        epoll: OwnedFd,
        wake: Arc<OwnedFd>,
        stop: Arc<AtomicBool>,
        mut on_event: impl FnMut(ListenEvent),
    ) {
        self.stats.thread_id.store(
            rustix::thread::gettid().as_raw_nonzero().get() as u32,
            Ordering::Relaxed,
        );
        let mut ready = epoll::EventVec::with_capacity(self.rings.len() + 1);
        let mut last_full_drain = Instant::now();
        loop {
            let timeout = DRAIN_AT_LEAST_EVERY.as_millis() as i32;
            if let Err(err) = epoll::wait(&epoll, &mut ready, timeout)
                && err != rustix::io::Errno::INTR
            {
                tracing::error!("listen event capture stopped: epoll_wait failed: {err}");
                return;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut woken = false;
            for event in &ready {
                let token = event.data.u64();
                if token == STOP_TOKEN {
                    let mut buffer = [0u8; 8];
                    let _ = rustix::io::read(wake.as_fd(), &mut buffer);
                } else if let Some(ring) = self.rings.get(token as usize) {
                    woken = true;
                    self.drain(&ring.1, &mut on_event);
                }
            }
            if !woken || last_full_drain.elapsed() >= DRAIN_AT_LEAST_EVERY {
                for (_, sampler) in &self.rings {
                    self.drain(sampler, &mut on_event);
                }
                last_full_drain = Instant::now();
            }
        }
    }

    /// Reads every record waiting in one ring.
    fn drain(&self, sampler: &Sampler, on_event: &mut impl FnMut(ListenEvent)) {
        let Some(records) = sampler.iter() else {
            return;
        };
        for (_, record) in records {
            match record {
                Record::Sample(sample) => {
                    let decoded = sample
                        .raw
                        .as_deref()
                        .and_then(|raw| self.layout.decode(raw));
                    let (Some(decoded), Some(task)) = (decoded, sample.record_id.task) else {
                        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let event = ListenEvent {
                        transition: decoded.transition,
                        protocol: decoded.protocol,
                        address: decoded.address,
                        port: decoded.port,
                        pid: task.pid,
                        tid: task.tid,
                        process: read_comm(&self.procfs, task.pid),
                        netns: read_task_netns(&self.procfs, task.pid, task.tid),
                        kernel_time: Duration::from_nanos(sample.record_id.time.unwrap_or(0)),
                    };
                    self.stats.events.fetch_add(1, Ordering::Relaxed);
                    on_event(event);
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
