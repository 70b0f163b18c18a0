//! Scrape cost against the number of network namespaces (dense container
//! hosts).
//!
//! `cargo bench --bench netns` makes 0, 100, 500 and 1,000 namespaces with
//! `ip netns add`; one holder process enters each with `setns` and binds
//! 276/tcp and 276/udp inside it. For each count it starts the real exporter
//! binary and reports scrape p50/p99 over HTTP, the collection's own
//! duration, the exporter's open fds, its peak RSS and how many of the
//! listeners it reported, and, in the same run, the time of the obvious
//! script (`ip -all netns exec ss -Hltnu`) over the same namespaces. It ends
//! with a `summary_netns:` line. Needs root; figures, not assertions.
//!
//! `-- --smoke` uses 0 and 20 namespaces and fewer scrapes, for CI.
//! `-- --counts 0,1000` picks the namespace counts. `-- --compare BINARY`
//! also scrapes another build of the exporter (e.g. main's, to measure what
//! a change costs) over the same namespaces, taking turns with this one,
//! and adds its p50s and the ratio to the table.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;
use unassigned_port_exporter::kernel::netns::enter::run_in;

mod common;

use common::RunningExporter;

const ROLE: &str = "UPE_NETNS_BENCH_ROLE";
const PORT: u16 = 276;

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("hold") {
        return hold();
    }
    if !rustix::process::geteuid().is_root() {
        println!("not root: the namespace benchmark needs root (ip netns add, setns); skipped");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let smoke = args.iter().any(|a| a == "--smoke");
    let (mut counts, scrapes) = if smoke {
        (vec![0, 20], 20)
    } else {
        (vec![0, 100, 500, 1_000], 100)
    };
    if let Some(list) = value("--counts") {
        counts = list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
    }
    run(&counts, scrapes, value("--compare").as_deref());
}

/// Child role: for each namespace name read on stdin, enter it and bind
/// 276/tcp and 276/udp there; hold everything until stdin closes.
fn hold() {
    let mut held = Vec::new();
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(name) = line else { break };
        let path = format!("/run/netns/{name}");
        let sockets = run_in(std::path::Path::new(&path), || {
            let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT))?;
            let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT))?;
            Ok::<_, std::io::Error>((tcp, udp))
        })
        .ok()
        .and_then(Result::ok);
        let ok = sockets.is_some();
        held.extend(sockets);
        writeln!(out, "{}", if ok { "ok" } else { "failed" }).unwrap();
    }
}

/// The namespaces made so far, deleted at the end however the run ends.
struct Namespaces {
    names: Vec<String>,
    holder: Child,
    to_holder: ChildStdin,
    from_holder: BufReader<std::process::ChildStdout>,
}

impl Namespaces {
    fn new() -> Namespaces {
        let mut holder = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let to_holder = holder.stdin.take().unwrap();
        let from_holder = BufReader::new(holder.stdout.take().unwrap());
        Namespaces {
            names: Vec::new(),
            holder,
            to_holder,
            from_holder,
        }
    }

