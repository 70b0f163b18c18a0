//! Scrape latency while a listener storm fills the event trail.
//!
//! `cargo bench --bench trail` (root) starts the real exporter binary with
//! the trail on (`--log.events-per-second=100`, the default) and an extra
//! watched port, then scrapes `/metrics` over HTTP back to back, 1,000
//! times in each of three phases: on an idle host (the baseline); while
//! another process opens and closes listeners on a port nobody watches
//! (the kernel filter, or the draining thread's lookup, drops those events
//! before anything is read, so this is what the storm costs the scrapes
//! through the shared machine alone: the floor); and while the same
//! process does so on the watched port in rounds of 10,000 (20,000 kernel
//! events a round, far beyond the trail's budget). It prints the scrape
//! latency p50/p99 of each phase, their ratios to idle, the positions of
//! the slowest storm scrapes, the events the exporter counted and lost
//! against the listens the storm made, and what the trail wrote (lines,
//! and lines suppressed as the notices count them), then a
//! `summary_trail:` line.
//!
//! The whole run is made twice: with the trail on, and with
//! `--log.events=false`, so the trail's own share of any slowdown shows
//! (the capture and the collection also work harder during a storm).
//!
//! And in two layouts. `own_core`: the storm is pinned to the last core and
//! the exporter and this scraper to the others, so what the storm's events
//! cost the exporter shows without the storm's own CPU time (a fleet host
//! has cores to spare for one process that listens in a loop; this 2-core
//! VM barely does). `shared`: everything on every core, as the scheduler
//! likes; here the storm takes a core the scrape may want.
//!
//! `-- --smoke` scrapes 40 times in each phase, for CI. `-- --exporter
//! PATH` runs another build of the exporter (an older commit) through the
//! same phases, for a before/after in one session; `-- --layout NAME`
//! runs one layout.
//! Figures, not assertions: the machine is shared and noisy. The claim to
//! read is `p99_ratio` (watched storm p99 / idle p99), which should stay
//! within 2, next to `floor_ratio` (unwatched storm p99 / idle p99).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_unassigned_port_exporter");

/// The exporter binary under test: this build's, or `--exporter PATH`.
fn exporter_binary() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--exporter")
        .and_then(|at| args.get(at + 1).cloned())
        .unwrap_or_else(|| BINARY.to_string())
}

/// The exporter under test, killed when dropped.
struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the exporter's stderr said, counted as it arrives.
#[derive(Default)]
struct TrailCount {
    lines: AtomicU64,
    suppressed: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--storm-child") {
        let port = args[at + 1].parse().expect("storm port");
        let listens = args[at + 2].parse().expect("listens per round");
        let core = args.get(at + 3).and_then(|a| a.parse().ok());
        storm_child(port, listens, core);
        return;
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let scrapes = if smoke { 40 } else { 1000 };
    let listens = 10_000;
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the trail benchmark needs root (perf tracepoints)");
        return;
    }
    let mut summary = Vec::new();
    allowed_cores(); // read before the first layout pins this process
    let only = args
        .iter()
        .position(|a| a == "--layout")
        .and_then(|at| args.get(at + 1));
    for layout in Layout::ALL {
        if only.is_some_and(|name| name != layout.name()) {
            continue;
        }
        if layout == Layout::OwnCore && allowed_cores().len() < 2 {
            println!("one core: the storm cannot have a core of its own");
            continue;
        }
        layout.apply_to_this_process();
        let mut ratios = Vec::new();
        for trail in [true, false] {
            match run(layout, trail, scrapes, listens) {
                Some(ratio) => ratios.push(ratio),
                None => return,
            }
        }
        summary.push(format!(
            "{name}_trail_on_p99_ratio={:.2} {name}_trail_off_p99_ratio={:.2} {name}_floor_p99_ratio={:.2} {name}_uncounted={:.0}",
            ratios[0].0,
            ratios[1].0,
            ratios[0].1.max(ratios[1].1),
            ratios[0].2 + ratios[1].2,
            name = layout.name()
        ));
    }
    println!("summary_trail_ratio: {}", summary.join(" "));
}

