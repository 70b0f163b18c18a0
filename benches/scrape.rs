//! Scrape cost against the size of the host's socket table.
//!
//! `cargo bench --bench scrape` builds tables of 0, 10,000 and 90,000
//! established loopback TCP connections (held by child processes, at most
//! 9,000 connections = 18,000 fds each, under this machine's 20,000-fd
//! limit), plus listeners on 276/tcp and 276/udp owned by another child and a
//! few hundred idle processes. For each size it measures collection p50/p99
//! with the netlink and the netstat2 backends and the HTTP scrape p50 of the
//! real exporter binary, then the exporter's peak RSS after 1,000 scrapes at
//! the largest size. It prints a table and a `summary:` line.
//!
//! `-- --nat-only` prints only the NAT rule figures: collection p50 with a
//! namespace holding 100 REDIRECT rules against none, in one run.
//!
//! `-- --smoke` runs a small version (0 and 2,000 connections, fewer rounds)
//! in well under a minute, for CI. Figures, not assertions: this machine is
//! shared and noisy; compare ratios from one run.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unassigned_port_exporter::collect::collector::ListenerCollector;
use unassigned_port_exporter::exporter::{Exporter, Extras};
use unassigned_port_exporter::kernel::procfs::ProcRoot;
use unassigned_port_exporter::model::Protocol;
use unassigned_port_exporter::policy::ports::parse_port_list;
use unassigned_port_exporter::policy::registry::Registry;
use unassigned_port_exporter::policy::watch::{Scope, WatchSet};
use unassigned_port_exporter::sockets::{self, Backend};

mod common;

use common::RunningExporter;

const ROLE: &str = "UPE_BENCH_ROLE";
const CONNECTIONS_PER_HOLDER: usize = 9_000;

struct Plan {
    sizes: Vec<usize>,
    netlink_rounds: usize,
    netstat2_rounds: usize,
    http_rounds: usize,
    rss_scrapes: usize,
    idle_processes: usize,
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("hold") => return hold_connections(),
        Ok("listen") => return hold_listeners(),
        _ => {}
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let plan = if smoke {
        Plan {
            sizes: vec![0, 2_000],
            netlink_rounds: 200,
            netstat2_rounds: 10,
            http_rounds: 50,
            rss_scrapes: 100,
            idle_processes: 50,
        }
    } else {
        Plan {
            sizes: vec![0, 10_000, 90_000],
            netlink_rounds: 1_000,
            netstat2_rounds: 20,
            http_rounds: 200,
            rss_scrapes: 1_000,
            idle_processes: 300,
        }
    };
    if std::env::args().any(|a| a == "--nat-only") {
        return nat_only(&plan);
    }
    run(&plan, smoke);
}

/// `-- --nat-only`: the NAT rule figures alone (no connections, no
/// listeners on the watched ports, which a shared machine may hold).
fn nat_only(plan: &Plan) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    let watch = Arc::new(WatchSet::new(
        Registry::embedded(),
        Scope::WellKnown,
        &[],
        Vec::new(),
    ));
    if let Some(nat) = measure_nat_rules(plan, &watch) {
        print_nat(&nat);
    }
}

fn print_nat(nat: &NatCost) {
    println!(
        "NAT rules: netlink p50 {:.3} ms with none, {:.3} ms with {NAT_RULES} (ratio {:.2}; {} forwarded series), {:.3} ms when the ruleset changed before each collection (re-read)",
        nat.none,
        nat.present,
        nat.present / nat.none,
        nat.series,
        nat.changed
    );
    println!(
        "summary_nat: p50_ms_0_rules={:.3} p50_ms_{NAT_RULES}_rules={:.3} ratio={:.2} p50_ms_changed_each_collection={:.3}",
        nat.none,
        nat.present,
        nat.present / nat.none,
        nat.changed
    );
}

