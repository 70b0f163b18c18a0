//! Cost of kernel event capture under a socket storm on an unwatched port.
//!
//! `cargo bench --bench events` (root) runs, on one thread, a storm of TCP
//! listen/close and UDP bind/close on a free loopback port above 1023 for
//! 10 s: first with no capture (baseline), then with the tracepoint capture
//! alone (`ListenCapture`, watched ports up to 1023), with a host destroy
//! subscription to the TCP and UDP groups alone, and last with the
//! recommended pair: tracepoint plus UDP destroy groups. During the last, a
//! probe thread opens a listener on a watched port every 20 ms and measures
//! the time from just before `listen()` to the capture's callback.
//!
//! Rates swing with the other work on this shared machine; the per-socket
//! CPU figures (the storm thread's own, which holds the kernel's
//! tracepoint and destroy-broadcast costs, and the kernel workers', which
//! build the broadcasts) are the steadier comparison.
//!
//! Last, the burst: 10,000 `listen()`+`close()` on watched port 277 as
//! fast as one thread goes, counted by a fresh capture's callback (opened,
//! closed, lost).
//!
//! It reports the storm's socket lifecycles per second, the CPU time the
//! two capture threads used over the storm (from
//! `/proc/self/task/TID/schedstat`, nanoseconds; `stat` ticks as fallback),
//! as a percentage of one core, and the latency p50/p99, then a
//! `summary_events:` line. `-- --smoke` runs 1 s of each, for CI. Figures,
//! not assertions: the machine is shared and noisy.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use unassigned_port_exporter::events::{
    DestroyGroups, DestroyReader, DestroySubscription, ListenCapture, Transition,
};

