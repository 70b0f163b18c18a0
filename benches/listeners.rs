//! Scrape cost against the number of listeners on watched ports: what a
//! misbehaving or hostile workload produces, where every listener is a
//! series.
//!
//! `cargo bench --bench listeners` binds 1,000, then 10,000, then 34,000 TCP
//! listeners on the watched TCP ports of 127.0.0.2-127.0.0.121 (every
//! address gets every watched port before the next address is used). The
//! sockets are held by child processes (this binary in a holder role), at
//! most [`PER_HOLDER`] each: a holder raises its soft `RLIMIT_NOFILE` to the
//! hard limit and needs `PER_HOLDER` + a few descriptors (the default hard
//! limit of 20,000 here is enough; nothing else needs raising). For each
//! size it starts the real exporter binary with its defaults (every default
//! feature on, kernel events included), then prints:
//!
//! - scrape p50/p99 over HTTP, plain and gzip, and both body sizes;
//! - `ss -Hltnp` p50 in the same run (the tool it replaces, which also finds
//!   each socket's process), and the ratio scrape p50 / `ss` p50;
//! - the exporter's peak RSS (VmHWM) after those scrapes.
//!
//! It ends with one `summary_listeners:` line for the largest size. Binding
//! ports below 1024 needs root (or a lowered `ip_unprivileged_port_start`);
//! without it the benchmark says so and stops. `-- --smoke` measures 1,000
//! listeners only, for the test command. Figures, not assertions: this
//! machine is shared; compare ratios from one run.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use unassigned_port_exporter::policy::registry::{Registry, Transport};
use unassigned_port_exporter::policy::watch::{Scope, WatchSet};

mod common;

use common::RunningExporter;

const ROLE: &str = "UPE_LISTENERS_BENCH_ROLE";
/// Sockets one holder process keeps open.
const PER_HOLDER: usize = 10_000;
/// Listeners go on 127.0.0.FIRST_HOST up to 127.0.0.LAST_HOST.
const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 121;

/// Rounds for one size.
struct Rounds {
    listeners: usize,
    scrapes: usize,
    gzip_scrapes: usize,
    ss_runs: usize,
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("hold") {
        return hold();
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    if !rustix::process::geteuid().is_root() {
        println!(
            "not root: binding the watched ports (below 1024) needs root; the listener benchmark is skipped"
        );
        return;
    }
    let sizes = if smoke {
        vec![Rounds {
            listeners: 1_000,
            scrapes: 30,
            gzip_scrapes: 10,
            ss_runs: 5,
        }]
    } else {
        vec![
            Rounds {
                listeners: 1_000,
                scrapes: 100,
                gzip_scrapes: 50,
                ss_runs: 10,
            },
            Rounds {
                listeners: 10_000,
                scrapes: 40,
                gzip_scrapes: 20,
                ss_runs: 10,
            },
            Rounds {
                listeners: 34_000,
                scrapes: 20,
                gzip_scrapes: 10,
                ss_runs: 10,
            },
        ]
    };
    run(&sizes);
}

/// The watched TCP ports, as the exporter's defaults watch them.
fn watched_tcp_ports() -> Vec<u16> {
    let watch = WatchSet::new(Registry::embedded(), Scope::WellKnown, &[], vec![]);
    (1..=watch.max_watched_port())
        .filter(|&port| watch.is_watched(Transport::Tcp, port))
        .collect()
}

/// The `index`-th listener's address: all ports of one address, then the next.
fn place(ports: &[u16], index: usize) -> (Ipv4Addr, u16) {
    let host = FIRST_HOST as usize + index / ports.len();
    assert!(host <= LAST_HOST as usize, "listener {index} does not fit");
    (
        Ipv4Addr::new(127, 0, 0, host as u8),
        ports[index % ports.len()],
    )
}

/// Child role: bind listeners `UPE_FROM..UPE_TO`, say how many were bound,
/// hold them until stdin closes.
fn hold() {
    let from: usize = std::env::var("UPE_FROM").unwrap().parse().unwrap();
    let to: usize = std::env::var("UPE_TO").unwrap().parse().unwrap();
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: hard,
            maximum: hard,
        },
    );
    let ports = watched_tcp_ports();
    let mut held = Vec::with_capacity(to - from);
    let mut failed = 0;
    for index in from..to {
        match TcpListener::bind(place(&ports, index)) {
            Ok(listener) => held.push(listener),
            Err(_) => failed += 1,
        }
    }
    println!("ready {} {failed}", held.len());
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// The holder processes, killed when the benchmark ends however it ends.
#[derive(Default)]
struct Holders {
    children: Vec<Child>,
    bound: usize,
    failed: usize,
    /// Listeners asked for so far.
    asked: usize,
}