/// Child role: hold N established loopback connections until stdin closes.
fn hold_connections() {
    let count: usize = std::env::var("UPE_BENCH_COUNT").unwrap().parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut held = Vec::with_capacity(2 * count);
    for _ in 0..count {
        let client = TcpStream::connect(address).unwrap();
        let (server, _) = listener.accept().unwrap();
        held.push(client);
        held.push(server);
    }
    drop(listener);
    println!("ready");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// Child role: own the watched listeners the benchmark looks for.
fn hold_listeners() {
    let port: u16 = std::env::var("UPE_BENCH_PORT").unwrap().parse().unwrap();
    let _tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
    let _udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
    println!("ready");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

/// Children that are killed when the benchmark ends, however it ends.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    fn spawn_role(&mut self, role: &str, env: &[(&str, String)]) {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "{role} child failed");
        self.0.push(child);
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// Times `rounds` calls, returning (p50, p99) in milliseconds.
fn time(rounds: usize, mut work: impl FnMut()) -> (f64, f64) {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    samples.sort_unstable();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

fn established_tcp() -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| line.split_whitespace().nth(3) == Some("01"))
        .count()
}

struct Row {
    connections: usize,
    netlink: (f64, f64),
    netlink_cold_ms: f64,
    netstat2: (f64, f64),
    http_p50: f64,
}

fn run(plan: &Plan, smoke: bool) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load average at start: {}",
        num_cpus(),
        load.trim()
    );
    let mut children = Children::default();

    // The listeners the exporter must find, owned by another process.
    let watched_port: u16 = if is_root() { 276 } else { free_port() };
    let extra = if is_root() {
        vec![]
    } else {
        println!("not root: watching high port {watched_port} instead of 276");
        parse_port_list(&watched_port.to_string()).unwrap()
    };
    children.spawn_role("listen", &[("UPE_BENCH_PORT", watched_port.to_string())]);
    let owner_pid = children.0[0].id().to_string();

    let mut idle = Vec::new();
    for _ in 0..plan.idle_processes {
        idle.push(Command::new("sleep").arg("3600").spawn().unwrap());
    }
    let _idle = Children(idle);

    let watch = Arc::new(WatchSet::new(
        Registry::embedded(),
        Scope::WellKnown,
        &extra,
        vec![],
    ));
    let collector_for = |backend| build(&watch, backend);
    let netlink = collector_for(Backend::Netlink);
    let netstat2 = collector_for(Backend::Netstat2);
    let exporter = start_exporter(&extra);

    let mut rows = Vec::new();
    let mut holding = 0;
    for &size in &plan.sizes {
        while holding < size {
            let count = CONNECTIONS_PER_HOLDER.min(size - holding);
            children.spawn_role("hold", &[("UPE_BENCH_COUNT", count.to_string())]);
            holding += count;
        }
        let established = established_tcp();
        // Every collection must see both listeners with their owner.
        let check = |collector: &ListenerCollector| {
            let snapshot = collector.scrape();
            let ours: Vec<_> = snapshot
                .listeners
                .iter()
                .filter(|l| l.port == watched_port && l.pid == owner_pid)
                .map(|l| l.protocol)
                .collect();
            assert_eq!(ours, vec![Protocol::Tcp, Protocol::Udp], "{snapshot:?}");
        };
        // A fresh collector per size: the first collection pays the /proc walk.
        let cold = collector_for(Backend::Netlink);
        let started = Instant::now();
        check(&cold);
        let netlink_cold_ms = started.elapsed().as_secs_f64() * 1e3;
        check(&netlink);
        let netlink_times = time(plan.netlink_rounds, || check(&netlink));
        let netstat2_times = time(plan.netstat2_rounds, || check(&netstat2));
        let http = time(plan.http_rounds, || {
            let body = exporter.scrape();
            assert!(body.contains(&format!("pid=\"{owner_pid}\"")));
        });
        println!(
            "  measured {size} connections ({established} established TCP sockets on the host)"
        );
        rows.push(Row {
            connections: size,
            netlink: netlink_times,
            netlink_cold_ms,
            netstat2: netstat2_times,
            http_p50: http.0,
        });
    }
    let namespace_cost = measure_namespaces(plan, &watch);
    let nat_cost = measure_nat_rules(plan, &watch);
    let processes = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count()
        })
        .unwrap_or(0);
    let root = ProcRoot::default();
    let own = root.own_net_namespace().unwrap_or(0);
    let full_discovery = time(plan.netstat2_rounds * 5, || {
        unassigned_port_exporter::kernel::netns::discovery::discover(&root, own);
    });
    let mut remembered = unassigned_port_exporter::kernel::netns::Discovery::new(root.clone(), own);
    remembered.namespaces(&[]);
    let discovery = time(plan.netlink_rounds, || {
        remembered.namespaces(&[]);
    });
    for _ in 0..plan.rss_scrapes {
        exporter.scrape();
    }
    let rss_mib = exporter.peak_rss_mib();

    println!();
    println!(
        "| connections | netlink p50 ms | netlink p99 ms | netlink first (cold cache) ms | netstat2 p50 ms | netstat2 p99 ms | speedup p50 | HTTP scrape p50 ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {:.0}x | {:.3} |",
            row.connections,
            row.netlink.0,
            row.netlink.1,
            row.netlink_cold_ms,
            row.netstat2.0,
            row.netstat2.1,
            row.netstat2.0 / row.netlink.0,
            row.http_p50
        );
    }
    println!(
        "namespace discovery for {processes} processes: p50 {:.3} ms reading every /proc/PID/ns/net (done every {} s), {:.3} ms reading only new pids (every other collection)",
        full_discovery.0,
        unassigned_port_exporter::kernel::netns::discovery::FULL_REREAD_INTERVAL.as_secs(),
        discovery.0
    );
    if let Some((before, after, count)) = namespace_cost {
        println!(
            "network namespaces: netlink p50 {before:.3} ms with the host's alone, {after:.3} ms with {count} more namespaces (each with a listener on {NS_PORT}/tcp): {:.3} ms per extra namespace",
            (after - before) / count as f64
        );
    }
    if let Some(nat) = &nat_cost {
        print_nat(nat);
    }
    let first = &rows[0];
    let last = rows.last().unwrap();
    println!(
        "exporter peak RSS (VmHWM) after {} scrapes at {} connections: {rss_mib:.1} MiB",
        plan.rss_scrapes, last.connections
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
    let label = if smoke { "smoke" } else { "90k" };
    let largest = if smoke {
        format!("{}", last.connections)
    } else {
        label.to_string()
    };
    println!(
        "summary: netlink_p50_ms_{largest}={:.3} netstat2_p50_ms_{largest}={:.1} speedup={:.0} growth_0_to_{largest}={:.2} rss_mib={rss_mib:.1}",
        last.netlink.0,
        last.netstat2.0,
        last.netstat2.0 / last.netlink.0,
        last.netlink.0 / first.netlink.0,
    );
}