const MAX_PORT: u16 = 1023;
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Watched ports the probe may use, in order, if 276 is taken by others.
const PROBE_PORTS: [u16; 4] = [276, 277, 278, 279];

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let storm_for = if smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the events benchmark needs root (perf tracepoints)");
        return;
    }
    let storm_port = free_high_port();
    println!(
        "storm: one thread, TCP listen/close + UDP bind/close on 127.0.0.1:{storm_port}, {:.0} s each run",
        storm_for.as_secs_f64()
    );

    let baseline = measured_storm("baseline (no capture)", storm_port, storm_for, None);
    // Each source alone, to tell their costs apart.
    {
        let capture = ListenCapture::start(MAX_PORT, Path::new("/proc"), |_| {});
        if capture.is_ok() {
            let _ = measured_storm("tracepoint only", storm_port, storm_for, Some(&baseline));
        }
        drop(capture);
    }
    {
        let subscription =
            DestroySubscription::open(MAX_PORT, DestroyGroups::TcpAndUdp).expect("subscribe");
        let _destroy =
            DestroyReader::start(0, subscription, |_| {}).expect("start the destroy reader");
        let _ = measured_storm(
            "destroy, TCP and UDP groups only",
            storm_port,
            storm_for,
            Some(&baseline),
        );
    }

    // The capture, with a callback that forwards the probe's events.
    let (probe_tx, probe_rx) = mpsc::channel::<(u32, Instant)>();
    let capture = match ListenCapture::start(MAX_PORT, Path::new("/proc"), move |event| {
        if event.transition == Transition::Opened {
            let _ = probe_tx.send((event.tid, Instant::now()));
        }
    }) {
        Ok(capture) => capture,
        Err(reason) => {
            println!("skipped: tracepoint capture unavailable: {reason}");
            return;
        }
    };
    let subscription = DestroySubscription::open(MAX_PORT, DestroyGroups::Udp).expect("subscribe");
    let destroy = DestroyReader::start(0, subscription, |_| {}).expect("start the destroy reader");
    // Let both threads start and publish their tids.
    std::thread::sleep(Duration::from_millis(50));
    let capture_tid = capture.stats().thread_id.load(Ordering::Relaxed);
    let describe_tid = capture.stats().describe_thread_id.load(Ordering::Relaxed);
    let destroy_tid = destroy.stats().thread_id.load(Ordering::Relaxed);

    let stop_probe = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = Arc::clone(&stop_probe);
        std::thread::spawn(move || probe_latencies(&stop, &probe_rx))
    };
    let capture_cpu_before = thread_cpu(capture_tid) + thread_cpu(describe_tid);
    let destroy_cpu_before = thread_cpu(destroy_tid);
    let with_capture = measured_storm(
        "tracepoint + destroy UDP groups",
        storm_port,
        storm_for,
        Some(&baseline),
    );
    let capture_cpu = thread_cpu(capture_tid) + thread_cpu(describe_tid) - capture_cpu_before;
    let destroy_cpu = thread_cpu(destroy_tid) - destroy_cpu_before;
    stop_probe.store(true, Ordering::SeqCst);
    let mut latencies = probe.join().unwrap();

    let seconds = with_capture.elapsed.as_secs_f64();
    let pct = |cpu: Duration| 100.0 * cpu.as_secs_f64() / seconds;
    println!(
        "  tracepoint capture threads (draining + describing): {:.4} s CPU = {:.3}% of one core over {} CPUs' rings; events delivered {}, lost {}",
        capture_cpu.as_secs_f64(),
        pct(capture_cpu),
        capture.cpus(),
        capture.stats().events.load(Ordering::Relaxed),
        capture.lost_samples()
    );
    println!(
        "  destroy reader thread: {:.4} s CPU = {:.3}% of one core; destroy events delivered {}, overruns {}",
        destroy_cpu.as_secs_f64(),
        pct(destroy_cpu),
        destroy.stats().events.load(Ordering::Relaxed),
        destroy.stats().overruns.load(Ordering::Relaxed)
    );
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1e6
    };
    let (p50, p99) = (quantile(0.50), quantile(0.99));
    println!(
        "  watched-port latency, before listen() to callback: p50 {p50:.0} us, p99 {p99:.0} us, max {:.0} us (n={})",
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e6),
        latencies.len()
    );
    drop(capture);
    let burst = burst(10_000);
    println!(
        "  burst: {} listen+close on 127.0.0.1:{BURST_PORT} in {:.3} s; opened {} closed {} lost {} ({} KiB ring per CPU)",
        burst.made,
        burst.took.as_secs_f64(),
        burst.opened,
        burst.closed,
        burst.lost,
        burst.ring_bytes / 1024
    );
    println!(
        "summary_events: storm_rate_per_s={:.0} capture_cpu_pct={:.3} latency_p50_us={p50:.0} latency_p99_us={p99:.0} burst={} burst_opened={} burst_closed={} burst_lost={} burst_s={:.3}",
        with_capture.rate(),
        pct(capture_cpu + destroy_cpu),
        burst.made,
        burst.opened,
        burst.closed,
        burst.lost,
        burst.took.as_secs_f64()
    );
}

/// The watched port of the burst.
const BURST_PORT: u16 = 277;

struct Burst {
    made: u64,
    took: Duration,
    opened: u64,
    closed: u64,
    lost: u64,
    ring_bytes: usize,
}

/// `count` listen+close on [`BURST_PORT`] as fast as this thread goes,
/// counted by a fresh capture; waits (10 s at most) for the counts.
fn burst(count: u64) -> Burst {
    use std::sync::atomic::AtomicU64;
    let opened = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let me = std::process::id();
    let capture = {
        let (opened, closed) = (Arc::clone(&opened), Arc::clone(&closed));
        ListenCapture::start(MAX_PORT, Path::new("/proc"), move |event| {
            if event.port != BURST_PORT || event.listener_pid != me {
                return;
            }
            match event.transition {
                Transition::Opened => opened.fetch_add(1, Ordering::Relaxed),
                Transition::Closed => closed.fetch_add(1, Ordering::Relaxed),
            };
        })
        .expect("the capture started before")
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, BURST_PORT));
    let started = Instant::now();
    let mut made = 0;
    for _ in 0..count {
        if TcpListener::bind(address).is_ok() {
            made += 1;
        }
    }
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (opened.load(Ordering::Relaxed) < made || closed.load(Ordering::Relaxed) < made)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Burst {
        made,
        took,
        opened: opened.load(Ordering::Relaxed),
        closed: closed.load(Ordering::Relaxed),
        lost: capture.lost_samples(),
        ring_bytes: capture.ring_bytes(),
    }
}