impl Holders {
    fn grow_to(&mut self, count: usize) {
        while self.asked < count {
            let to = count.min(self.asked + PER_HOLDER);
            let mut child = Command::new(std::env::current_exe().unwrap())
                .env(ROLE, "hold")
                .env("UPE_FROM", self.asked.to_string())
                .env("UPE_TO", to.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("ready"), "holder failed: {line:?}");
            self.bound += words.next().unwrap().parse::<usize>().unwrap();
            self.failed += words.next().unwrap().parse::<usize>().unwrap();
            self.children.push(child);
            self.asked = to;
        }
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Times `rounds` calls in milliseconds, sorted.
fn time(rounds: usize, mut work: impl FnMut()) -> Vec<f64> {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples
}

/// One `ss -Hltnp` over the whole host, its output counted.
fn ss_listeners() -> usize {
    let output = Command::new("ss")
        .args(["-Hltnp"])
        .stderr(Stdio::null())
        .output()
        .expect("ss (iproute2) must be installed");
    output
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

/// Listener series on our addresses in one plain exposition.
fn reported(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"unassigned_port_listeners{"))
        .filter(|l| {
            let l = String::from_utf8_lossy(l);
            l.contains("address=\"127.0.0.") && !l.contains("address=\"127.0.0.1\"")
        })
        .count()
}

struct Row {
    listeners: usize,
    reported: usize,
    plain: Vec<f64>,
    gzip: Vec<f64>,
    ss: Vec<f64>,
    plain_bytes: usize,
    gzip_bytes: usize,
    rss_mib: f64,
}

fn run(sizes: &[Rounds]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load.trim()
    );
    let ports = watched_tcp_ports();
    let room = ports.len() * (LAST_HOST - FIRST_HOST + 1) as usize;
    println!(
        "{} watched TCP ports on 127.0.0.{FIRST_HOST}-127.0.0.{LAST_HOST}: room for {room} listeners, {PER_HOLDER} per holder process",
        ports.len()
    );
    let mut holders = Holders::default();
    let mut rows = Vec::new();
    for rounds in sizes {
        let wanted = rounds.listeners.min(room);
        holders.grow_to(wanted);
        let exporter = RunningExporter::start(&[]);
        // The first scrape pays the owner search; later ones are the steady state.
        let (first, _) = exporter.scrape_body(false);
        let reported = reported(&first);
        let mut plain_bytes = 0;
        let plain = time(rounds.scrapes, || {
            plain_bytes = exporter.scrape_body(false).0.len();
        });
        let mut gzip_bytes = 0;
        let gzip = time(rounds.gzip_scrapes, || {
            let (body, gzipped) = exporter.scrape_body(true);
            assert!(gzipped, "the exporter did not gzip");
            gzip_bytes = body.len();
        });
        let mut seen_by_ss = 0;
        let ss = time(rounds.ss_runs, || seen_by_ss = ss_listeners());
        let rss_mib = exporter.peak_rss_mib();
        println!(
            "  {wanted} listeners asked, {} bound ({} failed), {reported} reported by the exporter, {seen_by_ss} lines from ss",
            holders.bound, holders.failed
        );
        rows.push(Row {
            listeners: wanted,
            reported,
            plain,
            gzip,
            ss,
            plain_bytes,
            gzip_bytes,
            rss_mib,
        });
    }
    println!();
    println!(
        "| listeners | reported | scrape p50 ms | scrape p99 ms | gzip p50 ms | gzip p99 ms | ss -Hltnp p50 ms | scrape/ss | body MB | gzip body MB | peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.3} | {:.1} |",
            row.listeners,
            row.reported,
            percentile(&row.plain, 0.5),
            percentile(&row.plain, 0.99),
            percentile(&row.gzip, 0.5),
            percentile(&row.gzip, 0.99),
            percentile(&row.ss, 0.5),
            percentile(&row.plain, 0.5) / percentile(&row.ss, 0.5),
            row.plain_bytes as f64 / 1e6,
            row.gzip_bytes as f64 / 1e6,
            row.rss_mib
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    let last = rows.last().unwrap();
    let n = last.listeners;
    println!(
        "summary_listeners: scrape_p50_ms_{n}={:.1} scrape_p99_ms_{n}={:.1} gzip_p50_ms_{n}={:.1} ss_p50_ms_{n}={:.1} ratio={:.2} body_mb={:.2} gzip_mb={:.3} rss_mib_{n}={:.1}",
        percentile(&last.plain, 0.5),
        percentile(&last.plain, 0.99),
        percentile(&last.gzip, 0.5),
        percentile(&last.ss, 0.5),
        percentile(&last.plain, 0.5) / percentile(&last.ss, 0.5),
        last.plain_bytes as f64 / 1e6,
        last.gzip_bytes as f64 / 1e6,
        last.rss_mib
    );
}