const NS_PORT: u16 = 276;

/// Namespaces made with `ip netns add`, deleted when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Netlink collection p50 before and after adding namespaces, each holding
/// one listener; `None` without root.
fn measure_namespaces(plan: &Plan, watch: &Arc<WatchSet>) -> Option<(f64, f64, usize)> {
    if !is_root() {
        println!("not root: the per-namespace cost is not measured");
        return None;
    }
    let collector = || build(watch, Backend::Netlink);
    let count = if plan.netlink_rounds >= 1_000 { 20 } else { 4 };
    let baseline = collector();
    baseline.scrape();
    let before = time(plan.netlink_rounds, || {
        baseline.scrape();
    })
    .0;
    let mut made = Namespaces(Vec::new());
    let mut held = Vec::new();
    for n in 0..count {
        let name = format!("upe-bench-{}-{n}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("ip netns add failed: the per-namespace cost is not measured");
            return None;
        }
        made.0.push(name.clone());
        let path = PathBuf::from("/run/netns").join(&name);
        let listener = unassigned_port_exporter::kernel::netns::enter::run_in(&path, || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, NS_PORT))
        })
        .ok()?
        .ok()?;
        held.push(listener);
    }
    let with_namespaces = collector();
    let seen = with_namespaces
        .scrape()
        .listeners
        .iter()
        .filter(|l| l.port == NS_PORT)
        .count();
    assert!(seen >= count, "saw {seen} of {count} namespace listeners");
    let after = time(plan.netlink_rounds, || {
        with_namespaces.scrape();
    })
    .0;
    Some((before, after, count))
}

