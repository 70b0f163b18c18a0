//! Issue 11 with real sockets and the real binary: listeners that live a few
//! milliseconds, in the host or in fresh namespaces, are counted from kernel
//! events; listeners in a namespace that only one thread entered, or that a
//! known process entered late, are in the next snapshots; UDP-Lite is
//! reported. Needs root, the listen tracepoint and the destroy groups (CI
//! has all three): without them a test skips with one line, or fails in CI
//! (see `common::capability`).

mod common;

use common::capability::{Capability, gate, require};
use common::{Exporter, own_process_name, samples, total};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the exporter once root and the capture from `source`
/// (`tracepoint` or `destroy`) are there; `None` when the test skips.
fn exporter_with_events(source: &str) -> Option<Exporter> {
    if !require(Capability::Root) {
        return None;
    }
    let exporter = Exporter::start(&[]);
    let capability = match source {
        "tracepoint" => Capability::ListenTracepoint,
        _ => Capability::DestroyGroups,
    };
    gate(capability, exporter.capture_active(source)).then_some(exporter)
}

/// Scrapes until `metric` (filtered by `wanted`) reaches `target`, then
/// returns its value; gives up after 10 s with what it saw.
fn wait_for(exporter: &Exporter, metric: &str, wanted: &[(&str, &str)], target: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = total(&exporter.scrape(), metric, wanted);
        if value >= target || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn twenty_tcp_listeners_of_5_ms_are_each_counted_with_their_process() {
    let Some(exporter) = exporter_with_events("tracepoint") else {
        return;
    };
    let name = own_process_name();
    let labels = [
        ("port", "276"),
        ("protocol", "tcp"),
        ("process", name.as_str()),
        ("netns", "host"),
    ];
    let before = total(
        &exporter.scrape(),
        "unassigned_port_listener_opened_total",
        &labels,
    );
    for _ in 0..20 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 276)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        drop(listener);
    }
    let after = wait_for(
        &exporter,
        "unassigned_port_listener_opened_total",
        &labels,
        before + 20.0,
    );
    assert_eq!(after - before, 20.0);
}

#[test]
fn twenty_udp_sockets_of_5_ms_are_each_counted_when_destroyed() {
    let Some(exporter) = exporter_with_events("destroy") else {
        return;
    };
    let labels = [("port", "277"), ("protocol", "udp"), ("netns", "host")];
    let before = total(
        &exporter.scrape(),
        "unassigned_port_listener_closed_total",
        &labels,
    );
    for _ in 0..20 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 277)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        drop(socket);
    }
    let after = wait_for(
        &exporter,
        "unassigned_port_listener_closed_total",
        &labels,
        before + 20.0,
    );
    assert_eq!(after - before, 20.0);
}

/// Runs `work` on a thread that has unshared its own network namespace.
fn in_fresh_namespace<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET)
            .expect("unshare(CLONE_NEWNET)");
        work()
    })
    .join()
    .unwrap()
}

#[test]
fn listeners_in_ten_fresh_namespaces_of_20_ms_are_counted() {
    let Some(exporter) = exporter_with_events("tracepoint") else {
        return;
    };
    let name = own_process_name();
    let opened_in_namespaces = |text: &str| {
        samples(text, "unassigned_port_listener_opened_total")
            .into_iter()
            .filter(|(labels, _)| {
                labels.get("port").map(String::as_str) == Some("278")
                    && labels.get("process") == Some(&name)
                    && labels.get("netns").is_some_and(|ns| ns != "host")
            })
            .map(|(_, value)| value)
            .sum::<f64>()
    };
    let before = opened_in_namespaces(&exporter.scrape());
    for _ in 0..10 {
        in_fresh_namespace(|| {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 278)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            drop(listener);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = before;
    while after < before + 10.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = opened_in_namespaces(&exporter.scrape());
    }
    assert_eq!(after - before, 10.0);
}

/// Scrapes until a listener on `port` owned by `pid` outside the host's
/// namespace is reported; returns how long that took.
fn time_to_snapshot(exporter: &Exporter, port: &str, pid: &str) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let found = samples(&exporter.scrape(), "unassigned_port_listeners")
            .into_iter()
            .any(|(labels, _)| {
                labels.get("port").map(String::as_str) == Some(port)
                    && labels.get("pid").map(String::as_str) == Some(pid)
                    && labels.get("netns").is_some_and(|ns| ns != "host")
            });
        if found {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_listener_in_a_namespace_only_one_thread_entered_is_in_the_snapshot() {
    let Some(exporter) = exporter_with_events("tracepoint") else {
        return;
    };
    let (ready, hold) = std::sync::mpsc::channel();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        rustix::thread::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 279)).unwrap();
        ready.send(()).unwrap();
        let _ = stopped.recv();
        drop(listener);
    });
    hold.recv().unwrap();
    let took = time_to_snapshot(&exporter, "279", &std::process::id().to_string());
    stop.send(()).unwrap();
    thread.join().unwrap();
    let took = took.expect("the thread's listener never appeared");
    assert!(took < Duration::from_secs(2), "appeared after {took:?}");
}

#[test]
fn a_known_process_that_unshares_late_is_in_the_snapshot() {
    let Some(exporter) = exporter_with_events("tracepoint") else {
        return;
    };
    // A process the exporter has already seen in the host's namespace...
    let script = "import ctypes, socket, sys\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0\n\
                  s = socket.socket(); s.bind(('0.0.0.0', 275)); s.listen()\n\
                  print('ok', flush=True)\n\
                  sys.stdin.readline()\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "python is running its script");
    exporter.scrape();
    exporter.scrape();
    // ...moves itself into a new namespace and listens there.
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok");
    let took = time_to_snapshot(&exporter, "275", &child.id().to_string());
    let _ = writeln!(stdin, "stop");
    let _ = child.wait();
    let took = took.expect("the late-unshare listener never appeared");
    assert!(took < Duration::from_secs(2), "appeared after {took:?}");
}

#[test]
fn udplite_sockets_are_reported() {
    if !require(Capability::Root) {
        return;
    }
    let exporter = Exporter::start(&[]);
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)\ns.bind(('127.0.0.1', 274))\nprint('ok', flush=True)\nsys.stdin.readline()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ok");
    let labels = [("port", "274"), ("protocol", "udplite"), ("netns", "host")];
    let found = wait_for(&exporter, "unassigned_port_listeners", &labels, 1.0);
    drop(child.stdin.take());
    let _ = child.wait();
    assert_eq!(found, 1.0);
}