/// Where the storm runs relative to the exporter and the scraper.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// The storm on the last core; the exporter and the scraper on the
    /// others. What the storm's events cost the exporter shows without the
    /// storm's own CPU time: a fleet host has cores to spare for one
    /// process that listens in a loop, this 2-core machine barely does.
    OwnCore,
    /// Everything on every core, as the scheduler likes.
    Shared,
    /// Everything on the first core: a 1-CPU host, where the storm, the
    /// scraper and every thread of the exporter take turns.
    OneCore,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::OwnCore, Layout::Shared, Layout::OneCore];

    fn name(self) -> &'static str {
        match self {
            Layout::OwnCore => "own_core",
            Layout::Shared => "shared",
            Layout::OneCore => "one_core",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::OwnCore => "on a core of its own",
            Layout::Shared => "sharing every core",
            Layout::OneCore => "on the one core the exporter and scraper have",
        }
    }

    /// The core the storm is pinned to, if it is.
    fn storm_core(self) -> Option<usize> {
        let cores = allowed_cores();
        match self {
            Layout::OwnCore => cores.last().copied(),
            Layout::OneCore => cores.first().copied(),
            Layout::Shared => None,
        }
    }

    /// Pins this process (and so the exporter it starts next) to its cores.
    fn apply_to_this_process(self) {
        let cores = allowed_cores();
        let mine: &[usize] = match self {
            Layout::OwnCore => &cores[..cores.len() - 1],
            Layout::OneCore => &cores[..1],
            Layout::Shared => cores,
        };
        let mut set = rustix::process::CpuSet::new();
        for &cpu in mine {
            set.set(cpu);
        }
        rustix::process::sched_setaffinity(None, &set).expect("set this process's cores");
    }
}

/// The cores this bench may use, read once before any pinning.
fn allowed_cores() -> &'static [usize] {
    static CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| {
        let set = rustix::process::sched_getaffinity(None).expect("this process's cores");
        (0..rustix::process::CpuSet::MAX_CPU)
            .filter(|&cpu| set.is_set(cpu))
            .collect()
    })
}

