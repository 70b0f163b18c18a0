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
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (counts, scrapes) = if smoke {
        (vec![0, 20], 20)
    } else {
        (vec![0, 100, 500, 1_000], 100)
    };
    run(&counts, scrapes);
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

fn run(counts: &[usize], scrapes: usize) {
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
    }
    println!("{last}");
}