/// How many NAT rules [`measure_nat_rules`] writes.
const NAT_RULES: u16 = 100;

/// Collection cost with NAT rules present.
struct NatCost {
    /// p50 ms with the namespace's ruleset empty.
    none: f64,
    /// p50 ms with [`NAT_RULES`] REDIRECT rules present and unchanged.
    present: f64,
    /// p50 ms when a rule was added or deleted before each collection.
    changed: f64,
    /// Forwarded series reported with the rules present.
    series: usize,
}

/// Netlink collection p50 with a namespace whose nat table is empty, then
/// holding [`NAT_RULES`] REDIRECT rules (ports 200-299, the watched ones
/// among them reported), in one run; and the cost when the ruleset changes
/// before every collection. `None` without root or iptables.
fn measure_nat_rules(plan: &Plan, watch: &Arc<WatchSet>) -> Option<NatCost> {
    if !is_root() {
        println!("not root: the NAT rule cost is not measured");
        return None;
    }
    let name = format!("upe-bench-nat-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("ip netns add failed: the NAT rule cost is not measured");
        return None;
    }
    let _made = Namespaces(vec![name.clone()]);
    let iptables = |args: &[&str], input: Option<&str>| -> bool {
        let mut child = match Command::new("ip")
            .args(["netns", "exec", &name])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(_) => return false,
        };
        if let Some(text) = input {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
        }
        drop(child.stdin.take());
        child.wait().is_ok_and(|s| s.success())
    };
    if !iptables(&["iptables", "-t", "nat", "-L", "-n"], None) {
        println!("iptables is missing: the NAT rule cost is not measured");
        return None;
    }
    let collector = build(watch, Backend::Netlink);
    collector.scrape();
    let rounds = plan.netlink_rounds;
    let none = time(rounds, || {
        collector.scrape();
    })
    .0;
    let mut rules = String::from("*nat\n");
    for i in 0..NAT_RULES {
        rules.push_str(&format!(
            "-A PREROUTING -p tcp --dport {} -j REDIRECT --to-ports 31337\n",
            200 + i
        ));
    }
    rules.push_str("COMMIT\n");
    if !iptables(&["iptables-restore", "-n"], Some(&rules)) {
        println!("iptables-restore failed: the NAT rule cost is not measured");
        return None;
    }
    let series = collector.scrape().forwarded.len();
    let present = time(rounds, || {
        collector.scrape();
    })
    .0;
    let toggles = (rounds / 10).clamp(20, 100);
    let mut changed = Vec::with_capacity(toggles);
    for i in 0..toggles {
        let verb = if i % 2 == 0 { "-A" } else { "-D" };
        let rule = [
            "iptables", "-t", "nat", verb, "OUTPUT", "-p", "udp", "--dport", "276", "-j",
            "REDIRECT",
        ];
        iptables(&rule, None);
        let started = Instant::now();
        collector.scrape();
        changed.push(started.elapsed());
    }
    changed.sort();
    Some(NatCost {
        none,
        present,
        changed: percentile(&changed, 0.5),
        series,
    })
}

/// The exporter the binary would build for this backend, through the
/// library's wiring; the benchmark measures its collector.
fn build(watch: &Arc<WatchSet>, backend: Backend) -> Arc<ListenerCollector> {
    let root = ProcRoot::default();
    let opened = sockets::open(backend, None, &root, &Default::default()).unwrap();
    let exporter = Exporter::from_parts(Arc::clone(watch), opened, root, Extras::default())
        .unwrap_or_else(|failure| panic!("{}", failure.message));
    exporter.scraper.collector_arc()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_exporter(extra: &[unassigned_port_exporter::policy::ports::PortRange]) -> RunningExporter {
    let flags: Vec<String> = extra
        .first()
        .map(|range| format!("--watch.ports={}", range.first))
        .into_iter()
        .collect();
    RunningExporter::start(&flags)
}