/// Runs a storm and prints its rate and the kernel workers' CPU over it.
fn measured_storm(name: &str, port: u16, duration: Duration, baseline: Option<&Storm>) -> Storm {
    let workers_before = kernel_worker_cpu();
    let own_before = own_thread_cpu();
    let result = storm(port, duration);
    let own = own_thread_cpu().saturating_sub(own_before);
    let workers = kernel_worker_cpu().saturating_sub(workers_before);
    let lifecycles = (result.tcp + result.udp).max(1) as f64;
    let against = baseline.map_or(String::new(), |base| {
        format!(
            ", {:+.1}% against baseline",
            100.0 * (result.rate() / base.rate() - 1.0)
        )
    });
    println!(
        "  {name}: {:.0} socket lifecycles/s ({} TCP listeners, {} UDP sockets{against})\n      storm thread {:.2} us CPU per lifecycle; kworker {:.2} us per lifecycle ({:.1}% of one core)",
        result.rate(),
        result.tcp,
        result.udp,
        own.as_secs_f64() * 1e6 / lifecycles,
        workers.as_secs_f64() * 1e6 / lifecycles,
        100.0 * workers.as_secs_f64() / result.elapsed.as_secs_f64()
    );
    result
}

/// CPU time of all kernel worker threads (`kworker/*`) so far: where
/// sock_diag builds and sends destroy broadcasts. Other agents' work on
/// this shared machine lands here too, so it is an upper bound.
fn kernel_worker_cpu() -> Duration {
    let mut total = Duration::ZERO;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let is_worker = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("kworker"));
        if is_worker {
            total += task_cpu(&format!("/proc/{pid}"));
        }
    }
    total
}

struct Storm {
    tcp: u64,
    udp: u64,
    elapsed: Duration,
}

impl Storm {
    fn rate(&self) -> f64 {
        (self.tcp + self.udp) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Opens and closes sockets on `port` as fast as one thread can.
fn storm(port: u16, duration: Duration) -> Storm {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    let (mut tcp, mut udp) = (0, 0);
    while started.elapsed() < duration {
        for _ in 0..64 {
            if TcpListener::bind(address).is_ok() {
                tcp += 1;
            }
            if UdpSocket::bind(address).is_ok() {
                udp += 1;
            }
        }
    }
    Storm {
        tcp,
        udp,
        elapsed: started.elapsed(),
    }
}

/// A port above the watched range that nobody holds now, for TCP and UDP.
fn free_high_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// Every `PROBE_EVERY`, listens on a watched port and waits for the
/// callback; returns the latencies.
fn probe_latencies(stop: &AtomicBool, events: &mpsc::Receiver<(u32, Instant)>) -> Vec<Duration> {
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let mut latencies = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(PROBE_EVERY);
        let Some(socket) = bound_probe_socket() else {
            continue;
        };
        let before = Instant::now();
        if socket.listen(16).is_err() {
            continue;
        }
        let deadline = before + Duration::from_secs(1);
        while let Ok((tid, at)) =
            events.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if tid == me {
                latencies.push(at.duration_since(before));
                break;
            }
        }
    }
    latencies
}

/// A TCP socket bound to the first free probe port.
fn bound_probe_socket() -> Option<socket2::Socket> {
    for port in PROBE_PORTS {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
        let _ = socket.set_reuse_address(true);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if socket.bind(&address.into()).is_ok() {
            return Some(socket);
        }
    }
    None
}

/// CPU time the calling thread has used so far.
fn own_thread_cpu() -> Duration {
    task_cpu("/proc/thread-self")
}

/// CPU time a thread of this process has used so far.
fn thread_cpu(tid: u32) -> Duration {
    task_cpu(&format!("/proc/self/task/{tid}"))
}

/// CPU time of the task whose procfs directory is `task`.
fn task_cpu(task: &str) -> Duration {
    if let Ok(text) = std::fs::read_to_string(format!("{task}/schedstat"))
        && let Some(ns) = text.split_whitespace().next().and_then(|f| f.parse().ok())
    {
        return Duration::from_nanos(ns);
    }
    // stat: utime and stime are fields 14 and 15, after the ")" of comm.
    let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    // procfs counts in USER_HZ, 100 on every Linux.
    Duration::from_millis(ticks * 10)
}