    fn grow_to(&mut self, count: usize) {
        while self.names.len() < count {
            let name = format!("upe-nsb-{}-{}", std::process::id(), self.names.len());
            let made = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            assert!(made, "ip netns add {name} failed");
            self.names.push(name.clone());
            writeln!(self.to_holder, "{name}").unwrap();
            let mut answer = String::new();
            self.from_holder.read_line(&mut answer).unwrap();
            assert_eq!(answer.trim(), "ok", "binding inside {name} failed");
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Listeners on 276 that a scrape reported in namespaces other than the host's.
fn namespaced_listeners(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("unassigned_port_listeners{"))
        .filter(|l| l.contains("port=\"276\"") && !l.contains("netns=\"host\""))
        .count()
}

fn collection_ms(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("unassigned_port_collection_duration_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        * 1e3
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The obvious script: `ss` run in every namespace.
fn ss_loop_ms() -> f64 {
    let started = Instant::now();
    let _ = Command::new("ip")
        .args(["-all", "netns", "exec", "ss", "-Hltnu"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    started.elapsed().as_secs_f64() * 1e3
}

/// Scrapes `exporter` `scrapes` times: sorted HTTP times and collection
/// durations (ms), and the namespaced listeners the last scrape reported.
fn measure(exporter: &RunningExporter, scrapes: usize) -> (Vec<f64>, Vec<f64>, usize) {
    exporter.scrape(); // the first collection enters every namespace
    let mut times = Vec::with_capacity(scrapes);
    let mut collections = Vec::with_capacity(scrapes);
    let mut reported = 0;
    for _ in 0..scrapes {
        let started = Instant::now();
        let text = exporter.scrape();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        collections.push(collection_ms(&text));
        reported = namespaced_listeners(&text);
    }
    times.sort_by(f64::total_cmp);
    collections.sort_by(f64::total_cmp);
    (times, collections, reported)
}

/// With `compare`, the other binary is measured over the same namespaces
/// in rounds taken in turns with this one (so load noise falls on both);
/// medians of the per-round p50s are compared.
fn compare_row(count: usize, scrapes: usize, compare: &str) {
    let rounds = 5;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_c, mut theirs_c) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let exporter = RunningExporter::start(&[]);
        let (t, c, _) = measure(&exporter, scrapes);
        ours.push(percentile(&t, 0.5));
        ours_c.push(percentile(&c, 0.5));
        drop(exporter);
        let other = RunningExporter::start_binary(compare, &[]);
        let (t, c, _) = measure(&other, scrapes);
        theirs.push(percentile(&t, 0.5));
        theirs_c.push(percentile(&c, 0.5));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, t, oc, tc) = (
        median(&mut ours),
        median(&mut theirs),
        median(&mut ours_c),
        median(&mut theirs_c),
    );
    println!(
        "compare {count} namespaces ({rounds} rounds of {scrapes} scrapes, taking turns): scrape p50 {o:.2} ms this build, {t:.2} ms {compare} (ratio {:.3}); collection p50 {oc:.2} ms vs {tc:.2} ms (ratio {:.3})",
        o / t,
        oc / tc
    );
    println!(
        "summary_compare: namespaces={count} scrape_p50_ms={o:.2} compare_scrape_p50_ms={t:.2} ratio={:.3} collection_ratio={:.3}",
        o / t,
        oc / tc
    );
}

fn run(counts: &[usize], scrapes: usize, compare: Option<&str>) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    println!(
        "| namespaces | scrape p50 ms | scrape p99 ms | collection p50 ms | exporter fds | peak RSS MiB | listeners reported | ss loop ms | speedup |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut namespaces = Namespaces::new();
    let mut last = String::new();
    for &count in counts {
        namespaces.grow_to(count);
        let exporter = RunningExporter::start(&[]);
        let (times, collections, reported) = measure(&exporter, scrapes);
        let ss = ss_loop_ms();
        let p50 = percentile(&times, 0.5);
        let row = (
            p50,
            percentile(&times, 0.99),
            percentile(&collections, 0.5),
            exporter.fds(),
            exporter.peak_rss_mib(),
        );
        println!(
            "| {count} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {reported} of {} | {ss:.0} | {:.0}x |",
            row.0,
            row.1,
            row.2,
            row.3,
            row.4,
            2 * count,
            ss / p50
        );
        last = format!(
            "summary_netns: scrape_p50_ms_{count}={:.2} ss_loop_ms_{count}={ss:.0} speedup={:.0} fds_{count}={} rss_mib_{count}={:.1}",
            row.0,
            ss / p50,
            row.3,
            row.4
        );
        drop(exporter);
        if let Some(compare) = compare {
            compare_row(count, scrapes, compare);
        }
    }
    println!("{last}");
}