/// One exporter: idle, then a storm on an unwatched port, then one on a
/// watched port; the storm/idle p99 ratios (watched, unwatched) and the
/// storm's events the exporter did not count, or `None` when the capture
/// cannot run.
fn run(layout: Layout, trail: bool, scrapes: usize, listens: usize) -> Option<(f64, f64, f64)> {
    let storm_port = free_port();
    let count = Arc::new(TrailCount::default());
    let exporter = start(storm_port, &count, trail);
    if !capture_active(exporter.port) {
        println!("skipped: the exporter's tracepoint capture is not active");
        return None;
    }
    println!(
        "exporter on 127.0.0.1:{}, storm {}, trail {}; storm: rounds of {listens} listens on watched port {storm_port}",
        exporter.port,
        layout.describe(),
        if trail {
            "on at 100 lines/s"
        } else {
            "off (--log.events=false)"
        }
    );

    // Warm up (first collections walk /proc, hash executables).
    for _ in 0..5 {
        scrape(exporter.port);
    }
    let idle: Vec<Scrape> = (0..scrapes).map(|_| scrape(exporter.port)).collect();
    let events_before = counted(exporter.port);

    // The machine's own floor: the same storm on a port nobody watches
    // (the kernel filter drops its events before they reach us), so what
    // the storm costs the scrapes through the shared cores alone shows.
    let unwatched_port = free_port();
    let (unwatched, _, _) =
        storm_while_scraping(exporter.port, unwatched_port, scrapes, listens, layout);

    let lines_before = count.lines.load(Ordering::Relaxed);
    let suppressed_before = count.suppressed.load(Ordering::Relaxed);
    let (during_storm, opened, storm_took) =
        storm_while_scraping(exporter.port, storm_port, scrapes, listens, layout);
    let mut slowest: Vec<(usize, &Scrape)> = during_storm.iter().enumerate().collect();
    slowest.sort_by_key(|(_, s)| std::cmp::Reverse(s.took));
    slowest.truncate(4);
    println!(
        "  slowest storm scrapes (index of {scrapes}: ms, of which collecting): {}",
        slowest
            .iter()
            .map(|(i, s)| format!("#{i} {:.2} ({:.2})", ms(s.took), ms(s.collection)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The last notice comes within a second of the storm's end, and the
    // last events are counted long before.
    std::thread::sleep(Duration::from_millis(2500));
    let (events, lost) = {
        let (events, lost) = counted(exporter.port);
        (events - events_before.0, lost - events_before.1)
    };
    let lines = count.lines.load(Ordering::Relaxed) - lines_before;
    let suppressed = count.suppressed.load(Ordering::Relaxed) - suppressed_before;

    let (idle_p50, idle_p99) = quantiles(idle.iter().map(|s| s.took));
    let (unwatched_p50, unwatched_p99) = quantiles(unwatched.iter().map(|s| s.took));
    let (storm_p50, storm_p99) = quantiles(during_storm.iter().map(|s| s.took));
    let (_, idle_collection_p99) = quantiles(idle.iter().map(|s| s.collection));
    let (_, storm_collection_p99) = quantiles(during_storm.iter().map(|s| s.collection));
    let ratio = storm_p99 / idle_p99;
    let floor = unwatched_p99 / idle_p99;
    println!(
        "  idle: {} scrapes, p50 {idle_p50:.2} ms, p99 {idle_p99:.2} ms (collecting: p99 {idle_collection_p99:.2} ms)",
        idle.len()
    );
    println!(
        "  storm on an unwatched port (the machine's floor): {} scrapes, p50 {unwatched_p50:.2} ms, p99 {unwatched_p99:.2} ms (p99 ratio to idle {floor:.2})",
        unwatched.len()
    );
    println!(
        "  storm: {opened} listens in {:.1} s ({:.0}/s), {} scrapes, p50 {storm_p50:.2} ms, p99 {storm_p99:.2} ms (collecting: p99 {storm_collection_p99:.2} ms)",
        storm_took.as_secs_f64(),
        opened as f64 / storm_took.as_secs_f64(),
        during_storm.len()
    );
    println!(
        "  exporter counted {events:.0} listen/close events of the storm's {} ({lost:.0} samples lost)",
        2 * opened
    );
    println!(
        "  trail during the storm: {lines} lines written, {suppressed} suppressed (notices); p99 ratio storm/idle {ratio:.2}"
    );
    println!(
        "summary_trail: layout={} trail={trail} idle_p99_ms={idle_p99:.2} unwatched_storm_p99_ms={unwatched_p99:.2} storm_p99_ms={storm_p99:.2} p99_ratio={ratio:.2} floor_ratio={floor:.2} idle_collection_p99_ms={idle_collection_p99:.2} storm_collection_p99_ms={storm_collection_p99:.2} lines={lines} suppressed={suppressed}",
        layout.name()
    );
    Some((ratio, floor, 2.0 * opened as f64 - events))
}

/// Scrapes `scrapes` times while another process opens and closes
/// listeners on `storm_port` in rounds of `listens`; the scrape latencies,
/// the listens made and how long the storm ran.
///
/// The storm runs in a process of its own, as on a real host, where the
/// scraper (Prometheus) is never the process that listens: the exporter
/// reads the listening process's `/proc` entries (its descriptors, its
/// command line), and a scraping thread in that same process could wait
/// on what those reads lock. (Measured both ways, the figures did not
/// clearly differ; the layout is the real one.)
fn storm_while_scraping(
    exporter_port: u16,
    storm_port: u16,
    scrapes: usize,
    listens: usize,
    layout: Layout,
) -> (Vec<Scrape>, usize, Duration) {
    let mut storm = Command::new(std::env::current_exe().expect("the bench's own path"))
        .args([
            "--storm-child",
            &storm_port.to_string(),
            &listens.to_string(),
            &layout
                .storm_core()
                .map_or("any".to_string(), |core| core.to_string()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the storm process");
    // The storm's first listens before the first scrape.
    std::thread::sleep(Duration::from_millis(20));
    let latencies = (0..scrapes).map(|_| scrape(exporter_port)).collect();
    drop(storm.stdin.take()); // end of input: the storm stops
    let mut report = String::new();
    BufReader::new(storm.stdout.take().unwrap())
        .read_line(&mut report)
        .expect("read the storm's report");
    let _ = storm.wait();
    let mut fields = report.split_whitespace();
    let opened = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let took = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (latencies, opened, Duration::from_secs_f64(took))
}

/// The storm process: whole rounds of listen+close on `port` until its
/// input ends, then one line: listens made, seconds taken.
fn storm_child(port: u16, listens: usize, core: Option<usize>) {
    if let Some(core) = core {
        let mut only = rustix::process::CpuSet::new();
        only.set(core);
        rustix::process::sched_setaffinity(None, &only).expect("pin the storm");
    }
    let storming = Arc::new(AtomicBool::new(true));
    {
        let storming = Arc::clone(&storming);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            storming.store(false, Ordering::SeqCst);
        });
    }
    let started = Instant::now();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut opened = 0;
    while storming.load(Ordering::SeqCst) {
        opened += (0..listens)
            .filter(|_| TcpListener::bind(address).is_ok())
            .count();
    }
    println!("{opened} {}", started.elapsed().as_secs_f64());
}

/// Starts the exporter with its stderr counted on a thread.
fn start(storm_port: u16, count: &Arc<TrailCount>, trail: bool) -> Running {
    let port = free_port();
    let mut child = Command::new(exporter_binary())
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--watch.ports={storm_port}/tcp"))
        .arg("--log.format=json")
        .arg(format!("--log.events={trail}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exporter binary");
    let stderr = child.stderr.take().unwrap();
    let count = Arc::clone(count);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match value["event"].as_str() {
                Some("listener_opened" | "listener_closed") => {
                    count.lines.fetch_add(1, Ordering::Relaxed);
                }
                Some("lines_suppressed") => {
                    let n = value["suppressed"].as_str().and_then(|n| n.parse().ok());
                    count
                        .suppressed
                        .fetch_add(n.unwrap_or(0), Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    let running = Running { child, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .is_err()
    {
        assert!(Instant::now() < deadline, "the exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

fn capture_active(port: u16) -> bool {
    let wanted = "unassigned_port_event_capture_active{source=\"tracepoint\"} 1";
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        if text.contains(wanted) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// (opened + closed events counted, samples lost) so far.
fn counted(port: u16) -> (f64, f64) {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .expect("scrape")
        .into_string()
        .expect("text");
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("unassigned_port_listener_opened_total{")
            + sum("unassigned_port_listener_closed_total{"),
        sum("unassigned_port_event_capture_lost_total{"),
    )
}

/// One scrape as the scraper saw it.
struct Scrape {
    /// Request to the body's end.
    took: Duration,
    /// Of which the collection took (`unassigned_port_collection_duration_seconds`).
    collection: Duration,
}

/// One scrape, body read to the end.
fn scrape(port: u16) -> Scrape {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let started = Instant::now();
    let body = ureq::get(&url)
        .call()
        .expect("scrape")
        .into_string()
        .expect("text");
    let took = started.elapsed();
    assert!(body.contains("unassigned_port_collection_success 1"));
    let collection = body
        .lines()
        .find_map(|line| line.strip_prefix("unassigned_port_collection_duration_seconds "))
        .and_then(|seconds| seconds.parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs_f64);
    Scrape { took, collection }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// p50 and p99 in milliseconds.
fn quantiles(durations: impl Iterator<Item = Duration>) -> (f64, f64) {
    let mut sorted: Vec<Duration> = durations.collect();
    sorted.sort_unstable();
    let at = |q: f64| {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        ms(sorted[index])
    };
    (at(0.50), at(0.99))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
